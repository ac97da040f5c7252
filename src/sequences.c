/*
 * sequences.c
 *		PostgreSQL glue of sequence_match, sequence_count (ClickHouse
 *		sequenceMatch / sequenceCount) and retention (ClickHouse retention);
 *		doc/sequences.md.
 *
 * The pattern language and the matcher are src/core/sequence.c; this file
 * collects the events, checks the per-call constants and moves states between
 * parallel workers.
 *
 * State of sequence_match / sequence_count (SeqState, type internal), in the
 * aggregate context (states made by the deserialise function live in the
 * per-call context; the combine function copies what it keeps):
 *	nconds		number of conditions (1..32), from the group's first row
 *	sorted		the events are known to be in (timestamp, conditions) order
 *	events		(timestamp, condition bit set) of every row that matches a
 *				condition and has a finite timestamp, 16 bytes each, in an
 *				array that starts at 4 and doubles
 *	pattern		the pattern text, validated when the state was made (parsed
 *				once per group; the parse is kept per call site, so a query
 *				parses it once for all its groups)
 * The pattern and nconds must be the same for every row of a group and for
 * combined partial states.
 *
 * Cost: transition O(conditions) per row, O(1) amortised append; combine
 * O(events of the second state); final O(n log n) sort (skipped when rows
 * came in order) plus the match: O(n x pattern) for sequence_match without
 * time conditions, otherwise polynomial (see src/core/sequence.c).  The
 * final functions do not modify the state (READ_ONLY): they sort a copy.
 *
 * retention keeps a bigint: the conditions seen (bits 0..31) and their number
 * (bits 32..39), combined with OR; PostgreSQL moves it between workers.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "sequence.h"

#define SEQ_STATE_VERSION	1
#define SEQ_MAX_PATTERN		4096	/* bytes of pattern text */
#define SEQ_MAX_EVENTS		((int64) (MaxAllocHugeSize / sizeof(SeqEvent)) / 2)

typedef struct SeqState
{
	int64		nevents;
	int64		capacity;
	SeqEvent   *events;
	uint8		nconds;
	bool		sorted;
	int32		patlen;
	char		pattern[FLEXIBLE_ARRAY_MEMBER];
} SeqState;

/* the parsed pattern of the last pattern text seen, per call site */
typedef struct PatternCache
{
	SeqPattern	pat;
	int			nconds;
	int			len;
	char		text[SEQ_MAX_PATTERN];
} PatternCache;

PG_FUNCTION_INFO_V1(leadmgmt_sequence_trans);
PG_FUNCTION_INFO_V1(leadmgmt_sequence_combine);
PG_FUNCTION_INFO_V1(leadmgmt_sequence_serialize);
PG_FUNCTION_INFO_V1(leadmgmt_sequence_deserialize);
PG_FUNCTION_INFO_V1(leadmgmt_sequence_match_final);
PG_FUNCTION_INFO_V1(leadmgmt_sequence_count_final);
PG_FUNCTION_INFO_V1(leadmgmt_retention_trans);
PG_FUNCTION_INFO_V1(leadmgmt_retention_combine);
PG_FUNCTION_INFO_V1(leadmgmt_retention_final);

/*
 * The parsed pattern for (text, nconds), from this call site's cache or
 * parsed now.  A malformed pattern is 42601, a condition number beyond the
 * arguments 22023.
 */
