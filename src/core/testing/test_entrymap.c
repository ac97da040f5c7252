/*
 * test_entrymap.c
 *		Unit tests of src/core/entrymap.c: keys, first/last merging, growth by
 *		moving into a bigger table, and a seeded comparison with a brute-force
 *		list on random entries.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "entrymap.h"
#include "tap.h"

static uint64_t rng = 0x2545F4914F6CDD1Du;

static uint64_t
next_random(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

typedef struct Brute
{
	int64_t		lead;
	int			stage;
	int64_t		first;
	int64_t		last;
} Brute;

static void
grow(LmEntryMap *m)
{
	LmEntryMap	bigger;

	lm_entrymap_init(&bigger, malloc(m->capacity * 2 * sizeof(LmEntrySlot)), m->capacity * 2);
	lm_entrymap_move(&bigger, m);
	free(m->slots);
	*m = bigger;
}

int
main(void)
{
	LmEntryMap	m;
	enum {NBRUTE = 4000};
	static Brute brute[NBRUTE];
	int			nbrute = 0,
				i,
				bad = 0;

	tap_ok(lm_entry_lead(lm_entry_key(LM_ENTRY_MAX_LEAD, LM_ENTRY_MAX_STAGE)) == LM_ENTRY_MAX_LEAD &&
		   lm_entry_stage(lm_entry_key(LM_ENTRY_MAX_LEAD, LM_ENTRY_MAX_STAGE)) == LM_ENTRY_MAX_STAGE &&
		   lm_entry_key(LM_ENTRY_MAX_LEAD, LM_ENTRY_MAX_STAGE) != LM_ENTRY_EMPTY,
		   "the largest key round-trips and is not the empty marker");
	tap_ok(lm_entry_key(1, 0) != lm_entry_key(0, 1), "lead and stage do not collide");

	lm_entrymap_init(&m, malloc(8 * sizeof(LmEntrySlot)), 8);
	lm_entrymap_add(&m, lm_entry_key(7, 2), 50, 50);
	lm_entrymap_add(&m, lm_entry_key(7, 2), 10, 10);
	lm_entrymap_add(&m, lm_entry_key(7, 2), 90, 90);
	{
		const LmEntrySlot *s = lm_entrymap_find(&m, lm_entry_key(7, 2));

		tap_ok(s != NULL && s->first == 10 && s->last == 90 && m.used == 1,
			   "three entries of one lead and stage: first 10, last 90");
	}
	tap_ok(lm_entrymap_find(&m, lm_entry_key(7, 3)) == NULL, "an absent key is not found");
	free(m.slots);

	/* random entries, growing from the smallest table */
	lm_entrymap_init(&m, malloc(8 * sizeof(LmEntrySlot)), 8);
	for (i = 0; i < 20000; i++)
	{
		int64_t		lead = (int64_t) (next_random() % 900);
		int			stage = (int) (next_random() % 4);
		int64_t		t = (int64_t) (next_random() % 100000) - 50000;
		int			j;

		if (lm_entrymap_full(&m))
			grow(&m);
		lm_entrymap_add(&m, lm_entry_key(lead, stage), t, t);
		for (j = 0; j < nbrute; j++)
			if (brute[j].lead == lead && brute[j].stage == stage)
				break;
		if (j == nbrute)
		{
			brute[nbrute].lead = lead;
			brute[nbrute].stage = stage;
			brute[nbrute].first = brute[nbrute].last = t;
			nbrute++;
		}
		else
		{
			if (t < brute[j].first)
				brute[j].first = t;
			if (t > brute[j].last)
				brute[j].last = t;
		}
	}
	for (i = 0; i < nbrute; i++)
	{
		const LmEntrySlot *s = lm_entrymap_find(&m, lm_entry_key(brute[i].lead, brute[i].stage));

		if (s == NULL || s->first != brute[i].first || s->last != brute[i].last)
			bad++;
	}
	TAP_OK(bad == 0 && m.used == (size_t) nbrute,
		   "20000 random entries: %d keys, all first/last right (%d wrong), table %zu slots",
		   nbrute, bad, m.capacity);
	TAP_OK(m.used * 10 <= m.capacity * 7, "the table stays at most 70 %% full");
	free(m.slots);
	printf("1..%d\n", tap_count);
	return tap_failed != 0;
}
