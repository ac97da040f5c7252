/*
 * sequence.c
 *		Pattern language and matcher of sequence_match / sequence_count (see
 *		sequence.h), with ClickHouse 26.7's sequenceMatch and sequenceCount
 *		semantics.
 *
 * The pattern is a list of actions after an implicit leading ".*".  ClickHouse
 * answers sequenceMatch without time conditions with a state-set automaton
 * (dfa_match here), and everything else with a backtracking search whose
 * rules are the specification (run here):
 *
 *	(?N)		the current event must match condition N: consume it;
 *	.			consume any event;
 *	.*			choice point: go on with the next action at this event, or
 *				later come back and retry .* one event further;
 *	(?t<= s), (?t< s)
 *				if the current event is within s seconds of the base (the
 *				event the previous action stood on), a choice point like .*,
 *				else backtrack;
 *	(?t>= s), (?t> s), (?t== s)
 *				if the current event satisfies it, a choice point, else move
 *				to the next event (backtracking at the end of the events).
 *
 * Backtracking resumes the latest choice point one event further.  The
 * search ends with a match when the actions run out; it ends (without
 * further backtracking) when the events run out, matching if the actions left
 * are only .*, (?t<= s), (?t< s) and (?t>= 0).  sequenceCount repeats the
 * search from where the previous match ended (one event further if it did
 * not move).
 *
 * The search is exponential in the worst case (ClickHouse stops it after a
 * million steps).  Here every choice point (action, event) remembers that the
 * way forward from it failed; the way forward from (a, e) is the state (a+1,
 * e, base e), which does not depend on how (a, e) was reached, so the same
 * failure is never explored twice, and a run of failed choice points is
 * jumped over with a union-find "next unfailed event" array per action.  The
 * answers are the backtracking's, the cost polynomial.
 */
#include "sequence.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- parsing */

static int
starts(const char *p, const char *end, const char *lit)
{
	size_t		l = strlen(lit);

	return (size_t) (end - p) >= l && memcmp(p, lit, l) == 0;
}

/* digits as an unsigned number; 0 when none (or overflow) */
static int
read_number(const char **pp, const char *end, uint64_t *out)
{
	const char *p = *pp;
	uint64_t	v = 0;

	if (p >= end || *p < '0' || *p > '9')
		return 0;
	while (p < end && *p >= '0' && *p <= '9')
	{
		if (v > (UINT64_MAX - 9) / 10)
			return 0;
		v = v * 10 + (uint64_t) (*p - '0');
		p++;
	}
	*pp = p;
	*out = v;
	return 1;
}

SeqParseError
seq_parse(const char *text, size_t len, int nconds, SeqPattern *pat,
		  size_t *errpos)
{
	const char *p = text;
	const char *end = text + len;
	SeqParseError err = SEQ_PARSE_OK;

	pat->nactions = 1;
	pat->has_time = 0;
	pat->conds = 0;
	memset(&pat->actions[0], 0, sizeof(SeqAction));
	pat->actions[0].type = SEQ_KLEENE;

	while (p < end)
	{
		SeqAction	act;

		memset(&act, 0, sizeof(act));
		if (pat->nactions > SEQ_MAX_ACTIONS)
		{
			err = SEQ_PARSE_TOO_LONG;
			break;
		}
		if (starts(p, end, "(?"))
		{
			p += 2;
			if (starts(p, end, "t"))
			{
				uint64_t	secs;
				uint8_t		prev = pat->actions[pat->nactions - 1].type;

				p++;
				if (starts(p, end, "<="))
					act.type = SEQ_TIME_LE, p += 2;
				else if (starts(p, end, "<"))
					act.type = SEQ_TIME_LT, p += 1;
				else if (starts(p, end, ">="))
					act.type = SEQ_TIME_GE, p += 2;
				else if (starts(p, end, ">"))
					act.type = SEQ_TIME_GT, p += 1;
				else if (starts(p, end, "=="))
					act.type = SEQ_TIME_EQ, p += 2;
				else
				{
					err = SEQ_PARSE_TIME_OP;
					break;
				}
				if (!read_number(&p, end, &secs))
				{
					err = SEQ_PARSE_NUMBER;
					break;
				}
				if (prev != SEQ_EVENT && prev != SEQ_ANY && prev != SEQ_KLEENE)
				{
					err = SEQ_PARSE_TIME_PLACE;
					break;
				}
				act.usecs = secs > UINT64_MAX / 1000000 ? UINT64_MAX : secs * 1000000;
				pat->has_time = 1;
			}
			else
			{
				uint64_t	n;
				const char *num = p;

				if (!read_number(&p, end, &n))
				{
					err = SEQ_PARSE_NUMBER;
					break;
				}
				if (n < 1 || n > (uint64_t) nconds || n > SEQ_MAX_CONDS)
				{
					p = num;
					err = SEQ_PARSE_COND_RANGE;
					break;
				}
				act.type = SEQ_EVENT;
				act.cond = (uint8_t) (n - 1);
				pat->conds |= (uint32_t) 1 << (n - 1);
			}
			if (!starts(p, end, ")"))
			{
				err = SEQ_PARSE_CLOSE;
				break;
			}
			p++;
		}
		else if (starts(p, end, ".*"))
		{
			act.type = SEQ_KLEENE;
			p += 2;
		}
		else if (starts(p, end, "."))
		{
			act.type = SEQ_ANY;
			p += 1;
		}
		else
		{
			err = SEQ_PARSE_SYNTAX;
			break;
		}
		pat->actions[pat->nactions++] = act;
	}
	if (errpos)
		*errpos = (size_t) (p - text);
	return err;
}

