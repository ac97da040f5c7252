/*
 * test_funnel.c
 *		Unit tests of src/core/funnel.c: mode parsing, hand-computed cases for
 *		every mode (ClickHouse's conformance cases among them), and a seeded
 *		randomised comparison with a brute-force formulation of doc/funnel.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "funnel.h"
#include "tap.h"

#define S(i) ((uint32_t) 1 << ((i) - 1))

/* scan a copy of rows (ts, mask) after sorting it, as the aggregate does */
static int
level_of(const int64_t *ts, const uint32_t *mask, int n, int nsteps,
		 int64_t window, uint32_t flags, int64_t *times)
{
	FunnelEvent ev[256];
	int			i,
				kept = 0;

	for (i = 0; i < n; i++)
	{
		if (mask[i] == 0 && !(flags & FUNNEL_STRICT_ORDER))
			continue;
		ev[kept].ts = ts[i];
		ev[kept].mask = mask[i];
		ev[kept].seq = (uint32_t) i;
		kept++;
	}
	funnel_sort(ev, (size_t) kept);
	return funnel_scan(ev, (size_t) kept, nsteps, window, flags, times, NULL);
}

/* events named by letters: 'a' matches step 1, 'b' step 2, ...; '.' none */
static int
letters(const char *seq, const int64_t *ts, int nsteps, int64_t window,
		uint32_t flags)
{
	uint32_t	mask[64];
	int64_t		t[64];
	int			n = (int) strlen(seq),
				i;

	for (i = 0; i < n; i++)
	{
		int			c = seq[i] - 'a' + 1;

		mask[i] = (c >= 1 && c <= nsteps) ? S(c) : 0;
		t[i] = ts ? ts[i] : i + 1;
	}
	return level_of(t, mask, n, nsteps, window, flags, NULL);
}

static uint32_t
mode(const char *text)
{
	uint32_t	f = 0xdead;

	if (funnel_parse_mode(text, strlen(text), &f, NULL, NULL) != FUNNEL_MODE_OK)
		return 0xdead;
	return f;
}

static void
test_parse(void)
{
	uint32_t	f;
	const char *bad = NULL;
	size_t		badlen = 0;
	char		buf[128];

	TAP_OK(mode("") == 0, "empty mode is the default");
	TAP_OK(mode(" , ,") == 0, "blank items are ignored");
	TAP_OK(mode("strict_order, allow_reentry") ==
		   (FUNNEL_STRICT_ORDER | FUNNEL_ALLOW_REENTRY), "two names with a blank");
	TAP_OK(mode("strict_once,strict_once") == FUNNEL_STRICT_ONCE, "repeats allowed");
	TAP_OK(mode("strict_deduplication,strict_increase") ==
		   (FUNNEL_STRICT_DEDUPLICATION | FUNNEL_STRICT_INCREASE), "dedup + increase");
	TAP_OK(funnel_parse_mode("strict_order,bogus", 18, &f, &bad, &badlen) ==
		   FUNNEL_MODE_UNKNOWN && badlen == 5 && memcmp(bad, "bogus", 5) == 0,
		   "unknown name reported");
	TAP_OK(funnel_parse_mode("strict", 6, &f, &bad, &badlen) == FUNNEL_MODE_STRICT,
		   "old name strict reported separately");
	TAP_OK(funnel_parse_mode("allow_reentry", 13, &f, &bad, &badlen) ==
		   FUNNEL_MODE_REENTRY_ALONE, "allow_reentry needs strict_order");
	TAP_OK(funnel_parse_mode("Strict_Order", 12, &f, &bad, &badlen) ==
		   FUNNEL_MODE_UNKNOWN, "names are case-sensitive");
	/* length-delimited: the text need not be NUL-terminated */
	TAP_OK(funnel_parse_mode("strict_orderXYZ", 12, &f, NULL, NULL) == FUNNEL_MODE_OK &&
		   f == FUNNEL_STRICT_ORDER, "length-delimited input");
	funnel_mode_text(FUNNEL_ALL_FLAGS, buf, sizeof(buf));
	TAP_OK(strcmp(buf, "strict_deduplication,strict_order,strict_increase,"
				  "strict_once,allow_reentry") == 0, "canonical text: %s", buf);
	funnel_mode_text(0, buf, sizeof(buf));
	TAP_OK(buf[0] == '\0', "canonical text of the default is empty");
}