static const SeqPattern *
get_pattern(FunctionCallInfo fcinfo, const char *str, int len, int nconds)
{
	PatternCache *cache = (PatternCache *) fcinfo->flinfo->fn_extra;
	SeqParseError err;
	size_t		pos = 0;

	if (cache != NULL && cache->len == len && cache->nconds == nconds &&
		memcmp(cache->text, str, len) == 0)
		return &cache->pat;
	if (len > SEQ_MAX_PATTERN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sequence pattern is too long"),
				 errdetail("The pattern has %d bytes; at most %d are allowed.", len, SEQ_MAX_PATTERN)));
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(PatternCache));
		cache->len = -1;
		fcinfo->flinfo->fn_extra = cache;
	}
	cache->len = -1;
	err = seq_parse(str, (size_t) len, nconds, &cache->pat, &pos);
	switch (err)
	{
		case SEQ_PARSE_OK:
			break;
		case SEQ_PARSE_COND_RANGE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sequence pattern names a condition that is not given"),
					 errdetail("At position %d of \"%.*s\": there %s %d condition%s.",
							   (int) pos + 1, Min(len, 200), str,
							   nconds == 1 ? "is" : "are", nconds, nconds == 1 ? "" : "s"),
					 errhint("(?N) refers to the N-th condition after the timestamp, counting from 1.")));
			break;
		case SEQ_PARSE_TOO_LONG:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("sequence pattern has more than %d elements", SEQ_MAX_ACTIONS)));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_SYNTAX_ERROR),
					 errmsg("invalid sequence pattern: %s", seq_parse_message(err)),
					 errdetail("At position %d of \"%.*s\".", (int) pos + 1, Min(len, 200), str),
					 errhint("A pattern is a sequence of (?N) (an event matching condition N), "
							 ". (any event), .* (any number of events) and (?t<=S), (?t<S), "
							 "(?t>=S), (?t>S), (?t==S) (seconds since the previous event), "
							 "without blanks, as in '(?1)(?t<=604800)(?2)'.")));
	}
	memcpy(cache->text, str, len);
	cache->len = len;
	cache->nconds = nconds;
	return &cache->pat;
}

/* the condition bit set of a boolean array; NULL elements are false */
static uint32
cond_mask(ArrayType *arr, int n)
{
	const bool *v = (const bool *) ARR_DATA_PTR(arr);
	bits8	   *nulls = ARR_NULLBITMAP(arr);
	uint32		mask = 0;
	int			i,
				k = 0;

	for (i = 0; i < n; i++)
	{
		if (nulls != NULL && !(nulls[i / 8] & (1 << (i % 8))))
			continue;
		if (v[k++])
			mask |= (uint32) 1 << i;
	}
	return mask;
}

/* the number of conditions of a VARIADIC array: 1..32, one dimension */
static int
cond_count(ArrayType *arr, const char *what)
{
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s conditions must be a one-dimensional array", what)));
	n = ARR_NDIM(arr) == 0 ? 0 : ARR_DIMS(arr)[0];
	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s needs at least one condition", what)));
	if (n > SEQ_MAX_CONDS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s takes at most %d conditions", what, SEQ_MAX_CONDS),
				 errdetail("%d conditions were given.", n)));
	return n;
}

static SeqState *
new_state(MemoryContext cxt, const char *pattern, int patlen, int nconds, int64 capacity)
{
	SeqState   *state = MemoryContextAlloc(cxt, offsetof(SeqState, pattern) + patlen);

	state->nevents = 0;
	state->capacity = 0;
	state->events = NULL;
	state->nconds = (uint8) nconds;
	state->sorted = true;
	state->patlen = patlen;
	memcpy(state->pattern, pattern, patlen);
	if (capacity > 0)
		state->events = lm_grow_array(cxt, NULL, &state->capacity, capacity,
									  sizeof(SeqEvent), 4, SEQ_MAX_EVENTS,
									  "sequence_match", "events");
	return state;
}

static void
check_same(const SeqState *state, const char *pattern, int patlen, int nconds)
{
	if (state->nconds == nconds && state->patlen == patlen &&
		memcmp(state->pattern, pattern, patlen) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("sequence pattern and number of conditions must be the same for every row of a group"),
			 errdetail("The group started with pattern \"%.*s\" and %d conditions; a later row has \"%.*s\" and %d.",
					   Min(state->patlen, 200), state->pattern, state->nconds,
					   Min(patlen, 200), pattern, nconds),
			 errhint("Pass constants, or values that depend only on the GROUP BY columns.")));
}

static inline bool
later(const SeqEvent *a, const SeqEvent *b)
{
	return a->ts > b->ts || (a->ts == b->ts && a->mask > b->mask);
}

