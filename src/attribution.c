/*
 * attribution.c
 *		PostgreSQL glue of the aggregate
 *		leadmgmt.attribution(model, touch, ts [, milestone]) -> jsonb
 *		(doc/attribution.md).  The weights are src/core/attribution.c.
 *
 * State (AttrState, type internal), in the aggregate context (a deserialised
 * one in the per-call context, src/pg/agg_state.h):
 *	model, half_life_us
 *				the parsed model of the group's first row; a later row or a
 *				combined partial state with another model is an error (22023)
 *	model_text	that first row's model text (compared byte-wise per row
 *				before parsing again; quoted in error messages)
 *	touches		(ts, offset, length, milestone) of every row with non-NULL
 *				touch and ts; ntouches <= capacity
 *	arena		the touch texts back to back; offsets index into it, so
 *				combine and serialise copy two flat buffers
 * Invariants: offset + length <= arena_used for every touch; half_life_us > 0
 * exactly when model is time_decay.
 *
 * Cost: transition O(length of touch) amortised; combine O(size of the second
 * state); serialise/deserialise O(size) (the common format of
 * src/pg/agg_state.h); final O(n log n) to sort a copy
 * (the state stays untouched: FINALFUNC_MODIFY = READ_ONLY, so the aggregate
 * also runs as a window function).
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "attribution.h"
#include "decay.h"
#include "leadmgmt.h"

#define ATTR_STATE_VERSION	1
#define ATTR_SERIAL_HEADER	(1 + 1 + 8 + 4)
#define ATTR_SERIAL_TOUCH	(8 + 1 + 4)
#define ATTR_MAX_TOUCHES	((int64) (MaxAllocSize / sizeof(AttrTouch)) - 1)
#define ATTR_MAX_ARENA		((int64) MaxAllocSize - 1)

typedef struct AttrTouch
{
	int64		ts;
	uint32		off;
	uint32		len;
	bool		milestone;
} AttrTouch;

typedef struct AttrState
{
	LmAttrModel model;
	int64		half_life_us;
	char	   *model_text;
	int			model_len;
	int64		ntouches;
	int64		capacity;
	AttrTouch  *touches;
	char	   *arena;
	int64		arena_used;
	int64		arena_size;
} AttrState;

PG_FUNCTION_INFO_V1(leadmgmt_attribution_trans);
PG_FUNCTION_INFO_V1(leadmgmt_attribution_trans_milestone);
PG_FUNCTION_INFO_V1(leadmgmt_attribution_combine);
PG_FUNCTION_INFO_V1(leadmgmt_attribution_serialize);
PG_FUNCTION_INFO_V1(leadmgmt_attribution_deserialize);
PG_FUNCTION_INFO_V1(leadmgmt_attribution_final);

/* at most 64 bytes of a model text for a message, cut at a character boundary */
static int
clip(const char *str, int len)
{
	return pg_mbcliplen(str, len, Min(len, 64));
}

static void
half_life_context(void *arg)
{
	errcontext("half-life of attribution model \"%s\"", (const char *) arg);
}

/* parse model text into (model, half-life); any problem is an error */
static LmAttrModel
parse_model(const char *str, int len, bool has_milestone, int64 *half_life_us)
{
	const char *arg;
	size_t		arglen;
	LmAttrModel model = lm_attr_parse_model(str, (size_t) len, &arg, &arglen);

	*half_life_us = 0;
	if (model == LM_ATTR_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown attribution model \"%.*s\"", clip(str, len), str),
				 errhint("Known models: " LM_ATTR_MODEL_LIST
						 ", for example 'time_decay:7 days'.")));
	if (model == LM_ATTR_TIME_DECAY)
	{
		char	   *cstr = pnstrdup(str, len);
		ErrorContextCallback cb;
		Interval   *iv;

		if (arg == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("attribution model time_decay needs a half-life"),
					 errhint("Write it after a colon, for example 'time_decay:7 days'.")));
		cb.callback = half_life_context;
		cb.arg = cstr;
		cb.previous = error_context_stack;
		error_context_stack = &cb;
		iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
												   CStringGetDatum(pnstrdup(arg, arglen)),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
		error_context_stack = cb.previous;
		if (!lm_interval_to_usecs(iv->month, iv->day, iv->time, half_life_us))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("half-life of attribution model \"%s\" is out of range", cstr)));
		if (*half_life_us <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("half-life of attribution model \"%s\" must be positive", cstr),
					 errhint("Give a positive interval, for example 'time_decay:7 days'.")));
	}
	if (model == LM_ATTR_W_SHAPED && !has_milestone)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribution model w_shaped needs the milestone argument"),
				 errhint("Call attribution('w_shaped', touch, ts, milestone), with milestone "
						 "true on the touch that marks the middle of the journey.")));
	return model;
}

