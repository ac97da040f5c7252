/*
 * stage_vocabulary.c
 *		The stage machine's vocabulary: which stages exist, which are entry
 *		stages, which moves leadmgmt.stage_transition allows (doc/stages.md).
 *
 * What: the per-session StageCache (stage.h) that the triggers of stage.c
 * check every new lead and every move against.
 *
 * How: one lookup cache of the shared layer (src/pg/lookup_cache.h): built
 * with two SPI reads in a transient memory context, re-parented under
 * CacheMemoryContext only when the build succeeded, dropped by the relcache
 * invalidation that vocabulary_changed() sends for leadmgmt.stage or
 * leadmgmt.stage_transition (in our session at the next command, in the
 * others at commit).
 *
 * State: StageCache, a small array of stages and an n x n boolean matrix of
 * allowed moves, in the cache's own context; nothing else.
 *
 * Cost: a build is two scans of tables of a dozen rows; a lookup is
 * O(number of stages) string compares, a transition check O(1).  Nothing
 * is parsed per row.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "leadmgmt.h"
#include "stage.h"

int
lm_stage_index(const StageCache *cache, const char *name)
{
	int			i;

	for (i = 0; i < cache->nstages; i++)
		if (strcmp(cache->stages[i].name, name) == 0)
			return i;
	return -1;
}

/* the stages and transitions, read into cxt (src/pg/lookup_cache.h) */
static void *
build_stage_cache(MemoryContext cxt)
{
	static SPIPlanPtr stages_plan = NULL;
	static SPIPlanPtr transitions_plan = NULL;
	StageCache *cache = MemoryContextAllocZero(cxt, sizeof(StageCache));
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (SPI_execute_plan(lm_kept_plan(&stages_plan,
									  "SELECT s.name, s.is_entry FROM leadmgmt.stage s "
									  "ORDER BY s.rank, s.name", 0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.stage");
	cache->nstages = (int) SPI_processed;
	cache->stages = MemoryContextAllocZero(cxt, sizeof(StageInfo) * Max(cache->nstages, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		cache->stages[i].name = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 1));
		cache->stages[i].is_entry = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	}

	cache->allowed = MemoryContextAllocZero(cxt,
											sizeof(bool) * Max(cache->nstages * cache->nstages, 1));
	if (SPI_execute_plan(lm_kept_plan(&transitions_plan,
									  "SELECT t.from_stage, t.to_stage FROM leadmgmt.stage_transition t",
									  0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.stage_transition");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			from = lm_stage_index(cache, SPI_getvalue(tup, desc, 1));
		int			to = lm_stage_index(cache, SPI_getvalue(tup, desc, 2));

		if (from >= 0 && to >= 0)
			cache->allowed[from * cache->nstages + to] = true;
	}
	SPI_finish();
	return cache;
}

static LmLookupCache stage_cache = {"leadmgmt stage cache",
{"stage", "stage_transition", NULL}, build_stage_cache};

const StageCache *
lm_stage_cache(void)
{
	return (const StageCache *) lm_lookup_cache_get(&stage_cache);
}

/* "inquiry, sgl" style lists for hints */
char *
lm_stage_list(const StageCache *cache, int from, bool entry_only)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < cache->nstages; i++)
	{
		bool		wanted = entry_only ? cache->stages[i].is_entry :
			from < 0 ? true : cache->allowed[from * cache->nstages + i];

		if (!wanted)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, cache->stages[i].name);
	}
	return buf.data;
}

int
lm_stage_lookup(const StageCache *cache, const char *name)
{
	int			idx = lm_stage_index(cache, name);

	if (idx < 0)
		ereport(ERROR,
				(errcode(ERRCODE_LM_UNKNOWN_STAGE),
				 errmsg("stage \"%s\" does not exist", name),
				 errhint("Known stages: %s.", lm_stage_list(cache, -1, false))));
	return idx;
}
