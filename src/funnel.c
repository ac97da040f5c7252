/*
 * funnel.c
 *		PostgreSQL glue of the funnel aggregates window_funnel and
 *		funnel_step_times (ClickHouse windowFunnel semantics, doc/funnel.md).
 *
 * The chain scan itself is src/core/funnel.c; this file collects the events,
 * checks the per-call constants and moves states between parallel workers.
 *
 * State (FunnelState, type internal), allocated in the aggregate context:
 *	window		window_size in microseconds (a day counts 24 hours), >= 0
 *	flags		parsed mode (FUNNEL_* bits)
 *	nsteps		number of steps, 1..FUNNEL_MAX_STEPS
 *	events		(timestamp, step bit set) of every row that matches a step
 *				(in strict_order also of rows matching none, which end the
 *				search); rows with a NULL or infinite timestamp are not kept
 *	sorted		events[] is known to be in (timestamp, steps) order
 * window, flags and nsteps are taken from the group's first row; a later row
 * or a combined partial state that differs is an error.  They travel with
 * the serialised state, so the final function needs no extra arguments.
 *
 * Cost: transition O(steps) per row, amortised O(1) append (16 bytes per kept
 * event); combine O(events of the second state); serialise/deserialise
 * O(events), 12 bytes per event; final O(n log n) sort (skipped when rows
 * came in order) plus the O(n) scan.  The final function never modifies the
 * state (FINALFUNC_MODIFY = READ_ONLY): when the events are out of order it
 * sorts a copy in the per-call context.  So window_funnel and
 * funnel_step_times over the same arguments share one state, and both work
 * as window functions (a running funnel level over a lead's timeline).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "funnel.h"

/* one kept event per 16 bytes; the serialised form needs 12 and fits 1 GB */
#define FUNNEL_MAX_EVENTS	((int64) (MaxAllocSize / sizeof(FunnelEvent)) - 1)
#define FUNNEL_STATE_VERSION 1
#define FUNNEL_SERIAL_HEADER (1 + 4 + 4 + 8 + 1 + 8)
#define FUNNEL_SERIAL_EVENT (8 + 4)

typedef struct FunnelState
{
	int64		window;
	uint32		flags;
	int32		nsteps;
	bool		sorted;
	int64		nevents;
	int64		capacity;
	FunnelEvent *events;
} FunnelState;

/* parsed mode of the last mode text seen, per call site (fn_extra) */
typedef struct ModeCache
{
	uint32		flags;
	int			len;
	char		text[FLEXIBLE_ARRAY_MEMBER];
} ModeCache;

PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_trans);
PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_trans_mode);
PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_combine);
PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_serialize);
PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_deserialize);
PG_FUNCTION_INFO_V1(leadmgmt_window_funnel_final);
PG_FUNCTION_INFO_V1(leadmgmt_funnel_step_times_final);

static inline bool
event_less(const FunnelEvent *a, const FunnelEvent *b)
{
	return a->ts < b->ts || (a->ts == b->ts && a->mask < b->mask);
}

/* window_size in microseconds: no months, not negative, huge = unbounded */
static int64
window_usecs(const Interval *iv)
{
#ifdef HAVE_INT128
	int128		w;
#else
	double		w;
#endif

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("funnel window_size must not contain months or years"),
				 errdetail("A month has no fixed length."),
				 errhint("Give the window in days or hours, for example '30 days'.")));
#ifdef HAVE_INT128
	w = (int128) iv->day * USECS_PER_DAY + iv->time;
#else
	w = (double) iv->day * USECS_PER_DAY + (double) iv->time;
#endif
	if (w < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("funnel window_size must not be negative"),
				 errhint("Give a window of zero or more, for example '30 days'.")));
	if (w > PG_INT64_MAX)
		return PG_INT64_MAX;	/* longer than any span of timestamps */
	return (int64) w;
}

static void
report_mode_error(FunnelModeError err, const char *bad, size_t badlen)
{
	switch (err)
	{
		case FUNNEL_MODE_STRICT:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("funnel mode \"strict\" is not supported"),
					 errhint("Use strict_deduplication, the name ClickHouse gave it.")));
			break;
		case FUNNEL_MODE_REENTRY_ALONE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("funnel mode allow_reentry requires strict_order"),
					 errhint("Give both, as in 'strict_order,allow_reentry'.")));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown funnel mode \"%.*s\"", (int) Min(badlen, 64), bad),
					 errhint("Give a comma-separated list of strict_deduplication, "
							 "strict_order, strict_increase, strict_once and allow_reentry, "
							 "or '' for the default mode.")));
	}
}

