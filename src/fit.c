/*
 * fit.c
 *		Firmographic fit: fit_score and grade of a lead from its attributes.
 *
 * leadmgmt.fit_rule rows test one top-level key of lead.attributes:
 *	eq		the value equals a JSON scalar (strings byte-wise, numbers
 *			numerically, booleans)
 *	in		the value equals one element of a JSON array
 *	between	the value is a JSON number within [min_value, max_value]
 *			(either bound may be NULL)
 * fit_score is the sum of the points of the matching active rules (NULL
 * when there are no active rules at all, so "not configured" is not
 * mistaken for a poor fit); grade is A/B/C/D by the settings fit_grade_a,
 * fit_grade_b, fit_grade_c.
 *
 * The rules and thresholds are cached per session (FitCache, a lookup cache
 * of src/pg/lookup_cache.h), dropped when leadmgmt.fit_rule or
 * leadmgmt.setting change.  Evaluating a lead is
 * O(rules), one hash lookup in the jsonb object per rule.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "leadmgmt.h"

typedef enum FitOp
{
	FIT_EQ,
	FIT_IN,
	FIT_BETWEEN
} FitOp;

typedef struct FitRule
{
	char	   *attribute;
	FitOp		op;
	Jsonb	   *value;			/* eq, in */
	Numeric		min_value;		/* between; NULL: unbounded */
	Numeric		max_value;
	float8		points;
} FitRule;

typedef struct FitCache
{
	int			nrules;
	FitRule    *rules;
	float8		grade_a;
	float8		grade_b;
	float8		grade_c;
} FitCache;

/* the active rules and grade thresholds, read in cxt (src/pg/lookup_cache.h) */
static void *
build_fit_cache(MemoryContext cxt)
{
	static SPIPlanPtr grades_plan = NULL;
	static SPIPlanPtr rules_plan = NULL;
	FitCache   *cache = MemoryContextAllocZero(cxt, sizeof(FitCache));
	HeapTuple	tup;
	TupleDesc	desc;
	uint64		i;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_plan(lm_kept_plan(&grades_plan,
									  "SELECT leadmgmt.get_setting('fit_grade_a')::pg_catalog.float8, "
									  "leadmgmt.get_setting('fit_grade_b')::pg_catalog.float8, "
									  "leadmgmt.get_setting('fit_grade_c')::pg_catalog.float8",
									  0, NULL),
						 NULL, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the fit grade settings");
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	cache->grade_a = DatumGetFloat8(SPI_getbinval(tup, desc, 1, &isnull));
	cache->grade_b = DatumGetFloat8(SPI_getbinval(tup, desc, 2, &isnull));
	cache->grade_c = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));

	if (SPI_execute_plan(lm_kept_plan(&rules_plan,
									  "SELECT r.attribute, r.op, r.value, r.min_value, r.max_value, r.points "
									  "FROM leadmgmt.fit_rule r WHERE r.active ORDER BY r.id",
									  0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read leadmgmt.fit_rule");
	cache->nrules = (int) SPI_processed;
	cache->rules = MemoryContextAllocZero(cxt, sizeof(FitRule) * Max(cache->nrules, 1));
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < SPI_processed; i++)
	{
		FitRule    *rule = &cache->rules[i];
		char	   *op;
		MemoryContext old;
		Datum		d;

		tup = SPI_tuptable->vals[i];
		op = SPI_getvalue(tup, desc, 2);
		old = MemoryContextSwitchTo(cxt);
		rule->attribute = pstrdup(SPI_getvalue(tup, desc, 1));
		rule->op = strcmp(op, "eq") == 0 ? FIT_EQ : strcmp(op, "in") == 0 ? FIT_IN : FIT_BETWEEN;
		d = SPI_getbinval(tup, desc, 3, &isnull);
		rule->value = isnull ? NULL : DatumGetJsonbPCopy(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		rule->min_value = isnull ? NULL : DatumGetNumericCopy(d);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		rule->max_value = isnull ? NULL : DatumGetNumericCopy(d);
		rule->points = DatumGetFloat8(SPI_getbinval(tup, desc, 6, &isnull));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return cache;
}

static LmLookupCache fit_cache = {"leadmgmt fit cache", {"fit_rule", "setting", NULL}, build_fit_cache};

static FitCache *
get_fit_cache(void)
{
	return (FitCache *) lm_lookup_cache_get(&fit_cache);
}

static bool
scalars_equal(const JsonbValue *a, const JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													 NumericGetDatum(a->val.numeric),
													 NumericGetDatum(b->val.numeric))) == 0;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		default:
			return false;
	}
}