/* tests/queries/0_stateless/00632_aggregation_window_funnel, in core terms */
static void
test_clickhouse(void)
{
	int64_t		t9[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
	uint32_t	m[16];
	int64_t		t[16];
	int			i;

	/* funnel_test: events 1000+i at time i; steps are event numbers */
#define EV(k) (S(k))
	for (i = 0; i < 9; i++)
		m[i] = 0;
	/* windowFunnel(10000)(ts, e=1000, e=1001, e=1002, e=1008) = 4 */
	m[0] = S(1);
	m[1] = S(2);
	m[2] = S(3);
	m[8] = S(4);
	TAP_OK(level_of(t9, m, 9, 4, 10000, 0, NULL) == 4, "funnel_test 4 steps = 4");
	/* windowFunnel(2)(ts, 1003..1007) = 3; (3) = 4; (4) = 5 */
	for (i = 0; i < 9; i++)
		m[i] = (i >= 3 && i <= 7) ? S(i - 2) : 0;
	TAP_OK(level_of(t9, m, 9, 5, 2, 0, NULL) == 3, "window 2 -> 3");
	TAP_OK(level_of(t9, m, 9, 5, 3, 0, NULL) == 4, "window 3 -> 4");
	TAP_OK(level_of(t9, m, 9, 5, 4, 0, NULL) == 5, "window 4 -> 5");
	/* overlapping conditions: e<=1007, e>=1002, e<=1006, e>=1004 over 1001..1008 */
	for (i = 0; i < 8; i++)
	{
		int			e = 1001 + i;

		t[i] = i + 1;
		m[i] = (e <= 1007 ? S(1) : 0) | (e >= 1002 ? S(2) : 0) |
			(e <= 1006 ? S(3) : 0) | (e >= 1004 ? S(4) : 0);
	}
	TAP_OK(level_of(t, m, 8, 4, 4, 0, NULL) == 4, "overlapping conditions = 4");
	/* funnel_test_strict: 1005 twice; strict_deduplication 6, default 7 */
	{
		int64_t		ts[] = {0, 10, 20, 30, 40, 50, 51, 60, 70, 80};
		int			ev[] = {1, 2, 3, 4, 5, 6, 6, 7, 0, 0};

		for (i = 0; i < 10; i++)
			m[i] = ev[i] ? S(ev[i]) : 0;
		TAP_OK(level_of(ts, m, 10, 7, 10000, FUNNEL_STRICT_DEDUPLICATION, NULL) == 6,
			   "strict_deduplication = 6");
		TAP_OK(level_of(ts, m, 10, 7, 10000, 0, NULL) == 7, "default = 7");
	}
	/* funnel_test_strict_order users 1..7 */
	{
		const char *users[] = {"abc", "adbc", "aabbcc", "aaaabbcc", "aabbdcc", "ccbbaa"};
		int			dflt[] = {3, 3, 3, 3, 3, 1};
		int			order[] = {3, 1, 3, 3, 2, 1};
		int			both[] = {3, 1, 2, 2, 2, 1};

		for (i = 0; i < 6; i++)
		{
			TAP_OK(letters(users[i], NULL, 3, 86400, 0) == dflt[i],
				   "strict_order table user %d default = %d", i + 1, dflt[i]);
			TAP_OK(letters(users[i], NULL, 3, 86400, FUNNEL_STRICT_ORDER) == order[i],
				   "user %d strict_order = %d", i + 1, order[i]);
			TAP_OK(letters(users[i], NULL, 3, 86400,
						   FUNNEL_STRICT_ORDER | FUNNEL_STRICT_DEDUPLICATION) == both[i],
				   "user %d strict_deduplication,strict_order = %d", i + 1, both[i]);
		}
		TAP_OK(letters("acb", NULL, 3, 10, FUNNEL_STRICT_ORDER) == 1, "user 7 = 1");
	}
	/* issue 27469: a b c b d with 4 steps, strict_deduplication = 3 */
	TAP_OK(letters("abcbd", NULL, 4, 86400, FUNNEL_STRICT_DEDUPLICATION) == 3,
		   "abcbd strict_deduplication = 3");
	/* issue 37177 (fixed upstream): install start login install -> 3 */
	TAP_OK(letters("abca", NULL, 4, 60, FUNNEL_STRICT_DEDUPLICATION) == 3,
		   "abca strict_deduplication = 3 (ClickHouse #37177)");
	/* funnel_test_strict_increase: (0,1000),(1,1001),(1,1002),(1,1003),(2,1004) */
	{
		int64_t		ts[] = {0, 1, 1, 1, 2};

		for (i = 0; i < 5; i++)
			m[i] = S(i + 1);
		TAP_OK(level_of(ts, m, 5, 5, 10000, 0, NULL) == 5, "ties default = 5");
		TAP_OK(level_of(ts, m, 5, 5, 10000, FUNNEL_STRICT_INCREASE, NULL) == 2,
			   "ties strict_increase = 2");
		for (i = 0; i < 5; i++)
			m[i] = i == 4 ? (S(1) | S(2) | S(3)) : 0;
		TAP_OK(level_of(ts, m, 5, 3, 10000, 0, NULL) == 3, "one event, 3 steps = 3");
		TAP_OK(level_of(ts, m, 5, 3, 10000, FUNNEL_STRICT_ONCE, NULL) == 1,
			   "one event strict_once = 1");
		TAP_OK(level_of(ts, m, 5, 3, 10000, FUNNEL_STRICT_INCREASE, NULL) == 1,
			   "one event strict_increase = 1");
	}
	/* failure, failure, success with strict_once (uids 123, 234, 345) */
	{
		uint32_t	f = S(1) | S(2),
					ok = S(3);
		int64_t		t123[] = {180, 220, 250},
					t234[] = {100, 250},
					t345[] = {200, 210, 230};
		uint32_t	m123[] = {f, f, ok},
					m234[] = {f, f},
					m345[] = {ok, f, ok};
		uint32_t	modes[] = {FUNNEL_STRICT_ONCE | FUNNEL_STRICT_INCREASE, FUNNEL_STRICT_ONCE,
		FUNNEL_STRICT_ONCE | FUNNEL_STRICT_DEDUPLICATION};

		for (i = 0; i < 3; i++)
		{
			TAP_OK(level_of(t123, m123, 3, 3, 200, modes[i], NULL) == 3, "uid 123 = 3 (%d)", i);
			TAP_OK(level_of(t234, m234, 2, 3, 200, modes[i], NULL) == 2, "uid 234 = 2 (%d)", i);
			TAP_OK(level_of(t345, m345, 3, 3, 200, modes[i], NULL) == 1, "uid 345 = 1 (%d)", i);
		}
	}
	/*
	 * allow_reentry table: ClickHouse 26.7.2's answers (make conformance);
	 * the 00632 .reference had strict_order 2 2 3 1 3, allow_reentry user 4
	 * = 1, 4 steps 2 2 4 1 3 and user 4 = 1, combined 3 1 3 1 3
	 */
	{
		const char *users[] = {"abac", "abab" "c", "abcbd", "acb", "abcabcd"};
		int			o3[] = {3, 3, 3, 1, 3},
					r3[] = {3, 3, 3, 2, 3},
					o4[] = {3, 3, 4, 1, 4},
					r4[] = {3, 3, 4, 2, 4},
					rd3[] = {3, 2, 3, 2, 3};
		uint32_t	so = FUNNEL_STRICT_ORDER,
					re = FUNNEL_STRICT_ORDER | FUNNEL_ALLOW_REENTRY;

		for (i = 0; i < 5; i++)
		{
			TAP_OK(letters(users[i], NULL, 3, 86400, so) == o3[i], "reentry table user %d strict_order = %d", i + 1, o3[i]);
			TAP_OK(letters(users[i], NULL, 3, 86400, re) == r3[i], "user %d allow_reentry = %d", i + 1, r3[i]);
			TAP_OK(letters(users[i], NULL, 4, 86400, so) == o4[i], "user %d strict_order 4 steps = %d", i + 1, o4[i]);
			TAP_OK(letters(users[i], NULL, 4, 86400, re) == r4[i], "user %d allow_reentry 4 steps = %d", i + 1, r4[i]);
			TAP_OK(letters(users[i], NULL, 3, 86400, re | FUNNEL_STRICT_DEDUPLICATION) == rd3[i],
				   "user %d allow_reentry + strict_deduplication = %d", i + 1, rd3[i]);
		}
	}
	/* e-commerce: begin_checkout(1,3) view(2) complete(3 or 4) */
	{
		int64_t		ts1[] = {100, 200, 300, 400};
		uint32_t	bc3 = S(1),
					bc4 = S(1) | S(3);
		uint32_t	u1_3[] = {bc3, S(2), bc3, S(3)},
					u1_4[] = {bc4, S(2), bc4, S(4)};

		/* ClickHouse 26.7.2; the .reference said 2 and, below, 1 */
		TAP_OK(level_of(ts1, u1_3, 4, 3, 600, FUNNEL_STRICT_ORDER, NULL) == 3, "ecommerce user 1 strict_order = 3");
		TAP_OK(level_of(ts1, u1_3, 4, 3, 600, FUNNEL_STRICT_ORDER | FUNNEL_ALLOW_REENTRY, NULL) == 3,
			   "ecommerce user 1 allow_reentry = 3");
		TAP_OK(level_of(ts1, u1_4, 4, 4, 600, FUNNEL_STRICT_ORDER, NULL) == 1, "ecommerce 4 steps = 1");
		TAP_OK(level_of(ts1, u1_4, 4, 4, 600, FUNNEL_STRICT_ORDER | FUNNEL_ALLOW_REENTRY, NULL) == 4,
			   "ecommerce 4 steps allow_reentry = 4");
	}
}

static void
test_edges(void)
{
	int64_t		t[4] = {0};
	uint32_t	m[4] = {0};
	int64_t		times[FUNNEL_MAX_STEPS];
	int			i;

	TAP_OK(level_of(t, m, 0, 3, 10, 0, NULL) == 0, "no events = 0");
	/* window 0: steps at the same instant only */
	t[0] = 5; m[0] = S(1);
	t[1] = 5; m[1] = S(2);
	t[2] = 6; m[2] = S(3);
	TAP_OK(level_of(t, m, 3, 3, 0, 0, NULL) == 2, "window 0 = same instant");
	TAP_OK(level_of(t, m, 3, 3, 1, 0, times) == 3 && times[0] == 5 && times[2] == 6,
		   "window inclusive");
	/* extremes: no signed overflow on the window test */
	t[0] = -1; m[0] = S(1);
	t[1] = INT64_MAX - 1; m[1] = S(2);
	TAP_OK(level_of(t, m, 2, 2, INT64_MAX, 0, NULL) == 2, "span INT64_MAX, window INT64_MAX");
	TAP_OK(level_of(t, m, 2, 2, INT64_MAX - 1, 0, NULL) == 1, "span INT64_MAX, window one less");
	t[0] = INT64_MIN + 1;
	TAP_OK(level_of(t, m, 2, 2, INT64_MAX, 0, NULL) == 1, "span beyond int64, no overflow");
	/* 32 steps, one event per step, all bits in one event */
	{
		FunnelEvent ev[32];

		for (i = 0; i < 32; i++)
		{
			ev[i].ts = 100 - i;		/* reverse order: exercise the sort */
			ev[i].mask = S(32 - i);
			ev[i].seq = (uint32_t) i;
		}
		funnel_sort(ev, 32);
		TAP_OK(funnel_scan(ev, 32, 32, 1000, 0, times, NULL) == 32 &&
			   times[0] == 69 && times[31] == 100, "32 steps");
		ev[0].ts = 7;
		ev[0].mask = 0xFFFFFFFFu;
		TAP_OK(funnel_scan(ev, 1, 32, 0, 0, NULL, NULL) == 32, "one event, all 32 steps");
		TAP_OK(funnel_scan(ev, 1, 32, 0, FUNNEL_STRICT_ONCE, NULL, NULL) == 1,
			   "one event, all 32 steps, strict_once");
		TAP_OK(funnel_scan(ev, 1, 33, 0, 0, NULL, NULL) == 0, "33 steps refused by the core");
	}
	/*
	 * strict_increase as ClickHouse: one chain per level, overwritten by the
	 * latest event (ClickHouse issue #93789): b@2 replaces b@1 and c@2 is not
	 * later than it.  strict_once keeps every chain, so it finds a b c.
	 */
	{
		int64_t		ts[] = {0, 1, 2, 2};
		uint32_t	ms[] = {S(1), S(2), S(2), S(3)};

		TAP_OK(level_of(ts, ms, 4, 3, 10, FUNNEL_STRICT_INCREASE, times) == 2 &&
			   times[0] == 0 && times[1] == 1,
			   "strict_increase: the latest step-2 event overwrites the chain");
		TAP_OK(level_of(ts, ms, 4, 3, 10, FUNNEL_STRICT_INCREASE | FUNNEL_STRICT_ONCE, times) == 3 &&
			   times[0] == 0 && times[1] == 1 && times[2] == 2,
			   "strict_increase with strict_once keeps the earlier step-2 event");
	}
	/*
	 * strict_once with strict_deduplication: ties follow the arrival order.
	 * ab@5, b@5, c@6: ab's step-2 entry has no other row for step 1, b's
	 * extends ab: level 2, then c: 3.  b@5 arriving first: b's step-2 entry
	 * extends ab, and ab's own step-2 entry is a repeat: the search stops at 2.
	 */
	{
		int64_t		ts[] = {5, 5, 6};
		uint32_t	ms[] = {S(1) | S(2), S(2), S(3)};
		uint32_t	rv[] = {S(2), S(1) | S(2), S(3)};
		uint32_t	f = FUNNEL_STRICT_ONCE | FUNNEL_STRICT_DEDUPLICATION;

		TAP_OK(level_of(ts, ms, 3, 3, 10, f, NULL) == 3, "once+dedup: ab, b, c = 3");
		TAP_OK(level_of(ts, rv, 3, 3, 10, f, NULL) == 2, "once+dedup: b, ab, c = 2");
		TAP_OK(level_of(ts, rv, 3, 3, 10, FUNNEL_STRICT_ONCE, NULL) == 3, "once alone: b, ab, c = 3");
	}
	/* step times: first chain to complete, latest start for it */
	{
		int64_t		ts[] = {0, 5, 6, 7, 20, 21, 22};
		uint32_t	ms[] = {S(1), S(1), S(2), S(3), S(1), S(2), S(3)};

		TAP_OK(level_of(ts, ms, 7, 3, 10, 0, times) == 3 && times[0] == 5 &&
			   times[1] == 6 && times[2] == 7, "step times 5,6,7");
	}
	/* strict_once slow path: rows at one instant sharing steps */
	{
		int64_t		ts[] = {1, 1, 1};
		uint32_t	ms[] = {S(1) | S(2), S(2) | S(3), S(1)};

		TAP_OK(level_of(ts, ms, 3, 3, 0, FUNNEL_STRICT_ONCE, times) == 3,
			   "strict_once matching: a=1, ab=2, bc=3");
		TAP_OK(level_of(ts, ms, 2, 3, 0, FUNNEL_STRICT_ONCE, times) == 2,
			   "strict_once matching without the spare step-1 row");
	}
}

/*
 * ---- brute force: ClickHouse 26.7's windowFunnel, literally ----
 *
 * Entries (ts, step, row) in that order, one per step a row matches (step 0
 * for a row matching no step); without strict_once one (first, last) pair per
 * level, overwritten by the latest entry; with strict_once every chain (its
 * rows) in a list per level.  Exponential in the worst case: small inputs.
 */

typedef struct Entry
{
	int64_t		ts;
	int			step;			/* 0 = matches no step (strict_order) */
	int			row;
} Entry;

typedef struct Chain
{
	int64_t		first;
	int64_t		last;
	int			rows[FUNNEL_MAX_STEPS];
} Chain;

#define BF_CHAINS 20000

static Entry bf_e[512];
static Chain bf_lists[FUNNEL_MAX_STEPS][BF_CHAINS];
static int	bf_len[FUNNEL_MAX_STEPS];
static int	bf_overflow;

static int
bf_top(const int *nonempty, int nsteps)
{
	int			k;

	for (k = nsteps; k >= 1; k--)
		if (nonempty[k - 1])
			return k;
	return 0;
}

static int
brute_force(FunnelEvent *ev, int n, int nsteps, int64_t window, uint32_t flags)
{
	int			i,
				k,
				p,
				ne = 0;
	int			has[FUNNEL_MAX_STEPS] = {0};
	int64_t		first[FUNNEL_MAX_STEPS],
				last[FUNNEL_MAX_STEPS];
	int			first_event = 0;
	int			once = (flags & FUNNEL_STRICT_ONCE) != 0;

	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS)
		return 0;
	/* ev is sorted by (ts, arrival); rows matching no step: strict_order only */
	for (i = 0; i < n; i++)
	{
		uint32_t	m = ev[i].mask & (nsteps == 32 ? 0xFFFFFFFFu : ((1u << nsteps) - 1));

		if (m == 0 && (flags & FUNNEL_STRICT_ORDER))
		{
			bf_e[ne].ts = ev[i].ts;
			bf_e[ne].step = 0;
			bf_e[ne].row = i;
			ne++;
		}
		for (k = 1; k <= nsteps; k++)
			if (m & S(k))
			{
				bf_e[ne].ts = ev[i].ts;
				bf_e[ne].step = k;
				bf_e[ne].row = i;
				ne++;
			}
	}
	/* stable: (ts, step), rows stay in arrival order */
	for (i = 1; i < ne; i++)
	{
		Entry		x = bf_e[i];
		int			j = i;

		while (j > 0 && (bf_e[j - 1].ts > x.ts ||
						 (bf_e[j - 1].ts == x.ts && bf_e[j - 1].step > x.step)))
		{
			bf_e[j] = bf_e[j - 1];
			j--;
		}
		bf_e[j] = x;
	}
	memset(bf_len, 0, sizeof(bf_len));
	for (p = 0; p < ne; p++)
	{
		const Entry *e = &bf_e[p];
		int			idx = e->step - 1;

		if ((flags & FUNNEL_STRICT_ORDER) && idx == -1)
		{
			if (first_event)
				break;
			continue;
		}
		if (idx == -1)
			continue;
		if (idx == 0)
		{
			if (once)
			{
				if (bf_len[0] >= BF_CHAINS)
				{
					bf_overflow++;
					return -1;
				}
				bf_lists[0][bf_len[0]].first = e->ts;
				bf_lists[0][bf_len[0]].last = e->ts;
				bf_lists[0][bf_len[0]].rows[0] = e->row;
				bf_len[0]++;
				has[0] = 1;
			}
			else
			{
				has[0] = 1;
				first[0] = last[0] = e->ts;
			}
			first_event = 1;
		}
		else if ((flags & FUNNEL_STRICT_DEDUPLICATION) && has[idx])
			return bf_top(has, nsteps);
		else if ((flags & FUNNEL_STRICT_ORDER) && first_event && !has[idx - 1])
		{
			if (flags & FUNNEL_ALLOW_REENTRY)
				continue;
			return bf_top(has, nsteps);
		}
		else if (has[idx - 1] && !once)
		{
			int			ok = (uint64_t) e->ts - (uint64_t) first[idx - 1] <= (uint64_t) window;

			if (flags & FUNNEL_STRICT_INCREASE)
				ok = ok && last[idx - 1] < e->ts;
			if (ok)
			{
				has[idx] = 1;
				first[idx] = first[idx - 1];
				last[idx] = e->ts;
				if (idx + 1 == nsteps)
					return nsteps;
			}
		}
		else if (has[idx - 1])
		{
			int			c,
						len = bf_len[idx - 1];

			for (c = 0; c < len; c++)
			{
				Chain	   *ch = &bf_lists[idx - 1][c];
				int			ok = (uint64_t) e->ts - (uint64_t) ch->first <= (uint64_t) window,
							j;

				for (j = 0; j < idx && ok; j++)
					ok = ch->rows[j] != e->row;
				if (ok && (flags & FUNNEL_STRICT_INCREASE))
					ok = ch->last < e->ts;
				if (!ok)
					continue;
				if (bf_len[idx] >= BF_CHAINS)
				{
					bf_overflow++;
					return -1;
				}
				bf_lists[idx][bf_len[idx]] = *ch;
				bf_lists[idx][bf_len[idx]].last = e->ts;
				bf_lists[idx][bf_len[idx]].rows[idx] = e->row;
				bf_len[idx]++;
				has[idx] = 1;
				if (idx + 1 == nsteps)
					return nsteps;
			}
		}
	}
	return bf_top(has, nsteps);
}


