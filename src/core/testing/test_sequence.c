/*
 * test_sequence.c
 *		Unit tests of src/core/sequence.c: the pattern language and its
 *		errors, hand-computed matches and counts, and a seeded randomised
 *		comparison with a literal (exponential, unmemoised) rendering of
 *		ClickHouse's backtracking and automaton.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sequence.h"
#include "tap.h"

#define C(i) ((uint32_t) 1 << ((i) - 1))

static SeqPattern pat;

static int
parse(const char *text, int nconds)
{
	size_t		pos;

	return seq_parse(text, strlen(text), nconds, &pat, &pos);
}

/* events at seconds ts[i] with condition sets m[i] */
static int
match_of(const char *p, const int64_t *ts, const uint32_t *m, int n)
{
	SeqEvent	ev[64];
	int			i;

	for (i = 0; i < n; i++)
	{
		ev[i].ts = ts[i] * 1000000;
		ev[i].mask = m[i];
		ev[i].pad = 0;
	}
	seq_sort(ev, (size_t) n);
	if (parse(p, 4) != SEQ_PARSE_OK)
		return -9;
	return seq_match(&pat, ev, (size_t) n, NULL);
}

static int64_t
count_of(const char *p, const int64_t *ts, const uint32_t *m, int n)
{
	SeqEvent	ev[64];
	int			i;

	for (i = 0; i < n; i++)
	{
		ev[i].ts = ts[i] * 1000000;
		ev[i].mask = m[i];
		ev[i].pad = 0;
	}
	seq_sort(ev, (size_t) n);
	if (parse(p, 4) != SEQ_PARSE_OK)
		return -9;
	return seq_count(&pat, ev, (size_t) n, NULL);
}

static void
test_parse(void)
{
	size_t		pos;

	TAP_OK(parse("(?1)(?2)", 2) == SEQ_PARSE_OK && pat.nactions == 3 && !pat.has_time &&
		   pat.conds == 3, "(?1)(?2)");
	TAP_OK(parse("(?1).*(?t<=5)(?2).", 2) == SEQ_PARSE_OK && pat.nactions == 6 && pat.has_time &&
		   pat.actions[3].type == SEQ_TIME_LE && pat.actions[3].usecs == 5000000, "time condition");
	TAP_OK(parse("", 1) == SEQ_PARSE_OK && pat.nactions == 1, "empty pattern");
	TAP_OK(parse("(?3)", 2) == SEQ_PARSE_COND_RANGE, "condition beyond the arguments");
	TAP_OK(parse("(?0)", 2) == SEQ_PARSE_COND_RANGE, "condition 0");
	TAP_OK(parse("(?33)", 40) == SEQ_PARSE_COND_RANGE, "condition 33");
	TAP_OK(seq_parse("(?1)(?x)", 8, 2, &pat, &pos) == SEQ_PARSE_NUMBER && pos == 6, "no number, position");
	TAP_OK(parse("(?t!5)", 2) == SEQ_PARSE_TIME_OP, "unknown time operator");
	TAP_OK(parse("(?1", 2) == SEQ_PARSE_CLOSE, "no closing parenthesis");
	TAP_OK(parse("(?1) (?2)", 2) == SEQ_PARSE_SYNTAX, "blank");
	TAP_OK(parse("(?1)(?t<1)(?t>2)(?2)", 2) == SEQ_PARSE_TIME_PLACE, "two time conditions in a row");
	TAP_OK(parse("(?t<1)(?1)", 2) == SEQ_PARSE_OK, "time condition first (after the implicit .*)");
	TAP_OK(parse("(?t<99999999999999999999)", 2) == SEQ_PARSE_NUMBER, "number overflow");
	{
		char		big[SEQ_MAX_ACTIONS * 4 + 8];
		int			i;

		big[0] = '\0';
		for (i = 0; i < SEQ_MAX_ACTIONS + 1; i++)
			strcat(big, ".");
		TAP_OK(parse(big, 2) == SEQ_PARSE_TOO_LONG, "too many elements");
		big[SEQ_MAX_ACTIONS] = '\0';
		TAP_OK(parse(big, 2) == SEQ_PARSE_OK, "as many elements as allowed");
	}
}

