/*
 * logreg.c
 *		L2-regularised logistic regression by damped Newton (IRLS), pure C.
 *
 * See logreg.h for the objective.  Numerical care taken here:
 *
 *  - log(1 + exp(eta)) and the sigmoid are evaluated in the branch that
 *    cannot overflow (lr_log1pexp, lr_sigmoid), so eta = +-1000 is fine;
 *  - the Newton system H d = g is solved by Cholesky; a pivot that loses
 *    more than 13 of its 16 digits to cancellation (or is not positive)
 *    counts as singular, and the solve is retried with a ridge
 *    delta * I added, delta starting at 1e-10 of the largest diagonal entry
 *    and growing 100-fold per retry (Levenberg-style fallback for collinear
 *    or constant features with l2 = 0; the minimum is then not unique and
 *    the solver returns one of them);
 *  - every step is damped by halving until the objective does not increase
 *    (Newton on a convex objective with backtracking converges globally);
 *  - convergence: largest |step_j| / max(1, |b_j|) below LR_TOLERANCE, or
 *    three steps in a row that no longer change the objective in floating
 *    point while the steps are below 1e-5 (the numerical optimum of an
 *    ill-conditioned problem; coefficients running off to infinity under
 *    quasi-separation take larger steps and end in LR_NOT_CONVERGED);
 *  - with l2 = 0, an iterate that classifies every row strictly correctly
 *    proves that the classes are separable, so no finite maximum-likelihood
 *    estimate exists: LR_SEPARATED instead of coefficients running off to
 *    infinity.  Quasi-complete separation (ties on the boundary) shows as
 *    LR_NOT_CONVERGED.
 *
 * Memory: O(k^2) besides the caller's data; time O(n k^2) per iteration.
 */
#include "logreg.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a Cholesky pivot below this fraction of its diagonal entry is singular */
#define LR_PIVOT_RELATIVE	1e-13
/* ridge fallback: first delta relative to the largest diagonal, growth, tries */
#define LR_JITTER_START		1e-10
#define LR_JITTER_GROWTH	100.0
#define LR_JITTER_TRIES		12
/* step halvings before giving up on a direction */
#define LR_MAX_HALVINGS		60
/* steps without a change of the objective that count as converged */
#define LR_STALL_LIMIT		3
/* ... provided the steps are small (diverging coefficients are not) */
#define LR_STALL_STEP		1e-5

void	   *(*lr_alloc_hook) (size_t size) = NULL;
void		(*lr_free_hook) (void *ptr) = NULL;
void		(*lr_check_hook) (void) = NULL;

static void *
lr_alloc(size_t size)
{
	return lr_alloc_hook ? lr_alloc_hook(size) : malloc(size);
}

static void
lr_free(void *ptr)
{
	if (lr_free_hook)
		lr_free_hook(ptr);
	else
		free(ptr);
}

#define LR_CHECK_EVERY(i) \
	do { \
		if (lr_check_hook != NULL && ((i) & 0xFFFF) == 0xFFFF) \
			lr_check_hook(); \
	} while (0)

const char *
lr_status_message(lr_status status)
{
	switch (status)
	{
		case LR_OK:
			return "ok";
		case LR_EMPTY:
			return "no rows";
		case LR_ONE_CLASS:
			return "all labels are equal";
		case LR_TOO_FEW_ROWS:
			return "too few rows for the number of features";
		case LR_SEPARATED:
			return "the classes are perfectly separated";
		case LR_NOT_CONVERGED:
			return "did not converge";
		case LR_NONFINITE:
			return "numeric overflow";
		case LR_SINGULAR:
			return "the Hessian is singular";
		case LR_BAD_ARGUMENT:
			return "invalid argument";
	}
	return "unknown status";
}

double
lr_log1pexp(double x)
{
	if (x > 0)
		return x + log1p(exp(-x));
	return log1p(exp(x));
}

double
lr_sigmoid(double x)
{
	if (x >= 0)
		return 1.0 / (1.0 + exp(-x));
	else
	{
		double		e = exp(x);

		return e / (1.0 + e);
	}
}