Datum
leadmgmt_sequence_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "sequence_trans");
	SeqState   *state = PG_ARGISNULL(0) ? NULL : (SeqState *) PG_GETARG_POINTER(0);
	text	   *pattern;
	ArrayType  *arr;
	int			nconds;
	uint32		mask;
	TimestampTz ts;
	SeqEvent   *e;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("sequence pattern must not be null")));
	/* VARIADIC NULL: no conditions to check against; the row is ignored */
	if (PG_ARGISNULL(3))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	pattern = PG_GETARG_TEXT_PP(1);
	arr = PG_GETARG_ARRAYTYPE_P(3);
	nconds = cond_count(arr, "a sequence");

	if (state == NULL)
	{
		/* validate the pattern once per group (parsed once per call site) */
		(void) get_pattern(fcinfo, VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern), nconds);
		state = new_state(aggcxt, VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern), nconds, 0);
	}
	else
		check_same(state, VARDATA_ANY(pattern), VARSIZE_ANY_EXHDR(pattern), nconds);

	/* NULL and infinite timestamps, and rows matching no condition: no event */
	if (PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);
	ts = PG_GETARG_TIMESTAMPTZ(2);
	if (TIMESTAMP_NOT_FINITE(ts))
		PG_RETURN_POINTER(state);
	mask = cond_mask(arr, nconds);
	if (mask == 0)
		PG_RETURN_POINTER(state);

	if (state->nevents >= state->capacity)
		state->events = lm_grow_array(aggcxt, state->events, &state->capacity,
									  state->nevents + 1, sizeof(SeqEvent), 4,
									  SEQ_MAX_EVENTS, "sequence_match", "events");
	e = &state->events[state->nevents];
	e->ts = ts;
	e->mask = mask;
	e->pad = 0;
	if (state->sorted && state->nevents > 0 && later(e - 1, e))
		state->sorted = false;
	state->nevents++;
	PG_RETURN_POINTER(state);
}

/* copy the events of src after those of dst, dst in cxt */
static void
append_events(MemoryContext cxt, SeqState *dst, const SeqState *src)
{
	if (src->nevents == 0)
		return;
	dst->events = lm_grow_array(cxt, dst->events, &dst->capacity,
								dst->nevents + src->nevents, sizeof(SeqEvent), 4,
								SEQ_MAX_EVENTS, "sequence_match", "events");
	if (!src->sorted ||
		(dst->nevents > 0 && later(&dst->events[dst->nevents - 1], &src->events[0])))
		dst->sorted = false;
	memcpy(dst->events + dst->nevents, src->events, sizeof(SeqEvent) * src->nevents);
	dst->nevents += src->nevents;
}

Datum
leadmgmt_sequence_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "sequence_combine");
	SeqState   *s1 = PG_ARGISNULL(0) ? NULL : (SeqState *) PG_GETARG_POINTER(0);
	SeqState   *s2 = PG_ARGISNULL(1) ? NULL : (SeqState *) PG_GETARG_POINTER(1);

	if (s2 == NULL)
	{
		if (s1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s1);
	}
	if (s1 == NULL)
	{
		/* copy: s2 may live in a shorter-lived context */
		s1 = new_state(aggcxt, s2->pattern, s2->patlen, s2->nconds, s2->nevents);
		s1->sorted = s2->sorted;
		append_events(aggcxt, s1, s2);
		PG_RETURN_POINTER(s1);
	}
	check_same(s1, s2->pattern, s2->patlen, s2->nconds);
	append_events(aggcxt, s1, s2);
	PG_RETURN_POINTER(s1);
}

/*
 * Serialised form (version 1, pqformat): version byte, nconds byte, sorted
 * byte, pattern length (int32) and bytes, event count (int64), then the
 * timestamps (int64 each) and the condition sets (int32 each).
 */
