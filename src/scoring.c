/*
 * scoring.c
 *		Incremental behaviour scoring: points on activity rows, decayed lead
 *		scores, caps, and the automatic hand-off to sales.
 *
 * Two triggers on leadmgmt.activity share the work (DESIGN.md):
 *
 *	activity_score_row (BEFORE INSERT, FOR EACH ROW)
 *		Matches the row against the cached rules in C and sets points to the
 *		sum of the matching rules' points.  A row that arrives with points
 *		already set (a restore or a migration) is left alone and remembered,
 *		so the statement trigger skips it too.  No SQL runs per row.
 *
 *	activity_score_statement (AFTER INSERT, FOR EACH STATEMENT, with the
 *	transition table new_activity)
 *		Matches the statement's rows again and, running as the extension
 *		owner, in one pass per statement:
 *		 1. locks the affected leads in id order (FOR NO KEY UPDATE, which
 *			does not conflict with the foreign keys' KEY SHARE), so
 *			concurrent COPYs neither deadlock nor lose updates;
 *		 2. applies max_times caps: the first N matches in occurred_at order
 *			win; a match beyond the cap loses its points again, and a match
 *			earlier than an already awarded one (a back-fill) makes that lead
 *			be recomputed from its log by rescore_leads();
 *		 3. folds the awarded points into one decay component per lead and
 *			half-life (leadmgmt.score_component), exactly, whatever the order
 *			in which activities arrive;
 *		 4. sets lead.score / score_at to the total as of the lead's latest
 *			scored activity;
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
 * O(m log m) sorting, and a constant number of set-based SQL statements
 * over arrays of k leads.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "decay.h"
#include "leadmgmt.h"

/* ---------------------------------------------------------------------
 * Rule cache
 * ---------------------------------------------------------------------
 */
typedef struct ScoringRule
{
	int64		id;
	char	   *kind;
	text	   *detail_pattern; /* NULL: any detail */
	char	   *campaign;		/* NULL: any campaign */
	int32		min_duration_s; /* -1: any duration */
	float8		points;
	int64		half_life_us;	/* 0: no decay */
	int32		max_times;		/* 0: unlimited */
} ScoringRule;

typedef struct RuleCache
{
	MemoryContext context;
	int			nrules;
	ScoringRule *rules;
} RuleCache;

static RuleCache *rule_cache = NULL;
static Oid	rule_relid = InvalidOid;
static bool rule_callback_registered = false;

static void
rule_cache_callback(Datum arg, Oid relid)
{
	if (rule_cache != NULL && (relid == InvalidOid || relid == rule_relid))
	{
		MemoryContextDelete(rule_cache->context);
		rule_cache = NULL;
	}
}

static char *
copy_text_column(MemoryContext cxt, HeapTuple tup, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tup, desc, col);

	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

static RuleCache *
load_rule_cache(void)
{
	MemoryContext cxt;
	RuleCache  *cache;
	uint64		i;

	if (!rule_callback_registered)
	{
		CacheRegisterRelcacheCallback(rule_cache_callback, (Datum) 0);
		rule_callback_registered = true;
	}
	rule_relid = get_relname_relid("scoring_rule", lm_schema_oid());

	cxt = AllocSetContextCreate(CacheMemoryContext, "leadmgmt rule cache",
								ALLOCSET_SMALL_SIZES);
	cache = MemoryContextAllocZero(cxt, sizeof(RuleCache));
	cache->context = cxt;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT r.id, r.kind, r.detail_pattern, r.campaign, r.min_duration_s, "
					"r.points, leadmgmt.half_life_us(r.half_life), r.max_times "
					"FROM leadmgmt.scoring_rule r WHERE r.active AND NOT EXISTS "
					"(SELECT 1 FROM leadmgmt.scoring_rule o "
					" WHERE o.overrides OPERATOR(pg_catalog.=) r.name) ORDER BY r.id",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.scoring_rule");

	cache->nrules = (int) SPI_processed;
	cache->rules = MemoryContextAllocZero(cxt, sizeof(ScoringRule) * Max(cache->nrules, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ScoringRule *rule = &cache->rules[i];
		bool		isnull;
		Datum		d;

		rule->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		rule->kind = copy_text_column(cxt, tup, desc, 2);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			rule->detail_pattern = DatumGetTextPCopy(d);
			MemoryContextSwitchTo(old);
		}
		rule->campaign = copy_text_column(cxt, tup, desc, 4);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		rule->min_duration_s = isnull ? -1 : DatumGetInt32(d);
		rule->points = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
		rule->half_life_us = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		d = SPI_getbinval(tup, desc, 8, &isnull);
		rule->max_times = isnull ? 0 : DatumGetInt32(d);
	}
	SPI_finish();
	rule_cache = cache;
	return cache;
}

