/*
 * test_logreg.c
 *		Unit tests of the logistic-regression solver (../logreg.c).
 *
 * Reference values are closed forms (a binary feature's MLE is the two
 * group log-odds; its standard errors are sqrt(1/a + 1/b + ...)), the
 * first-order optimality condition checked with an independently coded
 * gradient, and invariances (feature scaling, collinear copies, step driver
 * equal to the in-memory fit).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "logreg.h"
#include "tap.h"

/* gradient of the penalised objective, coded independently of logreg.c */
static double
max_abs_gradient(const double *x, const unsigned char *y, size_t n, int p,
				 double l2, const double *beta)
{
	double		g[16] = {0};
	double		m = 0;
	size_t		i;
	int			j;

	for (i = 0; i < n; i++)
	{
		double		eta = beta[0];
		double		mu;

		for (j = 0; j < p; j++)
			eta += beta[j + 1] * x[i * p + j];
		mu = 1.0 / (1.0 + exp(-eta));
		g[0] += mu - y[i];
		for (j = 0; j < p; j++)
			g[j + 1] += (mu - y[i]) * x[i * p + j];
	}
	for (j = 0; j <= p; j++)
	{
		if (j > 0)
			g[j] += l2 * beta[j];
		if (fabs(g[j]) > m)
			m = fabs(g[j]);
	}
	return m;
}

/* deterministic pseudo-random data: p features, labels from a known model */
static double
uniform(void)
{
	return (double) (tap_random() >> 11) / 9007199254740992.0;
}

static void
make_data(double *x, unsigned char *y, size_t n, int p, const double *truth)
{
	size_t		i;
	int			j;

	for (i = 0; i < n; i++)
	{
		double		eta = truth[0];

		for (j = 0; j < p; j++)
		{
			x[i * p + j] = uniform() * 4 - 2;
			eta += truth[j + 1] * x[i * p + j];
		}
		y[i] = uniform() < 1.0 / (1.0 + exp(-eta));
	}
}

static void
test_helpers(void)
{
	TAP_OK(lr_log1pexp(1000) == 1000, "log1pexp(1000) = 1000 without overflow");
	TAP_OK(lr_log1pexp(-1000) == 0, "log1pexp(-1000) underflows to 0");
	TAP_OK(tap_close(lr_log1pexp(0), log(2.0), 1e-15), "log1pexp(0) = ln 2");
	TAP_OK(tap_close(lr_log1pexp(-40), exp(-40), 1e-30), "log1pexp(-40) keeps relative precision");
	TAP_OK(lr_sigmoid(1000) == 1 && lr_sigmoid(-1000) == 0, "sigmoid(+-1000) saturates without NaN");
	TAP_OK(tap_close(lr_sigmoid(-745), exp(-745), 1e-320), "sigmoid(-745) is exp(-745)");
	TAP_OK(tap_close(lr_normal_p_value(1.959963984540054), 0.05, 1e-12), "p-value of z = 1.96 is 0.05");
	TAP_OK(lr_normal_p_value(0) == 1, "p-value of z = 0 is 1");
	TAP_OK(tap_close(lr_normal_p_value(-3), lr_normal_p_value(3), 0), "p-value is two-sided");
}

static void
test_closed_form(void)
{
	/* x = 0: 3 positives, 7 negatives; x = 1: 6 positives, 4 negatives */
	double		x[20];
	unsigned char y[20];
	double		beta[2],
				se[2],
				cond;
	lr_fit_info info;
	lr_status	st;
	int			i;

	for (i = 0; i < 20; i++)
	{
		x[i] = i < 10 ? 0 : 1;
		y[i] = i < 10 ? (i < 3) : (i < 16);
	}
	st = lr_fit(x, y, 20, 1, 0, beta, &info);
	TAP_OK(st == LR_OK, "binary feature: converges (%s, %d iterations)",
		   lr_status_message(st), info.iterations);
	TAP_OK(tap_close(beta[0], log(3.0 / 7.0), 1e-12), "binary feature: intercept = log(3/7) (%.15g)", beta[0]);
	TAP_OK(tap_close(beta[1], log(6.0 / 4.0) - log(3.0 / 7.0), 1e-12),
		   "binary feature: slope = log(6/4) - log(3/7) (%.15g)", beta[1]);
	TAP_OK(info.max_step <= LR_TOLERANCE, "last step below tolerance (%g)", info.max_step);
	TAP_OK(tap_close(info.log_likelihood,
					 3 * log(0.3) + 7 * log(0.7) + 6 * log(0.6) + 4 * log(0.4), 1e-12),
		   "log-likelihood at the MLE");
	st = lr_std_errors(x, 20, 1, 0, beta, se, &cond);
	TAP_OK(st == LR_OK, "standard errors computed");
	TAP_OK(tap_close(se[0], sqrt(1.0 / 3 + 1.0 / 7), 1e-10), "se(intercept) = sqrt(1/3 + 1/7)");
	TAP_OK(tap_close(se[1], sqrt(1.0 / 3 + 1.0 / 7 + 1.0 / 6 + 1.0 / 4), 1e-10),
		   "se(slope) = sqrt(1/3 + 1/7 + 1/6 + 1/4)");
	TAP_OK(cond >= 1 && isfinite(cond), "condition estimate finite (%g)", cond);

	/* intercept only */
	st = lr_fit(NULL, y, 20, 0, 0, beta, &info);
	TAP_OK(st == LR_OK && tap_close(beta[0], log(9.0 / 11.0), 1e-14),
		   "no features: intercept = log(9/11)");
}

