/*
 * fuzz_funnel.c
 *		Fuzz target for src/core/funnel.c: mode parsing of arbitrary bytes, and
 *		funnel_scan on arbitrary event sets (any step count, flags, window,
 *		extreme timestamps, many ties).  Checks the invariants that hold for
 *		every input: result in 0..steps, step times non-decreasing, inside the
 *		window, each one a timestamp of an event matching that step, and the
 *		result independent of the input order.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "funnel.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_funnel: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FunnelEvent ev[600];
	FunnelEvent rev[600];
	int64_t		times[FUNNEL_MAX_STEPS];
	uint32_t	flags;
	int			nsteps;
	int64_t		window;
	size_t		n = 0,
				pos,
				i;
	int			level,
				level2;
	uint32_t	parsed;
	const char *bad;
	size_t		badlen;

	/* any bytes as a mode list: must not crash, flags only known bits */
	if (funnel_parse_mode((const char *) data, size, &parsed, &bad, &badlen) == FUNNEL_MODE_OK &&
		(parsed & ~FUNNEL_ALL_FLAGS) != 0)
		fail("unknown flag bits parsed");

	if (size < 4)
		return 0;
	nsteps = data[0] % 34;		/* 0 and 33 are invalid: must give 0 */
	flags = data[1] & FUNNEL_ALL_FLAGS;
	window = (data[2] & 0x80) ? INT64_MAX - data[2] : (int64_t) (data[2] % 16);
	pos = 3;
	while (pos + 3 <= size && n < 600)
	{
		uint8_t		tb = data[pos];
		uint32_t	mask = (uint32_t) data[pos + 1] | ((uint32_t) data[pos + 2] << 8);

		/* mostly a small time range for ties; sometimes the extremes */
		if (tb == 0xFF)
			ev[n].ts = INT64_MAX;
		else if (tb == 0xFE)
			ev[n].ts = INT64_MIN;
		else
			ev[n].ts = tb % 24;
		if (mask & 0x8000)
			mask = ~mask;		/* reach the high steps */
		ev[n].mask = mask;
		ev[n].seq = (uint32_t) n;
		n++;
		pos += 3;
	}
	/* the rows in reverse arrival order */
	for (i = 0; i < n; i++)
	{
		rev[i] = ev[n - 1 - i];
		rev[i].seq = (uint32_t) i;
	}

	funnel_sort(ev, n);
	if (!funnel_is_sorted(ev, n))
		fail("sort");
	level = funnel_scan(ev, n, nsteps, window, flags, times, NULL);
	if (nsteps < 1 || nsteps > FUNNEL_MAX_STEPS)
	{
		if (level != 0)
			fail("invalid step count accepted");
		return 0;
	}
	if (level < 0 || level > nsteps)
		fail("level out of range");
	for (i = 0; i < (size_t) level; i++)
	{
		size_t		j;
		int			found = 0;

		for (j = 0; j < n; j++)
			if (ev[j].ts == times[i] && (ev[j].mask & ((uint32_t) 1 << i)))
				found = 1;
		if (!found)
			fail("step time is no event of that step");
		if (i > 0 && times[i] < times[i - 1])
			fail("step times decrease");
		if ((uint64_t) times[i] - (uint64_t) times[0] > (uint64_t) window)
			fail("step time outside the window");
	}

	/*
	 * the same events in another arrival order give the same answer, except
	 * under strict_once with strict_deduplication, where ClickHouse's answer
	 * depends on the order of rows at one timestamp
	 */
	funnel_sort(rev, n);
	level2 = funnel_scan(rev, n, nsteps, window, flags, NULL, NULL);
	if (level2 != level &&
		(flags & (FUNNEL_STRICT_ONCE | FUNNEL_STRICT_DEDUPLICATION)) !=
		(FUNNEL_STRICT_ONCE | FUNNEL_STRICT_DEDUPLICATION))
		fail("result depends on input order");
	return 0;
}
