/*
 * auc.c
 *		Exact ROC AUC with ties counted one half (see auc.h).
 *
 * Sort both classes, then walk them together: for each run of equal
 * positive scores, count the negatives strictly below (2 points each) and
 * equal (1 point each); 2U / (2 npos nneg) is the AUC.
 */
#include "auc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

double
lm_auc(double *pos, size_t npos, double *neg, size_t nneg)
{
	size_t		i = 0,
				below = 0;		/* negatives with score < current positive */
	uint64_t	twice_u = 0;

	if (npos == 0 || nneg == 0)
		return NAN;
	qsort(pos, npos, sizeof(double), cmp_double);
	qsort(neg, nneg, sizeof(double), cmp_double);
	while (i < npos)
	{
		double		s = pos[i];
		size_t		run = 0,
					equal = 0;

		while (i + run < npos && pos[i + run] == s)
			run++;
		while (below < nneg && neg[below] < s)
			below++;
		while (below + equal < nneg && neg[below + equal] == s)
			equal++;
		twice_u += (uint64_t) run * (2 * (uint64_t) below + (uint64_t) equal);
		i += run;
	}
	return (double) twice_u / (2.0 * (double) npos * (double) nneg);
}

double
lm_auc_pairs(const double *pos, size_t npos, const double *neg, size_t nneg)
{
	uint64_t	twice_u = 0;
	size_t		i,
				j;

	if (npos == 0 || nneg == 0)
		return NAN;
	for (i = 0; i < npos; i++)
		for (j = 0; j < nneg; j++)
			twice_u += (pos[i] > neg[j]) ? 2 : (pos[i] == neg[j]) ? 1 : 0;
	return (double) twice_u / (2.0 * (double) npos * (double) nneg);
}
