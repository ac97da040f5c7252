/*
 * logreg.h
 *		L2-regularised logistic regression by Newton's method (IRLS), pure C.
 *
 * No PostgreSQL headers: unit-tested and fuzzed standalone
 * (src/core/testing).  src/learned.c is the PostgreSQL glue.
 *
 * Model: P(y = 1 | x) = sigmoid(b0 + b1 x1 + ... + bp xp).  The solver
 * minimises
 *
 *		f(b) = sum_i [ log(1 + exp(eta_i)) - y_i eta_i ] + (l2 / 2) sum_{j>=1} b_j^2
 *
 * with eta_i = b0 + x_i . b (the intercept b0 is not penalised), which is
 * scikit-learn's LogisticRegression objective with C = 1 / l2 and, for
 * l2 = 0, plain maximum likelihood (R's glm, statsmodels' Logit).
 *
 * Coefficient vectors have k = p + 1 entries, intercept first.  Matrices
 * are k x k, row-major, dense.
 */
#ifndef LM_LOGREG_H
#define LM_LOGREG_H

#include <stddef.h>

/* outcome of a fit; lr_status_message() gives the text */
typedef enum lr_status
{
	LR_OK = 0,
	LR_EMPTY,					/* no rows */
	LR_ONE_CLASS,				/* every label equal: no finite intercept */
	LR_TOO_FEW_ROWS,			/* l2 = 0 and n < p + 2 */
	LR_SEPARATED,				/* l2 = 0 and a hyperplane separates the classes */
	LR_NOT_CONVERGED,			/* iteration limit reached */
	LR_NONFINITE,				/* overflow: features too large to fit */
	LR_SINGULAR,				/* Hessian not positive definite (standard errors) */
	LR_BAD_ARGUMENT				/* negative or non-finite l2, p < 0, ... */
} lr_status;

/* largest coefficient step (relative to max(1, |b_j|)) at convergence */
#define LR_TOLERANCE		1e-10
#define LR_MAX_ITERATIONS	100

/* what a fit reports besides the coefficients */
typedef struct lr_fit_info
{
	int			iterations;		/* Newton steps taken */
	double		objective;		/* f(b) at the solution */
	double		log_likelihood; /* sum_i log P(y_i | x_i) at the solution */
	double		max_step;		/* last coefficient step (relative) */
	int			jittered;		/* Newton steps that needed the ridge fallback */
} lr_fit_info;

extern const char *lr_status_message(lr_status status);

/*
 * Optional hooks set by the embedding program (NULL: malloc/free and no
 * check).  The PostgreSQL glue allocates with palloc and checks for query
 * cancel, so a cancelled fit longjmps out and its memory context reclaims
 * the working memory.  lr_check_hook runs every 65536 rows of every pass.
 */
extern void *(*lr_alloc_hook) (size_t size);
extern void (*lr_free_hook) (void *ptr);
extern void (*lr_check_hook) (void);

/* log(1 + exp(x)) without overflow or cancellation */
extern double lr_log1pexp(double x);

/* 1 / (1 + exp(-x)) without overflow */
extern double lr_sigmoid(double x);

/*
 * Fit.  x: n rows of p features, row-major (x[i * p + j]); y: n labels
 * (0 or 1).  beta (out): k = p + 1 coefficients, intercept first.  info may
 * be NULL.  Working memory: O(n + k^2), allocated with malloc and freed
 * before returning (LR_NONFINITE also reports a failed allocation).
 * Time: O(iterations * n * k^2).
 */
extern lr_status lr_fit(const double *x, const unsigned char *y, size_t n, int p,
						double l2, double *beta, lr_fit_info *info);

/* b0 + x . b for p features (beta has p + 1 entries) */
extern double lr_linear(const double *beta, const double *x, int p);

/*
 * Standard errors of the coefficients: square roots of the diagonal of the
 * inverse of the Hessian of f (X'WX plus l2 on the penalised diagonal) at
 * beta.  Returns LR_SINGULAR when that Hessian is not numerically positive
 * definite (collinear or constant features with l2 = 0); se (out) has k
 * entries.  cond (out, may be NULL): condition number estimate of the
 * Hessian (ratio of largest to smallest Cholesky pivot, squared).
 */
extern lr_status lr_std_errors(const double *x, size_t n, int p, double l2,
							   const double *beta, double *se, double *cond);

/* the same from an already accumulated k x k Hessian (row-major) */
extern lr_status lr_std_errors_from_hessian(const double *hessian, int k,
											double *se, double *cond);

/*
 * One Newton-step accumulator for data that does not fit in memory
 * (MADlib's approach): per row, add the row's gradient, Hessian and
 * objective contribution at fixed coefficients; accumulators combine by
 * addition; lr_step_solve turns the totals into the next coefficients.
 * State O(k^2) = (k + k^2 + 4) doubles.
 *
 * Layout of acc (lr_step_size(k) doubles): [0] rows, [1] positive labels,
 * [2] negative log-likelihood, [3] rows not classified strictly correctly
 * by beta (0 with l2 = 0 proves separation), [4 .. 4+k) gradient of the
 * negative log-likelihood, [4+k .. 4+k+k*k) X'WX (row-major, upper
 * triangle filled).
 */
#define LR_STEP_HEADER 4
extern size_t lr_step_size(int k);
extern void lr_step_init(double *acc, int k);
extern void lr_step_add(double *acc, const double *beta, const double *x, int p,
						int label);
extern void lr_step_combine(double *acc, const double *other, int k);

/*
 * Penalise the accumulated totals (gradient + l2 b, Hessian + l2 I on
 * j >= 1), solve for the Newton step and write beta - step to next_beta.
 * max_step (out): largest |step_j| / max(1, |b_j|).  objective (out, may be
 * NULL): penalised objective at beta.  Uses the same Cholesky with ridge
 * fallback as lr_fit.
 */
extern lr_status lr_step_solve(const double *acc, const double *beta, int p,
							   double l2, double *next_beta, double *max_step,
							   double *objective);

/* Two-sided p-value of a standard normal z statistic */
extern double lr_normal_p_value(double z);

#endif							/* LM_LOGREG_H */
