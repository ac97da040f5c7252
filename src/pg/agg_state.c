/*
 * agg_state.c
 *		Aggregate memory and the serialised state format (agg_state.h).
 */
#include "postgres.h"

/* the varlena macros (VARSIZE_ANY_EXHDR, VARDATA_ANY) left postgres.h in 16 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/memutils.h"

#include "pg/agg_state.h"

/*
 * The memory context an aggregate support function keeps its state in; a
 * clear error when it is called outside an aggregate.
 */
MemoryContext
lm_aggregate_context(FunctionCallInfo fcinfo, const char *funcname)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s called in non-aggregate context", funcname)));
	return aggcontext;
}

/*
 * Before serialising: a state of bytes bytes must fit in one bytea.  The
 * hint says what to do instead (NULL: run without parallel workers).
 */
void
lm_agg_check_size(const char *aggname, double bytes, const char *hint)
{
	if (bytes > LM_AGG_MAX_SERIAL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s state too large to pass between parallel workers", aggname),
				 errdetail("A serialised partial state is limited to 1 GB."),
				 errhint("%s", hint ? hint :
						 "Run the query without parallel workers (SET max_parallel_workers_per_gather = 0).")));
}

void
lm_agg_write_begin(StringInfo buf, uint8 version)
{
	pq_begintypsend(buf);
	pq_sendbyte(buf, version);
}

bytea *
lm_agg_write_end(StringInfo buf)
{
	return pq_endtypsend(buf);
}

void
lm_agg_bad_state(const LmAggReader *r, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid %s aggregate state", r->aggname),
			 errdetail("%s", detail)));
}

/* start reading raw (in the per-call context) and check its version byte */
void
lm_agg_read_begin(LmAggReader *r, bytea *raw, uint8 version, const char *aggname)
{
	r->aggname = aggname;
	r->buf.data = VARDATA_ANY(raw);
	r->buf.len = VARSIZE_ANY_EXHDR(raw);
	r->buf.maxlen = r->buf.len;
	r->buf.cursor = 0;
	if (r->buf.len < 1 || (uint8) pq_getmsgbyte(&r->buf) != version)
		lm_agg_bad_state(r, "Unknown state version.");
}

/* the whole state must have been read */
void
lm_agg_read_end(LmAggReader *r)
{
	if (lm_agg_left(r) != 0)
		lm_agg_bad_state(r, "Trailing bytes after the state.");
}
