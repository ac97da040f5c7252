/*
 * ingest.c
 *		The activity ingest path: the two triggers on leadmgmt.activity that
 *		resolve, score and store every new row (INSERT, track(), COPY).
 *
 * What.  Every new activity row lands on the lead its lead_id stands for
 * today (merged_into), gets the points of the scoring rules it matches, and
 * counts in its lead's decayed score, caps and hand-off, exactly as a full
 * rescore() would compute them.  Neither trigger runs a query per row, so a
 * COPY costs little more than into a plain table with the same indexes and
 * foreign keys (doc/activity.md, bench/ingest.sh).  E-mail hygiene is the
 * consent part's own trigger (consent.c), which fires after these.
 *
 * How.
 *	activity_score_row (BEFORE INSERT, FOR EACH ROW)
 *		Deforms the row once, puts it on the lead its lead_id resolves to
 *		(looked up once per lead and statement: the shared merged_into walk,
 *		src/pg/merged_into_batch.h, with a direct index probe of the lead's
 *		primary key under a FOR KEY SHARE row lock as its hop, no SQL), and
 *		matches it against the cached rules in C: unless the row arrives with
 *		points (a restore or a migration) it gets their sum.  The matches are
 *		remembered for the statement, so the statement trigger need not read
 *		the rows again.
 *
 *	activity_score_statement (AFTER INSERT, FOR EACH STATEMENT, with the
 *	transition table new_activity), as the extension owner, once:
 *		 0. when a row may have escaped the row trigger (see IngestStatement),
 *			reads the transition table, resolves the statement's distinct
 *			leads again (one query per merged_into level) and moves the rows
 *			of a merged lead (one UPDATE);
 *		 1. locks every lead of the statement in id order (FOR NO KEY UPDATE,
 *			which does not conflict with the foreign keys' KEY SHARE), so
 *			concurrent COPYs neither deadlock nor lose updates, and the
 *			consent trigger after it takes no new lock; a lead found merged
 *			under the lock resolves further and the leads are locked again;
 *		 2. applies max_times caps (scoring.c): the first N matches in
 *			occurred_at order win; a match beyond the cap loses its points
 *			again, and a back-fill before an awarded match makes the lead be
 *			recomputed from its log by rescore_leads();
 *		 3. folds the awarded points into one decay component per lead and
 *			half-life, exactly, whatever the order in which activities arrive;
 *		 4. writes each lead once: its state, and score / score_at;
 *		 5. hands leads that crossed mql_threshold to sales (scoring.c).
 *
 * State.  IngestStatement, in a memory context under TopTransactionContext:
 * the leads the row trigger resolved (a simplehash, lead id -> target), the
 * matches, and what it saw (rows, command id, rule cache generation).  The
 * statement trigger uses it only when it describes exactly the transition
 * table (same row count, one command, same rules), and frees it; a
 * transaction callback forgets it at commit or abort.
 *
 * Complexity per statement of n rows, m matches, k leads: O(n) deforming
 * and matching, O(m log m + k log k) sorting, k index probes, and a constant
 * number of set-based SQL statements over arrays of k leads.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "leadmgmt.h"
#include "score_state.h"
#include "scoring.h"

/* ---------------------------------------------------------------------
 * What the row trigger remembers for its statement
 * ---------------------------------------------------------------------
 */
typedef struct SeenLead
{
	int64		lead_id;		/* hash key: the id a row named */
	int64		target;			/* the live lead it stands for */
	char		status;			/* simplehash's */
} SeenLead;

#define SH_PREFIX seenlead
#define SH_ELEMENT_TYPE SeenLead
#define SH_KEY_TYPE int64
#define SH_KEY lead_id
#define SH_HASH_KEY(tb, key) murmurhash32((uint32) (key) ^ (uint32) ((uint64) (key) >> 32))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct IngestStatement
{
	MemoryContext cxt;
	seenlead_hash *leads;
	Match	   *matches;
	int64		nmatches;
	int64		cap;
	int64		rows;			/* rows the row trigger saw */
	CommandId	cid;			/* command of the first row */
	bool		cid_changed;	/* a later row came from another command */
	uint64		rules;			/* rule cache generation of the matches */
	const ActivityColumns *cols;
	Datum	   *values;			/* deform buffer, natts */
	bool	   *nulls;
	Oid			lead_relid;		/* leadmgmt.lead and its primary key */
	Oid			lead_pkey;
	int			merged_attnum;
} IngestStatement;

