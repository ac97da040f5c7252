/*
 * funnel.c
 *		Scan of the windowed conversion funnel (see funnel.h), with ClickHouse
 *		26.7's windowFunnel semantics in every mode.
 *
 * ClickHouse turns each row into entries (timestamp, step), one per step the
 * row matches, plus (timestamp, 0) for a row matching no step under
 * strict_order, and scans them in (timestamp, step, row) order, rows in the
 * order they were added.  The scan here visits the same entries in the same
 * order: for each timestamp, the rows matching no step first, then step 1 of
 * every row, step 2 of every row, and so on.  The caller sorts the rows by
 * (timestamp, arrival order): funnel_sort.
 *
 * Without strict_once ClickHouse keeps one chain per level k: (first, last),
 * the step-1 time and the step-k time of the latest chain that reached k.  A
 * step-k entry at time t extends the level k-1 chain when t - first <= window
 * (and, with strict_increase, last < t), and overwrites level k with it.  The
 * stop rules are checked before each entry:
 *
 *	strict_order			a row matching no step after some step 1, or a
 *							step-k entry while level k-1 was never reached (after
 *							some step 1; with allow_reentry that entry is only
 *							skipped);
 *	strict_deduplication	a step-k entry (k >= 2) when level k was reached.
 *
 * The answer is the highest level reached (the levels reached are always
 * 1..L).  scan_direct() does exactly this.
 *
 * With strict_once ClickHouse keeps every chain (each row used once per
 * chain) in a list per level and never forgets one, so that the answer only
 * depends on whether some chain reaches each level.  scan_once() decides
 * that without the lists, whose size grows with the product of the rows at a
 * timestamp (ClickHouse's own cost, and 1.0.0's strict_once slowdown):
 *
 *  - chains that end before the current timestamp t are summarised per level
 *	  b by the latest step-1 time of such a chain ("committed"): it leaves the
 *	  most room for the steps to come, and it does not increase with b;
 *  - a step-k entry of row u at time t extends some chain iff, for the
 *	  highest committed level b < k whose chain is inside the window of t (or
 *	  b = 0, a chain starting at t), the steps b+1..k-1 can be served by
 *	  distinct rows at time t other than u: a bipartite matching of at most 31
 *	  steps (with strict_increase the steps cannot share t: b must be k-1);
 *  - after the timestamp, level k's committed chain is the one built on the
 *	  lowest b whose steps b+1..k can be matched at t.
 *
 * The matching keeps, for each step, only its first 33 rows at t: a step
 * with more candidates than the steps to serve (at most 32, one of them
 * possibly excluded) can always be served last, so the answer is the same,
 * and the cost of a timestamp is bounded by the steps, not by its rows.
 *
 * Cost: O(rows x steps) for the scan; the matching, only at timestamps where
 * several rows match and one of them matches several steps, at most about
 * 32^4 elementary steps per such timestamp.  The caller sorts first:
 * O(n log n).
 */
#include "funnel.h"

#include <stdlib.h>
#include <string.h>

#define NLEVELS (FUNNEL_MAX_STEPS + 1)	/* levels 0..32 */
#define MATCH_KEEP 33			/* rows kept per step for the matching */

typedef struct Scan
{
	int			nsteps;
	int64_t		window;
	uint32_t	flags;
	int			want_times;
	int			best;
	int64_t		best_times[FUNNEL_MAX_STEPS];
	/* the chain of each level: step times (times[k][0..k-1]) */
	int64_t		times[NLEVELS][FUNNEL_MAX_STEPS];
} Scan;

static inline uint32_t
step_bit(int step)
{
	return (uint32_t) 1 << (step - 1);
}

/* range of steps a..c as a bit set (empty when a > c) */
static inline uint32_t
step_range(int a, int c)
{
	uint32_t	hi,
				lo;

	if (a > c)
		return 0;
	hi = c >= 32 ? 0xFFFFFFFFu : (((uint32_t) 1 << c) - 1);
	lo = ((uint32_t) 1 << (a - 1)) - 1;
	return hi & ~lo;
}

/* t - first <= window, for first <= t, without signed overflow */
static inline int
in_window(int64_t first, int64_t t, int64_t window)
{
	return (uint64_t) t - (uint64_t) first <= (uint64_t) window;
}

static inline void
note_best(Scan *s, int k, const int64_t *chain)
{
	if (k <= s->best)
		return;
	s->best = k;
	if (s->want_times)
		memcpy(s->best_times, chain, sizeof(int64_t) * k);
}

