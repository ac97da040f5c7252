/*
 * learned.c
 *		Learned scoring: logistic regression and prediction as PostgreSQL
 *		aggregates and functions (doc/learned.md); ROC AUC is in
 *		auc.c.
 *
 * The numerical work is in src/core/logreg.c; this file is the PostgreSQL
 * glue: argument checks, aggregate states, parallel combine/serialise,
 * errors.
 *
 * leadmgmt.logreg(label, features [, l2]) and logreg_summary(...) share one
 * transition state, LogregState, in the aggregate memory context:
 *
 *		p		features per row, -1 until the first row fixes it
 *		l2		penalty, captured from the first row (0 for the 2-argument form)
 *		n		rows stored
 *		xcap, ycap
 *				rows allocated in x and in y
 *		x		n * p float8, row-major (a "huge" allocation: may pass 1 GB)
 *		y		n labels, 0 or 1
 *
 * Invariants: n <= xcap and n <= ycap; every stored feature is finite.
 * Rows whose label or feature array is NULL are skipped.  Memory: 8 p + 1
 * bytes per row, and up to twice that while the buffers double (1 M rows x
 * 50 features: about 400 MB).  Add: amortised O(p); combine: O(n p) copy
 * (concatenation); final: O(iterations n (p+1)^2) Newton steps, typically 5 to 10.  A
 * serialised partial state must stay under 1 GB (bytea limit): past that,
 * use the O(p^2)-state driver leadmgmt.logreg_train().
 *
 * leadmgmt.logreg_step(label, features, coef) is the Newton-step aggregate
 * of that driver: LogregStepState holds the coefficients captured from the
 * first row and the lr_step accumulator of src/core/logreg.h (rows,
 * positives, negative log-likelihood, misclassified rows, gradient, X'WX):
 * O((p+1)^2) memory, add O((p+1)^2), combine O((p+1)^2).
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "leadmgmt.h"
#include "logreg.h"

/* custom SQLSTATEs of this capability (doc/errors.md) */
#define ERRCODE_LM_NO_ESTIMATE		MAKE_SQLSTATE('L','M','0','2','0')
#define ERRCODE_LM_NOT_CONVERGED	MAKE_SQLSTATE('L','M','0','2','1')
#define ERRCODE_LM_SINGULAR			MAKE_SQLSTATE('L','M','0','2','2')

/* the Hessian is (p+1)^2 doubles: 1000 features is 8 MB and slow enough */
#define LOGREG_MAX_FEATURES 1000

/* serialised state versions (the format of src/pg/agg_state.h) */
#define LOGREG_STATE_VERSION	1
#define LOGREG_STEP_VERSION		1

typedef struct LogregState
{
	int32		p;
	double		l2;
	int64		n;
	int64		xcap;
	int64		ycap;
	double	   *x;
	uint8	   *y;
} LogregState;

typedef struct LogregStepState
{
	int32		k;				/* coefficients, p + 1 */
	double	   *beta;			/* k */
	double	   *acc;			/* lr_step_size(k) */
} LogregStepState;

/* ---------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

/* route the core's allocations through palloc and let it be cancelled */
static void
set_core_hooks(void)
{
	lr_alloc_hook = lm_core_alloc;
	lr_free_hook = lm_core_free;
	lr_check_hook = lm_core_interrupt;
}

/*
 * A float8[] argument as a C array: one-dimensional (or empty), no NULL
 * elements, every element finite.  what names the argument in errors.
 */
static double *
float8_array(ArrayType *arr, int *len, const char *what, bool check_finite)
{
	double	   *v;
	int			i,
				n;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("%s must be a float8 array", what)));
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what),
				 errdetail("The array has %d dimensions.", ARR_NDIM(arr))));
	if (ARR_HASNULL(arr) && array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not contain null elements", what),
				 errhint("Replace missing values, for example with 0 and an indicator feature.")));
	n = ARR_NDIM(arr) == 0 ? 0 : ARR_DIMS(arr)[0];
	v = n == 0 ? NULL : (double *) ARR_DATA_PTR(arr);
	if (check_finite)
		for (i = 0; i < n; i++)
			if (!isfinite(v[i]))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s must be finite", what),
						 errdetail("Element %d is %s.", i + 1,
								   isnan(v[i]) ? "NaN" : (v[i] > 0 ? "Infinity" : "-Infinity"))));
	*len = n;
	return v;
}

