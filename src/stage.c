/*
 * stage.c
 *		The stage machine: validated, audited moves along the demand waterfall.
 *
 * Triggers on leadmgmt.lead split the work as doc/design.md says:
 *
 *	lead_stage_check	BEFORE INSERT OR UPDATE OF stage, FOR EACH ROW.
 *		Validates the entry stage of a new lead or the move of an existing
 *		one against the cached vocabulary and sets stage_entered_at.
 *	lead_stage_record	AFTER INSERT, AFTER UPDATE OF stage WHEN changed.
 *		Appends the stage entered to leadmgmt.stage_history, running as the
 *		extension owner so callers need no privilege on the history table
 *		and row-level security on lead cannot hide the row from us.
 *	stage_history_guard BEFORE INSERT/UPDATE/DELETE/TRUNCATE on history.
 *		Keeps the audit append-only: rows come only from lead_stage_record,
 *		and disappear only when their lead is deleted (ON DELETE CASCADE).
 *
 * How: the triggers check against the cached vocabulary
 * (stage_vocabulary.c); SQL goes through kept plans and runs as the owner
 * of the tables where it writes or reads the audit (src/pg/).
 *
 * State: set_stage() hands reason and "at" to the triggers through
 * PendingMove, a static that lives for the duration of its one UPDATE
 * (saved and restored around it, so a move inside a move keeps its own);
 * writing_history tells the history guard that an insert is ours.  Both
 * are described in doc/design.md, "The life of a stage move".
 *
 * Cost per move: a lookup in the cached vocabulary, one probe of the
 * history index for the last change, one insert with two more probes for
 * its facts.
 *
 * Invariants (doc/operations.md, guarded by test/isolation and test/torture):
 *
 *	History per lead is strictly time-ordered, in the order the moves took
 *	effect.  The BEFORE trigger runs once the UPDATE holds the lead's row
 *	lock, so it sees every committed change; it records the move at "at"
 *	but never at or before the lead's latest history row (move or note):
 *	at most one microsecond after it.  An explicit "at" earlier than that
 *	row fails with LM003; the default (now()) is raised instead, because a
 *	transaction that started before a concurrent, already committed move
 *	has an older now().
 *
 *	A legal move never fails because of timing: with the rule above no two
 *	rows of a lead share a time, so the history's unique key (lead_id,
 *	to_stage, changed_at) is reached only by rows written around the
 *	triggers: a second restore of the same dump.
 *
 *	A move lands on the surviving lead: set_stage() follows merged_into
 *	with FOR KEY SHARE locks (lm_lock_lead), which wait for a merge in
 *	progress (merge_leads holds FOR UPDATE) and keep the survivor from being
 *	merged away until we commit.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "stage.h"

/* ---------------------------------------------------------------------
 * Moves requested through set_stage()
 * ---------------------------------------------------------------------
 */
typedef struct PendingMove
{
	bool		active;
	int64		lead_id;
	bool		explicit_at;	/* "at" differs from now() */
	TimestampTz at;
	const char *reason;
	bool		internal;		/* merge_leads: no transition check */
} PendingMove;

static PendingMove pending_move = {false};

static const PendingMove *
pending_for(int64 lead_id)
{
	if (pending_move.active && pending_move.lead_id == lead_id)
		return &pending_move;
	return NULL;
}

/* ---------------------------------------------------------------------
 * Tuple helpers
 * ---------------------------------------------------------------------
 */
static Datum
column_value(Relation rel, HeapTuple tuple, const char *colname, bool *isnull)
{
	return heap_getattr(tuple, lm_column(rel, colname),
						RelationGetDescr(rel), isnull);
}

static char *
column_text(Relation rel, HeapTuple tuple, const char *colname)
{
	bool		isnull;
	Datum		value = column_value(rel, tuple, colname, &isnull);

	return isnull ? NULL : TextDatumGetCString(value);
}

static HeapTuple
set_timestamp_column(Relation rel, HeapTuple tuple, const char *colname, TimestampTz ts)
{
	int			attnum = lm_column(rel, colname);
	Datum		value = TimestampTzGetDatum(ts);
	bool		isnull = false;

	return heap_modify_tuple_by_cols(tuple, RelationGetDescr(rel), 1,
									 &attnum, &value, &isnull);
}

static char *
format_timestamptz(TimestampTz ts)
{
	return DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(ts)));
}

/* ---------------------------------------------------------------------
 * BEFORE trigger: validate
 * ---------------------------------------------------------------------
 */
