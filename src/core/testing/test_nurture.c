/*
 * test_nurture.c
 *		Unit tests for src/core/nurture.c: the published FNV-1a 64 and
 *		splitmix64 test vectors, and the holdout bucket's range and spread.
 */
#include "nurture.h"
#include "tap.h"

#include <stdint.h>

static void
test_vectors(void)
{
	/* FNV-1a 64 vectors from the FNV reference test suite (isthe.com/chongo/tech/comp/fnv) */
	TAP_OK(lm_fnv1a64((const unsigned char *) "", 0) == UINT64_C(0xcbf29ce484222325), "fnv1a64 of empty string");
	TAP_OK(lm_fnv1a64((const unsigned char *) "a", 1) == UINT64_C(0xaf63dc4c8601ec8c), "fnv1a64 of \"a\"");
	TAP_OK(lm_fnv1a64((const unsigned char *) "foobar", 6) == UINT64_C(0x85944171f73967e8), "fnv1a64 of \"foobar\"");

	/*
	 * splitmix64 as in Vigna's reference: the generator seeded with 0
	 * returns splitmix64(0), seeded with 0 and called again splitmix64(0 +
	 * gamma), ...; the first outputs of the seed-0 stream are published.
	 */
	TAP_OK(lm_splitmix64(0) == UINT64_C(0xe220a8397b1dcdaf), "splitmix64 first output of seed 0");
	TAP_OK(lm_splitmix64(UINT64_C(0x9e3779b97f4a7c15)) == UINT64_C(0x6e789e6aa1b965f4),
		   "splitmix64 second output of seed 0");
}

static void
test_buckets(void)
{
	int			counts[100] = {0};
	int			i;
	int			bad = 0;
	int			min = 1 << 30;
	int			max = 0;
	const unsigned char *t = (const unsigned char *) "welcome";

	for (i = 1; i <= 100000; i++)
	{
		int			b = lm_nurture_bucket(i, t, 7);

		if (b < 0 || b > 99)
			bad++;
		else
			counts[b]++;
	}
	for (i = 0; i < 100; i++)
	{
		if (counts[i] < min)
			min = counts[i];
		if (counts[i] > max)
			max = counts[i];
	}
	TAP_OK(bad == 0, "buckets are 0..99");
	/* 1000 expected per bucket, sd about 31.5: 850..1150 is over 4.7 sd */
	TAP_OK(min > 850 && max < 1150, "buckets of 100000 ids are even (min %d, max %d)", min, max);
	TAP_OK(lm_nurture_bucket(-1, t, 7) >= 0 && lm_nurture_bucket(INT64_MIN, t, 7) <= 99,
		   "negative ids give a bucket in range");
	TAP_OK(lm_nurture_bucket(42, t, 7) == lm_nurture_bucket(42, t, 7), "same input, same bucket");

	/* different tracks split the same leads differently */
	bad = 0;
	for (i = 1; i <= 1000; i++)
		if ((lm_nurture_bucket(i, t, 7) < 10) == (lm_nurture_bucket(i, (const unsigned char *) "recycle", 7) < 10))
			bad++;
	TAP_OK(bad < 1000 && bad > 700, "holdouts of two tracks are nearly independent (%d of 1000 agree)", bad);
}

int
main(void)
{
	test_vectors();
	test_buckets();
	return tap_done();
}