static ArrayType *
make_float8_array(const double *v, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Float8GetDatum(v[i]);
	return construct_array(d, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static double
check_l2(FunctionCallInfo fcinfo, int argno)
{
	double		l2;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("l2 must not be null"),
				 errhint("Use 0 for no regularisation.")));
	l2 = PG_GETARG_FLOAT8(argno);
	if (!(l2 >= 0) || !isfinite(l2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("l2 must be a finite number >= 0, got %g", l2),
				 errhint("l2 is the ridge penalty (scikit-learn's 1/C); 0 means plain maximum likelihood.")));
	return l2;
}

static void
check_feature_count(int p)
{
	if (p > LOGREG_MAX_FEATURES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("logistic regression supports at most %d features, got %d",
						LOGREG_MAX_FEATURES, p)));
}

static void
feature_count_mismatch(int expected, int got)
{
	ereport(ERROR,
			(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
			 errmsg("feature arrays differ in length: %d and %d", expected, got),
			 errhint("Every row must have the same features in the same order.")));
}

static void
l2_mismatch(double a, double b)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("l2 must be the same for every row, got %g and %g", a, b)));
}

/* turn a solver status into the matching error (LR_OK returns) */
static void
report_status(lr_status st, int64 n, int p, double l2)
{
	switch (st)
	{
		case LR_OK:
		case LR_EMPTY:
			return;
		case LR_ONE_CLASS:
			ereport(ERROR,
					(errcode(ERRCODE_LM_NO_ESTIMATE),
					 errmsg("logistic regression needs both labels, all %lld rows have the same label",
							(long long) n),
					 errhint("The intercept of a one-class fit is infinite; check the label expression.")));
			break;
		case LR_TOO_FEW_ROWS:
			ereport(ERROR,
					(errcode(ERRCODE_LM_NO_ESTIMATE),
					 errmsg_plural("too few rows for logistic regression: %lld rows, %d feature",
								   "too few rows for logistic regression: %lld rows, %d features",
								   p, (long long) n, p),
					 errdetail("Without regularisation at least %d rows (features + 2) are needed.", p + 2),
					 errhint("Add rows, drop features, or pass l2 > 0.")));
			break;
		case LR_SEPARATED:
			ereport(ERROR,
					(errcode(ERRCODE_LM_NO_ESTIMATE),
					 errmsg("the classes are perfectly separated, no finite maximum-likelihood estimate exists"),
					 errdetail_plural("%lld rows, %d feature, l2 = 0: the features predict every label exactly.",
									  "%lld rows, %d features, l2 = 0: some combination of the features predicts every label exactly.",
									  p, (long long) n, p),
					 errhint("Pass l2 > 0 (for example 1) to regularise, or drop the feature that gives the label away.")));
			break;
		case LR_NOT_CONVERGED:
			ereport(ERROR,
					(errcode(ERRCODE_LM_NOT_CONVERGED),
					 errmsg("logistic regression did not converge in %d Newton steps", LR_MAX_ITERATIONS),
					 errdetail_plural("%lld rows, %d feature, l2 = %g.", "%lld rows, %d features, l2 = %g.",
									  p, (long long) n, p, l2),
					 errhint("The classes may be quasi-separated (coefficients growing without bound): pass l2 > 0, or rescale the features.")));
			break;
		case LR_NONFINITE:
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("logistic regression overflowed"),
					 errdetail("Products of feature values are not finite in double precision."),
					 errhint("Rescale the features, for example to standard deviations or logarithms.")));
			break;
		case LR_SINGULAR:
			ereport(ERROR,
					(errcode(ERRCODE_LM_SINGULAR),
					 errmsg("the Hessian is singular, standard errors are undefined"),
					 errdetail("Some features are constant or linear combinations of others."),
					 errhint("Drop the redundant features, or pass l2 > 0.")));
			break;
		case LR_BAD_ARGUMENT:
			elog(ERROR, "logistic regression: invalid argument");
			break;
	}
}

