/*
 * import_reference.h
 *		A slow, obviously correct formulation of the import replay
 *		(../import_replay.c) for test_import_replay.c and
 *		fuzz_import_replay.c: every "ORDER BY l.id LIMIT 1" lookup is a
 *		linear scan over the leads in position order, every map a list read
 *		from its newest entry.  Attributes are bit sets of keys held in a
 *		pool (ImportRow.attributes points at a uint32_t; NULL: none).
 */
#ifndef LM_IMPORT_REFERENCE_H
#define LM_IMPORT_REFERENCE_H

#include <stdlib.h>
#include <string.h>

#include "import_replay.h"

#define REF_MAX 2048

/* ---- the hooks of the tests: malloc with a count, bit-set attributes ---- */
typedef struct TestCtx
{
	long		live;			/* allocations not yet released */
	long		fail_after;		/* alloc returns NULL after this many; < 0: never */
	const ImportStr *current;	/* 3 per input lead: current_keys answers */
	uint32_t	pool[REF_MAX * 2];
	int			npool;
	int			asked;			/* current_keys calls */
} TestCtx;

static void *
t_alloc(void *arg, size_t size)
{
	TestCtx    *c = arg;
	void	   *p;

	if (c->fail_after == 0)
		return NULL;
	if (c->fail_after > 0)
		c->fail_after--;
	p = malloc(size);
	if (p != NULL)
		c->live++;
	return p;
}

static void
t_release(void *arg, void *p)
{
	TestCtx    *c = arg;

	c->live--;
	free(p);
}

static void
t_current_keys(void *arg, int32_t lead, ImportStr keys[3])
{
	TestCtx    *c = arg;

	c->asked++;
	memcpy(keys, &c->current[3 * lead], sizeof(ImportStr) * 3);
}

static uint32_t
t_mask(const void *a)
{
	return a ? *(const uint32_t *) a : 0;
}

static bool
t_new_key(void *arg, const void *row, const void *lead)
{
	(void) arg;
	return (t_mask(row) & ~t_mask(lead)) != 0;
}

static const void *
t_concat(void *arg, const void *row, const void *lead)
{
	TestCtx    *c = arg;

	if (c->npool >= REF_MAX * 2)
		abort();
	c->pool[c->npool] = t_mask(row) | t_mask(lead);
	return &c->pool[c->npool++];
}

static const ImportHooks test_hooks = {
	.alloc = t_alloc,
	.release = t_release,
	.interrupt = NULL,
	.current_keys = t_current_keys,
	.new_attribute_key = t_new_key,
	.concat_attributes = t_concat,
};

/* ---- the reference ---- */
static bool
ref_eq(ImportStr a, ImportStr b)
{
	return a.data != NULL && b.data != NULL && a.len == b.len &&
		memcmp(a.data, b.data, a.len) == 0;
}

typedef struct RefLead
{
	int64_t		id;
	int32_t		ordinal;
	int32_t		input;
	uint32_t	present;
	ImportStr	ek,
				pk,
				ck,
				nk;
	bool		fresh,
				hidden,
				updated;
	int32_t		filled_by[IMPORT_NFIELDS];
	uint32_t	attributes;
} RefLead;

typedef struct RefMap
{
	ImportStr	a,
				b;
	int32_t		lead;
} RefMap;

typedef struct RefOut
{
	ImportRowResult rows[REF_MAX];
	ImportLeadResult leads[REF_MAX * 2];
	uint32_t	lead_attributes[REF_MAX * 2];
	int32_t		nleads;
} RefOut;

static RefLead ref_leads[REF_MAX * 3];
static RefMap ref_ext[REF_MAX * 3],
			ref_sys[REF_MAX * 3];

static int32_t
ref_map_get(const RefMap *m, int n, ImportStr a, ImportStr b, bool two)
{
	int			i;

	for (i = n - 1; i >= 0; i--)
		if (ref_eq(m[i].a, a) && (!two || ref_eq(m[i].b, b)))
			return m[i].lead;
	return -1;
}

static int
ref_cmp_lead(const void *x, const void *y)
{
	const RefLead *a = x,
			   *b = y;

	return a->id < b->id ? -1 : a->id > b->id;
}

static int
ref_cmp_row(const void *x, const void *y)
{
	const ImportRow *const *a = x;
	const ImportRow *const *b = y;

	return (*a)->id < (*b)->id ? -1 : (*a)->id > (*b)->id;
}

