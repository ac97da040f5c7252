/*
 * funnel.c
 *		Chain scan of the windowed conversion funnel (see funnel.h).
 *
 * The events are scanned once in (timestamp, step, row) order, the order in
 * which ClickHouse's windowFunnel scans its (timestamp, condition) pairs.  For
 * every level k the scan keeps the chain reaching step k whose step-1 event
 * is latest ("first"), because a later start leaves the most room in the
 * window for the steps still to come; among chains with the same start it
 * keeps the one found first.  Timestamps are grouped: all rows with one
 * timestamp form a group, and the modes differ only in how chains may
 * advance inside a group:
 *
 *	in place	default mode: a step-k event extends the level k-1 chain as it
 *				stands, even if that chain advanced at this very timestamp
 *				(one event matching steps 1..k advances k steps);
 *	pending		strict_increase, and strict_once groups made of one row:
 *				a step-k event extends only chains that ended before this
 *				timestamp; the group's results are merged at its end;
 *	slow		strict_once groups of several rows, one of them matching
 *				several steps: which steps distinct rows of the group can
 *				serve is a bipartite matching, solved exactly (Kuhn's
 *				augmenting paths) for every chain that ended before the group.
 *
 * The stop rules (strict_order, strict_deduplication) are checked before each
 * (step, row) entry against "level k is reached by the entries seen so far".
 * The result is the highest level reached before the scan stopped, and the
 * reported chain is the first one that reached it.
 *
 * Cost: O(n) for the sort-free scan (each entry touches O(1) levels, or
 * O(steps) when step times are wanted), the slow path O(steps^2 * edges) per
 * entry of such a group.  The caller sorts first: O(n log n).
 */
#include "funnel.h"

#include <stdlib.h>
#include <string.h>

#define NLEVELS (FUNNEL_MAX_STEPS + 2)	/* levels 0..33, 0 and 33 unused */

enum
{
	PATH_INPLACE,
	PATH_PENDING,
	PATH_SLOW
};

typedef struct Scan
{
	int			nsteps;
	int64_t		window;
	uint32_t	flags;
	int			want_times;

	/* chains that ended before the current group (or in it, in place) */
	int			valid[NLEVELS];
	int64_t		first[NLEVELS];
	int64_t		times[NLEVELS][FUNNEL_MAX_STEPS];

	/* chains advanced in the current group (pending and slow paths) */
	int			gvalid[NLEVELS];
	int64_t		gfirst[NLEVELS];
	int			gbase[NLEVELS];
	int64_t		gtimes[NLEVELS][FUNNEL_MAX_STEPS];

	/* highest level reached so far and the first chain that reached it */
	int			best;
	int64_t		best_times[FUNNEL_MAX_STEPS];
} Scan;

/* state of the matching of one slow group */
typedef struct Slow
{
	const FunnelEvent *rows;	/* the group */
	int			nrows;
	int			cut_step;		/* entries (row, step) with step < cut_step, */
	int			cut_row;		/* or step == cut_step and row <= cut_row */
	int		   *match;			/* match[row] = step served, or -1 */
	int		   *seen;			/* seen[row] == stamp: visited in this search */
	int			stamp;
} Slow;

static inline uint32_t
step_bit(int step)
{
	return (uint32_t) 1 << (step - 1);
}

/* t - first <= window, for first <= t, without signed overflow */
static inline int
in_window(int64_t first, int64_t t, int64_t window)
{
	return (uint64_t) t - (uint64_t) first <= (uint64_t) window;
}

static inline int
reached(const Scan *s, int path, int k)
{
	if (k <= 0)
		return 1;
	if (k > s->nsteps)
		return 0;
	if (s->valid[k])
		return 1;
	return path != PATH_INPLACE && s->gvalid[k];
}