const char *
seq_parse_message(SeqParseError err)
{
	switch (err)
	{
		case SEQ_PARSE_OK:
			return "no error";
		case SEQ_PARSE_SYNTAX:
			return "unexpected character";
		case SEQ_PARSE_NUMBER:
			return "a number was expected";
		case SEQ_PARSE_TIME_OP:
			return "unknown time condition (use <, <=, >, >= or ==)";
		case SEQ_PARSE_CLOSE:
			return "a closing parenthesis was expected";
		case SEQ_PARSE_COND_RANGE:
			return "condition number out of range";
		case SEQ_PARSE_TIME_PLACE:
			return "a time condition must follow an event, . or .*";
		case SEQ_PARSE_TOO_LONG:
			return "too many pattern elements";
	}
	return "unknown error";
}

/* ---------------------------------------------------------------- sorting */

static inline int
ev_less(const SeqEvent *x, const SeqEvent *y)
{
	return x->ts < y->ts || (x->ts == y->ts && x->mask < y->mask);
}

static int
ev_cmp(const void *a, const void *b)
{
	const SeqEvent *x = a;
	const SeqEvent *y = b;

	if (ev_less(x, y))
		return -1;
	return ev_less(y, x) ? 1 : 0;
}

int
seq_is_sorted(const SeqEvent *ev, size_t n)
{
	size_t		i;

	for (i = 1; i < n; i++)
		if (ev_less(&ev[i], &ev[i - 1]))
			return 0;
	return 1;
}

void
seq_sort(SeqEvent *ev, size_t n)
{
	size_t		i;

	if (n < 2 || seq_is_sorted(ev, n))
		return;
	if (n > 24)
	{
		qsort(ev, n, sizeof(SeqEvent), ev_cmp);
		return;
	}
	for (i = 1; i < n; i++)
	{
		SeqEvent	x = ev[i];
		size_t		j = i;

		while (j > 0 && ev_less(&x, &ev[j - 1]))
		{
			ev[j] = ev[j - 1];
			j--;
		}
		ev[j] = x;
	}
}

/* ---------------------------------------------------------------- automaton */

/* sequenceMatch without time conditions: the set of automaton states */
static int
dfa_match(const SeqPattern *pat, const SeqEvent *ev, size_t n)
{
	/* states: one per (?N) or ., plus the final one; .* marks a state */
	uint8_t		trans[SEQ_MAX_ACTIONS + 2];	/* 0 none, 1 event, 2 any */
	uint8_t		cond[SEQ_MAX_ACTIONS + 2];
	uint8_t		kleene[SEQ_MAX_ACTIONS + 2];
	uint8_t		act[SEQ_MAX_ACTIONS + 2],
				next[SEQ_MAX_ACTIONS + 2];
	int			ns = 1,
				a,
				s;
	size_t		i;
	int			nactive = 1;

	memset(trans, 0, sizeof(trans));
	memset(kleene, 0, sizeof(kleene));
	kleene[0] = 1;
	for (a = 1; a < pat->nactions; a++)
	{
		const SeqAction *x = &pat->actions[a];

		if (x->type == SEQ_EVENT || x->type == SEQ_ANY)
		{
			trans[ns - 1] = x->type == SEQ_EVENT ? 1 : 2;
			cond[ns - 1] = x->cond;
			ns++;
		}
		else if (x->type == SEQ_KLEENE)
			kleene[ns - 1] = 1;
	}
	memset(act, 0, sizeof(act));
	act[0] = 1;
	for (i = 0; i < n && nactive > 0 && !act[ns - 1]; i++)
	{
		memset(next, 0, sizeof(next));
		nactive = 0;
		for (s = 0; s < ns; s++)
		{
			if (!act[s])
				continue;
			if (trans[s] == 2 ||
				(trans[s] == 1 && (ev[i].mask & ((uint32_t) 1 << cond[s]))))
			{
				next[s + 1] = 1;
				nactive++;
			}
			if (kleene[s])
			{
				next[s] = 1;
				nactive++;
			}
		}
		memcpy(act, next, sizeof(act));
	}
	return act[ns - 1];
}