/* parse the mode text, reusing the last parse of this call site */
static uint32
mode_flags(FunctionCallInfo fcinfo, text *mode)
{
	ModeCache  *cache = (ModeCache *) fcinfo->flinfo->fn_extra;
	const char *str = VARDATA_ANY(mode);
	int			len = VARSIZE_ANY_EXHDR(mode);
	FunnelModeError err;
	uint32		flags;
	const char *bad = NULL;
	size_t		badlen = 0;

	if (cache != NULL && cache->len == len && memcmp(cache->text, str, len) == 0)
		return cache->flags;

	err = funnel_parse_mode(str, (size_t) len, &flags, &bad, &badlen);
	if (err != FUNNEL_MODE_OK)
		report_mode_error(err, bad, badlen);

	if (cache == NULL || cache->len < len)
	{
		if (cache != NULL)
			pfree(cache);
		cache = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt,
								   offsetof(ModeCache, text) + len + 1);
		fcinfo->flinfo->fn_extra = cache;
	}
	memcpy(cache->text, str, len);
	cache->len = len;
	cache->flags = flags;
	return flags;
}

static char *
describe_params(int64 window, uint32 flags, int nsteps)
{
	char		mode[128];
	Interval	iv;

	memset(&iv, 0, sizeof(iv));
	iv.day = (int32) Min(window / USECS_PER_DAY, PG_INT32_MAX);
	iv.time = window - (int64) iv.day * USECS_PER_DAY;
	funnel_mode_text(flags, mode, sizeof(mode));
	return psprintf("window_size '%s', mode '%s' and %d step%s",
					DatumGetCString(DirectFunctionCall1(interval_out,
														IntervalPGetDatum(&iv))),
					mode, nsteps, nsteps == 1 ? "" : "s");
}

static void
check_same_params(const FunnelState *state, int64 window, uint32 flags, int nsteps)
{
	if (state->window == window && state->flags == flags && state->nsteps == nsteps)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("funnel window_size, mode and number of steps must be the same for every row of a group"),
			 errdetail("The group started with %s; a later row has %s.",
					   describe_params(state->window, state->flags, state->nsteps),
					   describe_params(window, flags, nsteps)),
			 errhint("Pass constants, or values that depend only on the GROUP BY columns.")));
}

static FunnelState *
new_state(MemoryContext cxt, int64 window, uint32 flags, int nsteps, int64 capacity)
{
	FunnelState *state = MemoryContextAlloc(cxt, sizeof(FunnelState));

	state->window = window;
	state->flags = flags;
	state->nsteps = nsteps;
	state->sorted = true;
	state->nevents = 0;
	state->capacity = Max(capacity, 8);
	state->events = MemoryContextAlloc(cxt, sizeof(FunnelEvent) * state->capacity);
	return state;
}

/* make room for extra more events (repalloc keeps the state's context) */
static void
reserve_events(FunnelState *state, int64 extra)
{
	int64		need = state->nevents + extra;
	int64		cap;

	if (need <= state->capacity)
		return;
	if (need > FUNNEL_MAX_EVENTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one funnel group"),
				 errdetail("A group may keep at most " INT64_FORMAT " events that match a step.",
						   FUNNEL_MAX_EVENTS)));
	cap = state->capacity;
	while (cap < need)
		cap = Min(cap * 2, FUNNEL_MAX_EVENTS);
	state->events = repalloc(state->events, sizeof(FunnelEvent) * cap);
	state->capacity = cap;
}

