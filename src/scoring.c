/*
 * scoring.c
 *		Behaviour scoring rules: the rule cache, matching an activity against
 *		the rules, caps and decay folding, the automatic hand-off to sales,
 *		and merge_score().
 *
 * What: the rules of doc/scoring.md as the incremental path applies them.
 * The activity ingest triggers (ingest.c) call in here for every statement;
 * rescore() applies the same rules set-based in SQL (40_scoring.sql), and
 * the tests compare the two.
 *
 * How: the effective rules (active, not overridden by a user rule) are
 * loaded once per session into RuleCache and dropped by a relcache callback
 * when leadmgmt.scoring_rule changes (a statement trigger there sends the
 * invalidation).  Caps walk the matches of one (lead, capped rule) in time
 * order against the lead's counter; decay folds awarded points into one
 * component per half-life (src/core/decay.c, src/core/score_state.c).
 *
 * State: the rule cache (per session, CacheMemoryContext) and kept plans.
 *
 * Complexity: matching is O(rules of the row's kind) per row; caps and
 * folding are O(m log k) for m matches on k leads.
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

/* ---------------------------------------------------------------------
 * Rule cache (src/pg/lookup_cache.h)
 * ---------------------------------------------------------------------
 */
static uint64 rule_cache_builds = 0;

static char *
copy_text_column(MemoryContext cxt, HeapTuple tup, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tup, desc, col);

	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

static void *
build_rule_cache(MemoryContext cxt)
{
	static SPIPlanPtr plan = NULL;
	RuleCache  *cache = MemoryContextAllocZero(cxt, sizeof(RuleCache));
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(lm_kept_plan(&plan,
									  "SELECT r.id, r.kind, r.detail_pattern, r.campaign, r.min_duration_s, "
									  "r.points, leadmgmt.half_life_us(r.half_life), r.max_times "
									  "FROM leadmgmt.scoring_rule r WHERE r.active AND NOT EXISTS "
									  "(SELECT 1 FROM leadmgmt.scoring_rule o "
									  " WHERE o.overrides OPERATOR(pg_catalog.=) r.name) ORDER BY r.id",
									  0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.scoring_rule");

	cache->generation = ++rule_cache_builds;
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
		rule->kind_len = strlen(rule->kind);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			rule->detail_pattern = DatumGetTextPCopy(d);
			MemoryContextSwitchTo(old);
		}
		rule->campaign = copy_text_column(cxt, tup, desc, 4);
		rule->campaign_len = rule->campaign ? strlen(rule->campaign) : 0;
		d = SPI_getbinval(tup, desc, 5, &isnull);
		rule->min_duration_s = isnull ? -1 : DatumGetInt32(d);
		rule->points = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
		rule->half_life_us = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		d = SPI_getbinval(tup, desc, 8, &isnull);
		rule->max_times = isnull ? 0 : DatumGetInt32(d);
	}
	SPI_finish();
	return cache;
}

static LmLookupCache rule_cache = {"leadmgmt rule cache", {"scoring_rule", NULL}, build_rule_cache};

/*
 * The effective rules: active, not overridden by a user rule.  Built once
 * per session, dropped when leadmgmt.scoring_rule changes.
 */
RuleCache *
lm_rule_cache(void)
{
	return (RuleCache *) lm_lookup_cache_get(&rule_cache);
}

/* ---------------------------------------------------------------------
 * Matching one activity
 * ---------------------------------------------------------------------
 */
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
 * name on every call, so ALTER TABLE cannot make them stale (the row trigger
 * calls it once per statement: the table cannot change under a statement).
 */
const ActivityColumns *
lm_activity_columns(TupleDesc desc)
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
 * The columns matching reads, from a deformed tuple (heap_deform_tuple or
 * slot_getallattrs).  Strings point into the tuple, detoasted only when
 * compressed or external.
 */
