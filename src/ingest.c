/*
 * ingest.c
 *		The activity ingest path: the two triggers on leadmgmt.activity that
 *		resolve, score and store every new row (INSERT, track(), COPY).
 *
 * Two triggers on leadmgmt.activity share the work of ingest (doc/design.md),
 * and neither runs a query per row, so a COPY costs little more than into a
 * plain table with the same indexes and foreign keys (doc/activity.md,
 * bench/ingest.sh):
 *
 *	activity_score_row (BEFORE INSERT, FOR EACH ROW)
 *		Puts the row on the lead its lead_id resolves to through merged_into,
 *		looked up once per lead and statement by an index probe under a FOR
 *		KEY SHARE row lock (no SQL, resolve_row_lead), and, unless the row
 *		arrives with points (a restore or a migration), sets points to the
 *		sum of the matching rules' points, matched against the cached rules
 *		in C.
 *
 *	activity_score_statement (AFTER INSERT, FOR EACH STATEMENT, with the
 *	transition table new_activity)
 *		Running as the extension owner, in one pass per statement:
 *		 0. when a row may have escaped the row trigger's lookup (see
 *			note_row_seen), resolves the statement's distinct leads again
 *			(one query) and moves the rows of a merged lead (one UPDATE);
 *		 1. locks the affected leads in id order (FOR NO KEY UPDATE, which
 *			does not conflict with the foreign keys' KEY SHARE), so
 *			concurrent COPYs neither deadlock nor lose updates; a lead found
 *			merged under the lock resolves further and the leads are locked
 *			again;
 *		 2. applies max_times caps: the first N matches in occurred_at order
 *			win; a match beyond the cap loses its points again, and a match
 *			earlier than an already awarded one (a back-fill) makes that lead
 *			be recomputed from its log by rescore_leads();
 *		 3. folds the awarded points into one decay component per lead and
 *			half-life (leadmgmt.score_component), exactly, whatever the order
 *			in which activities arrive;
 *		 4. writes each lead once: its state, and score / score_at (the total
 *			as of its latest scored activity) with email_status (bounced,
 *			unsubscribed) in one UPDATE; unsubscribes also log a consent
 *			withdrawal;
 *		 5. moves leads in inquiry or recycled whose score reached
 *			mql_threshold through activity within handoff_window of now to
 *			mql (reason "score >= threshold") and NOTIFYs notify_channel with
 *			{"lead_id", "external_id", "score", "stage"}.  NOTIFY is
 *			transactional: delivered on commit, dropped on rollback.
 *
 * Rule cache: the effective rules (active, not overridden by a user rule)
 * are loaded once per session into RuleCache and dropped by a relcache
 * callback when leadmgmt.scoring_rule changes (a statement trigger there
 * sends the invalidation).  Matching is O(rules of the row's kind).
 *
 * Complexity per statement of n rows, m matches, k leads: O(n) matching,
 * O(n log n + m log m) sorting, k index probes in the row trigger, and a
 * constant number of set-based SQL statements over arrays of k leads.
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
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "decay.h"
#include "leadmgmt.h"
#include "score_state.h"
#include "scoring.h"

static HTAB *resolved_leads = NULL; /* see resolve_row_lead() */
static uint32 statement_generation = 1; /* see note_row_seen() */
static int64 rows_seen = 0;
static CommandId rows_cid = InvalidCommandId;
static bool rows_cid_changed = false;
static bool xact_callback_registered = false;

static void
forget_at_xact_end(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		resolved_leads = NULL;	/* freed with TopTransactionContext */
		rows_seen = 0;
		rows_cid_changed = false;
	}
}

/* ---------------------------------------------------------------------
 * Lead resolution of new rows, remembered for the statement
 * ---------------------------------------------------------------------
 */

/*
 * lead id -> the lead it resolves to, for the leads the current statement
 * has seen: a COPY names each lead many times and looks each up once, by a
 * direct index probe of the lead table's primary key under a FOR KEY SHARE
 * row lock (no SQL), so a merge in progress is waited for as the foreign
 * key check would wait.  The statement trigger checks every lead of the
 * statement again with a fresh snapshot and moves what it finds
 * (resolve_merged): a lead merged between two of the statement's rows, or
 * under a deferred foreign key.  Lives in TopTransactionContext; the
 * statement trigger forgets it.
 */