static RuleCache *
get_rule_cache(void)
{
	return rule_cache ? rule_cache : load_rule_cache();
}

/* ---------------------------------------------------------------------
 * Matching one activity
 * ---------------------------------------------------------------------
 */
typedef struct ActivityRow
{
	int64		id;
	int64		lead_id;
	TimestampTz occurred_at;
	char	   *kind;
	text	   *detail;			/* NULL when SQL NULL */
	char	   *campaign;
	bool		has_duration;
	int32		duration_s;
	bool		points_given;
} ActivityRow;

typedef struct ActivityColumns
{
	int			id,
				lead_id,
				kind,
				occurred_at,
				campaign,
				detail,
				duration_s,
				points;
} ActivityColumns;

static int
activity_column(TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("scoring trigger attached to a table without column \"%s\"", name)));
	return attnum;
}

static void
find_activity_columns(TupleDesc desc, ActivityColumns *cols)
{
	cols->id = activity_column(desc, "id");
	cols->lead_id = activity_column(desc, "lead_id");
	cols->kind = activity_column(desc, "kind");
	cols->occurred_at = activity_column(desc, "occurred_at");
	cols->campaign = activity_column(desc, "campaign");
	cols->detail = activity_column(desc, "detail");
	cols->duration_s = activity_column(desc, "duration_s");
	cols->points = activity_column(desc, "points");
}

/*
 * Read the columns matching needs.  Strings point into the tuple (kind and
 * campaign are detoasted copies), valid while the tuple is.
 */
static void
read_activity(HeapTuple tuple, TupleDesc desc, const ActivityColumns *cols, ActivityRow *row)
{
	bool		isnull;
	Datum		d;

	row->id = DatumGetInt64(heap_getattr(tuple, cols->id, desc, &isnull));
	row->lead_id = DatumGetInt64(heap_getattr(tuple, cols->lead_id, desc, &isnull));
	d = heap_getattr(tuple, cols->occurred_at, desc, &isnull);
	row->occurred_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	d = heap_getattr(tuple, cols->kind, desc, &isnull);
	row->kind = isnull ? NULL : TextDatumGetCString(d);
	d = heap_getattr(tuple, cols->detail, desc, &isnull);
	row->detail = isnull ? NULL : DatumGetTextPP(d);
	d = heap_getattr(tuple, cols->campaign, desc, &isnull);
	row->campaign = isnull ? NULL : TextDatumGetCString(d);
	d = heap_getattr(tuple, cols->duration_s, desc, &isnull);
	row->has_duration = !isnull;
	row->duration_s = isnull ? 0 : DatumGetInt32(d);
	(void) heap_getattr(tuple, cols->points, desc, &isnull);
	row->points_given = !isnull;
}

