/*
 * test_attribution.c
 *		Unit tests for src/core/attribution.c: model names, the canonical
 *		order, hand-computed weights of every model (including one and two
 *		touches and coinciding w_shaped roles), repeated touches, exact sums
 *		and the decimal formatting.
 */
#include "attribution.h"
#include "tap.h"

#include <stdint.h>
#include <stdlib.h>

#define DAY INT64_C(86400000000)
#define MAXT 16

typedef struct Result
{
	LmAttrError err;
	size_t		n;
	LmCredit	c[MAXT];
} Result;

static Result
run(LmAttrModel model, int64_t hl, const LmTouch *in, size_t n)
{
	LmTouch		t[MAXT];
	double		w[MAXT];
	Result		r;

	memcpy(t, in, sizeof(LmTouch) * n);
	lm_touch_sort(t, n);
	r.err = lm_attr_credit(model, hl, t, n, w, r.c, &r.n);
	return r;
}

/* units of the credit for touch s, or -1 */
static int64_t
units_of(const Result *r, const char *s)
{
	size_t		i;

	for (i = 0; i < r->n; i++)
		if (r->c[i].len == strlen(s) && memcmp(r->c[i].touch, s, r->c[i].len) == 0)
			return r->c[i].units;
	return -1;
}

static int64_t
total(const Result *r)
{
	int64_t		s = 0;
	size_t		i;

	for (i = 0; i < r->n; i++)
		s += r->c[i].units;
	return s;
}

#define T(ts, s, m) {(ts), (s), sizeof(s) - 1, (m)}
#define U(x) ((int64_t) ((x) * 1000.0 + 0.5) * INT64_C(1000000000000))	/* x with 3 decimals */

static void
test_parse(void)
{
	const char *arg;
	size_t		arglen;

	TAP_OK(lm_attr_parse_model("linear", 6, &arg, &arglen) == LM_ATTR_LINEAR && arg == NULL, "linear");
	TAP_OK(lm_attr_parse_model("u_shaped", 8, &arg, &arglen) == LM_ATTR_U_SHAPED, "u_shaped");
	TAP_OK(lm_attr_parse_model("time_decay:7 days", 17, &arg, &arglen) == LM_ATTR_TIME_DECAY &&
		   arglen == 6 && memcmp(arg, "7 days", 6) == 0, "time_decay:7 days gives its half-life text");
	TAP_OK(lm_attr_parse_model("time_decay", 10, &arg, &arglen) == LM_ATTR_TIME_DECAY && arg == NULL,
		   "bare time_decay has no half-life");
	TAP_OK(lm_attr_parse_model("Linear", 6, &arg, &arglen) == LM_ATTR_UNKNOWN, "names are case-sensitive");
	TAP_OK(lm_attr_parse_model("linea", 5, &arg, &arglen) == LM_ATTR_UNKNOWN, "no prefixes");
	TAP_OK(lm_attr_parse_model("linear\0x", 8, &arg, &arglen) == LM_ATTR_UNKNOWN, "no embedded NUL");
	TAP_OK(lm_attr_parse_model("", 0, &arg, &arglen) == LM_ATTR_UNKNOWN, "empty is unknown");
	TAP_OK(strcmp(lm_attr_model_name(LM_ATTR_W_SHAPED), "w_shaped") == 0, "model name");
}

static void
test_order(void)
{
	LmTouch		t[] = {T(2, "b", false), T(1, "z", false), T(2, "a", true), T(2, "a", false), T(2, "ab", false)};

	lm_touch_sort(t, 5);
	TAP_OK(t[0].ts == 1 && t[1].touch[0] == 'a' && !t[1].milestone && t[2].milestone &&
		   t[3].len == 2 && t[4].touch[0] == 'b', "sorted by (ts, touch bytes, milestone)");
	TAP_OK(lm_touch_is_sorted(t, 5), "is_sorted agrees");
}