/* IMPORT_OK, or the duplicate error; nrows, nleads, nlinks <= REF_MAX */
static ImportError
ref_replay(const ImportRow *rows, int nrows, const ImportLead *leads, int nleads,
		   const ImportLink *links, int nlinks, const ImportStr *current, RefOut *out)
{
	const ImportRow *order[REF_MAX];
	int			nl = 0,
				next = 0,
				nsys = 0,
				ncreated = 0,
				nexisting,
				i,
				j,
				f;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < nleads; i++)
	{
		RefLead    *l = &ref_leads[nl++];

		memset(l, 0, sizeof(*l));
		l->id = leads[i].id;
		l->input = i;
		l->present = leads[i].present & IMPORT_ALL_FIELDS;
		l->ek = leads[i].email_key;
		l->pk = leads[i].phone_key;
		l->ck = leads[i].company_key;
		l->nk = leads[i].name_key;
		l->attributes = t_mask(leads[i].attributes);
		for (f = 0; f < IMPORT_NFIELDS; f++)
			l->filled_by[f] = -1;
	}
	qsort(ref_leads, nl, sizeof(RefLead), ref_cmp_lead);
	for (i = 1; i < nl; i++)
		if (ref_leads[i].id == ref_leads[i - 1].id)
			return IMPORT_DUPLICATE_LEAD;
	nexisting = nl;
	for (i = 0; i < nlinks; i++)
	{
		int32_t		t = -1;

		for (j = 0; j < nexisting; j++)
			if (ref_leads[j].id == links[i].lead_id)
				t = j;
		if (t < 0)
		{
			RefLead    *l = &ref_leads[t = nl++];

			memset(l, 0, sizeof(*l));
			l->id = links[i].lead_id;
			l->input = -1;
			l->present = IMPORT_ALL_FIELDS;
			l->fresh = l->hidden = true;
		}
		if (links[i].system.data == NULL)
			ref_ext[next++] = (RefMap) {links[i].id, {NULL, 0}, t};
		else
			ref_sys[nsys++] = (RefMap) {links[i].system, links[i].id, t};
	}
	for (i = 0; i < nrows; i++)
		order[i] = &rows[i];
	qsort(order, nrows, sizeof(order[0]), ref_cmp_row);
	for (i = 1; i < nrows; i++)
		if (order[i]->id == order[i - 1]->id)
			return IMPORT_DUPLICATE_ROW;

	for (i = 0; i < nrows; i++)
	{
		const ImportRow *r = order[i];
		int			p = (int) (r - rows);
		ImportRowResult *o = &out->rows[p];
		bool		hasx = r->external_id.data != NULL;
		bool		hassys = r->system.data != NULL && r->system_id.data != NULL;
		uint32_t	present = (r->present & IMPORT_ALL_FIELDS & ~IMPORT_BIT(IMPORT_EXTERNAL_ID)) |
			(hasx ? IMPORT_BIT(IMPORT_EXTERNAL_ID) : 0);
		int32_t		t = -1;
		ImportMatch how = IMPORT_CREATED;
		uint32_t	fills = 0;
		RefLead    *l;

		if (hassys && (t = ref_map_get(ref_sys, nsys, r->system, r->system_id, true)) >= 0)
		{
			o->lead = ref_leads[t].id ? ref_leads[t].id : -(int64_t) ref_leads[t].ordinal;
			o->how = IMPORT_ON_SYSTEM_ID;
			continue;
		}
		if (!r->email_key.data && !r->phone_key.data &&
			(!r->company_key.data || !r->name_key.data) && !hasx)
		{
			o->rejected = true;
			continue;
		}
		if (hasx && (t = ref_map_get(ref_ext, next, r->external_id, r->external_id, false)) >= 0)
			how = IMPORT_ON_EXTERNAL_ID;
		for (j = 0; t < 0 && r->email_key.data && j < nl; j++)
			if (ref_eq(ref_leads[j].ek, r->email_key))
				t = j, how = IMPORT_ON_EMAIL;
		for (j = 0; t < 0 && r->phone_key.data && j < nl; j++)
			if (ref_eq(ref_leads[j].pk, r->phone_key) &&
				(!r->name_key.data || !ref_leads[j].nk.data || ref_eq(ref_leads[j].nk, r->name_key)))
				t = j, how = IMPORT_ON_PHONE;
		for (j = 0; t < 0 && r->company_key.data && r->name_key.data && j < nl; j++)
			if (ref_eq(ref_leads[j].ck, r->company_key) && ref_eq(ref_leads[j].nk, r->name_key))
				t = j, how = IMPORT_ON_COMPANY_NAME;
		if (t < 0)
		{
			l = &ref_leads[t = nl++];
			memset(l, 0, sizeof(*l));
			l->ordinal = ++ncreated;
			l->input = -1;
			l->present = present;
			l->ek = r->email_key;
			l->pk = r->phone_key;
			l->ck = r->company_key;
			l->nk = r->name_key;
			l->fresh = l->updated = true;
			l->attributes = t_mask(r->attributes);
			for (f = 0; f < IMPORT_NFIELDS; f++)
				l->filled_by[f] = -1;
			if (hasx)
				ref_ext[next++] = (RefMap) {r->external_id, {NULL, 0}, t};
			fills = present;
		}
		else
		{
			uint32_t	missing;

			l = &ref_leads[t];
			missing = present & ~l->present;
			if (!l->hidden && (missing || (t_mask(r->attributes) & ~l->attributes)))
			{
				if (!l->fresh)
				{
					l->ek = current[3 * l->input];
					l->pk = current[3 * l->input + 1];
					l->ck = current[3 * l->input + 2];
					l->fresh = true;
				}
				fills = missing;
				if ((fills & IMPORT_BIT(IMPORT_EXTERNAL_ID)) &&
					ref_map_get(ref_ext, next, r->external_id, r->external_id, false) >= 0)
					fills &= ~IMPORT_BIT(IMPORT_EXTERNAL_ID);
				if (fills & IMPORT_BIT(IMPORT_EXTERNAL_ID))
					ref_ext[next++] = (RefMap) {r->external_id, {NULL, 0}, t};
				l->present |= fills;
				if (fills & IMPORT_BIT(IMPORT_EMAIL))
					l->ek = r->email_key;
				if (fills & IMPORT_BIT(IMPORT_PHONE))
					l->pk = r->phone_key;
				if (fills & IMPORT_BIT(IMPORT_COMPANY))
					l->ck = r->company_key;
				if (fills & IMPORT_BIT(IMPORT_NAME))
					l->nk = r->name_key;
				l->attributes |= t_mask(r->attributes);
				l->updated = true;
			}
		}
		for (f = 0; f < IMPORT_NFIELDS; f++)
			if (fills & IMPORT_BIT(f))
				l->filled_by[f] = p;
		if (hassys)
			ref_sys[nsys++] = (RefMap) {r->system, r->system_id, t};
		o->lead = l->id ? l->id : -(int64_t) l->ordinal;
		o->how = how;
		o->fills = fills;
	}
	for (i = 0; i < nl; i++)
	{
		ImportLeadResult *o;

		if (!ref_leads[i].updated)
			continue;
		o = &out->leads[out->nleads];
		o->ref = ref_leads[i].id ? ref_leads[i].id : -(int64_t) ref_leads[i].ordinal;
		memcpy(o->filled_by, ref_leads[i].filled_by, sizeof(o->filled_by));
		out->lead_attributes[out->nleads++] = ref_leads[i].attributes;
	}
	return IMPORT_OK;
}

