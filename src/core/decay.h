/*
 * decay.h
 *		Exponential time decay of score points, with no PostgreSQL headers.
 *
 * A point value p earned at time ts is worth p * 2^(-(at - ts) / h) at time
 * at >= ts, for half-life h.  Times are int64 microseconds (PostgreSQL's
 * TimestampTz, whose -infinity/+infinity are INT64_MIN/INT64_MAX) and
 * half-lives int64 microseconds, 0 meaning "no decay".  Differences are
 * taken in double so that far-apart or infinite times cannot overflow;
 * every factor applied is <= 1, so no value grows on the way.
 */
#ifndef LM_DECAY_H
#define LM_DECAY_H

#include <stdbool.h>
#include <stdint.h>

/* the factor 2^(-(at - ts) / half_life); 1 when half_life is 0 or at <= ts */
extern double lm_decay_factor(int64_t ts, int64_t at, int64_t half_life_us);

/*
 * One component of a lead's score: all points of one half-life, folded into
 * a value as of the reference time ref (the latest activity folded in).
 */
typedef struct LmComponent
{
	double		value;
	int64_t		ref;
} LmComponent;

/* fold points earned at ts into c (exact in either time order) */
extern void lm_component_add(LmComponent *c, double points, int64_t ts, int64_t half_life_us);

/* fold component b into a (both of the same half-life) */
extern void lm_component_merge(LmComponent *a, const LmComponent *b, int64_t half_life_us);

/* the component's worth at time at >= c->ref */
extern double lm_component_value_at(const LmComponent *c, int64_t at, int64_t half_life_us);

/*
 * A half-life given as PostgreSQL interval fields, in microseconds with the
 * conventions of EXTRACT(EPOCH FROM interval): a year of months is 365.25
 * days, a remaining month 30 days, a day 24 hours.  Returns false on
 * overflow.
 */
extern bool lm_interval_to_usecs(int32_t months, int32_t days, int64_t usecs, int64_t *result);

/*
 * Neumaier-compensated sum, so that summing a million decayed values does
 * not drift from the exact sum by more than a rounding or two.
 */
typedef struct LmSum
{
	double		sum;
	double		compensation;
} LmSum;

extern void lm_sum_add(LmSum *s, double x);
extern void lm_sum_merge(LmSum *a, const LmSum *b);
extern double lm_sum_value(const LmSum *s);

#endif							/* LM_DECAY_H */
