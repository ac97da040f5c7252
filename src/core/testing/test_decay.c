/*
 * test_decay.c
 *		Unit tests for src/core/decay.c: exact factors, components folded in
 *		any order, far-apart and infinite times, interval conversion, sums.
 */
#include "decay.h"
#include "tap.h"

#include <stdint.h>

#define DAY INT64_C(86400000000)

static void
test_factors(void)
{
	TAP_OK(lm_decay_factor(0, 30 * DAY, 30 * DAY) == 0.5, "one half-life halves");
	TAP_OK(lm_decay_factor(0, 60 * DAY, 30 * DAY) == 0.25, "two half-lives quarter");
	TAP_OK(lm_decay_factor(10 * DAY, 0, 30 * DAY) == 1.0, "no growth for future points");
	TAP_OK(lm_decay_factor(0, 1000 * DAY, 0) == 1.0, "half-life 0 means no decay");
	TAP_OK(lm_decay_factor(INT64_MIN, INT64_MAX, DAY) == 0.0, "-infinity to +infinity decays to 0");
	TAP_OK(lm_decay_factor(INT64_MIN, 0, 1) == 0.0, "no overflow for far-past points");
	TAP_OK(lm_decay_factor(INT64_MAX, INT64_MAX, DAY) == 1.0, "same instant, even at infinity");
}

static void
test_components(void)
{
	int64_t		hl = 7 * DAY;
	LmComponent forward = {0, INT64_MIN};
	LmComponent backward = {0, INT64_MIN};
	LmComponent left = {0, INT64_MIN};
	LmComponent right = {0, INT64_MIN};
	double		expected;

	lm_component_add(&forward, 10, 0, hl);
	lm_component_add(&forward, 4, 7 * DAY, hl);
	lm_component_add(&forward, -2, 14 * DAY, hl);

	lm_component_add(&backward, -2, 14 * DAY, hl);
	lm_component_add(&backward, 4, 7 * DAY, hl);
	lm_component_add(&backward, 10, 0, hl);

	expected = 10 * 0.25 + 4 * 0.5 - 2;
	TAP_OK(tap_close(forward.value, expected, 1e-12) && forward.ref == 14 * DAY,
		   "in time order: %.15g", forward.value);
	TAP_OK(tap_close(backward.value, expected, 1e-12) && backward.ref == 14 * DAY,
		   "back-filled order gives the same component: %.15g", backward.value);
	TAP_OK(tap_close(lm_component_value_at(&forward, 21 * DAY, hl), expected / 2, 1e-12),
		   "value one half-life after the last point");

	lm_component_add(&left, 10, 0, hl);
	lm_component_add(&right, 4, 7 * DAY, hl);
	lm_component_add(&right, -2, 14 * DAY, hl);
	lm_component_merge(&left, &right, hl);
	TAP_OK(tap_close(left.value, expected, 1e-12) && left.ref == 14 * DAY,
		   "merging partial components equals folding one by one");

	{
		LmComponent none = {0, INT64_MIN};

		lm_component_add(&none, 5, 3 * DAY, 0);
		lm_component_add(&none, 5, 1 * DAY, 0);
		TAP_OK(none.value == 10 && none.ref == 3 * DAY, "no-decay component is a plain sum");
		TAP_OK(lm_component_value_at(&none, INT64_MAX, 0) == 10, "no decay even at infinity");
	}
}

static void
test_intervals(void)
{
	int64_t		r = 0;

	TAP_OK(lm_interval_to_usecs(0, 30, 0, &r) && r == 30 * DAY, "30 days");
	TAP_OK(lm_interval_to_usecs(1, 0, 0, &r) && r == 30 * DAY, "1 month = 30 days, as EXTRACT(EPOCH)");
	TAP_OK(lm_interval_to_usecs(12, 0, 0, &r) && r == INT64_C(31557600000000), "1 year = 365.25 days");
	TAP_OK(lm_interval_to_usecs(0, 0, 1500000, &r) && r == 1500000, "1.5 seconds");
	TAP_OK(lm_interval_to_usecs(-1, 0, 0, &r) && r == -30 * DAY, "negative month");
	TAP_OK(!lm_interval_to_usecs(INT32_MAX, INT32_MAX, INT64_MAX, &r), "overflow is reported");
}

static void
test_sums(void)
{
	LmSum		s = {0, 0};
	LmSum		a = {0, 0};
	LmSum		b = {0, 0};
	int			i;

	lm_sum_add(&s, 1e16);
	for (i = 0; i < 1000; i++)
		lm_sum_add(&s, 1.0);
	lm_sum_add(&s, -1e16);
	TAP_OK(lm_sum_value(&s) == 1000.0, "compensated sum keeps small terms: %.17g", lm_sum_value(&s));

	for (i = 0; i < 100; i++)
		lm_sum_add(i % 2 ? &a : &b, 0.1);
	lm_sum_merge(&a, &b);
	TAP_OK(tap_close(lm_sum_value(&a), 10.0, 1e-14), "merged partial sums");
}

int
main(void)
{
	test_factors();
	test_components();
	test_intervals();
	test_sums();
	return tap_done();
}