static void
test_random_optimality(void)
{
	enum
	{
		N = 500, P = 4
	};
	static double x[N * P],
				xs[N * P];
	static unsigned char y[N];
	double		truth[P + 1] = {-0.5, 1.0, -2.0, 0.5, 0.0};
	double		beta[P + 1],
				beta_s[P + 1],
				beta_r[P + 1];
	double		l2s[] = {0, 0.1, 1, 10, 1e6};
	lr_fit_info info;
	lr_status	st;
	size_t		li;
	int			i,
				j;

	make_data(x, y, N, P, truth);
	for (li = 0; li < sizeof(l2s) / sizeof(l2s[0]); li++)
	{
		st = lr_fit(x, y, N, P, l2s[li], beta, &info);
		TAP_OK(st == LR_OK, "random data, l2 = %g: converges in %d iterations", l2s[li], info.iterations);
		TAP_OK(max_abs_gradient(x, y, N, P, l2s[li], beta) < 1e-9,
			   "random data, l2 = %g: gradient vanishes (%.3g)", l2s[li],
			   max_abs_gradient(x, y, N, P, l2s[li], beta));
	}
	/* close to the generating model (loose: sampling noise) */
	lr_fit(x, y, N, P, 0, beta, &info);
	TAP_OK(fabs(beta[2] - truth[2]) < 0.6, "recovers the generating slope roughly (%g)", beta[2]);

	/* scaling a feature by 1e6 scales its coefficient by 1e-6 (l2 = 0) */
	for (i = 0; i < N * P; i++)
		xs[i] = x[i] * ((i % P == 1) ? 1e6 : 1);
	st = lr_fit(xs, y, N, P, 0, beta_s, &info);
	TAP_OK(st == LR_OK && tap_close(beta_s[2] * 1e6, beta[2], 1e-8) &&
		   tap_close(beta_s[0], beta[0], 1e-8),
		   "scaled feature: coefficient scales inversely");

	/* Newton-step driver: two partial accumulators combined */
	{
		double	   *acc = malloc(sizeof(double) * lr_step_size(P + 1));
		double	   *acc2 = malloc(sizeof(double) * lr_step_size(P + 1));
		double		cur[P + 1] = {0},
					step = 1,
					obj;
		int			it;

		for (it = 0; it < 50 && step > LR_TOLERANCE; it++)
		{
			lr_step_init(acc, P + 1);
			lr_step_init(acc2, P + 1);
			for (i = 0; i < N; i++)
				lr_step_add(i % 2 ? acc : acc2, cur, x + i * P, P, y[i]);
			lr_step_combine(acc, acc2, P + 1);
			st = lr_step_solve(acc, cur, P, 1.0, beta_r, &step, &obj);
			if (st != LR_OK)
				break;
			memcpy(cur, beta_r, sizeof(cur));
		}
		lr_fit(x, y, N, P, 1.0, beta, &info);
		for (j = 0, obj = 0; j <= P; j++)
			obj = fmax(obj, fabs(cur[j] - beta[j]));
		TAP_OK(st == LR_OK && obj < 1e-12, "step driver equals in-memory fit after %d steps (max diff %.3g)", it, obj);
		free(acc);
		free(acc2);
	}
}

