/*
 * entrylog.c
 *		Radix sort of stage entries and conversions from them (entrylog.h).
 */
#include <string.h>

#include "entrylog.h"

LmEntryRec *
lm_entry_sort(LmEntryRec *v, LmEntryRec *tmp, size_t n)
{
	size_t		count[256];
	uint64_t	all_or = 0,
				all_and = UINT64_MAX;
	size_t		i;
	int			shift;

	for (i = 0; i < n; i++)
	{
		all_or |= v[i].key;
		all_and &= v[i].key;
	}
	for (shift = 0; shift < 64; shift += 8)
	{
		size_t		sum = 0;
		LmEntryRec *swap;

		/* a byte that is the same in every key does not reorder anything */
		if ((((all_or ^ all_and) >> shift) & 0xFF) == 0)
			continue;
		memset(count, 0, sizeof(count));
		for (i = 0; i < n; i++)
			count[(v[i].key >> shift) & 0xFF]++;
		for (i = 0; i < 256; i++)
		{
			size_t		c = count[i];

			count[i] = sum;
			sum += c;
		}
		for (i = 0; i < n; i++)
			tmp[count[(v[i].key >> shift) & 0xFF]++] = v[i];
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
	int			s;

	for (s = 0; s < nstages; s++)
		seen[s] = -1;
	while (i < n)
	{
		int64_t		lead = lm_entry_lead(sorted[i].key);
		size_t		start = i;

		/* the lead's records are contiguous: first and last time per stage */
		for (; i < n && lm_entry_lead(sorted[i].key) == lead; i++)
		{
			int			stage = lm_entry_stage(sorted[i].key);
			int64_t		t = sorted[i].time;

			if (stage >= nstages)
				continue;
			if (seen[stage] != lead)
			{
				seen[stage] = lead;
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
			int			stage = lm_entry_stage(sorted[start].key);
			int			nx;

			if (stage >= nstages ||
				(start > 0 && sorted[start - 1].key == sorted[start].key))
				continue;
			nx = next[stage];
			if (nx >= 0 && nx < nstages && seen[nx] == lead && last[nx] >= first[stage])
				counts[stage]++;
		}
	}
}