static uint32_t
rnd(uint32_t bound)
{
	return (uint32_t) (tap_random() % bound);
}

static void
test_random(void)
{
	int			iter,
				mismatches = 0,
				badtimes = 0,
				slow_cases = 0;
	char		first_bad[256] = "";

	for (iter = 0; iter < 60000; iter++)
	{
		FunnelEvent ev[12];
		int			n = (int) rnd(11),
					nsteps = 1 + (int) rnd(4),
					i,
					got,
					want;
		int64_t		window = (int64_t) rnd(6);
		uint32_t	flags = rnd(32);
		int64_t		times[FUNNEL_MAX_STEPS];

		if ((flags & FUNNEL_ALLOW_REENTRY) && !(flags & FUNNEL_STRICT_ORDER))
			flags &= ~FUNNEL_ALLOW_REENTRY;
		for (i = 0; i < n; i++)
		{
			ev[i].ts = (int64_t) rnd(8);
			/* mostly single steps, sometimes several, sometimes none */
			switch (rnd(4))
			{
				case 0:
					ev[i].mask = rnd(1u << nsteps);
					break;
				default:
					ev[i].mask = S(1 + rnd((uint32_t) nsteps));
			}
			ev[i].seq = (uint32_t) i;
		}
		if (!(flags & FUNNEL_STRICT_ORDER))
		{
			int			kept = 0;

			for (i = 0; i < n; i++)
				if (ev[i].mask)
					ev[kept++] = ev[i];
			n = kept;
		}
		funnel_sort(ev, (size_t) n);
		for (i = 1; i < n; i++)
			if ((flags & FUNNEL_STRICT_ONCE) && ev[i].ts == ev[i - 1].ts &&
				((ev[i].mask & (ev[i].mask - 1)) || (ev[i - 1].mask & (ev[i - 1].mask - 1))))
				slow_cases++;
		got = funnel_scan(ev, (size_t) n, nsteps, window, flags, times, NULL);
		want = brute_force(ev, n, nsteps, window, flags);
		if (want < 0)
			continue;			/* too many chains for the brute force */
		if (got != want)
		{
			if (mismatches++ == 0)
			{
				int			len = snprintf(first_bad, sizeof(first_bad),
										   "iter %d steps %d window %lld flags %u got %d want %d:",
										   iter, nsteps, (long long) window, flags, got, want);

				for (i = 0; i < n && len < 200; i++)
					len += snprintf(first_bad + len, sizeof(first_bad) - len, " %lld/%x",
									(long long) ev[i].ts, ev[i].mask);
			}
			continue;
		}
		/* the step times form a valid chain of that length */
		for (i = 0; i < got; i++)
		{
			int			j,
						found = 0;

			for (j = 0; j < n; j++)
				if (ev[j].ts == times[i] && (ev[j].mask & S(i + 1)))
					found = 1;
			if (!found || (i > 0 && times[i] < times[i - 1]) ||
				(i > 0 && (flags & FUNNEL_STRICT_INCREASE) && times[i] <= times[i - 1]) ||
				(uint64_t) times[i] - (uint64_t) times[0] > (uint64_t) window)
			{
				badtimes++;
				break;
			}
		}
	}
	TAP_OK(mismatches == 0, "60000 random event sets agree with the brute force (%d mismatches) %s",
		   mismatches, first_bad);
	TAP_OK(badtimes == 0, "step times form a valid chain (%d bad)", badtimes);
	TAP_OK(bf_overflow < 100, "the brute force could follow almost every case (%d too big)", bf_overflow);
	TAP_OK(slow_cases > 100, "the strict_once matching path was exercised (%d)", slow_cases);
}

int
main(void)
{
	tap_seed(UINT64_C(0x2545F4914F6CDD1D));
	test_parse();
	test_clickhouse();
	test_edges();
	test_random();
	return tap_done();
}
