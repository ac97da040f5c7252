/*
 * stage_conversions.h
 *		Stage entries (lead, stage, time) collected in an array and put in
 *		(lead, stage) order by an LSD radix sort; pure C.
 *
 * Why not a hash table keyed by (lead, stage): with millions of leads every
 * insert is a cache miss.  Appending 24-byte records is sequential, combining
 * two logs is a copy, and the radix sort touches memory in streams: one
 * histogram and one scatter per byte of the (lead, stage) key that is not the
 * same in every record (lead ids below 2^24 and stages below 256 need 4 of
 * the key's 10 bytes).  Any bigint lead id sorts: its sign bit is flipped so
 * that negative ids come first, as in a signed comparison.
 */
#ifndef LM_STAGE_CONVERSIONS_H
#define LM_STAGE_CONVERSIONS_H

#include <stddef.h>
#include <stdint.h>

#define LM_ENTRY_MAX_STAGE	0xFFFF

typedef struct LmEntryRec
{
	uint64_t	lead;			/* lead id with its sign bit flipped */
	int64_t		time;
	uint32_t	stage;			/* <= LM_ENTRY_MAX_STAGE */
	uint32_t	pad;			/* zero */
} LmEntryRec;

static inline LmEntryRec
lm_entry_make(int64_t lead, int stage, int64_t time)
{
	LmEntryRec	r;

	r.lead = (uint64_t) lead ^ (UINT64_C(1) << 63);
	r.time = time;
	r.stage = (uint32_t) stage;
	r.pad = 0;
	return r;
}

static inline int64_t
lm_entry_lead(const LmEntryRec *r)
{
	return (int64_t) (r->lead ^ (UINT64_C(1) << 63));
}

/*
 * Sort v[0..n) by (lead, stage) (stable, so equal keys keep their order),
 * using tmp (room for n records) as scratch.  Returns v or tmp, whichever
 * holds the sorted records.  O(n) per byte of the key that varies.
 */
extern LmEntryRec *lm_entry_sort(LmEntryRec *v, LmEntryRec *tmp, size_t n);

/*
 * Conversions from (lead, stage)-sorted records: counts[s] += the leads
 * whose last entry into next[s] is at or after their first entry into s, for
 * every stage s < nstages with next[s] >= 0.  first, last and seen are
 * scratch arrays of nstages entries (seen is initialised here).
 */
extern void lm_entry_conversions(const LmEntryRec *sorted, size_t n, int nstages,
								 const int *next, int64_t *counts,
								 int64_t *first, int64_t *last, int64_t *seen);

#endif							/* LM_STAGE_CONVERSIONS_H */