/* times[dst] = times[src][0..b-1], then t for steps b+1..k */
static inline void
set_times(Scan *s, int64_t *dst, const int64_t *src, int b, int k, int64_t t)
{
	int			i;

	if (!s->want_times)
		return;
	if (b > 0 && dst != src)
		memmove(dst, src, sizeof(int64_t) * b);
	for (i = b; i < k; i++)
		dst[i] = t;
}

/* ---------------------------------------------------------------------------
 * Without strict_once: ClickHouse's scan, entry by entry
 * ---------------------------------------------------------------------------
 */
static void
scan_direct(Scan *s, const FunnelEvent *ev, size_t n, uint32_t stepmask,
			const FunnelHooks *hooks)
{
	int			valid[NLEVELS + 1] = {0};
	int64_t		first[NLEVELS + 1];
	int64_t		last[NLEVELS + 1];
	uint32_t	flags = s->flags;
	int			nsteps = s->nsteps;
	size_t		i = 0;
	size_t		groups = 0;

	valid[0] = 1;
	while (i < n)
	{
		size_t		g0 = i,
					g1;
		int64_t		t = ev[i].ts;
		uint32_t	all = 0;
		int			marker = 0;
		int			k;

		for (; i < n && ev[i].ts == t; i++)
		{
			uint32_t	m = ev[i].mask & stepmask;

			all |= m;
			marker |= m == 0;
		}
		g1 = i;
		if (hooks && hooks->interrupt && (++groups & 0xFFF) == 0)
			hooks->interrupt();

		/* entries (t, 0) come first */
		if (marker && (flags & FUNNEL_STRICT_ORDER) && valid[1])
			return;

		for (k = 1; k <= nsteps; k++)
		{
			size_t		r;
			int			count = 0;

			if (!(all & step_bit(k)))
				continue;
			/* equal entries (t, k) act alike: only their number matters */
			for (r = g0; r < g1 && count < 2; r++)
				count += (ev[r].mask & step_bit(k)) != 0;

			if (k == 1)
			{
				valid[1] = 1;
				first[1] = last[1] = t;
				set_times(s, s->times[1], s->times[0], 0, 1, t);
				note_best(s, 1, s->times[1]);
				continue;
			}
			if ((flags & FUNNEL_STRICT_DEDUPLICATION) && valid[k])
				return;
			if ((flags & FUNNEL_STRICT_ORDER) && valid[1] && !valid[k - 1])
			{
				if (flags & FUNNEL_ALLOW_REENTRY)
					continue;
				return;
			}
			if (!valid[k - 1] || !in_window(first[k - 1], t, s->window))
				continue;
			if ((flags & FUNNEL_STRICT_INCREASE) && !(last[k - 1] < t))
				continue;
			valid[k] = 1;
			first[k] = first[k - 1];
			last[k] = t;
			set_times(s, s->times[k], s->times[k - 1], k - 1, k, t);
			note_best(s, k, s->times[k]);
			if (k == nsteps)
				return;
			/* a second equal entry finds level k reached */
			if (count > 1 && (flags & FUNNEL_STRICT_DEDUPLICATION))
				return;
		}
	}
}

/* ---------------------------------------------------------------------------
 * strict_once: existence of chains, with a matching at tied timestamps
 * ---------------------------------------------------------------------------
 */

/* the rows of one timestamp, as seen by the matching */
typedef struct Tie
{
	int			nsteps;
	int			nrows[NLEVELS];	/* rows kept per step (<= MATCH_KEEP) */
	int			row[NLEVELS][MATCH_KEEP];	/* their indices in the group */
	int			match[NLEVELS];	/* step -> row serving it, or -1 */
	int		   *owner;			/* row -> step it serves, or 0 */
	int		   *seen;			/* row -> stamp of the last visit */
	int			stamp;
	int			excluded;		/* row that may serve nothing, or -1 */
	size_t		capacity;		/* rows owner and seen have room for */
} Tie;

static int
tie_augment(Tie *tie, int step)
{
	int			j;

	for (j = 0; j < tie->nrows[step]; j++)
	{
		int			r = tie->row[step][j];

		if (r == tie->excluded || tie->seen[r] == tie->stamp)
			continue;
		tie->seen[r] = tie->stamp;
		if (tie->owner[r] == 0 || tie_augment(tie, tie->owner[r]))
		{
			tie->owner[r] = step;
			tie->match[step] = r;
			return 1;
		}
	}
	return 0;
}

