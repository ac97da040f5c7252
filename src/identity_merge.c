/*
 * identity_merge.c
 *		The C steps of merge_leads() (sql/parts/80_identity.sql, merge
 *		section): merge_stage(), and the activity_lead_resolve trigger that
 *		sends an activity moved to a merged lead on to the lead it was merged
 *		into.  Part of identity (doc/identity.md).
 *
 * How: merge_stage() reads both leads and their stage ranks with one kept
 * plan (src/pg/kept_plan.h) and hands the move to stage.c
 * (lm_stage_move_internal or lm_stage_note), so each merge leaves exactly
 * one history row.  The trigger, declared BEFORE UPDATE OF lead_id, follows
 * merged_into FOR KEY SHARE with the shared walk (src/pg/merged_into.h) as
 * the table owner (src/pg/as_owner.h, restricted).
 *
 * State: one kept SPI plan here and the walk's in src/pg (CacheMemoryContext,
 * for the backend).
 *
 * Complexity: merge_stage() is one indexed read and one move; the trigger
 * one indexed read per hop of the merged_into chain (normally one; capped).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "leadmgmt.h"

/* ---------------------------------------------------------------------
 * Merging
 * ---------------------------------------------------------------------
 */

/*
 * merge_stage(keep bigint, duplicate bigint) RETURNS text
 *
 * Step of merge_leads(): once duplicate.merged_into = keep, the kept lead
 * takes the duplicate's stage when that one ranks higher, without a
 * transition check, recorded in stage_history with reason 'merge'.  Refuses
 * to act on a pair that is not merged, so it cannot be used to skip the
 * stage machine.  Returns the kept lead's stage.
 */
PG_FUNCTION_INFO_V1(leadmgmt_merge_stage);
Datum
leadmgmt_merge_stage(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr kept = NULL;
	int64		keep = PG_GETARG_INT64(0);
	int64		dup = PG_GETARG_INT64(1);
	Datum		args[2];
	bool		isnull;
	char	   *keep_stage;
	char	   *dup_stage;
	int32		keep_rank;
	int32		dup_rank;
	text	   *result;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext spi;
	Oid			types[2] = {INT8OID, INT8OID};
	SPIPlanPtr	plan;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = lm_kept_plan(&kept, "SELECT d.merged_into, k.stage, ks.rank, d.stage, ds.rank "
						"FROM leadmgmt.lead k "
						"JOIN leadmgmt.stage ks ON ks.name OPERATOR(pg_catalog.=) k.stage, "
						"leadmgmt.lead d "
						"JOIN leadmgmt.stage ds ON ds.name OPERATOR(pg_catalog.=) d.stage "
						"WHERE k.id OPERATOR(pg_catalog.=) $1 "
						"AND d.id OPERATOR(pg_catalog.=) $2", 2, types);
	args[0] = Int64GetDatum(keep);
	args[1] = Int64GetDatum(dup);
	if (SPI_execute_plan(plan, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read leads " INT64_FORMAT " and " INT64_FORMAT, keep, dup);
	lm_require_merged_pair(keep, dup, 1);
	keep_stage = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	keep_rank = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	dup_stage = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
	dup_rank = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
	/* the result must outlive SPI_finish, which frees SPI's memory */
	spi = MemoryContextSwitchTo(caller);
	result = cstring_to_text(dup_rank > keep_rank ? dup_stage : keep_stage);
	MemoryContextSwitchTo(spi);
	SPI_finish();

	/* exactly one history row with reason 'merge' on the kept lead */
	if (dup_rank > keep_rank)
		lm_stage_move_internal(keep, text_to_cstring(result), "merge");
	else
		lm_stage_note(keep, "merge");
	PG_RETURN_TEXT_P(result);
}

/*
 * BEFORE UPDATE OF lead_id ON leadmgmt.activity: an activity moved to a
 * merged lead goes on to the lead it was merged into.  Since 1.1.0 the
 * trigger is declared for UPDATE OF lead_id only; inserts are resolved by
 * the scoring row trigger, once per lead and statement (src/scoring.c,
 * resolve_row_lead).  (Attached to INSERT by hand, it resolves inserts the
 * same way, as it did in 1.0.0.)  The walk (src/pg/merged_into.c) reads each lead FOR
 * KEY SHARE, so an update racing a merge_leads() of its lead (which holds
 * FOR UPDATE) waits for the merge and then follows merged_into: nothing is
 * left on the dropped lead.  Runs as the table owner (row locks need
 * UPDATE privilege; row-level security must not hide leads).  A lead that
 * does not exist is left for the foreign key to report.
 */
PG_FUNCTION_INFO_V1(leadmgmt_activity_lead_resolve);
Datum
leadmgmt_activity_lead_resolve(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	tuple;
	int			attnum;
	bool		isnull;
	bool		exists;
	Datum		value;
	int64		lead_id;
	int64		current;
	LmAsOwner	saved;

	lm_check_trigger_context(fcinfo, "activity_lead_resolve", true, true);
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_lead_resolve: must be fired for INSERT or UPDATE")));
	rel = trigdata->tg_relation;
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple :
		trigdata->tg_trigtuple;
	attnum = lm_column(rel, "lead_id");
	value = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);
	if (isnull)
		return PointerGetDatum(tuple);	/* NOT NULL reports it */
	lead_id = DatumGetInt64(value);

	/* the lead table and the activity table have the same owner */
	lm_as_owner_begin(&saved, rel->rd_rel->relowner, LM_OWNER_RESTRICTED);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	current = lm_follow_merged_into(lead_id, true, &exists);
	SPI_finish();
	lm_as_owner_end(&saved);

	if (current != lead_id)
	{
		Datum		v = Int64GetDatum(current);
		bool		n = false;

		tuple = heap_modify_tuple_by_cols(tuple, RelationGetDescr(rel), 1, &attnum, &v, &n);
	}
	return PointerGetDatum(tuple);
}