static IngestStatement *pending = NULL;
static bool xact_callback_registered = false;

static void
forget_at_xact_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		pending = NULL;			/* freed with TopTransactionContext */
}

static IngestStatement *
statement_state(Relation rel)
{
	IngestStatement *st;
	MemoryContext cxt;
	Relation	lead_rel;
	TupleDesc	desc = RelationGetDescr(rel);
	CommandId	cid = GetCurrentCommandId(false);

	if (pending != NULL)
	{
		if (pending->cid != cid)
			pending->cid_changed = true;
		return pending;
	}
	if (!xact_callback_registered)
	{
		RegisterXactCallback(forget_at_xact_end, NULL);
		xact_callback_registered = true;
	}
	cxt = AllocSetContextCreate(TopTransactionContext, "leadmgmt activity statement",
								ALLOCSET_DEFAULT_SIZES);
	st = MemoryContextAllocZero(cxt, sizeof(IngestStatement));
	st->cxt = cxt;
	st->leads = seenlead_create(cxt, 64, NULL);
	st->cid = cid;
	st->rules = lm_rule_cache()->generation;
	st->cols = lm_activity_columns(desc);
	st->values = MemoryContextAlloc(cxt, sizeof(Datum) * desc->natts);
	st->nulls = MemoryContextAlloc(cxt, sizeof(bool) * desc->natts);
	st->lead_relid = get_relname_relid("lead", lm_schema_oid());
	if (!OidIsValid(st->lead_relid))
		elog(ERROR, "leadmgmt.lead does not exist");
	lead_rel = table_open(st->lead_relid, AccessShareLock);
#if PG_VERSION_NUM >= 180000
	st->lead_pkey = RelationGetPrimaryKeyIndex(lead_rel, false);
#else
	st->lead_pkey = RelationGetPrimaryKeyIndex(lead_rel);
#endif
	st->merged_attnum = lm_column(lead_rel, "merged_into");
	table_close(lead_rel, AccessShareLock);
	pending = st;
	return st;
}

/* the statement trigger takes what the row triggers gathered */
static IngestStatement *
take_statement_state(void)
{
	IngestStatement *st = pending;

	pending = NULL;
	return st;
}

static void
free_statement_state(IngestStatement *st)
{
	if (st != NULL)
		MemoryContextDelete(st->cxt);
}

/* ---------------------------------------------------------------------
 * Lead resolution of new rows: the shared walk, hopping by index probe
 * ---------------------------------------------------------------------
 */

/*
 * merged_into of a lead, read under a FOR KEY SHARE lock of its row, as
 * SELECT ... FOR KEY SHARE reads it: a merge in progress (FOR UPDATE) is
 * waited for, and under READ COMMITTED its outcome is read from the row's
 * latest version.  The foreign key check takes the same lock later anyway.
 * false: no such lead (the foreign key reports it).
 */
static bool
probe_merged_into(Relation lead_rel, Relation pkey, int merged_attnum, int64 lead_id,
				  int64 *merged_into)
{
	IndexScanDesc scan;
	ScanKeyData key;
	TupleTableSlot *slot = table_slot_create(lead_rel, NULL);
	Snapshot	snapshot = GetActiveSnapshot();
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(lead_id));
#if PG_VERSION_NUM >= 180000
	scan = index_beginscan(lead_rel, pkey, snapshot, NULL, 1, 0);
#else
	scan = index_beginscan(lead_rel, pkey, snapshot, 1, 0);
#endif
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	*merged_into = 0;
	if (found)
	{
		TM_FailureData tmfd;
		TM_Result	result;

		result = table_tuple_lock(lead_rel, &slot->tts_tid, snapshot, slot, snapshot->curcid,
								  LockTupleKeyShare, LockWaitBlock,
								  IsolationUsesXactSnapshot() ? 0 : TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
								  &tmfd);
		switch (result)
		{
			case TM_Ok:
				break;			/* slot holds the locked, latest version */
			case TM_SelfModified:
				/* changed by this transaction after the statement began: as read */
				break;
			case TM_Updated:
			case TM_Deleted:
				if (IsolationUsesXactSnapshot())
					ereport(ERROR,
							(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
							 errmsg("could not serialize access due to concurrent update")));
				found = false;	/* deleted meanwhile */
				break;
			default:
				elog(ERROR, "unexpected table_tuple_lock status: %u", result);
		}
	}
	if (found)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, merged_attnum, &isnull);

		if (!isnull)
			*merged_into = DatumGetInt64(d);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