typedef struct ResolvedLead
{
	int64		lead_id;		/* hash key */
	int64		target;
	uint32		generation;		/* statement_generation when looked up */
} ResolvedLead;

/*
 * What the row trigger saw of the current statement: entries of
 * resolved_leads are valid for one statement (generation), and the
 * statement trigger checks the leads again only when a row may have escaped
 * the lookup (rows_seen differs from the transition table, a nested
 * statement) or a command of this transaction ran between two rows (a
 * merge in the statement's own SELECT): a merge by another session must
 * wait for the FOR KEY SHARE locks the lookups hold.
 */

static void
note_row_seen(void)
{
	CommandId	cid = GetCurrentCommandId(false);

	if (rows_seen++ == 0)
		rows_cid = cid;
	else if (cid != rows_cid)
		rows_cid_changed = true;
}

static void
forget_resolved_leads(void)
{
	statement_generation++;
	rows_seen = 0;
	rows_cid_changed = false;
}

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

/* the lead a new row's lead id stands for (itself when unknown or live) */
static int64
resolve_row_lead(int64 lead_id)
{
	ResolvedLead *entry;
	bool		found;
	Oid			lead_relid;
	Relation	lead_rel;
	Relation	pkey;
	int			merged_attnum;
	int64		current = lead_id;
	int			hops;

	if (resolved_leads == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(ResolvedLead);
		if (!xact_callback_registered)
		{
			RegisterXactCallback(forget_at_xact_end, NULL);
			xact_callback_registered = true;
		}
		ctl.hcxt = TopTransactionContext;
		resolved_leads = hash_create("leadmgmt resolved leads", 64, &ctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(resolved_leads, &lead_id, HASH_FIND, NULL);
	if (entry != NULL && entry->generation == statement_generation)
		return entry->target;

	lead_relid = get_relname_relid("lead", lm_schema_oid());
	if (!OidIsValid(lead_relid))
		return lead_id;
	lead_rel = table_open(lead_relid, AccessShareLock);
#if PG_VERSION_NUM >= 180000
	pkey = index_open(RelationGetPrimaryKeyIndex(lead_rel, false), AccessShareLock);
#else
	pkey = index_open(RelationGetPrimaryKeyIndex(lead_rel), AccessShareLock);
#endif
	merged_attnum = lm_column(lead_rel, "merged_into");
	for (hops = 0; hops < 1000; hops++)
	{
		int64		next;

		if (!probe_merged_into(lead_rel, pkey, merged_attnum, current, &next) || next == 0)
			break;
		current = next;
	}
	index_close(pkey, AccessShareLock);
	table_close(lead_rel, AccessShareLock);
	if (hops >= 1000)
		ereport(ERROR,
				(errcode(ERRCODE_LM_MERGE_CYCLE),
				 errmsg("merged_into chain starting at lead " INT64_FORMAT " does not end", lead_id),
				 errhint("merged_into is written by leadmgmt.merge_leads(); set it back to NULL on one lead of the circle.")));

	entry = hash_search(resolved_leads, &lead_id, HASH_ENTER, &found);
	entry->target = current;
	entry->generation = statement_generation;
	return current;
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
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	const ActivityColumns *cols;
	ActivityRow row;
	RuleCache  *cache;
	float8		points = 0;
	int64		target;
	int			replace_cols[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	int			nreplace = 0;
	int			i;

	lm_check_trigger_context(fcinfo, "activity_score_row", true, true);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_row: must be fired for INSERT")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = trigdata->tg_trigtuple;
	cols = lm_activity_columns(desc);
	lm_read_activity(tuple, desc, cols, &row);

	/* a row for a merged lead goes to the lead it was merged into */
	note_row_seen();
	(void) heap_getattr(tuple, cols->lead_id, desc, &nulls[0]);
	if (!nulls[0])
	{
		target = resolve_row_lead(row.lead_id);
		if (target != row.lead_id)
		{
			replace_cols[nreplace] = cols->lead_id;
			values[nreplace] = Int64GetDatum(target);
			nreplace++;
		}
	}
	nulls[0] = false;

	/*
	 * A row that arrives with points keeps them; its matches still count in
	 * the lead's score, as rescore() counts them (1.0.0 fired this trigger
	 * only for rows without points, so the statement trigger never skipped
	 * one either)
	 */
	if (!row.points_given)
	{
		cache = lm_rule_cache();
		for (i = 0; i < cache->nrules; i++)
			if (lm_rule_matches(&cache->rules[i], &row))
				points += cache->rules[i].points;
		replace_cols[nreplace] = cols->points;
		values[nreplace] = Float8GetDatum(points);
		nreplace++;
	}
	if (nreplace == 0)
		return PointerGetDatum(tuple);
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, nreplace, replace_cols,
													 values, nulls));
}

/* ---------------------------------------------------------------------
 * AFTER STATEMENT trigger
 * ---------------------------------------------------------------------
 */
typedef struct Correction
{
	int64		activity_id;
	float8		delta;
} Correction;

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

static int
match_cmp(const void *a, const void *b)
{
	const Match *x = a;
	const Match *y = b;
	int			c;

	if ((c = CMP(x->lead_id, y->lead_id)) != 0 || (c = CMP(x->rule, y->rule)) != 0 ||
		(c = CMP(x->occurred_at, y->occurred_at)) != 0)
		return c;
	return CMP(x->activity_id, y->activity_id);
}

static int
correction_cmp(const void *a, const void *b)
{
	return CMP(((const Correction *) a)->activity_id, ((const Correction *) b)->activity_id);
}

/* the statement's rows as (activity id, lead id), for identity resolution */
typedef struct RowLead
{
	int64		activity_id;
	int64		lead_id;
} RowLead;

/*
 * The statement's matches, one per (row, rule), its hygiene facts, and the
 * (activity id, lead id) of every row.
 */
static Match *
collect_matches(Tuplestorestate *rows, TupleDesc desc, RuleCache *cache, int *nmatches,
				Hygiene *hygiene, RowLead **row_leads, int *nrows)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt = AllocSetContextCreate(outer, "leadmgmt scoring row",
												 ALLOCSET_SMALL_SIZES);
	const ActivityColumns *cols = lm_activity_columns(desc);
	Match	   *matches = NULL;
	int			n = 0;
	int			cap = 0;
	RowLead    *rl = NULL;
	int			nrl = 0;
	int			caprl = 0;

	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool		should_free;
		HeapTuple	tuple;
		ActivityRow row;
		int			i;

		MemoryContextReset(rowcxt);
		MemoryContextSwitchTo(rowcxt);
		tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
		lm_read_activity(tuple, desc, cols, &row);
		MemoryContextSwitchTo(outer);
		APPEND(rl, nrl, caprl);
		rl[nrl].activity_id = row.id;
		rl[nrl].lead_id = row.lead_id;
		nrl++;
		lm_note_hygiene(hygiene, &row);
		for (i = 0; i < cache->nrules; i++)
		{
			if (!lm_rule_matches(&cache->rules[i], &row))
				continue;
			APPEND(matches, n, cap);
			matches[n].lead_id = row.lead_id;
			matches[n].rule = i;
			matches[n].occurred_at = row.occurred_at;
			matches[n].activity_id = row.id;
			matches[n].awarded = true;
			n++;
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	*nmatches = n;
	*row_leads = rl;
	*nrows = nrl;
	return matches;
}

static int
int64_cmp(const void *a, const void *b)
{
	return CMP(*(const int64 *) a, *(const int64 *) b);
}

/* sort ids and drop duplicates; returns the new count */
static int
sort_unique(int64 *ids, int n)
{
	int			m = 0;
	int			i;

	if (n == 0)
		return 0;
	qsort(ids, n, sizeof(int64), int64_cmp);
	for (i = 1; i < n; i++)
		if (ids[i] != ids[m])
			ids[++m] = ids[i];
	return m + 1;
}

/* ---------------------------------------------------------------------
 * Identity: every row lands on the lead its lead id stands for today
 * ---------------------------------------------------------------------
 */

/* merged lead -> the live lead it resolves to, sorted by from */
typedef struct LeadMove
{
	int64		from;
	int64		to;
} LeadMove;

typedef struct LeadMap
{
	int			n;
	int			cap;
	LeadMove   *moves;
} LeadMap;

static int
lead_move_cmp(const void *a, const void *b)
{
	return CMP(((const LeadMove *) a)->from, ((const LeadMove *) b)->from);
}

static int64
map_lead(const LeadMap *map, int64 lead_id)
{
	LeadMove	key;
	LeadMove   *found;

	if (map->n == 0)
		return lead_id;
	key.from = lead_id;
	found = bsearch(&key, map->moves, map->n, sizeof(LeadMove), lead_move_cmp);
	return found ? found->to : lead_id;
}

/*
 * Add the merged leads among ids (sorted, distinct, none in the map yet) to
 * the map, following merged_into to its end: one query per hop, and
 * merge_leads() keeps chains one hop long.  No row lock: the foreign key
 * check of each new row holds FOR KEY SHARE on its lead already, so a merge
 * of that lead (FOR UPDATE) either committed before, and is seen here, or
 * waits for this transaction and then moves the rows itself.
 */
static void
resolve_merged(LeadMap *map, int64 *ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = INT8ARRAYOID;
	int			first = map->n;
	int			hops;
	int			j;

	for (hops = 0; n > 0; hops++)
	{
		Datum		arg = lm_int8_datum_array(ids, n);
		int			ntargets = 0;
		uint64		i;

		if (hops >= 1000)
			ereport(ERROR,
					(errcode(ERRCODE_LM_MERGE_CYCLE),
					 errmsg("merged_into chain starting at lead " INT64_FORMAT " does not end",
							ids[0]),
					 errhint("merged_into is written by leadmgmt.merge_leads(); set it back to NULL on one lead of the circle.")));
		lm_run_plan(&plan,
				 "SELECT l.id, l.merged_into FROM leadmgmt.lead l "
				 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) AND l.merged_into IS NOT NULL",
				 1, &type, &arg, SPI_OK_SELECT);
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		from = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			int64		to = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));

			if (hops == 0)
			{
				APPEND(map->moves, map->n, map->cap);
				map->moves[map->n].from = from;
				map->moves[map->n].to = to;
				map->n++;
			}
			else
			{
				/* one hop further for every lead that resolved to from */
				for (j = first; j < map->n; j++)
					if (map->moves[j].to == from)
						map->moves[j].to = to;
			}
			ids[ntargets++] = to;
		}
		n = sort_unique(ids, ntargets);
	}
	if (map->n == first)
		return;
	qsort(map->moves, map->n, sizeof(LeadMove), lead_move_cmp);
	/* a lead merged since an earlier call: leads that resolved to it follow */
	for (j = 0; j < map->n; j++)
	{
		int64		to = map->moves[j].to;
		int			k;

		for (k = 0; k < map->n; k++)
		{
			int64		next = map_lead(map, to);

			if (next == to)
				break;
			to = next;
		}
		map->moves[j].to = to;
	}
}