static Datum
funnel_trans(FunctionCallInfo fcinfo, bool has_mode)
{
	MemoryContext aggcxt;
	FunnelState *state = PG_ARGISNULL(0) ? NULL : (FunnelState *) PG_GETARG_POINTER(0);
	int			a_ts = has_mode ? 3 : 2;
	int			a_steps = a_ts + 1;
	int64		window;
	uint32		flags = 0;
	ArrayType  *arr;
	int			nsteps;
	int			i;
	uint32		mask = 0;
	bits8	   *nulls;
	const bool *flagsv;
	TimestampTz ts;
	FunnelEvent *ev;

	aggcxt = lm_aggregate_context(fcinfo, "window_funnel_trans");

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("funnel window_size must not be null")));
	window = window_usecs(PG_GETARG_INTERVAL_P(1));
	if (has_mode)
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("funnel mode must not be null"),
					 errhint("Use '' for the default mode.")));
		flags = mode_flags(fcinfo, PG_GETARG_TEXT_PP(2));
	}

	/* VARIADIC NULL: no step count to check against; the row is ignored */
	if (PG_ARGISNULL(a_steps))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	arr = PG_GETARG_ARRAYTYPE_P(a_steps);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("funnel steps must be a one-dimensional array")));
	nsteps = ARR_NDIM(arr) == 0 ? 0 : ARR_DIMS(arr)[0];
	if (nsteps < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a funnel needs at least one step")));
	if (nsteps > FUNNEL_MAX_STEPS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a funnel has at most %d steps", FUNNEL_MAX_STEPS),
				 errdetail("%d steps were given.", nsteps),
				 errhint("Split the funnel, or merge conditions with OR.")));

	if (state == NULL)
		state = new_state(aggcxt, window, flags, nsteps, 8);
	else
		check_same_params(state, window, flags, nsteps);

	/* NULL and infinite timestamps are not events */
	if (PG_ARGISNULL(a_ts))
		PG_RETURN_POINTER(state);
	ts = PG_GETARG_TIMESTAMPTZ(a_ts);
	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_POINTER(state);

	/* bool elements are one byte each, unaligned; NULL elements are false */
	flagsv = (const bool *) ARR_DATA_PTR(arr);
	nulls = ARR_NULLBITMAP(arr);
	if (nulls == NULL)
	{
		for (i = 0; i < nsteps; i++)
			if (flagsv[i])
				mask |= (uint32) 1 << i;
	}
	else
	{
		int			k = 0;

		for (i = 0; i < nsteps; i++)
		{
			if (nulls[i / 8] & (1 << (i % 8)))
			{
				if (flagsv[k++])
					mask |= (uint32) 1 << i;
			}
		}
	}
	if (mask == 0 && !(state->flags & FUNNEL_STRICT_ORDER))
		PG_RETURN_POINTER(state);

	reserve_events(state, 1);
	ev = &state->events[state->nevents];
	ev->ts = ts;
	ev->mask = mask;
	ev->pad = 0;
	if (state->sorted && state->nevents > 0 && event_less(ev, ev - 1))
		state->sorted = false;
	state->nevents++;
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_window_funnel_trans(PG_FUNCTION_ARGS)
{
	return funnel_trans(fcinfo, false);
}

Datum
leadmgmt_window_funnel_trans_mode(PG_FUNCTION_ARGS)
{
	return funnel_trans(fcinfo, true);
}

Datum
leadmgmt_window_funnel_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	FunnelState *s1 = PG_ARGISNULL(0) ? NULL : (FunnelState *) PG_GETARG_POINTER(0);
	FunnelState *s2 = PG_ARGISNULL(1) ? NULL : (FunnelState *) PG_GETARG_POINTER(1);

	aggcxt = lm_aggregate_context(fcinfo, "window_funnel_combine");
	if (s2 == NULL)
	{
		if (s1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s1);
	}
	if (s1 == NULL)
	{
		/* copy: s2 may live in a shorter-lived context */
		s1 = new_state(aggcxt, s2->window, s2->flags, s2->nsteps, s2->nevents);
		memcpy(s1->events, s2->events, sizeof(FunnelEvent) * s2->nevents);
		s1->nevents = s2->nevents;
		s1->sorted = s2->sorted;
		PG_RETURN_POINTER(s1);
	}
	check_same_params(s1, s2->window, s2->flags, s2->nsteps);
	if (s2->nevents == 0)
		PG_RETURN_POINTER(s1);
	reserve_events(s1, s2->nevents);
	if (s1->sorted && s2->sorted && s1->nevents > 0 &&
		event_less(&s2->events[0], &s1->events[s1->nevents - 1]))
		s1->sorted = false;
	else if (!s2->sorted)
		s1->sorted = false;
	memcpy(s1->events + s1->nevents, s2->events, sizeof(FunnelEvent) * s2->nevents);
	s1->nevents += s2->nevents;
	PG_RETURN_POINTER(s1);
}

Datum
leadmgmt_window_funnel_serialize(PG_FUNCTION_ARGS)
{
	FunnelState *state;
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "window_funnel_serialize");
	state = (FunnelState *) PG_GETARG_POINTER(0);

	pq_begintypsend(&buf);
	enlargeStringInfo(&buf, FUNNEL_SERIAL_HEADER + FUNNEL_SERIAL_EVENT * state->nevents);
	pq_sendbyte(&buf, FUNNEL_STATE_VERSION);
	pq_sendint32(&buf, state->flags);
	pq_sendint32(&buf, state->nsteps);
	pq_sendint64(&buf, state->window);
	pq_sendbyte(&buf, state->sorted ? 1 : 0);
	pq_sendint64(&buf, state->nevents);
	for (i = 0; i < state->nevents; i++)
	{
		pq_sendint64(&buf, state->events[i].ts);
		pq_sendint32(&buf, state->events[i].mask);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static void
bad_state(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid funnel aggregate state"),
			 errdetail("%s", detail)));
}