static void
test_edge_cases(void)
{
	double		x[40],
				beta[4];
	unsigned char y[40];
	lr_fit_info info;
	lr_status	st;
	int			i;

	/* perfect separation */
	for (i = 0; i < 10; i++)
	{
		x[i] = i;
		y[i] = i >= 5;
	}
	st = lr_fit(x, y, 10, 1, 0, beta, &info);
	TAP_OK(st == LR_SEPARATED, "separated classes without l2: %s", lr_status_message(st));
	st = lr_fit(x, y, 10, 1, 1.0, beta, &info);
	TAP_OK(st == LR_OK && beta[1] > 0 && isfinite(beta[1]), "separated classes with l2 = 1 converge (slope %g)", beta[1]);

	/* quasi-complete separation: ties at x = 0 */
	for (i = 0; i < 10; i++)
	{
		x[i] = (i < 4) ? -1 - i : (i < 6) ? 0 : 1 + i;
		y[i] = (i < 4) ? 0 : (i < 6) ? (i == 5) : 1;
	}
	st = lr_fit(x, y, 10, 1, 0, beta, &info);
	TAP_OK(st == LR_NOT_CONVERGED || st == LR_SEPARATED, "quasi-separation is not reported as converged: %s",
		   lr_status_message(st));

	/* one class, too few rows, bad l2, no rows */
	for (i = 0; i < 10; i++)
		y[i] = 1;
	TAP_OK(lr_fit(x, y, 10, 1, 0, beta, &info) == LR_ONE_CLASS, "all labels equal");
	TAP_OK(lr_fit(x, y, 10, 1, 5, beta, &info) == LR_ONE_CLASS, "all labels equal with l2");
	y[0] = 0;
	TAP_OK(lr_fit(x, y, 3, 2, 0, beta, &info) == LR_TOO_FEW_ROWS, "3 rows, 2 features, l2 = 0: too few rows");
	TAP_OK(lr_fit(x, y, 10, 1, -1, beta, &info) == LR_BAD_ARGUMENT, "negative l2");
	TAP_OK(lr_fit(x, y, 10, 1, NAN, beta, &info) == LR_BAD_ARGUMENT, "NaN l2");
	TAP_OK(lr_fit(x, y, 10, 1, INFINITY, beta, &info) == LR_BAD_ARGUMENT, "infinite l2");
	TAP_OK(lr_fit(x, y, 0, 1, 0, beta, &info) == LR_EMPTY, "no rows");

	/* huge l2: slopes vanish, intercept is the base rate */
	for (i = 0; i < 20; i++)
	{
		x[i] = i;
		y[i] = (i % 3) == 0;
	}
	st = lr_fit(x, y, 20, 1, 1e300, beta, &info);
	TAP_OK(st == LR_OK && fabs(beta[1]) < 1e-290 && tap_close(beta[0], log(7.0 / 13.0), 1e-12),
		   "l2 = 1e300: slope 0, intercept log(7/13)");

	/* collinear copy with l2 = 0: same predictions as the single feature */
	{
		double		x2[40],
					b1[2];

		for (i = 0; i < 20; i++)
		{
			x[i] = (i * 7) % 11;
			y[i] = ((i * 5) % 3) == 0 || i == 4;
			x2[2 * i] = x[i];
			x2[2 * i + 1] = 2 * x[i];
		}
		st = lr_fit(x, y, 20, 1, 0, b1, &info);
		TAP_OK(st == LR_OK, "single feature fit");
		st = lr_fit(x2, y, 20, 2, 0, beta, &info);
		TAP_OK(st == LR_OK && info.jittered > 0, "collinear copy converges through the ridge fallback (%s)",
			   lr_status_message(st));
		TAP_OK(tap_close(beta[1] + 2 * beta[2], b1[1], 1e-7) && tap_close(beta[0], b1[0], 1e-7),
			   "collinear copy: same linear predictor");
		TAP_OK(lr_std_errors(x2, 20, 2, 0, beta, beta + 0, NULL) == LR_SINGULAR,
			   "collinear copy: standard errors refused as singular");
	}

	/* overflowing features */
	for (i = 0; i < 20; i++)
	{
		x[i] = (i % 2 ? 1e200 : -1e200) * (i % 5 + 1);
		y[i] = (i % 3) == 0;
	}
	st = lr_fit(x, y, 20, 1, 0, beta, &info);
	TAP_OK(st == LR_NONFINITE, "features near 1e200 overflow the Hessian: %s", lr_status_message(st));

	/* Newton step with nothing accumulated */
	{
		double		acc[LR_STEP_HEADER + 2 + 4] = {0},
					b[2] = {0},
					nb[2],
					s;

		TAP_OK(lr_step_solve(acc, b, 1, 0, nb, &s, NULL) == LR_EMPTY, "step solve on empty accumulator");
	}
}

int
main(void)
{
	tap_seed(UINT64_C(88172645463325252));
	test_helpers();
	test_closed_form();
	test_random_optimality();
	test_edge_cases();
	return tap_done();
}