/* ---------------------------------------------------------------------
 * logreg: in-memory aggregate
 * --------------------------------------------------------------------- */

static LogregState *
logreg_new(MemoryContext ctx, int p, double l2)
{
	LogregState *s = MemoryContextAllocZero(ctx, sizeof(LogregState));

	s->p = p;
	s->l2 = l2;
	return s;
}

/* make room for extra more rows */
static void
logreg_reserve(MemoryContext ctx, LogregState *s, int64 extra)
{
	Size		row = sizeof(double) * Max(s->p, 1);

	s->x = lm_grow_array(ctx, s->x, &s->xcap, s->n + extra, row, 8,
						 (int64) (MaxAllocHugeSize / row), "logreg", "rows");
	s->y = lm_grow_array(ctx, s->y, &s->ycap, s->n + extra, 1, 8,
						 (int64) (MaxAllocHugeSize / row), "logreg", "rows");
}

static Datum
logreg_trans_common(FunctionCallInfo fcinfo, double l2)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "logreg_trans");
	LogregState *s = PG_ARGISNULL(0) ? NULL : (LogregState *) PG_GETARG_POINTER(0);
	ArrayType  *arr;
	double	   *v;
	int			p;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		LM_RETURN_AGG_STATE(s);
	arr = PG_GETARG_ARRAYTYPE_P(2);
	v = float8_array(arr, &p, "features", true);
	check_feature_count(p);
	if (s == NULL)
		s = logreg_new(ctx, p, l2);
	else if (s->p != p)
		feature_count_mismatch(s->p, p);
	else if (s->l2 != l2)
		l2_mismatch(s->l2, l2);

	logreg_reserve(ctx, s, 1);
	if (p > 0)
		memcpy(s->x + s->n * p, v, sizeof(double) * p);
	s->y[s->n] = PG_GETARG_BOOL(1) ? 1 : 0;
	s->n++;
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_trans);
Datum
leadmgmt_logreg_trans(PG_FUNCTION_ARGS)
{
	return logreg_trans_common(fcinfo, 0.0);
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_trans_l2);
Datum
leadmgmt_logreg_trans_l2(PG_FUNCTION_ARGS)
{
	/* a NULL l2 is an error even on rows that are skipped */
	return logreg_trans_common(fcinfo, check_l2(fcinfo, 3));
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_combine);
Datum
leadmgmt_logreg_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "logreg_combine");
	LogregState *a = PG_ARGISNULL(0) ? NULL : (LogregState *) PG_GETARG_POINTER(0);
	LogregState *b = PG_ARGISNULL(1) ? NULL : (LogregState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL)
	{
		/* copy into the aggregate context */
		a = logreg_new(ctx, b->p, b->l2);
	}
	else if (a->p != b->p)
		feature_count_mismatch(a->p, b->p);
	else if (a->l2 != b->l2)
		l2_mismatch(a->l2, b->l2);
	if (b->n > 0)
	{
		logreg_reserve(ctx, a, b->n);
		if (a->p > 0)
			memcpy(a->x + a->n * a->p, b->x, sizeof(double) * b->n * b->p);
		memcpy(a->y + a->n, b->y, b->n);
		a->n += b->n;
	}
	PG_RETURN_POINTER(a);
}