static void
test_cases(void)
{
	/* whitepaper (1) -> pricing (2) within 7 days -> demo (3) */
	int64_t		t1[] = {0, 86400 * 3, 86400 * 5};
	uint32_t	m1[] = {C(1), C(2), C(3)};
	int64_t		t2[] = {0, 86400 * 8, 86400 * 9};

	TAP_OK(match_of("(?1)(?t<=604800)(?2).*(?3)", t1, m1, 3) == 1, "within 7 days");
	TAP_OK(match_of("(?1)(?t<=604800)(?2).*(?3)", t2, m1, 3) == 0, "after 8 days");
	/* .* makes the current event the base: (?t..) right after it always holds */
	TAP_OK(match_of("(?1).*(?t<=604800)(?2).*(?3)", t2, m1, 3) == 1,
		   ".*(?t<=s) compares an event with itself (ClickHouse 26.7.2: 1)");
	TAP_OK(match_of("(?1)(?2)(?3)", t1, m1, 3) == 1, "adjacent");
	TAP_OK(match_of("(?2)(?1)", t1, m1, 3) == 0, "wrong order");
	TAP_OK(match_of("(?4)", t1, m1, 3) == 0, "condition never met");
	{
		int64_t		t[] = {1, 2, 3, 4, 5, 6};
		uint32_t	m[] = {C(1), C(2), C(1), C(2), C(1), C(2)};

		TAP_OK(count_of("(?1)(?2)", t, m, 6) == 3, "three non-overlapping a b");
		TAP_OK(count_of("(?1).*(?2)", t, m, 6) == 3, "three with .*");
		TAP_OK(count_of("(?1)", t, m, 6) == 3, "three a");
		TAP_OK(count_of("", t, m, 6) == 6, "empty pattern counts every event");
		/* ClickHouse 26.7.2 answers 1 to both (checked with chdb) */
		TAP_OK(count_of("(?1)(?t>=2)(?2)", t, m, 6) == 1, "(?t>=2) skips ahead: a@1 .. b@4, then none");
		TAP_OK(count_of("(?1).(?t>=2)(?2)", t, m, 6) == 1, "a, any, then b 2 s after the any");
	}
	/* ties: at one instant rows are ordered by their condition sets */
	{
		int64_t		t[] = {5, 5};
		uint32_t	m[] = {C(2), C(1)};

		TAP_OK(match_of("(?1)(?2)", t, m, 2) == 1, "tie: condition 1 first");
		TAP_OK(match_of("(?2)(?1)", t, m, 2) == 0, "tie: not condition 2 first");
	}
}

/* ---- ClickHouse's algorithms, literally (small inputs only) ---- */

static SeqEvent rv[32];
static uint32_t rn;
static int	overflow;

static int
ch_time(const SeqAction *x, int64_t te, int64_t tb)
{
	uint64_t	d = (uint64_t) te - (uint64_t) tb;

	switch (x->type)
	{
		case SEQ_TIME_LE:
			return d <= x->usecs;
		case SEQ_TIME_LT:
			return d < x->usecs;
		case SEQ_TIME_GE:
			return d >= x->usecs;
		case SEQ_TIME_GT:
			return d > x->usecs;
		default:
			return d == x->usecs;
	}
}

static int
ch_backtrack(uint32_t start, uint32_t *endp)
{
	uint32_t	st_a[4096],
				st_e[4096],
				st_b[4096];
	int			depth = 0;
	uint32_t	a = 0,
				e = start,
				b = start;
	uint32_t	A = (uint32_t) pat.nactions;
	long		iter = 0;

#define BT() \
	do { \
		int ok_ = 0; \
		while (depth > 0) { \
			depth--; a = st_a[depth]; e = st_e[depth] + 1; b = st_b[depth]; \
			if (e != rn) { ok_ = 1; break; } \
		} \
		if (!ok_) goto out; \
	} while (0)
#define PUSH() \
	do { if (depth == 4096) { overflow++; return -1; } \
		st_a[depth] = a; st_e[depth] = e; st_b[depth] = b; depth++; } while (0)

	while (a < A && e < rn)
	{
		const SeqAction *x = &pat.actions[a];

		if (++iter > 2000000)
		{
			overflow++;
			return -1;
		}
		if (x->type == SEQ_EVENT)
		{
			if (rv[e].mask & ((uint32_t) 1 << x->cond))
			{
				b = e;
				a++;
				e++;
			}
			else
				BT();
		}
		else if (x->type == SEQ_ANY)
		{
			b = e;
			a++;
			e++;
		}
		else if (x->type == SEQ_KLEENE)
		{
			PUSH();
			b = e;
			a++;
		}
		else if (x->type == SEQ_TIME_LE || x->type == SEQ_TIME_LT)
		{
			if (ch_time(x, rv[e].ts, rv[b].ts))
			{
				PUSH();
				b = e;
				a++;
			}
			else
				BT();
		}
		else
		{
			if (ch_time(x, rv[e].ts, rv[b].ts))
			{
				PUSH();
				b = e;
				a++;
			}
			else if (++e == rn)
				BT();
		}
	}
out:
	while (a < A && (pat.actions[a].type == SEQ_KLEENE || pat.actions[a].type == SEQ_TIME_LE ||
					 pat.actions[a].type == SEQ_TIME_LT ||
					 (pat.actions[a].type == SEQ_TIME_GE && pat.actions[a].usecs == 0)))
		a++;
	if (e == start)
		e++;
	*endp = e;
	return a == A;
#undef BT
#undef PUSH
}

