/*
 * scoring.c
 *		Incremental behaviour scoring: points on activity rows, decayed lead
 *		scores, caps, and the automatic hand-off to sales.
 *
 * Two triggers on leadmgmt.activity share the work (doc/design.md):
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
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "decay.h"
#include "leadmgmt.h"
#include "score_state.h"

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

static bool
column_is(TupleDesc desc, int attnum, const char *name)
{
	return attnum > 0 && attnum <= desc->natts &&
		!TupleDescAttr(desc, attnum - 1)->attisdropped &&
		strcmp(NameStr(TupleDescAttr(desc, attnum - 1)->attname), name) == 0;
}

/*
 * Column numbers of the activity table, looked up once and re-checked by
 * name on every use (cheap), so ALTER TABLE cannot make them stale.
 */
static const ActivityColumns *
activity_columns(TupleDesc desc)
{
	static ActivityColumns cols = {0};

	if (!column_is(desc, cols.id, "id") || !column_is(desc, cols.lead_id, "lead_id") ||
		!column_is(desc, cols.kind, "kind") || !column_is(desc, cols.occurred_at, "occurred_at") ||
		!column_is(desc, cols.campaign, "campaign") || !column_is(desc, cols.detail, "detail") ||
		!column_is(desc, cols.duration_s, "duration_s") || !column_is(desc, cols.points, "points"))
	{
		cols.id = activity_column(desc, "id");
		cols.lead_id = activity_column(desc, "lead_id");
		cols.kind = activity_column(desc, "kind");
		cols.occurred_at = activity_column(desc, "occurred_at");
		cols.campaign = activity_column(desc, "campaign");
		cols.detail = activity_column(desc, "detail");
		cols.duration_s = activity_column(desc, "duration_s");
		cols.points = activity_column(desc, "points");
	}
	return &cols;
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
	const ActivityColumns *cols;
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
	cols = activity_columns(desc);
	read_activity(tuple, desc, cols, &row);

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
		int			points_col = cols->points;

		return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 1, &points_col,
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

typedef struct Correction
{
	int64		activity_id;
	float8		delta;
} Correction;

/* one lead touched by the statement */
typedef struct LeadState
{
	int64		lead_id;
	TimestampTz latest_match;	/* latest occurred_at among its matches */
	bool		recompute;		/* back-filled past a cap: rescore this lead */
	bool		found;			/* the lead row was read and locked */
	bool		had_state;		/* a score_state row exists */
	char	   *external_id;
	char	   *stage;
	TimestampTz stage_entered_at;
	LmState		state;
	float8		score;
	TimestampTz score_at;
} LeadState;

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

static int
lead_state_cmp(const void *a, const void *b)
{
	return CMP(((const LeadState *) a)->lead_id, ((const LeadState *) b)->lead_id);
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
datum_array(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return construct_array(d, n, type, len, byval, align);
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

/*
 * Deliverability and consent facts seen in the statement: a bounce marks the
 * address bounced, an unsubscribe marks it unsubscribed and withdraws e-mail
 * consent (identity's hygiene, done here because this trigger already reads
 * every new row).
 */
typedef struct Hygiene
{
	int			nbounced;
	int			nunsubscribed;
	int			cap_bounced;
	int			cap_unsubscribed;
	int64	   *bounced;
	int64	   *unsubscribed;
	TimestampTz *unsubscribed_at;
} Hygiene;

static void
note_hygiene(Hygiene *h, const ActivityRow *row)
{
	if (row->kind == NULL)
		return;
	if (strcmp(row->kind, "email_bounce") == 0)
	{
		APPEND(h->bounced, h->nbounced, h->cap_bounced);
		h->bounced[h->nbounced++] = row->lead_id;
	}
	else if (strcmp(row->kind, "unsubscribe") == 0)
	{
		int			cap = h->cap_unsubscribed;

		APPEND(h->unsubscribed, h->nunsubscribed, h->cap_unsubscribed);
		APPEND(h->unsubscribed_at, h->nunsubscribed, cap);
		h->unsubscribed[h->nunsubscribed] = row->lead_id;
		h->unsubscribed_at[h->nunsubscribed] = row->occurred_at;
		h->nunsubscribed++;
	}
}

/* the statement's matches, one per (row, rule), and its hygiene facts */
static Match *
collect_matches(Tuplestorestate *rows, TupleDesc desc, RuleCache *cache, int *nmatches,
				Hygiene *hygiene)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext rowcxt = AllocSetContextCreate(outer, "leadmgmt scoring row",
												 ALLOCSET_SMALL_SIZES);
	const ActivityColumns *cols = activity_columns(desc);
	Match	   *matches = NULL;
	int			n = 0;
	int			cap = 0;

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
		read_activity(tuple, desc, cols, &row);
		MemoryContextSwitchTo(outer);
		note_hygiene(hygiene, &row);
		if (had_given_points(row.id))
			continue;
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
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(rowcxt);
	*nmatches = n;
	return matches;
}

/* the distinct leads of the (sorted) matches, with their latest match time */
static LeadState *
touched_leads(const Match *matches, int nmatches, int *nleads)
{
	LeadState  *leads = palloc_extended(sizeof(LeadState) * Max(nmatches, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	int			n = 0;
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		if (n == 0 || leads[n - 1].lead_id != matches[i].lead_id)
		{
			leads[n].lead_id = matches[i].lead_id;
			leads[n].latest_match = matches[i].occurred_at;
			n++;
		}
		else if (matches[i].occurred_at > leads[n - 1].latest_match)
			leads[n - 1].latest_match = matches[i].occurred_at;
	}
	*nleads = n;
	return leads;
}

static LeadState *
find_lead(LeadState *leads, int nleads, int64 lead_id)
{
	LeadState	key;

	key.lead_id = lead_id;
	return bsearch(&key, leads, nleads, sizeof(LeadState), lead_state_cmp);
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
	return PointerGetDatum(datum_array(ids, n, INT8OID));
}

/*
 * Lock the leads in id order (FOR NO KEY UPDATE does not conflict with the
 * KEY SHARE locks of the foreign keys), then read their stage and state.
 * Two statements on purpose: the read must take its snapshot after the
 * locks are granted, or it would miss what the session we waited for wrote.
 */
static void
lock_and_read_leads(LeadState *leads, int nleads)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	Oid			type = INT8ARRAYOID;
	int			count;
	Datum		arg = lead_id_array(leads, nleads, false, &count);
	uint64		i;

	run_plan(&lock_plan,
			 "SELECT 1 FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY ($1) "
			 "ORDER BY l.id FOR NO KEY UPDATE",
			 1, &type, &arg, SPI_OK_SELECT);
	run_plan(&read_plan,
			 "SELECT l.id, l.external_id, l.stage, l.stage_entered_at, s.state "
			 "FROM leadmgmt.lead l LEFT JOIN leadmgmt.score_state s "
			 "ON s.lead_id OPERATOR(pg_catalog.=) l.id "
			 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1)",
			 1, &type, &arg, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		LeadState  *lead = find_lead(leads, nleads,
									 DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));
		Datum		state;

		if (lead == NULL)
			continue;
		lead->found = true;
		lead->external_id = SPI_getvalue(tup, desc, 2);
		lead->stage = SPI_getvalue(tup, desc, 3);
		lead->stage_entered_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
		state = SPI_getbinval(tup, desc, 5, &isnull);
		lead->had_state = !isnull;
		lm_state_from_bytea(isnull ? NULL : DatumGetByteaPP(state), &lead->state);
	}
}