/* NULL when the replay's result equals the reference's, else what differs */
static const char *
ref_compare(const ImportResult *res, const RefOut *ref, int nrows)
{
	int			i;

	for (i = 0; i < nrows; i++)
	{
		const ImportRowResult *a = &res->rows[i],
				   *b = &ref->rows[i];

		if (a->rejected != b->rejected)
			return "row rejected";
		if (!a->rejected && (a->lead != b->lead || a->how != b->how || a->fills != b->fills))
			return "row outcome";
	}
	if (res->nleads != ref->nleads)
		return "number of leads created or updated";
	for (i = 0; i < res->nleads; i++)
	{
		if (res->leads[i].ref != ref->leads[i].ref)
			return "lead ref";
		if (memcmp(res->leads[i].filled_by, ref->leads[i].filled_by, sizeof(res->leads[i].filled_by)) != 0)
			return "lead filled_by";
		if (t_mask(res->leads[i].attributes) != ref->lead_attributes[i])
			return "lead attributes";
	}
	return NULL;
}

/* ---- inputs from bytes (the fuzz target's layout; the unit test feeds random bytes) ---- */
#define REF_MAX_LEADS 16
#define REF_MAX_LINKS 8

typedef struct RefInput
{
	ImportRow	rows[REF_MAX];
	int			nrows;
	ImportLead	leads[REF_MAX_LEADS];
	int			nleads;
	ImportLink	links[REF_MAX_LINKS];
	int			nlinks;
	ImportStr	current[3 * REF_MAX_LEADS];
	uint32_t	attrs[REF_MAX + REF_MAX_LEADS];
	long		fail_after;
} RefInput;

/* a key from 2 bits: NULL or one of three short strings (two share bytes) */
static ImportStr
ref_word(unsigned v)
{
	static const char *const words[3] = {"a", "b", "ab"};

	v &= 3;
	if (v == 0)
		return (ImportStr) {NULL, 0};
	return (ImportStr) {words[v - 1], strlen(words[v - 1])};
}

/*
 * Layout: 3 header bytes (lead count, link count, flags: 1 duplicate lead
 * id, 2 duplicate row id, 4 fail an allocation), then 5 bytes per lead
 * (present bits; stored keys e/p/c/n 2 bits each; current keys 2 bits each
 * and "current = stored"; attribute bits; id shuffle), 3 per link (system
 * or external id, id, lead), and 4 per row up to the end (present bits and
 * external id; keys e/p/c/n; system, system id, attribute bits; id shuffle).
 */
