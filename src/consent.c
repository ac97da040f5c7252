/*
 * consent.c
 *		E-mail hygiene of new activity: bounces and unsubscribes.
 *
 * What.  The consent part's trigger on leadmgmt.activity
 * (sql/parts/82_consent.sql, doc/identity.md): an activity of the bounce
 * kind marks the lead's address bounced, one of the unsubscribe kind marks
 * it unsubscribed and logs an e-mail consent withdrawal (leadmgmt.consent,
 * source "activity:<kind>").  Unsubscribed beats bounced beats ok, and a
 * status other than ok is never turned into bounced.  The two kinds are
 * the trigger's arguments ('email_bounce', 'unsubscribe').
 *
 * How.  activity_consent (AFTER INSERT, FOR EACH STATEMENT, transition
 * table new_activity) reads the kind of every new row and, only when some
 * row is of one of the two kinds, as the extension owner (restricted):
 * resolves their leads through merged_into (the shared batched walk,
 * src/pg/merged_into_batch.h: a row may name a lead merged meanwhile), reads
 * their e-mail status, writes the leads whose status changes in one UPDATE
 * and the withdrawals in one INSERT.
 *
 * Locks.  The trigger is named activity_suppression so that it fires after
 * activity_score_statement (PostgreSQL fires the triggers of one event in
 * name order).  That one locks every lead of the statement in id order, so
 * this one takes no new lock and concurrent loads cannot deadlock on the
 * order in which the two triggers lock.
 *
 * State: none beyond the statement.
 *
 * Complexity: O(n) over the statement's n rows (one column compared), then
 * O(h log h) and three set-based statements for its h bounces and
 * unsubscribes.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "leadmgmt.h"

/* a bounce or an unsubscribe seen in the statement */
typedef struct HygieneRow
{
	int64		lead_id;
	TimestampTz at;
	bool		unsubscribe;	/* else a bounce */
} HygieneRow;

/* the text argument n of the trigger, as a varlena to compare with */
static text *
kind_argument(TriggerData *trigdata, int n)
{
	if (trigdata->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_consent: needs two arguments, the bounce and the unsubscribe kind")));
	return cstring_to_text(trigdata->tg_trigger->tgargs[n]);
}

static bool
same_text(Datum d, const text *kind)
{
	text	   *t = DatumGetTextPP(d);
	int			len = VARSIZE_ANY_EXHDR(t);

	return len == VARSIZE_ANY_EXHDR(kind) && memcmp(VARDATA_ANY(t), VARDATA_ANY(kind), len) == 0;
}

/* the statement's bounces and unsubscribes */
static HygieneRow *
collect(TriggerData *trigdata, int64 *nrows)
{
	Relation	rel = trigdata->tg_relation;
	text	   *bounce = kind_argument(trigdata, 0);
	text	   *unsubscribe = kind_argument(trigdata, 1);
	int			kind_att = lm_column(rel, "kind");
	int			lead_att = lm_column(rel, "lead_id");
	int			at_att = lm_column(rel, "occurred_at");
	TupleTableSlot *slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
	Tuplestorestate *store = trigdata->tg_newtable;
	HygieneRow *rows = NULL;
	int64		n = 0;
	int64		cap = 0;

	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		bool		isnull;
		Datum		kind = slot_getattr(slot, kind_att, &isnull);
		bool		is_unsubscribe;

		if (isnull)
			continue;
		is_unsubscribe = same_text(kind, unsubscribe);
		if (!is_unsubscribe && !same_text(kind, bounce))
			continue;
		rows = lm_grow_array(CurrentMemoryContext, rows, &cap, n + 1, sizeof(HygieneRow), 16,
							 PG_INT32_MAX, "activity_consent", "rows");
		rows[n].lead_id = DatumGetInt64(slot_getattr(slot, lead_att, &isnull));
		rows[n].at = DatumGetTimestampTz(slot_getattr(slot, at_att, &isnull));
		rows[n].unsubscribe = is_unsubscribe;
		n++;
	}
	ExecDropSingleTupleTableSlot(slot);
	*nrows = n;
	return rows;
}

static int
lead_cmp(const void *a, const void *b)
{
	int64		x = ((const HygieneRow *) a)->lead_id;
	int64		y = ((const HygieneRow *) b)->lead_id;

	return x < y ? -1 : x > y ? 1 : 0;
}

static Datum
array_of(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, type, len, byval, align));
}

/* e-mail status after the statement; NULL: unchanged */
static const char *
new_email_status(const char *status, bool bounced, bool unsubscribed)
{
	if (status == NULL)
		return NULL;
	if (unsubscribed)
		return strcmp(status, "unsubscribed") != 0 ? "unsubscribed" : NULL;
	if (bounced)
		return strcmp(status, "ok") == 0 ? "bounced" : NULL;
	return NULL;
}