/*
 * Apply the caps, walking the matches of one (lead, capped rule) in time
 * order against the lead's counter; marks back-filled leads for recompute.
 */
static void
apply_caps(Match *matches, int nmatches, RuleCache *cache, LeadState *leads, int nleads)
{
	int			i = 0;

	while (i < nmatches)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];
		LeadState  *lead = find_lead(leads, nleads, matches[i].lead_id);
		int			j = i;
		LmStateAward *counter;
		TimestampTz awarded_before;

		while (j < nmatches && matches[j].lead_id == matches[i].lead_id &&
			   matches[j].rule == matches[i].rule)
			j++;
		if (rule->max_times == 0 || !lead->found)
		{
			i = j;
			continue;
		}
		counter = lm_state_counter(&lead->state, rule->id);
		awarded_before = counter->times > 0 ? counter->last : DT_NOBEGIN;
		for (; i < j; i++)
		{
			if (counter->times < rule->max_times)
			{
				counter->times++;
				counter->last = counter->times == 1 ? matches[i].occurred_at :
					Max(counter->last, matches[i].occurred_at);
			}
			else if (matches[i].occurred_at < awarded_before)
				lead->recompute = true;
			else
				matches[i].awarded = false;
		}
	}
}

/* fold awarded points into the leads' decay components and score them */
static void
fold_points(const Match *matches, int nmatches, RuleCache *cache, LeadState *leads, int nleads)
{
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];
		LeadState  *lead = find_lead(leads, nleads, matches[i].lead_id);

		if (!matches[i].awarded || !lead->found || lead->recompute)
			continue;
		if (!lm_state_fold(&lead->state, rule->half_life_us, rule->points, matches[i].occurred_at))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct half-lives for one lead")));
	}
	for (i = 0; i < nleads; i++)
	{
		leads[i].score_at = lm_state_latest(&leads[i].state);
		leads[i].score = leads[i].state.ncomponents ?
			lm_state_value_at(&leads[i].state, leads[i].score_at) : 0;
	}
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
	args[0] = PointerGetDatum(datum_array(some_ids, m, INT8OID));
	args[1] = PointerGetDatum(datum_array(some_states, m, BYTEAOID));
	if (inserting)
		run_plan(&insert_plan,
				 "INSERT INTO leadmgmt.score_state (lead_id, state) "
				 "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))",
				 2, types, args, SPI_OK_INSERT);
	else
		run_plan(&update_plan,
				 "UPDATE leadmgmt.score_state s SET state = u.state "
				 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(lead_id, state) "
				 "WHERE s.lead_id OPERATOR(pg_catalog.=) u.lead_id",
				 2, types, args, SPI_OK_UPDATE);
}