static void
tie_reset(Tie *tie, int a, int c)
{
	int			k;

	for (k = a; k <= c; k++)
		if (tie->match[k] >= 0)
		{
			tie->owner[tie->match[k]] = 0;
			tie->match[k] = -1;
		}
}

/* can steps a..c be served by distinct rows (other than tie->excluded)? */
static int
tie_matchable(Tie *tie, int a, int c)
{
	int			k,
				ok = 1;

	for (k = a; k <= c && ok; k++)
	{
		tie->stamp++;
		ok = tie_augment(tie, k);
	}
	return ok;
}

static void
scan_once(Scan *s, const FunnelEvent *ev, size_t n, uint32_t stepmask,
		  const FunnelHooks *hooks, Tie *tie, int *status)
{
	uint32_t	flags = s->flags;
	int			nsteps = s->nsteps;
	int			reached[NLEVELS + 1] = {0};	/* some chain reached level k */
	int			cvalid[NLEVELS + 1] = {0};	/* committed chains */
	int64_t		cfirst[NLEVELS + 1];
	int64_t		ctimes[NLEVELS][FUNNEL_MAX_STEPS];
	int			newvalid[NLEVELS + 1];
	int64_t		newfirst[NLEVELS + 1];
	int			newbase[NLEVELS + 1];
	size_t		i = 0;
	size_t		groups = 0;

	tie->nsteps = nsteps;
	cvalid[0] = 1;
	while (i < n)
	{
		size_t		g0 = i,
					g1;
		int64_t		t = ev[i].ts;
		uint32_t	all = 0;
		int			marker = 0,
					multi = 0;
		int			general;
		int			B,
					k;

		for (; i < n && ev[i].ts == t; i++)
		{
			uint32_t	m = ev[i].mask & stepmask;

			all |= m;
			marker |= m == 0;
			multi |= (m & (m - 1)) != 0;
		}
		g1 = i;
		if (hooks && hooks->interrupt && (++groups & 0xFFF) == 0)
			hooks->interrupt();

		if (marker && (flags & FUNNEL_STRICT_ORDER) && reached[1])
			return;
		if (all == 0)
			continue;

		/* highest committed level whose chain is inside the window of t */
		B = 0;
		while (B < nsteps && cvalid[B + 1] && in_window(cfirst[B + 1], t, s->window))
			B++;

		/*
		 * The matching is needed only when distinct entries may be the same
		 * row: several rows at t, one of them matching several steps.  (One
		 * row alone: it serves one step, handled by the same code.)
		 */
		general = multi && !(flags & FUNNEL_STRICT_INCREASE);
		if (general)
		{
			size_t		rows = g1 - g0,
						r;

			if (rows > tie->capacity)
			{
				void	   *p;
				size_t		bytes = sizeof(int) * 2 * rows;

				if (tie->owner)
				{
					if (hooks && hooks->release)
						hooks->release(tie->owner);
					else if (!(hooks && hooks->alloc))
						free(tie->owner);
				}
				p = hooks && hooks->alloc ? hooks->alloc(bytes) : malloc(bytes);
				tie->owner = p;
				if (p == NULL)
				{
					*status = -1;
					return;
				}
				tie->seen = tie->owner + rows;
				tie->capacity = rows;
			}
			for (r = 0; r < rows; r++)
			{
				tie->owner[r] = 0;
				tie->seen[r] = 0;
			}
			tie->stamp = 0;
			for (k = 1; k <= nsteps; k++)
			{
				tie->nrows[k] = 0;
				tie->match[k] = -1;
			}
			for (r = 0; r < rows; r++)
			{
				uint32_t	m = ev[g0 + r].mask & stepmask;

				while (m)
				{
					int			st = __builtin_ctz(m) + 1;

					m &= m - 1;
					if (tie->nrows[st] < MATCH_KEEP)
						tie->row[st][tie->nrows[st]++] = (int) r;
				}
			}
		}

		for (k = 1; k <= nsteps; k++)
		{
			size_t		r;
			int			b;
			int			need_rows;	/* the matching for this step's entries */
			int			all_ok = 0;

			if (!(all & step_bit(k)))
				continue;
			if (k == 1)
			{
				reached[1] = 1;
				set_times(s, ctimes[0], ctimes[0], 0, 1, t);
				note_best(s, 1, ctimes[0]);
				continue;
			}
			b = B < k - 1 ? B : k - 1;
			need_rows = general && b < k - 1;
			if (need_rows)
			{
				tie->excluded = -1;
				tie_reset(tie, 1, nsteps);
				all_ok = tie_matchable(tie, b + 1, k - 1);
			}
			for (r = g0; r < g1; r++)
			{
				int			ok;

				if (!(ev[r].mask & step_bit(k)))
					continue;
				if ((flags & FUNNEL_STRICT_DEDUPLICATION) && reached[k])
					return;
				if ((flags & FUNNEL_STRICT_ORDER) && reached[1] && !reached[k - 1])
				{
					if (flags & FUNNEL_ALLOW_REENTRY)
						continue;
					return;
				}
				if (!reached[k - 1])
					continue;
				if (flags & FUNNEL_STRICT_INCREASE)
					ok = cvalid[k - 1] && in_window(cfirst[k - 1], t, s->window);
				else if (!need_rows)
					ok = b == k - 1 || (all & step_range(b + 1, k - 1)) == step_range(b + 1, k - 1);
				else if (!all_ok)
					ok = 0;
				else if (tie->owner[r - g0] == 0)
					ok = 1;		/* a matching without this row */
				else
				{
					int			saved[NLEVELS];
					int			j;

					/* the same question without row r */
					for (j = 1; j <= nsteps; j++)
						saved[j] = tie->match[j];
					tie_reset(tie, 1, nsteps);
					tie->excluded = (int) (r - g0);
					ok = tie_matchable(tie, b + 1, k - 1);
					tie->excluded = -1;
					tie_reset(tie, 1, nsteps);
					for (j = 1; j <= nsteps; j++)
						if (saved[j] >= 0)
						{
							tie->match[j] = saved[j];
							tie->owner[saved[j]] = j;
						}
				}
				if (!ok)
					continue;
				reached[k] = 1;
				if (s->want_times && k > s->best)
				{
					int64_t		chain[FUNNEL_MAX_STEPS];
					int			base = (flags & FUNNEL_STRICT_INCREASE) ? k - 1 : b;

					memcpy(chain, ctimes[base], sizeof(int64_t) * base);
					set_times(s, chain, chain, base, k, t);
					note_best(s, k, chain);
				}
				else
					note_best(s, k, ctimes[0]);	/* not read: k <= best or no times */
				if (k == nsteps)
					return;
			}
		}

		/* commit: the chains that end at t, on the old committed ones */
		for (k = 1; k <= nsteps; k++)
		{
			newvalid[k] = 0;
			if (!(all & step_bit(k)))
				continue;
			if (flags & FUNNEL_STRICT_INCREASE)
			{
				if (k == 1)
					newbase[k] = 0;
				else if (cvalid[k - 1] && in_window(cfirst[k - 1], t, s->window))
					newbase[k] = k - 1;
				else
					continue;
			}
			else
			{
				int			b,
							top = B < k - 1 ? B : k - 1;

				for (b = 0; b <= top; b++)
				{
					uint32_t	need = step_range(b + 1, k);

					if ((all & need) != need)
						continue;
					if (general)
					{
						tie->excluded = -1;
						tie_reset(tie, 1, nsteps);
						if (!tie_matchable(tie, b + 1, k))
							continue;
					}
					break;
				}
				if (b > top)
					continue;
				newbase[k] = b;
			}
			newvalid[k] = 1;
			newfirst[k] = newbase[k] == 0 ? t : cfirst[newbase[k]];
		}
		for (k = nsteps; k >= 1; k--)
		{
			if (!newvalid[k] || (cvalid[k] && newfirst[k] <= cfirst[k]))
				continue;
			cvalid[k] = 1;
			cfirst[k] = newfirst[k];
			/* descending: the base's times are still the old ones */
			set_times(s, ctimes[k], ctimes[newbase[k]], newbase[k], k, t);
		}
	}
}