static void
model_mismatch(const AttrState *state, const char *str, int len)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("attribution model must be the same for every row of a group"),
			 errdetail("The group started with \"%.*s\"; a later row has \"%.*s\".",
					   clip(state->model_text, state->model_len), state->model_text,
					   clip(str, len), str),
			 errhint("Pass a constant, or a value that depends only on the GROUP BY columns.")));
}

/* room for extra more touches and bytes more text */
static void
reserve(AttrState *state, MemoryContext cxt, int64 extra, int64 bytes)
{
	state->touches = lm_grow_array(cxt, state->touches, &state->capacity,
								   state->ntouches + extra, sizeof(AttrTouch), 8,
								   ATTR_MAX_TOUCHES, "attribution", "touches");
	state->arena = lm_grow_array(cxt, state->arena, &state->arena_size,
								 state->arena_used + bytes, 1, 64,
								 ATTR_MAX_ARENA, "attribution", "bytes of touch text");
}

static AttrState *
new_state(MemoryContext cxt, LmAttrModel model, int64 half_life_us,
		  const char *model_text, int model_len, int64 capacity, int64 arena_size)
{
	AttrState  *state = MemoryContextAllocZero(cxt, sizeof(AttrState));

	state->model = model;
	state->half_life_us = half_life_us;
	state->model_text = MemoryContextAlloc(cxt, model_len + 1);
	memcpy(state->model_text, model_text, model_len);
	state->model_text[model_len] = '\0';
	state->model_len = model_len;
	/* never a NULL array, even for no touches or only empty ones */
	reserve(state, cxt, Max(capacity, 1), Max(arena_size, 1));
	return state;
}