/* the rows' lead ids through the map, and the rows that move */
static void
apply_map(const LeadMap *map, Match *matches, int nmatches, Hygiene *h)
{
	int			i;

	if (map->n == 0)
		return;
	for (i = 0; i < nmatches; i++)
		matches[i].lead_id = map_lead(map, matches[i].lead_id);
	for (i = 0; i < h->nbounced; i++)
		h->bounced[i] = map_lead(map, h->bounced[i]);
	for (i = 0; i < h->nunsubscribed; i++)
		h->unsubscribed[i] = map_lead(map, h->unsubscribed[i]);
}

/*
 * Rows inserted with the id of a merged lead go to the lead it resolves
 * to: one UPDATE for all of them (rare: ids from old links and cookies).
 */
static void
move_rows(const LeadMap *map, const RowLead *rows, int nrows)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2];
	int64	   *ids = NULL;
	int64	   *to = NULL;
	int			n = 0;
	int			cap = 0;
	int			i;

	if (map->n == 0)
		return;
	for (i = 0; i < nrows; i++)
	{
		int64		target = map_lead(map, rows[i].lead_id);
		int			cap2 = cap;

		if (target == rows[i].lead_id)
			continue;
		APPEND(ids, n, cap);
		APPEND(to, n, cap2);
		ids[n] = rows[i].activity_id;
		to[n] = target;
		n++;
	}
	if (n == 0)
		return;
	args[0] = lm_int8_datum_array(ids, n);
	args[1] = lm_int8_datum_array(to, n);
	lm_run_plan(&plan,
			 "UPDATE leadmgmt.activity a SET lead_id = m.lead_id "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS m(id, lead_id) "
			 "WHERE a.id OPERATOR(pg_catalog.=) m.id",
			 2, types, args, SPI_OK_UPDATE);
}

