/*
 * decayed_sum.c
 *		SQL glue for time decay: half_life_us(), decay(), decay_merge() and
 *		the decayed_sum(points, ts, half_life, at) aggregate.
 *
 * decayed_sum state (DecayedSumState, internal, in the aggregate context):
 *	sum		Neumaier-compensated sum of points * 2^-((at - ts) / half_life)
 *	at, half_life_us, has_decay
 *			per-call constants captured from the first row; a later row
 *			with other values is an error, and combine checks them too
 *	seen	a row with non-NULL points and ts was accumulated
 * Rows with ts > at are skipped; NULL points or ts are skipped; non-finite
 * points are an error (a silent NaN score helps nobody).  Transition and
 * combine are O(1); the serialised form is the common one of
 * src/pg/agg_state.h (version, sum, compensation, at, half-life, seen),
 * checked on the way back in.
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/timestamp.h"

#include "decay.h"
#include "leadmgmt.h"

int64
lm_half_life_usecs(Interval *half_life)
{
	int64		usecs;

	if (!lm_interval_to_usecs(half_life->month, half_life->day, half_life->time, &usecs))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("half-life is out of range")));
	if (usecs <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("half-life must be positive"),
				 errhint("Use NULL for points that do not decay.")));
	return usecs;
}

PG_FUNCTION_INFO_V1(leadmgmt_half_life_us);
Datum
leadmgmt_half_life_us(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(lm_half_life_usecs(PG_GETARG_INTERVAL_P(0)));
}

PG_FUNCTION_INFO_V1(leadmgmt_decay);
Datum
leadmgmt_decay(PG_FUNCTION_ARGS)
{
	float8		points = PG_GETARG_FLOAT8(0);
	TimestampTz ts = PG_GETARG_TIMESTAMPTZ(1);
	int64		half_life = PG_GETARG_INT64(2);
	TimestampTz at = PG_GETARG_TIMESTAMPTZ(3);

	PG_RETURN_FLOAT8(points * lm_decay_factor(ts, at, half_life));
}

PG_FUNCTION_INFO_V1(leadmgmt_decay_merge);
Datum
leadmgmt_decay_merge(PG_FUNCTION_ARGS)
{
	LmComponent a;
	LmComponent b;

	a.value = PG_GETARG_FLOAT8(0);
	a.ref = PG_GETARG_TIMESTAMPTZ(1);
	b.value = PG_GETARG_FLOAT8(2);
	b.ref = PG_GETARG_TIMESTAMPTZ(3);
	lm_component_merge(&a, &b, PG_GETARG_INT64(4));
	PG_RETURN_FLOAT8(a.value);
}

/* ---------------------------------------------------------------------
 * decayed_sum aggregate
 * ---------------------------------------------------------------------
 */
#define DECAYED_SUM_VERSION 1

typedef struct DecayedSumState
{
	LmSum		sum;
	TimestampTz at;
	int64		half_life_us;	/* 0: no decay */
	bool		constants_set;
	bool		seen;
} DecayedSumState;

static void
check_same_constants(const DecayedSumState *state, TimestampTz at, int64 half_life_us)
{
	if (state->at != at || state->half_life_us != half_life_us)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("decayed_sum needs the same half_life and at for every row of a group"),
				 errhint("Compute per-row decay with leadmgmt.decay() when they differ.")));
}