/* the SQL of leadmgmt.score_matches(), for one row and one rule */
static bool
rule_matches(const ScoringRule *rule, const ActivityRow *row)
{
	if (row->kind == NULL || strcmp(rule->kind, row->kind) != 0)
		return false;
	if (rule->campaign != NULL &&
		(row->campaign == NULL || strcmp(rule->campaign, row->campaign) != 0))
		return false;
	if (rule->min_duration_s >= 0 &&
		(!row->has_duration || row->duration_s < rule->min_duration_s))
		return false;
	if (rule->detail_pattern != NULL)
	{
		if (row->detail == NULL)
			return false;
		if (!DatumGetBool(DirectFunctionCall2Coll(textlike, DEFAULT_COLLATION_OID,
												  PointerGetDatum(row->detail),
												  PointerGetDatum(rule->detail_pattern))))
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------------
 * Rows that arrived with points: skipped by the statement trigger
 * ---------------------------------------------------------------------
 */
static HTAB *given_points = NULL;	/* activity ids, in TopTransactionContext */
static bool xact_callback_registered = false;

static void
forget_given_points(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		given_points = NULL;	/* freed with TopTransactionContext */
}

static void
remember_given_points(int64 activity_id)
{
	bool		found;

	if (given_points == NULL)
	{
		HASHCTL		ctl;

		if (!xact_callback_registered)
		{
			RegisterXactCallback(forget_given_points, NULL);
			xact_callback_registered = true;
		}
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64);
		ctl.hcxt = TopTransactionContext;
		given_points = hash_create("leadmgmt activity with given points", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	(void) hash_search(given_points, &activity_id, HASH_ENTER, &found);
}

static bool
had_given_points(int64 activity_id)
{
	bool		found = false;

	if (given_points != NULL)
		(void) hash_search(given_points, &activity_id, HASH_REMOVE, &found);
	return found;
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
	ActivityColumns cols;
	ActivityRow row;
	RuleCache  *cache;
	float8		points = 0;
	int			i;

	lm_check_trigger_context(fcinfo, "activity_score_row", true, true);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_row: must be fired for INSERT")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = trigdata->tg_trigtuple;
	find_activity_columns(desc, &cols);
	read_activity(tuple, desc, &cols, &row);

	if (row.points_given)
	{
		remember_given_points(row.id);
		return PointerGetDatum(tuple);
	}

	cache = get_rule_cache();
	for (i = 0; i < cache->nrules; i++)
		if (rule_matches(&cache->rules[i], &row))
			points += cache->rules[i].points;

	{
		Datum		value = Float8GetDatum(points);
		bool		isnull = false;

		return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 1, &cols.points,
														 &value, &isnull));
	}
}

/* ---------------------------------------------------------------------
 * AFTER STATEMENT trigger
 * ---------------------------------------------------------------------
 */
typedef struct Match
{
	int64		lead_id;
	int			rule;			/* index into the rule cache */
	TimestampTz occurred_at;
	int64		activity_id;
	bool		awarded;
} Match;

typedef struct Award
{
	int64		lead_id;
	int64		rule_id;
	int32		times;
	TimestampTz last_awarded_at;
} Award;

typedef struct Component
{
	int64		lead_id;
	int64		half_life_us;
	LmComponent c;
} Component;

typedef struct Correction
{
	int64		activity_id;
	float8		delta;
} Correction;

typedef struct LeadTouch
{
	int64		lead_id;
	TimestampTz latest;			/* latest occurred_at among its matches */
	bool		recompute;		/* back-fill past a cap: rescore this lead */
} LeadTouch;

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
award_cmp(const void *a, const void *b)
{
	const Award *x = a;
	const Award *y = b;
	int			c = CMP(x->lead_id, y->lead_id);

	return c != 0 ? c : CMP(x->rule_id, y->rule_id);
}

static int
component_cmp(const void *a, const void *b)
{
	const Component *x = a;
	const Component *y = b;
	int			c = CMP(x->lead_id, y->lead_id);

	return c != 0 ? c : CMP(x->half_life_us, y->half_life_us);
}

static int
correction_cmp(const void *a, const void *b)
{
	return CMP(((const Correction *) a)->activity_id, ((const Correction *) b)->activity_id);
}

static int
lead_touch_cmp(const void *a, const void *b)
{
	return CMP(((const LeadTouch *) a)->lead_id, ((const LeadTouch *) b)->lead_id);
}

/* grow-as-needed arrays */
#define APPEND(arr, n, cap) \
	do { \
		if ((n) == (cap)) \
		{ \
			(cap) = (cap) ? (cap) * 2 : 64; \
			(arr) = (arr) ? repalloc_huge((arr), sizeof(*(arr)) * (cap)) : \
				palloc_extended(sizeof(*(arr)) * (cap), MCXT_ALLOC_HUGE); \
		} \
	} while (0)

static ArrayType *
int8_array(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
float8_array(const float8 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Float8GetDatum(values[i]);
	return construct_array(d, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static ArrayType *
int4_array(const int32 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int32GetDatum(values[i]);
	return construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT);
}

static ArrayType *
timestamptz_array(const TimestampTz *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(values[i]);
	return construct_array(d, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

/*
 * Run a kept plan, preparing it on first use.  Never read-only: each step
 * must see what the previous one wrote (read-only SPI skips the command
 * counter increment and would read a stale snapshot).
 */
static void
run_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
		 int expected)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "unexpected SPI result %s for \"%s\"", SPI_result_code_string(rc), sql);
}

/* the statement's matches, one per (row, rule) */
static Match *
collect_matches(Tuplestorestate *rows, TupleDesc desc, RuleCache *cache, int *nmatches)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt = AllocSetContextCreate(outer, "leadmgmt scoring row",
												 ALLOCSET_SMALL_SIZES);
	ActivityColumns cols;
	Match	   *matches = NULL;
	int			n = 0;
	int			cap = 0;

	find_activity_columns(desc, &cols);
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
		read_activity(tuple, desc, &cols, &row);
		MemoryContextSwitchTo(outer);
		if (!had_given_points(row.id))
		{
			for (i = 0; i < cache->nrules; i++)
			{
				if (!rule_matches(&cache->rules[i], &row))
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
	}
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	*nmatches = n;
	return matches;
}

/* the distinct leads of the matches (sorted by lead), with their latest time */
static LeadTouch *
touched_leads(const Match *matches, int nmatches, int *nleads)
{
	LeadTouch  *leads = palloc_extended(sizeof(LeadTouch) * Max(nmatches, 1), MCXT_ALLOC_HUGE);
	int			n = 0;
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		if (n == 0 || leads[n - 1].lead_id != matches[i].lead_id)
		{
			leads[n].lead_id = matches[i].lead_id;
			leads[n].latest = matches[i].occurred_at;
			leads[n].recompute = false;
			n++;
		}
		else if (matches[i].occurred_at > leads[n - 1].latest)
			leads[n - 1].latest = matches[i].occurred_at;
	}
	*nleads = n;
	return leads;
}

static LeadTouch *
find_lead(LeadTouch *leads, int nleads, int64 lead_id)
{
	LeadTouch	key;

	key.lead_id = lead_id;
	return bsearch(&key, leads, nleads, sizeof(LeadTouch), lead_touch_cmp);
}

typedef enum LeadFilter
{
	ALL_LEADS,
	INCREMENTAL_LEADS,			/* scored from the statement's matches */
	RECOMPUTED_LEADS			/* back-filled past a cap */
} LeadFilter;

static bool
lead_wanted(const LeadTouch *lead, LeadFilter filter)
{
	return filter == ALL_LEADS || lead->recompute == (filter == RECOMPUTED_LEADS);
}

static int
count_leads(const LeadTouch *leads, int nleads, LeadFilter filter)
{
	int			n = 0;
	int			i;

	for (i = 0; i < nleads; i++)
		n += lead_wanted(&leads[i], filter);
	return n;
}

/* the lead ids as an int8[] for SPI, NULL when there are none */
static Datum
lead_id_array(const LeadTouch *leads, int nleads, LeadFilter filter)
{
	int64	   *ids = palloc_extended(sizeof(int64) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	int			n = 0;
	int			i;

	for (i = 0; i < nleads; i++)
		if (lead_wanted(&leads[i], filter))
			ids[n++] = leads[i].lead_id;
	return n ? PointerGetDatum(int8_array(ids, n)) : (Datum) 0;
}

static void
lock_leads(const LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = INT8ARRAYOID;
	Datum		arg = lead_id_array(leads, nleads, ALL_LEADS);

	run_plan(&plan,
			 "SELECT 1 FROM leadmgmt.lead l "
			 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) ORDER BY l.id FOR NO KEY UPDATE",
			 1, &type, &arg, SPI_OK_SELECT);
}

/* existing award counters for the (lead, capped rule) pairs of the matches */
static Award *
load_awards(const Match *matches, int nmatches, RuleCache *cache, int *nawards)
{
	static SPIPlanPtr plan = NULL;
	int64	   *leads = palloc_extended(sizeof(int64) * Max(nmatches, 1), MCXT_ALLOC_HUGE);
	int64	   *rules = palloc_extended(sizeof(int64) * Max(nmatches, 1), MCXT_ALLOC_HUGE);
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Datum		args[2];
	Award	   *awards;
	int			n = 0;
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];

		if (rule->max_times == 0)
			continue;
		if (n > 0 && leads[n - 1] == matches[i].lead_id && rules[n - 1] == rule->id)
			continue;
		leads[n] = matches[i].lead_id;
		rules[n] = rule->id;
		n++;
	}
	*nawards = 0;
	if (n == 0)
		return NULL;

	args[0] = PointerGetDatum(int8_array(leads, n));
	args[1] = PointerGetDatum(int8_array(rules, n));
	run_plan(&plan,
			 "SELECT w.lead_id, w.rule_id, w.times, w.last_awarded_at "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS k(lead_id, rule_id) "
			 "JOIN leadmgmt.score_award w ON w.lead_id OPERATOR(pg_catalog.=) k.lead_id "
			 "AND w.rule_id OPERATOR(pg_catalog.=) k.rule_id",
			 2, types, args, SPI_OK_SELECT);

	awards = palloc_extended(sizeof(Award) * Max(SPI_processed, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < (int) SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		awards[i].lead_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		awards[i].rule_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		awards[i].times = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		awards[i].last_awarded_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
	}
	*nawards = (int) SPI_processed;
	qsort(awards, *nawards, sizeof(Award), award_cmp);
	return awards;
}