int
funnel_scan(const FunnelEvent *ev, size_t n, int nsteps, int64_t window,
			uint32_t flags, int64_t *times, const FunnelHooks *hooks)
{
	Scan		s;
	uint32_t	stepmask;
	int			status = 0;

	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS || window < 0)
		return 0;
	s.nsteps = nsteps;
	s.window = window;
	s.flags = flags;
	s.want_times = times != NULL;
	s.best = 0;
	stepmask = nsteps == 32 ? 0xFFFFFFFFu : (((uint32_t) 1 << nsteps) - 1);

	if (flags & FUNNEL_STRICT_ONCE)
	{
		Tie			tie;

		memset(&tie, 0, sizeof(tie));
		scan_once(&s, ev, n, stepmask, hooks, &tie, &status);
		if (tie.owner)
		{
			if (hooks && hooks->release)
				hooks->release(tie.owner);
			else if (!(hooks && hooks->alloc))
				free(tie.owner);
		}
	}
	else
		scan_direct(&s, ev, n, stepmask, hooks);
	if (status < 0)
		return -1;
	if (times != NULL && s.best > 0)
		memcpy(times, s.best_times, sizeof(int64_t) * s.best);
	return s.best;
}

static int
event_cmp(const void *a, const void *b)
{
	const FunnelEvent *x = a;
	const FunnelEvent *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return 0;
}

