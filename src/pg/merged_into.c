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

int64
lm_follow_merged_into(int64 lead_id, bool key_share, bool *exists)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			type = INT8OID;
	SPIPlanPtr	plan;
	int64		current = lead_id;
	int			hops;

	plan = key_share ?
		lm_kept_plan(&plans[1], "SELECT l.merged_into FROM leadmgmt.lead l "
					 "WHERE l.id OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF l", 1, &type) :
		lm_kept_plan(&plans[0], "SELECT l.merged_into FROM leadmgmt.lead l "
					 "WHERE l.id OPERATOR(pg_catalog.=) $1", 1, &type);
	for (hops = 0; hops < LM_MERGED_INTO_MAX_HOPS; hops++)
	{
		Datum		arg = Int64GetDatum(current);
		Datum		next;
		bool		isnull;

		/* a locking read cannot run read-only */
		if (SPI_execute_plan(plan, &arg, NULL, !key_share, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up lead " INT64_FORMAT, current);
		if (SPI_processed == 0)
		{
			*exists = false;
			return current;
		}
		next = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
		{
			*exists = true;
			return current;
		}
		current = DatumGetInt64(next);
	}
	ereport(ERROR,
			(errcode(ERRCODE_LM_MERGE_CYCLE),
			 errmsg("merged_into chain starting at lead " INT64_FORMAT " does not end", lead_id),
			 errdetail("Following merged_into from the lead takes more than %d steps: the chain runs in a circle.",
					   LM_MERGED_INTO_MAX_HOPS),
			 errhint("merged_into is written by leadmgmt.merge_leads(); set it back to NULL on one lead of the circle.")));
	return 0;					/* keep compiler quiet */
}
