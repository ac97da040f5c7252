/*
 * attribution.c
 *		Multi-touch attribution weights (see attribution.h and
 *		doc/attribution.md).
 *
 * Steps, all deterministic given the sorted touches:
 *	1. position weights: one double per sorted touch (lm_attr_position_weights)
 *	2. credits: the positions of each distinct touch text, summed in position
 *	   order, listed in jsonb key order (shorter first, then bytewise)
 *	3. exact shares: every credit but the last rounded to units of 1e-15, the
 *	   last one LM_ATTR_SCALE minus the sum of the others, so the decimals the
 *	   aggregate prints add up to exactly 1.
 * Cost: O(n log n) for the sorts, O(n) otherwise; no allocation (the caller
 * passes the buffers).
 */
#include "attribution.h"
#include "decay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const model_names[] = {
	NULL, "first_touch", "last_touch", "linear", "u_shaped", "w_shaped", "time_decay"
};

#define TIME_DECAY_PREFIX "time_decay:"

LmAttrModel
lm_attr_parse_model(const char *s, size_t len, const char **arg, size_t *arglen)
{
	int			m;
	size_t		plen = strlen(TIME_DECAY_PREFIX);

	*arg = NULL;
	*arglen = 0;
	if (s == NULL)
		return LM_ATTR_UNKNOWN;
	for (m = LM_ATTR_FIRST_TOUCH; m <= LM_ATTR_MAX_MODEL; m++)
	{
		if (strlen(model_names[m]) == len && memcmp(model_names[m], s, len) == 0)
			return (LmAttrModel) m;	/* bare "time_decay": no half-life */
	}
	if (len >= plen && memcmp(s, TIME_DECAY_PREFIX, plen) == 0)
	{
		*arg = s + plen;
		*arglen = len - plen;
		return LM_ATTR_TIME_DECAY;
	}
	return LM_ATTR_UNKNOWN;
}

const char *
lm_attr_model_name(LmAttrModel model)
{
	if (model < LM_ATTR_FIRST_TOUCH || model > LM_ATTR_MAX_MODEL)
		return "unknown";
	return model_names[model];
}

static int
bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t		n = alen < blen ? alen : blen;
	int			c = n > 0 ? memcmp(a, b, n) : 0;

	if (c != 0)
		return c < 0 ? -1 : 1;
	return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

int
lm_touch_cmp(const LmTouch *a, const LmTouch *b)
{
	int			c;

	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	c = bytes_cmp(a->touch, a->len, b->touch, b->len);
	if (c != 0)
		return c;
	return (int) a->milestone - (int) b->milestone;
}

static int
touch_qsort_cmp(const void *a, const void *b)
{
	return lm_touch_cmp((const LmTouch *) a, (const LmTouch *) b);
}

bool
lm_touch_is_sorted(const LmTouch *t, size_t n)
{
	size_t		i;

	for (i = 1; i < n; i++)
		if (lm_touch_cmp(&t[i - 1], &t[i]) > 0)
			return false;
	return true;
}

void
lm_touch_sort(LmTouch *t, size_t n)
{
	/* a total order on (ts, bytes, milestone): equal elements are identical */
	if (n > 1 && !lm_touch_is_sorted(t, n))
		qsort(t, n, sizeof(LmTouch), touch_qsort_cmp);
}

/*
 * Position-based models: each role (first, milestone, last) carries its share
 * to its position, a position holding two roles gets both; the other share is
 * spread evenly over the positions that hold no role.  When every position
 * holds a role (few touches) the role shares are scaled up to sum to 1.
 */
static void
role_weights(size_t n, const size_t *role_pos, int nroles, double role_share,
			 double other_share, double *w)
{
	size_t		i;
	size_t		nother;
	int			r;
	int			distinct = 0;

	for (i = 0; i < n; i++)
		w[i] = 0.0;
	for (r = 0; r < nroles; r++)
	{
		if (w[role_pos[r]] == 0.0)
			distinct++;
		w[role_pos[r]] += role_share;
	}
	nother = n - (size_t) distinct;
	if (nother == 0)
	{
		double		total = role_share * nroles;

		for (i = 0; i < n; i++)
			w[i] /= total;
		return;
	}
	for (i = 0; i < n; i++)
		if (w[i] == 0.0)
			w[i] = other_share / (double) nother;
}

LmAttrError
lm_attr_position_weights(LmAttrModel model, int64_t half_life_us,
						 const LmTouch *t, size_t n, double *w)
{
	size_t		i;
	size_t		roles[3];

	if (n == 0)
		return LM_ATTR_EMPTY;
	switch (model)
	{
		case LM_ATTR_FIRST_TOUCH:
		case LM_ATTR_LAST_TOUCH:
			for (i = 0; i < n; i++)
				w[i] = 0.0;
			w[model == LM_ATTR_FIRST_TOUCH ? 0 : n - 1] = 1.0;
			break;
		case LM_ATTR_LINEAR:
			for (i = 0; i < n; i++)
				w[i] = 1.0 / (double) n;
			break;
		case LM_ATTR_U_SHAPED:
			roles[0] = 0;
			roles[1] = n - 1;
			role_weights(n, roles, 2, 0.4, 0.2, w);
			break;
		case LM_ATTR_W_SHAPED:
			roles[0] = 0;
			roles[1] = n;
			for (i = 0; i < n; i++)
				if (t[i].milestone)
				{
					roles[1] = i;
					break;
				}
			if (roles[1] == n)
				return LM_ATTR_NO_MILESTONE;
			roles[2] = n - 1;
			role_weights(n, roles, 3, 0.3, 0.1, w);
			break;
		case LM_ATTR_TIME_DECAY:
			{
				LmSum		sum = {0.0, 0.0};
				double		total;
				double		h = (double) half_life_us;
				int64_t		last = t[n - 1].ts;

				if (half_life_us <= 0)
					return LM_ATTR_BAD_HALF_LIFE;
				/* differences in double: no overflow even at +-infinity */
				for (i = 0; i < n; i++)
				{
					double		age = (double) last - (double) t[i].ts;

					w[i] = age <= 0.0 ? 1.0 : exp2(-age / h);
					lm_sum_add(&sum, w[i]);
				}
				total = lm_sum_value(&sum);
				/* total >= 1: the last touch has weight 1 */
				for (i = 0; i < n; i++)
					w[i] /= total;
			}
			break;
		default:
			/* unknown model: everything to the last touch would be a lie */
			return LM_ATTR_EMPTY;
	}
	return LM_ATTR_OK;
}