typedef struct ProbeHop
{
	Relation	lead_rel;
	Relation	pkey;
	int			merged_attnum;
} ProbeHop;

/* one level of the walk (LmMergedIntoHop) by index probes */
static int
probe_hop(const int64 *ids, int n, LmLeadMove *out, void *arg)
{
	ProbeHop   *h = arg;
	int			k = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		int64		next;

		if (probe_merged_into(h->lead_rel, h->pkey, h->merged_attnum, ids[i], &next) &&
			next != 0)
		{
			out[k].from = ids[i];
			out[k].to = next;
			k++;
		}
	}
	return k;
}

/* the lead a new row's lead id stands for (itself when unknown or live) */
static int64
resolve_row_lead(IngestStatement *st, int64 lead_id)
{
	SeenLead   *entry = seenlead_lookup(st->leads, lead_id);
	ProbeHop	hop;
	LmLeadMap	map = {0};
	int64		id = lead_id;
	int64		target;
	bool		found;

	if (entry != NULL)
		return entry->target;
	hop.lead_rel = table_open(st->lead_relid, AccessShareLock);
	hop.pkey = index_open(st->lead_pkey, AccessShareLock);
	hop.merged_attnum = st->merged_attnum;
	lm_merged_into_walk(&map, &id, 1, probe_hop, &hop);
	index_close(hop.pkey, AccessShareLock);
	table_close(hop.lead_rel, AccessShareLock);
	target = lm_lead_map_get(&map, lead_id);
	entry = seenlead_insert(st->leads, lead_id, &found);
	entry->target = target;
	return target;
}

/* ---------------------------------------------------------------------
 * BEFORE ROW trigger
 * ---------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(leadmgmt_activity_score_row);
Datum
leadmgmt_activity_score_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	IngestStatement *st;
	const ActivityColumns *cols;
	TupleDesc	desc;
	HeapTuple	tuple;
	HeapTuple	newtuple;
	ActivityRow row;
	RuleCache  *cache;
	float8		points = 0;
	bool		changed = false;
	int			i;

	lm_check_trigger_context(fcinfo, "activity_score_row", true, true);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_row: must be fired for INSERT")));
	st = statement_state(trigdata->tg_relation);
	cols = st->cols;
	desc = RelationGetDescr(trigdata->tg_relation);
	tuple = trigdata->tg_trigtuple;
	heap_deform_tuple(tuple, desc, st->values, st->nulls);
	lm_activity_from_values(st->values, st->nulls, cols, &row);
	st->rows++;

	/* a row for a merged lead goes to the lead it was merged into */
	if (!st->nulls[cols->lead_id - 1])
	{
		int64		target = resolve_row_lead(st, row.lead_id);

		if (target != row.lead_id)
		{
			st->values[cols->lead_id - 1] = Int64GetDatum(target);
			row.lead_id = target;
			changed = true;
		}
	}

	/*
	 * The matches count in the lead's score whether or not the row arrives
	 * with points, as rescore() counts them; a row with points keeps them.
	 */
	cache = lm_rule_cache();
	if (cache->generation != st->rules)
		st->cid_changed = true; /* rules changed mid-statement: match again */
	for (i = 0; i < cache->nrules; i++)
	{
		Match	   *m;

		if (!lm_rule_matches(&cache->rules[i], &row))
			continue;
		points += cache->rules[i].points;
		st->matches = lm_grow_array(st->cxt, st->matches, &st->cap, st->nmatches + 1,
									sizeof(Match), 1024, PG_INT32_MAX, "activity ingest",
									"matches");
		m = &st->matches[st->nmatches++];
		m->lead_id = row.lead_id;
		m->rule = i;
		m->occurred_at = row.occurred_at;
		m->activity_id = row.id;
		m->awarded = true;
	}
	if (!row.points_given)
	{
		st->values[cols->points - 1] = Float8GetDatum(points);
		st->nulls[cols->points - 1] = false;
		changed = true;
	}
	if (!changed)
		return PointerGetDatum(tuple);
	/* as heap_modify_tuple does, without deforming the row a second time */
	newtuple = heap_form_tuple(desc, st->values, st->nulls);
	newtuple->t_data->t_ctid = tuple->t_data->t_ctid;
	newtuple->t_self = tuple->t_self;
	newtuple->t_tableOid = tuple->t_tableOid;
	return PointerGetDatum(newtuple);
}