void
lm_activity_from_values(const Datum *values, const bool *nulls, const ActivityColumns *cols,
						ActivityRow *row)
{
#define COL(c) ((c) - 1)
	row->id = nulls[COL(cols->id)] ? 0 : DatumGetInt64(values[COL(cols->id)]);
	row->lead_id = nulls[COL(cols->lead_id)] ? 0 : DatumGetInt64(values[COL(cols->lead_id)]);
	row->occurred_at = nulls[COL(cols->occurred_at)] ? DT_NOBEGIN :
		DatumGetTimestampTz(values[COL(cols->occurred_at)]);
	if (nulls[COL(cols->kind)])
		row->kind = NULL;
	else
	{
		text	   *t = DatumGetTextPP(values[COL(cols->kind)]);

		row->kind = VARDATA_ANY(t);
		row->kind_len = VARSIZE_ANY_EXHDR(t);
	}
	row->detail = nulls[COL(cols->detail)] ? NULL : DatumGetTextPP(values[COL(cols->detail)]);
	if (nulls[COL(cols->campaign)])
		row->campaign = NULL;
	else
	{
		text	   *t = DatumGetTextPP(values[COL(cols->campaign)]);

		row->campaign = VARDATA_ANY(t);
		row->campaign_len = VARSIZE_ANY_EXHDR(t);
	}
	row->has_duration = !nulls[COL(cols->duration_s)];
	row->duration_s = row->has_duration ? DatumGetInt32(values[COL(cols->duration_s)]) : 0;
	row->points_given = !nulls[COL(cols->points)];
#undef COL
}

/* the SQL of leadmgmt.score_matches(), for one row and one rule */
bool
lm_rule_matches(const ScoringRule *rule, const ActivityRow *row)
{
	if (row->kind == NULL || row->kind_len != rule->kind_len ||
		memcmp(rule->kind, row->kind, row->kind_len) != 0)
		return false;
	if (rule->campaign != NULL &&
		(row->campaign == NULL || row->campaign_len != rule->campaign_len ||
		 memcmp(rule->campaign, row->campaign, row->campaign_len) != 0))
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
 * Helpers shared with ingest.c
 * ---------------------------------------------------------------------
 */
int
lm_lead_state_cmp(const void *a, const void *b)
{
	return CMP(((const LeadState *) a)->lead_id, ((const LeadState *) b)->lead_id);
}

ArrayType *
lm_datum_array(Datum *d, int n, Oid type)
{
	int16		len;
	bool		byval;
	char		align;

	get_typlenbyvalalign(type, &len, &byval, &align);
	return construct_array(d, n, type, len, byval, align);
}

/*
 * Run a kept plan (lm_kept_plan).  Never read-only: each step must see what
 * the previous one wrote (read-only SPI skips the command counter increment
 * and would read a stale snapshot).
 */
void
lm_run_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
			int expected)
{
	int			rc = SPI_execute_plan(lm_kept_plan(plan, sql, nargs, types), values, NULL,
									  false, 0);

	if (rc != expected)
		elog(ERROR, "unexpected SPI result %s for \"%s\"", SPI_result_code_string(rc), sql);
}


Datum
lm_int8_datum_array(const int64 *values, int n)
{
	Datum	   *d = palloc_extended(sizeof(Datum) * Max(n, 1), MCXT_ALLOC_HUGE);
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(lm_datum_array(d, n, INT8OID));
}

/* the lead ids as an int8[] (all, or only those to recompute) */
Datum
lm_lead_id_array(const LeadState *leads, int nleads, bool recompute_only, int *count)
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
 * The lead of a match, remembered in *hint: matches come sorted by lead, so
 * a run of them looks the lead up once.
 */
LeadState *
lm_lead_of(LeadState *leads, int nleads, int64 lead_id, LeadState **hint)
{
	if (*hint == NULL || (*hint)->lead_id != lead_id)
		*hint = lm_find_lead(leads, nleads, lead_id);
	return *hint;
}

LeadState *
lm_find_lead(LeadState *leads, int nleads, int64 lead_id)
{
	LeadState	key;

	key.lead_id = lead_id;
	return bsearch(&key, leads, nleads, sizeof(LeadState), lm_lead_state_cmp);
}

/* ---------------------------------------------------------------------
 * Caps and decay
 * ---------------------------------------------------------------------
 */
/*
 * Apply the caps, walking the matches of one (lead, capped rule) in time
 * order against the lead's counter; marks back-filled leads for recompute.
 */