/* Serialised: version, int32 p, float8 l2, int64 n, n * p features, n labels */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_serialize);
Datum
leadmgmt_logreg_serialize(PG_FUNCTION_ARGS)
{
	LogregState *s = (LogregState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int64		i;

	(void) lm_aggregate_context(fcinfo, "logreg_serialize");
	lm_agg_check_size("logreg", (double) s->n * ((double) s->p * sizeof(double) + 1),
					  "Use leadmgmt.logreg_train(), whose state does not grow with the rows, "
					  "or SET max_parallel_workers_per_gather = 0.");
	lm_agg_write_begin(&buf, LOGREG_STATE_VERSION);
	pq_sendint32(&buf, s->p);
	pq_sendfloat8(&buf, s->l2);
	pq_sendint64(&buf, s->n);
	for (i = 0; i < s->n * s->p; i++)
		pq_sendfloat8(&buf, s->x[i]);
	if (s->n > 0)
		pq_sendbytes(&buf, (const char *) s->y, s->n);
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_deserialize);
Datum
leadmgmt_logreg_deserialize(PG_FUNCTION_ARGS)
{
	LmAggReader r;
	int32		p;
	double		l2;
	int64		n,
				i;
	LogregState *s;

	(void) lm_aggregate_context(fcinfo, "logreg_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), LOGREG_STATE_VERSION, "logreg");
	p = lm_agg_read_int32(&r);
	l2 = lm_agg_read_float8(&r);
	n = lm_agg_read_int64(&r);
	if (p < 0 || p > LOGREG_MAX_FEATURES || !(l2 >= 0) || !isfinite(l2))
		lm_agg_bad_state(&r, "Feature count or l2 out of range.");
	if (n < 0 || (double) lm_agg_left(&r) != (double) n * ((double) p * sizeof(double) + 1))
		lm_agg_bad_state(&r, "Row count does not match the data.");
	s = logreg_new(CurrentMemoryContext, p, l2);
	if (n > 0)
	{
		logreg_reserve(CurrentMemoryContext, s, n);
		for (i = 0; i < n * p; i++)
			if (!isfinite(s->x[i] = lm_agg_read_float8(&r)))
				lm_agg_bad_state(&r, "A feature is not finite.");
		memcpy(s->y, lm_agg_read_bytes(&r, n), n);
		for (i = 0; i < n; i++)
			if (s->y[i] > 1)
				lm_agg_bad_state(&r, "A label is neither 0 nor 1.");
		s->n = n;
	}
	lm_agg_read_end(&r);
	PG_RETURN_POINTER(s);
}

/* fit the stored rows; false when there are none */
static bool
logreg_fit_state(LogregState *s, double *beta, lr_fit_info *info)
{
	lr_status	st;

	if (s == NULL || s->n == 0)
		return false;
	set_core_hooks();
	st = lr_fit(s->x, s->y, (size_t) s->n, s->p, s->l2, beta, info);
	report_status(st, s->n, s->p, s->l2);
	return true;
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_final);
Datum
leadmgmt_logreg_final(PG_FUNCTION_ARGS)
{
	LogregState *s = PG_ARGISNULL(0) ? NULL : (LogregState *) PG_GETARG_POINTER(0);
	double	   *beta;
	lr_fit_info info;

	(void) lm_aggregate_context(fcinfo, "logreg_final");
	if (s == NULL || s->n == 0)
		PG_RETURN_NULL();
	beta = palloc(sizeof(double) * (s->p + 1));
	logreg_fit_state(s, beta, &info);
	PG_RETURN_ARRAYTYPE_P(make_float8_array(beta, s->p + 1));
}

/*
 * leadmgmt.logreg_result: coef, std_err, z_stats, p_values, odds_ratios,
 * log_likelihood, condition_no, num_rows, num_positive, iterations, l2
 */
static Datum
make_result(FunctionCallInfo fcinfo, const double *beta, const double *se, int k,
			double loglik, double cond, int64 n, int64 npos, int iterations, double l2)
{
	TupleDesc	tupdesc;
	Datum		values[11];
	bool		nulls[11] = {0};
	double	   *z = palloc(sizeof(double) * k);
	double	   *pv = palloc(sizeof(double) * k);
	double	   *odds = palloc(sizeof(double) * k);
	int			j;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	if (tupdesc->natts != 11)
		elog(ERROR, "leadmgmt.logreg_result must have 11 columns");
	for (j = 0; j < k; j++)
	{
		z[j] = beta[j] / se[j];
		pv[j] = lr_normal_p_value(z[j]);
		odds[j] = exp(beta[j]);
	}
	values[0] = PointerGetDatum(make_float8_array(beta, k));
	values[1] = PointerGetDatum(make_float8_array(se, k));
	values[2] = PointerGetDatum(make_float8_array(z, k));
	values[3] = PointerGetDatum(make_float8_array(pv, k));
	values[4] = PointerGetDatum(make_float8_array(odds, k));
	values[5] = Float8GetDatum(loglik);
	values[6] = Float8GetDatum(cond);
	values[7] = Int64GetDatum(n);
	values[8] = Int64GetDatum(npos);
	values[9] = Int32GetDatum(iterations);
	values[10] = Float8GetDatum(l2);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_summary_final);
Datum
leadmgmt_logreg_summary_final(PG_FUNCTION_ARGS)
{
	LogregState *s = PG_ARGISNULL(0) ? NULL : (LogregState *) PG_GETARG_POINTER(0);
	double	   *beta,
			   *se;
	double		cond;
	lr_fit_info info;
	int64		npos = 0,
				i;
	lr_status	st;

	(void) lm_aggregate_context(fcinfo, "logreg_summary_final");
	if (s == NULL || s->n == 0)
		PG_RETURN_NULL();
	beta = palloc(sizeof(double) * (s->p + 1));
	se = palloc(sizeof(double) * (s->p + 1));
	logreg_fit_state(s, beta, &info);
	st = lr_std_errors(s->x, (size_t) s->n, s->p, s->l2, beta, se, &cond);
	report_status(st, s->n, s->p, s->l2);
	for (i = 0; i < s->n; i++)
		npos += s->y[i];
	return make_result(fcinfo, beta, se, s->p + 1, info.log_likelihood, cond,
					   s->n, npos, info.iterations, s->l2);
}

/* ---------------------------------------------------------------------
 * logreg_predict
 * --------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(leadmgmt_logreg_predict);
Datum
leadmgmt_logreg_predict(PG_FUNCTION_ARGS)
{
	int			k,
				p;
	double	   *beta = float8_array(PG_GETARG_ARRAYTYPE_P(0), &k, "coef", true);
	double	   *x = float8_array(PG_GETARG_ARRAYTYPE_P(1), &p, "features", true);
	double		eta;

	if (k != p + 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("coef has %d elements, expected %d: the intercept and one per feature", k, p + 1),
				 errhint("Pass the coefficients returned by leadmgmt.logreg() for the same feature list.")));
	eta = lr_linear(beta, x, p);
	if (isnan(eta))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("linear predictor is not a number"),
				 errdetail("Positive and negative terms overflowed to infinity.")));
	PG_RETURN_FLOAT8(lr_sigmoid(eta));
}

/* ---------------------------------------------------------------------
 * logreg_step: Newton-step aggregate for the out-of-memory driver
 * --------------------------------------------------------------------- */

static LogregStepState *
step_new(MemoryContext ctx, int k, const double *beta)
{
	LogregStepState *s = MemoryContextAlloc(ctx, sizeof(LogregStepState));

	s->k = k;
	s->beta = MemoryContextAlloc(ctx, sizeof(double) * k);
	memcpy(s->beta, beta, sizeof(double) * k);
	s->acc = MemoryContextAlloc(ctx, sizeof(double) * lr_step_size(k));
	lr_step_init(s->acc, k);
	return s;
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_trans);
Datum
leadmgmt_logreg_step_trans(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "logreg_step_trans");
	LogregStepState *s = PG_ARGISNULL(0) ? NULL : (LogregStepState *) PG_GETARG_POINTER(0);
	double	   *x,
			   *beta;
	int			p,
				k;

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("coef must not be null")));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		LM_RETURN_AGG_STATE(s);
	x = float8_array(PG_GETARG_ARRAYTYPE_P(2), &p, "features", true);
	check_feature_count(p);
	if (s == NULL)
	{
		beta = float8_array(PG_GETARG_ARRAYTYPE_P(3), &k, "coef", true);
		if (k != p + 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("coef has %d elements, expected %d: the intercept and one per feature", k, p + 1)));
		s = step_new(ctx, k, beta);
	}
	else if (s->k != p + 1)
		feature_count_mismatch(s->k - 1, p);
	else
	{
		/* per-call constant: the coefficients must not vary */
		beta = float8_array(PG_GETARG_ARRAYTYPE_P(3), &k, "coef", false);
		if (k != s->k || memcmp(beta, s->beta, sizeof(double) * k) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("coef must be the same for every row")));
	}
	lr_step_add(s->acc, s->beta, x, p, PG_GETARG_BOOL(1));
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_combine);
Datum
leadmgmt_logreg_step_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = lm_aggregate_context(fcinfo, "logreg_step_combine");
	LogregStepState *a = PG_ARGISNULL(0) ? NULL : (LogregStepState *) PG_GETARG_POINTER(0);
	LogregStepState *b = PG_ARGISNULL(1) ? NULL : (LogregStepState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		LM_RETURN_AGG_STATE(a);
	if (a == NULL)
		a = step_new(ctx, b->k, b->beta);
	else if (a->k != b->k)
		feature_count_mismatch(a->k - 1, b->k - 1);
	else if (memcmp(a->beta, b->beta, sizeof(double) * a->k) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("coef must be the same for every row")));
	lr_step_combine(a->acc, b->acc, a->k);
	PG_RETURN_POINTER(a);
}