/* ---------------------------------------------------------------------
 * AFTER STATEMENT trigger
 * ---------------------------------------------------------------------
 */
/* the statement's rows as (activity id, lead id), for moving rows */
typedef struct RowLead
{
	int64		activity_id;
	int64		lead_id;
} RowLead;

/* what the statement trigger works on */
typedef struct StatementWork
{
	Match	   *matches;
	int64		nmatches;
	int64	   *ids;			/* the leads of the statement's rows */
	int64		nids;
	RowLead    *rows;			/* only read when rows must move */
	int64		nrows;
	LmLeadMap	map;			/* merged leads found by the statement trigger */
} StatementWork;

/* matches in (lead, rule, time, activity) order: caps walk them so */
static inline int
match_cmp(const Match *x, const Match *y)
{
	int			c;

	if ((c = CMP(x->lead_id, y->lead_id)) != 0 || (c = CMP(x->rule, y->rule)) != 0 ||
		(c = CMP(x->occurred_at, y->occurred_at)) != 0)
		return c;
	return CMP(x->activity_id, y->activity_id);
}

#define ST_SORT sort_matches
#define ST_ELEMENT_TYPE Match
#define ST_COMPARE(a, b) match_cmp(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Read the transition table: every row's (activity id, lead id), and, when
 * match is set, its matches against the rules (the row trigger's were not
 * usable).
 */
static void
read_rows(Tuplestorestate *store, TupleDesc desc, RuleCache *cache, bool match,
		  StatementWork *w)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt = AllocSetContextCreate(outer, "leadmgmt scoring row",
												 ALLOCSET_SMALL_SIZES);
	const ActivityColumns *cols = lm_activity_columns(desc);
	int64		cap = 0;
	int64		caprows = 0;

	w->nrows = 0;
	tuplestore_rescan(store);
	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		ActivityRow row;
		int			i;

		MemoryContextReset(rowcxt);
		MemoryContextSwitchTo(rowcxt);
		slot_getallattrs(slot);
		lm_activity_from_values(slot->tts_values, slot->tts_isnull, cols, &row);
		MemoryContextSwitchTo(outer);
		APPEND(w->rows, w->nrows, caprows);
		w->rows[w->nrows].activity_id = row.id;
		w->rows[w->nrows].lead_id = row.lead_id;
		w->nrows++;
		for (i = 0; match && i < cache->nrules; i++)
		{
			if (!lm_rule_matches(&cache->rules[i], &row))
				continue;
			APPEND(w->matches, w->nmatches, cap);
			w->matches[w->nmatches].lead_id = row.lead_id;
			w->matches[w->nmatches].rule = i;
			w->matches[w->nmatches].occurred_at = row.occurred_at;
			w->matches[w->nmatches].activity_id = row.id;
			w->matches[w->nmatches].awarded = true;
			w->nmatches++;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
}

/* matches and leads through the map of merged leads */
static void
apply_map(StatementWork *w)
{
	int64		i;

	if (w->map.n == 0)
		return;
	for (i = 0; i < w->nmatches; i++)
		w->matches[i].lead_id = lm_lead_map_get(&w->map, w->matches[i].lead_id);
	for (i = 0; i < w->nids; i++)
		w->ids[i] = lm_lead_map_get(&w->map, w->ids[i]);
	w->nids = lm_sort_unique_ids(w->ids, w->nids);
}

/*
 * Rows inserted with the id of a merged lead go to the lead it resolves
 * to: one UPDATE for all of them (rare: ids from old links and cookies).
 */