void
lm_apply_caps(Match *matches, int nmatches, RuleCache *cache, LeadState *leads, int nleads)
{
	int			i = 0;

	while (i < nmatches)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];
		LeadState  *lead = lm_find_lead(leads, nleads, matches[i].lead_id);
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
void
lm_fold_points(const Match *matches, int nmatches, RuleCache *cache, LeadState *leads, int nleads)
{
	LeadState  *hint = NULL;
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		const ScoringRule *rule = &cache->rules[matches[i].rule];
		LeadState  *lead = lm_lead_of(leads, nleads, matches[i].lead_id, &hint);

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


/* ---------------------------------------------------------------------
 * Storing what a statement did
 * ---------------------------------------------------------------------
 */
typedef struct Correction
{
	int64		activity_id;
	float8		delta;
} Correction;

static int
correction_cmp(const void *a, const void *b)
{
	return CMP(((const Correction *) a)->activity_id, ((const Correction *) b)->activity_id);
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

/* one write per lead for its state and one for its score */
static void
store_states(LeadState *leads, int nleads)
{
	static SPIPlanPtr score_plan = NULL;
	Oid			score_types[3] = {INT8ARRAYOID, FLOAT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum	   *ids = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *states = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	bool	   *is_new = palloc_extended(sizeof(bool) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *scores = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum	   *ats = palloc_extended(sizeof(Datum) * Max(nleads, 1), MCXT_ALLOC_HUGE);
	Datum		args[3];
	int			n = 0;
	int			i;

	for (i = 0; i < nleads; i++)
	{
		LeadState  *lead = &leads[i];

		if (!lead->found || !lead->has_matches || lead->recompute ||
			lead->state.ncomponents == 0)
			continue;
		ids[n] = Int64GetDatum(lead->lead_id);
		states[n] = PointerGetDatum(lm_state_to_bytea(&lead->state));
		is_new[n] = !lead->had_state;
		scores[n] = Float8GetDatum(lead->score);
		ats[n] = TimestampTzGetDatum(lead->score_at);
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
	args[0] = PointerGetDatum(lm_datum_array(ids, n, INT8OID));
	args[1] = PointerGetDatum(lm_datum_array(scores, n, FLOAT8OID));
	args[2] = PointerGetDatum(lm_datum_array(ats, n, TIMESTAMPTZOID));
	lm_run_plan(&score_plan,
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
	int64		cap = 0;
	Datum	   *ids;
	Datum	   *deltas;
	int			m = 0;
	Oid			types[2] = {INT8ARRAYOID, FLOAT8ARRAYOID};
	Datum		args[2];
	LeadState  *hint = NULL;
	int			i;

	for (i = 0; i < nmatches; i++)
	{
		if (matches[i].awarded || lm_lead_of(leads, nleads, matches[i].lead_id, &hint)->recompute)
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
	Datum		arg = lm_lead_id_array(leads, nleads, true, &count);
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

/*
 * Write what the statement did to its (locked) leads: states and scores,
 * corrections of capped matches, and the recompute of back-filled leads.
 */
void
lm_store_scores(const Match *matches, int nmatches, RuleCache *cache, LeadState *leads,
				int nleads)
{
	store_states(leads, nleads);
	store_corrections(matches, nmatches, cache, leads, nleads);
	recompute_leads(leads, nleads);
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

void
lm_hand_off_hot_leads(LeadState *leads, int nleads)
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

	lm_run_plan(&settings_plan,
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
 * hand-off as a tracked activity (lm_hand_off_hot_leads: stage mql and the
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
	LmAsOwner	saved;
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

	/* temporary tables: rescore_leads() builds its ON COMMIT DROP ones */
	lm_as_owner_begin(&saved, owner, LM_OWNER_TEMP_TABLES);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	args[0] = Int64GetDatum(keep);
	args[1] = Int64GetDatum(dup);
	lm_run_plan(&lock_plan,
			 "SELECT 1 FROM leadmgmt.lead l WHERE l.id OPERATOR(pg_catalog.=) ANY (ARRAY[$1, $2]) "
			 "ORDER BY l.id FOR NO KEY UPDATE",
			 2, types, args, SPI_OK_SELECT);
	lm_run_plan(&check_plan,
			 "SELECT d.merged_into FROM leadmgmt.lead d WHERE d.id OPERATOR(pg_catalog.=) $1",
			 1, types + 1, args + 1, SPI_OK_SELECT);
	lm_require_merged_pair(keep, dup, 1);

	ids[0] = Int64GetDatum(keep);
	ids[1] = Int64GetDatum(dup);
	idarray = PointerGetDatum(lm_datum_array(ids, 2, INT8OID));
	lm_run_plan(&rescore_plan, "SELECT leadmgmt.rescore_leads($1)", 1, &arraytype, &idarray,
			 SPI_OK_SELECT);

	lm_run_plan(&read_plan,
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
		lm_hand_off_hot_leads(&lead, 1);

	SPI_finish();
	lm_as_owner_end(&saved);
	PG_RETURN_FLOAT8(lead.score);
}