static HeapTuple
check_new_lead(Relation rel, HeapTuple tuple)
{
	const StageCache *cache = lm_stage_cache();
	char	   *stage = column_text(rel, tuple, "stage");
	bool		isnull;
	TimestampTz created_at;
	int			idx;

	if (stage == NULL)
		return tuple;			/* the NOT NULL constraint reports it */

	idx = lm_stage_lookup(cache, stage);
	if (!cache->stages[idx].is_entry)
		ereport(ERROR,
				(errcode(ERRCODE_LM_FORBIDDEN_TRANSITION),
				 errmsg("a new lead cannot start in stage \"%s\"", stage),
				 errdetail("New leads enter the waterfall at an entry stage: %s.",
						   lm_stage_list(cache, -1, true)),
				 errhint("Insert the lead at an entry stage, then replay its later moves with leadmgmt.set_stage(lead, stage, reason, at).")));

	created_at = DatumGetTimestampTz(column_value(rel, tuple, "created_at", &isnull));
	if (isnull)
	{
		created_at = GetCurrentTransactionStartTimestamp();
		tuple = set_timestamp_column(rel, tuple, "created_at", created_at);
	}
	else if (TIMESTAMP_NOT_FINITE(created_at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("created_at of a lead must be finite, not %s", format_timestamptz(created_at)),
				 errdetail("The entry stage is recorded at created_at, and every later move after it."),
				 errhint("Give the time the lead was created, or leave created_at out for now().")));
	return set_timestamp_column(rel, tuple, "stage_entered_at", created_at);
}

/*
 * The time of the lead's latest history row (a move or a note such as a
 * merge), at least stage_entered_at.  Read as the owner of the history
 * table, after the row lock of the UPDATE was granted: a fresh snapshot
 * that holds what the transaction we waited for wrote.
 */
static TimestampTz
last_history_time(Relation rel, int64 lead_id, TimestampTz stage_entered_at)
{
	static SPIPlanPtr plan = NULL;
	LmAsOwner	saved;
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(lead_id);
	TimestampTz last = stage_entered_at;

	lm_as_owner_begin(&saved, rel->rd_rel->relowner, LM_OWNER_RESTRICTED);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "SELECT pg_catalog.max(h.changed_at) FROM leadmgmt.stage_history h "
									  "WHERE h.lead_id OPERATOR(pg_catalog.=) $1", 1, &type),
						 &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the stage history of lead " INT64_FORMAT, lead_id);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			last = Max(last, DatumGetTimestampTz(d));
	}
	SPI_finish();
	lm_as_owner_end(&saved);
	return last;
}

/*
 * When the move is recorded (see the file header): "at" (explicit, or the
 * implicit floor: now(), or the activity time of a hand-off), but strictly
 * after the lead's latest history row.  An explicit "at" earlier than that
 * row fails with LM003.
 */
static TimestampTz
move_time(int64 lead_id, TimestampTz last_change)
{
	const PendingMove *pending = pending_for(lead_id);
	TimestampTz at = pending != NULL ? pending->at : GetCurrentTransactionStartTimestamp();

	if (TIMESTAMP_NOT_FINITE(last_change))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("lead " INT64_FORMAT " has a stage history time that is not finite", lead_id),
				 errdetail("The latest stage change of the lead is recorded at %s.",
						   format_timestamptz(last_change)),
				 errhint("Stage times must be finite; correct the lead's stage_entered_at.")));
	if (last_change >= END_TIMESTAMP - 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("no time is left for a stage change of lead " INT64_FORMAT " after %s",
						lead_id, format_timestamptz(last_change)),
				 errdetail("Its latest stage change is at the last time a timestamp can hold."),
				 errhint("Record stage changes at the times they happened.")));
	if (pending != NULL && pending->explicit_at && at < last_change)
		ereport(ERROR,
				(errcode(ERRCODE_LM_OUT_OF_ORDER),
				 errmsg("stage change of lead " INT64_FORMAT " at %s is earlier than its last stage change at %s",
						lead_id, format_timestamptz(at),
						format_timestamptz(last_change)),
				 errhint("Replay a lead's moves in time order.")));
	/* strictly after the last row: one microsecond later at the least */
	return Max(at, last_change + 1);
}

