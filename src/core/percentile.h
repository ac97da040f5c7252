/*
 * percentile.h
 *		Exact percentiles of interval values by selection, pure C.
 *
 * PostgreSQL's percentile_cont sorts every group (O(n log n), and as an
 * ordered-set aggregate it forces a sorted GROUP BY).  An order statistic
 * needs no sort: introselect finds the k-th smallest in O(n) expected time,
 * falling back to a sort when partitioning degrades, so O(n log n) worst case.
 *
 * Values are PostgreSQL intervals taken apart (microseconds, days, months)
 * and ordered as PostgreSQL orders them: by total length with a month as 30
 * days and a day as 24 hours, in 128-bit arithmetic so no value overflows.
 */
#ifndef LM_PERCENTILE_H
#define LM_PERCENTILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct LmSpan
{
	int64_t		time;			/* microseconds */
	int32_t		day;
	int32_t		month;
} LmSpan;

/* <0, 0, >0 as a is shorter than, as long as, longer than b */
extern int	lm_span_cmp(const LmSpan *a, const LmSpan *b);

/*
 * Rearrange v[0..n) so that v[k] holds the value a sort would put there,
 * with nothing longer before it and nothing shorter after it.  k < n.
 */
extern void lm_span_select(LmSpan *v, size_t n, size_t k);

/*
 * Where percentile_cont(fraction) reads among n sorted values (0-based):
 * rows *lo and *hi (hi = lo or lo + 1), interpolated by *proportion, the
 * same arithmetic as PostgreSQL's.  fraction in [0, 1], n > 0.
 */
extern void lm_percentile_rows(double fraction, size_t n,
							   size_t *lo, size_t *hi, double *proportion);

/*
 * percentile_cont's two rows for fraction: after lm_span_select, *low is
 * v[lo] and *high the next value in sorted order (the same when hi = lo).
 * Rearranges v.  n > 0.
 */
extern void lm_span_percentile_rows(LmSpan *v, size_t n, double fraction,
									LmSpan *low, LmSpan *high, double *proportion);

#endif							/* LM_PERCENTILE_H */