double
lr_linear(const double *beta, const double *x, int p)
{
	double		eta = beta[0];
	int			j;

	for (j = 0; j < p; j++)
		eta += beta[j + 1] * x[j];
	return eta;
}

double
lr_normal_p_value(double z)
{
	if (isnan(z))
		return z;
	return erfc(fabs(z) / sqrt(2.0));
}

/*
 * In-place Cholesky of the k x k matrix a (upper triangle read, lower
 * triangle written: a = L L').  Returns 0 on success, -1 when a pivot is not
 * positive or lost more than 13 digits, -2 on a non-finite entry.
 * minpiv/maxpiv (out, may be NULL): smallest and largest L_jj.
 */
static int
cholesky(double *a, int k, double *minpiv, double *maxpiv)
{
	int			i,
				j,
				m;
	double		lo = HUGE_VAL,
				hi = 0;

	for (j = 0; j < k; j++)
	{
		double		orig = a[j * k + j];
		double		d = orig;

		if (!isfinite(orig))
			return -2;
		for (m = 0; m < j; m++)
			d -= a[j * k + m] * a[j * k + m];
		if (!(d > 0) || d <= LR_PIVOT_RELATIVE * orig)
			return -1;
		d = sqrt(d);
		a[j * k + j] = d;
		if (d < lo)
			lo = d;
		if (d > hi)
			hi = d;
		for (i = j + 1; i < k; i++)
		{
			/* a[j][i] (upper) holds H[j][i]; write L[i][j] to a[i][j] */
			double		s = a[j * k + i];

			if (!isfinite(s))
				return -2;
			for (m = 0; m < j; m++)
				s -= a[i * k + m] * a[j * k + m];
			a[i * k + j] = s / d;
		}
	}
	if (minpiv)
		*minpiv = lo;
	if (maxpiv)
		*maxpiv = hi;
	return 0;
}

/* solve L L' x = b in place, L in the lower triangle of a */
static void
cholesky_solve(const double *a, int k, double *b)
{
	int			i,
				m;

	for (i = 0; i < k; i++)
	{
		double		s = b[i];

		for (m = 0; m < i; m++)
			s -= a[i * k + m] * b[m];
		b[i] = s / a[i * k + i];
	}
	for (i = k - 1; i >= 0; i--)
	{
		double		s = b[i];

		for (m = i + 1; m < k; m++)
			s -= a[m * k + i] * b[m];
		b[i] = s / a[i * k + i];
	}
}

/*
 * Solve h d = g (h symmetric, upper triangle used) with the ridge fallback.
 * work: k*k scratch.  Returns LR_OK or LR_NONFINITE; *jittered set when the
 * fallback was needed.
 */
static lr_status
newton_solve(const double *h, const double *g, int k, double *d, double *work,
			 int *jittered)
{
	double		maxdiag = 0;
	double		delta = 0;
	int			tries,
				j;

	for (j = 0; j < k; j++)
	{
		if (!isfinite(h[j * k + j]) || !isfinite(g[j]))
			return LR_NONFINITE;
		if (fabs(h[j * k + j]) > maxdiag)
			maxdiag = fabs(h[j * k + j]);
	}
	if (maxdiag == 0)
		maxdiag = 1;

	for (tries = 0; tries <= LR_JITTER_TRIES; tries++)
	{
		int			rc;

		memcpy(work, h, sizeof(double) * k * k);
		if (tries > 0)
		{
			delta = (tries == 1) ? LR_JITTER_START * maxdiag : delta * LR_JITTER_GROWTH;
			for (j = 0; j < k; j++)
				work[j * k + j] += delta;
		}
		rc = cholesky(work, k, NULL, NULL);
		if (rc == -2)
			return LR_NONFINITE;
		if (rc == 0)
		{
			memcpy(d, g, sizeof(double) * k);
			cholesky_solve(work, k, d);
			for (j = 0; j < k; j++)
				if (!isfinite(d[j]))
					return LR_NONFINITE;
			if (tries > 0)
				*jittered = 1;
			return LR_OK;
		}
	}
	return LR_NONFINITE;
}

/*
 * Penalised objective at beta; *separates set when every row is classified
 * strictly correctly.  Returns +inf when eta overflows.
 */