static Datum
attribution_trans(FunctionCallInfo fcinfo, bool has_milestone)
{
	MemoryContext aggcxt;
	AttrState  *state = PG_ARGISNULL(0) ? NULL : (AttrState *) PG_GETARG_POINTER(0);
	text	   *model;
	const char *mstr;
	int			mlen;
	text	   *touch;
	AttrTouch  *t;

	aggcxt = lm_aggregate_context(fcinfo, "attribution_trans");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("attribution model must not be null"),
				 errhint("Known models: " LM_ATTR_MODEL_LIST ".")));
	model = PG_GETARG_TEXT_PP(1);
	mstr = VARDATA_ANY(model);
	mlen = VARSIZE_ANY_EXHDR(model);

	if (state == NULL)
	{
		int64		half_life_us;
		LmAttrModel m = parse_model(mstr, mlen, has_milestone, &half_life_us);

		state = new_state(aggcxt, m, half_life_us, mstr, mlen, 8, 64);
	}
	else if (state->model_len != mlen || memcmp(state->model_text, mstr, mlen) != 0)
	{
		/* another spelling of the same model ('7 days' vs '1 week') is fine */
		int64		half_life_us;
		LmAttrModel m = parse_model(mstr, mlen, has_milestone, &half_life_us);

		if (m != state->model || half_life_us != state->half_life_us)
			model_mismatch(state, mstr, mlen);
	}

	/* rows without a touch or a time are not touches */
	if (PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(state);
	touch = PG_GETARG_TEXT_PP(2);
	reserve(state, aggcxt, 1, VARSIZE_ANY_EXHDR(touch));
	t = &state->touches[state->ntouches++];
	t->ts = PG_GETARG_TIMESTAMPTZ(3);
	t->off = (uint32) state->arena_used;
	t->len = (uint32) VARSIZE_ANY_EXHDR(touch);
	t->milestone = has_milestone && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	memcpy(state->arena + state->arena_used, VARDATA_ANY(touch), t->len);
	state->arena_used += t->len;
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_attribution_trans(PG_FUNCTION_ARGS)
{
	return attribution_trans(fcinfo, false);
}

Datum
leadmgmt_attribution_trans_milestone(PG_FUNCTION_ARGS)
{
	return attribution_trans(fcinfo, true);
}

/* append the touches of b to a (offsets shifted past a's text) */
static void
append_state(AttrState *a, MemoryContext aggcxt, const AttrState *b)
{
	int64		i;
	int64		base = a->arena_used;

	reserve(a, aggcxt, b->ntouches, b->arena_used);
	if (b->arena_used > 0)
		memcpy(a->arena + a->arena_used, b->arena, b->arena_used);
	a->arena_used += b->arena_used;
	for (i = 0; i < b->ntouches; i++)
	{
		AttrTouch  *t = &a->touches[a->ntouches++];

		*t = b->touches[i];
		t->off = (uint32) (t->off + base);
	}
}

Datum
leadmgmt_attribution_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	AttrState  *s1 = PG_ARGISNULL(0) ? NULL : (AttrState *) PG_GETARG_POINTER(0);
	AttrState  *s2 = PG_ARGISNULL(1) ? NULL : (AttrState *) PG_GETARG_POINTER(1);

	aggcxt = lm_aggregate_context(fcinfo, "attribution_combine");
	if (s2 == NULL)
		LM_RETURN_AGG_STATE(s1);
	if (s1 == NULL)
	{
		/* copy: s2 may live in a shorter-lived context */
		s1 = new_state(aggcxt, s2->model, s2->half_life_us, s2->model_text, s2->model_len,
					   s2->ntouches, s2->arena_used);
		append_state(s1, aggcxt, s2);
		PG_RETURN_POINTER(s1);
	}
	if (s1->model != s2->model || s1->half_life_us != s2->half_life_us)
		model_mismatch(s1, s2->model_text, s2->model_len);
	append_state(s1, aggcxt, s2);
	PG_RETURN_POINTER(s1);
}