/*
 * Apply the caps, walking the matches of one (lead, capped rule) in time
 * order.  Returns the counters to store; marks back-filled leads.
 */
static Award *
apply_caps(Match *matches, int nmatches, RuleCache *cache, const Award *existing,
		   int nexisting, LeadTouch *leads, int nleads, int *nupdated)
{
	Award	   *updated = NULL;
	int			n = 0;
	int			cap = 0;
	int			i = 0;

	while (i < nmatches)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];
		int			j = i;
		Award		key;
		const Award *old;
		int32		times;
		TimestampTz last;
		TimestampTz old_last;

		while (j < nmatches && matches[j].lead_id == matches[i].lead_id &&
			   matches[j].rule == matches[i].rule)
			j++;
		if (rule->max_times == 0)
		{
			i = j;
			continue;
		}

		key.lead_id = matches[i].lead_id;
		key.rule_id = rule->id;
		old = nexisting ? bsearch(&key, existing, nexisting, sizeof(Award), award_cmp) : NULL;
		times = old ? old->times : 0;
		old_last = old ? old->last_awarded_at : DT_NOBEGIN;
		last = old_last;

		for (; i < j; i++)
		{
			if (times < rule->max_times)
			{
				times++;
				last = Max(last, matches[i].occurred_at);
			}
			else if (matches[i].occurred_at < old_last)
				find_lead(leads, nleads, matches[i].lead_id)->recompute = true;
			else
				matches[i].awarded = false;
		}
		APPEND(updated, n, cap);
		updated[n] = key;
		updated[n].times = times;
		updated[n].last_awarded_at = last;
		n++;
	}
	*nupdated = n;
	return updated;
}

