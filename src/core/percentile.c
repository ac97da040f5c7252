/*
 * percentile.c
 *		Order statistics of interval values (see percentile.h).
 *
 * Introselect: Hoare-style partitioning around a median-of-three pivot,
 * narrowing to the side holding k; after 2 log2(n) rounds without enough
 * progress the remaining range is sorted (qsort), bounding the worst case.
 */
#include <math.h>
#include <stdlib.h>

#include "percentile.h"

#define LM_USECS_PER_DAY	INT64_C(86400000000)

static __int128
span_length(const LmSpan *s)
{
	__int128	days = (__int128) s->month * 30 + s->day;

	return days * LM_USECS_PER_DAY + s->time;
}

int
lm_span_cmp(const LmSpan *a, const LmSpan *b)
{
	__int128	x = span_length(a);
	__int128	y = span_length(b);

	return (x > y) - (x < y);
}

static int
span_cmp_qsort(const void *a, const void *b)
{
	return lm_span_cmp((const LmSpan *) a, (const LmSpan *) b);
}

static void
swap_spans(LmSpan *v, size_t i, size_t j)
{
	LmSpan		t = v[i];

	v[i] = v[j];
	v[j] = t;
}

/* order v[lo], v[mid], v[hi] and return mid, the median of the three */
static size_t
median_of_three(LmSpan *v, size_t lo, size_t hi)
{
	size_t		mid = lo + (hi - lo) / 2;

	if (lm_span_cmp(&v[mid], &v[lo]) < 0)
		swap_spans(v, mid, lo);
	if (lm_span_cmp(&v[hi], &v[lo]) < 0)
		swap_spans(v, hi, lo);
	if (lm_span_cmp(&v[hi], &v[mid]) < 0)
		swap_spans(v, hi, mid);
	return mid;
}

static int
rounds_allowed(size_t n)
{
	int			r = 0;

	while (n > 1)
	{
		n >>= 1;
		r++;
	}
	return 2 * r + 4;
}

void
lm_span_select(LmSpan *v, size_t n, size_t k)
{
	size_t		lo = 0,
				hi = n - 1;
	int			rounds = rounds_allowed(n);

	while (hi > lo)
	{
		LmSpan		pivot;
		size_t		i,
					j;

		if (--rounds < 0)
		{
			qsort(v + lo, hi - lo + 1, sizeof(LmSpan), span_cmp_qsort);
			return;
		}
		pivot = v[median_of_three(v, lo, hi)];
		/* Hoare partition: v[lo..j] <= pivot <= v[j+1..hi] */
		i = lo;
		j = hi;
		for (;;)
		{
			while (lm_span_cmp(&v[i], &pivot) < 0)
				i++;
			while (lm_span_cmp(&v[j], &pivot) > 0)
				j--;
			if (i >= j)
				break;
			swap_spans(v, i, j);
			i++;
			j--;
		}
		if (k <= j)
			hi = j;
		else
			lo = j + 1;
	}
}

void
lm_percentile_rows(double fraction, size_t n, size_t *lo, size_t *hi,
				   double *proportion)
{
	double		position = fraction * (double) (n - 1);

	*lo = (size_t) floor(position);
	*hi = (size_t) ceil(position);
	if (*hi >= n)				/* fraction 1 on rounding: stay in range */
		*hi = n - 1;
	if (*lo > *hi)
		*lo = *hi;
	*proportion = *hi > *lo ? position - (double) *lo : 0.0;
}

void
lm_span_percentile_rows(LmSpan *v, size_t n, double fraction,
						LmSpan *low, LmSpan *high, double *proportion)
{
	size_t		lo,
				hi,
				i;

	lm_percentile_rows(fraction, n, &lo, &hi, proportion);
	lm_span_select(v, n, lo);
	*low = v[lo];
	*high = v[lo];
	if (hi > lo)
	{
		/* everything after lo is at least v[lo]: the next row is their minimum */
		*high = v[lo + 1];
		for (i = lo + 2; i < n; i++)
			if (lm_span_cmp(&v[i], high) < 0)
				*high = v[i];
	}
}