static void
test_models(void)
{
	LmTouch		one[] = {T(DAY, "ad", false)};
	LmTouch		two[] = {T(2 * DAY, "mail", false), T(DAY, "ad", false)};
	/* five touches, input out of order; "web" twice */
	LmTouch		five[] = {T(5 * DAY, "call", false), T(DAY, "ad", false), T(3 * DAY, "seminar", true),
	T(2 * DAY, "web", false), T(4 * DAY, "web", false)};
	Result		r;

	r = run(LM_ATTR_LINEAR, 0, five, 0);
	TAP_OK(r.err == LM_ATTR_EMPTY, "no touches: empty");

	r = run(LM_ATTR_U_SHAPED, 0, one, 1);
	TAP_OK(r.n == 1 && r.c[0].units == LM_ATTR_SCALE, "u_shaped, one touch: 1");
	r = run(LM_ATTR_U_SHAPED, 0, two, 2);
	TAP_OK(units_of(&r, "ad") == U(0.5) && units_of(&r, "mail") == U(0.5), "u_shaped, two touches: 0.5/0.5");
	r = run(LM_ATTR_W_SHAPED, 0, one, 1);
	TAP_OK(r.err == LM_ATTR_NO_MILESTONE, "w_shaped without milestone: error");

	r = run(LM_ATTR_FIRST_TOUCH, 0, five, 5);
	TAP_OK(r.n == 4 && units_of(&r, "ad") == LM_ATTR_SCALE && units_of(&r, "web") == 0, "first_touch");
	r = run(LM_ATTR_LAST_TOUCH, 0, five, 5);
	TAP_OK(units_of(&r, "call") == LM_ATTR_SCALE && units_of(&r, "ad") == 0, "last_touch");
	/* linear: 0.2 each, web twice = 0.4 */
	r = run(LM_ATTR_LINEAR, 0, five, 5);
	TAP_OK(units_of(&r, "ad") == U(0.2) && units_of(&r, "web") == U(0.4) &&
		   units_of(&r, "call") == U(0.2) && units_of(&r, "seminar") == U(0.2), "linear, web twice");
	/* u_shaped: ad 0.4, call 0.4, three middles 0.2/3: web 2/15, seminar 1/15 */
	r = run(LM_ATTR_U_SHAPED, 0, five, 5);
	TAP_OK(units_of(&r, "ad") == U(0.4) && units_of(&r, "call") == U(0.4) &&
		   llabs(units_of(&r, "web") - INT64_C(133333333333333)) <= 1 &&
		   llabs(units_of(&r, "seminar") - INT64_C(66666666666667)) <= 1 && total(&r) == LM_ATTR_SCALE,
		   "u_shaped, five touches");
	/* w_shaped: ad 0.3, seminar (milestone) 0.3, call 0.3, web 0.05 + 0.05 */
	r = run(LM_ATTR_W_SHAPED, 0, five, 5);
	TAP_OK(units_of(&r, "ad") == U(0.3) && units_of(&r, "seminar") == U(0.3) &&
		   units_of(&r, "call") == U(0.3) && units_of(&r, "web") == U(0.1), "w_shaped, five touches");
	/* time_decay, half-life 1 day, last at day 5: 1/16, 1/8, 1/4, 1/2, 1 over 31/16 */
	r = run(LM_ATTR_TIME_DECAY, DAY, five, 5);
	TAP_OK(llabs(units_of(&r, "ad") - (LM_ATTR_SCALE / 31)) <= 1 &&
		   llabs(units_of(&r, "web") - (LM_ATTR_SCALE * 10 / 31)) <= 1 &&
		   llabs(units_of(&r, "call") - (LM_ATTR_SCALE * 16 / 31)) <= 1 && total(&r) == LM_ATTR_SCALE,
		   "time_decay, one-day half-life");
	r = run(LM_ATTR_TIME_DECAY, 0, five, 5);
	TAP_OK(r.err == LM_ATTR_BAD_HALF_LIFE, "time_decay with half-life 0: error");
}