static void
store_awards(const Award *awards, int nawards, LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	int64	   *lead = palloc_extended(sizeof(int64) * Max(nawards, 1), MCXT_ALLOC_HUGE);
	int64	   *rule = palloc_extended(sizeof(int64) * Max(nawards, 1), MCXT_ALLOC_HUGE);
	int32	   *times = palloc_extended(sizeof(int32) * Max(nawards, 1), MCXT_ALLOC_HUGE);
	TimestampTz *last = palloc_extended(sizeof(TimestampTz) * Max(nawards, 1), MCXT_ALLOC_HUGE);
	Oid			types[4] = {INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[4];
	int			n = 0;
	int			i;

	for (i = 0; i < nawards; i++)
	{
		if (find_lead(leads, nleads, awards[i].lead_id)->recompute || awards[i].times == 0)
			continue;
		lead[n] = awards[i].lead_id;
		rule[n] = awards[i].rule_id;
		times[n] = awards[i].times;
		last[n] = awards[i].last_awarded_at;
		n++;
	}
	if (n == 0)
		return;
	args[0] = PointerGetDatum(int8_array(lead, n));
	args[1] = PointerGetDatum(int8_array(rule, n));
	args[2] = PointerGetDatum(int4_array(times, n));
	args[3] = PointerGetDatum(timestamptz_array(last, n));
	run_plan(&plan,
			 "INSERT INTO leadmgmt.score_award AS w (lead_id, rule_id, times, last_awarded_at) "
			 "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			 "pg_catalog.unnest($3), pg_catalog.unnest($4)) "
			 "ON CONFLICT (lead_id, rule_id) DO UPDATE "
			 "SET times = EXCLUDED.times, last_awarded_at = EXCLUDED.last_awarded_at",
			 4, types, args, SPI_OK_INSERT);
}

