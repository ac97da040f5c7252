/*
 * test_percentile.c
 *		Unit tests of src/core/percentile.c: PostgreSQL's interval order,
 *		percentile_cont's rows and proportions, and selection against a full
 *		sort on seeded random, sorted, reversed and constant inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "percentile.h"
#include "tap.h"

#define DAY INT64_C(86400000000)

static LmSpan
span(int32_t month, int32_t day, int64_t time)
{
	LmSpan		s = {time, day, month};

	return s;
}

static int
cmp_qsort(const void *a, const void *b)
{
	return lm_span_cmp(a, b);
}

/* fill v with n values of the given shape: 0 random, 1 sorted, 2 reversed, 3 constant, 4 few distinct */
static void
fill(LmSpan *v, size_t n, int shape)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		switch (shape)
		{
			case 0:
				v[i] = span((int32_t) (tap_random() % 5), (int32_t) (tap_random() % 40) - 5,
							(int64_t) (tap_random() % (uint64_t) (3 * DAY)) - DAY);
				break;
			case 1:
				v[i] = span(0, 0, (int64_t) i);
				break;
			case 2:
				v[i] = span(0, (int32_t) (n - i), 0);
				break;
			case 3:
				v[i] = span(0, 1, 0);
				break;
			default:
				v[i] = span(0, 0, (int64_t) (tap_random() % 3) * DAY);
				break;
		}
	}
}

static void
test_order(void)
{
	LmSpan		a = span(1, 0, 0),
				b = span(0, 30, 0),
				c = span(0, 1, 0),
				d = span(0, 0, DAY),
				e = span(0, 0, DAY + 1),
				f = span(-1, 29, DAY);

	tap_ok(lm_span_cmp(&a, &b) == 0, "a month is 30 days");
	tap_ok(lm_span_cmp(&c, &d) == 0, "a day is 24 hours");
	tap_ok(lm_span_cmp(&d, &e) < 0 && lm_span_cmp(&e, &d) > 0, "one microsecond longer");
	{
		LmSpan		zero = span(0, 0, 0);

		tap_ok(lm_span_cmp(&f, &zero) == 0, "-1 month +29 days +24h is zero");
	}
	{
		LmSpan		big = span(INT32_MAX, INT32_MAX, INT64_MAX),
					small = span(INT32_MIN, INT32_MIN, INT64_MIN);

		tap_ok(lm_span_cmp(&small, &big) < 0, "extreme intervals compare without overflow");
	}
}

static void
test_rows(void)
{
	size_t		lo,
				hi;
	double		p;

	lm_percentile_rows(0.5, 4, &lo, &hi, &p);
	TAP_OK(lo == 1 && hi == 2 && p == 0.5, "median of 4: rows 1 and 2 halfway (%zu %zu %g)", lo, hi, p);
	lm_percentile_rows(0.5, 5, &lo, &hi, &p);
	TAP_OK(lo == 2 && hi == 2 && p == 0.0, "median of 5: row 2 (%zu %zu %g)", lo, hi, p);
	lm_percentile_rows(0.9, 11, &lo, &hi, &p);
	TAP_OK(lo == 9 && hi == 9, "p90 of 11: row 9 (%zu %zu %g)", lo, hi, p);
	lm_percentile_rows(0.9, 10, &lo, &hi, &p);
	TAP_OK(lo == 8 && hi == 9 && tap_close(p, 0.1, 1e-12), "p90 of 10: rows 8 and 9 at 0.1 (%zu %zu %g)", lo, hi, p);
	lm_percentile_rows(1.0, 7, &lo, &hi, &p);
	TAP_OK(lo == 6 && hi == 6, "fraction 1: the last row");
	lm_percentile_rows(0.0, 7, &lo, &hi, &p);
	TAP_OK(lo == 0 && hi == 0, "fraction 0: the first row");
	lm_percentile_rows(0.3, 1, &lo, &hi, &p);
	TAP_OK(lo == 0 && hi == 0 && p == 0.0, "one value: row 0");
}

static void
test_against_sort(void)
{
	static const size_t sizes[] = {1, 2, 3, 7, 64, 1000, 4099};
	static const double fractions[] = {0.0, 0.1, 0.5, 0.9, 0.999, 1.0};
	int			bad = 0,
				cases = 0;
	size_t		s;
	int			shape;

	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
		for (shape = 0; shape < 5; shape++)
		{
			size_t		n = sizes[s],
						f;
			LmSpan	   *v = malloc(n * sizeof(LmSpan));
			LmSpan	   *sorted = malloc(n * sizeof(LmSpan));

			fill(v, n, shape);
			memcpy(sorted, v, n * sizeof(LmSpan));
			qsort(sorted, n, sizeof(LmSpan), cmp_qsort);
			for (f = 0; f < sizeof(fractions) / sizeof(fractions[0]); f++)
			{
				LmSpan		low,
							high;
				size_t		lo,
							hi;
				double		p,
							q;

				lm_percentile_rows(fractions[f], n, &lo, &hi, &q);
				lm_span_percentile_rows(v, n, fractions[f], &low, &high, &p);
				cases++;
				if (lm_span_cmp(&low, &sorted[lo]) != 0 || lm_span_cmp(&high, &sorted[hi]) != 0 || p != q)
					bad++;
			}
			/* selection only rearranges: the multiset is unchanged */
			qsort(v, n, sizeof(LmSpan), cmp_qsort);
			for (f = 0; f < n; f++)
				if (lm_span_cmp(&v[f], &sorted[f]) != 0)
				{
					bad++;
					break;
				}
			free(v);
			free(sorted);
		}
	TAP_OK(bad == 0, "selection equals a full sort in %d cases (%d wrong)", cases, bad);
}

int
main(void)
{
	tap_seed(UINT64_C(0x9E3779B97F4A7C15));
	test_order();
	test_rows();
	test_against_sort();
	printf("1..%d\n", tap_count);
	return tap_failed != 0;
}
