/*
 * merged_into_batch.h
 *		Follow leadmgmt.lead.merged_into for many leads at once.
 *
 * What: the set form of lm_follow_merged_into() (merged_into.h): for a set
 * of lead ids, the live lead each one stands for, as a map of the merged
 * ones (ids not in the map are live, or unknown: a foreign key reports
 * those).  Same cap (LM_MERGED_INTO_MAX_HOPS) and same error (LM050) as the
 * single walk.
 *
 * How: one walk, level by level.  A hop function reads merged_into for a
 * whole frontier of ids and returns the merged ones with their targets; the
 * targets are the next frontier; a chain that is still going after
 * LM_MERGED_INTO_MAX_HOPS levels is a cycle written by hand.  Two hop
 * functions exist:
 *	- lm_merged_into_hop_spi(): one query per level (id = ANY($1)), no row
 *	  lock; for callers whose leads are locked already (the foreign key
 *	  checks of new activity hold FOR KEY SHARE on them);
 *	- a caller's own, e.g. the activity row trigger's direct index probe
 *	  under FOR KEY SHARE (ingest.c), for one id at a time without SQL.
 *
 * Unit of use:
 *
 *		LmLeadMap	map = {0};
 *		lm_merged_into_walk(&map, ids, n, lm_merged_into_hop_spi, NULL);
 *		live = lm_lead_map_get(&map, id);
 *
 * State: the map, in the caller's memory context; sorted by from after
 * every walk, so a lookup is a binary search.  A second walk into the same
 * map adds leads (and re-points earlier entries whose target has merged
 * since).
 *
 * Complexity: levels x one hop call; merge_leads() keeps chains one hop
 * long, so normally one call finds nothing or one level.  Building the map
 * is O(k log k) for k merged leads.
 */
#ifndef LM_PG_MERGED_INTO_BATCH_H
#define LM_PG_MERGED_INTO_BATCH_H

#include "postgres.h"

typedef struct LmLeadMove
{
	int64		from;			/* a merged lead */
	int64		to;				/* the live lead it stands for */
} LmLeadMove;

typedef struct LmLeadMap
{
	int			n;
	int			cap;
	LmLeadMove *moves;			/* sorted by from */
} LmLeadMap;

/*
 * One level of the walk: for the merged leads among ids[0..n) (sorted,
 * distinct), write (id, merged_into) to out (room for n) and return how
 * many.
 */
typedef int (*LmMergedIntoHop) (const int64 *ids, int n, LmLeadMove *out, void *arg);

/* ids[0..n) in any order, duplicates allowed; ids is used as scratch */
extern void lm_merged_into_walk(LmLeadMap *map, int64 *ids, int n, LmMergedIntoHop hop,
								void *arg);
/* the live lead id stands for: its entry in the map, or id itself */
extern int64 lm_lead_map_get(const LmLeadMap *map, int64 id);

/* the hop as one query per level, inside SPI, no row lock */
extern int	lm_merged_into_hop_spi(const int64 *ids, int n, LmLeadMove *out, void *arg);

/* sort ids and drop duplicates; returns the new count */
extern int	lm_sort_unique_ids(int64 *ids, int n);

#endif							/* LM_PG_MERGED_INTO_BATCH_H */
