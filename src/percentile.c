/*
 * percentile.c
 *		PostgreSQL glue of the aggregate
 *		leadmgmt.interval_percentiles(value interval, fractions float8[])
 *		-> interval[], the exact percentile_cont of each fraction.
 *
 * Why not percentile_cont: an ordered-set aggregate sorts its group and makes
 * the planner sort the whole input by the GROUP BY keys first, so the funnel
 * views sorted millions of history rows twice.  This one is an ordinary
 * aggregate: it hashes, runs in parallel, and finds each order statistic by
 * selection (src/core/percentile.c), O(n) expected per fraction.  The result
 * is the value percentile_cont returns: the same two rows, interpolated with
 * PostgreSQL's own interval arithmetic.
 *
 * State (PctState, type internal), in the aggregate context (a deserialised
 * one in the per-call context, src/pg/agg_state.h):
 *	fractions	the fractions of the group's first row, each in [0, 1]; a
 *				later row (or a partial state being combined) with other
 *				fractions is an error (22023)
 *	fractions_raw
 *				a copy of the first row's array: later rows compare their
 *				bytes with it, and only parse their array when they differ
 *	values		every non-NULL value; nvalues <= capacity
 *
 * Cost: transition O(1) amortised; combine O(size of the second state);
 * serialise/deserialise O(size) (the common format of src/pg/agg_state.h:
 * version, fraction count, fractions, value count, values); final O(n)
 * expected per fraction on a copy of the values (FINALFUNC_MODIFY =
 * READ_ONLY: the state is left as it was, so the aggregate also runs as a
 * window function).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "percentile.h"

#define PCT_STATE_VERSION	1
#define PCT_MAX_FRACTIONS	100
#define PCT_MAX_VALUES		((int64) (MaxAllocHugeSize / sizeof(LmSpan)) - 1)
#define PCT_SERIAL_VALUE	(8 + 4 + 4)	/* bytes per serialised value */

typedef struct PctState
{
	int			nfractions;
	double		fractions[PCT_MAX_FRACTIONS];
	ArrayType  *fractions_raw;
	int64		nvalues;
	int64		capacity;
	LmSpan	   *values;
} PctState;

PG_FUNCTION_INFO_V1(leadmgmt_interval_percentiles_trans);
PG_FUNCTION_INFO_V1(leadmgmt_interval_percentiles_combine);
PG_FUNCTION_INFO_V1(leadmgmt_interval_percentiles_serialize);
PG_FUNCTION_INFO_V1(leadmgmt_interval_percentiles_deserialize);
PG_FUNCTION_INFO_V1(leadmgmt_interval_percentiles_final);

static PctState *
new_state(MemoryContext cxt)
{
	PctState   *state = MemoryContextAllocZero(cxt, sizeof(PctState));

	state->nfractions = -1;		/* not captured yet */
	return state;
}

/* the fractions of an argument array; every problem is an error */
static int
read_fractions(ArrayType *arr, double *out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("fractions must be a one-dimensional array")));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &n);
	if (n == 0 || n > PCT_MAX_FRACTIONS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("interval_percentiles needs 1 to %d fractions, got %d",
						PCT_MAX_FRACTIONS, n)));
	for (i = 0; i < n; i++)
	{
		double		f;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("percentile fraction must not be NULL")));
		f = DatumGetFloat8(elems[i]);
		/* the test percentile_cont makes, and its message */
		if (f < 0 || f > 1 || isnan(f))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("percentile value %g is not between 0 and 1", f)));
		out[i] = f;
	}
	return n;
}

static void
fractions_must_match(const PctState *state, const double *fractions, int n)
{
	if (n != state->nfractions ||
		memcmp(fractions, state->fractions, n * sizeof(double)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("interval_percentiles fractions must be the same for every row of a group")));
}

static void
capture_fractions(PctState *state, MemoryContext aggcxt, Datum arg)
{
	ArrayType  *arr = DatumGetArrayTypeP(arg);
	double		fractions[PCT_MAX_FRACTIONS];
	int			n;

	if (state->fractions_raw != NULL &&
		datumIsEqual(PointerGetDatum(arr), PointerGetDatum(state->fractions_raw), false, -1))
		return;					/* the same array as the first row */
	n = read_fractions(arr, fractions);
	if (state->nfractions < 0)
	{
		memcpy(state->fractions, fractions, n * sizeof(double));
		state->nfractions = n;
	}
	else
		fractions_must_match(state, fractions, n);
	if (state->fractions_raw == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(aggcxt);

		state->fractions_raw = (ArrayType *) DatumGetPointer(datumCopy(PointerGetDatum(arr), false, -1));
		MemoryContextSwitchTo(old);
	}
}

static void
reserve(PctState *state, MemoryContext cxt, int64 more)
{
	state->values = lm_grow_array(cxt, state->values, &state->capacity,
								  state->nvalues + more, sizeof(LmSpan), 64, PCT_MAX_VALUES,
								  "interval_percentiles", "values");
}