/* Serialised: version, int32 k, k float8 beta, lr_step_size(k) float8 */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_serialize);
Datum
leadmgmt_logreg_step_serialize(PG_FUNCTION_ARGS)
{
	LogregStepState *s = (LogregStepState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	Size		i;

	(void) lm_aggregate_context(fcinfo, "logreg_step_serialize");
	lm_agg_write_begin(&buf, LOGREG_STEP_VERSION);
	pq_sendint32(&buf, s->k);
	for (i = 0; i < (Size) s->k; i++)
		pq_sendfloat8(&buf, s->beta[i]);
	for (i = 0; i < lr_step_size(s->k); i++)
		pq_sendfloat8(&buf, s->acc[i]);
	PG_RETURN_BYTEA_P(lm_agg_write_end(&buf));
}

/* in the per-call context, as every deserialised state (src/pg/agg_state.h) */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_deserialize);
Datum
leadmgmt_logreg_step_deserialize(PG_FUNCTION_ARGS)
{
	LmAggReader r;
	int32		k;
	Size		i;
	LogregStepState *s;

	(void) lm_aggregate_context(fcinfo, "logreg_step_deserialize");
	lm_agg_read_begin(&r, PG_GETARG_BYTEA_PP(0), LOGREG_STEP_VERSION, "logreg_step");
	k = lm_agg_read_int32(&r);
	if (k < 1 || k > LOGREG_MAX_FEATURES + 1 ||
		lm_agg_left(&r) != (int64) (sizeof(double) * (k + lr_step_size(k))))
		lm_agg_bad_state(&r, "Coefficient count does not match the data.");
	s = palloc(sizeof(LogregStepState));
	s->k = k;
	s->beta = palloc(sizeof(double) * k);
	s->acc = palloc(sizeof(double) * lr_step_size(k));
	for (i = 0; i < (Size) k; i++)
		if (!isfinite(s->beta[i] = lm_agg_read_float8(&r)))
			lm_agg_bad_state(&r, "A coefficient is not finite.");
	for (i = 0; i < lr_step_size(k); i++)
		s->acc[i] = lm_agg_read_float8(&r);
	lm_agg_read_end(&r);
	/* rows >= positives >= 0, misclassified rows <= rows */
	if (!(s->acc[0] >= 0) || !(s->acc[1] >= 0) || s->acc[1] > s->acc[0] ||
		!(s->acc[3] >= 0) || s->acc[3] > s->acc[0])
		lm_agg_bad_state(&r, "Inconsistent row counts.");
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_final);
Datum
leadmgmt_logreg_step_final(PG_FUNCTION_ARGS)
{
	LogregStepState *s = PG_ARGISNULL(0) ? NULL : (LogregStepState *) PG_GETARG_POINTER(0);

	(void) lm_aggregate_context(fcinfo, "logreg_step_final");
	if (s == NULL)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(make_float8_array(s->acc, (int) lr_step_size(s->k)));
}

