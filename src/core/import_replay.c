/*
 * import_replay.c
 *		The bulk import's replay of upsert_lead()'s rules (import_replay.h).
 *
 * How: rows of one list depend on each other (a row fills a lead's phone,
 * and a later row matches that lead by phone; two rows of a new person make
 * one lead), so the rows are replayed in id order against an in-memory
 * model of what upsert_lead() looks at: per lead, which fields are set, the
 * stored match keys, the keys the lead_keys trigger computes from the
 * current fields on every update (which differ from the stored ones when
 * those were built by an older key version; asked of the glue only for
 * the leads that get updated), the name key, the attributes.
 * "ORDER BY l.id LIMIT 1" lookups are binary min-heaps of lead positions per
 * key (existing leads sorted by id come first, leads the list creates
 * follow in creation order, so positions order like ids): e-mail key; phone
 * key for all leads, for leads without a name key, and per name key;
 * company key + name key.  Keys change only when a row fills a lead, so
 * heap entries are checked when they reach the top and dropped when the
 * lead no longer has that key.
 *
 * State layout: strings are interned once (an open-addressing hash table of
 * (pointer, length) to a dense id; the bytes stay the caller's); index keys
 * are (kind, string id, string id) packed into a uint64 (a second
 * open-addressing table) whose value is a heap number or, for external and
 * system ids, a lead position.  Leads: one array, existing leads by id, then
 * "hidden" ones (a link's target the caller cannot read: matched, never
 * updated, as upsert_lead()'s UPDATE would not see it either), then the
 * created ones.  Everything is allocated through the hooks and freed before
 * import_replay() returns, except the result.
 *
 * Complexity: time O((rows + leads) log(rows + leads)) expected, memory
 * O(rows + leads + links).
 */
#include "import_replay.h"

#include <stdlib.h>
#include <string.h>

/* index kinds */
#define IX_EMAIL			1	/* e-mail key -> heap */
#define IX_PHONE_ANY		2	/* phone key -> heap */
#define IX_PHONE_NO_NAME	3	/* phone key, leads without a name key -> heap */
#define IX_PHONE_NAME		4	/* phone key, name key -> heap */
#define IX_COMPANY_NAME		5	/* company key, name key -> heap */
#define IX_EXTERNAL_ID		6	/* lead.external_id -> lead (resolved) */
#define IX_SYSTEM_ID		7	/* (system, system_id) -> lead (resolved) */

typedef struct Lead
{
	int64_t		id;				/* existing lead; 0: created by the list */
	int32_t		ordinal;		/* created leads: 1, 2, ... in creation order */
	int32_t		input;			/* existing leads: index in leads[], else -1 */
	uint32_t	present;		/* IMPORT_BIT of the fields that are set */
	int32_t		ek,
				pk,
				ck;				/* stored match keys (string ids, -1 = NULL) */
	int32_t		fek,
				fpk,
				fck;			/* keys of the current fields (once fresh) */
	int32_t		nk;				/* name key of the current name */
	bool		fresh;			/* fek, fpk, fck known */
	bool		hidden;			/* a link's target the caller cannot read */
	bool		updated;		/* upsert_lead() would have updated it */
	int32_t		filled_by[IMPORT_NFIELDS];
	const void *attributes;
} Lead;

typedef struct Heap
{
	int32_t    *items;			/* lead positions, min-heap */
	int32_t		n;
	int32_t		cap;
} Heap;

typedef struct StrSlot
{
	const char *data;			/* NULL: empty slot */
	size_t		len;
	uint64_t	hash;
	int32_t		id;
} StrSlot;

typedef struct MapSlot
{
	uint64_t	key;			/* 0: empty (kinds start at 1) */
	int32_t		value;
} MapSlot;

typedef struct State
{
	const ImportHooks *hooks;
	void	   *arg;
	bool		failed;			/* an allocation returned NULL */
	StrSlot    *strings;
	uint64_t	strmask;
	int32_t		nstrings;
	MapSlot    *map;
	uint64_t	mapmask;
	int64_t		nmap;
	Heap	   *heaps;
	int32_t		nheaps;
	int32_t		capheaps;
	Lead	   *leads;
	int32_t		nleads;
	int32_t		nexisting;		/* leads[0..nexisting-1]: input, by id */
	int32_t		ncreated;
} State;