static inline int
event_less(const FunnelEvent *x, const FunnelEvent *y)
{
	return x->ts < y->ts || (x->ts == y->ts && x->seq < y->seq);
}

int
funnel_is_sorted(const FunnelEvent *ev, size_t n)
{
	size_t		i;

	for (i = 1; i < n; i++)
		if (event_less(&ev[i], &ev[i - 1]))
			return 0;
	return 1;
}

void
funnel_sort(FunnelEvent *ev, size_t n)
{
	size_t		i;

	if (n < 2 || funnel_is_sorted(ev, n))
		return;
	if (n > 24)
	{
		qsort(ev, n, sizeof(FunnelEvent), event_cmp);
		return;
	}
	/* per-lead groups are small: insertion sort beats qsort's indirection */
	for (i = 1; i < n; i++)
	{
		FunnelEvent x = ev[i];
		size_t		j = i;

		while (j > 0 && event_less(&x, &ev[j - 1]))
		{
			ev[j] = ev[j - 1];
			j--;
		}
		ev[j] = x;
	}
}

static const struct
{
	const char *name;
	uint32_t	flag;
}			mode_names[] =
{
	{"strict_deduplication", FUNNEL_STRICT_DEDUPLICATION},
	{"strict_order", FUNNEL_STRICT_ORDER},
	{"strict_increase", FUNNEL_STRICT_INCREASE},
	{"strict_once", FUNNEL_STRICT_ONCE},
	{"allow_reentry", FUNNEL_ALLOW_REENTRY},
};

#define NMODES (sizeof(mode_names) / sizeof(mode_names[0]))

FunnelModeError
funnel_parse_mode(const char *text, size_t len, uint32_t *flags,
				  const char **bad, size_t *badlen)
{
	size_t		pos = 0;
	uint32_t	f = 0;

	*flags = 0;
	while (pos <= len)
	{
		size_t		start = pos,
					end,
					j;
		int			found = 0;

		while (pos < len && text[pos] != ',')
			pos++;
		end = pos;
		pos++;					/* past the comma (or the end) */
		while (start < end && (text[start] == ' ' || text[start] == '\t' ||
							   text[start] == '\n' || text[start] == '\r'))
			start++;
		while (end > start && (text[end - 1] == ' ' || text[end - 1] == '\t' ||
							   text[end - 1] == '\n' || text[end - 1] == '\r'))
			end--;
		if (start == end)
			continue;
		for (j = 0; j < NMODES; j++)
		{
			if (strlen(mode_names[j].name) == end - start &&
				memcmp(mode_names[j].name, text + start, end - start) == 0)
			{
				f |= mode_names[j].flag;
				found = 1;
				break;
			}
		}
		if (!found)
		{
			if (bad)
				*bad = text + start;
			if (badlen)
				*badlen = end - start;
			if (end - start == 6 && memcmp(text + start, "strict", 6) == 0)
				return FUNNEL_MODE_STRICT;
			return FUNNEL_MODE_UNKNOWN;
		}
	}
	if ((f & FUNNEL_ALLOW_REENTRY) && !(f & FUNNEL_STRICT_ORDER))
	{
		if (bad)
			*bad = "allow_reentry";
		if (badlen)
			*badlen = strlen("allow_reentry");
		return FUNNEL_MODE_REENTRY_ALONE;
	}
	*flags = f;
	return FUNNEL_MODE_OK;
}

void
funnel_mode_text(uint32_t flags, char *buf, size_t buflen)
{
	size_t		j,
				used = 0;

	if (buflen == 0)
		return;
	buf[0] = '\0';
	for (j = 0; j < NMODES; j++)
	{
		size_t		l = strlen(mode_names[j].name);

		if (!(flags & mode_names[j].flag))
			continue;
		if (used + l + 2 > buflen)
			break;
		if (used > 0)
			buf[used++] = ',';
		memcpy(buf + used, mode_names[j].name, l);
		used += l;
		buf[used] = '\0';
	}
}
