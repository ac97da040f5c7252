/*
 * test_entrylog.c
 *		Unit tests of src/core/entrylog.c: the radix sort against qsort
 *		(order and stability, keys of every width), and conversions against a
 *		brute-force count on hand-made and seeded random entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "entrylog.h"
#include "tap.h"

/* by key, then by time as a stand-in for input position (stability) */
static int
cmp_key_time(const void *a, const void *b)
{
	const LmEntryRec *x = a,
			   *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->time > y->time) - (x->time < y->time);
}

static int64_t
brute_conversions(const LmEntryRec *v, size_t n, int stage, int nx)
{
	int64_t		count = 0;
	size_t		i,
				j;

	for (i = 0; i < n; i++)
	{
		int64_t		lead = lm_entry_lead(v[i].key),
					first = INT64_MAX,
					last = INT64_MIN;
		int			earlier = 0;

		if (lm_entry_stage(v[i].key) != stage)
			continue;
		for (j = 0; j < i; j++)
			if (v[j].key == v[i].key)
				earlier = 1;
		if (earlier)
			continue;			/* count each lead once */
		for (j = 0; j < n; j++)
		{
			if (lm_entry_lead(v[j].key) != lead)
				continue;
			if (lm_entry_stage(v[j].key) == stage && v[j].time < first)
				first = v[j].time;
			if (lm_entry_stage(v[j].key) == nx && v[j].time > last)
				last = v[j].time;
		}
		if (last != INT64_MIN && last >= first)
			count++;
	}
	return count;
}

static void
test_sort(int64_t max_lead, const char *what)
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
		v[i].key = lm_entry_key((int64_t) (tap_random() % (uint64_t) (max_lead + 1)),
								(int) (tap_random() % 7));
		v[i].time = (int64_t) i;	/* input order */
	}
	memcpy(expect, v, n * sizeof(LmEntryRec));
	qsort(expect, n, sizeof(LmEntryRec), cmp_key_time);
	got = lm_entry_sort(v, tmp, n);
	for (i = 0; i < n; i++)
		if (got[i].key != expect[i].key || got[i].time != expect[i].time)
			bad++;
	TAP_OK(bad == 0, "radix sort equals a stable qsort, %s (%d wrong)", what, bad);
	free(v);
	free(tmp);
	free(expect);
}

int
main(void)
{
	LmEntryRec	hand[] = {
		/* lead 1: a then b later: converted */
		{0, 10}, {0, 20},
		/* lead 2: b before its first a, none after: not converted */
		{0, 10}, {0, 20},
		/* lead 3: a and b at the same instant: converted */
		{0, 5}, {0, 5},
		/* lead 4: a twice, b between: first a before b: converted */
		{0, 1}, {0, 9}, {0, 5},
	};
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

	hand[0].key = lm_entry_key(1, 0);
	hand[1].key = lm_entry_key(1, 1);
	hand[2].key = lm_entry_key(2, 1);
	hand[3].key = lm_entry_key(2, 0);
	hand[4].key = lm_entry_key(3, 0);
	hand[5].key = lm_entry_key(3, 1);
	hand[6].key = lm_entry_key(4, 0);
	hand[7].key = lm_entry_key(4, 0);
	hand[8].key = lm_entry_key(4, 1);
	sorted = lm_entry_sort(hand, tmp, 9);
	lm_entry_conversions(sorted, 9, 3, next, counts, first, last, seen);
	TAP_OK(counts[0] == 3 && counts[1] == 0 && counts[2] == 0,
		   "hand-made leads: 3 of 4 converted from a to b (got %lld)", (long long) counts[0]);
	tap_ok(lm_entry_lead(lm_entry_key(LM_ENTRY_MAX_LEAD, LM_ENTRY_MAX_STAGE)) == LM_ENTRY_MAX_LEAD &&
		   lm_entry_stage(lm_entry_key(LM_ENTRY_MAX_LEAD, LM_ENTRY_MAX_STAGE)) == LM_ENTRY_MAX_STAGE,
		   "the largest key round-trips");

	test_sort(0, "one lead");
	test_sort(255, "leads in one byte");
	test_sort(1 << 20, "leads in three bytes");
	test_sort(LM_ENTRY_MAX_LEAD, "leads of every width");
	{
		LmEntryRec	one = {42, 7};

		tap_ok(lm_entry_sort(&one, tmp, 1)->key == 42, "one record");
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
			v[i].key = lm_entry_key((int64_t) (tap_random() % 200), (int) (tap_random() % 5));
			v[i].time = (int64_t) (tap_random() % 50) - 25;
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