Datum
leadmgmt_attribution_serialize(PG_FUNCTION_ARGS)
{
	AttrState  *state;
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "attribution_serialize");
	state = (AttrState *) PG_GETARG_POINTER(0);
	lm_agg_check_size("attribution", (double) ATTR_SERIAL_HEADER + state->model_len +
					  (double) state->ntouches * ATTR_SERIAL_TOUCH + state->arena_used, NULL);
	lm_agg_write_begin(&buf, ATTR_STATE_VERSION);
	pq_sendbyte(&buf, (int) state->model);
	pq_sendint64(&buf, state->half_life_us);
	pq_sendint32(&buf, state->model_len);
	pq_sendbytes(&buf, state->model_text, state->model_len);
	pq_sendint64(&buf, state->ntouches);
	for (i = 0; i < state->ntouches; i++)
	{
		const AttrTouch *t = &state->touches[i];

		pq_sendint64(&buf, t->ts);
		pq_sendbyte(&buf, t->milestone ? 1 : 0);
		pq_sendint32(&buf, t->len);
		pq_sendbytes(&buf, state->arena + t->off, t->len);
	}
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
Datum
leadmgmt_attribution_deserialize(PG_FUNCTION_ARGS)
{
	LmAggReader r;
	int			model;
	int64		half_life_us;
	int32		model_len;
	const char *model_text;
	int64		ntouches;
	int64		i;
	const char *arg;
	size_t		arglen;
	AttrState  *state;

	(void) lm_aggregate_context(fcinfo, "attribution_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), ATTR_STATE_VERSION, "attribution");
	model = lm_agg_read_byte(&r);
	half_life_us = lm_agg_read_int64(&r);
	model_len = lm_agg_read_int32(&r);
	if (model_len < 0)
		lm_agg_bad_state(&r, "Negative model text length.");
	model_text = lm_agg_read_bytes(&r, model_len);
	if (model < LM_ATTR_FIRST_TOUCH || model > LM_ATTR_MAX_MODEL ||
		lm_attr_parse_model(model_text, (size_t) model_len, &arg, &arglen) != (LmAttrModel) model)
		lm_agg_bad_state(&r, "The model does not match its text.");
	if ((model == LM_ATTR_TIME_DECAY) != (half_life_us > 0) || half_life_us < 0)
		lm_agg_bad_state(&r, "Invalid half-life.");
	ntouches = lm_agg_read_int64(&r);
	if (ntouches < 0 || ntouches > ATTR_MAX_TOUCHES ||
		ntouches > lm_agg_left(&r) / ATTR_SERIAL_TOUCH)
		lm_agg_bad_state(&r, "The touch count does not match the length.");

	state = new_state(CurrentMemoryContext, (LmAttrModel) model, half_life_us,
					  model_text, model_len, ntouches,
					  lm_agg_left(&r) - ntouches * ATTR_SERIAL_TOUCH);
	for (i = 0; i < ntouches; i++)
	{
		AttrTouch  *t = &state->touches[i];
		int			milestone;
		int32		len;

		t->ts = lm_agg_read_int64(&r);
		milestone = lm_agg_read_byte(&r);
		len = lm_agg_read_int32(&r);
		if (milestone != 0 && milestone != 1)
			lm_agg_bad_state(&r, "Invalid milestone flag.");
		if (len < 0 || state->arena_used + len > state->arena_size)
			lm_agg_bad_state(&r, "A touch length does not match the length.");
		t->milestone = milestone;
		t->off = (uint32) state->arena_used;
		t->len = (uint32) len;
		memcpy(state->arena + state->arena_used, lm_agg_read_bytes(&r, len), len);
		state->arena_used += len;
	}
	lm_agg_read_end(&r);
	state->ntouches = ntouches;
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_attribution_final(PG_FUNCTION_ARGS)
{
	AttrState  *state;
	LmTouch    *t;
	double	   *w;
	LmCredit   *credits;
	size_t		ncredits;
	size_t		n;
	size_t		i;
	LmAttrError err;
	StringInfoData json;

	(void) lm_aggregate_context(fcinfo, "attribution_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (AttrState *) PG_GETARG_POINTER(0);
	if (state->ntouches == 0)
		PG_RETURN_NULL();

	/* sort a copy in the per-call context; the state stays as it is */
	n = (size_t) state->ntouches;
	t = palloc_extended(sizeof(LmTouch) * n, MCXT_ALLOC_HUGE);
	w = palloc_extended(sizeof(double) * n, MCXT_ALLOC_HUGE);
	credits = palloc_extended(sizeof(LmCredit) * n, MCXT_ALLOC_HUGE);
	for (i = 0; i < n; i++)
	{
		t[i].ts = state->touches[i].ts;
		t[i].touch = state->arena + state->touches[i].off;
		t[i].len = state->touches[i].len;
		t[i].milestone = state->touches[i].milestone;
	}
	CHECK_FOR_INTERRUPTS();
	lm_touch_sort(t, n);
	err = lm_attr_credit(state->model, state->half_life_us, t, n, w, credits, &ncredits);
	if (err == LM_ATTR_NO_MILESTONE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribution model w_shaped found no milestone touch in a group"),
				 errdetail("None of the group's %zu touches has milestone true.", n),
				 errhint("Mark the touch that ends the middle of the journey (for example the one "
						 "that made the lead an MQL), or use u_shaped for groups without one.")));
	if (err != LM_ATTR_OK)
		elog(ERROR, "attribution failed for model \"%s\"", state->model_text);

	/* {touch: weight} in jsonb key order; weights are exact decimals */
	initStringInfo(&json);
	appendStringInfoChar(&json, '{');
	for (i = 0; i < ncredits; i++)
	{
		char		num[32];
		char	   *key = pnstrdup(credits[i].touch, credits[i].len);

		if (i > 0)
			appendStringInfoString(&json, ", ");
		escape_json(&json, key);
		pfree(key);
		lm_attr_format_units(credits[i].units, num);
		appendStringInfo(&json, ": %s", num);
	}
	appendStringInfoChar(&json, '}');
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data)));
}