PG_FUNCTION_INFO_V1(leadmgmt_decayed_sum_trans);
Datum
leadmgmt_decayed_sum_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = lm_aggregate_context(fcinfo, "decayed_sum_trans");
	DecayedSumState *state = PG_ARGISNULL(0) ? NULL : (DecayedSumState *) PG_GETARG_POINTER(0);
	float8		points;
	TimestampTz ts;
	TimestampTz at;
	int64		half_life_us;

	/* skipped rows leave no state yet as SQL NULL, not as a NULL pointer */
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		LM_RETURN_AGG_STATE(state);
	if (PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("decayed_sum: at must not be null")));

	points = PG_GETARG_FLOAT8(1);
	ts = PG_GETARG_TIMESTAMPTZ(2);
	at = PG_GETARG_TIMESTAMPTZ(4);
	half_life_us = PG_ARGISNULL(3) ? 0 : lm_half_life_usecs(PG_GETARG_INTERVAL_P(3));
	if (isnan(points) || isinf(points))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("decayed_sum: points must be finite, got %s", float8out_internal(points))));

	if (state == NULL)
	{
		state = MemoryContextAllocZero(aggcontext, sizeof(DecayedSumState));
		state->at = at;
		state->half_life_us = half_life_us;
		state->constants_set = true;
	}
	else
		check_same_constants(state, at, half_life_us);

	state->seen = true;
	if (ts <= at)
		lm_sum_add(&state->sum, points * lm_decay_factor(ts, at, half_life_us));
	PG_RETURN_POINTER(state);
}

PG_FUNCTION_INFO_V1(leadmgmt_decayed_sum_combine);
Datum
leadmgmt_decayed_sum_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext = lm_aggregate_context(fcinfo, "decayed_sum_combine");
	DecayedSumState *a = PG_ARGISNULL(0) ? NULL : (DecayedSumState *) PG_GETARG_POINTER(0);
	DecayedSumState *b = PG_ARGISNULL(1) ? NULL : (DecayedSumState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL)
	{
		/* copy: b may be a deserialised state in the per-call context */
		a = MemoryContextAlloc(aggcontext, sizeof(DecayedSumState));
		memcpy(a, b, sizeof(DecayedSumState));
		PG_RETURN_POINTER(a);
	}
	check_same_constants(a, b->at, b->half_life_us);
	lm_sum_merge(&a->sum, &b->sum);
	a->seen |= b->seen;
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(leadmgmt_decayed_sum_serialize);
Datum
leadmgmt_decayed_sum_serialize(PG_FUNCTION_ARGS)
{
	DecayedSumState *state = (DecayedSumState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	(void) lm_aggregate_context(fcinfo, "decayed_sum_serialize");
	lm_agg_write_begin(&buf, DECAYED_SUM_VERSION);
	pq_sendfloat8(&buf, state->sum.sum);
	pq_sendfloat8(&buf, state->sum.compensation);
	pq_sendint64(&buf, state->at);
	pq_sendint64(&buf, state->half_life_us);
	pq_sendbyte(&buf, state->seen ? 1 : 0);
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
PG_FUNCTION_INFO_V1(leadmgmt_decayed_sum_deserialize);
Datum
leadmgmt_decayed_sum_deserialize(PG_FUNCTION_ARGS)
{
	DecayedSumState *state;
	LmAggReader r;

	(void) lm_aggregate_context(fcinfo, "decayed_sum_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), DECAYED_SUM_VERSION, "decayed_sum");
	state = palloc0(sizeof(DecayedSumState));
	state->sum.sum = lm_agg_read_float8(&r);
	state->sum.compensation = lm_agg_read_float8(&r);
	state->at = lm_agg_read_int64(&r);
	state->half_life_us = lm_agg_read_int64(&r);
	state->seen = lm_agg_read_byte(&r) != 0;
	state->constants_set = true;
	lm_agg_read_end(&r);
	if (state->half_life_us < 0)
		lm_agg_bad_state(&r, "Negative half-life.");
	PG_RETURN_POINTER(state);
}

PG_FUNCTION_INFO_V1(leadmgmt_decayed_sum_final);
Datum
leadmgmt_decayed_sum_final(PG_FUNCTION_ARGS)
{
	DecayedSumState *state = PG_ARGISNULL(0) ? NULL : (DecayedSumState *) PG_GETARG_POINTER(0);

	if (state == NULL || !state->seen)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(lm_sum_value(&state->sum));
}