/* ---------------------------------------------------------------------
 * The leads of the statement
 * ---------------------------------------------------------------------
 */

/*
 * The distinct leads of the (sorted) matches and of the hygiene facts, with
 * their latest match time and the hygiene facts that concern them.
 */
static LeadState *
touched_leads(const Match *matches, int nmatches, const Hygiene *h, int *nleads)
{
	int			nids = 0;
	int64	   *ids = palloc_extended(sizeof(int64) * Max(nmatches + h->nbounced + h->nunsubscribed, 1),
									  MCXT_ALLOC_HUGE);
	LeadState  *leads;
	int			n;
	int			i;

	for (i = 0; i < nmatches; i++)
		if (nids == 0 || ids[nids - 1] != matches[i].lead_id)
			ids[nids++] = matches[i].lead_id;
	for (i = 0; i < h->nbounced; i++)
		ids[nids++] = h->bounced[i];
	for (i = 0; i < h->nunsubscribed; i++)
		ids[nids++] = h->unsubscribed[i];
	n = sort_unique(ids, nids);
	leads = palloc_extended(sizeof(LeadState) * Max(n, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (i = 0; i < n; i++)
	{
		leads[i].lead_id = ids[i];
		leads[i].latest_match = DT_NOBEGIN;
	}
	pfree(ids);
	for (i = 0; i < nmatches; i++)
	{
		LeadState  *lead = lm_find_lead(leads, n, matches[i].lead_id);

		lead->has_matches = true;
		if (matches[i].occurred_at > lead->latest_match)
			lead->latest_match = matches[i].occurred_at;
	}
	for (i = 0; i < h->nbounced; i++)
		lm_find_lead(leads, n, h->bounced[i])->bounced = true;
	for (i = 0; i < h->nunsubscribed; i++)
		lm_find_lead(leads, n, h->unsubscribed[i])->unsubscribed = true;
	*nleads = n;
	return leads;
}

/* the lead ids as an int8[] (all, or only those to recompute) */
static Datum
lead_id_array(const LeadState *leads, int nleads, bool recompute_only, int *count)
{
	Datum	   *ids = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	int			n = 0;
	int			i;

	for (i = 0; i < nleads; i++)
		if (!recompute_only || leads[i].recompute)
			ids[n++] = Int64GetDatum(leads[i].lead_id);
	*count = n;
	return PointerGetDatum(lm_datum_array(ids, n, INT8OID));
}

/*
 * Lock the leads in id order (FOR NO KEY UPDATE does not conflict with the
 * KEY SHARE locks of the foreign keys), then read their stage, score, e-mail
 * status and scoring state.  Two statements on purpose: the read must take
 * its snapshot after the locks are granted, or it would miss what the
 * session we waited for wrote.  Returns the number of leads that turn out to
 * have been merged meanwhile (a merge that committed after resolve_merged()
 * looked): their ids are left in merged[].
 */
static int
lock_and_read_leads(LeadState *leads, int nleads, int64 *merged)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	Oid			type = INT8ARRAYOID;
	int			count;
	Datum		arg = lead_id_array(leads, nleads, false, &count);
	int			nmerged = 0;
	uint64		i;

	lm_run_plan(&lock_plan,
			 "SELECT 1 FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) "
			 "ORDER BY l.id FOR NO KEY UPDATE",
			 1, &type, &arg, SPI_OK_SELECT);
	lm_run_plan(&read_plan,
			 "SELECT l.id, l.external_id, l.stage, l.stage_entered_at, s.state, "
			 "l.merged_into, l.email_status "
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
		lead->email_status = SPI_getvalue(tup, desc, 7);
	}
	return nmerged;
}

/* insert the new states, or update the existing ones */
static void
write_states(const Datum *ids, const Datum *states, const bool *is_new, int n, bool inserting)
{
	static SPIPlanPtr insert_plan = NULL;
	static SPIPlanPtr update_plan = NULL;
	Datum	   *some_ids = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	Datum	   *some_states = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	Oid			types[2] = {INT8ARRAYOID, BYTEAARRAYOID};
	Datum		args[2];
	int			m = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (is_new[i] != inserting)
			continue;
		some_ids[m] = ids[i];
		some_states[m] = states[i];
		m++;
	}
	if (m == 0)
		return;
	args[0] = PointerGetDatum(lm_datum_array(some_ids, m, INT8OID));
	args[1] = PointerGetDatum(lm_datum_array(some_states, m, BYTEAOID));
	if (inserting)
		lm_run_plan(&insert_plan,
				 "INSERT INTO leadmgmt.score_state (lead_id, state) "
				 "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))",
				 2, types, args, SPI_OK_INSERT);
	else
		lm_run_plan(&update_plan,
				 "UPDATE leadmgmt.score_state s SET state = u.state "
				 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(lead_id, state) "
				 "WHERE s.lead_id OPERATOR(pg_catalog.=) u.lead_id",
				 2, types, args, SPI_OK_UPDATE);
}