static void
test_w_shaped_edges(void)
{
	LmTouch		a[] = {T(1, "a", true), T(2, "b", false)};
	LmTouch		b[] = {T(1, "a", false), T(2, "b", true)};
	LmTouch		c[] = {T(1, "a", false), T(2, "b", true), T(3, "c", false)};
	LmTouch		d[] = {T(1, "a", true), T(2, "b", false), T(3, "c", false)};
	LmTouch		e[] = {T(1, "a", false), T(2, "b", true), T(3, "c", true), T(4, "d", false)};
	LmTouch		one[] = {T(1, "a", true)};
	Result		r;

	r = run(LM_ATTR_W_SHAPED, 0, one, 1);
	TAP_OK(r.n == 1 && r.c[0].units == LM_ATTR_SCALE, "w_shaped, one touch: 1");
	r = run(LM_ATTR_W_SHAPED, 0, a, 2);
	TAP_OK(llabs(units_of(&r, "a") - INT64_C(666666666666667)) <= 1 && total(&r) == LM_ATTR_SCALE,
		   "w_shaped, milestone = first of two: 2/3, 1/3");
	r = run(LM_ATTR_W_SHAPED, 0, b, 2);
	TAP_OK(llabs(units_of(&r, "b") - INT64_C(666666666666667)) <= 1, "w_shaped, milestone = last of two: 1/3, 2/3");
	r = run(LM_ATTR_W_SHAPED, 0, c, 3);
	TAP_OK(llabs(units_of(&r, "a") - INT64_C(333333333333333)) <= 1 &&
		   llabs(units_of(&r, "b") - INT64_C(333333333333333)) <= 1, "w_shaped, three distinct roles: 1/3 each");
	r = run(LM_ATTR_W_SHAPED, 0, d, 3);
	TAP_OK(units_of(&r, "a") == U(0.6) && units_of(&r, "b") == U(0.1) && units_of(&r, "c") == U(0.3),
		   "w_shaped, milestone = first of three: 0.6, 0.1, 0.3");
	r = run(LM_ATTR_W_SHAPED, 0, e, 4);
	TAP_OK(units_of(&r, "b") == U(0.3) && units_of(&r, "c") == U(0.1), "w_shaped: the first milestone counts");
}

static void
test_exact_sums(void)
{
	LmTouch		t[7];
	const char *names[] = {"a", "b", "c", "d", "e", "f", "g"};
	Result		r;
	int			i;
	LmTouch		far[] = {T(INT64_MIN, "old", false), T(INT64_MAX, "new", false), T(0, "mid", false)};

	for (i = 0; i < 7; i++)
	{
		t[i].ts = i;
		t[i].touch = names[i];
		t[i].len = 1;
		t[i].milestone = false;
	}
	r = run(LM_ATTR_LINEAR, 0, t, 3);
	TAP_OK(r.c[0].units == INT64_C(333333333333333) && r.c[2].units == INT64_C(333333333333334),
		   "linear over three: the last key takes the remainder");
	r = run(LM_ATTR_LINEAR, 0, t, 7);
	TAP_OK(total(&r) == LM_ATTR_SCALE, "linear over seven sums to exactly 1");
	for (i = 0; i < 7; i++)
		t[i].touch = names[i % 2];
	r = run(LM_ATTR_LINEAR, 0, t, 7);
	TAP_OK(units_of(&r, "a") == LM_ATTR_SCALE * 4 / 7 && units_of(&r, "b") == LM_ATTR_SCALE * 3 / 7 + 1,
		   "repeated linear shares summed without drift: %lld", (long long) units_of(&r, "a"));
	r = run(LM_ATTR_TIME_DECAY, 1, far, 3);
	TAP_OK(units_of(&r, "new") == LM_ATTR_SCALE && units_of(&r, "old") == 0 && units_of(&r, "mid") == 0,
		   "time_decay across infinities: no NaN, all to the last");
}

static void
test_format(void)
{
	char		buf[32];

	lm_attr_format_units(LM_ATTR_SCALE, buf);
	TAP_OK(strcmp(buf, "1") == 0, "1");
	lm_attr_format_units(0, buf);
	TAP_OK(strcmp(buf, "0") == 0, "0");
	lm_attr_format_units(LM_ATTR_SCALE / 4, buf);
	TAP_OK(strcmp(buf, "0.25") == 0, "0.25");
	lm_attr_format_units(1, buf);
	TAP_OK(strcmp(buf, "0.000000000000001") == 0, "smallest unit: %s", buf);
	lm_attr_format_units(INT64_C(333333333333334), buf);
	TAP_OK(strcmp(buf, "0.333333333333334") == 0, "%s", buf);
}

int
main(void)
{
	test_parse();
	test_order();
	test_models();
	test_w_shaped_edges();
	test_exact_sums();
	test_format();
	return tap_done();
}