static double
objective(const double *x, const unsigned char *y, size_t n, int p, double l2,
		  const double *beta, int *separates, double *loglik)
{
	double		f = 0;
	int			all_correct = 1;
	size_t		i;
	int			j;

	for (i = 0; i < n; i++)
	{
		double		eta = lr_linear(beta, x + i * (size_t) p, p);

		LR_CHECK_EVERY(i);
		if (!isfinite(eta))
			return HUGE_VAL;
		if (y[i] ? !(eta > 0) : !(eta < 0))
			all_correct = 0;
		f += lr_log1pexp(eta) - (y[i] ? eta : 0);
	}
	if (loglik)
		*loglik = -f;
	for (j = 1; j <= p; j++)
		f += 0.5 * l2 * beta[j] * beta[j];
	if (separates)
		*separates = all_correct;
	return isfinite(f) ? f : HUGE_VAL;
}

/* gradient and Hessian (upper triangle) of the penalised objective */
static void
derivatives(const double *x, const unsigned char *y, size_t n, int p, double l2,
			const double *beta, double *g, double *h, double *z)
{
	int			k = p + 1;
	size_t		i;
	int			a,
				b;

	memset(g, 0, sizeof(double) * k);
	memset(h, 0, sizeof(double) * k * k);
	z[0] = 1.0;
	for (i = 0; i < n; i++)
	{
		const double *xi = x + i * (size_t) p;
		double		mu = lr_sigmoid(lr_linear(beta, xi, p));
		double		w = mu * (1.0 - mu);
		double		r = mu - (y[i] ? 1.0 : 0.0);

		LR_CHECK_EVERY(i);
		if (p > 0)
			memcpy(z + 1, xi, sizeof(double) * p);
		for (a = 0; a < k; a++)
		{
			double		wa = w * z[a];
			double	   *row = h + a * k;

			g[a] += r * z[a];
			for (b = a; b < k; b++)
				row[b] += wa * z[b];
		}
	}
	for (a = 1; a < k; a++)
	{
		g[a] += l2 * beta[a];
		h[a * k + a] += l2;
	}
}

static double
max_relative_step(const double *d, const double *beta, int k)
{
	double		m = 0;
	int			j;

	for (j = 0; j < k; j++)
	{
		double		s = fabs(d[j]) / fmax(1.0, fabs(beta[j]));

		if (s > m)
			m = s;
	}
	return m;
}

