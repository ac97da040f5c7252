/*
 * stage.h
 *		What the two files of the stage machine share: the cached stage
 *		vocabulary (stage_vocabulary.c), read by the move triggers and
 *		set_stage() (stage.c).
 */
#ifndef LM_STAGE_H
#define LM_STAGE_H

#include "postgres.h"

typedef struct StageInfo
{
	char	   *name;
	bool		is_entry;
} StageInfo;

/*
 * The stages and allowed transitions of leadmgmt.stage and
 * leadmgmt.stage_transition, as one lookup cache (src/pg/lookup_cache.h):
 * valid until the next SPI call or command may drop it, so a caller reads
 * what it needs before it runs SQL.
 */
typedef struct StageCache
{
	int			nstages;
	StageInfo  *stages;			/* ordered by rank, then name */
	bool	   *allowed;		/* allowed[from * nstages + to] */
} StageCache;

extern const StageCache *lm_stage_cache(void);
/* index of the stage called name, or -1 */
extern int	lm_stage_index(const StageCache *cache, const char *name);
/* index of the stage called name, or error LM002 with the known stages */
extern int	lm_stage_lookup(const StageCache *cache, const char *name);
/* "inquiry, sgl": the entry stages, the targets allowed from from, or all */
extern char *lm_stage_list(const StageCache *cache, int from, bool entry_only);

#endif							/* LM_STAGE_H */
