/*
 * stage_conversions.c
 *		Radix sort of stage entries and conversions from them (stage_conversions.h).
 */
#include <stdbool.h>
#include <string.h>

#include "stage_conversions.h"

/* byte d of the (lead, stage) key, d = 0 the least significant (stage) */
static inline unsigned
key_byte(const LmEntryRec *r, int d)
{
	return d < 2 ? (r->stage >> (8 * d)) & 0xFF : (unsigned) (r->lead >> (8 * (d - 2))) & 0xFF;
}

LmEntryRec *
lm_entry_sort(LmEntryRec *v, LmEntryRec *tmp, size_t n)
{
	size_t		count[256];
	size_t		i;
	int			d;

	for (d = 0; d < 10; d++)
	{
		size_t		sum = 0;
		bool		varies = false;
		LmEntryRec *swap;

		memset(count, 0, sizeof(count));
		for (i = 0; i < n; i++)
			count[key_byte(&v[i], d)]++;
		/* a byte that is the same in every key does not reorder anything */
		for (i = 0; i < 256 && !varies; i++)
			varies = count[i] != 0 && count[i] != n;
		if (!varies)
			continue;
		for (i = 0; i < 256; i++)
		{
			size_t		c = count[i];

			count[i] = sum;
			sum += c;
		}
		for (i = 0; i < n; i++)
			tmp[count[key_byte(&v[i], d)]++] = v[i];
		swap = v;
		v = tmp;
		tmp = swap;
	}
	return v;
}

void
lm_entry_conversions(const LmEntryRec *sorted, size_t n, int nstages,
					 const int *next, int64_t *counts,
					 int64_t *first, int64_t *last, int64_t *seen)
{
	size_t		i = 0;
	int64_t		lead_no = 0;	/* numbers the leads, for seen[] */
	int			s;

	for (s = 0; s < nstages; s++)
		seen[s] = -1;
	while (i < n)
	{
		uint64_t	lead = sorted[i].lead;
		size_t		start = i;

		/* the lead's records are contiguous: first and last time per stage */
		for (; i < n && sorted[i].lead == lead; i++)
		{
			uint32_t	stage = sorted[i].stage;
			int64_t		t = sorted[i].time;

			if (stage >= (uint32_t) nstages)
				continue;
			if (seen[stage] != lead_no)
			{
				seen[stage] = lead_no;
				first[stage] = last[stage] = t;
			}
			else
			{
				if (t < first[stage])
					first[stage] = t;
				if (t > last[stage])
					last[stage] = t;
			}
		}
		/* each stage of the lead once, in key order */
		for (; start < i; start++)
		{
			uint32_t	stage = sorted[start].stage;
			int			nx;

			if (stage >= (uint32_t) nstages ||
				(start > 0 && sorted[start - 1].lead == lead && sorted[start - 1].stage == stage))
				continue;
			nx = next[stage];
			if (nx >= 0 && nx < nstages && seen[nx] == lead_no && last[nx] >= first[stage])
				counts[stage]++;
		}
		lead_no++;
	}
}
