/*
 * auc.c
 *		PostgreSQL glue of the aggregate leadmgmt.auc(score, label) -> float8,
 *		the exact ROC AUC of a scored, labelled set (doc/learned.md);
 *		the pair count is src/core/auc.c.
 *
 * State (AucState, type internal), in the aggregate context (a deserialised
 * one in the per-call context, src/pg/agg_state.h): the scores of positive
 * and negative rows in two growable float8 arrays (8 bytes per row);
 * npos <= cappos, nneg <= capneg; no score is NaN.  Rows with a NULL score
 * or label are skipped.
 *
 * Cost: transition O(1) amortised; combine appends, O(size of the second
 * state); serialise/deserialise O(size); the final function sorts the
 * arrays in place (FINALFUNC_MODIFY = READ_WRITE) and counts pairs exactly:
 * O(n log n).
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/memutils.h"

#include "leadmgmt.h"
#include "auc.h"

#define AUC_STATE_VERSION	1

typedef struct AucState
{
	int64		npos,
				nneg,
				cappos,
				capneg;
	double	   *pos;
	double	   *neg;
} AucState;

/* append m scores to one of the arrays */
static void
auc_push(MemoryContext ctx, double **arr, int64 *n, int64 *cap, const double *v, int64 m)
{
	*arr = lm_grow_array(ctx, *arr, cap, *n + m, sizeof(double), 8,
						 (int64) (MaxAllocHugeSize / sizeof(double)), "auc", "scores");
	memcpy(*arr + *n, v, sizeof(double) * m);
	*n += m;
}

PG_FUNCTION_INFO_V1(leadmgmt_auc_trans);
Datum
leadmgmt_auc_trans(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "auc_trans");
	AucState   *s = PG_ARGISNULL(0) ? NULL : (AucState *) PG_GETARG_POINTER(0);
	double		score;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		LM_RETURN_AGG_STATE(s);
	score = PG_GETARG_FLOAT8(1);
	if (isnan(score))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("auc score must not be NaN"),
				 errhint("Scores are ranked; NaN has no rank.  Filter such rows out or map them to a value.")));
	if (s == NULL)
		s = MemoryContextAllocZero(ctx, sizeof(AucState));
	if (PG_GETARG_BOOL(2))
		auc_push(ctx, &s->pos, &s->npos, &s->cappos, &score, 1);
	else
		auc_push(ctx, &s->neg, &s->nneg, &s->capneg, &score, 1);
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(leadmgmt_auc_combine);
Datum
leadmgmt_auc_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "auc_combine");
	AucState   *a = PG_ARGISNULL(0) ? NULL : (AucState *) PG_GETARG_POINTER(0);
	AucState   *b = PG_ARGISNULL(1) ? NULL : (AucState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL)
		a = MemoryContextAllocZero(ctx, sizeof(AucState));
	if (b->npos > 0)
		auc_push(ctx, &a->pos, &a->npos, &a->cappos, b->pos, b->npos);
	if (b->nneg > 0)
		auc_push(ctx, &a->neg, &a->nneg, &a->capneg, b->neg, b->nneg);
	PG_RETURN_POINTER(a);
}

/* Serialised: version, int64 npos, int64 nneg, the scores */
PG_FUNCTION_INFO_V1(leadmgmt_auc_serialize);
Datum
leadmgmt_auc_serialize(PG_FUNCTION_ARGS)
{
	AucState   *s = (AucState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "auc_serialize");
	lm_agg_check_size("auc", 8.0 * ((double) s->npos + (double) s->nneg), NULL);
	lm_agg_write_begin(&buf, AUC_STATE_VERSION);
	pq_sendint64(&buf, s->npos);
	pq_sendint64(&buf, s->nneg);
	for (i = 0; i < s->npos; i++)
		pq_sendfloat8(&buf, s->pos[i]);
	for (i = 0; i < s->nneg; i++)
		pq_sendfloat8(&buf, s->neg[i]);
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* the next m scores of a serialised auc state, appended to *arr */
static void
auc_read(LmAggReader *r, double **arr, int64 *n, int64 *cap, int64 m)
{
	int64		i;

	*arr = lm_grow_array(CurrentMemoryContext, *arr, cap, *n + m, sizeof(double), 1024,
						 (int64) (MaxAllocHugeSize / sizeof(double)), "auc", "scores");
	for (i = 0; i < m; i++)
		if (isnan((*arr)[(*n)++] = lm_agg_read_float8(r)))
			lm_agg_bad_state(r, "A score is NaN.");
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
PG_FUNCTION_INFO_V1(leadmgmt_auc_deserialize);
Datum
leadmgmt_auc_deserialize(PG_FUNCTION_ARGS)
{
	LmAggReader r;
	int64		npos,
				nneg;
	AucState   *s;

	(void) lm_aggregate_context(fcinfo, "auc_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), AUC_STATE_VERSION, "auc");
	npos = lm_agg_read_int64(&r);
	nneg = lm_agg_read_int64(&r);
	if (npos < 0 || nneg < 0 ||
		(double) lm_agg_left(&r) != 8.0 * ((double) npos + (double) nneg))
		lm_agg_bad_state(&r, "Score counts do not match the data.");
	s = palloc0(sizeof(AucState));
	if (npos > 0)
		auc_read(&r, &s->pos, &s->npos, &s->cappos, npos);
	if (nneg > 0)
		auc_read(&r, &s->neg, &s->nneg, &s->capneg, nneg);
	lm_agg_read_end(&r);
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(leadmgmt_auc_final);
Datum
leadmgmt_auc_final(PG_FUNCTION_ARGS)
{
	AucState   *s = PG_ARGISNULL(0) ? NULL : (AucState *) PG_GETARG_POINTER(0);

	(void) lm_aggregate_context(fcinfo, "auc_final");
	/* undefined without both classes */
	if (s == NULL || s->npos == 0 || s->nneg == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(lm_auc(s->pos, (size_t) s->npos, s->neg, (size_t) s->nneg));
}