/* an accumulator array from logreg_step, checked against coef */
static double *
step_accumulator(ArrayType *arr, int k)
{
	int			len;
	double	   *acc = float8_array(arr, &len, "step", false);

	if ((Size) len != lr_step_size(k))
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("step has %d elements, expected %d for %d coefficients",
						len, (int) lr_step_size(k), k),
				 errhint("Pass the result of leadmgmt.logreg_step() computed at the same coef.")));
	return acc;
}

/*
 * logreg_step_solve(coef, step, l2, OUT coef float8[], OUT max_step float8,
 * OUT objective float8)
 */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_solve);
Datum
leadmgmt_logreg_step_solve(PG_FUNCTION_ARGS)
{
	int			k;
	double	   *beta = float8_array(PG_GETARG_ARRAYTYPE_P(0), &k, "coef", true);
	double	   *acc,
			   *next;
	double		l2 = check_l2(fcinfo, 2);
	double		max_step = 0,
				objective = 0;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {0};
	lr_status	st;

	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("coef must hold at least the intercept")));
	acc = step_accumulator(PG_GETARG_ARRAYTYPE_P(1), k);
	next = palloc(sizeof(double) * k);
	set_core_hooks();
	st = lr_step_solve(acc, beta, k - 1, l2, next, &max_step, &objective);
	report_status(st, (int64) acc[0], k - 1, l2);
	if (st == LR_EMPTY)
		ereport(ERROR,
				(errcode(ERRCODE_LM_NO_ESTIMATE),
				 errmsg("no rows to fit")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = PointerGetDatum(make_float8_array(next, k));
	values[1] = Float8GetDatum(max_step);
	values[2] = Float8GetDatum(objective);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* logreg_step_result(coef, step, l2, iterations) -> leadmgmt.logreg_result */
PG_FUNCTION_INFO_V1(leadmgmt_logreg_step_result);
Datum
leadmgmt_logreg_step_result(PG_FUNCTION_ARGS)
{
	int			k,
				j;
	double	   *beta = float8_array(PG_GETARG_ARRAYTYPE_P(0), &k, "coef", true);
	double	   *acc,
			   *h,
			   *se;
	double		l2 = check_l2(fcinfo, 2);
	double		cond;
	lr_status	st;

	if (k < 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("coef must hold at least the intercept")));
	acc = step_accumulator(PG_GETARG_ARRAYTYPE_P(1), k);
	h = palloc(sizeof(double) * k * k);
	memcpy(h, acc + LR_STEP_HEADER + k, sizeof(double) * k * k);
	for (j = 1; j < k; j++)
		h[j * k + j] += l2;
	se = palloc(sizeof(double) * k);
	set_core_hooks();
	st = lr_std_errors_from_hessian(h, k, se, &cond);
	report_status(st, (int64) acc[0], k - 1, l2);
	return make_result(fcinfo, beta, se, k, -acc[2], cond, (int64) acc[0],
					   (int64) acc[1], PG_GETARG_INT32(3), l2);
}
