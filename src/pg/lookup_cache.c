/*
 * lookup_cache.c
 *		Per-session vocabulary caches, built then re-parented, dropped by
 *		one relcache callback (lookup_cache.h).
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "leadmgmt.h"
#include "pg/lookup_cache.h"

/* every cache of the extension; a handful exist */
#define LM_MAX_CACHES 8

static LmLookupCache *caches[LM_MAX_CACHES];
static int	ncaches = 0;
static bool callback_registered = false;

static void
drop(LmLookupCache *cache)
{
	cache->generation++;
	if (cache->data != NULL)
	{
		MemoryContextDelete(cache->context);
		cache->context = NULL;
		cache->data = NULL;
	}
}

static bool
watches(const LmLookupCache *cache, Oid relid)
{
	int			i;

	for (i = 0; i < LM_CACHE_MAX_TABLES && cache->tables[i] != NULL; i++)
		if (cache->relids[i] == relid)
			return true;
	return false;
}

static void
relcache_callback(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < ncaches; i++)
		if (relid == InvalidOid || watches(caches[i], relid))
			drop(caches[i]);
}

static void
register_cache(LmLookupCache *cache)
{
	if (cache->registered)
		return;
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (ncaches >= LM_MAX_CACHES)
		elog(ERROR, "too many leadmgmt lookup caches");
	caches[ncaches++] = cache;
	cache->registered = true;
}

/* the watched tables' oids (they change when the extension is recreated) */
static void
resolve_tables(LmLookupCache *cache)
{
	Oid			nsp = lm_schema_oid();
	int			i;

	for (i = 0; i < LM_CACHE_MAX_TABLES && cache->tables[i] != NULL; i++)
		cache->relids[i] = get_relname_relid(cache->tables[i], nsp);
}

/* the cached data, built first if needed */
void *
lm_lookup_cache_get(LmLookupCache *cache)
{
	if (cache->data != NULL)
		return cache->data;
	register_cache(cache);
	for (;;)
	{
		uint64		generation;
		MemoryContext cxt;
		void	   *data;

		resolve_tables(cache);
		generation = cache->generation;
		cxt = AllocSetContextCreate(CurrentMemoryContext, "leadmgmt lookup cache",
									ALLOCSET_SMALL_SIZES);
		MemoryContextSetIdentifier(cxt, cache->name);	/* a static string */
		data = cache->build(cxt);
		if (cache->generation != generation)
		{
			/* a watched table changed meanwhile: this build may be stale */
			MemoryContextDelete(cxt);
			continue;
		}
		MemoryContextSetParent(cxt, CacheMemoryContext);
		cache->context = cxt;
		cache->data = data;
		return data;
	}
}

/*
 * leadmgmt.vocabulary_changed(): the statement trigger on every watched
 * table (stages, transitions, scoring and fit rules, settings).  It sends
 * the relcache invalidation that drops the caches watching the table: in
 * our session at the next command, in the others at commit.
 */
PG_FUNCTION_INFO_V1(leadmgmt_vocabulary_changed);
Datum
leadmgmt_vocabulary_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	lm_check_trigger_context(fcinfo, "vocabulary_changed", false, false);
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