/*
 * One write per lead for its state and one for the lead row: score,
 * score_at and email_status together.
 */
static void
store_states(LeadState *leads, int nleads)
{
	static SPIPlanPtr lead_plan = NULL;
	static SPIPlanPtr score_plan = NULL;
	Oid			score_types[3] = {INT8ARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID};
	bool		any_status = false;
	Datum	   *ids = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *states = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	bool	   *is_new = palloc_extended(sizeof(bool) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *lead_ids = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *scored = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *scores = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *ats = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *statuses = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Oid			lead_types[5] = {INT8ARRAYOID, BOOLARRAYOID, FLOAT8ARRAYOID,
								 TIMESTAMPTZARRAYOID, TEXTARRAYOID};
	Datum		args[5];
	int			n = 0;
	int			m = 0;
	int			i;

	for (i = 0; i < nleads; i++)
	{
		LeadState  *lead = &leads[i];
		bool		state_changed;
		const char *status;

		if (!lead->found)
			continue;
		state_changed = !lead->recompute && lead->state.ncomponents > 0;
		status = lm_new_email_status(lead);
		if (state_changed)
		{
			ids[n] = Int64GetDatum(lead->lead_id);
			states[n] = PointerGetDatum(lm_state_to_bytea(&lead->state));
			is_new[n] = !lead->had_state;
			n++;
		}
		if (!state_changed && status == NULL)
			continue;
		lead_ids[m] = Int64GetDatum(lead->lead_id);
		scored[m] = BoolGetDatum(state_changed);
		scores[m] = Float8GetDatum(state_changed ? lead->score : 0);
		ats[m] = TimestampTzGetDatum(state_changed ? lead->score_at : 0);
		statuses[m] = CStringGetTextDatum(status ? status : "");
		any_status |= status != NULL;
		m++;
	}

	/*
	 * The lead locks we hold keep anybody else from writing these states,
	 * so a plain INSERT for new leads and an UPDATE for the others do what
	 * a (much slower, speculative) INSERT ... ON CONFLICT would.
	 */
	if (n > 0)
	{
		write_states(ids, states, is_new, n, true);
		write_states(ids, states, is_new, n, false);
	}
	if (m == 0)
		return;
	if (!any_status)
	{
		/* the usual statement: scores only */
		args[0] = PointerGetDatum(lm_datum_array(lead_ids, m, INT8OID));
		args[1] = PointerGetDatum(lm_datum_array(scores, m, FLOAT8OID));
		args[2] = PointerGetDatum(lm_datum_array(ats, m, TIMESTAMPTZOID));
		lm_run_plan(&score_plan,
				 "UPDATE leadmgmt.lead l SET score = u.score, score_at = u.score_at "
				 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) "
				 "AS u(id, score, score_at) WHERE l.id OPERATOR(pg_catalog.=) u.id",
				 3, score_types, args, SPI_OK_UPDATE);
		return;
	}
	args[0] = PointerGetDatum(lm_datum_array(lead_ids, m, INT8OID));
	args[1] = PointerGetDatum(lm_datum_array(scored, m, BOOLOID));
	args[2] = PointerGetDatum(lm_datum_array(scores, m, FLOAT8OID));
	args[3] = PointerGetDatum(lm_datum_array(ats, m, TIMESTAMPTZOID));
	args[4] = PointerGetDatum(lm_datum_array(statuses, m, TEXTOID));
	lm_run_plan(&lead_plan,
			 "UPDATE leadmgmt.lead l SET "
			 "score = CASE WHEN u.scored THEN u.score ELSE l.score END, "
			 "score_at = CASE WHEN u.scored THEN u.score_at ELSE l.score_at END, "
			 "email_status = CASE WHEN u.email_status OPERATOR(pg_catalog.=) '' "
			 "THEN l.email_status ELSE u.email_status END "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
			 "pg_catalog.unnest($4), pg_catalog.unnest($5)) AS u(id, scored, score, score_at, email_status) "
			 "WHERE l.id OPERATOR(pg_catalog.=) u.id",
			 5, lead_types, args, SPI_OK_UPDATE);
}