Datum
leadmgmt_sequence_serialize(PG_FUNCTION_ARGS)
{
	SeqState   *state;
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "sequence_serialize");
	state = (SeqState *) PG_GETARG_POINTER(0);
	pq_begintypsend(&buf);
	pq_sendbyte(&buf, SEQ_STATE_VERSION);
	pq_sendbyte(&buf, state->nconds);
	pq_sendbyte(&buf, state->sorted ? 1 : 0);
	pq_sendint32(&buf, state->patlen);
	pq_sendbytes(&buf, state->pattern, state->patlen);
	pq_sendint64(&buf, state->nevents);
	for (i = 0; i < state->nevents; i++)
		pq_sendint64(&buf, state->events[i].ts);
	for (i = 0; i < state->nevents; i++)
		pq_sendint32(&buf, state->events[i].mask);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static void
bad_state(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid sequence aggregate state"),
			 errdetail("%s", detail)));
}

Datum
leadmgmt_sequence_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *raw;
	StringInfoData buf;
	int			nconds,
				sorted,
				patlen;
	int64		n,
				i;
	uint32		allowed;
	SeqState   *state;

	(void) lm_aggregate_context(fcinfo, "sequence_deserialize");
	raw = PG_GETARG_BYTEA_PP(0);
	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < 3 + 4 + 8)
		bad_state("The state is shorter than its header.");
	if (pq_getmsgbyte(&buf) != SEQ_STATE_VERSION)
		bad_state("Unknown state version.");
	nconds = pq_getmsgbyte(&buf);
	sorted = pq_getmsgbyte(&buf);
	patlen = pq_getmsgint(&buf, 4);
	if (nconds < 1 || nconds > SEQ_MAX_CONDS)
		bad_state("Invalid number of conditions.");
	if (sorted != 0 && sorted != 1)
		bad_state("Invalid sorted flag.");
	if (patlen < 0 || patlen > SEQ_MAX_PATTERN || patlen > buf.len - buf.cursor - 8)
		bad_state("Invalid pattern length.");
	/* in the per-call context: the combine function copies what it keeps */
	state = new_state(CurrentMemoryContext, pq_getmsgbytes(&buf, patlen), patlen, nconds, 0);
	n = pq_getmsgint64(&buf);
	if (n < 0 || n > SEQ_MAX_EVENTS || n * 12 != buf.len - buf.cursor)
		bad_state("The event count does not match the length.");
	if (n > 0)
		state->events = lm_grow_array(CurrentMemoryContext, NULL, &state->capacity, n,
									  sizeof(SeqEvent), 4, SEQ_MAX_EVENTS,
									  "sequence_match", "events");
	allowed = nconds == 32 ? 0xFFFFFFFFu : (((uint32) 1 << nconds) - 1);
	for (i = 0; i < n; i++)
	{
		state->events[i].ts = pq_getmsgint64(&buf);
		state->events[i].pad = 0;
		if (TIMESTAMP_NOT_FINITE(state->events[i].ts))
			bad_state("An event has an infinite timestamp.");
	}
	for (i = 0; i < n; i++)
	{
		uint32		mask = (uint32) pq_getmsgint(&buf, 4);

		if (mask == 0 || (mask & ~allowed) != 0)
			bad_state("An event has invalid conditions.");
		state->events[i].mask = mask;
		if (sorted && i > 0 && later(&state->events[i - 1], &state->events[i]))
			bad_state("Events marked sorted are not.");
	}
	state->nevents = n;
	state->sorted = sorted != 0;
	pq_getmsgend(&buf);
	PG_RETURN_POINTER(state);
}

static const SeqHooks pg_hooks = {lm_core_alloc, lm_core_free, lm_core_interrupt};

/* the sorted events of the state (a sorted copy when needed) and its pattern */
static const SeqEvent *
final_events(FunctionCallInfo fcinfo, const SeqState *state, const SeqPattern **pat)
{
	SeqEvent   *ev = state->events;

	*pat = get_pattern(fcinfo, state->pattern, state->patlen, state->nconds);
	if (!state->sorted)
	{
		ev = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(SeqEvent) * state->nevents);
		memcpy(ev, state->events, sizeof(SeqEvent) * state->nevents);
		seq_sort(ev, (size_t) state->nevents);
	}
	return ev;
}

