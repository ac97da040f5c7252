/*
 * fuzz_stage_conversions.c
 *		Fuzz target: any log of (lead, stage, time) entries sorts into key
 *		order with every record kept, and conversions over 4 stages with a
 *		fixed next graph never exceed the leads that entered each stage.
 */
#include "stage_conversions.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REC 10					/* lead (6 bytes, sign-extended), stage (1), time (3) */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		n = size / REC,
				i;
	LmEntryRec *v = malloc((n + 1) * sizeof(LmEntryRec)),
			   *tmp = malloc((n + 1) * sizeof(LmEntryRec)),
			   *sorted;
	uint64_t	xor_in = 0,
				xor_out = 0;
	int			next[4] = {1, 2, -1, 0};
	int64_t		counts[4] = {0},
				first[4],
				last[4],
				seen[4],
				entered[4] = {0};

	for (i = 0; i < n; i++)
	{
		uint64_t	lead = 0;
		int32_t		t = 0;

		memcpy(&lead, data + i * REC, 6);
		memcpy(&t, data + i * REC + 7, 3);
		/* spread the 6 bytes over the whole range, negative ids included */
		v[i] = lm_entry_make((int64_t) (lead << 16) >> (data[i * REC + 6] & 16), data[i * REC + 6] % 5, t);
		xor_in ^= v[i].lead * 31 + v[i].stage * 7 + (uint64_t) v[i].time;
	}
	sorted = lm_entry_sort(v, tmp, n);
	for (i = 0; i < n; i++)
	{
		if (i > 0 && (lm_entry_lead(&sorted[i - 1]) > lm_entry_lead(&sorted[i]) ||
					  (sorted[i - 1].lead == sorted[i].lead && sorted[i - 1].stage > sorted[i].stage)))
			abort();
		xor_out ^= sorted[i].lead * 31 + sorted[i].stage * 7 + (uint64_t) sorted[i].time;
		if (sorted[i].stage < 4 &&
			(i == 0 || sorted[i - 1].lead != sorted[i].lead || sorted[i - 1].stage != sorted[i].stage))
			entered[sorted[i].stage]++;
	}
	if (xor_in != xor_out)
		abort();
	lm_entry_conversions(sorted, n, 4, next, counts, first, last, seen);
	for (i = 0; i < 4; i++)
		if (counts[i] < 0 || counts[i] > entered[i] || (next[i] < 0 && counts[i] != 0))
			abort();
	free(v);
	free(tmp);
	return 0;
}
