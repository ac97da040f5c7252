/*
 * stage_conversions.c
 *		PostgreSQL glue of the aggregate
 *		leadmgmt.stage_conversions(lead_id, stage, changed_at, stages, next_stages)
 *		-> bigint[]: for each stages[i], how many leads entered next_stages[i]
 *		at or after their first entry into stages[i] (the funnel view's
 *		conversion_to_next).
 *
 * Why an aggregate: the answer needs each lead's first entry into one stage
 * next to its last entry into another.  In SQL that is a join of the history
 * with itself on the lead, which hashes every history row.  Here the scan
 * appends a 24-byte (lead, stage, time) record per row, and the final
 * function radix-sorts them by (lead, stage) and walks each lead's records
 * once (src/core/stage_conversions.c): sequential memory traffic instead of a cache
 * miss per row.
 *
 * State (ConvState, type internal), in the aggregate context (a deserialised
 * one in the per-call context, src/pg/agg_state.h):
 *	nstages, names, next
 *				the stage list of the group's first row and, per stage, the
 *				index of its next stage (-1: none or not listed); a later row
 *				or partial state with other lists is an error (22023)
 *	stages_raw, next_raw
 *				copies of the first row's arrays: later rows compare bytes
 *	recs		one (lead, stage index, time) record per row; nrecs <= capacity
 *
 * Cost: transition O(number of stages) to find the stage (a handful) plus an
 * append; combine O(size of the second state); serialise/deserialise
 * O(size); final O(n) per varying key byte (radix sort) plus a linear walk.
 * Memory: 24 bytes per row, and as much again while sorting.
 * FINALFUNC_MODIFY = SHAREABLE: the final function sorts the records in
 * place, which leaves the state valid for another final call but not for
 * more rows.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "stage_conversions.h"
#include "leadmgmt.h"

#define CONV_STATE_VERSION	1
#define CONV_MAX_STAGES		1000
#define CONV_MAX_NAME		NAMEDATALEN * 4
#define CONV_MAX_RECS		((int64) (MaxAllocHugeSize / sizeof(LmEntryRec)) - 1)
#define CONV_SERIAL_REC		(8 + 4 + 8)

typedef struct ConvState
{
	int			nstages;		/* -1 until the first row */
	char	  **names;			/* NUL-terminated */
	int		   *name_len;
	int		   *next;
	ArrayType  *stages_raw;
	ArrayType  *next_raw;
	LmEntryRec *recs;
	int64		nrecs;
	int64		capacity;
} ConvState;

PG_FUNCTION_INFO_V1(leadmgmt_stage_conversions_trans);
PG_FUNCTION_INFO_V1(leadmgmt_stage_conversions_combine);
PG_FUNCTION_INFO_V1(leadmgmt_stage_conversions_serialize);
PG_FUNCTION_INFO_V1(leadmgmt_stage_conversions_deserialize);
PG_FUNCTION_INFO_V1(leadmgmt_stage_conversions_final);

static ConvState *
new_state(MemoryContext cxt)
{
	ConvState  *state = MemoryContextAllocZero(cxt, sizeof(ConvState));

	state->nstages = -1;
	return state;
}

static void
reserve(ConvState *state, MemoryContext cxt, int64 more)
{
	state->recs = lm_grow_array(cxt, state->recs, &state->capacity,
								state->nrecs + more, sizeof(LmEntryRec), 1024, CONV_MAX_RECS,
								"stage_conversions", "rows");
}

static int
stage_index(const ConvState *state, const char *name, int len)
{
	int			i;

	for (i = 0; i < state->nstages; i++)
		if (state->name_len[i] == len && memcmp(state->names[i], name, len) == 0)
			return i;
	return -1;
}

static void
lists_must_match(bool same)
{
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stage_conversions stage lists must be the same for every row of a group")));
}

