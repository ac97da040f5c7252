/*
 * lookup_cache.h
 *		Per-session caches of small vocabulary tables (rules, stages,
 *		settings), dropped when those tables change.
 *
 * Unit of use: one static LmLookupCache per cache, and a build function.
 *
 *		static void *build_rules(MemoryContext cxt);	   reads with SPI,
 *														   allocates in cxt
 *		static LmLookupCache rules = {"leadmgmt rule cache",
 *									  {"scoring_rule", NULL}, build_rules};
 *		...
 *		RuleSet    *set = lm_lookup_cache_get(&rules);
 *
 * Lifetime.  The build runs in a fresh memory context that is a child of
 * the caller's (transient) context; only when the build has returned is the
 * context re-parented under CacheMemoryContext and the cache installed.
 * An error half-way (a failed SPI read, a cancel) therefore frees the
 * partial cache with the caller's memory instead of leaking it under
 * CacheMemoryContext.  This is what PostgreSQL's relcache does for its
 * entries (RelationBuildPartitionDesc, RelationBuildRuleLock).
 *
 * Invalidation.  The tables named in the cache (in schema leadmgmt) are
 * watched through one relcache callback for all caches: a relcache
 * invalidation of any of them, or of everything, drops the cache; the next
 * get() builds it again.  A statement trigger on each watched table must
 * send that invalidation (leadmgmt.vocabulary_changed() does) so that
 * other sessions see the change at their next transaction and ours at its
 * next command.  An invalidation that arrives while the cache is being
 * built (SPI takes snapshots, which accept invalidations) makes get()
 * throw the new build away and build again, as the relcache does.
 *
 * The cached data must not point into anything but its context.
 */
#ifndef LM_PG_LOOKUP_CACHE_H
#define LM_PG_LOOKUP_CACHE_H

#include "postgres.h"

#define LM_CACHE_MAX_TABLES 4

typedef void *(*LmCacheBuild) (MemoryContext cxt);

typedef struct LmLookupCache
{
	/* set by the owner of the cache */
	const char *name;			/* memory context identifier, static */
	const char *tables[LM_CACHE_MAX_TABLES + 1];	/* NULL-terminated */
	LmCacheBuild build;

	/* kept by lookup_cache.c */
	void	   *data;			/* NULL: not built */
	MemoryContext context;		/* owns data, under CacheMemoryContext */
	Oid			relids[LM_CACHE_MAX_TABLES];
	uint64		generation;		/* bumped by every invalidation */
	bool		registered;
} LmLookupCache;

extern void *lm_lookup_cache_get(LmLookupCache *cache);

#endif							/* LM_PG_LOOKUP_CACHE_H */