/* take back the points of matches that lost to a cap */
static void
store_corrections(const Match *matches, int nmatches, RuleCache *cache,
				  LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Correction *corr = NULL;
	int			n = 0;
	int			cap = 0;
	int64	   *ids;
	float8	   *deltas;
	int			m = 0;
	Oid			types[2] = {INT8ARRAYOID, FLOAT8ARRAYOID};
	Datum		args[2];
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		if (matches[i].awarded || find_lead(leads, nleads, matches[i].lead_id)->recompute)
			continue;
		APPEND(corr, n, cap);
		corr[n].activity_id = matches[i].activity_id;
		corr[n].delta = -cache->rules[matches[i].rule].points;
		n++;
	}
	if (n == 0)
		return;

	qsort(corr, n, sizeof(Correction), correction_cmp);
	ids = palloc(sizeof(int64) * n);
	deltas = palloc(sizeof(float8) * n);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && ids[m - 1] == corr[i].activity_id)
			deltas[m - 1] += corr[i].delta;
		else
		{
			ids[m] = corr[i].activity_id;
			deltas[m] = corr[i].delta;
			m++;
		}
	}
	args[0] = PointerGetDatum(int8_array(ids, m));
	args[1] = PointerGetDatum(float8_array(deltas, m));
	run_plan(&plan,
			 "UPDATE leadmgmt.activity a SET points = a.points OPERATOR(pg_catalog.+) d.delta "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS d(id, delta) "
			 "WHERE a.id OPERATOR(pg_catalog.=) d.id",
			 2, types, args, SPI_OK_UPDATE);
}