static void *
st_alloc(State *st, size_t size)
{
	void	   *p;

	if (st->failed)
		return NULL;
	p = st->hooks->alloc(st->arg, size ? size : 1);
	if (p == NULL)
		st->failed = true;
	return p;
}

static void
st_free(State *st, void *p)
{
	if (p != NULL && st->hooks->release != NULL)
		st->hooks->release(st->arg, p);
}

static void *
st_zalloc(State *st, size_t size)
{
	void	   *p = st_alloc(st, size);

	if (p != NULL)
		memset(p, 0, size);
	return p;
}

/* murmur3's 64-bit finaliser */
static uint64_t
hash_u64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	k ^= k >> 33;
	return k;
}

/* 64-bit FNV-1a, then the finaliser, so that the low bits mix well */
static uint64_t
hash_bytes64(const char *s, size_t len)
{
	uint64_t	h = 0xcbf29ce484222325ULL;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 0x100000001b3ULL;
	}
	return hash_u64(h);
}

/*
 * Double an open-addressing table (linear probing) of elem-sized slots:
 * used() tells a filled slot, hash() its hash.  *slots and *mask are
 * replaced (the old slots freed); false when the allocation failed (the
 * table stays as it was).
 */
static bool
table_grow(State *st, void **slots, uint64_t *mask, size_t elem,
		   bool (*used) (const void *), uint64_t (*hash) (const void *))
{
	uint64_t	oldsize = *mask + 1;
	uint64_t	newmask = oldsize * 2 - 1;
	char	   *old = *slots;
	char	   *n = st_zalloc(st, elem * oldsize * 2);
	uint64_t	i;

	if (n == NULL)
		return false;
	for (i = 0; i < oldsize; i++)
		if (used(old + i * elem))
		{
			uint64_t	j = hash(old + i * elem) & newmask;

			while (used(n + j * elem))
				j = (j + 1) & newmask;
			memcpy(n + j * elem, old + i * elem, elem);
		}
	st_free(st, old);
	*slots = n;
	*mask = newmask;
	return true;
}

static bool
str_used(const void *slot)
{
	return ((const StrSlot *) slot)->data != NULL;
}

static uint64_t
str_hash(const void *slot)
{
	return ((const StrSlot *) slot)->hash;
}

static bool
map_used(const void *slot)
{
	return ((const MapSlot *) slot)->key != 0;
}

static uint64_t
map_hash(const void *slot)
{
	return hash_u64(((const MapSlot *) slot)->key);
}

/* the id of a string (-1 for NULL); -2 on failure (st->failed or too many) */
static int32_t
intern(State *st, ImportStr s)
{
	uint64_t	h,
				j;

	if (s.data == NULL)
		return -1;
	if ((uint64_t) st->nstrings * 2 >= st->strmask + 1 &&
		!table_grow(st, (void **) &st->strings, &st->strmask, sizeof(StrSlot), str_used, str_hash))
		return -2;
	h = hash_bytes64(s.data, s.len);
	for (j = h & st->strmask; st->strings[j].data != NULL; j = (j + 1) & st->strmask)
	{
		StrSlot    *e = &st->strings[j];

		if (e->hash == h && e->len == s.len && memcmp(e->data, s.data, s.len) == 0)
			return e->id;
	}
	if (st->nstrings >= IMPORT_MAX_STRINGS)
		return -2;
	st->strings[j].data = s.data;
	st->strings[j].len = s.len;
	st->strings[j].hash = h;
	st->strings[j].id = st->nstrings++;
	return st->strings[j].id;
}

static inline uint64_t
ix_key(int kind, int32_t a, int32_t b)
{
	return ((uint64_t) kind << 58) | ((uint64_t) (uint32_t) a << 29) | (uint64_t) (uint32_t) b;
}