lr_status
lr_fit(const double *x, const unsigned char *y, size_t n, int p, double l2,
	   double *beta, lr_fit_info *info)
{
	int			k = p + 1;
	size_t		npos = 0,
				i;
	double	   *mem,
			   *g,
			   *h,
			   *work,
			   *d,
			   *trial,
			   *z;
	double		f,
				loglik = 0;
	int			separates = 0,
				stall = 0,
				iter,
				j;
	lr_status	status = LR_NOT_CONVERGED;
	lr_fit_info dummy;

	if (info == NULL)
		info = &dummy;
	memset(info, 0, sizeof(*info));
	if (p < 0 || !(l2 >= 0) || !isfinite(l2))
		return LR_BAD_ARGUMENT;
	if (n == 0)
		return LR_EMPTY;
	for (i = 0; i < n; i++)
		npos += y[i] ? 1 : 0;
	if (npos == 0 || npos == n)
		return LR_ONE_CLASS;
	if (l2 == 0 && n < (size_t) p + 2)
		return LR_TOO_FEW_ROWS;

	mem = lr_alloc(sizeof(double) * ((size_t) 2 * k * k + 4 * (size_t) k));
	if (mem == NULL)
		return LR_NONFINITE;
	h = mem;
	work = h + k * k;
	g = work + k * k;
	d = g + k;
	trial = d + k;
	z = trial + k;

	/* start from the intercept-only maximum-likelihood fit */
	for (j = 0; j < k; j++)
		beta[j] = 0;
	beta[0] = log((double) npos / (double) (n - npos));
	f = objective(x, y, n, p, l2, beta, NULL, &loglik);
	if (!isfinite(f))
	{
		status = LR_NONFINITE;
		goto done;
	}

	for (iter = 1; iter <= LR_MAX_ITERATIONS; iter++)
	{
		double		t = 1.0,
					fnew = HUGE_VAL,
					lnew = 0,
					decrement = 0;
		int			halvings,
					accepted = 0;

		derivatives(x, y, n, p, l2, beta, g, h, z);
		status = newton_solve(h, g, k, d, work, &info->jittered);
		if (status != LR_OK)
			goto done;
		status = LR_NOT_CONVERGED;
		for (j = 0; j < k; j++)
			decrement += g[j] * d[j];

		for (halvings = 0; halvings <= LR_MAX_HALVINGS; halvings++)
		{
			for (j = 0; j < k; j++)
				trial[j] = beta[j] - t * d[j];
			fnew = objective(x, y, n, p, l2, trial, &separates, &lnew);
			/* accept no increase beyond rounding noise of the sum */
			if (fnew <= f + 4 * DBL_EPSILON * (fabs(f) + (double) n))
			{
				accepted = 1;
				break;
			}
			t *= 0.5;
		}
		info->iterations = iter;
		if (!accepted)
		{
			/* no step direction decreases f: at the numerical optimum? */
			if (decrement <= 1e-12 * (1.0 + fabs(f)))
				status = LR_OK;
			goto done;
		}
		for (j = 0; j < k; j++)
			d[j] *= t;
		info->max_step = max_relative_step(d, beta, k);
		stall = (fnew >= f) ? stall + 1 : 0;
		memcpy(beta, trial, sizeof(double) * k);
		f = fnew;
		loglik = lnew;
		if (l2 == 0 && separates)
		{
			status = LR_SEPARATED;
			goto done;
		}
		if (info->max_step <= LR_TOLERANCE ||
			(stall >= LR_STALL_LIMIT && info->max_step <= LR_STALL_STEP))
		{
			status = LR_OK;
			break;
		}
	}

done:
	info->objective = f;
	info->log_likelihood = loglik;
	lr_free(mem);
	return status;
}

/*
 * Standard errors from a Hessian: L L' = H, then (H^-1)_jj is the squared
 * norm of column j of L^-1.
 */
lr_status
lr_std_errors_from_hessian(const double *hessian, int k, double *se, double *cond)
{
	double	   *a,
			   *col;
	double		lo = 0,
				hi = 0;
	int			i,
				j,
				m,
				rc;

	if (k <= 0)
		return LR_BAD_ARGUMENT;
	a = lr_alloc(sizeof(double) * ((size_t) k * k + k));
	if (a == NULL)
		return LR_NONFINITE;
	col = a + k * k;
	memcpy(a, hessian, sizeof(double) * k * k);
	rc = cholesky(a, k, &lo, &hi);
	if (rc != 0)
	{
		lr_free(a);
		return rc == -2 ? LR_NONFINITE : LR_SINGULAR;
	}
	for (j = 0; j < k; j++)
	{
		double		ss = 0;

		/* column j of L^-1: forward substitution of e_j */
		for (i = 0; i < k; i++)
		{
			double		s = (i == j) ? 1.0 : 0.0;

			if (i < j)
			{
				col[i] = 0;
				continue;
			}
			for (m = j; m < i; m++)
				s -= a[i * k + m] * col[m];
			col[i] = s / a[i * k + i];
			ss += col[i] * col[i];
		}
		se[j] = sqrt(ss);
	}
	if (cond)
		*cond = (hi / lo) * (hi / lo);
	lr_free(a);
	return LR_OK;
}