static bool
ref_decode(const uint8_t *data, size_t size, RefInput *in)
{
	size_t		pos = 3;
	int			i;
	uint8_t		flags;

	if (size < 3)
		return false;
	memset(in, 0, sizeof(*in));
	in->nleads = data[0] % (REF_MAX_LEADS + 1);
	in->nlinks = data[1] % (REF_MAX_LINKS + 1);
	flags = data[2];
	in->fail_after = (flags & 4) ? (long) (data[0] ^ data[1]) % 40 : -1;
	if (size < pos + 5 * (size_t) in->nleads + 3 * (size_t) in->nlinks)
		return false;
	for (i = 0; i < in->nleads; i++, pos += 5)
	{
		const uint8_t *b = &data[pos];
		ImportLead *l = &in->leads[i];
		int64_t		t;

		l->id = 10 * (i + 1);
		l->present = b[0] & IMPORT_ALL_FIELDS;
		l->email_key = ref_word(b[1]);
		l->phone_key = ref_word(b[1] >> 2);
		l->company_key = ref_word(b[1] >> 4);
		l->name_key = ref_word(b[1] >> 6);
		if (b[2] & 0x40)
		{
			in->current[3 * i] = l->email_key;
			in->current[3 * i + 1] = l->phone_key;
			in->current[3 * i + 2] = l->company_key;
		}
		else
		{
			in->current[3 * i] = ref_word(b[2]);
			in->current[3 * i + 1] = ref_word(b[2] >> 2);
			in->current[3 * i + 2] = ref_word(b[2] >> 4);
		}
		in->attrs[REF_MAX + i] = b[3];
		l->attributes = &in->attrs[REF_MAX + i];
		t = l->id;
		l->id = in->leads[b[4] % (i + 1)].id;
		in->leads[b[4] % (i + 1)].id = t;
	}
	if ((flags & 1) && in->nleads >= 2)
		in->leads[in->nleads - 1].id = in->leads[0].id;
	for (i = 0; i < in->nlinks; i++, pos += 3)
	{
		const uint8_t *b = &data[pos];
		ImportLink *k = &in->links[i];

		k->system = ref_word(b[0]);
		k->id = ref_word((b[1] % 3) + 1);
		k->lead_id = (b[2] & 0x80) || in->nleads == 0 ? 5 + (b[2] & 1) :
			in->leads[b[2] % in->nleads].id;
	}
	for (in->nrows = 0; pos + 4 <= size && in->nrows < REF_MAX; pos += 4, in->nrows++)
	{
		const uint8_t *b = &data[pos];
		ImportRow  *r = &in->rows[in->nrows];
		int64_t		t;

		r->id = in->nrows + 1;
		r->present = b[0] & 0x3f;
		r->external_id = ref_word(b[0] >> 6);
		r->email_key = ref_word(b[1]);
		r->phone_key = ref_word(b[1] >> 2);
		r->company_key = ref_word(b[1] >> 4);
		r->name_key = ref_word(b[1] >> 6);
		r->system = ref_word(b[2]);
		r->system_id = ref_word(b[2] >> 2);
		in->attrs[in->nrows] = b[2] >> 4;
		r->attributes = (b[2] >> 4) ? &in->attrs[in->nrows] : NULL;
		t = r->id;
		r->id = in->rows[b[3] % (in->nrows + 1)].id;
		in->rows[b[3] % (in->nrows + 1)].id = t;
	}
	if ((flags & 2) && in->nrows >= 2)
		in->rows[in->nrows - 1].id = in->rows[0].id;
	return true;
}

/*
 * Run the replay and the reference on one input; NULL when they agree and
 * nothing leaked, else what went wrong.
 */
static const char *
ref_check(RefInput *in)
{
	static RefOut ref;
	static TestCtx ctx;
	ImportResult res;
	ImportError err,
				want;
	const char *why = NULL;

	memset(&ctx, 0, sizeof(ctx));
	ctx.fail_after = in->fail_after;
	ctx.current = in->current;
	err = import_replay(in->rows, in->nrows, in->leads, in->nleads, in->links, in->nlinks,
						&test_hooks, &ctx, &res);
	want = ref_replay(in->rows, in->nrows, in->leads, in->nleads, in->links, in->nlinks,
					  in->current, &ref);
	if (err == IMPORT_NO_MEMORY && in->fail_after >= 0)
		why = ctx.live != 0 ? "memory left after a failed allocation" : NULL;
	else if (err != want)
		why = "error code";
	else if (err == IMPORT_OK)
		why = ref_compare(&res, &ref, in->nrows);
	import_result_free(&test_hooks, &ctx, &res);
	if (why == NULL && ctx.live != 0)
		why = "memory left after import_result_free";
	return why;
}

#endif							/* LM_IMPORT_REFERENCE_H */