/* the slot of key, or NULL (absent; with insert: added with value -1) */
static MapSlot *
map_slot(State *st, uint64_t key, bool insert, bool *found)
{
	uint64_t	j;

	*found = false;
	if (insert && (uint64_t) st->nmap * 2 >= st->mapmask + 1 &&
		!table_grow(st, (void **) &st->map, &st->mapmask, sizeof(MapSlot), map_used, map_hash))
		return NULL;
	for (j = hash_u64(key) & st->mapmask; st->map[j].key != 0; j = (j + 1) & st->mapmask)
		if (st->map[j].key == key)
		{
			*found = true;
			return &st->map[j];
		}
	if (!insert)
		return NULL;
	st->map[j].key = key;
	st->map[j].value = -1;
	st->nmap++;
	return &st->map[j];
}

static int32_t
map_get(State *st, int kind, int32_t a, int32_t b)
{
	bool		found;
	MapSlot    *slot = map_slot(st, ix_key(kind, a, b), false, &found);

	return slot ? slot->value : -1;
}

static void
map_set(State *st, int kind, int32_t a, int32_t b, int32_t lead)
{
	bool		found;
	MapSlot    *slot = map_slot(st, ix_key(kind, a, b), true, &found);

	if (slot != NULL)
		slot->value = lead;
}