/* ---------------------------------------------------------------- search */

typedef struct Frame
{
	uint32_t	a;
	uint32_t	e;
	uint32_t	b;
} Frame;

typedef struct Matcher
{
	const SeqPattern *pat;
	const SeqEvent *ev;
	uint32_t	n;
	const SeqHooks *hooks;
	uint32_t   *skip[SEQ_MAX_ACTIONS + 1];	/* next unfailed event, per action */
	Frame	   *stack;
	size_t		depth;
	size_t		capacity;
	uint64_t	steps;
	int			error;
} Matcher;

static void *
m_alloc(Matcher *m, size_t size)
{
	void	   *p = m->hooks && m->hooks->alloc ? m->hooks->alloc(size) : malloc(size);

	if (p == NULL)
		m->error = SEQ_ERR_NOMEM;
	return p;
}

static void
m_free(Matcher *m, void *p)
{
	if (p == NULL)
		return;
	if (m->hooks && m->hooks->release)
		m->hooks->release(p);
	else if (!(m->hooks && m->hooks->alloc))
		free(p);
}

/* first event >= e whose choice point at action a has not failed */
static uint32_t
next_unfailed(Matcher *m, uint32_t a, uint32_t e)
{
	uint32_t   *s = m->skip[a];
	uint32_t	r = e,
				x;

	if (s == NULL)
		return e;
	while (r < m->n && s[r] != r)
		r = s[r];
	/* path compression */
	while (e < m->n && s[e] != e)
	{
		x = s[e];
		s[e] = r;
		e = x;
	}
	return r;
}

static void
mark_failed(Matcher *m, uint32_t a, uint32_t e)
{
	if (m->skip[a] == NULL)
	{
		uint32_t	i;

		m->skip[a] = m_alloc(m, sizeof(uint32_t) * ((size_t) m->n + 1));
		if (m->skip[a] == NULL)
			return;
		for (i = 0; i <= m->n; i++)
			m->skip[a][i] = i;
	}
	m->skip[a][e] = e + 1;
}

static int
push(Matcher *m, uint32_t a, uint32_t e, uint32_t b)
{
	if (m->depth == m->capacity)
	{
		size_t		cap = m->capacity ? m->capacity * 2 : 64;
		Frame	   *f = m_alloc(m, sizeof(Frame) * cap);

		if (f == NULL)
			return 0;
		if (m->depth)
			memcpy(f, m->stack, sizeof(Frame) * m->depth);
		m_free(m, m->stack);
		m->stack = f;
		m->capacity = cap;
	}
	m->stack[m->depth].a = a;
	m->stack[m->depth].e = e;
	m->stack[m->depth].b = b;
	m->depth++;
	return 1;
}

/* time of event e minus time of base b (e >= b, so never negative) */
static inline uint64_t
span(const Matcher *m, uint32_t b, uint32_t e)
{
	return (uint64_t) m->ev[e].ts - (uint64_t) m->ev[b].ts;
}

static inline int
time_ok(const SeqAction *x, uint64_t d)
{
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
		case SEQ_TIME_EQ:
			return d == x->usecs;
		default:
			return 1;
	}
}

/* first event in [from, n) with span from b satisfying >=, > or == (n if none) */
static uint32_t
first_at_least(const Matcher *m, const SeqAction *x, uint32_t b, uint32_t from)
{
	uint32_t	lo = from,
				hi = m->n;

	while (lo < hi)
	{
		uint32_t	mid = lo + (hi - lo) / 2;
		uint64_t	d = span(m, b, mid);
		int			ok = x->type == SEQ_TIME_GT ? d > x->usecs : d >= x->usecs;

		if (ok)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo < m->n && x->type == SEQ_TIME_EQ && span(m, b, lo) != x->usecs)
		return m->n;
	return lo;
}

static inline int
skippable(const SeqAction *x)
{
	return x->type == SEQ_KLEENE || x->type == SEQ_TIME_LE ||
		x->type == SEQ_TIME_LT || (x->type == SEQ_TIME_GE && x->usecs == 0);
}

/*
 * One backtracking search from event start (ClickHouse's backtrackingMatch).
 * Returns 1 on a match, 0 otherwise, and in *end the event where the search
 * stopped.
 */
