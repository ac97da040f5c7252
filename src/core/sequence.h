/*
 * sequence.h
 *		Pattern matching over a group's events (ClickHouse sequenceMatch and
 *		sequenceCount semantics), pure C.
 *
 * No PostgreSQL headers: src/sequences.c is the glue, src/core/testing tests
 * and fuzzes this standalone.  doc/sequences.md states the rules in prose.
 *
 * An event is a row of the group that matches at least one condition: a
 * timestamp (microseconds) and the bit set of the conditions it matches (bit
 * i = condition i + 1).  Rows matching no condition are not events.
 */
#ifndef LM_CORE_SEQUENCE_H
#define LM_CORE_SEQUENCE_H

#include <stddef.h>
#include <stdint.h>

#define SEQ_MAX_CONDS		32
#define SEQ_MAX_ACTIONS		128		/* pattern elements, (?N), ., .*, (?t..) */

typedef enum SeqActionType
{
	SEQ_EVENT,					/* (?N) */
	SEQ_ANY,					/* . */
	SEQ_KLEENE,					/* .* */
	SEQ_TIME_LE,				/* (?t<=s) */
	SEQ_TIME_LT,				/* (?t<s) */
	SEQ_TIME_GE,				/* (?t>=s) */
	SEQ_TIME_GT,				/* (?t>s) */
	SEQ_TIME_EQ					/* (?t==s) */
} SeqActionType;

typedef struct SeqAction
{
	uint8_t		type;			/* SeqActionType */
	uint8_t		cond;			/* SEQ_EVENT: condition number - 1 */
	uint64_t	usecs;			/* time actions: seconds * 10^6, saturated */
} SeqAction;

/* a parsed pattern: an implicit leading .* then the elements */
typedef struct SeqPattern
{
	int			nactions;
	int			has_time;
	uint32_t	conds;			/* conditions the pattern names */
	SeqAction	actions[SEQ_MAX_ACTIONS + 1];
} SeqPattern;

typedef enum SeqParseError
{
	SEQ_PARSE_OK = 0,
	SEQ_PARSE_SYNTAX,			/* not the pattern language */
	SEQ_PARSE_NUMBER,			/* (?N) or (?t op N) without a number */
	SEQ_PARSE_TIME_OP,			/* (?t followed by no known operator */
	SEQ_PARSE_CLOSE,			/* no closing parenthesis */
	SEQ_PARSE_COND_RANGE,		/* (?N) with N = 0 or N > the conditions given */
	SEQ_PARSE_TIME_PLACE,		/* (?t..) after another (?t..) */
	SEQ_PARSE_TOO_LONG			/* more than SEQ_MAX_ACTIONS elements */
} SeqParseError;

/*
 * Parse pattern text[0..len) for nconds conditions.  On error *errpos is the
 * byte offset where parsing stopped.
 */
extern SeqParseError seq_parse(const char *text, size_t len, int nconds,
							   SeqPattern *pat, size_t *errpos);

/* one line describing a parse error, without the position */
extern const char *seq_parse_message(SeqParseError err);

typedef struct SeqEvent
{
	int64_t		ts;				/* sort key 1 */
	uint32_t	mask;			/* sort key 2 */
	uint32_t	pad;			/* keeps the struct 16 bytes, always 0 */
} SeqEvent;

/* sort by (ts, mask): rows at one instant by their condition sets */
extern void seq_sort(SeqEvent *ev, size_t n);
extern int	seq_is_sorted(const SeqEvent *ev, size_t n);

typedef struct SeqHooks
{
	void	   *(*alloc) (size_t size);		/* may throw, or return NULL */
	void		(*release) (void *ptr);
	void		(*interrupt) (void);		/* may be NULL */
} SeqHooks;

/* results of seq_match and seq_count */
#define SEQ_ERR_NOMEM		(-1)	/* hooks->alloc returned NULL */
#define SEQ_ERR_TOO_BIG		(-2)	/* events x pattern elements too many */

/*
 * sequenceMatch: 1 if the sorted events match the pattern, 0 if not, or a
 * SEQ_ERR_* code.  sequenceCount: the number of non-overlapping matches, or a
 * SEQ_ERR_* code.  Cost: O(E x A x (A + log E)) for E events and A pattern
 * elements (a memo of failed choice points replaces ClickHouse's exponential
 * backtracking), memory 4 bytes x E per .* or (?t..) element.
 */
extern int	seq_match(const SeqPattern *pat, const SeqEvent *ev, size_t n,
					  const SeqHooks *hooks);
extern int64_t seq_count(const SeqPattern *pat, const SeqEvent *ev, size_t n,
						 const SeqHooks *hooks);

/* the bound on E x (.* and (?t..) elements) that seq_match/count accept */
#define SEQ_MAX_MEMO		((int64_t) 1 << 27)

#endif							/* LM_CORE_SEQUENCE_H */
