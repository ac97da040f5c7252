/*
 * fuzz_sequence.c
 *		Fuzz target for src/core/sequence.c: the pattern parser on arbitrary
 *		bytes, and seq_match/seq_count on arbitrary event sets (ties, extreme
 *		timestamps, every condition).  Checks what holds for every input: the
 *		parse stops inside the text, a match is 0 or 1, a count is between 0
 *		and the number of events, and the answers do not depend on the input
 *		order; a hostile pattern must finish (libFuzzer's -timeout).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sequence.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_sequence: %s\n", what);
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static SeqPattern pat;
	SeqEvent	ev[800];
	SeqEvent	rev[800];
	size_t		n = 0,
				pos,
				plen,
				errpos,
				i;
	int			nconds;
	int64_t		t = 0;
	int			m1,
				m2;
	int64_t		c1,
				c2;

	/* any bytes as a pattern: must not crash, error position inside */
	if (seq_parse((const char *) data, size, SEQ_MAX_CONDS, &pat, &errpos) != SEQ_PARSE_OK &&
		errpos > size)
		fail("error position outside the pattern");

	if (size < 2)
		return 0;
	nconds = 1 + data[0] % SEQ_MAX_CONDS;
	plen = data[1] % 48;
	if (2 + plen > size)
		return 0;
	if (seq_parse((const char *) data + 2, plen, nconds, &pat, &errpos) != SEQ_PARSE_OK)
		return 0;
	pos = 2 + plen;
	while (pos + 3 <= size && n < 800)
	{
		uint8_t		tb = data[pos];
		uint32_t	mask = (uint32_t) data[pos + 1] | ((uint32_t) data[pos + 2] << 8);

		if (tb == 0xFF)
			t = INT64_MAX - 5;
		else if (tb == 0xFE)
			t = INT64_MIN + 5;
		else if (t < INT64_MAX - 1000000000)
			t += (int64_t) (tb % 8) * 1000000;	/* ties when 0 */
		if (mask & 0x8000)
			mask = ~mask;
		if (nconds < 32)
			mask &= ((uint32_t) 1 << nconds) - 1;
		pos += 3;
		if (mask == 0)
			continue;			/* not an event */
		ev[n].ts = t;
		ev[n].mask = mask;
		ev[n].pad = 0;
		n++;
	}
	for (i = 0; i < n; i++)
		rev[i] = ev[n - 1 - i];
	seq_sort(ev, n);
	if (!seq_is_sorted(ev, n))
		fail("sort");
	m1 = seq_match(&pat, ev, n, NULL);
	c1 = seq_count(&pat, ev, n, NULL);
	if (m1 != 0 && m1 != 1)
		fail("match is not 0 or 1");
	if (c1 < 0 || (size_t) c1 > n + 1)
		fail("count out of range");
	seq_sort(rev, n);
	m2 = seq_match(&pat, rev, n, NULL);
	c2 = seq_count(&pat, rev, n, NULL);
	if (m1 != m2 || c1 != c2)
		fail("answer depends on the input order");
	return 0;
}