/* parse (stages, next_stages) into the state, or compare with what it holds */
static void
capture_stages(ConvState *state, MemoryContext aggcxt, ArrayType *stages, ArrayType *nexts)
{
	Datum	   *names,
			   *next_names;
	bool	   *nulls,
			   *next_nulls;
	int			n,
				nnext,
				i;
	MemoryContext old;

	if (state->stages_raw != NULL &&
		datumIsEqual(PointerGetDatum(stages), PointerGetDatum(state->stages_raw), false, -1) &&
		datumIsEqual(PointerGetDatum(nexts), PointerGetDatum(state->next_raw), false, -1))
		return;
	if (ARR_NDIM(stages) > 1 || ARR_NDIM(nexts) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("stage lists must be one-dimensional arrays")));
	deconstruct_array(stages, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	deconstruct_array(nexts, TEXTOID, -1, false, TYPALIGN_INT, &next_names, &next_nulls, &nnext);
	if (n == 0 || n > CONV_MAX_STAGES || nnext != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stages and next_stages must have the same 1 to %d elements", CONV_MAX_STAGES)));

	if (state->nstages >= 0)
	{
		/* another array with the same lists (a combined or new constant) */
		lists_must_match(n == state->nstages);
		for (i = 0; i < n; i++)
		{
			int			next = -1;

			lists_must_match(!nulls[i] &&
							 stage_index(state, VARDATA_ANY(names[i]), VARSIZE_ANY_EXHDR(names[i])) == i);
			if (!next_nulls[i])
				next = stage_index(state, VARDATA_ANY(next_names[i]), VARSIZE_ANY_EXHDR(next_names[i]));
			lists_must_match(next == state->next[i]);
		}
	}
	else
	{
		old = MemoryContextSwitchTo(aggcxt);
		state->names = palloc(n * sizeof(char *));
		state->name_len = palloc(n * sizeof(int));
		state->next = palloc(n * sizeof(int));
		for (i = 0; i < n; i++)
		{
			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("stage names must not be NULL")));
			state->names[i] = text_to_cstring(DatumGetTextPP(names[i]));
			state->name_len[i] = strlen(state->names[i]);
			if (state->name_len[i] > CONV_MAX_NAME)
				ereport(ERROR,
						(errcode(ERRCODE_NAME_TOO_LONG),
						 errmsg("stage name longer than %d bytes", CONV_MAX_NAME)));
			state->nstages = i;	/* stage_index() over the names so far */
			if (stage_index(state, state->names[i], state->name_len[i]) >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("stage \"%s\" is listed twice", state->names[i])));
		}
		state->nstages = n;
		for (i = 0; i < n; i++)
			state->next[i] = next_nulls[i] ? -1 :
				stage_index(state, VARDATA_ANY(next_names[i]), VARSIZE_ANY_EXHDR(next_names[i]));
		MemoryContextSwitchTo(old);
	}
	if (state->stages_raw == NULL)
	{
		old = MemoryContextSwitchTo(aggcxt);
		state->stages_raw = (ArrayType *) DatumGetPointer(datumCopy(PointerGetDatum(stages), false, -1));
		state->next_raw = (ArrayType *) DatumGetPointer(datumCopy(PointerGetDatum(nexts), false, -1));
		MemoryContextSwitchTo(old);
	}
}

Datum
leadmgmt_stage_conversions_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "stage_conversions_trans");
	ConvState  *state = PG_ARGISNULL(0) ? new_state(aggcxt) : (ConvState *) PG_GETARG_POINTER(0);
	text	   *stage;
	int			idx;

	if (PG_ARGISNULL(4) || PG_ARGISNULL(5))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stage lists must not be NULL")));
	capture_stages(state, aggcxt, PG_GETARG_ARRAYTYPE_P(4), PG_GETARG_ARRAYTYPE_P(5));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(state);	/* rows without lead, stage or time: skipped */

	stage = PG_GETARG_TEXT_PP(2);
	idx = stage_index(state, VARDATA_ANY(stage), VARSIZE_ANY_EXHDR(stage));
	if (idx < 0)
		PG_RETURN_POINTER(state);	/* a stage not listed counts nowhere */
	reserve(state, aggcxt, 1);
	state->recs[state->nrecs++] = lm_entry_make(PG_GETARG_INT64(1), idx, PG_GETARG_TIMESTAMPTZ(3));
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_stage_conversions_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "stage_conversions_combine");
	ConvState  *a = PG_ARGISNULL(0) ? NULL : (ConvState *) PG_GETARG_POINTER(0);
	ConvState  *b = PG_ARGISNULL(1) ? NULL : (ConvState *) PG_GETARG_POINTER(1);
	Size		i;

	if (b == NULL || b->nstages < 0)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL || a->nstages < 0)
	{
		MemoryContext old = MemoryContextSwitchTo(aggcxt);

		if (a == NULL)
			a = new_state(aggcxt);
		a->nstages = b->nstages;
		a->names = palloc(b->nstages * sizeof(char *));
		a->name_len = palloc(b->nstages * sizeof(int));
		a->next = palloc(b->nstages * sizeof(int));
		for (i = 0; i < (Size) b->nstages; i++)
		{
			a->names[i] = pstrdup(b->names[i]);
			a->name_len[i] = b->name_len[i];
			a->next[i] = b->next[i];
		}
		MemoryContextSwitchTo(old);
	}
	else
	{
		lists_must_match(a->nstages == b->nstages);
		for (i = 0; i < (Size) b->nstages; i++)
			lists_must_match(a->name_len[i] == b->name_len[i] &&
							 memcmp(a->names[i], b->names[i], a->name_len[i]) == 0 &&
							 a->next[i] == b->next[i]);
	}
	if (b->nrecs > 0)
	{
		reserve(a, aggcxt, b->nrecs);
		memcpy(a->recs + a->nrecs, b->recs, b->nrecs * sizeof(LmEntryRec));
		a->nrecs += b->nrecs;
	}
	PG_RETURN_POINTER(a);
}

