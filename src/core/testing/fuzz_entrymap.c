/*
 * fuzz_entrymap.c
 *		Fuzz target: any sequence of (lead, stage, time) entries, with growth
 *		whenever the table is full, gives the first and last time of every key
 *		that a brute-force scan gives, and no key that was not added.
 */
#include "entrymap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REC 12					/* lead (4 bytes), stage (2), pad (2), time (4) */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		n = size / REC,
				i,
				j;
	LmEntryMap	m;

	lm_entrymap_init(&m, malloc(8 * sizeof(LmEntrySlot)), 8);
	for (i = 0; i < n; i++)
	{
		uint32_t	lead;
		uint16_t	stage;
		int32_t		t;

		memcpy(&lead, data + i * REC, 4);
		memcpy(&stage, data + i * REC + 4, 2);
		memcpy(&t, data + i * REC + 8, 4);
		if (lm_entrymap_full(&m))
		{
			LmEntryMap	bigger;

			lm_entrymap_init(&bigger, malloc(m.capacity * 2 * sizeof(LmEntrySlot)), m.capacity * 2);
			lm_entrymap_move(&bigger, &m);
			free(m.slots);
			m = bigger;
		}
		lm_entrymap_add(&m, lm_entry_key(lead, stage), t, t);
	}
	for (i = 0; i < n; i++)
	{
		uint32_t	lead;
		uint16_t	stage;
		int64_t		first = INT64_MAX,
					last = INT64_MIN;
		const LmEntrySlot *s;

		memcpy(&lead, data + i * REC, 4);
		memcpy(&stage, data + i * REC + 4, 2);
		for (j = 0; j < n; j++)
		{
			uint32_t	l2;
			uint16_t	s2;
			int32_t		t;

			memcpy(&l2, data + j * REC, 4);
			memcpy(&s2, data + j * REC + 4, 2);
			memcpy(&t, data + j * REC + 8, 4);
			if (l2 == lead && s2 == stage)
			{
				if (t < first)
					first = t;
				if (t > last)
					last = t;
			}
		}
		s = lm_entrymap_find(&m, lm_entry_key(lead, stage));
		if (s == NULL || s->first != first || s->last != last)
			abort();
	}
	if (m.used > n || lm_entrymap_find(&m, lm_entry_key(LM_ENTRY_MAX_LEAD, 0)) != NULL)
		abort();
	free(m.slots);
	return 0;
}
