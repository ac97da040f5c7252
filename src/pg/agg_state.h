/*
 * agg_state.h
 *		The one way leadmgmt's aggregates with an internal state find their
 *		memory and pass their state between parallel workers.
 *
 * Memory (one rule for every aggregate):
 *	- the transition and combine functions keep the state in the aggregate
 *	  context, lm_aggregate_context(fcinfo, name), which also fails clearly
 *	  when a support function is called outside an aggregate;
 *	- the deserialise function builds its state in the per-call context
 *	  (CurrentMemoryContext), as PostgreSQL's own numeric aggregates do.  That
 *	  state is only ever the second argument of the combine function, which
 *	  copies into the aggregate context whatever it keeps (all of it when its
 *	  first argument is NULL) and keeps no pointer into it.  So the leader
 *	  never holds a worker's data twice, and the memory goes back at once;
 *	- final functions allocate their scratch and result in the per-call
 *	  context;
 *	- while a group has no state yet, transition and combine functions
 *	  return SQL NULL, never a NULL pointer: LM_RETURN_AGG_STATE(state).
 *	Combine functions are declared non-strict (CALLED ON NULL INPUT): a
 *	strict one would let PostgreSQL adopt the deserialised pointer as the
 *	transition value.
 *
 * Serialised form (one format for every aggregate): PostgreSQL's pqformat,
 * integers and floats in network byte order, the first byte the state's
 * version.  A serialised state only travels from a worker to the leader of
 * the same query and is never stored, so a new version needs no reader for
 * the old one; the byte catches a state handed to the wrong deserialiser.
 *
 *	serialise:	StringInfoData buf;
 *				lm_agg_check_size("my_agg", bytes_needed, NULL);
 *				lm_agg_write_begin(&buf, MY_VERSION);
 *				pq_sendint64(&buf, ...); ...
 *				PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
 *	deserialise:
 *				LmAggReader r;
 *				lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), MY_VERSION, "my_agg");
 *				n = lm_agg_read_int64(&r); ...
 *				lm_agg_read_end(&r);
 *
 * Every lm_agg_read_* checks that the bytes are there before it reads, and
 * any malformed state (wrong version, short, trailing bytes, or a value the
 * caller rejects with lm_agg_bad_state) is one error: SQLSTATE 22P03
 * (invalid_binary_representation), "invalid <aggregate> aggregate state",
 * with a detail saying what is wrong (doc/errors.md).
 */
#ifndef LM_PG_AGG_STATE_H
#define LM_PG_AGG_STATE_H

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "utils/memutils.h"

/* a serialised state must fit in a bytea, with room for its header */
#define LM_AGG_MAX_SERIAL	((double) (MaxAllocSize - 1024 * 1024))

typedef struct LmAggReader
{
	StringInfoData buf;
	const char *aggname;
} LmAggReader;

/*
 * Return from a transition or combine function: the state, or SQL NULL
 * while there is none.  Never a NULL pointer as a non-NULL internal value:
 * PostgreSQL would hand it to the serialise function, which would crash.
 */
#define LM_RETURN_AGG_STATE(state) \
	do { \
		if ((state) == NULL) \
			PG_RETURN_NULL(); \
		PG_RETURN_POINTER(state); \
	} while (0)

extern MemoryContext lm_aggregate_context(FunctionCallInfo fcinfo, const char *funcname);

extern void lm_agg_check_size(const char *aggname, double bytes, const char *hint);
extern void lm_agg_write_begin(StringInfo buf, uint8 version);
extern bytea *lm_agg_write_end(StringInfo buf);

extern void lm_agg_read_begin(LmAggReader *r, bytea *raw, uint8 version, const char *aggname);
extern void lm_agg_read_end(LmAggReader *r);
extern void lm_agg_bad_state(const LmAggReader *r, const char *detail);

/* bytes not read yet */
static inline int64
lm_agg_left(const LmAggReader *r)
{
	return (int64) r->buf.len - r->buf.cursor;
}

/* fail unless at least bytes more are there */
static inline void
lm_agg_need(const LmAggReader *r, int64 bytes)
{
	if (bytes < 0 || lm_agg_left(r) < bytes)
		lm_agg_bad_state(r, "The state is shorter than its contents say.");
}

static inline uint8
lm_agg_read_byte(LmAggReader *r)
{
	lm_agg_need(r, 1);
	return (uint8) pq_getmsgbyte(&r->buf);
}

static inline int16
lm_agg_read_int16(LmAggReader *r)
{
	lm_agg_need(r, 2);
	return (int16) pq_getmsgint(&r->buf, 2);
}

static inline int32
lm_agg_read_int32(LmAggReader *r)
{
	lm_agg_need(r, 4);
	return (int32) pq_getmsgint(&r->buf, 4);
}

static inline int64
lm_agg_read_int64(LmAggReader *r)
{
	lm_agg_need(r, 8);
	return pq_getmsgint64(&r->buf);
}

static inline float8
lm_agg_read_float8(LmAggReader *r)
{
	lm_agg_need(r, 8);
	return pq_getmsgfloat8(&r->buf);
}

/* len bytes, pointing into the serialised state (valid while it is) */
static inline const char *
lm_agg_read_bytes(LmAggReader *r, int64 len)
{
	lm_agg_need(r, len);
	return pq_getmsgbytes(&r->buf, (int) len);
}

#endif							/* LM_PG_AGG_STATE_H */