Datum
leadmgmt_stage_conversions_serialize(PG_FUNCTION_ARGS)
{
	ConvState  *state;
	StringInfoData buf;
	Size		i;

	(void) lm_aggregate_context(fcinfo, "stage_conversions_serialize");
	state = (ConvState *) PG_GETARG_POINTER(0);
	lm_agg_check_size("stage_conversions", (double) state->nrecs * CONV_SERIAL_REC, NULL);
	lm_agg_write_begin(&buf, CONV_STATE_VERSION);
	pq_sendint32(&buf, state->nstages);
	for (i = 0; state->nstages > 0 && i < (Size) state->nstages; i++)
	{
		pq_sendint32(&buf, state->name_len[i]);
		pq_sendbytes(&buf, state->names[i], state->name_len[i]);
		pq_sendint32(&buf, state->next[i]);
	}
	pq_sendint64(&buf, state->nrecs);
	for (i = 0; i < (Size) state->nrecs; i++)
	{
		pq_sendint64(&buf, lm_entry_lead(&state->recs[i]));
		pq_sendint32(&buf, (int32) state->recs[i].stage);
		pq_sendint64(&buf, state->recs[i].time);
	}
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
Datum
leadmgmt_stage_conversions_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext callcxt = CurrentMemoryContext;
	LmAggReader r;
	ConvState  *state;
	int32		nstages;
	int64		nrecs,
				i;

	(void) lm_aggregate_context(fcinfo, "stage_conversions_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), CONV_STATE_VERSION, "stage_conversions");
	nstages = lm_agg_read_int32(&r);
	if (nstages < -1 || nstages == 0 || nstages > CONV_MAX_STAGES)
		lm_agg_bad_state(&r, "Stage count out of range.");
	state = new_state(callcxt);
	if (nstages > 0)
	{
		state->names = palloc(nstages * sizeof(char *));
		state->name_len = palloc(nstages * sizeof(int));
		state->next = palloc(nstages * sizeof(int));
	}
	for (i = 0; i < nstages; i++)
	{
		int32		len = lm_agg_read_int32(&r);

		if (len < 0 || len > CONV_MAX_NAME)
			lm_agg_bad_state(&r, "Stage name length out of range.");
		state->names[i] = pnstrdup(lm_agg_read_bytes(&r, len), len);
		if ((int32) strlen(state->names[i]) != len)
			lm_agg_bad_state(&r, "Stage name with a NUL byte.");
		state->name_len[i] = len;
		state->next[i] = lm_agg_read_int32(&r);
		if (state->next[i] < -1 || state->next[i] >= nstages)
			lm_agg_bad_state(&r, "Next stage index out of range.");
	}
	state->nstages = nstages;
	nrecs = lm_agg_read_int64(&r);
	if (nrecs < 0 || nrecs > CONV_MAX_RECS || (nrecs > 0 && nstages < 0) ||
		lm_agg_left(&r) != nrecs * CONV_SERIAL_REC)
		lm_agg_bad_state(&r, "Entry count does not match the data.");
	reserve(state, callcxt, nrecs);
	for (i = 0; i < nrecs; i++)
	{
		int64		lead = lm_agg_read_int64(&r);
		int32		stage = lm_agg_read_int32(&r);

		if (stage < 0 || stage >= nstages)
			lm_agg_bad_state(&r, "Entry out of range.");
		state->recs[i] = lm_entry_make(lead, stage, lm_agg_read_int64(&r));
	}
	state->nrecs = nrecs;
	lm_agg_read_end(&r);
	PG_RETURN_POINTER(state);
}

Datum
leadmgmt_stage_conversions_final(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = lm_aggregate_context(fcinfo, "stage_conversions_final");
	ConvState  *state;
	int64	   *counts,
			   *first,
			   *last,
			   *seen;
	LmEntryRec *scratch,
			   *sorted;
	Datum	   *elems;
	int			i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (ConvState *) PG_GETARG_POINTER(0);
	if (state->nstages < 0)
		PG_RETURN_NULL();

	/* sort in place (SHAREABLE): the records keep their multiset */
	if (state->nrecs > 1)
	{
		scratch = MemoryContextAllocHuge(aggcxt, state->capacity * sizeof(LmEntryRec));
		sorted = lm_entry_sort(state->recs, scratch, (size_t) state->nrecs);
		if (sorted == scratch)
		{
			pfree(state->recs);
			state->recs = scratch;
		}
		else
			pfree(scratch);
	}
	counts = palloc0(state->nstages * sizeof(int64));
	first = palloc(state->nstages * sizeof(int64));
	last = palloc(state->nstages * sizeof(int64));
	seen = palloc(state->nstages * sizeof(int64));
	lm_entry_conversions(state->recs, (size_t) state->nrecs, state->nstages, state->next,
						 counts, first, last, seen);
	elems = palloc(state->nstages * sizeof(Datum));
	for (i = 0; i < state->nstages; i++)
		elems[i] = Int64GetDatum(counts[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, state->nstages, INT8OID, sizeof(int64),
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}