static HeapTuple
check_stage_move(Relation rel, HeapTuple oldtuple, HeapTuple newtuple)
{
	const StageCache *cache;
	char	   *from_name = column_text(rel, oldtuple, "stage");
	char	   *to_name = column_text(rel, newtuple, "stage");
	bool		isnull;
	int64		lead_id;
	TimestampTz last_change;
	int			from;
	int			to;

	if (to_name == NULL || from_name == NULL || strcmp(from_name, to_name) == 0)
		return newtuple;		/* no move; NOT NULL reports a NULL stage */

	cache = lm_stage_cache();
	lead_id = DatumGetInt64(column_value(rel, newtuple, "id", &isnull));
	to = lm_stage_lookup(cache, to_name);
	from = lm_stage_lookup(cache, from_name);

	if (!cache->allowed[from * cache->nstages + to] &&
		!(pending_for(lead_id) != NULL && pending_for(lead_id)->internal))
	{
		char	   *targets = lm_stage_list(cache, from, false);

		ereport(ERROR,
				(errcode(ERRCODE_LM_FORBIDDEN_TRANSITION),
				 errmsg("lead " INT64_FORMAT " cannot move from stage \"%s\" to stage \"%s\"",
						lead_id, from_name, to_name),
				 targets[0] != '\0' ?
				 errhint("Allowed moves from \"%s\": %s.", from_name, targets) :
				 errhint("Stage \"%s\" has no outgoing transitions; add one to leadmgmt.stage_transition.",
						 from_name)));
	}

	last_change = last_history_time(rel, lead_id,
									DatumGetTimestampTz(column_value(rel, oldtuple,
																	 "stage_entered_at", &isnull)));
	newtuple = set_timestamp_column(rel, newtuple, "stage_entered_at",
									move_time(lead_id, last_change));
	return set_timestamp_column(rel, newtuple, "updated_at",
								GetCurrentTransactionStartTimestamp());
}

PG_FUNCTION_INFO_V1(leadmgmt_lead_stage_check);
Datum
leadmgmt_lead_stage_check(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	lm_check_trigger_context(fcinfo, "lead_stage_check", true, true);
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		return PointerGetDatum(check_new_lead(trigdata->tg_relation,
											  trigdata->tg_trigtuple));
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(check_stage_move(trigdata->tg_relation,
												trigdata->tg_trigtuple,
												trigdata->tg_newtuple));
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("lead_stage_check: must be fired for INSERT or UPDATE")));
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * AFTER trigger: record
 * ---------------------------------------------------------------------
 */
static SPIPlanPtr history_insert_plans[2] = {NULL, NULL};
static bool writing_history = false;

/*
 * Whether stage_history has the 1.0.0 fact columns.  The library is
 * installed before ALTER EXTENSION ... UPDATE runs, so a database still on
 * 0.1.0 must keep recording moves meanwhile (the update fills the facts of
 * the rows written until then).  Asked per row: two syscache lookups.
 */
static bool
history_has_facts(void)
{
	Oid			nsp = get_namespace_oid("leadmgmt", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("stage_history", nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, "entry_number") != InvalidAttrNumber;
}

static SPIPlanPtr
history_insert_plan(bool with_facts)
{
	Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};

	if (!with_facts)
		return lm_kept_plan(&history_insert_plans[0],
							"INSERT INTO leadmgmt.stage_history "
							"(lead_id, from_stage, to_stage, changed_at, changed_by, reason) "
							"VALUES ($1, $2, $3, $4, $5, $6)", 6, types);

	/*
	 * entry_number and time_in_from_stage are facts of the row that the
	 * funnel views would otherwise recompute by sorting all history per
	 * lead; here they cost two probes of the (lead_id, ...) unique index.
	 * Notes (from = to) are no entries and stop no clock.
	 */
	return lm_kept_plan(&history_insert_plans[1],
						"INSERT INTO leadmgmt.stage_history "
						"(lead_id, from_stage, to_stage, changed_at, changed_by, reason, "
						"entry_number, time_in_from_stage) "
						"SELECT $1, $2, $3, $4, $5, $6, "
						"CASE WHEN NOT note THEN 1 OPERATOR(pg_catalog.+) "
						"(SELECT pg_catalog.count(*)::pg_catalog.int4 FROM leadmgmt.stage_history h "
						"WHERE h.lead_id OPERATOR(pg_catalog.=) $1 AND h.to_stage OPERATOR(pg_catalog.=) $3 "
						"AND h.from_stage IS DISTINCT FROM h.to_stage) END, "
						"CASE WHEN NOT note THEN $4 OPERATOR(pg_catalog.-) "
						"(SELECT pg_catalog.max(h.changed_at) FROM leadmgmt.stage_history h "
						"WHERE h.lead_id OPERATOR(pg_catalog.=) $1 AND h.from_stage IS DISTINCT FROM h.to_stage) END "
						"FROM (SELECT $2 IS NOT DISTINCT FROM $3 AS note) n", 6, types);
}

