/*
 * funnel.c
 *		PostgreSQL glue of the funnel aggregates window_funnel and
 *		funnel_step_times (ClickHouse windowFunnel semantics, doc/funnel.md).
 *
 * The chain scan itself is src/core/funnel.c; this file collects the events,
 * checks the per-call constants and moves states between parallel workers.
 *
 * State (FunnelState, type internal): one allocation per group, in the
 * aggregate context (states made by the deserialise function live in the
 * per-call context; the combine function copies what it keeps):
 *	window		window_size in microseconds (a day counts 24 hours), >= 0
 *	flags		parsed mode (FUNNEL_* bits)
 *	nsteps		number of steps, 1..FUNNEL_MAX_STEPS
 *	sorted		the events are known to be in (timestamp, steps) order
 *	mask_bytes	width of a step mask: 1 up to 8 steps, 2 up to 16, else 4
 *	nevents, capacity, ts[], then the masks: the (timestamp, step bit set) of
 *				every row that matches a step (in strict_order also of rows
 *				matching none, which end the search); rows with a NULL or
 *				infinite timestamp are not kept
 * window, flags and nsteps are taken from the group's first row; a later row
 * or a combined partial state that differs is an error.  They travel with
 * the serialised state (src/pg/agg_state.h: pqformat, version byte, 22P03
 * for a malformed one), so the final function needs no extra arguments.
 * A state starts as one 64-byte chunk (room for 4 events of a funnel of up
 * to 8 steps) and doubles when full, so it moves: the transition and combine
 * functions return the new pointer.
 *
 * Cost: transition O(steps) per row, amortised O(1) append (9, 10 or 12
 * bytes per kept event); combine O(events of the second state);
 * serialise/deserialise O(events), 16 bytes plus as much per event as in
 * memory; final O(n log n) sort (skipped when rows came in order) plus the
 * O(n) scan.  The final function never modifies the state
 * (FINALFUNC_MODIFY = READ_ONLY): it copies the events to a scratch array
 * kept by the call site and sorts them there.  So window_funnel and
 * funnel_step_times over the same arguments share one state, and both work
 * as window functions (a running funnel level over a lead's timeline).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "funnel.h"

/*
 * Layout of a state: the header, then capacity timestamps (int64), then
 * capacity step masks of mask_bytes each (1, 2 or 4 by the number of steps).
 * One allocation per group: a lead with a few events costs one 64-byte chunk.
 */
#define FUNNEL_HEADER		offsetof(FunnelState, ts)
#define FUNNEL_FIRST_SIZE	64
/* the state and its serialised form (16 + 9..12 bytes an event) fit 1 GB */
#define FUNNEL_MAX_SIZE		((Size) MaxAllocSize)
#define FUNNEL_STATE_VERSION 2

typedef struct FunnelState
{
	int64		window;
	int32		nevents;
	int32		capacity;
	uint8		flags;
	uint8		nsteps;
	uint8		sorted;
	uint8		mask_bytes;
	int64		ts[FLEXIBLE_ARRAY_MEMBER];	/* then the masks */
} FunnelState;

static inline int
mask_bytes_for(int nsteps)
{
	return nsteps <= 8 ? 1 : nsteps <= 16 ? 2 : 4;
}

static inline void *
state_masks(const FunnelState *state)
{
	return (char *) state->ts + sizeof(int64) * state->capacity;
}

static inline uint32
get_mask(const FunnelState *state, int64 i)
{
	const void *m = state_masks(state);

	switch (state->mask_bytes)
	{
		case 1:
			return ((const uint8 *) m)[i];
		case 2:
			return ((const uint16 *) m)[i];
		default:
			return ((const uint32 *) m)[i];
	}
}

static inline void
set_mask(FunnelState *state, int64 i, uint32 mask)
{
	void	   *m = state_masks(state);

	switch (state->mask_bytes)
	{
		case 1:
			((uint8 *) m)[i] = (uint8) mask;
			break;
		case 2:
			((uint16 *) m)[i] = (uint16) mask;
			break;
		default:
			((uint32 *) m)[i] = mask;
			break;
	}
}