/* take back the points of matches that lost to a cap */
static void
store_corrections(const Match *matches, int nmatches, RuleCache *cache,
				  LeadState *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Correction *corr = NULL;
	int			n = 0;
	int			cap = 0;
	Datum	   *ids;
	Datum	   *deltas;
	int			m = 0;
	Oid			types[2] = {INT8ARRAYOID, FLOAT8ARRAYOID};
	Datum		args[2];
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		if (matches[i].awarded || lm_find_lead(leads, nleads, matches[i].lead_id)->recompute)
			continue;
		APPEND(corr, n, cap);
		corr[n].activity_id = matches[i].activity_id;
		corr[n].delta = -cache->rules[matches[i].rule].points;
		n++;
	}
	if (n == 0)
		return;

	qsort(corr, n, sizeof(Correction), correction_cmp);
	ids = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	deltas = palloc_extended(sizeof(Datum) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && DatumGetInt64(ids[m - 1]) == corr[i].activity_id)
			deltas[m - 1] = Float8GetDatum(DatumGetFloat8(deltas[m - 1]) + corr[i].delta);
		else
		{
			ids[m] = Int64GetDatum(corr[i].activity_id);
			deltas[m] = Float8GetDatum(corr[i].delta);
			m++;
		}
	}
	args[0] = PointerGetDatum(lm_datum_array(ids, m, INT8OID));
	args[1] = PointerGetDatum(lm_datum_array(deltas, m, FLOAT8OID));
	lm_run_plan(&plan,
			 "UPDATE leadmgmt.activity a SET points = a.points OPERATOR(pg_catalog.+) d.delta "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS d(id, delta) "
			 "WHERE a.id OPERATOR(pg_catalog.=) d.id",
			 2, types, args, SPI_OK_UPDATE);
}