Datum
leadmgmt_window_funnel_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	bytea	   *raw;
	StringInfoData buf;
	int			version;
	uint32		flags;
	int32		nsteps;
	int64		window;
	int			sorted;
	int64		nevents;
	int64		i;
	uint32		stepmask;
	FunnelState *state;

	aggcxt = lm_aggregate_context(fcinfo, "window_funnel_deserialize");
	raw = PG_GETARG_BYTEA_PP(0);

	/* read only after checking the length: pq_getmsg* would say "message" */
	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < FUNNEL_SERIAL_HEADER)
		bad_state("The state is shorter than its header.");
	version = pq_getmsgbyte(&buf);
	if (version != FUNNEL_STATE_VERSION)
		bad_state("Unknown state version.");
	flags = (uint32) pq_getmsgint(&buf, 4);
	nsteps = (int32) pq_getmsgint(&buf, 4);
	window = pq_getmsgint64(&buf);
	sorted = pq_getmsgbyte(&buf);
	nevents = pq_getmsgint64(&buf);
	if ((flags & ~FUNNEL_ALL_FLAGS) != 0 ||
		((flags & FUNNEL_ALLOW_REENTRY) && !(flags & FUNNEL_STRICT_ORDER)))
		bad_state("Invalid mode flags.");
	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS)
		bad_state("Invalid number of steps.");
	if (window < 0)
		bad_state("Negative window.");
	if (sorted != 0 && sorted != 1)
		bad_state("Invalid sorted flag.");
	if (nevents < 0 || nevents > FUNNEL_MAX_EVENTS ||
		nevents != (int64) (buf.len - buf.cursor) / FUNNEL_SERIAL_EVENT ||
		(buf.len - buf.cursor) % FUNNEL_SERIAL_EVENT != 0)
		bad_state("The event count does not match the length.");

	stepmask = nsteps == 32 ? 0xFFFFFFFFu : (((uint32) 1 << nsteps) - 1);
	state = new_state(aggcxt, window, flags, nsteps, nevents);
	for (i = 0; i < nevents; i++)
	{
		FunnelEvent *ev = &state->events[i];

		ev->ts = pq_getmsgint64(&buf);
		ev->mask = (uint32) pq_getmsgint(&buf, 4);
		ev->pad = 0;
		if (TIMESTAMP_NOT_FINITE(ev->ts))
			bad_state("An event has an infinite timestamp.");
		if ((ev->mask & ~stepmask) != 0 ||
			(ev->mask == 0 && !(flags & FUNNEL_STRICT_ORDER)))
			bad_state("An event has invalid steps.");
		if (sorted && i > 0 && event_less(ev, ev - 1))
			bad_state("Events marked sorted are not.");
	}
	state->nevents = nevents;
	state->sorted = sorted;
	PG_RETURN_POINTER(state);
}

static void *
hook_alloc(size_t size)
{
	return palloc(size);
}

static void
hook_release(void *ptr)
{
	pfree(ptr);
}

static void
hook_interrupt(void)
{
	CHECK_FOR_INTERRUPTS();
}

static const FunnelHooks pg_hooks = {hook_alloc, hook_release, hook_interrupt};

/* scan the events in order; the state stays untouched (READ_ONLY) */
static int
funnel_result(const FunnelState *state, int64 *times)
{
	const FunnelEvent *events = state->events;
	int			level;

	if (!state->sorted && !funnel_is_sorted(events, (size_t) state->nevents))
	{
		FunnelEvent *copy = palloc_extended(sizeof(FunnelEvent) * state->nevents,
											MCXT_ALLOC_HUGE);

		memcpy(copy, events, sizeof(FunnelEvent) * state->nevents);
		funnel_sort(copy, (size_t) state->nevents);
		events = copy;
	}
	level = funnel_scan(events, (size_t) state->nevents, state->nsteps,
						state->window, state->flags, times, &pg_hooks);
	if (level < 0)
		elog(ERROR, "funnel scan failed to allocate memory");
	return level;
}

Datum
leadmgmt_window_funnel_final(PG_FUNCTION_ARGS)
{
	FunnelState *state;

	(void) lm_aggregate_context(fcinfo, "window_funnel_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_INT32(0);
	state = (FunnelState *) PG_GETARG_POINTER(0);
	PG_RETURN_INT32(funnel_result(state, NULL));
}

Datum
leadmgmt_funnel_step_times_final(PG_FUNCTION_ARGS)
{
	FunnelState *state;
	int64		times[FUNNEL_MAX_STEPS];
	Datum		elems[FUNNEL_MAX_STEPS];
	int			level = 0;
	int			i;

	(void) lm_aggregate_context(fcinfo, "funnel_step_times_final");
	if (!PG_ARGISNULL(0))
	{
		state = (FunnelState *) PG_GETARG_POINTER(0);
		level = funnel_result(state, times);
	}
	for (i = 0; i < level; i++)
		elems[i] = TimestampTzGetDatum(times[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, level, TIMESTAMPTZOID,
										  sizeof(TimestampTz), FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}