/* events that fit in size bytes */
static inline int64
capacity_of(Size size, int mask_bytes)
{
	return (int64) ((size - FUNNEL_HEADER) / (sizeof(int64) + mask_bytes));
}

static inline bool
later_event(int64 ts_a, uint32 mask_a, int64 ts_b, uint32 mask_b)
{
	return ts_a > ts_b || (ts_a == ts_b && mask_a > mask_b);
}

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

/* bytes for capacity events: the first chunk, then doubling, capped */
static Size
size_for(int64 capacity, int mask_bytes)
{
	Size		need = FUNNEL_HEADER + (Size) capacity * (sizeof(int64) + mask_bytes);
	Size		size = FUNNEL_FIRST_SIZE;

	if (need > FUNNEL_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one funnel group"),
				 errdetail("A group may keep at most " INT64_FORMAT " events that match a step.",
						   capacity_of(FUNNEL_MAX_SIZE, mask_bytes))));
	while (size < need)
		size = Min(size * 2, FUNNEL_MAX_SIZE);
	return size;
}

/* a state with room for at least capacity events, in cxt */
static FunnelState *
new_state(MemoryContext cxt, int64 window, uint32 flags, int nsteps, int64 capacity)
{
	int			mb = mask_bytes_for(nsteps);
	Size		size = size_for(capacity, mb);
	FunnelState *state = MemoryContextAlloc(cxt, size);

	state->window = window;
	state->flags = (uint8) flags;
	state->nsteps = (uint8) nsteps;
	state->sorted = true;
	state->mask_bytes = (uint8) mb;
	state->nevents = 0;
	state->capacity = (int32) capacity_of(size, mb);
	return state;
}

/*
 * Make room for extra more events.  The state moves (repalloc keeps its
 * memory context): callers return the new pointer as the transition value.
 * Not lm_grow_array(): header, timestamps and masks share one allocation,
 * so growing it also moves the masks up; size_for() does the doubling.
 */
static FunnelState *
reserve_events(FunnelState *state, int64 extra)
{
	int64		need = (int64) state->nevents + extra;
	int			mb = state->mask_bytes;
	int64		oldcap = state->capacity;
	Size		size;

	if (need <= oldcap)
		return state;
	size = size_for(need, mb);
	state = repalloc(state, size);
	state->capacity = (int32) capacity_of(size, mb);
	/* the masks follow the timestamps: move them up to the new end */
	memmove(state_masks(state), (char *) state->ts + sizeof(int64) * oldcap,
			(Size) state->nevents * mb);
	return state;
}

/* append one event, keeping the sorted flag */
static inline FunnelState *
append_event(FunnelState *state, int64 ts, uint32 mask)
{
	int32		n = state->nevents;

	if (n >= state->capacity)
		state = reserve_events(state, 1);
	if (state->sorted && n > 0 &&
		later_event(state->ts[n - 1], get_mask(state, n - 1), ts, mask))
		state->sorted = false;
	state->ts[n] = ts;
	set_mask(state, n, mask);
	state->nevents = n + 1;
	return state;
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
		LM_RETURN_AGG_STATE(state);
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
		state = new_state(aggcxt, window, flags, nsteps, 1);
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

	PG_RETURN_POINTER(append_event(state, ts, mask));
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

/* copy the events of src after those of dst (same parameters, room made) */
static void
append_events(FunnelState *dst, const FunnelState *src)
{
	int64		n = dst->nevents;
	int			mb = dst->mask_bytes;

	Assert(dst->mask_bytes == src->mask_bytes);
	Assert(n + src->nevents <= dst->capacity);
	if (src->nevents == 0)
		return;
	if (!src->sorted)
		dst->sorted = false;
	else if (dst->sorted && n > 0 &&
			 later_event(dst->ts[n - 1], get_mask(dst, n - 1), src->ts[0], get_mask(src, 0)))
		dst->sorted = false;
	memcpy(dst->ts + n, src->ts, sizeof(int64) * src->nevents);
	memcpy((char *) state_masks(dst) + n * mb, state_masks(src), (Size) src->nevents * mb);
	dst->nevents += src->nevents;
}

Datum
leadmgmt_window_funnel_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	FunnelState *s1 = PG_ARGISNULL(0) ? NULL : (FunnelState *) PG_GETARG_POINTER(0);
	FunnelState *s2 = PG_ARGISNULL(1) ? NULL : (FunnelState *) PG_GETARG_POINTER(1);

	aggcxt = lm_aggregate_context(fcinfo, "window_funnel_combine");
	if (s2 == NULL)
		LM_RETURN_AGG_STATE(s1);
	if (s1 == NULL)
	{
		/* copy: s2 may live in a shorter-lived context */
		s1 = new_state(aggcxt, s2->window, s2->flags, s2->nsteps, Max(s2->nevents, 1));
		append_events(s1, s2);
		PG_RETURN_POINTER(s1);
	}
	check_same_params(s1, s2->window, s2->flags, s2->nsteps);
	s1 = reserve_events(s1, s2->nevents);
	append_events(s1, s2);
	PG_RETURN_POINTER(s1);
}

