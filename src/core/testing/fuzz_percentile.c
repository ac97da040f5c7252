/*
 * fuzz_percentile.c
 *		Fuzz target: for arbitrary interval values and fractions, selection
 *		finds the same two rows as a full sort and keeps the multiset.
 */
#include "percentile.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
cmp_qsort(const void *a, const void *b)
{
	return lm_span_cmp(a, b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint16_t	raw_fraction;
	double		fraction,
				p,
				q;
	size_t		n,
				i,
				lo,
				hi;
	LmSpan	   *v,
			   *sorted,
				low,
				high;

	if (size < sizeof(raw_fraction) + sizeof(LmSpan))
		return 0;
	memcpy(&raw_fraction, data, sizeof(raw_fraction));
	fraction = raw_fraction / 65535.0;
	data += sizeof(raw_fraction);
	size -= sizeof(raw_fraction);
	n = size / sizeof(LmSpan);
	v = malloc(n * sizeof(LmSpan));
	sorted = malloc(n * sizeof(LmSpan));
	memcpy(v, data, n * sizeof(LmSpan));
	memcpy(sorted, v, n * sizeof(LmSpan));
	qsort(sorted, n, sizeof(LmSpan), cmp_qsort);

	lm_percentile_rows(fraction, n, &lo, &hi, &q);
	lm_span_percentile_rows(v, n, fraction, &low, &high, &p);
	if (lo > hi || hi >= n || hi > lo + 1 || p != q || p < 0 || p >= 1)
		abort();
	if (lm_span_cmp(&low, &sorted[lo]) != 0 || lm_span_cmp(&high, &sorted[hi]) != 0)
		abort();
	qsort(v, n, sizeof(LmSpan), cmp_qsort);
	for (i = 0; i < n; i++)
		if (lm_span_cmp(&v[i], &sorted[i]) != 0)
			abort();
	free(v);
	free(sorted);
	return 0;
}