/* one write per lead for the state, one for its score */
static void
store_states(LeadState *leads, int nleads)
{
	static SPIPlanPtr score_plan = NULL;
	Datum	   *ids = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *states = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *scores = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *ats = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	bool	   *is_new = palloc_extended(sizeof(bool) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Oid			score_types[3] = {INT8ARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[3];
	int			n = 0;
	int			i;

	for (i = 0; i < nleads; i++)
	{
		if (!leads[i].found || leads[i].recompute || leads[i].state.ncomponents == 0)
			continue;
		ids[n] = Int64GetDatum(leads[i].lead_id);
		states[n] = PointerGetDatum(lm_state_to_bytea(&leads[i].state));
		is_new[n] = !leads[i].had_state;
		scores[n] = Float8GetDatum(leads[i].score);
		ats[n] = TimestampTzGetDatum(leads[i].score_at);
		n++;
	}
	if (n == 0)
		return;
	/*
	 * The lead locks we hold keep anybody else from writing these states,
	 * so a plain INSERT for new leads and an UPDATE for the others do what
	 * a (much slower, speculative) INSERT ... ON CONFLICT would.
	 */
	write_states(ids, states, is_new, n, true);
	write_states(ids, states, is_new, n, false);
	args[0] = PointerGetDatum(datum_array(ids, n, INT8OID));
	args[1] = PointerGetDatum(datum_array(scores, n, FLOAT8OID));
	args[2] = PointerGetDatum(datum_array(ats, n, TIMESTAMPTZOID));
	run_plan(&score_plan,
			 "UPDATE leadmgmt.lead l SET score = u.score, score_at = u.score_at "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3)) "
			 "AS u(id, score, score_at) WHERE l.id OPERATOR(pg_catalog.=) u.id",
			 3, score_types, args, SPI_OK_UPDATE);
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
	args[0] = PointerGetDatum(datum_array(ids, m, INT8OID));
	args[1] = PointerGetDatum(datum_array(deltas, m, FLOAT8OID));
	run_plan(&plan,
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
	run_plan(&rescore_plan, "SELECT leadmgmt.rescore_leads($1)", 1, &type, &arg, SPI_OK_SELECT);
	run_plan(&read_plan,
			 "SELECT l.id, l.score, l.score_at FROM leadmgmt.lead l "
			 "WHERE l.id OPERATOR(pg_catalog.=) ANY ($1)",
			 1, &type, &arg, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		LeadState  *lead = find_lead(leads, nleads,
									 DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)));

		lead->score = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
		lead->score_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
	}
}

static Datum
int8_datum_array(const int64 *values, int n)
{
	Datum	   *d = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(datum_array(d, n, INT8OID));
}