static int
run(Matcher *m, uint32_t start, uint32_t *end)
{
	const SeqPattern *pat = m->pat;
	uint32_t	A = (uint32_t) pat->nactions;
	uint32_t	n = m->n;
	uint32_t	a = 0,
				e = start,
				b = start;
	int			popped_any;

	m->depth = 0;
	while (a < A && e < n)
	{
		const SeqAction *x = &pat->actions[a];
		int			choice = 0;

		if ((++m->steps & 0xFFFF) == 0 && m->hooks && m->hooks->interrupt)
			m->hooks->interrupt();
		switch (x->type)
		{
			case SEQ_EVENT:
				if (m->ev[e].mask & ((uint32_t) 1 << x->cond))
				{
					b = e;
					a++;
					e++;
					continue;
				}
				break;			/* backtrack */
			case SEQ_ANY:
				b = e;
				a++;
				e++;
				continue;
			case SEQ_KLEENE:
				choice = 1;
				break;
			case SEQ_TIME_LE:
			case SEQ_TIME_LT:
				choice = time_ok(x, span(m, b, e));
				break;
			default:
				if (time_ok(x, span(m, b, e)))
					choice = 1;
				else
				{
					e = first_at_least(m, x, b, e + 1);
					if (e < n)
						continue;	/* the condition holds there */
				}
				break;
		}
		if (choice)
		{
			/* skip the choice points of this action that already failed */
			uint32_t	e2 = next_unfailed(m, a, e);

			if (e2 != e && (e2 >= n || !time_ok(x, span(m, b, e2))))
				choice = 0;		/* as if each had been tried and failed */
			else
			{
				if (!push(m, a, e2, b))
					return 0;
				e = e2;
				b = e;
				a++;
				continue;
			}
		}

		/* backtrack: resume the latest choice point one event further */
		popped_any = 0;
		for (;;)
		{
			Frame		f;

			if (m->depth == 0)
			{
				if (popped_any)
					e = n;
				goto done;
			}
			f = m->stack[--m->depth];
			popped_any = 1;
			mark_failed(m, f.a, f.e);
			if (m->error)
				return 0;
			a = f.a;
			b = f.b;
			e = f.e + 1;
			if (e < n)
				break;
		}
	}
done:
	while (a < A && skippable(&pat->actions[a]))
		a++;
	if (e == start)
		e++;
	*end = e;
	return a == A;
}

static int
matcher_init(Matcher *m, const SeqPattern *pat, const SeqEvent *ev, size_t n,
			 const SeqHooks *hooks)
{
	int			choices = 0,
				a;

	memset(m, 0, sizeof(*m));
	m->pat = pat;
	m->ev = ev;
	m->n = (uint32_t) n;
	m->hooks = hooks;
	for (a = 0; a < pat->nactions; a++)
		choices += pat->actions[a].type != SEQ_EVENT && pat->actions[a].type != SEQ_ANY;
	if (n >= UINT32_MAX || (int64_t) n * choices > SEQ_MAX_MEMO)
		return SEQ_ERR_TOO_BIG;
	return 0;
}

static void
matcher_free(Matcher *m)
{
	int			a;

	for (a = 0; a <= SEQ_MAX_ACTIONS; a++)
		m_free(m, m->skip[a]);
	m_free(m, m->stack);
}

/* the conditions the pattern names all occur (ClickHouse checks it first) */
static int
conds_present(const SeqPattern *pat, const SeqEvent *ev, size_t n)
{
	uint32_t	met = 0;
	size_t		i;

	for (i = 0; i < n && (met & pat->conds) != pat->conds; i++)
		met |= ev[i].mask;
	return (met & pat->conds) == pat->conds;
}

int
seq_match(const SeqPattern *pat, const SeqEvent *ev, size_t n,
		  const SeqHooks *hooks)
{
	Matcher		m;
	uint32_t	end;
	int			r;

	if (!conds_present(pat, ev, n))
		return 0;
	if (!pat->has_time)
		return dfa_match(pat, ev, n);
	r = matcher_init(&m, pat, ev, n, hooks);
	if (r < 0)
		return r;
	r = run(&m, 0, &end);
	if (m.error)
		r = m.error;
	matcher_free(&m);
	return r;
}

int64_t
seq_count(const SeqPattern *pat, const SeqEvent *ev, size_t n,
		  const SeqHooks *hooks)
{
	Matcher		m;
	uint32_t	pos = 0,
				end;
	int64_t		count = 0;
	int			r;

	if (!conds_present(pat, ev, n))
		return 0;
	r = matcher_init(&m, pat, ev, n, hooks);
	if (r < 0)
		return r;
	while (pos < m.n && run(&m, pos, &end))
	{
		count++;
		pos = end;
	}
	if (m.error)
		count = m.error;
	matcher_free(&m);
	return count;
}
