/*
 * attribution.h
 *		Multi-touch attribution weights, pure C (no PostgreSQL headers).
 *
 * src/attribution.c is the PostgreSQL glue of the aggregate
 * leadmgmt.attribution(model, touch, ts [, milestone]); doc/attribution.md
 * states the rules in prose.  This file owns the parts that decide the
 * answer: the model names, the canonical order of the touches and the
 * weights.
 *
 * A touch is a row of the group: a timestamp (microseconds, any int64, so
 * PostgreSQL's -infinity/+infinity are INT64_MIN/INT64_MAX), the touch text
 * (bytes, not NUL-terminated) and the milestone flag.  Weights are computed
 * over the touches sorted by (ts, touch bytes, milestone), so the result never
 * depends on the input order, and are returned as exact fixed-point decimals
 * in units of 1e-15 (LM_ATTR_SCALE) that add up to exactly LM_ATTR_SCALE.
 */
#ifndef LM_CORE_ATTRIBUTION_H
#define LM_CORE_ATTRIBUTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* weights are integers in units of 1 / LM_ATTR_SCALE (15 decimal places) */
#define LM_ATTR_SCALE		INT64_C(1000000000000000)
#define LM_ATTR_DECIMALS	15

typedef enum LmAttrModel
{
	LM_ATTR_UNKNOWN = 0,
	LM_ATTR_FIRST_TOUCH,
	LM_ATTR_LAST_TOUCH,
	LM_ATTR_LINEAR,
	LM_ATTR_U_SHAPED,
	LM_ATTR_W_SHAPED,
	LM_ATTR_TIME_DECAY
} LmAttrModel;

#define LM_ATTR_MAX_MODEL	LM_ATTR_TIME_DECAY
#define LM_ATTR_MODEL_LIST	"first_touch, last_touch, linear, u_shaped, w_shaped and time_decay:<half-life>"

typedef struct LmTouch
{
	int64_t		ts;				/* sort key 1 */
	const char *touch;			/* sort key 2: bytes, shorter prefix first */
	size_t		len;
	bool		milestone;		/* sort key 3: false first */
} LmTouch;

/*
 * One distinct touch of the result.  lm_attr_credit returns them in jsonb key
 * order (shorter first, then bytewise), weight being the summed double weight
 * and units the exact share; the last one gets LM_ATTR_SCALE minus the sum of
 * the others.
 */
typedef struct LmCredit
{
	const char *touch;
	size_t		len;
	size_t		pos;			/* first sorted position of this touch */
	double		weight;
	int64_t		units;
} LmCredit;

typedef enum LmAttrError
{
	LM_ATTR_OK = 0,
	LM_ATTR_EMPTY,				/* no touches: the aggregate returns NULL */
	LM_ATTR_NO_MILESTONE,		/* w_shaped and no touch has milestone */
	LM_ATTR_BAD_HALF_LIFE		/* time_decay with half-life <= 0 */
} LmAttrError;

/*
 * Parse a model name.  Returns LM_ATTR_UNKNOWN for anything else.  For
 * "time_decay:<x>" *arg and *arglen point at <x> (the half-life text, which the
 * caller parses); otherwise *arg is NULL and *arglen 0.
 */
extern LmAttrModel lm_attr_parse_model(const char *s, size_t len,
									   const char **arg, size_t *arglen);

/* the canonical name of a model ("time_decay" without its half-life) */
extern const char *lm_attr_model_name(LmAttrModel model);

/* total order on touches: (ts, touch bytes, shorter first, milestone) */
extern int	lm_touch_cmp(const LmTouch *a, const LmTouch *b);
extern bool lm_touch_is_sorted(const LmTouch *t, size_t n);
extern void lm_touch_sort(LmTouch *t, size_t n);

/*
 * Per-position weights of n >= 1 sorted touches, summing to 1 up to rounding
 * (w has room for n).  half_life_us is used by time_decay only.
 */
extern LmAttrError lm_attr_position_weights(LmAttrModel model, int64_t half_life_us,
											const LmTouch *t, size_t n, double *w);

/*
 * The whole computation on n sorted touches: position weights into w (room
 * for n), then one credit per distinct touch into out (room for n), in jsonb
 * key order, with exact units summing to LM_ATTR_SCALE.  *nout = number of
 * credits.  n = 0 gives LM_ATTR_EMPTY.
 */
extern LmAttrError lm_attr_credit(LmAttrModel model, int64_t half_life_us,
								  const LmTouch *t, size_t n, double *w,
								  LmCredit *out, size_t *nout);

/*
 * Write units (0..LM_ATTR_SCALE) as a decimal without trailing zeros ("1",
 * "0", "0.25", "0.333333333333334") into buf (room for at least 24 bytes).
 * Returns the length.
 */
extern size_t lm_attr_format_units(int64_t units, char *buf);

#endif							/* LM_CORE_ATTRIBUTION_H */