/* the rare path: rebuild back-filled leads from their log, then re-read them */
static void
recompute_leads(LeadState *leads, int nleads)
{
	static SPIPlanPtr rescore_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	Oid			type = INT8ARRAYOID;
	int			count;
	Datum		arg = lead_id_array(leads, nleads, true, &count);
	uint64		i;

	if (count == 0)
		return;
	lm_run_plan(&rescore_plan, "SELECT leadmgmt.rescore_leads($1)", 1, &type, &arg, SPI_OK_SELECT);
	lm_run_plan(&read_plan,
			 "SELECT l.id, l.score, l.score_at FROM leadmgmt.lead l "
			 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1)",
			 1, &type, &arg, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		LeadState  *lead = lm_find_lead(leads, nleads,
									 DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));

		lead->score = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
		lead->score_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
	}
}

PG_FUNCTION_INFO_V1(leadmgmt_activity_score_statement);
Datum
leadmgmt_activity_score_statement(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	RuleCache  *cache;
	Match	   *matches;
	int			nmatches;
	RowLead    *rows;
	int			nrows;
	LeadState  *leads = NULL;
	int			nleads = 0;
	Hygiene		hygiene;
	LeadMap		map;
	int64	   *ids;
	int			nids;
	int			i;
	Oid			save_userid;
	int			save_sec_context;

	lm_check_trigger_context(fcinfo, "activity_score_statement", false, false);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_statement: must be fired AFTER INSERT with REFERENCING NEW TABLE")));
	rel = trigdata->tg_relation;

	cache = lm_rule_cache();
	memset(&hygiene, 0, sizeof(hygiene));
	memset(&map, 0, sizeof(map));
	matches = collect_matches(trigdata->tg_newtable, RelationGetDescr(rel), cache, &nmatches,
							  &hygiene, &rows, &nrows);
	if (nrows == 0)
	{
		forget_resolved_leads();
		return PointerGetDatum(NULL);
	}

	/* bookkeeping runs as the extension owner (owner of the activity table) */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * 1. identity: the row trigger put each row on its resolved lead under a
	 * lock; check the statement's leads again in one query only when a row
	 * may have escaped it (see note_row_seen)
	 */
	ids = palloc_extended(sizeof(int64) * nrows, MCXT_ALLOC_HUGE);
	if (rows_seen != nrows || rows_cid_changed)
	{
		for (i = 0; i < nrows; i++)
			ids[i] = rows[i].lead_id;
		nids = sort_unique(ids, nrows);
		resolve_merged(&map, ids, nids);
		apply_map(&map, matches, nmatches, &hygiene);
	}

	/*
	 * 2. lock and read the leads to score; a lead merged since step 1 looked
	 * (its merge committed in between) resolves further, and the leads are
	 * locked and read again (the locks already held stay: harmless)
	 */
	if (nmatches > 0 || hygiene.nbounced > 0 || hygiene.nunsubscribed > 0)
	{
		for (;;)
		{
			int			nmerged;

			qsort(matches, nmatches, sizeof(Match), match_cmp);
			leads = touched_leads(matches, nmatches, &hygiene, &nleads);
			nmerged = lock_and_read_leads(leads, nleads, ids);
			if (nmerged == 0)
				break;
			resolve_merged(&map, ids, sort_unique(ids, nmerged));
			apply_map(&map, matches, nmatches, &hygiene);
		}
	}
	move_rows(&map, rows, nrows);

	/*
	 * A merge that ran inside or alongside this statement (map not empty)
	 * has already rebuilt its leads from their log, rows of this statement
	 * included (merge_score): adding this statement's points on top would
	 * count them twice, so those leads are rebuilt from the log once more.
	 */
	if (map.n > 0)
		for (i = 0; i < nleads; i++)
			leads[i].recompute = true;

	/* 3. scores, hygiene, consent, hand-off */
	if (nleads > 0)
	{
		lm_apply_caps(matches, nmatches, cache, leads, nleads);
		lm_fold_points(matches, nmatches, cache, leads, nleads);
		store_states(leads, nleads);
		store_corrections(matches, nmatches, cache, leads, nleads);
		recompute_leads(leads, nleads);
	}
	lm_record_consent(&hygiene);
	if (nleads > 0)
		lm_hand_off_hot_leads(leads, nleads);

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	forget_resolved_leads();
	return PointerGetDatum(NULL);
}