lr_status
lr_std_errors(const double *x, size_t n, int p, double l2,
			  const double *beta, double *se, double *cond)
{
	int			k = p + 1;
	double	   *h,
			   *z;
	size_t		i;
	int			a,
				b;
	lr_status	status;

	if (p < 0 || !(l2 >= 0) || !isfinite(l2))
		return LR_BAD_ARGUMENT;
	h = lr_alloc(sizeof(double) * ((size_t) k * k + (size_t) k));
	if (h == NULL)
		return LR_NONFINITE;
	z = h + k * k;
	/* X'WX + l2 I (j >= 1): the Hessian does not depend on the labels */
	memset(h, 0, sizeof(double) * k * k);
	z[0] = 1.0;
	for (i = 0; i < n; i++)
	{
		const double *xi = x + i * (size_t) p;
		double		mu = lr_sigmoid(lr_linear(beta, xi, p));
		double		w = mu * (1.0 - mu);

		LR_CHECK_EVERY(i);
		if (p > 0)
			memcpy(z + 1, xi, sizeof(double) * p);
		for (a = 0; a < k; a++)
		{
			double		wa = w * z[a];

			for (b = a; b < k; b++)
				h[a * k + b] += wa * z[b];
		}
	}
	for (a = 1; a < k; a++)
		h[a * k + a] += l2;
	status = lr_std_errors_from_hessian(h, k, se, cond);
	lr_free(h);
	return status;
}

size_t
lr_step_size(int k)
{
	return LR_STEP_HEADER + (size_t) k + (size_t) k * k;
}

void
lr_step_init(double *acc, int k)
{
	memset(acc, 0, sizeof(double) * lr_step_size(k));
}

void
lr_step_add(double *acc, const double *beta, const double *x, int p, int label)
{
	int			k = p + 1;
	double	   *g = acc + LR_STEP_HEADER;
	double	   *h = g + k;
	double		eta = lr_linear(beta, x, p);
	double		mu = lr_sigmoid(eta);
	double		w = mu * (1.0 - mu);
	double		r = mu - (label ? 1.0 : 0.0);
	int			a,
				b;

	acc[0] += 1;
	acc[1] += label ? 1 : 0;
	acc[2] += lr_log1pexp(eta) - (label ? eta : 0);
	acc[3] += (label ? eta > 0 : eta < 0) ? 0 : 1;
	for (a = 0; a < k; a++)
	{
		double		za = (a == 0) ? 1.0 : x[a - 1];
		double		wa = w * za;

		g[a] += r * za;
		for (b = a; b < k; b++)
			h[a * k + b] += wa * ((b == 0) ? 1.0 : x[b - 1]);
	}
}

void
lr_step_combine(double *acc, const double *other, int k)
{
	size_t		m = lr_step_size(k),
				i;

	for (i = 0; i < m; i++)
		acc[i] += other[i];
}

lr_status
lr_step_solve(const double *acc, const double *beta, int p, double l2,
			  double *next_beta, double *max_step, double *objective_out)
{
	int			k = p + 1;
	const double *g0 = acc + LR_STEP_HEADER;
	const double *h0 = g0 + k;
	double	   *mem,
			   *h,
			   *g,
			   *d,
			   *work;
	double		f = acc[2];
	int			jittered = 0,
				j;
	lr_status	status;

	if (p < 0 || !(l2 >= 0) || !isfinite(l2))
		return LR_BAD_ARGUMENT;
	if (acc[0] <= 0)
		return LR_EMPTY;
	if (acc[1] <= 0 || acc[1] >= acc[0])
		return LR_ONE_CLASS;
	if (l2 == 0 && acc[0] < (double) p + 2)
		return LR_TOO_FEW_ROWS;
	if (l2 == 0 && acc[3] == 0)
		return LR_SEPARATED;
	mem = lr_alloc(sizeof(double) * ((size_t) 2 * k * k + 2 * (size_t) k));
	if (mem == NULL)
		return LR_NONFINITE;
	h = mem;
	work = h + k * k;
	g = work + k * k;
	d = g + k;
	memcpy(h, h0, sizeof(double) * k * k);
	memcpy(g, g0, sizeof(double) * k);
	for (j = 1; j < k; j++)
	{
		g[j] += l2 * beta[j];
		h[j * k + j] += l2;
		f += 0.5 * l2 * beta[j] * beta[j];
	}
	status = newton_solve(h, g, k, d, work, &jittered);
	if (status == LR_OK)
	{
		for (j = 0; j < k; j++)
			next_beta[j] = beta[j] - d[j];
		if (max_step)
			*max_step = max_relative_step(d, beta, k);
	}
	if (objective_out)
		*objective_out = f;
	lr_free(mem);
	return status;
}