static void
move_rows(StatementWork *w)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2];
	int64	   *ids = NULL;
	int64	   *to;
	int64		n = 0;
	int64		cap = 0;
	int64		i;

	if (w->map.n == 0)
		return;
	for (i = 0; i < w->nrows; i++)
		if (lm_lead_map_get(&w->map, w->rows[i].lead_id) != w->rows[i].lead_id)
			n++;
	if (n == 0)
		return;
	ids = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	to = palloc_extended(sizeof(int64) * n, MCXT_ALLOC_HUGE);
	for (i = 0, cap = 0; i < w->nrows; i++)
	{
		int64		target = lm_lead_map_get(&w->map, w->rows[i].lead_id);

		if (target == w->rows[i].lead_id)
			continue;
		ids[cap] = w->rows[i].activity_id;
		to[cap] = target;
		cap++;
	}
	args[0] = lm_int8_datum_array(ids, n);
	args[1] = lm_int8_datum_array(to, n);
	lm_run_plan(&plan,
				"UPDATE leadmgmt.activity a SET lead_id = m.lead_id "
				"FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(id, lead_id) "
				"WHERE a.id OPERATOR(pg_catalog.=) m.id",
				2, types, args, SPI_OK_UPDATE);
}

/*
 * Every lead of the statement (sorted, distinct ids), with the latest time
 * of its matches (matches sorted by lead).
 */
static LeadState *
statement_leads(const StatementWork *w, int *nleads)
{
	LeadState  *leads = palloc_extended(sizeof(LeadState) * Max(w->nids, 1),
										MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	LeadState  *hint = NULL;
	int64		i;

	for (i = 0; i < w->nids; i++)
	{
		leads[i].lead_id = w->ids[i];
		leads[i].latest_match = DT_NOBEGIN;
	}
	for (i = 0; i < w->nmatches; i++)
	{
		LeadState  *lead = lm_lead_of(leads, w->nids, w->matches[i].lead_id, &hint);

		if (lead == NULL)
			continue;
		lead->has_matches = true;
		if (w->matches[i].occurred_at > lead->latest_match)
			lead->latest_match = w->matches[i].occurred_at;
	}
	*nleads = (int) w->nids;
	return leads;
}

/*
 * Lock the leads in id order (FOR NO KEY UPDATE does not conflict with the
 * KEY SHARE locks of the foreign keys), then read their stage and scoring
 * state.  Two statements on purpose: the read must take its snapshot after
 * the locks are granted, or it would miss what the session we waited for
 * wrote.  Returns the number of leads that turn out to have been merged
 * meanwhile: their ids are left in merged[].
 */
static int
lock_and_read_leads(LeadState *leads, int nleads, int64 *merged)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	Oid			type = INT8ARRAYOID;
	int			count;
	Datum		arg = lm_lead_id_array(leads, nleads, false, &count);
	int			nmerged = 0;
	uint64		i;

	lm_run_plan(&lock_plan,
			 "SELECT 1 FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) "
			 "ORDER BY l.id FOR NO KEY UPDATE",
			 1, &type, &arg, SPI_OK_SELECT);
	lm_run_plan(&read_plan,
			 "SELECT l.id, l.external_id, l.stage, l.stage_entered_at, s.state, "
			 "l.merged_into "
			 "FROM leadmgmt.lead l LEFT JOIN leadmgmt.score_state s "
			 "ON s.lead_id OPERATOR(pg_catalog.=) l.id "
			 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1)",
			 1, &type, &arg, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		LeadState  *lead = lm_find_lead(leads, nleads,
									 DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));
		Datum		d;

		if (lead == NULL)
			continue;
		(void) SPI_getbinval(tup, desc, 6, &isnull);
		if (!isnull)
		{
			merged[nmerged++] = lead->lead_id;
			continue;
		}
		lead->found = true;
		lead->external_id = SPI_getvalue(tup, desc, 2);
		lead->stage = SPI_getvalue(tup, desc, 3);
		lead->stage_entered_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		lead->had_state = !isnull;
		lm_state_from_bytea(isnull ? NULL : DatumGetByteaPP(d), &lead->state);
	}
	return nmerged;
}

/*
 * The statement's matches and leads: the row trigger's when they describe
 * exactly the transition table, else read from it and resolved again.
 */