/* one UPDATE for the leads whose e-mail status changes */
static void
update_status(const HygieneRow *rows, int64 n)
{
	static SPIPlanPtr read_plan = NULL;
	static SPIPlanPtr update_plan = NULL;
	Oid			types[2] = {INT8ARRAYOID, TEXTARRAYOID};
	Datum	   *ids = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	Datum	   *statuses = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	Datum		args[2];
	int			nids = 0;
	int			m = 0;
	int64		i;
	uint64		r;

	for (i = 0; i < n; i++)
		if (nids == 0 || DatumGetInt64(ids[nids - 1]) != rows[i].lead_id)
			ids[nids++] = Int64GetDatum(rows[i].lead_id);
	args[0] = array_of(ids, nids, INT8OID);
	if (SPI_execute_plan(lm_kept_plan(&read_plan,
									  "SELECT l.id, l.email_status FROM leadmgmt.lead l "
									  "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY l.id",
									  1, types),
						 args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.lead.email_status");
	for (r = 0, i = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		char	   *status = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2);
		bool		bounced = false;
		bool		unsubscribed = false;
		const char *to;

		while (i < n && rows[i].lead_id < id)
			i++;
		for (; i < n && rows[i].lead_id == id; i++)
		{
			unsubscribed |= rows[i].unsubscribe;
			bounced |= !rows[i].unsubscribe;
		}
		to = new_email_status(status, bounced, unsubscribed);
		if (to == NULL)
			continue;
		ids[m] = Int64GetDatum(id);
		statuses[m] = CStringGetTextDatum(to);
		m++;
	}
	if (m == 0)
		return;
	args[0] = array_of(ids, m, INT8OID);
	args[1] = array_of(statuses, m, TEXTOID);
	if (SPI_execute_plan(lm_kept_plan(&update_plan,
									  "UPDATE leadmgmt.lead l SET email_status = u.email_status "
									  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) "
									  "AS u(id, email_status) WHERE l.id OPERATOR(pg_catalog.=) u.id",
									  2, types),
						 args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update leadmgmt.lead.email_status");
}

/* an unsubscribe withdraws e-mail consent: one consent row per unsubscribe */
static void
record_withdrawals(const HygieneRow *rows, int64 n, const char *kind)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTOID};
	Datum	   *ids = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	Datum	   *at = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	Datum		args[3];
	int			m = 0;
	int64		i;

	for (i = 0; i < n; i++)
	{
		if (!rows[i].unsubscribe)
			continue;
		ids[m] = Int64GetDatum(rows[i].lead_id);
		at[m] = TimestampTzGetDatum(rows[i].at);
		m++;
	}
	if (m == 0)
		return;
	args[0] = array_of(ids, m, INT8OID);
	args[1] = array_of(at, m, TIMESTAMPTZOID);
	args[2] = CStringGetTextDatum(psprintf("activity:%s", kind));
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "INSERT INTO leadmgmt.consent (lead_id, channel, granted, source, at, recorded_by) "
									  "SELECT u.lead_id, 'email', false, $3, u.at, SESSION_USER "
									  "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(lead_id, at) "
									  "ORDER BY u.lead_id, u.at",
									  3, types),
						 args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into leadmgmt.consent");
}

PG_FUNCTION_INFO_V1(leadmgmt_activity_consent);
Datum
leadmgmt_activity_consent(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HygieneRow *rows;
	int64		n;
	int64		i;
	int64	   *ids;
	LmLeadMap	map = {0};
	LmAsOwner	owner;

	lm_check_trigger_context(fcinfo, "activity_consent", false, false);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_consent: must be fired AFTER INSERT with REFERENCING NEW TABLE")));
	rows = collect(trigdata, &n);
	if (n == 0)
		return PointerGetDatum(NULL);

	lm_as_owner_begin(&owner, trigdata->tg_relation->rd_rel->relowner, LM_OWNER_RESTRICTED);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* a row may name a merged lead (activity_score_statement moved it) */
	ids = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
		ids[i] = rows[i].lead_id;
	lm_merged_into_walk(&map, ids, (int) n, lm_merged_into_hop_spi, NULL);
	for (i = 0; i < n; i++)
		rows[i].lead_id = lm_lead_map_get(&map, rows[i].lead_id);
	qsort(rows, n, sizeof(HygieneRow), lead_cmp);
	update_status(rows, n);
	record_withdrawals(rows, n, trigdata->tg_trigger->tgargs[1]);
	SPI_finish();
	lm_as_owner_end(&owner);
	return PointerGetDatum(NULL);
}