/* fold awarded points into the decay components, one per lead and half-life */
static void
store_components(const Match *matches, int nmatches, RuleCache *cache,
				 LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Component  *comp = NULL;
	int			n = 0;
	int			cap = 0;
	int			m = 0;
	int64	   *lead;
	int64	   *half_life;
	float8	   *value;
	TimestampTz *ref;
	Oid			types[4] = {INT8ARRAYOID, INT8ARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[4];
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];

		if (!matches[i].awarded || find_lead(leads, nleads, matches[i].lead_id)->recompute)
			continue;
		APPEND(comp, n, cap);
		comp[n].lead_id = matches[i].lead_id;
		comp[n].half_life_us = rule->half_life_us;
		comp[n].c.value = rule->points;
		comp[n].c.ref = matches[i].occurred_at;
		n++;
	}
	if (n == 0)
		return;

	/* merge per (lead, half-life): exact in any order */
	qsort(comp, n, sizeof(Component), component_cmp);
	for (i = 0; i < n; i++)
	{
		if (m > 0 && comp[m - 1].lead_id == comp[i].lead_id &&
			comp[m - 1].half_life_us == comp[i].half_life_us)
			lm_component_merge(&comp[m - 1].c, &comp[i].c, comp[i].half_life_us);
		else
			comp[m++] = comp[i];
	}

	lead = palloc_extended(sizeof(int64) * m, MCXT_ALLOC_HUGE);
	half_life = palloc_extended(sizeof(int64) * m, MCXT_ALLOC_HUGE);
	value = palloc_extended(sizeof(float8) * m, MCXT_ALLOC_HUGE);
	ref = palloc_extended(sizeof(TimestampTz) * m, MCXT_ALLOC_HUGE);
	for (i = 0; i < m; i++)
	{
		lead[i] = comp[i].lead_id;
		half_life[i] = comp[i].half_life_us;
		value[i] = comp[i].c.value;
		ref[i] = comp[i].c.ref;
	}
	args[0] = PointerGetDatum(int8_array(lead, m));
	args[1] = PointerGetDatum(int8_array(half_life, m));
	args[2] = PointerGetDatum(float8_array(value, m));
	args[3] = PointerGetDatum(timestamptz_array(ref, m));
	run_plan(&plan,
			 "INSERT INTO leadmgmt.score_component AS c (lead_id, half_life_us, value, ref_at) "
			 "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
			 "pg_catalog.unnest($3), pg_catalog.unnest($4)) "
			 "ON CONFLICT (lead_id, half_life_us) DO UPDATE "
			 "SET value = leadmgmt.decay_merge(c.value, c.ref_at, EXCLUDED.value, EXCLUDED.ref_at, c.half_life_us), "
			 "ref_at = GREATEST(c.ref_at, EXCLUDED.ref_at)",
			 4, types, args, SPI_OK_INSERT);
}

/* lead.score = components summed as of the latest one */
static void
store_lead_scores(LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = INT8ARRAYOID;
	Datum		arg;

	if (count_leads(leads, nleads, INCREMENTAL_LEADS) == 0)
		return;
	arg = lead_id_array(leads, nleads, INCREMENTAL_LEADS);
	run_plan(&plan,
			 "UPDATE leadmgmt.lead l SET score = s.score, score_at = s.at "
			 "FROM (SELECT c.lead_id, t.at, "
			 "      pg_catalog.sum(leadmgmt.decay(c.value, c.ref_at, c.half_life_us, t.at)) AS score "
			 "      FROM leadmgmt.score_component c "
			 "      JOIN (SELECT c2.lead_id, pg_catalog.max(c2.ref_at) AS at "
			 "            FROM leadmgmt.score_component c2 "
			 "            WHERE c2.lead_id OPERATOR(pg_catalog.=) ANY ($1) GROUP BY c2.lead_id) t "
			 "        ON c.lead_id OPERATOR(pg_catalog.=) t.lead_id "
			 "      GROUP BY c.lead_id, t.at) s "
			 "WHERE l.id OPERATOR(pg_catalog.=) s.lead_id",
			 1, &type, &arg, SPI_OK_UPDATE);
}

static void
recompute_leads(LeadTouch *leads, int nleads)
{
	static SPIPlanPtr plan = NULL;
	Oid			type = INT8ARRAYOID;
	Datum		arg;

	if (count_leads(leads, nleads, RECOMPUTED_LEADS) == 0)
		return;
	arg = lead_id_array(leads, nleads, RECOMPUTED_LEADS);
	run_plan(&plan, "SELECT leadmgmt.rescore_leads($1)", 1, &type, &arg, SPI_OK_SELECT);
}

/* ---------------------------------------------------------------------
 * Hand-off
 * ---------------------------------------------------------------------
 */
static char *
handoff_payload(int64 lead_id, const char *external_id, float8 score)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"lead_id\": " INT64_FORMAT ", \"external_id\": ", lead_id);
	/* ids only, never personal data; keep well under NOTIFY's 8000 bytes */
	if (external_id != NULL && strlen(external_id) <= 200)
		escape_json(&buf, external_id);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"score\": %s, \"stage\": \"mql\"}",
					 float8out_internal(score));
	return buf.data;
}