static int
ch_match(void)
{
	uint32_t	end;

	if (!pat.has_time)
	{
		/* the automaton equals the backtracking without time conditions */
		return ch_backtrack(0, &end);
	}
	return ch_backtrack(0, &end);
}

static int64_t
ch_count(void)
{
	uint32_t	pos = 0,
				end;
	int64_t		c = 0;
	int			r;

	while (pos < rn && (r = ch_backtrack(pos, &end)) > 0)
	{
		c++;
		pos = end;
	}
	if (pos < rn && r < 0)
		return -1;
	return c;
}

static uint32_t
rnd(uint32_t bound)
{
	return (uint32_t) (tap_random() % bound);
}

static void
test_random(void)
{
	static const char *elems[] = {"(?1)", "(?2)", "(?3)", ".", ".*", "(?t<=3)", "(?t<2)",
	"(?t>=2)", "(?t>1)", "(?t==2)", "(?t>=0)", "(?1)", "(?2)"};
	int			iter,
				bad_match = 0,
				bad_count = 0,
				compared = 0,
				matches = 0;
	char		first_bad[300] = "";

	for (iter = 0; iter < 40000; iter++)
	{
		char		p[128] = "";
		int			ne = 1 + (int) rnd(5),
					i;
		int64_t		t = 0;
		int			mres;
		int64_t		cres,
					want_c;
		int			want_m;

		for (i = 0; i < ne; i++)
			strcat(p, elems[rnd(sizeof(elems) / sizeof(elems[0]))]);
		if (parse(p, 3) != SEQ_PARSE_OK)
			continue;
		rn = rnd(14);
		for (i = 0; i < (int) rn; i++)
		{
			t += rnd(3);		/* ties included */
			rv[i].ts = t * 1000000;
			rv[i].mask = 1 + rnd(7);
			rv[i].pad = 0;
		}
		seq_sort(rv, rn);
		mres = seq_match(&pat, rv, rn, NULL);
		cres = seq_count(&pat, rv, rn, NULL);
		{
			/* ClickHouse checks first that every named condition occurs */
			uint32_t	met = 0;

			for (i = 0; i < (int) rn; i++)
				met |= rv[i].mask;
			if ((met & pat.conds) != pat.conds)
			{
				want_m = 0;
				want_c = 0;
			}
			else
			{
				want_m = ch_match();
				want_c = ch_count();
			}
		}
		if (want_m < 0 || want_c < 0)
			continue;
		compared++;
		matches += want_m;
		if (mres != want_m || cres != want_c)
		{
			if (mres != want_m)
				bad_match++;
			else
				bad_count++;
			if (first_bad[0] == '\0')
			{
				int			len = snprintf(first_bad, sizeof(first_bad), "%s got %d/%lld want %d/%lld:",
										   p, mres, (long long) cres, want_m, (long long) want_c);

				for (i = 0; i < (int) rn && len < 250; i++)
					len += snprintf(first_bad + len, sizeof(first_bad) - len, " %lld/%u",
									(long long) (rv[i].ts / 1000000), rv[i].mask);
			}
		}
	}
	TAP_OK(bad_match == 0 && bad_count == 0,
		   "%d random patterns x events agree with ClickHouse's literal backtracking (%d match, %d count differ) %s",
		   compared, bad_match, bad_count, first_bad);
	TAP_OK(compared > 20000 && matches > 2000, "the comparison is not vacuous (%d compared, %d matches)",
		   compared, matches);
}

/* hostile input: polynomial, not exponential */
static void
test_hostile(void)
{
	static SeqEvent ev[20000];
	size_t		n = 20000,
				i;
	int			r;
	int64_t		c;

	for (i = 0; i < n; i++)
	{
		ev[i].ts = (int64_t) i * 1000000;
		ev[i].mask = C(1);
		ev[i].pad = 0;
	}
	ev[n - 1].mask = C(2);
	TAP_OK(parse("(?1).*(?1).*(?1).*(?1).*(?1)(?t>100000)(?2)", 2) == SEQ_PARSE_OK, "hostile pattern parses");
	r = seq_match(&pat, ev, n, NULL);
	TAP_OK(r == 0, "nested .* over 20000 events: no match, in polynomial time");
	TAP_OK(parse("(?1).*(?1).*(?1)(?t<=5000)(?2)", 2) == SEQ_PARSE_OK, "second hostile pattern");
	c = seq_count(&pat, ev, n, NULL);
	TAP_OK(c == 1, "count with a match only at the end (%lld)", (long long) c);
}

int
main(void)
{
	tap_seed(UINT64_C(0x9E3779B97F4A7C15));
	test_parse();
	test_cases();
	test_random();
	test_hostile();
	return tap_done();
}
