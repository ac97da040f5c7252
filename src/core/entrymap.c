/*
 * entrymap.c
 *		(lead, stage) -> first and last entry time (see entrymap.h).
 */
#include "entrymap.h"

/* splitmix64's finaliser: lead ids are dense, so spread them */
static inline uint64_t
hash_key(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

void
lm_entrymap_init(LmEntryMap *m, LmEntrySlot *slots, size_t capacity)
{
	size_t		i;

	for (i = 0; i < capacity; i++)
		slots[i].key = LM_ENTRY_EMPTY;
	m->slots = slots;
	m->capacity = capacity;
	m->used = 0;
}

bool
lm_entrymap_full(const LmEntryMap *m)
{
	return (m->used + 1) * 10 > m->capacity * 7;
}

void
lm_entrymap_add(LmEntryMap *m, uint64_t key, int64_t first, int64_t last)
{
	size_t		mask = m->capacity - 1;
	size_t		i = (size_t) hash_key(key) & mask;

	for (;;)
	{
		LmEntrySlot *s = &m->slots[i];

		if (s->key == key)
		{
			if (first < s->first)
				s->first = first;
			if (last > s->last)
				s->last = last;
			return;
		}
		if (s->key == LM_ENTRY_EMPTY)
		{
			s->key = key;
			s->first = first;
			s->last = last;
			m->used++;
			return;
		}
		i = (i + 1) & mask;
	}
}

const LmEntrySlot *
lm_entrymap_find(const LmEntryMap *m, uint64_t key)
{
	size_t		mask = m->capacity - 1;
	size_t		i = (size_t) hash_key(key) & mask;

	for (;;)
	{
		const LmEntrySlot *s = &m->slots[i];

		if (s->key == key)
			return s;
		if (s->key == LM_ENTRY_EMPTY)
			return NULL;
		i = (i + 1) & mask;
	}
}

void
lm_entrymap_move(LmEntryMap *to, const LmEntryMap *from)
{
	size_t		i;

	for (i = 0; i < from->capacity; i++)
		if (from->slots[i].key != LM_ENTRY_EMPTY)
			lm_entrymap_add(to, from->slots[i].key, from->slots[i].first,
							from->slots[i].last);
}