/*
 * Serialised form (version 2, src/pg/agg_state.h): version, flags, nsteps,
 * sorted (one byte each), window (int64), nevents (int32), the timestamps
 * (int64 each), then the masks (mask_bytes each); integers in network byte
 * order.
 */
Datum
leadmgmt_window_funnel_serialize(PG_FUNCTION_ARGS)
{
	FunnelState *state;
	StringInfoData buf;
	int64		i;
	int			n;
	int			mb;

	(void) lm_aggregate_context(fcinfo, "window_funnel_serialize");
	state = (FunnelState *) PG_GETARG_POINTER(0);
	n = state->nevents;
	mb = state->mask_bytes;
	/*
	 * No lm_agg_check_size(): the form has 16 header bytes where the state
	 * has 24, so a state within FUNNEL_MAX_SIZE always fits in a bytea.
	 */
	lm_agg_write_begin(&buf, FUNNEL_STATE_VERSION);
	pq_sendbyte(&buf, state->flags);
	pq_sendbyte(&buf, state->nsteps);
	pq_sendbyte(&buf, state->sorted ? 1 : 0);
	pq_sendint64(&buf, state->window);
	pq_sendint32(&buf, n);
	for (i = 0; i < n; i++)
		pq_sendint64(&buf, state->ts[i]);
	if (mb == 1)
		pq_sendbytes(&buf, state_masks(state), n);
	else
		for (i = 0; i < n; i++)
		{
			if (mb == 2)
				pq_sendint16(&buf, (uint16) get_mask(state, i));
			else
				pq_sendint32(&buf, get_mask(state, i));
		}
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

Datum
leadmgmt_window_funnel_deserialize(PG_FUNCTION_ARGS)
{
	LmAggReader r;
	uint32		flags;
	int			nsteps;
	int			sorted;
	int64		window;
	int64		nevents;
	int			mb;
	int64		i;
	uint32		stepmask;
	FunnelState *state;

	(void) lm_aggregate_context(fcinfo, "window_funnel_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), FUNNEL_STATE_VERSION, "funnel");
	flags = lm_agg_read_byte(&r);
	nsteps = lm_agg_read_byte(&r);
	sorted = lm_agg_read_byte(&r);
	window = lm_agg_read_int64(&r);
	nevents = (uint32) lm_agg_read_int32(&r);
	if ((flags & ~FUNNEL_ALL_FLAGS) != 0 ||
		((flags & FUNNEL_ALLOW_REENTRY) && !(flags & FUNNEL_STRICT_ORDER)))
		lm_agg_bad_state(&r, "Invalid mode flags.");
	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS)
		lm_agg_bad_state(&r, "Invalid number of steps.");
	if (window < 0)
		lm_agg_bad_state(&r, "Negative window.");
	if (sorted != 0 && sorted != 1)
		lm_agg_bad_state(&r, "Invalid sorted flag.");
	mb = mask_bytes_for(nsteps);
	if (nevents > capacity_of(FUNNEL_MAX_SIZE, mb) ||
		nevents * (int64) (sizeof(int64) + mb) != lm_agg_left(&r))
		lm_agg_bad_state(&r, "The event count does not match the length.");

	/*
	 * In the current (per-call) context, like PostgreSQL's own deserialise
	 * functions: the combine function copies what it keeps.
	 */
	stepmask = nsteps == 32 ? 0xFFFFFFFFu : (((uint32) 1 << nsteps) - 1);
	state = new_state(CurrentMemoryContext, window, flags, nsteps, Max(nevents, 1));
	for (i = 0; i < nevents; i++)
	{
		int64		ts = lm_agg_read_int64(&r);

		if (TIMESTAMP_NOT_FINITE(ts))
			lm_agg_bad_state(&r, "An event has an infinite timestamp.");
		state->ts[i] = ts;
	}
	for (i = 0; i < nevents; i++)
	{
		uint32		mask = mb == 1 ? lm_agg_read_byte(&r) :
			mb == 2 ? (uint16) lm_agg_read_int16(&r) : (uint32) lm_agg_read_int32(&r);

		if ((mask & ~stepmask) != 0 ||
			(mask == 0 && !(flags & FUNNEL_STRICT_ORDER)))
			lm_agg_bad_state(&r, "An event has invalid steps.");
		if (sorted && i > 0 &&
			later_event(state->ts[i - 1], get_mask(state, i - 1), state->ts[i], mask))
			lm_agg_bad_state(&r, "Events marked sorted are not.");
		set_mask(state, i, mask);
	}
	lm_agg_read_end(&r);
	state->nevents = (int32) nevents;
	state->sorted = (uint8) sorted;
	PG_RETURN_POINTER(state);
}

static const FunnelHooks pg_hooks = {lm_core_alloc, lm_core_free, lm_core_interrupt};

/* scratch array of the final function, kept per call site (fn_extra) */
typedef struct FinalScratch
{
	int64		capacity;
	FunnelEvent *events;		/* in fn_mcxt, grown by lm_grow_array() */
} FinalScratch;

/* larger scratch arrays are allocated per call, not kept */
#define FUNNEL_SCRATCH_KEEP 4096

/*
 * The events of the state as (timestamp, steps) pairs in scan order.  The
 * state stays untouched (READ_ONLY): the pairs are written to a scratch
 * array and sorted there when the rows did not come in order.
 */
static int
funnel_result(FunctionCallInfo fcinfo, const FunnelState *state, int64 *times)
{
	FinalScratch *scratch = (FinalScratch *) fcinfo->flinfo->fn_extra;
	FunnelEvent *ev;
	int64		n = state->nevents;
	int64		i;
	int			level;

	if (n <= FUNNEL_SCRATCH_KEEP)
	{
		if (scratch == NULL)
		{
			scratch = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FinalScratch));
			fcinfo->flinfo->fn_extra = scratch;
		}
		scratch->events = lm_grow_array(fcinfo->flinfo->fn_mcxt, scratch->events,
										&scratch->capacity, Max(n, 1), sizeof(FunnelEvent),
										64, FUNNEL_SCRATCH_KEEP, "funnel", "events");
		ev = scratch->events;
	}
	else
		ev = palloc_extended(sizeof(FunnelEvent) * n, MCXT_ALLOC_HUGE);

	switch (state->mask_bytes)
	{
		case 1:
			{
				const uint8 *m = state_masks(state);

				for (i = 0; i < n; i++)
				{
					ev[i].ts = state->ts[i];
					ev[i].mask = m[i];
					ev[i].seq = (uint32) i;
				}
			}
			break;
		default:
			for (i = 0; i < n; i++)
			{
				ev[i].ts = state->ts[i];
				ev[i].mask = get_mask(state, i);
				ev[i].seq = (uint32) i;
			}
			break;
	}
	if (!state->sorted)
		funnel_sort(ev, (size_t) n);
	level = funnel_scan(ev, (size_t) n, state->nsteps,
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
	PG_RETURN_INT32(funnel_result(fcinfo, state, NULL));
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
		level = funnel_result(fcinfo, state, times);
	}
	for (i = 0; i < level; i++)
		elems[i] = TimestampTzGetDatum(times[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, level, TIMESTAMPTZOID,
										  sizeof(TimestampTz), FLOAT8PASSBYVAL,
										  TYPALIGN_DOUBLE));
}