static void
insert_history_row(int64 lead_id, const char *from_stage, const char *to_stage,
				   TimestampTz changed_at, const char *reason)
{
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan = history_insert_plan(history_has_facts());
	int			rc;

	values[0] = Int64GetDatum(lead_id);
	values[1] = from_stage ? CStringGetTextDatum(from_stage) : (Datum) 0;
	nulls[1] = from_stage ? ' ' : 'n';
	values[2] = CStringGetTextDatum(to_stage);
	values[3] = TimestampTzGetDatum(changed_at);
	values[4] = CStringGetTextDatum(lm_current_actor());
	values[5] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
	nulls[5] = reason ? ' ' : 'n';

	writing_history = true;
	PG_TRY();
	{
		rc = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_FINALLY();
	{
		writing_history = false;
	}
	PG_END_TRY();
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not append to leadmgmt.stage_history: %s",
			 SPI_result_code_string(rc));
}

PG_FUNCTION_INFO_V1(leadmgmt_lead_stage_record);
Datum
leadmgmt_lead_stage_record(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	newtuple;
	bool		isnull;
	int64		lead_id;
	char	   *from_stage = NULL;
	char	   *to_stage;
	TimestampTz changed_at;
	const PendingMove *pending;
	LmAsOwner	saved;

	lm_check_trigger_context(fcinfo, "lead_stage_record", false, true);
	rel = trigdata->tg_relation;
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		newtuple = trigdata->tg_newtuple;
		from_stage = column_text(rel, trigdata->tg_trigtuple, "stage");
	}
	else
		newtuple = trigdata->tg_trigtuple;

	lead_id = DatumGetInt64(column_value(rel, newtuple, "id", &isnull));
	to_stage = column_text(rel, newtuple, "stage");
	changed_at = DatumGetTimestampTz(column_value(rel, newtuple, "stage_entered_at", &isnull));
	pending = pending_for(lead_id);

	/* the owner of the lead table is the extension owner */
	lm_as_owner_begin(&saved, rel->rd_rel->relowner, LM_OWNER_RESTRICTED);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	insert_history_row(lead_id, from_stage, to_stage, changed_at,
					   pending ? pending->reason : NULL);
	SPI_finish();
	lm_as_owner_end(&saved);

	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------------------
 * History guard
 * ---------------------------------------------------------------------
 */
static bool
lead_exists_as_owner(Oid owner, int64 lead_id)
{
	static SPIPlanPtr plan = NULL;
	LmAsOwner	saved;
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(lead_id);
	bool		exists;

	lm_as_owner_begin(&saved, owner, LM_OWNER_RESTRICTED);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "SELECT 1 FROM leadmgmt.lead l "
									  "WHERE l.id OPERATOR(pg_catalog.=) $1", 1, &type),
						 &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up lead " INT64_FORMAT, lead_id);
	exists = SPI_processed > 0;
	SPI_finish();
	lm_as_owner_end(&saved);
	return exists;
}

static void
refuse_history_change(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("leadmgmt.stage_history is append-only: %s", what),
			 errhint("Stage history is written by leadmgmt.set_stage() and UPDATE of leadmgmt.lead.stage, and removed only with its lead.")));
}

PG_FUNCTION_INFO_V1(leadmgmt_stage_history_guard);
Datum
leadmgmt_stage_history_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TriggerEvent event;

	/*
	 * Checked here rather than with lm_check_trigger_context(): the guard
	 * fires per row (INSERT, UPDATE, DELETE) and per statement (TRUNCATE).
	 */
	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("stage_history_guard: must be fired BEFORE")));
	event = trigdata->tg_event;

	if (TRIGGER_FIRED_BY_TRUNCATE(event))
		refuse_history_change("it cannot be truncated");
	if (TRIGGER_FIRED_BY_UPDATE(event))
		refuse_history_change("rows cannot be updated");
	if (TRIGGER_FIRED_BY_INSERT(event))
	{
		if (!writing_history && !creating_extension)
			refuse_history_change("rows are added only by the extension");
		return PointerGetDatum(trigdata->tg_trigtuple);
	}

	/* DELETE: only the cascade from a deleted lead */
	{
		Relation	rel = trigdata->tg_relation;
		bool		isnull;
		int64		lead_id = DatumGetInt64(column_value(rel, trigdata->tg_trigtuple,
														 "lead_id", &isnull));

		if (lead_exists_as_owner(rel->rd_rel->relowner, lead_id))
			refuse_history_change("rows are removed only together with their lead");
	}
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */

/*
 * The live lead lead_id stands for (lm_follow_merged_into), with error LM005
 * when lead_id or a lead on its chain does not exist.
 */
static int64
live_lead(int64 lead_id, bool key_share)
{
	int64		current;
	bool		exists;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	current = lm_follow_merged_into(lead_id, key_share, &exists);
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_LM_UNKNOWN_LEAD),
				 current == lead_id ?
				 errmsg("lead " INT64_FORMAT " does not exist", lead_id) :
				 errmsg("lead " INT64_FORMAT ", into which lead " INT64_FORMAT " was merged, does not exist",
						current, lead_id)));
	SPI_finish();
	return current;
}

/* Follow merged_into from lead_id; error LM005 when the lead is unknown. */
static int64
resolve_lead(int64 lead_id)
{
	return live_lead(lead_id, false);
}

PG_FUNCTION_INFO_V1(leadmgmt_lead_resolve);
Datum
leadmgmt_lead_resolve(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(resolve_lead(PG_GETARG_INT64(0)));
}

/*
 * The live lead lead_id stands for, locked: every writer that follows
 * merged_into goes through here (set_stage, and upsert_lead, forget_lead,
 * link_external_id and consent through leadmgmt.lead_lock()).
 *
 * Each hop reads the row FOR KEY SHARE.  That waits for a merge_leads() in
 * progress on it (FOR UPDATE) and then returns the row as the merge left it,
 * so a writer blocked behind a merge re-resolves and follows merged_into to
 * the survivor instead of writing to the dropped lead.  Once the live lead
 * is found, the lock keeps merge_leads() from merging it away until our
 * transaction ends; KEY SHARE conflicts with nothing else an ordinary
 * writer takes (not with the NO KEY UPDATE of set_stage or the scoring
 * trigger), and the lock on a dropped lead passed on the way does not
 * block the repointing of merged_into by a later merge, so no deadlock.
 *
 * Runs as the caller: row locks need UPDATE privilege on the table, which
 * every role that writes leads has, and row-level security hides from the
 * caller what it would hide from the UPDATE that follows.  Error LM005 for
 * an unknown lead, LM050 for a circle of merged_into.
 */
int64
lm_lock_lead(int64 lead_id)
{
	return live_lead(lead_id, true);
}

PG_FUNCTION_INFO_V1(leadmgmt_lead_lock);
Datum
leadmgmt_lead_lock(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(lm_lock_lead(PG_GETARG_INT64(0)));
}

/*
 * The UPDATE behind set_stage().  The row is locked first, in a statement of
 * its own: the UPDATE's "stage <> $2" then reads the lead as the last
 * writer committed it, so a move computed against a stale snapshot is not
 * taken for a no-op while another transaction still holds the row.
 */
static Datum
update_stage(int64 lead_id, const char *stage)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr update_plan = NULL;
	static SPIPlanPtr select_plan = NULL;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	Datum		row;

	args[0] = Int64GetDatum(lead_id);
	args[1] = CStringGetTextDatum(stage);
	if (SPI_execute_plan(lm_kept_plan(&lock_plan,
									  "SELECT 1 FROM leadmgmt.lead l "
									  "WHERE l.id OPERATOR(pg_catalog.=) $1 FOR NO KEY UPDATE",
									  1, types),
						 args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not lock lead " INT64_FORMAT, lead_id);
	if (SPI_execute_plan(lm_kept_plan(&update_plan,
									  "UPDATE leadmgmt.lead l SET stage = $2 "
									  "WHERE l.id OPERATOR(pg_catalog.=) $1 "
									  "AND l.stage OPERATOR(pg_catalog.<>) $2 RETURNING l",
									  2, types),
						 args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update lead " INT64_FORMAT, lead_id);
	if (SPI_processed == 0)
	{
		/* same stage again: a no-op that still validates the name */
		lm_stage_lookup(lm_stage_cache(), stage);
		if (SPI_execute_plan(lm_kept_plan(&select_plan,
										  "SELECT l FROM leadmgmt.lead l "
										  "WHERE l.id OPERATOR(pg_catalog.=) $1", 1, types),
							 args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read lead " INT64_FORMAT, lead_id);
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_LM_UNKNOWN_LEAD),
					 errmsg("lead " INT64_FORMAT " does not exist", lead_id)));
	}
	row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return SPI_datumTransfer(row, false, -1);
}

/* run the UPDATE for pending_move, then restore the move that was pending */
static Datum
run_pending_move(PendingMove saved, int64 lead_id, const char *stage)
{
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		result = update_stage(lead_id, stage);
		SPI_finish();
	}
	PG_FINALLY();
	{
		pending_move = saved;
	}
	PG_END_TRY();
	return result;
}

/*
 * Move a lead (already resolved and locked) as set_stage() does; reason may
 * be NULL.  explicit_at: "at" was given (LM003 when it precedes the lead's
 * last change); else "at" is only the earliest time to record (now(), or
 * the activity time for the scoring hand-off).  Returns the updated row.
 */
Datum
lm_set_stage(int64 lead_id, const char *stage, const char *reason,
			 TimestampTz at, bool explicit_at)
{
	PendingMove saved = pending_move;

	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("stage change time must be finite")));

	pending_move.active = true;
	pending_move.internal = false;
	pending_move.lead_id = lead_id;
	pending_move.reason = reason;
	pending_move.at = at;
	pending_move.explicit_at = explicit_at;
	return run_pending_move(saved, lead_id, stage);
}