/* email_status: unsubscribed beats bounced beats ok */
static void
apply_hygiene(const Hygiene *h)
{
	static SPIPlanPtr status_plan = NULL;
	static SPIPlanPtr consent_plan = NULL;
	Oid			types[2] = {INT8ARRAYOID, INT8ARRAYOID};
	Oid			consent_types[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[2];
	Datum	   *at;
	int			i;

	if (h->nbounced == 0 && h->nunsubscribed == 0)
		return;
	args[0] = int8_datum_array(h->bounced, h->nbounced);
	args[1] = int8_datum_array(h->unsubscribed, h->nunsubscribed);
	run_plan(&status_plan,
			 "UPDATE leadmgmt.lead l SET email_status = CASE "
			 "WHEN l.id OPERATOR(pg_catalog.=) ANY ($2) THEN 'unsubscribed' ELSE 'bounced' END "
			 "FROM (SELECT x.id FROM leadmgmt.lead x "
			 "      WHERE x.id OPERATOR(pg_catalog.=) ANY ($1 OPERATOR(pg_catalog.||) $2) "
			 "      ORDER BY x.id FOR NO KEY UPDATE) s "
			 "WHERE l.id OPERATOR(pg_catalog.=) s.id AND "
			 "(l.id OPERATOR(pg_catalog.=) ANY ($2) AND l.email_status OPERATOR(pg_catalog.<>) 'unsubscribed' "
			 " OR l.email_status OPERATOR(pg_catalog.=) 'ok')",
			 2, types, args, SPI_OK_UPDATE);
	if (h->nunsubscribed == 0)
		return;
	at = palloc_extended(sizeof(Datum) * h->nunsubscribed, MCXT_ALLOC_HUGE);
	for (i = 0; i < h->nunsubscribed; i++)
		at[i] = TimestampTzGetDatum(h->unsubscribed_at[i]);
	args[0] = int8_datum_array(h->unsubscribed, h->nunsubscribed);
	args[1] = PointerGetDatum(datum_array(at, h->nunsubscribed, TIMESTAMPTZOID));
	run_plan(&consent_plan,
			 "INSERT INTO leadmgmt.consent (lead_id, channel, granted, source, at, recorded_by) "
			 "SELECT u.lead_id, 'email', false, 'activity:unsubscribe', u.at, SESSION_USER "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(lead_id, at) "
			 "ORDER BY u.lead_id, u.at",
			 2, consent_types, args, SPI_OK_INSERT);
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

static bool
may_hand_off(const LeadState *lead)
{
	return lead->found && lead->stage != NULL &&
		(strcmp(lead->stage, "inquiry") == 0 || strcmp(lead->stage, "recycled") == 0);
}

static void
hand_off_hot_leads(LeadState *leads, int nleads)
{
	static SPIPlanPtr settings_plan = NULL;
	float8		threshold;
	TimestampTz window_start;
	char	   *channel;
	bool		isnull;
	int			i;

	for (i = 0; i < nleads; i++)
		if (may_hand_off(&leads[i]))
			break;
	if (i == nleads)
		return;

	run_plan(&settings_plan,
			 "SELECT leadmgmt.get_setting('mql_threshold')::pg_catalog.float8, "
			 "pg_catalog.now() OPERATOR(pg_catalog.-) "
			 "leadmgmt.get_setting('handoff_window')::pg_catalog.interval, "
			 "leadmgmt.get_setting('notify_channel')",
			 0, NULL, NULL, SPI_OK_SELECT);
	threshold = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	window_start = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	channel = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	for (i = 0; i < nleads; i++)
	{
		LeadState  *lead = &leads[i];

		/* the crossing must come from recent activity, not an old import */
		if (!may_hand_off(lead) || lead->score < threshold || lead->latest_match < window_start)
			continue;
		/* at the crossing, but never before the lead's last history row */
		(void) lm_set_stage(lead->lead_id, "mql", "score >= threshold",
							Max(lead->score_at, lead->stage_entered_at), false);
		Async_Notify(channel, handoff_payload(lead->lead_id, lead->external_id, lead->score));
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
	LeadState  *leads;
	int			nleads;
	Hygiene		hygiene;
	Oid			save_userid;
	int			save_sec_context;

	lm_check_trigger_context(fcinfo, "activity_score_statement", false, false);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("activity_score_statement: must be fired AFTER INSERT with REFERENCING NEW TABLE")));
	rel = trigdata->tg_relation;

	cache = get_rule_cache();
	memset(&hygiene, 0, sizeof(hygiene));
	matches = collect_matches(trigdata->tg_newtable, RelationGetDescr(rel), cache, &nmatches,
							  &hygiene);
	if (nmatches == 0 && hygiene.nbounced == 0 && hygiene.nunsubscribed == 0)
		return PointerGetDatum(NULL);
	qsort(matches, nmatches, sizeof(Match), match_cmp);
	leads = touched_leads(matches, nmatches, &nleads);

	/* bookkeeping runs as the extension owner (owner of the activity table) */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (nleads > 0)
	{
		lock_and_read_leads(leads, nleads);
		apply_caps(matches, nmatches, cache, leads, nleads);
		fold_points(matches, nmatches, cache, leads, nleads);
		store_states(leads, nleads);
		store_corrections(matches, nmatches, cache, leads, nleads);
		recompute_leads(leads, nleads);
	}
	apply_hygiene(&hygiene);
	if (nleads > 0)
		hand_off_hot_leads(leads, nleads);

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return PointerGetDatum(NULL);
}

/* ---------------------------------------------------------------------
 * Merges
 * ---------------------------------------------------------------------
 */

/*
 * merge_score(keep bigint, duplicate bigint) RETURNS float8
 *
 * Step of merge_leads() once the duplicate's activities are on the kept
 * lead: merge_leads moves them by UPDATE, which the INSERT triggers above
 * never see, so the two leads are rebuilt from their log (rescore_leads: the
 * caps of both now count together) and the kept lead goes through the same
 * hand-off as a tracked activity (hand_off_hot_leads: stage mql and the
 * NOTIFY when it reached the threshold through activity within
 * handoff_window).  Keeps the invariant "after any sequence of merges
 * rescore() changes nothing".
 *
 * Runs as the extension owner, like the statement trigger; refuses a pair
 * that is not merged and callers without UPDATE on leadmgmt.lead.  Locks
 * both leads in id order first (merge_leads holds them already).  Returns
 * the kept lead's score.
 */
PG_FUNCTION_INFO_V1(leadmgmt_merge_score);
Datum
leadmgmt_merge_score(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr check_plan = NULL;
	static SPIPlanPtr rescore_plan = NULL;
	static SPIPlanPtr read_plan = NULL;
	int64		keep = PG_GETARG_INT64(0);
	int64		dup = PG_GETARG_INT64(1);
	Oid			relid = get_relname_relid("lead", lm_schema_oid());
	Oid			owner;
	HeapTuple	classtup;
	Oid			save_userid;
	int			save_sec_context;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		args[2];
	Oid			arraytype = INT8ARRAYOID;
	Datum		ids[2];
	Datum		idarray;
	LeadState	lead;
	bool		isnull;
	Datum		d;
	HeapTuple	tup;
	TupleDesc	desc;

	if (!OidIsValid(relid))
		elog(ERROR, "leadmgmt.lead does not exist");
	if (pg_class_aclcheck(relid, GetUserId(), ACL_UPDATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table lead"),
				 errhint("merge_score() is a step of leadmgmt.merge_leads().")));
	classtup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(classtup))->relowner;
	ReleaseSysCache(classtup);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = Int64GetDatum(keep);
	args[1] = Int64GetDatum(dup);
	run_plan(&lock_plan,
			 "SELECT 1 FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY (ARRAY[$1, $2]) "
			 "ORDER BY l.id FOR NO KEY UPDATE",
			 2, types, args, SPI_OK_SELECT);
	run_plan(&check_plan,
			 "SELECT d.merged_into FROM leadmgmt.lead d WHERE d.id OPERATOR(pg_catalog.=) $1",
			 1, types + 1, args + 1, SPI_OK_SELECT);
	d = SPI_processed == 0 ? (Datum) 0 :
		SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (SPI_processed == 0 || isnull || DatumGetInt64(d) != keep)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("lead " INT64_FORMAT " is not merged into lead " INT64_FORMAT, dup, keep),
				 errhint("Use leadmgmt.merge_leads(keep, duplicate).")));

	ids[0] = Int64GetDatum(keep);
	ids[1] = Int64GetDatum(dup);
	idarray = PointerGetDatum(datum_array(ids, 2, INT8OID));
	run_plan(&rescore_plan, "SELECT leadmgmt.rescore_leads($1)", 1, &arraytype, &idarray,
			 SPI_OK_SELECT);

	run_plan(&read_plan,
			 "SELECT l.external_id, l.stage, l.stage_entered_at, l.score, l.score_at "
			 "FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) $1",
			 1, types, args, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "could not read lead " INT64_FORMAT, keep);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	memset(&lead, 0, sizeof(lead));
	lead.lead_id = keep;
	lead.found = true;
	lead.external_id = SPI_getvalue(tup, desc, 1);
	lead.stage = SPI_getvalue(tup, desc, 2);
	lead.stage_entered_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
	lead.score = DatumGetFloat8(SPI_getbinval(tup, desc, 4, &isnull));
	d = SPI_getbinval(tup, desc, 5, &isnull);
	lead.score_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
	/* the crossing comes from the latest activity now on the lead */
	lead.latest_match = lead.score_at;
	if (!isnull)
		hand_off_hot_leads(&lead, 1);

	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	PG_RETURN_FLOAT8(lead.score);
}
