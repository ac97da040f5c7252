/*
 * test_stage_conversions.c
 *		Unit tests of src/core/stage_conversions.c: the radix sort against qsort
 *		(order and stability, keys of every width), and conversions against a
 *		brute-force count on hand-made and seeded random entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stage_conversions.h"
#include "tap.h"

/* by (lead, stage) as signed numbers, then by time as a stand-in for input position (stability) */
static int
cmp_key_time(const void *a, const void *b)
{
	const LmEntryRec *x = a,
			   *y = b;
	int64_t		lx = lm_entry_lead(x),
				ly = lm_entry_lead(y);

	if (lx != ly)
		return lx < ly ? -1 : 1;
	if (x->stage != y->stage)
		return x->stage < y->stage ? -1 : 1;
	return (x->time > y->time) - (x->time < y->time);
}

static int
same_key(const LmEntryRec *a, const LmEntryRec *b)
{
	return a->lead == b->lead && a->stage == b->stage;
}

static int64_t
brute_conversions(const LmEntryRec *v, size_t n, int stage, int nx)
{
	int64_t		count = 0;
	size_t		i,
				j;

	for (i = 0; i < n; i++)
	{
		int64_t		lead = lm_entry_lead(&v[i]),
					first = INT64_MAX,
					last = INT64_MIN;
		int			earlier = 0;

		if ((int) v[i].stage != stage)
			continue;
		for (j = 0; j < i; j++)
			if (same_key(&v[j], &v[i]))
				earlier = 1;
		if (earlier)
			continue;			/* count each lead once */
		for (j = 0; j < n; j++)
		{
			if (lm_entry_lead(&v[j]) != lead)
				continue;
			if ((int) v[j].stage == stage && v[j].time < first)
				first = v[j].time;
			if ((int) v[j].stage == nx && v[j].time > last)
				last = v[j].time;
		}
		if (last != INT64_MIN && last >= first)
			count++;
	}
	return count;
}

static void
test_sort(int64_t lo_lead, uint64_t span, const char *what)
{
	size_t		n = 5000,
				i;
	LmEntryRec *v = malloc(n * sizeof(LmEntryRec)),
			   *tmp = malloc(n * sizeof(LmEntryRec)),
			   *expect = malloc(n * sizeof(LmEntryRec)),
			   *got;
	int			bad = 0;

	for (i = 0; i < n; i++)
	{
		v[i] = lm_entry_make((int64_t) ((uint64_t) lo_lead + (span ? tap_random() % span : tap_random())),
							 (int) (tap_random() % 7), (int64_t) i);	/* time: input order */
	}
	memcpy(expect, v, n * sizeof(LmEntryRec));
	qsort(expect, n, sizeof(LmEntryRec), cmp_key_time);
	got = lm_entry_sort(v, tmp, n);
	for (i = 0; i < n; i++)
		if (!same_key(&got[i], &expect[i]) || got[i].time != expect[i].time)
			bad++;
	TAP_OK(bad == 0, "radix sort equals a stable qsort, %s (%d wrong)", what, bad);
	free(v);
	free(tmp);
	free(expect);
}

int
main(void)
{
	LmEntryRec	hand[9];
	int			next[3] = {1, -1, 0};
	int64_t		counts[3] = {0, 0, 0},
				first[3],
				last[3],
				seen[3];
	LmEntryRec	tmp[9],
			   *sorted;
	int			bad,
				round;

	tap_seed(UINT64_C(0x2545F4914F6CDD1D));

	/* lead 1: a then b later: converted */
	hand[0] = lm_entry_make(1, 0, 10);
	hand[1] = lm_entry_make(1, 1, 20);
	/* lead -2: b before its first a, none after: not converted */
	hand[2] = lm_entry_make(-2, 1, 10);
	hand[3] = lm_entry_make(-2, 0, 20);
	/* lead 3: a and b at the same instant: converted */
	hand[4] = lm_entry_make(INT64_MAX, 0, 5);
	hand[5] = lm_entry_make(INT64_MAX, 1, 5);
	/* lead 4: a twice, b between: first a before b: converted */
	hand[6] = lm_entry_make(INT64_MIN, 0, 1);
	hand[7] = lm_entry_make(INT64_MIN, 0, 9);
	hand[8] = lm_entry_make(INT64_MIN, 1, 5);
	sorted = lm_entry_sort(hand, tmp, 9);
	lm_entry_conversions(sorted, 9, 3, next, counts, first, last, seen);
	TAP_OK(counts[0] == 3 && counts[1] == 0 && counts[2] == 0,
		   "hand-made leads: 3 of 4 converted from a to b (got %lld)", (long long) counts[0]);
	{
		LmEntryRec	lo = lm_entry_make(INT64_MIN, 0, 0),
					hi = lm_entry_make(INT64_MAX, LM_ENTRY_MAX_STAGE, 0);

		tap_ok(lm_entry_lead(&lo) == INT64_MIN && lm_entry_lead(&hi) == INT64_MAX && lo.lead < hi.lead,
			   "the smallest and largest lead ids round-trip and keep their order");
	}

	test_sort(0, 1, "one lead");
	test_sort(0, 256, "leads in one byte");
	test_sort(-1000, 2000, "negative and positive leads");
	test_sort(0, 1 << 20, "leads in three bytes");
	test_sort(INT64_MIN, 0, "leads of every width, negative ones too");
	{
		LmEntryRec	one = lm_entry_make(42, 7, 0);

		tap_ok(lm_entry_lead(lm_entry_sort(&one, tmp, 1)) == 42, "one record");
		tap_ok(lm_entry_sort(&one, tmp, 0) != NULL, "no records");
	}

	/* random: 200 leads, 5 stages with a next graph, against brute force */
	bad = 0;
	for (round = 0; round < 20; round++)
	{
		size_t		n = 600,
					i;
		LmEntryRec *v = malloc(n * sizeof(LmEntryRec)),
				   *scratch = malloc(n * sizeof(LmEntryRec)),
				   *copy = malloc(n * sizeof(LmEntryRec));
		int			nx5[5] = {1, 2, 3, -1, 0};
		int64_t		c[5] = {0},
					f[5],
					l[5],
					sn[5];
		int			s;

		for (i = 0; i < n; i++)
		{
			int64_t		lead = (int64_t) (tap_random() % 200) - 100;
			int			stage = (int) (tap_random() % 5);

			v[i] = lm_entry_make(lead, stage, (int64_t) (tap_random() % 50) - 25);
		}
		memcpy(copy, v, n * sizeof(LmEntryRec));
		sorted = lm_entry_sort(v, scratch, n);
		lm_entry_conversions(sorted, n, 5, nx5, c, f, l, sn);
		for (s = 0; s < 5; s++)
			if (c[s] != (nx5[s] < 0 ? 0 : brute_conversions(copy, n, s, nx5[s])))
				bad++;
		free(v);
		free(scratch);
		free(copy);
	}
	TAP_OK(bad == 0, "20 random logs: conversions equal a brute-force count (%d wrong)", bad);
	printf("1..%d\n", tap_count);
	return tap_failed != 0;
}