static void
gather(IngestStatement *st, Tuplestorestate *store, TupleDesc desc, RuleCache *cache,
	   int64 nrows, StatementWork *w)
{
	int64	   *scratch;
	int64		i;

	if (st != NULL && st->rows == nrows && !st->cid_changed && st->rules == cache->generation)
	{
		seenlead_iterator it;
		SeenLead   *e;

		w->matches = st->matches;
		w->nmatches = st->nmatches;
		w->ids = palloc_extended(sizeof(int64) * Max(st->leads->members, 1), MCXT_ALLOC_HUGE);
		seenlead_start_iterate(st->leads, &it);
		while ((e = seenlead_iterate(st->leads, &it)) != NULL)
			w->ids[w->nids++] = e->target;
		w->nids = lm_sort_unique_ids(w->ids, w->nids);
		return;
	}

	/*
	 * A row escaped the row trigger (a nested statement, a command of this
	 * transaction between two rows, a rule edited mid-statement): match and
	 * resolve from the transition table.  No row lock is needed here: the
	 * foreign key check of each new row holds FOR KEY SHARE on its lead, so
	 * a merge of that lead (FOR UPDATE) either committed before, and is seen
	 * here, or waits for this transaction and then moves the rows itself.
	 */
	read_rows(store, desc, cache, true, w);
	w->ids = palloc_extended(sizeof(int64) * Max(w->nrows, 1), MCXT_ALLOC_HUGE);
	scratch = palloc_extended(sizeof(int64) * Max(w->nrows, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < w->nrows; i++)
		w->ids[i] = scratch[i] = w->rows[i].lead_id;
	w->nids = w->nrows;
	lm_merged_into_walk(&w->map, scratch, w->nrows, lm_merged_into_hop_spi, NULL);
	w->nids = lm_sort_unique_ids(w->ids, w->nids);
	apply_map(w);
	pfree(scratch);
}

PG_FUNCTION_INFO_V1(leadmgmt_activity_score_statement);
Datum
leadmgmt_activity_score_statement(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	IngestStatement *st;
	RuleCache  *cache;
	StatementWork w;
	LeadState  *leads = NULL;
	int			nleads = 0;
	int64		nrows;
	int64	   *merged;
	LmAsOwner	owner;
	int			i;

	lm_check_trigger_context(fcinfo, "activity_score_statement", false, false);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_statement: must be fired AFTER INSERT with REFERENCING NEW TABLE")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	st = take_statement_state();
	nrows = tuplestore_tuple_count(trigdata->tg_newtable);
	if (nrows == 0)
	{
		free_statement_state(st);
		return PointerGetDatum(NULL);
	}
	cache = lm_rule_cache();
	memset(&w, 0, sizeof(w));

	/*
	 * Bookkeeping runs as the extension owner (owner of the activity table),
	 * allowed to create temporary tables: rescore_leads() builds them for
	 * back-filled leads (src/pg/as_owner.h).
	 */
	lm_as_owner_begin(&owner, rel->rd_rel->relowner, LM_OWNER_TEMP_TABLES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	gather(st, trigdata->tg_newtable, desc, cache, nrows, &w);

	/*
	 * Lock and read every lead of the statement; a lead merged since it was
	 * resolved (its merge committed in between) resolves further, and the
	 * leads are locked and read again (the locks already held stay: harmless)
	 */
	merged = palloc_extended(sizeof(int64) * Max(w.nids, 1), MCXT_ALLOC_HUGE);
	for (;;)
	{
		int			nmerged;

		sort_matches(w.matches, w.nmatches);
		leads = statement_leads(&w, &nleads);
		nmerged = lock_and_read_leads(leads, nleads, merged);
		if (nmerged == 0)
			break;
		lm_merged_into_walk(&w.map, merged, nmerged, lm_merged_into_hop_spi, NULL);
		apply_map(&w);
	}

	/*
	 * A merge that ran inside or alongside this statement (map not empty)
	 * has already rebuilt its leads from their log, rows of this statement
	 * included (merge_score): adding this statement's points on top would
	 * count them twice, so those leads are rebuilt from the log once more.
	 */
	if (w.map.n > 0)
	{
		if (w.rows == NULL)
			read_rows(trigdata->tg_newtable, desc, cache, false, &w);
		move_rows(&w);
		for (i = 0; i < nleads; i++)
			leads[i].recompute = true;
	}

	/* scores, caps, hand-off */
	lm_apply_caps(w.matches, (int) w.nmatches, cache, leads, nleads);
	lm_fold_points(w.matches, (int) w.nmatches, cache, leads, nleads);
	lm_store_scores(w.matches, (int) w.nmatches, cache, leads, nleads);
	lm_hand_off_hot_leads(leads, nleads);

	SPI_finish();
	lm_as_owner_end(&owner);
	free_statement_state(st);
	return PointerGetDatum(NULL);
}