/* chain = steps 1..base of chain src (base may be 0), then t up to step k */
static void
build_times(int64_t *dst, const int64_t *src, int base, int k, int64_t t)
{
	int			i;

	if (base > 0)
		memmove(dst, src, sizeof(int64_t) * base);
	for (i = base; i < k; i++)
		dst[i] = t;
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

/* a step-k entry at time t, in place (default mode, single-step strict_once) */
static void
apply_inplace(Scan *s, int k, int64_t t)
{
	int64_t		cand;

	if (k == 1)
		cand = t;
	else if (s->valid[k - 1] && in_window(s->first[k - 1], t, s->window))
		cand = s->first[k - 1];
	else
		return;
	if (s->valid[k] && cand <= s->first[k])
		return;
	s->valid[k] = 1;
	s->first[k] = cand;
	if (s->want_times)
		build_times(s->times[k], s->times[k - 1], k - 1, k, t);
	note_best(s, k, s->times[k]);
}

/* a step-k entry at time t that may only extend chains of earlier groups */
static void
apply_pending(Scan *s, int k, int64_t t)
{
	int64_t		cand;

	if (k == 1)
		cand = t;
	else if (s->valid[k - 1] && in_window(s->first[k - 1], t, s->window))
		cand = s->first[k - 1];
	else
		return;
	if (s->gvalid[k] && cand <= s->gfirst[k])
		return;
	s->gvalid[k] = 1;
	s->gfirst[k] = cand;
	s->gbase[k] = k - 1;
	if (s->want_times)
		build_times(s->gtimes[k], s->times[k - 1], k - 1, k, t);
	note_best(s, k, s->gtimes[k]);
}

/* merge the group's chains into the committed ones (descending: bases intact) */
static void
commit_group(Scan *s, int64_t t)
{
	int			k;

	for (k = s->nsteps; k >= 1; k--)
	{
		if (!s->gvalid[k] || (s->valid[k] && s->gfirst[k] <= s->first[k]))
			continue;
		s->valid[k] = 1;
		s->first[k] = s->gfirst[k];
		if (s->want_times)
		{
			int			b = s->gbase[k];

			build_times(s->times[k], s->times[b], b, k, t);
		}
	}
}

static inline int
slow_edge(const Slow *sl, int row, int step)
{
	if (!(sl->rows[row].mask & step_bit(step)))
		return 0;
	return step < sl->cut_step || (step == sl->cut_step && row <= sl->cut_row);
}

/* Kuhn: find a distinct row for step, moving earlier assignments if needed */
static int
slow_assign(Slow *sl, int step)
{
	int			r;

	for (r = 0; r < sl->nrows; r++)
	{
		if (sl->seen[r] == sl->stamp || !slow_edge(sl, r, step))
			continue;
		sl->seen[r] = sl->stamp;
		if (sl->match[r] < 0 || slow_assign(sl, sl->match[r]))
		{
			sl->match[r] = step;
			return 1;
		}
	}
	return 0;
}

/*
 * Levels reachable with at least one step served inside the slow group by the
 * entries up to the cut: for each base level b (0 = a chain starting in the
 * group), steps b+1..k need distinct rows of the group.
 */
static void
slow_levels(Scan *s, Slow *sl, int64_t t, const FunnelHooks *hooks)
{
	int			b,
				k,
				r;

	memset(s->gvalid, 0, sizeof(s->gvalid));
	for (b = s->nsteps - 1; b >= 0; b--)
	{
		int64_t		base_first;

		if (b == 0)
			base_first = t;
		else if (s->valid[b] && in_window(s->first[b], t, s->window))
			base_first = s->first[b];
		else
			continue;
		if (hooks && hooks->interrupt)
			hooks->interrupt();
		for (r = 0; r < sl->nrows; r++)
			sl->match[r] = -1;
		for (k = b + 1; k <= s->nsteps; k++)
		{
			sl->stamp++;
			if (!slow_assign(sl, k))
				break;
			if (s->gvalid[k] && base_first <= s->gfirst[k])
				continue;
			s->gvalid[k] = 1;
			s->gfirst[k] = base_first;
			s->gbase[k] = b;
		}
	}
	for (k = s->best + 1; k <= s->nsteps; k++)
	{
		if (!s->gvalid[k])
			continue;
		if (s->want_times)
			build_times(s->gtimes[k], s->times[s->gbase[k]], s->gbase[k], k, t);
		note_best(s, k, s->gtimes[k]);
	}
}

int
funnel_scan(const FunnelEvent *ev, size_t n, int nsteps, int64_t window,
			uint32_t flags, int64_t *times, const FunnelHooks *hooks)
{
	Scan	   *s;
	Scan		local;
	Slow		sl;
	uint32_t	stepmask;
	size_t		i = 0;
	size_t		groups = 0;
	int			stop = 0;
	int			result;

	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS || window < 0)
		return 0;
	s = &local;
	memset(s->valid, 0, sizeof(s->valid));
	memset(s->gvalid, 0, sizeof(s->gvalid));
	s->nsteps = nsteps;
	s->window = window;
	s->flags = flags;
	s->want_times = times != NULL;
	s->best = 0;
	stepmask = nsteps == 32 ? 0xFFFFFFFFu : (((uint32_t) 1 << nsteps) - 1);
	memset(&sl, 0, sizeof(sl));

	while (i < n && !stop && s->best < nsteps)
	{
		size_t		g0 = i,
					g1;
		int64_t		t = ev[i].ts;
		uint32_t	all = 0;
		int			steprows = 0;
		int			multi = 0;
		int			marker = 0;
		int			path;
		int			k;

		for (; i < n && ev[i].ts == t; i++)
		{
			uint32_t	m = ev[i].mask & stepmask;

			if (m == 0)
				marker = 1;
			else
			{
				steprows++;
				all |= m;
				multi |= (m & (m - 1)) != 0;
			}
		}
		g1 = i;

		if (hooks && hooks->interrupt && (++groups & 0xFFF) == 0)
			hooks->interrupt();

		/* a row matching no step (kept in strict_order only) sorts first */
		if (marker && (flags & FUNNEL_STRICT_ORDER) && reached(s, PATH_INPLACE, 1))
			break;
		if (all == 0)
			continue;

		if (flags & FUNNEL_STRICT_INCREASE)
			path = PATH_PENDING;
		else if ((flags & FUNNEL_STRICT_ONCE) && multi)
			path = steprows > 1 ? PATH_SLOW : PATH_PENDING;
		else
			path = PATH_INPLACE;

		if (path != PATH_INPLACE)
			memset(s->gvalid, 0, sizeof(s->gvalid));
		if (path == PATH_SLOW)
		{
			size_t		rows = g1 - g0;
			size_t		bytes = sizeof(int) * 2 * rows;

			sl.rows = ev + g0;
			sl.nrows = (int) rows;
			sl.stamp = 0;
			sl.match = hooks && hooks->alloc ? hooks->alloc(bytes) : malloc(bytes);
			if (sl.match == NULL)
				return -1;
			sl.seen = sl.match + rows;
			for (k = 0; k < sl.nrows; k++)
				sl.seen[k] = 0;
		}

		for (k = 1; k <= nsteps && !stop && s->best < nsteps; k++)
		{
			size_t		r;

			if (!(all & step_bit(k)))
				continue;
			for (r = g0; r < g1; r++)
			{
				if (!(ev[r].mask & step_bit(k)))
					continue;

				if (k == 1)
				{
					/* strict_order: a new step 1 after step 2 ends the search */
					if ((flags & FUNNEL_STRICT_ORDER) &&
						!(flags & FUNNEL_ALLOW_REENTRY) && reached(s, path, 2))
						stop = 1;
				}
				else if ((flags & FUNNEL_STRICT_DEDUPLICATION) && reached(s, path, k))
					stop = 1;	/* a step repeated */
				else if ((flags & FUNNEL_STRICT_ORDER) && reached(s, path, 1) &&
						 !reached(s, path, k - 1))
					stop = 1;	/* a step ahead of the chain */
				if (stop)
					break;

				if (path == PATH_INPLACE)
					apply_inplace(s, k, t);
				else if (path == PATH_PENDING)
					apply_pending(s, k, t);
				else
				{
					sl.cut_step = k;
					sl.cut_row = (int) (r - g0);
					slow_levels(s, &sl, t, hooks);
				}
				if (s->best >= nsteps)
					break;
			}
		}

		if (path == PATH_SLOW)
		{
			if (hooks && hooks->release)
				hooks->release(sl.match);
			else if (!(hooks && hooks->alloc))
				free(sl.match);
			sl.match = NULL;
		}
		if (path != PATH_INPLACE && !stop)
			commit_group(s, t);
	}

	result = s->best;
	if (times != NULL && result > 0)
		memcpy(times, s->best_times, sizeof(int64_t) * result);
	return result;
}

static int
event_cmp(const void *a, const void *b)
{
	const FunnelEvent *x = a;
	const FunnelEvent *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->mask != y->mask)
		return x->mask < y->mask ? -1 : 1;
	return 0;
}

static inline int
event_less(const FunnelEvent *x, const FunnelEvent *y)
{
	return x->ts < y->ts || (x->ts == y->ts && x->mask < y->mask);
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