static bool
value_in_array(const JsonbValue *v, Jsonb *array)
{
	JsonbIterator *it = JsonbIteratorInit(&array->root);
	JsonbValue	elem;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
		if (tok == WJB_ELEM && scalars_equal(v, &elem))
			return true;
	return false;
}

static bool
numeric_within(const JsonbValue *v, Numeric lo, Numeric hi)
{
	if (v->type != jbvNumeric)
		return false;
	if (lo && DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(v->val.numeric),
												NumericGetDatum(lo))) < 0)
		return false;
	if (hi && DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(v->val.numeric),
												NumericGetDatum(hi))) > 0)
		return false;
	return true;
}

static bool
fit_rule_matches(const FitRule *rule, Jsonb *attributes)
{
	JsonbValue	found;
	JsonbValue *v;
	JsonbValue	scalar;

	v = getKeyJsonValueFromContainer(&attributes->root, rule->attribute,
									 strlen(rule->attribute), &found);
	if (v == NULL)
		return false;
	switch (rule->op)
	{
		case FIT_EQ:
			return JsonbExtractScalar(&rule->value->root, &scalar) && scalars_equal(v, &scalar);
		case FIT_IN:
			return value_in_array(v, rule->value);
		case FIT_BETWEEN:
			return numeric_within(v, rule->min_value, rule->max_value);
	}
	return false;
}

/* false when no fit rule is active: fit is "not configured" */
static bool
compute_fit(Jsonb *attributes, float8 *score)
{
	FitCache   *cache = get_fit_cache();
	int			i;

	if (cache->nrules == 0)
		return false;
	*score = 0;
	if (attributes == NULL || !JB_ROOT_IS_OBJECT(attributes))
		return true;
	for (i = 0; i < cache->nrules; i++)
		if (fit_rule_matches(&cache->rules[i], attributes))
			*score += cache->rules[i].points;
	return true;
}

static const char *
grade_of(float8 score)
{
	FitCache   *cache = get_fit_cache();

	if (score >= cache->grade_a)
		return "A";
	if (score >= cache->grade_b)
		return "B";
	if (score >= cache->grade_c)
		return "C";
	return "D";
}

PG_FUNCTION_INFO_V1(leadmgmt_fit_score);
Datum
leadmgmt_fit_score(PG_FUNCTION_ARGS)
{
	float8		score;

	if (!compute_fit(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0), &score))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(score);
}

PG_FUNCTION_INFO_V1(leadmgmt_fit_grade);
Datum
leadmgmt_fit_grade(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(grade_of(PG_GETARG_FLOAT8(0))));
}

/* BEFORE INSERT OR UPDATE OF attributes ON leadmgmt.lead */
PG_FUNCTION_INFO_V1(leadmgmt_lead_fit);
Datum
leadmgmt_lead_fit(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	int			cols[2];
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		isnull;
	Datum		attributes;
	float8		score;

	lm_check_trigger_context(fcinfo, "lead_fit", true, true);
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	cols[0] = lm_column(rel, "fit_score");
	cols[1] = lm_column(rel, "grade");
	attributes = heap_getattr(tuple, lm_column(rel, "attributes"), desc, &isnull);
	if (!compute_fit(isnull ? NULL : DatumGetJsonbP(attributes), &score))
		return PointerGetDatum(tuple);	/* not configured: leave as given */

	values[0] = Float8GetDatum(score);
	values[1] = CStringGetTextDatum(grade_of(score));
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 2, cols, values, nulls));
}
