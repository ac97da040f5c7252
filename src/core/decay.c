/*
 * decay.c
 *		Exponential decay of score points and compensated summation.
 *
 * Used by the scoring triggers (one LmComponent per lead and half-life, so
 * score(lead, at) is O(number of distinct half-lives)) and by the
 * decayed_sum aggregate.  See decay.h for the conventions.
 */
#include "decay.h"

#include <math.h>

#define USECS_PER_DAY		INT64_C(86400000000)
#define USECS_PER_YEAR		INT64_C(31557600000000)	/* 365.25 days */
#define USECS_PER_MONTH		INT64_C(2592000000000)	/* 30 days */

double
lm_decay_factor(int64_t ts, int64_t at, int64_t half_life_us)
{
	double		elapsed;

	if (half_life_us <= 0 || at <= ts)
		return 1.0;
	elapsed = (double) at - (double) ts;
	return exp2(-elapsed / (double) half_life_us);
}

void
lm_component_add(LmComponent *c, double points, int64_t ts, int64_t half_life_us)
{
	LmComponent one;

	one.value = points;
	one.ref = ts;
	lm_component_merge(c, &one, half_life_us);
}

void
lm_component_merge(LmComponent *a, const LmComponent *b, int64_t half_life_us)
{
	/* bring the older one forward to the newer reference time */
	if (b->ref > a->ref)
	{
		a->value = a->value * lm_decay_factor(a->ref, b->ref, half_life_us) + b->value;
		a->ref = b->ref;
	}
	else
		a->value += b->value * lm_decay_factor(b->ref, a->ref, half_life_us);
}

double
lm_component_value_at(const LmComponent *c, int64_t at, int64_t half_life_us)
{
	return c->value * lm_decay_factor(c->ref, at, half_life_us);
}

static bool
add_overflows(int64_t a, int64_t b, int64_t *result)
{
	return __builtin_add_overflow(a, b, result);
}

static bool
mul_overflows(int64_t a, int64_t b, int64_t *result)
{
	return __builtin_mul_overflow(a, b, result);
}

bool
lm_interval_to_usecs(int32_t months, int32_t days, int64_t usecs, int64_t *result)
{
	int64_t		years_part;
	int64_t		months_part;
	int64_t		days_part;
	int64_t		total;

	if (mul_overflows(months / 12, USECS_PER_YEAR, &years_part) ||
		mul_overflows(months % 12, USECS_PER_MONTH, &months_part) ||
		mul_overflows(days, USECS_PER_DAY, &days_part) ||
		add_overflows(years_part, months_part, &total) ||
		add_overflows(total, days_part, &total) ||
		add_overflows(total, usecs, &total))
		return false;
	*result = total;
	return true;
}

void
lm_sum_add(LmSum *s, double x)
{
	double		t = s->sum + x;

	if (fabs(s->sum) >= fabs(x))
		s->compensation += (s->sum - t) + x;
	else
		s->compensation += (x - t) + s->sum;
	s->sum = t;
}

void
lm_sum_merge(LmSum *a, const LmSum *b)
{
	lm_sum_add(a, b->sum);
	a->compensation += b->compensation;
}

double
lm_sum_value(const LmSum *s)
{
	return s->sum + s->compensation;
}