/* jsonb key order: shorter first, then bytewise; ties by position */
static int
credit_cmp(const void *pa, const void *pb)
{
	const LmCredit *a = (const LmCredit *) pa;
	const LmCredit *b = (const LmCredit *) pb;
	int			c;

	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	c = a->len > 0 ? memcmp(a->touch, b->touch, a->len) : 0;
	if (c != 0)
		return c < 0 ? -1 : 1;
	return a->pos < b->pos ? -1 : (a->pos > b->pos ? 1 : 0);
}

LmAttrError
lm_attr_credit(LmAttrModel model, int64_t half_life_us, const LmTouch *t, size_t n,
			   double *w, LmCredit *out, size_t *nout)
{
	LmAttrError err;
	size_t		i;
	size_t		k = 0;
	int64_t		sum = 0;
	int64_t		deficit;
	LmSum		acc = {0.0, 0.0};

	*nout = 0;
	err = lm_attr_position_weights(model, half_life_us, t, n, w);
	if (err != LM_ATTR_OK)
		return err;

	for (i = 0; i < n; i++)
	{
		out[i].touch = t[i].touch;
		out[i].len = t[i].len;
		out[i].pos = i;
		out[i].weight = w[i];
		out[i].units = 0;
	}
	qsort(out, n, sizeof(LmCredit), credit_cmp);

	/*
	 * Sum repeated touches, in position order (the sort's tie-break), with a
	 * compensated sum: 14285 linear shares of 1e-5 give 0.14285, not
	 * 0.142850000000002.
	 */
	for (i = 0; i < n; i++)
	{
		if (k > 0 && out[k - 1].len == out[i].len &&
			(out[i].len == 0 || memcmp(out[k - 1].touch, out[i].touch, out[i].len) == 0))
		{
			lm_sum_add(&acc, out[i].weight);
			continue;
		}
		if (k > 0)
			out[k - 1].weight = lm_sum_value(&acc);
		out[k++] = out[i];
		acc.sum = out[i].weight;
		acc.compensation = 0.0;
	}
	out[k - 1].weight = lm_sum_value(&acc);

	/* exact shares: round all but the last, the last takes the rest */
	for (i = 0; i + 1 < k; i++)
	{
		/* half away from zero, like numeric rounding */
		double		u = round(out[i].weight * (double) LM_ATTR_SCALE);

		if (!(u >= 0.0))
			u = 0.0;			/* never negative (nor NaN) */
		if (u > (double) LM_ATTR_SCALE)
			u = (double) LM_ATTR_SCALE;
		out[i].units = (int64_t) u;
		sum += out[i].units;
	}
	out[k - 1].units = LM_ATTR_SCALE - sum;

	/*
	 * Rounding up can leave the others above 1 by a few units when the last
	 * touch's true weight is below that (time_decay): take the excess back,
	 * largest share first, so no share is negative and the sum stays exact.
	 */
	deficit = out[k - 1].units < 0 ? -out[k - 1].units : 0;
	if (deficit > 0)
	{
		size_t		big = 0;

		out[k - 1].units = 0;
		for (i = 1; i + 1 < k; i++)
			if (out[i].units > out[big].units)
				big = i;
		for (i = big; deficit > 0; i = (i + 1) % (k - 1))
		{
			int64_t		take = out[i].units < deficit ? out[i].units : deficit;

			out[i].units -= take;
			deficit -= take;
		}
	}
	*nout = k;
	return LM_ATTR_OK;
}

size_t
lm_attr_format_units(int64_t units, char *buf)
{
	char		digits[LM_ATTR_DECIMALS + 1];
	int			i;
	int			last;
	size_t		len;

	if (units <= 0)
	{
		strcpy(buf, "0");
		return 1;
	}
	if (units >= LM_ATTR_SCALE)
	{
		strcpy(buf, "1");
		return 1;
	}
	for (i = LM_ATTR_DECIMALS - 1; i >= 0; i--)
	{
		digits[i] = (char) ('0' + units % 10);
		units /= 10;
	}
	last = LM_ATTR_DECIMALS - 1;
	while (last > 0 && digits[last] == '0')
		last--;
	buf[0] = '0';
	buf[1] = '.';
	memcpy(buf + 2, digits, (size_t) last + 1);
	len = 2 + (size_t) last + 1;
	buf[len] = '\0';
	return len;
}