/*
 * set_stage(lead bigint, stage text, reason text, at timestamptz)
 *		RETURNS leadmgmt.lead
 *
 * "at" equal to now() (the default) is the implicit time, see the header.
 */
PG_FUNCTION_INFO_V1(leadmgmt_set_stage);
Datum
leadmgmt_set_stage(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz at;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("lead id must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stage must not be null"),
				 errhint("Known stages: %s.", lm_stage_list(lm_stage_cache(), -1, false))));

	at = PG_ARGISNULL(3) ? now : PG_GETARG_TIMESTAMPTZ(3);
	PG_RETURN_DATUM(lm_set_stage(lm_lock_lead(PG_GETARG_INT64(0)),
								 text_to_cstring(PG_GETARG_TEXT_PP(1)),
								 PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2)),
								 at, at != now));
}

/*
 * A history row that records an event without a stage change: merge_leads
 * notes the merge on the kept lead even when its stage stays (from_stage =
 * to_stage, the funnel views skip such rows).  Written as the extension
 * owner, at now() or just after the lead's last history row, so the
 * history's unique key and time order hold.
 */
void
lm_stage_note(int64 lead_id, const char *reason)
{
	static SPIPlanPtr plan = NULL;
	LmAsOwner	saved;
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(lead_id);
	bool		isnull;
	char	   *stage;
	TimestampTz at;
	Oid			owner;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "SELECT l.stage, GREATEST(pg_catalog.now(), "
									  "(SELECT pg_catalog.max(h.changed_at) OPERATOR(pg_catalog.+) "
									  "'1 microsecond'::pg_catalog.interval FROM leadmgmt.stage_history h "
									  "WHERE h.lead_id OPERATOR(pg_catalog.=) l.id)), c.relowner "
									  "FROM leadmgmt.lead l, pg_catalog.pg_class c "
									  "WHERE l.id OPERATOR(pg_catalog.=) $1 "
									  "AND c.oid OPERATOR(pg_catalog.=) 'leadmgmt.stage_history'::pg_catalog.regclass",
									  1, &type),
						 &arg, NULL, false, 1) != SPI_OK_SELECT || SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_LM_UNKNOWN_LEAD),
				 errmsg("lead " INT64_FORMAT " does not exist", lead_id)));
	stage = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));

	lm_as_owner_begin(&saved, owner, LM_OWNER_RESTRICTED);
	insert_history_row(lead_id, stage, stage, at, reason);
	lm_as_owner_end(&saved);
	SPI_finish();
}

/*
 * Internal move for leadmgmt.merge_leads (src/identity_merge.c): the kept lead
 * takes the more advanced stage of the lead merged into it even where
 * stage_transition has no such move; recorded in history like any move,
 * at now() (strictly after the lead's last row), with the given reason.
 * Not reachable from SQL on its own.
 */
void
lm_stage_move_internal(int64 lead_id, const char *stage, const char *reason)
{
	PendingMove saved = pending_move;

	pending_move.active = true;
	pending_move.internal = true;
	pending_move.lead_id = lead_id;
	pending_move.reason = reason;
	pending_move.at = GetCurrentTransactionStartTimestamp();
	pending_move.explicit_at = false;
	(void) run_pending_move(saved, lead_id, stage);
}