static void
heap_push(State *st, Heap *h, int32_t v)
{
	int32_t		i;

	if (h->n == h->cap)
	{
		int32_t		cap = h->cap ? h->cap * 2 : 4;
		int32_t    *items = st_alloc(st, sizeof(int32_t) * cap);

		if (items == NULL)
			return;
		if (h->n > 0)
			memcpy(items, h->items, sizeof(int32_t) * h->n);
		st_free(st, h->items);
		h->items = items;
		h->cap = cap;
	}
	i = h->n++;
	while (i > 0 && h->items[(i - 1) / 2] > v)
	{
		h->items[i] = h->items[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h->items[i] = v;
}

static void
heap_pop(Heap *h)
{
	int32_t		last = h->items[--h->n];
	int32_t		i = 0;

	for (;;)
	{
		int32_t		c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->items[c + 1] < h->items[c])
			c++;
		if (h->items[c] >= last)
			break;
		h->items[i] = h->items[c];
		i = c;
	}
	if (h->n > 0)
		h->items[i] = last;
}

static void
index_add(State *st, int kind, int32_t a, int32_t b, int32_t lead)
{
	bool		found;
	MapSlot    *slot = map_slot(st, ix_key(kind, a, b), true, &found);

	if (slot == NULL)
		return;
	if (!found)
	{
		if (st->nheaps == st->capheaps)
		{
			Heap	   *heaps = st_alloc(st, sizeof(Heap) * st->capheaps * 2);

			if (heaps == NULL)
				return;
			memcpy(heaps, st->heaps, sizeof(Heap) * st->nheaps);
			st_free(st, st->heaps);
			st->heaps = heaps;
			st->capheaps *= 2;
		}
		memset(&st->heaps[st->nheaps], 0, sizeof(Heap));
		slot->value = st->nheaps++;
	}
	heap_push(st, &st->heaps[slot->value], lead);
}

/* does the lead at position lead still belong under (kind, a, b)? */
static bool
index_valid(const State *st, int kind, int32_t a, int32_t b, int32_t lead)
{
	const Lead *l = &st->leads[lead];

	switch (kind)
	{
		case IX_EMAIL:
			return l->ek == a;
		case IX_PHONE_ANY:
			return l->pk == a;
		case IX_PHONE_NO_NAME:
			return l->pk == a && l->nk < 0;
		case IX_PHONE_NAME:
			return l->pk == a && l->nk == b;
		case IX_COMPANY_NAME:
			return l->ck == a && l->nk == b;
	}
	return false;
}

/* the oldest live lead under (kind, a, b), or -1 */
static int32_t
index_first(State *st, int kind, int32_t a, int32_t b)
{
	bool		found;
	MapSlot    *slot = map_slot(st, ix_key(kind, a, b), false, &found);
	Heap	   *h;

	if (slot == NULL)
		return -1;
	h = &st->heaps[slot->value];
	while (h->n > 0 && !index_valid(st, kind, a, b, h->items[0]))
		heap_pop(h);
	return h->n > 0 ? h->items[0] : -1;
}

/* put a lead under its current keys (entries under old keys go stale) */
static void
index_register(State *st, int32_t lead)
{
	const Lead *l = &st->leads[lead];

	if (l->ek >= 0)
		index_add(st, IX_EMAIL, l->ek, 0, lead);
	if (l->pk >= 0)
	{
		index_add(st, IX_PHONE_ANY, l->pk, 0, lead);
		if (l->nk < 0)
			index_add(st, IX_PHONE_NO_NAME, l->pk, 0, lead);
		else
			index_add(st, IX_PHONE_NAME, l->pk, l->nk, lead);
	}
	if (l->ck >= 0 && l->nk >= 0)
		index_add(st, IX_COMPANY_NAME, l->ck, l->nk, lead);
}

/* position of existing lead id (binary search), or -1 */
static int32_t
find_lead(const State *st, int64_t id)
{
	int32_t		lo = 0,
				hi = st->nexisting - 1;

	while (lo <= hi)
	{
		int32_t		mid = lo + (hi - lo) / 2;

		if (st->leads[mid].id == id)
			return mid;
		if (st->leads[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

static void
lead_init(Lead *l)
{
	int			f;

	memset(l, 0, sizeof(Lead));
	l->input = -1;
	l->ek = l->pk = l->ck = l->fek = l->fpk = l->fck = l->nk = -1;
	for (f = 0; f < IMPORT_NFIELDS; f++)
		l->filled_by[f] = -1;
}

/* position of the lead a link resolves to (a hidden entry when unknown) */
static int32_t
link_target(State *st, int64_t id)
{
	int32_t		pos = find_lead(st, id);
	Lead	   *l;

	if (pos >= 0)
		return pos;
	l = &st->leads[st->nleads];
	lead_init(l);
	l->id = id;
	l->present = IMPORT_ALL_FIELDS;
	l->fresh = true;
	l->hidden = true;
	return st->nleads++;
}

typedef struct IdPos
{
	int64_t		id;
	int32_t		pos;
} IdPos;

static int
cmp_idpos(const void *a, const void *b)
{
	const IdPos *x = a;
	const IdPos *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* positions ordered by id; NULL on failure (*dup when two ids are equal) */
static IdPos *
sorted_ids(State *st, const int64_t *ids, size_t stride, int32_t n, bool *dup)
{
	IdPos	   *order = st_alloc(st, sizeof(IdPos) * ((size_t) n + 1));
	int32_t		i;
	bool		sorted = true;

	*dup = false;
	if (order == NULL)
		return NULL;
	for (i = 0; i < n; i++)
	{
		order[i].id = *(const int64_t *) ((const char *) ids + stride * i);
		order[i].pos = i;
		if (i > 0 && order[i].id <= order[i - 1].id)
			sorted = false;
	}
	if (!sorted)
		qsort(order, n, sizeof(IdPos), cmp_idpos);
	for (i = 1; i < n; i++)
		if (order[i].id == order[i - 1].id)
		{
			*dup = true;
			st_free(st, order);
			return NULL;
		}
	return order;
}

static inline int64_t
lead_ref(const Lead *l)
{
	return l->id ? l->id : -(int64_t) l->ordinal;
}

/*
 * One row, upsert_lead()'s rules.  k: the row's interned keys (e-mail,
 * phone, company, name, external id, system, system id).
 */
static void
replay_row(State *st, const ImportRow *row, int32_t p, const int32_t *k,
		   ImportRowResult *out)
{
	int32_t		ek = k[0],
				pk = k[1],
				ck = k[2],
				nk = k[3],
				xid = k[4],
				sys = k[5],
				sysid = k[6];
	uint32_t	present = (row->present & IMPORT_ALL_FIELDS & ~IMPORT_BIT(IMPORT_EXTERNAL_ID)) |
		(xid >= 0 ? IMPORT_BIT(IMPORT_EXTERNAL_ID) : 0);
	int32_t		t = -1;
	ImportMatch how = IMPORT_CREATED;
	uint32_t	fills = 0;
	Lead	   *l;
	int			f;

	/* find_lead(system, system_id): matched, nothing filled */
	if (sys >= 0 && sysid >= 0)
		t = map_get(st, IX_SYSTEM_ID, sys, sysid);
	if (t >= 0)
	{
		out->lead = lead_ref(&st->leads[t]);
		out->how = IMPORT_ON_SYSTEM_ID;
		return;
	}
	if (ek < 0 && pk < 0 && (ck < 0 || nk < 0) && xid < 0)
	{
		out->rejected = true;	/* nothing to match on */
		return;
	}

	/* upsert_lead(): external id, e-mail, phone, company + name */
	if (xid >= 0 && (t = map_get(st, IX_EXTERNAL_ID, xid, 0)) >= 0)
		how = IMPORT_ON_EXTERNAL_ID;
	if (t < 0 && ek >= 0 && (t = index_first(st, IX_EMAIL, ek, 0)) >= 0)
		how = IMPORT_ON_EMAIL;
	if (t < 0 && pk >= 0)
	{
		if (nk < 0)
			t = index_first(st, IX_PHONE_ANY, pk, 0);
		else
		{
			int32_t		a = index_first(st, IX_PHONE_NO_NAME, pk, 0);
			int32_t		b = index_first(st, IX_PHONE_NAME, pk, nk);

			t = a < 0 ? b : b < 0 ? a : (a < b ? a : b);
		}
		if (t >= 0)
			how = IMPORT_ON_PHONE;
	}
	if (t < 0 && ck >= 0 && nk >= 0 && (t = index_first(st, IX_COMPANY_NAME, ck, nk)) >= 0)
		how = IMPORT_ON_COMPANY_NAME;

	if (t < 0)
	{
		/* a new lead with the row's fields */
		t = st->nleads++;
		l = &st->leads[t];
		lead_init(l);
		l->ordinal = ++st->ncreated;
		l->present = present;
		l->ek = l->fek = ek;
		l->pk = l->fpk = pk;
		l->ck = l->fck = ck;
		l->fresh = true;
		l->nk = nk;
		l->updated = true;
		l->attributes = row->attributes;
		index_register(st, t);
		if (xid >= 0)
			map_set(st, IX_EXTERNAL_ID, xid, 0, t);
		fills = present;
	}
	else
	{
		/* fill the gaps: what upsert_lead()'s UPDATE ... WHERE does */
		uint32_t	missing = present & ~st->leads[t].present;

		l = &st->leads[t];
		if (!l->hidden &&
			(missing != 0 || st->hooks->new_attribute_key(st->arg, row->attributes, l->attributes)))
		{
			int32_t		oek = l->ek,
						opk = l->pk,
						ock = l->ck,
						onk = l->nk;

			/*
			 * The keys lead_keys will compute from the current fields: the
			 * stored ones unless built by an older key version (asked only
			 * for leads that get updated)
			 */
			if (!l->fresh)
			{
				ImportStr	cur[3];

				st->hooks->current_keys(st->arg, l->input, cur);
				l->fek = intern(st, cur[0]);
				l->fpk = intern(st, cur[1]);
				l->fck = intern(st, cur[2]);
				if (l->fek < -1 || l->fpk < -1 || l->fck < -1)
				{
					st->failed = true;
					return;
				}
				l->fresh = true;
			}
			fills = missing;
			/* external_id only when no other lead has it */
			if ((fills & IMPORT_BIT(IMPORT_EXTERNAL_ID)) && map_get(st, IX_EXTERNAL_ID, xid, 0) >= 0)
				fills &= ~IMPORT_BIT(IMPORT_EXTERNAL_ID);
			if (fills & IMPORT_BIT(IMPORT_EXTERNAL_ID))
				map_set(st, IX_EXTERNAL_ID, xid, 0, t);
			l->present |= fills;
			if (fills & IMPORT_BIT(IMPORT_EMAIL))
				l->fek = ek;
			if (fills & IMPORT_BIT(IMPORT_PHONE))
				l->fpk = pk;
			if (fills & IMPORT_BIT(IMPORT_COMPANY))
				l->fck = ck;
			if (fills & IMPORT_BIT(IMPORT_NAME))
				l->nk = nk;
			l->attributes = st->hooks->concat_attributes(st->arg, row->attributes, l->attributes);
			l->updated = true;
			/* lead_keys recomputes all three keys on the UPDATE */
			l->ek = l->fek;
			l->pk = l->fpk;
			l->ck = l->fck;
			if (l->ek != oek || l->pk != opk || l->ck != ock || l->nk != onk)
				index_register(st, t);
		}
	}
	for (f = 0; f < IMPORT_NFIELDS; f++)
		if (fills & IMPORT_BIT(f))
			l->filled_by[f] = p;
	/* link_external_id(): the system id now names this lead */
	if (sys >= 0 && sysid >= 0)
		map_set(st, IX_SYSTEM_ID, sys, sysid, t);
	out->lead = lead_ref(l);
	out->how = how;
	out->fills = fills;
}

static void
state_free(State *st)
{
	int32_t		i;

	for (i = 0; i < st->nheaps; i++)
		st_free(st, st->heaps[i].items);
	st_free(st, st->heaps);
	st_free(st, st->strings);
	st_free(st, st->map);
	st_free(st, st->leads);
}

ImportError
import_replay(const ImportRow *rows, int32_t nrows, const ImportLead *leads, int32_t nleads,
			  const ImportLink *links, int32_t nlinks, const ImportHooks *hooks, void *arg,
			  ImportResult *result)
{
	State		st;
	ImportError err = IMPORT_OK;
	IdPos	   *order = NULL;
	int32_t    *rk = NULL;
	bool		dup;
	uint64_t	size;
	int32_t		i,
				nout;

	memset(result, 0, sizeof(*result));
	if (nrows < 0 || nleads < 0 || nlinks < 0 ||
		nrows > IMPORT_MAX_ITEMS || nleads > IMPORT_MAX_ITEMS || nlinks > IMPORT_MAX_ITEMS)
		return IMPORT_TOO_LARGE;
	memset(&st, 0, sizeof(st));
	st.hooks = hooks;
	st.arg = arg;
	for (size = 64; size < ((uint64_t) nrows + nleads + nlinks) * 8; size *= 2)
		;
	st.strings = st_zalloc(&st, sizeof(StrSlot) * size);
	st.strmask = size - 1;
	st.map = st_zalloc(&st, sizeof(MapSlot) * size);
	st.mapmask = size - 1;
	st.capheaps = 64;
	st.heaps = st_alloc(&st, sizeof(Heap) * st.capheaps);
	/* existing, hidden and created leads: never more than this */
	st.leads = st_alloc(&st, sizeof(Lead) * ((size_t) nleads + nlinks + nrows + 1));
	rk = st_alloc(&st, sizeof(int32_t) * 7 * ((size_t) nrows + 1));
	result->rows = st_zalloc(&st, sizeof(ImportRowResult) * ((size_t) nrows + 1));
	if (st.failed)
		goto fail;

	/* existing leads by id: a position orders like an id */
	order = sorted_ids(&st, nleads > 0 ? &leads[0].id : NULL, sizeof(ImportLead), nleads, &dup);
	if (order == NULL)
	{
		err = dup ? IMPORT_DUPLICATE_LEAD : IMPORT_NO_MEMORY;
		goto fail;
	}
	for (i = 0; i < nleads; i++)
	{
		const ImportLead *in = &leads[order[i].pos];
		Lead	   *l = &st.leads[i];

		lead_init(l);
		l->id = in->id;
		l->input = order[i].pos;
		l->present = in->present & IMPORT_ALL_FIELDS;
		l->ek = intern(&st, in->email_key);
		l->pk = intern(&st, in->phone_key);
		l->ck = intern(&st, in->company_key);
		l->nk = intern(&st, in->name_key);
		l->attributes = in->attributes;
		if (l->ek < -1 || l->pk < -1 || l->ck < -1 || l->nk < -1)
			goto fail;
	}
	st_free(&st, order);
	order = NULL;
	st.nleads = st.nexisting = nleads;
	for (i = 0; i < nleads; i++)
		index_register(&st, i);
	for (i = 0; i < nlinks; i++)
	{
		int32_t		a,
					b;

		if (links[i].system.data == NULL)
		{
			if ((a = intern(&st, links[i].id)) < 0)
				goto fail;
			map_set(&st, IX_EXTERNAL_ID, a, 0, link_target(&st, links[i].lead_id));
		}
		else
		{
			if ((a = intern(&st, links[i].system)) < 0 || (b = intern(&st, links[i].id)) < 0)
				goto fail;
			map_set(&st, IX_SYSTEM_ID, a, b, link_target(&st, links[i].lead_id));
		}
	}

	/* row keys, interned */
	for (i = 0; i < nrows; i++)
	{
		const ImportRow *r = &rows[i];
		int32_t    *k = &rk[7 * i];
		int			j;

		k[0] = intern(&st, r->email_key);
		k[1] = intern(&st, r->phone_key);
		k[2] = intern(&st, r->company_key);
		k[3] = intern(&st, r->name_key);
		k[4] = intern(&st, r->external_id);
		k[5] = intern(&st, r->system);
		k[6] = intern(&st, r->system_id);
		for (j = 0; j < 7; j++)
			if (k[j] < -1)
				goto fail;
	}

	/* rows in id order */
	order = sorted_ids(&st, nrows > 0 ? &rows[0].id : NULL, sizeof(ImportRow), nrows, &dup);
	if (order == NULL)
	{
		err = dup ? IMPORT_DUPLICATE_ROW : IMPORT_NO_MEMORY;
		goto fail;
	}
	for (i = 0; i < nrows && !st.failed; i++)
	{
		int32_t		p = order[i].pos;

		if (hooks->interrupt)
			hooks->interrupt(arg);
		replay_row(&st, &rows[p], p, &rk[7 * p], &result->rows[p]);
	}
	if (st.failed)
		goto fail;

	/* the leads created or updated */
	nout = 0;
	for (i = 0; i < st.nleads; i++)
		nout += st.leads[i].updated;
	result->leads = st_alloc(&st, sizeof(ImportLeadResult) * ((size_t) nout + 1));
	if (result->leads == NULL)
		goto fail;
	for (i = 0; i < st.nleads; i++)
	{
		const Lead *l = &st.leads[i];
		ImportLeadResult *o;

		if (!l->updated)
			continue;
		o = &result->leads[result->nleads++];
		o->ref = lead_ref(l);
		memcpy(o->filled_by, l->filled_by, sizeof(o->filled_by));
		o->attributes = l->attributes;
	}
	st_free(&st, order);
	st_free(&st, rk);
	state_free(&st);
	return IMPORT_OK;

fail:
	if (err == IMPORT_OK)
		err = st.nstrings >= IMPORT_MAX_STRINGS && !st.failed ? IMPORT_TOO_MANY_STRINGS :
			IMPORT_NO_MEMORY;
	st_free(&st, order);
	st_free(&st, rk);
	st_free(&st, result->rows);
	st_free(&st, result->leads);
	memset(result, 0, sizeof(*result));
	state_free(&st);
	return err;
}

void
import_result_free(const ImportHooks *hooks, void *arg, ImportResult *result)
{
	if (hooks->release != NULL)
	{
		if (result->rows != NULL)
			hooks->release(arg, result->rows);
		if (result->leads != NULL)
			hooks->release(arg, result->leads);
	}
	memset(result, 0, sizeof(*result));
}

const char *
import_match_name(ImportMatch how)
{
	switch (how)
	{
		case IMPORT_ON_SYSTEM_ID:
			return "system_id";
		case IMPORT_ON_EXTERNAL_ID:
			return "external_id";
		case IMPORT_ON_EMAIL:
			return "email";
		case IMPORT_ON_PHONE:
			return "phone";
		case IMPORT_ON_COMPANY_NAME:
			return "company_name";
		case IMPORT_CREATED:
			break;
	}
	return NULL;
}
