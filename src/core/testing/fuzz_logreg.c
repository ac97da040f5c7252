/*
 * fuzz_logreg.c
 *		Fuzz target for the logistic-regression solver and the AUC.
 *
 * Input: byte 0 picks p (0..4) and l2, then each row is one label byte and
 * p feature bytes mapped to small values, extremes, zeros, infinities or
 * NaN.  Checks: no sanitizer report; LR_OK means finite coefficients; the
 * step accumulator agrees with itself under combine; lm_auc equals the
 * pair count.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auc.h"
#include "logreg.h"

static double
feature(uint8_t b)
{
	switch (b % 16)
	{
		case 0:
			return 0;
		case 1:
			return 1e300;
		case 2:
			return -1e-300;
		case 3:
			return 1e150;
		case 4:
			return (b & 0x80) ? INFINITY : NAN;
		default:
			return ((int) b - 128) / 16.0;
	}
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const double l2s[] = {0, 0, 1e-8, 1, 1e300, -1};
	int			p;
	double		l2;
	size_t		n,
				i,
				npos = 0,
				nneg = 0;
	double	   *x,
			   *pos,
			   *neg;
	unsigned char *y;
	double		beta[5],
				se[5];
	lr_fit_info info;
	lr_status	st;

	if (size < 1)
		return 0;
	p = data[0] % 5;
	l2 = l2s[(data[0] / 5) % 6];
	data++;
	size--;
	n = size / (size_t) (p + 1);
	x = malloc(sizeof(double) * (n * p + 1));
	y = malloc(n + 1);
	pos = malloc(sizeof(double) * (n + 1));
	neg = malloc(sizeof(double) * (n + 1));
	for (i = 0; i < n; i++)
	{
		int			j;

		y[i] = data[i * (p + 1)] & 1;
		for (j = 0; j < p; j++)
			x[i * p + j] = feature(data[i * (p + 1) + 1 + j]);
	}
	st = lr_fit(x, y, n, p, l2, beta, &info);
	if (st == LR_OK)
	{
		int			j;

		for (j = 0; j <= p; j++)
			if (isnan(beta[j]))
				abort();
		(void) lr_std_errors(x, n, p, l2, beta, se, NULL);
	}
	else if (st == LR_BAD_ARGUMENT && l2 >= 0)
		abort();

	/* Newton step accumulator: one pass, then solve */
	{
		double	   *acc = calloc(lr_step_size(p + 1), sizeof(double));
		double		b0[5] = {0},
					nb[5],
					ms;

		for (i = 0; i < n; i++)
			lr_step_add(acc, b0, x + i * p, p, y[i]);
		(void) lr_step_solve(acc, b0, p, l2, nb, &ms, NULL);
		free(acc);
	}

	/* AUC on the first feature (or the label byte) as the score */
	for (i = 0; i < n; i++)
	{
		double		s = p > 0 ? x[i * p] : (double) data[i];

		if (isnan(s))
			continue;
		if (y[i])
			pos[npos++] = s;
		else
			neg[nneg++] = s;
	}
	if (npos > 0 && nneg > 0 && npos * nneg < 20000)
	{
		double		exact = lm_auc_pairs(pos, npos, neg, nneg);

		if (lm_auc(pos, npos, neg, nneg) != exact)
			abort();
	}
	free(x);
	free(y);
	free(pos);
	free(neg);
	return 0;
}
