/*
 * entrymap.h
 *		(lead, stage) -> first and last entry time, an open-addressing hash
 *		table in caller-provided memory; pure C.
 *
 * The key packs a lead id in [0, 2^47) and a stage index in [0, 2^16) into
 * 64 bits, so a slot is 24 bytes.  Linear probing on a power-of-two table
 * kept at most 70 % full: O(1) expected per add and find.  The caller owns
 * the memory (palloc in the aggregate context in PostgreSQL, malloc in the
 * tests): it asks lm_entrymap_full() before an add and, when full, moves the
 * entries into a table twice the size with lm_entrymap_move().
 */
#ifndef LM_ENTRYMAP_H
#define LM_ENTRYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_ENTRY_MAX_LEAD	((INT64_C(1) << 47) - 1)
#define LM_ENTRY_MAX_STAGE	0xFFFF
#define LM_ENTRY_EMPTY		UINT64_MAX

typedef struct LmEntrySlot
{
	uint64_t	key;			/* LM_ENTRY_EMPTY when free */
	int64_t		first;
	int64_t		last;
} LmEntrySlot;

typedef struct LmEntryMap
{
	LmEntrySlot *slots;
	size_t		capacity;		/* a power of two */
	size_t		used;
} LmEntryMap;

/* lead in [0, LM_ENTRY_MAX_LEAD], stage in [0, LM_ENTRY_MAX_STAGE] */
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

/* an empty map over slots[0..capacity), capacity a power of two >= 8 */
extern void lm_entrymap_init(LmEntryMap *m, LmEntrySlot *slots, size_t capacity);

/* whether one more key might push the map past 70 % full */
extern bool lm_entrymap_full(const LmEntryMap *m);

/* add an entry span: the first time is the minimum, the last the maximum */
extern void lm_entrymap_add(LmEntryMap *m, uint64_t key, int64_t first, int64_t last);

/* the slot of key, or NULL */
extern const LmEntrySlot *lm_entrymap_find(const LmEntryMap *m, uint64_t key);

/* add every entry of from into to (which must have room) */
extern void lm_entrymap_move(LmEntryMap *to, const LmEntryMap *from);

#endif							/* LM_ENTRYMAP_H */
