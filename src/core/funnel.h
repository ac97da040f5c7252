/*
 * funnel.h
 *		Windowed conversion funnel (ClickHouse windowFunnel semantics), pure C.
 *
 * No PostgreSQL headers: src/funnel.c is the glue, src/core/testing tests and
 * fuzzes this standalone.  doc/funnel.md states the rules in prose; the
 * comments in funnel.c say how each rule is implemented.
 *
 * An event is a row of the group: a timestamp (microseconds, any int64), the
 * bit set of the steps it matches (bit i = step i + 1) and its arrival order.
 * A row matching no step is kept only in strict_order mode, where it ends the
 * search.  The arrival order breaks ties between rows at one timestamp, as
 * ClickHouse's insertion order does (it decides answers only under
 * strict_once with strict_deduplication).
 */
#ifndef LM_CORE_FUNNEL_H
#define LM_CORE_FUNNEL_H

#include <stddef.h>
#include <stdint.h>

#define FUNNEL_MAX_STEPS			32

/* mode flags (the mode text is a comma-separated list of these names) */
#define FUNNEL_STRICT_DEDUPLICATION	0x01u
#define FUNNEL_STRICT_ORDER			0x02u
#define FUNNEL_STRICT_INCREASE		0x04u
#define FUNNEL_STRICT_ONCE			0x08u
#define FUNNEL_ALLOW_REENTRY		0x10u
#define FUNNEL_ALL_FLAGS			0x1Fu

typedef struct FunnelEvent
{
	int64_t		ts;				/* microseconds; sort key 1 */
	uint32_t	mask;			/* steps matched */
	uint32_t	seq;			/* arrival order; sort key 2 */
} FunnelEvent;

/* result of funnel_parse_mode */
typedef enum FunnelModeError
{
	FUNNEL_MODE_OK = 0,
	FUNNEL_MODE_UNKNOWN,		/* a name that is not a mode */
	FUNNEL_MODE_STRICT,			/* ClickHouse's old name "strict" */
	FUNNEL_MODE_REENTRY_ALONE	/* allow_reentry without strict_order */
} FunnelModeError;

/*
 * Parse a mode list: names separated by commas, blanks around names ignored,
 * empty items ignored, repeats allowed.  On error *bad and *badlen point at the
 * offending name inside text.
 */
extern FunnelModeError funnel_parse_mode(const char *text, size_t len,
										 uint32_t *flags,
										 const char **bad, size_t *badlen);

/* the canonical text of a flag set ("strict_order,allow_reentry"); buf >= 96 */
extern void funnel_mode_text(uint32_t flags, char *buf, size_t buflen);

/* sort by (ts, seq) */
extern void funnel_sort(FunnelEvent *ev, size_t n);

/* true when ev[0..n) is sorted by (ts, seq) */
extern int	funnel_is_sorted(const FunnelEvent *ev, size_t n);

/*
 * Memory and interrupt hooks for the matching of strict_once (several rows at
 * one timestamp, one of them matching several steps).  alloc may
 * throw (palloc) or return NULL (then funnel_scan returns -1).  interrupt may
 * be NULL; it is called now and then during long scans.
 */
typedef struct FunnelHooks
{
	void	   *(*alloc) (size_t size);
	void		(*release) (void *ptr);
	void		(*interrupt) (void);
} FunnelHooks;

/*
 * Highest step reached (0..nsteps) by the events ev[0..n), which must be
 * sorted with funnel_sort: ClickHouse's windowFunnel answer.  window >= 0 in
 * the unit of ts.  If times is not NULL it receives the timestamps of the
 * steps of the chain that first reached the returned level (times[0] is step
 * 1), as many as the returned level.  Returns -1 only when hooks->alloc
 * returned NULL.
 */
extern int	funnel_scan(const FunnelEvent *ev, size_t n, int nsteps,
						int64_t window, uint32_t flags, int64_t *times,
						const FunnelHooks *hooks);

#endif							/* LM_CORE_FUNNEL_H */
