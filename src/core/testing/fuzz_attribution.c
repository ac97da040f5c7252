/*
 * fuzz_attribution.c
 *		Fuzz target for src/core/attribution.c: model parsing of arbitrary
 *		bytes, and lm_attr_credit on arbitrary touch sets (every model, tiny
 *		to huge half-lives, extreme timestamps, many ties and repeats).
 *		Checks the invariants that hold for every input: shares are in
 *		0..1 and add up to exactly 1, touches are distinct and in jsonb key
 *		order, and the result does not depend on the input order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attribution.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXN 300

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_attribution: %s\n", what);
	abort();
}

static const char *const alphabet[] = {"", "a", "b", "ab", "ba", "web", "ad", "mail"};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	LmTouch		t[MAXN];
	LmTouch		rev[MAXN];
	double		w[MAXN];
	LmCredit	c1[MAXN];
	LmCredit	c2[MAXN];
	size_t		n = 0,
				n1,
				n2,
				pos,
				i;
	LmAttrModel model;
	int64_t		hl;
	int64_t		sum = 0;
	LmAttrError e1,
				e2;
	const char *arg;
	size_t		arglen;
	char		buf[32];

	model = lm_attr_parse_model((const char *) data, size, &arg, &arglen);
	if (model != LM_ATTR_UNKNOWN && arg != NULL && (arg < (const char *) data || arg + arglen != (const char *) data + size))
		fail("half-life text outside the input");

	if (size < 3)
		return 0;
	model = (LmAttrModel) (data[0] % (LM_ATTR_MAX_MODEL + 1));
	hl = (data[1] & 0x80) ? INT64_MAX - data[1] : (int64_t) (data[1] % 8) - 1;
	pos = 2;
	while (pos + 2 <= size && n < MAXN)
	{
		uint8_t		tb = data[pos];
		uint8_t		sb = data[pos + 1];

		t[n].ts = (tb & 0xC0) == 0xC0 ? ((tb & 1) ? INT64_MAX : INT64_MIN) : (int64_t) (tb % 8) * 1000;
		t[n].touch = alphabet[sb % 8];
		t[n].len = strlen(t[n].touch);
		t[n].milestone = (sb & 0x80) != 0;
		n++;
		pos += 2;
	}
	for (i = 0; i < n; i++)
		rev[i] = t[n - 1 - i];
	lm_touch_sort(t, n);
	lm_touch_sort(rev, n);
	if (!lm_touch_is_sorted(t, n))
		fail("not sorted");

	e1 = lm_attr_credit(model, hl, t, n, w, c1, &n1);
	e2 = lm_attr_credit(model, hl, rev, n, w, c2, &n2);
	if (e1 != e2)
		fail("error depends on input order");
	if (e1 != LM_ATTR_OK)
		return 0;
	if (n1 != n2 || n1 == 0 || n1 > n)
		fail("credit count");
	for (i = 0; i < n1; i++)
	{
		if (c1[i].units < 0 || c1[i].units > LM_ATTR_SCALE)
			fail("share out of range");
		if (c1[i].units != c2[i].units || c1[i].len != c2[i].len ||
			memcmp(c1[i].touch, c2[i].touch, c1[i].len) != 0)
			fail("result depends on input order");
		if (i > 0 && (c1[i - 1].len > c1[i].len ||
					  (c1[i - 1].len == c1[i].len && memcmp(c1[i - 1].touch, c1[i].touch, c1[i].len) >= 0)))
			fail("credits not distinct or not in key order");
		if (lm_attr_format_units(c1[i].units, buf) >= sizeof(buf))
			fail("format overflow");
		sum += c1[i].units;
	}
	if (sum != LM_ATTR_SCALE)
		fail("shares do not add up to 1");
	return 0;
}