static void
report_error(int64 code, const SeqState *state)
{
	if (code == SEQ_ERR_TOO_BIG)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sequence pattern too complex for a group of " INT64_FORMAT " events", state->nevents),
				 errdetail("Events times .* and (?t..) elements of \"%.*s\" exceed " INT64_FORMAT ".",
						   Min(state->patlen, 200), state->pattern, (int64) SEQ_MAX_MEMO),
				 errhint("Use fewer .* and time conditions, or split the group.")));
	elog(ERROR, "sequence matcher failed to allocate memory");
}

Datum
leadmgmt_sequence_match_final(PG_FUNCTION_ARGS)
{
	SeqState   *state;
	const SeqPattern *pat;
	const SeqEvent *ev;
	int			r;

	(void) lm_aggregate_context(fcinfo, "sequence_match_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	state = (SeqState *) PG_GETARG_POINTER(0);
	ev = final_events(fcinfo, state, &pat);
	r = seq_match(pat, ev, (size_t) state->nevents, &pg_hooks);
	if (r < 0)
		report_error(r, state);
	PG_RETURN_BOOL(r == 1);
}

Datum
leadmgmt_sequence_count_final(PG_FUNCTION_ARGS)
{
	SeqState   *state;
	const SeqPattern *pat;
	const SeqEvent *ev;
	int64		r;

	(void) lm_aggregate_context(fcinfo, "sequence_count_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	state = (SeqState *) PG_GETARG_POINTER(0);
	ev = final_events(fcinfo, state, &pat);
	r = seq_count(pat, ev, (size_t) state->nevents, &pg_hooks);
	if (r < 0)
		report_error(r, state);
	PG_RETURN_INT64(r);
}

/* ---------------------------------------------------------------- retention */

#define RET_NCONDS(s)	((int) (((uint64) (s) >> 32) & 0xFF))
#define RET_BITS(s)		((uint32) ((uint64) (s) & 0xFFFFFFFFu))
#define RET_MAKE(n, b)	((int64) (((uint64) (n) << 32) | (uint64) (b)))

static void
retention_check(int64 state, int nconds)
{
	if (RET_NCONDS(state) != nconds)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention needs the same number of conditions for every row of a group"),
				 errdetail("The group started with %d conditions; a later row has %d.",
						   RET_NCONDS(state), nconds)));
}

Datum
leadmgmt_retention_trans(PG_FUNCTION_ARGS)
{
	ArrayType  *arr;
	int			nconds;
	int64		state;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_INT64(PG_GETARG_INT64(0));
	}
	arr = PG_GETARG_ARRAYTYPE_P(1);
	nconds = cond_count(arr, "retention");
	if (nconds < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retention needs at least two conditions"),
				 errhint("Give the condition of the first period, then one condition per later period.")));
	if (PG_ARGISNULL(0))
		state = RET_MAKE(nconds, 0);
	else
	{
		state = PG_GETARG_INT64(0);
		retention_check(state, nconds);
	}
	PG_RETURN_INT64(state | (int64) cond_mask(arr, nconds));
}

Datum
leadmgmt_retention_combine(PG_FUNCTION_ARGS)
{
	int64		s1 = PG_GETARG_INT64(0);
	int64		s2 = PG_GETARG_INT64(1);

	retention_check(s1, RET_NCONDS(s2));
	PG_RETURN_INT64(s1 | s2);
}

Datum
leadmgmt_retention_final(PG_FUNCTION_ARGS)
{
	int64		state;
	int			n,
				i;
	uint32		bits;
	Datum	   *elems;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = PG_GETARG_INT64(0);
	n = RET_NCONDS(state);
	bits = RET_BITS(state);
	if (n < 1 || n > SEQ_MAX_CONDS)
		elog(ERROR, "invalid retention state");
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = BoolGetDatum((bits & 1) && (bits & ((uint32) 1 << i)));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}