static void
hand_off_hot_leads(LeadTouch *leads, int nleads)
{
	static SPIPlanPtr settings_plan = NULL;
	static SPIPlanPtr hot_plan = NULL;
	float8		threshold;
	TimestampTz window_start;
	char	   *channel;
	Oid			types[2] = {INT8ARRAYOID, FLOAT8OID};
	Datum		args[2];
	bool		isnull;
	int			nhot;
	int64	   *hot_ids;
	char	  **hot_external;
	float8	   *hot_score;
	TimestampTz *hot_at;
	int			i;

	run_plan(&settings_plan,
			 "SELECT leadmgmt.get_setting('mql_threshold')::pg_catalog.float8, "
			 "pg_catalog.now() OPERATOR(pg_catalog.-) "
			 "leadmgmt.get_setting('handoff_window')::pg_catalog.interval, "
			 "leadmgmt.get_setting('notify_channel')",
			 0, NULL, NULL, SPI_OK_SELECT);
	threshold = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	window_start = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	channel = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	args[0] = lead_id_array(leads, nleads, ALL_LEADS);
	args[1] = Float8GetDatum(threshold);
	run_plan(&hot_plan,
			 "SELECT l.id, l.external_id, l.score, "
			 "GREATEST(l.score_at, l.stage_entered_at) "
			 "FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) "
			 "AND l.stage OPERATOR(pg_catalog.=) ANY ('{inquiry,recycled}'::pg_catalog.text[]) "
			 "AND l.score OPERATOR(pg_catalog.>=) $2 ORDER BY l.id",
			 2, types, args, SPI_OK_SELECT);

	/* copy out: moving the leads runs more SPI */
	nhot = (int) SPI_processed;
	hot_ids = palloc(sizeof(int64) * Max(nhot, 1));
	hot_external = palloc(sizeof(char *) * Max(nhot, 1));
	hot_score = palloc(sizeof(float8) * Max(nhot, 1));
	hot_at = palloc(sizeof(TimestampTz) * Max(nhot, 1));
	for (i = 0; i < nhot; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		hot_ids[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		hot_external[i] = SPI_getvalue(tup, desc, 2);
		hot_score[i] = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
		hot_at[i] = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
	}

	for (i = 0; i < nhot; i++)
	{
		LeadTouch  *touch = find_lead(leads, nleads, hot_ids[i]);

		/* the crossing must come from recent activity, not an old import */
		if (touch == NULL || touch->latest < window_start)
			continue;
		(void) lm_set_stage(hot_ids[i], "mql", "score >= threshold", hot_at[i], true);
		Async_Notify(channel, handoff_payload(hot_ids[i], hot_external[i], hot_score[i]));
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
	LeadTouch  *leads;
	int			nleads;
	Award	   *existing;
	int			nexisting;
	Award	   *awards;
	int			nawards;
	Oid			save_userid;
	int			save_sec_context;

	lm_check_trigger_context(fcinfo, "activity_score_statement", false, false);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_statement: must be fired AFTER INSERT with REFERENCING NEW TABLE")));
	rel = trigdata->tg_relation;

	cache = get_rule_cache();
	matches = collect_matches(trigdata->tg_newtable, RelationGetDescr(rel), cache, &nmatches);
	if (nmatches == 0)
		return PointerGetDatum(NULL);
	qsort(matches, nmatches, sizeof(Match), match_cmp);
	leads = touched_leads(matches, nmatches, &nleads);

	/* bookkeeping runs as the extension owner (owner of the activity table) */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	lock_leads(leads, nleads);
	existing = load_awards(matches, nmatches, cache, &nexisting);
	awards = apply_caps(matches, nmatches, cache, existing, nexisting, leads, nleads, &nawards);
	store_awards(awards, nawards, leads, nleads);
	store_corrections(matches, nmatches, cache, leads, nleads);
	store_components(matches, nmatches, cache, leads, nleads);
	store_lead_scores(leads, nleads);
	recompute_leads(leads, nleads);
	hand_off_hot_leads(leads, nleads);

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}
