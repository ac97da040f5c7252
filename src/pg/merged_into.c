/*
 * merged_into.c
 *		Follow leadmgmt.lead.merged_into (merged_into.h).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"

#include "leadmgmt.h"
#include "pg/kept_plan.h"
#include "pg/merged_into.h"

/*
 * merged_into of one lead through plan; false when the lead does not exist.
 * read_only: with the caller's snapshot; else (a locking read, or the walk
 * of a writer) with a new one, which sees what committed meanwhile.
 */
static bool
read_merged_into(SPIPlanPtr plan, bool read_only, int64 lead_id, int64 *next, bool *live)
{
	Datum		arg = Int64GetDatum(lead_id);
	Datum		d;
	bool		isnull;

	if (SPI_execute_plan(plan, &arg, NULL, read_only, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up lead " INT64_FORMAT, lead_id);
	if (SPI_processed == 0)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*live = isnull;
	*next = isnull ? lead_id : DatumGetInt64(d);
	return true;
}

/*
 * The walk reads without a lock; with key_share, the lead it ends on is
 * then locked FOR KEY SHARE and read again, and if a merge that committed
 * while we waited moved it on, the walk goes on from there.  Only the live
 * lead stays locked, never a merged one on the way: merge_leads() never
 * waits for a merged lead, and the lock order stays that of the leads a
 * writer writes (doc/operations.md, "Lock order").
 */
int64
lm_follow_merged_into(int64 lead_id, bool key_share, bool *exists)
{
	static SPIPlanPtr read_plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	Oid			type = INT8OID;
	SPIPlanPtr	read;
	SPIPlanPtr	lock = NULL;
	int64		current = lead_id;
	int			hops = 0;

	read = lm_kept_plan(&read_plan, "SELECT l.merged_into FROM leadmgmt.lead l "
						"WHERE l.id OPERATOR(pg_catalog.=) $1", 1, &type);
	if (key_share)
		lock = lm_kept_plan(&lock_plan, "SELECT l.merged_into FROM leadmgmt.lead l "
							"WHERE l.id OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF l", 1, &type);
	for (;;)
	{
		int64		next;
		bool		live;

		if (!read_merged_into(read, !key_share, current, &next, &live))
		{
			*exists = false;
			return current;
		}
		if (live && key_share)
		{
			/* the end of the chain as last committed: lock it and look again */
			if (!read_merged_into(lock, false, current, &next, &live))
			{
				*exists = false;	/* deleted meanwhile */
				return current;
			}
		}
		if (live)
		{
			*exists = true;
			return current;
		}
		current = next;
		if (++hops >= LM_MERGED_INTO_MAX_HOPS)
			lm_merged_into_cycle_error(lead_id);
	}
}

void
lm_merged_into_cycle_error(int64 lead_id)
{
	ereport(ERROR,
			(errcode(ERRCODE_LM_MERGE_CYCLE),
			 errmsg("merged_into chain starting at lead " INT64_FORMAT " does not end", lead_id),
			 errdetail("Following merged_into from the lead takes more than %d steps: the chain runs in a circle.",
					   LM_MERGED_INTO_MAX_HOPS),
			 errhint("merged_into is written by leadmgmt.merge_leads(); set it back to NULL on one lead of the circle.")));
}

void
lm_require_merged_pair(int64 keep, int64 duplicate, int attno)
{
	bool		isnull = true;
	Datum		merged_into = (Datum) 0;

	if (SPI_processed > 0)
		merged_into = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, attno, &isnull);
	if (isnull || DatumGetInt64(merged_into) != keep)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("lead " INT64_FORMAT " is not merged into lead " INT64_FORMAT, duplicate, keep),
				 errhint("Use leadmgmt.merge_leads(keep, duplicate).")));
}