Datum
leadmgmt_interval_percentiles_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "interval_percentiles_trans");
	PctState   *state = PG_ARGISNULL(0) ? new_state(aggcxt) : (PctState *) PG_GETARG_POINTER(0);
	Interval   *iv;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("percentile fractions must not be NULL")));
	capture_fractions(state, aggcxt, PG_GETARG_DATUM(2));
	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(state);	/* NULL values are skipped, as percentile_cont does */

	iv = PG_GETARG_INTERVAL_P(1);
	reserve(state, aggcxt, 1);
	state->values[state->nvalues].time = iv->time;
	state->values[state->nvalues].day = iv->day;
	state->values[state->nvalues].month = iv->month;
	state->nvalues++;
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_interval_percentiles_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "interval_percentiles_combine");
	PctState   *a = PG_ARGISNULL(0) ? NULL : (PctState *) PG_GETARG_POINTER(0);
	PctState   *b = PG_ARGISNULL(1) ? NULL : (PctState *) PG_GETARG_POINTER(1);

	if (b == NULL || b->nfractions < 0)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL)
		a = new_state(aggcxt);
	if (a->nfractions < 0)
	{
		memcpy(a->fractions, b->fractions, b->nfractions * sizeof(double));
		a->nfractions = b->nfractions;
	}
	else
		fractions_must_match(a, b->fractions, b->nfractions);
	if (b->nvalues > 0)
	{
		reserve(a, aggcxt, b->nvalues);
		memcpy(a->values + a->nvalues, b->values, b->nvalues * sizeof(LmSpan));
		a->nvalues += b->nvalues;
	}
	PG_RETURN_POINTER(a);
}

Datum
leadmgmt_interval_percentiles_serialize(PG_FUNCTION_ARGS)
{
	PctState   *state;
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "interval_percentiles_serialize");
	state = (PctState *) PG_GETARG_POINTER(0);
	lm_agg_check_size("interval_percentiles", (double) state->nvalues * PCT_SERIAL_VALUE, NULL);
	lm_agg_write_begin(&buf, PCT_STATE_VERSION);
	pq_sendint32(&buf, state->nfractions);
	for (i = 0; i < state->nfractions; i++)
		pq_sendfloat8(&buf, state->fractions[i]);
	pq_sendint64(&buf, state->nvalues);
	for (i = 0; i < state->nvalues; i++)
	{
		pq_sendint64(&buf, state->values[i].time);
		pq_sendint32(&buf, state->values[i].day);
		pq_sendint32(&buf, state->values[i].month);
	}
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
Datum
leadmgmt_interval_percentiles_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	LmAggReader r;
	PctState   *state;
	int32		nfractions;
	int64		nvalues,
				i;

	(void) lm_aggregate_context(fcinfo, "interval_percentiles_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), PCT_STATE_VERSION, "interval_percentiles");
	nfractions = lm_agg_read_int32(&r);
	if (nfractions < -1 || nfractions > PCT_MAX_FRACTIONS || nfractions == 0)
		lm_agg_bad_state(&r, "Fraction count out of range.");
	state = new_state(callcxt);
	state->nfractions = nfractions;
	for (i = 0; i < nfractions; i++)
	{
		double		f = lm_agg_read_float8(&r);

		if (!(f >= 0 && f <= 1))
			lm_agg_bad_state(&r, "Fraction out of range.");
		state->fractions[i] = f;
	}
	nvalues = lm_agg_read_int64(&r);
	if (nvalues < 0 || nvalues > PCT_MAX_VALUES || (nvalues > 0 && nfractions < 0) ||
		lm_agg_left(&r) != nvalues * PCT_SERIAL_VALUE)
		lm_agg_bad_state(&r, "Value count does not match the data.");
	if (nvalues > 0)
	{
		reserve(state, callcxt, nvalues);
		for (i = 0; i < nvalues; i++)
		{
			state->values[i].time = lm_agg_read_int64(&r);
			state->values[i].day = lm_agg_read_int32(&r);
			state->values[i].month = lm_agg_read_int32(&r);
		}
		state->nvalues = nvalues;
	}
	lm_agg_read_end(&r);
	PG_RETURN_POINTER(state);
}

static Datum
span_datum(const LmSpan *s)
{
	Interval   *iv = palloc(sizeof(Interval));

	iv->time = s->time;
	iv->day = s->day;
	iv->month = s->month;
	return IntervalPGetDatum(iv);
}

/* percentile_cont's interpolation, with the same interval functions */
static Datum
interpolate(const LmSpan *low, const LmSpan *high, double proportion)
{
	Datum		lo = span_datum(low);
	Datum		diff;

	if (proportion == 0.0)
		return lo;
	diff = DirectFunctionCall2(interval_mi, span_datum(high), lo);
	diff = DirectFunctionCall2(interval_mul, diff, Float8GetDatum(proportion));
	return DirectFunctionCall2(interval_pl, diff, lo);
}

Datum
leadmgmt_interval_percentiles_final(PG_FUNCTION_ARGS)
{
	PctState   *state;
	LmSpan	   *work;
	Datum	   *result;
	int			i;

	(void) lm_aggregate_context(fcinfo, "interval_percentiles_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (PctState *) PG_GETARG_POINTER(0);
	if (state->nvalues == 0)
		PG_RETURN_NULL();		/* as percentile_cont on no rows */

	/* selection rearranges: work on a copy, the state stays as it was */
	work = palloc_extended(state->nvalues * sizeof(LmSpan), MCXT_ALLOC_HUGE);
	memcpy(work, state->values, state->nvalues * sizeof(LmSpan));
	result = palloc(state->nfractions * sizeof(Datum));
	for (i = 0; i < state->nfractions; i++)
	{
		LmSpan		low,
					high;
		double		proportion;

		lm_span_percentile_rows(work, (size_t) state->nvalues, state->fractions[i],
								&low, &high, &proportion);
		result[i] = interpolate(&low, &high, proportion);
	}
	pfree(work);
	PG_RETURN_ARRAYTYPE_P(construct_array(result, state->nfractions, INTERVALOID,
										  sizeof(Interval), false, TYPALIGN_DOUBLE));
}
