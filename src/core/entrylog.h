/*
 * entrylog.h
 *		Stage entries (lead, stage, time) collected in an array and put in
 *		(lead, stage) order by an LSD radix sort; pure C.
 *
 * Why not a hash table keyed by (lead, stage): with millions of leads every
 * insert is a cache miss.  Appending 16-byte records is sequential, combining
 * two logs is a copy, and the radix sort touches memory in streams: one
 * histogram and one scatter per byte of the key that is not the same in
 * every record (lead ids below 2^24 and stages below 256 need 5 of 8).
 *
 * The key packs a lead id in [0, 2^47) and a stage index in [0, 2^16).
 */
#ifndef LM_ENTRYLOG_H
#define LM_ENTRYLOG_H

#include <stddef.h>
#include <stdint.h>

#define LM_ENTRY_MAX_LEAD	((INT64_C(1) << 47) - 1)
#define LM_ENTRY_MAX_STAGE	0xFFFF

typedef struct LmEntryRec
{
	uint64_t	key;
	int64_t		time;
} LmEntryRec;

static inline uint64_t
lm_entry_key(int64_t lead, int stage)
{
	return ((uint64_t) lead << 16) | (uint64_t) stage;
}

static inline int64_t
lm_entry_lead(uint64_t key)
{
	return (int64_t) (key >> 16);
}

static inline int
lm_entry_stage(uint64_t key)
{
	return (int) (key & 0xFFFF);
}

/*
 * Sort v[0..n) by key (stable, so equal keys keep their order), using tmp
 * (room for n records) as scratch.  Returns v or tmp, whichever holds the
 * sorted records.  O(n) per byte of the key that varies.
 */
extern LmEntryRec *lm_entry_sort(LmEntryRec *v, LmEntryRec *tmp, size_t n);

/*
 * Conversions from key-sorted records: counts[s] += the leads whose last
 * entry into next[s] is at or after their first entry into s, for every
 * stage s < nstages with next[s] >= 0.  first and last are scratch arrays of
 * nstages entries, seen an array of nstages int64 the function initialises.
 */
extern void lm_entry_conversions(const LmEntryRec *sorted, size_t n, int nstages,
								 const int *next, int64_t *counts,
								 int64_t *first, int64_t *last, int64_t *seen);

#endif							/* LM_ENTRYLOG_H */
