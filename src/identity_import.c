/*
 * identity_import.c
 *		import_resolve(): the in-memory pass that decides a whole
 *		leadmgmt.lead_import list at once for import_leads()
 *		(sql/parts/80_identity.sql, import section).  Part of identity
 *		(doc/identity.md).  The rules, state layout and complexity are in
 *		the comment below.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "leadmgmt.h"
#include "identity.h"

/* ---------------------------------------------------------------------
 * Bulk import: resolving a whole list in one pass
 * ---------------------------------------------------------------------
 *
 * import_resolve() computes, for the pending rows of leadmgmt.lead_import,
 * exactly what the row-by-row import did: rows in id order, each first
 * looked up by (system, system_id) like find_lead(), else matched or
 * created like upsert_lead() (external id, e-mail key, phone key with names
 * that do not contradict, company key + name key; the oldest live lead
 * wins; a match fills the lead's NULL fields and adds the attribute keys it
 * lacked).  It runs no SQL: leadmgmt.import_leads() reads the rows and every
 * lead they can reach with a few set-based queries, calls this, and writes
 * the outcome with one statement per table.
 *
 * Rows of one list depend on each other (a row fills a lead's phone, and a
 * later row matches that lead by phone; two rows of a new person make one
 * lead), so the rows are replayed here in id order against an in-memory
 * model of what upsert_lead() looks at: per lead, which fields are set, the
 * stored match keys, the keys the lead_keys trigger computes from the
 * current fields on every update (which differ from the stored ones when
 * those were built by an older key_version; computed here for the leads
 * that get updated), the name key, the attributes.
 * "ORDER BY l.id LIMIT 1" lookups are binary min-heaps of lead positions per
 * key (existing leads sorted by id come first, leads the list creates
 * follow in creation order, so positions order like ids): e-mail key; phone
 * key for all leads, for leads without a name key, and per name key;
 * company key + name key.  Keys change only when a row fills a lead, so
 * heap entries are checked when they reach the top and dropped when the
 * lead no longer has that key.
 *
 * Strings are interned once (one hash table), index keys are (kind, string
 * id, string id) packed into a uint64 (a second hash table).
 * Time O((rows + leads) log(rows + leads)), memory O(rows + leads).
 */

/* bits of import_resolve()'s present/fills arguments (see import_leads) */
#define IMP_EMAIL		0x01
#define IMP_NAME		0x02
#define IMP_COMPANY		0x04
#define IMP_PHONE		0x08
#define IMP_SOURCE		0x10
#define IMP_ORIGIN		0x20
#define IMP_EXTERNAL_ID	0x40
#define IMP_FIELDS		0x7f

/* index kinds */
#define IX_EMAIL			1	/* e-mail key -> heap */
#define IX_PHONE_ANY		2	/* phone key -> heap */
#define IX_PHONE_NO_NAME	3	/* phone key, leads without a name key -> heap */
#define IX_PHONE_NAME		4	/* phone key, name key -> heap */
#define IX_COMPANY_NAME		5	/* company key, name key -> heap */
#define IX_EXTERNAL_ID		6	/* lead.external_id -> lead (resolved) */
#define IX_SYSTEM_ID		7	/* (system, system_id) -> lead (resolved) */

#define IMP_MAX_STRINGS		((int32) 1 << 29)

#define IMP_HINT errhint("leadmgmt.import_resolve() is a step of leadmgmt.import_leads(), which builds its arguments.")

typedef struct ImpLead
{
	int64		id;				/* existing lead; 0: created by the list */
	int32		ordinal;		/* created leads: 1, 2, ... in creation order */
	int32		present;		/* IMP_* bits of the fields that are not NULL */
	int32		ek,
				pk,
				ck;				/* stored match keys (string ids, -1 = NULL) */
	int32		fek,
				fpk,
				fck;			/* keys of the current fields (once fresh) */
	bool		fresh;			/* fek, fpk, fck computed */
	text	   *raw[3];			/* existing lead's email, phone, company */
	int32		nk;				/* name key of the current name */
	bool		hidden;			/* resolved target the caller cannot read */
	bool		updated;		/* upsert_lead() would have updated it */
	Jsonb	   *attributes;
} ImpLead;

typedef struct ImpHeap
{
	int32	   *items;			/* lead positions, min-heap */
	int32		n;
	int32		cap;
} ImpHeap;

/* interned strings: a text value -> dense id */
typedef struct ImpString
{
	text	   *key;
	uint32		hash;
	int32		id;
	char		status;
} ImpString;

static inline bool
imp_text_equal(const text *a, const text *b)
{
	Size		la = VARSIZE_ANY_EXHDR(a);

	return la == VARSIZE_ANY_EXHDR(b) && memcmp(VARDATA_ANY(a), VARDATA_ANY(b), la) == 0;
}

#define SH_PREFIX impstr
#define SH_ELEMENT_TYPE ImpString
#define SH_KEY_TYPE text *
#define SH_KEY key
#define SH_HASH_KEY(tb, k) \
	hash_bytes((const unsigned char *) VARDATA_ANY(k), (int) VARSIZE_ANY_EXHDR(k))
#define SH_EQUAL(tb, a, b) imp_text_equal(a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* index: (kind, a, b) -> heap number or lead position */
typedef struct ImpSlot
{
	uint64		key;
	int32		value;
	char		status;
} ImpSlot;

#define SH_PREFIX impmap
#define SH_ELEMENT_TYPE ImpSlot
#define SH_KEY_TYPE uint64
#define SH_KEY key
#define SH_HASH_KEY(tb, k) \
	hash_combine(murmurhash32((uint32) (k)), murmurhash32((uint32) ((k) >> 32)))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct ImpState
{
	impstr_hash *strings;
	int32		nstrings;
	impmap_hash *index;
	ImpHeap    *heaps;
	int32		nheaps;
	int32		capheaps;
	ImpLead    *leads;
	int32		nleads;
	int32		nexisting;		/* leads[0..nexisting-1]: input, by id */
	int32		ncreated;
	Jsonb	   *empty_object;
} ImpState;

static int32
imp_intern(ImpState *st, Datum value, bool isnull)
{
	ImpString  *s;
	bool		found;

	if (isnull)
		return -1;
	s = impstr_insert(st->strings, DatumGetTextPP(value), &found);
	if (!found)
	{
		if (st->nstrings >= IMP_MAX_STRINGS)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct keys in one import"),
					 errhint("Import the list in several batches.")));
		s->id = st->nstrings++;
	}
	return s->id;
}

static int32
imp_intern_key(ImpState *st, text *key)
{
	return imp_intern(st, PointerGetDatum(key), key == NULL);
}

static inline uint64
imp_key(int kind, int32 a, int32 b)
{
	return ((uint64) kind << 58) | ((uint64) (uint32) a << 29) | (uint64) (uint32) b;
}

static void
imp_heap_push(ImpHeap *h, int32 v)
{
	int32		i;

	if (h->n == h->cap)
	{
		h->cap = h->cap ? h->cap * 2 : 4;
		h->items = h->items ? repalloc(h->items, sizeof(int32) * h->cap) :
			palloc(sizeof(int32) * h->cap);
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
imp_heap_pop(ImpHeap *h)
{
	int32		last = h->items[--h->n];
	int32		i = 0;

	for (;;)
	{
		int32		c = 2 * i + 1;

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
imp_index_add(ImpState *st, int kind, int32 a, int32 b, int32 lead)
{
	bool		found;
	ImpSlot    *slot = impmap_insert(st->index, imp_key(kind, a, b), &found);

	if (!found)
	{
		if (st->nheaps == st->capheaps)
		{
			st->capheaps *= 2;
			st->heaps = repalloc(st->heaps, sizeof(ImpHeap) * st->capheaps);
		}
		memset(&st->heaps[st->nheaps], 0, sizeof(ImpHeap));
		slot->value = st->nheaps++;
	}
	imp_heap_push(&st->heaps[slot->value], lead);
}

/* does the lead at position lead still belong under (kind, a, b)? */
static bool
imp_valid(const ImpState *st, int kind, int32 a, int32 b, int32 lead)
{
	const ImpLead *l = &st->leads[lead];

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
static int32
imp_first(ImpState *st, int kind, int32 a, int32 b)
{
	ImpSlot    *slot = impmap_lookup(st->index, imp_key(kind, a, b));
	ImpHeap    *h;

	if (slot == NULL)
		return -1;
	h = &st->heaps[slot->value];
	while (h->n > 0 && !imp_valid(st, kind, a, b, h->items[0]))
		imp_heap_pop(h);
	return h->n > 0 ? h->items[0] : -1;
}

static int32
imp_map_get(ImpState *st, int kind, int32 a, int32 b)
{
	ImpSlot    *slot = impmap_lookup(st->index, imp_key(kind, a, b));

	return slot ? slot->value : -1;
}

static void
imp_map_set(ImpState *st, int kind, int32 a, int32 b, int32 lead)
{
	bool		found;
	ImpSlot    *slot = impmap_insert(st->index, imp_key(kind, a, b), &found);

	slot->value = lead;
}

/* put a lead under its current keys (entries under old keys go stale) */
static void
imp_register(ImpState *st, int32 lead)
{
	const ImpLead *l = &st->leads[lead];

	if (l->ek >= 0)
		imp_index_add(st, IX_EMAIL, l->ek, 0, lead);
	if (l->pk >= 0)
	{
		imp_index_add(st, IX_PHONE_ANY, l->pk, 0, lead);
		if (l->nk < 0)
			imp_index_add(st, IX_PHONE_NO_NAME, l->pk, 0, lead);
		else
			imp_index_add(st, IX_PHONE_NAME, l->pk, l->nk, lead);
	}
	if (l->ck >= 0 && l->nk >= 0)
		imp_index_add(st, IX_COMPANY_NAME, l->ck, l->nk, lead);
}

/* position of existing lead id (binary search), or -1 */
static int32
imp_find_lead(const ImpState *st, int64 id)
{
	int32		lo = 0,
				hi = st->nexisting - 1;

	while (lo <= hi)
	{
		int32		mid = lo + (hi - lo) / 2;

		if (st->leads[mid].id == id)
			return mid;
		if (st->leads[mid].id < id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * Position of the lead an external id or system id resolves to.  A lead the
 * caller cannot read (row-level security hides it from the candidate query)
 * becomes a hidden entry: matched, never updated, as upsert_lead()'s UPDATE
 * would not see it either.
 */
static int32
imp_target(ImpState *st, int64 id)
{
	int32		pos = imp_find_lead(st, id);
	ImpLead    *l;

	if (pos >= 0)
		return pos;
	l = &st->leads[st->nleads];
	memset(l, 0, sizeof(ImpLead));
	l->id = id;
	l->present = IMP_FIELDS;
	l->ek = l->pk = l->ck = l->fek = l->fpk = l->fck = l->nk = -1;
	l->fresh = true;
	l->hidden = true;
	l->attributes = st->empty_object;
	return st->nleads++;
}

/*
 * The last condition of upsert_lead()'s UPDATE: does the row bring an
 * attribute key the lead lacks (EXISTS (SELECT 1 FROM
 * jsonb_object_keys(COALESCE(row, '{}')) k WHERE NOT lead ? k))?  Fails
 * like jsonb_object_keys() on a row whose attributes are not an object.
 */
static bool
imp_new_attribute_key(Jsonb *row, Jsonb *lead)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		skip_nested = false;

	if (row == NULL)
		return false;
	if (JB_ROOT_IS_SCALAR(row))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot call %s on a scalar", "jsonb_object_keys")));
	if (!JB_ROOT_IS_OBJECT(row))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot call %s on an array", "jsonb_object_keys")));
	it = JsonbIteratorInit(&row->root);
	while ((tok = JsonbIteratorNext(&it, &v, skip_nested)) != WJB_DONE)
	{
		skip_nested = true;
		if (tok == WJB_KEY)
		{
			text	   *k = cstring_to_text_with_len(v.val.string.val, v.val.string.len);

			if (!DatumGetBool(DirectFunctionCall2(jsonb_exists, JsonbPGetDatum(lead),
												  PointerGetDatum(k))))
				return true;
		}
	}
	return false;
}

/*
 * Deconstruct an array argument: n elements (-1: any number) of width
 * values each -- one-dimensional for width 1, else n x width (an empty
 * array is fine for n = 0).  Returns n.
 */
static int
imp_array(FunctionCallInfo fcinfo, int argno, Oid elemtype, int n, int width,
		  bool nulls_allowed, Datum **values, bool **nulls)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(argno);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			count;
	int			rows;
	int			i;

	if (ARR_ELEMTYPE(a) != elemtype)
		elog(ERROR, "import_resolve: argument %d has the wrong type", argno + 1);
	if (ARR_NDIM(a) == 0)
		rows = 0;
	else if (width == 1 && ARR_NDIM(a) == 1)
		rows = ARR_DIMS(a)[0];
	else if (width > 1 && ARR_NDIM(a) == 2 && ARR_DIMS(a)[1] == width)
		rows = ARR_DIMS(a)[0];
	else
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("import_resolve: argument %d must be %s", argno + 1,
						width == 1 ? "a one-dimensional array" :
						psprintf("an array of %d-element arrays", width)),
				 IMP_HINT));
	if (n >= 0 && rows != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("import_resolve: argument %d has %d elements, expected %d",
						argno + 1, rows, n),
				 IMP_HINT));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elemtype, typlen, typbyval, typalign, values, nulls, &count);
	Assert(count == rows * width);
	if (!nulls_allowed)
		for (i = 0; i < count; i++)
			if ((*nulls)[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("import_resolve: argument %d must not contain NULL", argno + 1),
						 IMP_HINT));
	return rows;
}

static int
imp_cmp_id(const void *a, const void *b, void *arg)
{
	const Datum *ids = (const Datum *) arg;
	int64		x = DatumGetInt64(ids[*(const int32 *) a]);
	int64		y = DatumGetInt64(ids[*(const int32 *) b]);

	return x < y ? -1 : x > y ? 1 : 0;
}

/* positions 0..n-1 ordered by ids[] (already sorted: O(n)); ids must be distinct */
static int32 *
imp_sorted(Datum *ids, int n, const char *what)
{
	int32	   *order = palloc(sizeof(int32) * ((Size) n + 1));
	int			i;

	for (i = 0; i < n; i++)
		order[i] = i;
	for (i = 1; i < n; i++)
		if (DatumGetInt64(ids[i]) <= DatumGetInt64(ids[i - 1]))
			break;
	if (i < n)
		qsort_arg(order, n, sizeof(int32), imp_cmp_id, ids);
	for (i = 1; i < n; i++)
		if (DatumGetInt64(ids[order[i]]) == DatumGetInt64(ids[order[i - 1]]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("import_resolve: %s ids must be distinct", what),
					 IMP_HINT));
	return order;
}

/*
 * import_resolve(row_id int8[], row_present int4[], row_keys text[][],
 *     row_attributes jsonb[], lead_id int8[], lead_present int4[],
 *     lead_keys text[][], lead_attributes jsonb[], external_id text[],
 *     external_lead int8[], system_ids text[][], system_lead int8[],
 *     OUT row_lead int8[], OUT row_matched_on text[], OUT row_fills int4[],
 *     OUT lead_ref int8[], OUT lead_attributes_after jsonb[])
 *
 * Rows, any order (processed by row_id): present has the IMP_* bits of the
 * fields given (email, name, company, phone, source, origin; the external
 * id bit comes from the keys), keys are [email key, phone key, company key,
 * name key, external_id, system, system_id], attributes as given.
 * Leads: the live leads the rows can reach, any order, present with the
 * external id bit, keys [stored email, phone and company keys, email,
 * phone and company as they are, name key], attributes.  external_*:
 * leads having that external_id, resolved through merged_into; system_*:
 * rows of lead_external_id ([system, external_id]), resolved.
 *
 * Out, per row (input order): the lead (existing id, or -k for the k-th
 * lead the list creates; NULL: nothing to match on), matched_on (NULL when
 * created or rejected), the IMP_* bits of the fields the row filled
 * (created: all it has).  Per lead created or updated: ref (id or -k) and
 * its attributes after the import.
 */
PG_FUNCTION_INFO_V1(leadmgmt_import_resolve);
Datum
leadmgmt_import_resolve(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	ImpState	st;
	TupleDesc	tupdesc;
	Datum	   *row_id,
			   *row_present,
			   *row_key,
			   *row_attr;
	bool	   *row_idn,
			   *row_presentn,
			   *row_keyn,
			   *row_attrn;
	Datum	   *lead_id,
			   *lead_present,
			   *lead_key,
			   *lead_attr;
	bool	   *lead_idn,
			   *lead_presentn,
			   *lead_keyn,
			   *lead_attrn;
	Datum	   *ext_id,
			   *ext_lead,
			   *sys_id,
			   *sys_lead;
	bool	   *ext_idn,
			   *ext_leadn,
			   *sys_idn,
			   *sys_leadn;
	int			nrows,
				nleads,
				next,
				nsys;
	int32	   *rk;				/* interned row keys: 7 per row */
	int32	   *order;
	int64	   *out_lead;
	bool	   *out_leadn;
	const char **out_how;
	int32	   *out_fills;
	Datum	   *o_lead,
			   *o_how,
			   *o_fills,
			   *o_ref,
			   *o_attr;
	bool	   *o_leadn,
			   *o_hown;
	int			nout;
	int			i;
	Datum		result[5];
	bool		result_nulls[5] = {false, false, false, false, false};
	int			dims[1];
	int			lbs[1] = {1};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "import_resolve: return type must be a row type");

	work = AllocSetContextCreate(CurrentMemoryContext, "import_resolve", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	/* rows: keys are email, phone, company, name, external id, system, system id */
	nrows = imp_array(fcinfo, 0, INT8OID, -1, 1, false, &row_id, &row_idn);
	imp_array(fcinfo, 1, INT4OID, nrows, 1, false, &row_present, &row_presentn);
	imp_array(fcinfo, 2, TEXTOID, nrows, 7, true, &row_key, &row_keyn);
	imp_array(fcinfo, 3, JSONBOID, nrows, 1, true, &row_attr, &row_attrn);
	/* leads: stored email, phone, company keys; email, phone, company; name key */
	nleads = imp_array(fcinfo, 4, INT8OID, -1, 1, false, &lead_id, &lead_idn);
	imp_array(fcinfo, 5, INT4OID, nleads, 1, false, &lead_present, &lead_presentn);
	imp_array(fcinfo, 6, TEXTOID, nleads, 7, true, &lead_key, &lead_keyn);
	imp_array(fcinfo, 7, JSONBOID, nleads, 1, false, &lead_attr, &lead_attrn);
	/* external ids; system ids (system, id) */
	next = imp_array(fcinfo, 8, TEXTOID, -1, 1, false, &ext_id, &ext_idn);
	imp_array(fcinfo, 9, INT8OID, next, 1, false, &ext_lead, &ext_leadn);
	nsys = imp_array(fcinfo, 10, TEXTOID, -1, 2, false, &sys_id, &sys_idn);
	imp_array(fcinfo, 11, INT8OID, nsys, 1, false, &sys_lead, &sys_leadn);

	memset(&st, 0, sizeof(st));
	st.strings = impstr_create(work, (uint32) Min((int64) nrows * 4 + nleads * 4 + 64, PG_INT32_MAX / 4), NULL);
	st.index = impmap_create(work, (uint32) Min((int64) nrows * 4 + nleads * 4 + 64, PG_INT32_MAX / 4), NULL);
	st.capheaps = 64;
	st.heaps = palloc(sizeof(ImpHeap) * st.capheaps);
	st.empty_object = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	/* existing, hidden and created leads: never more than this */
	st.leads = palloc(sizeof(ImpLead) * ((Size) nleads + next + nsys + nrows + 1));

	/* existing leads by id: a position orders like an id */
	order = imp_sorted(lead_id, nleads, "lead");
	for (i = 0; i < nleads; i++)
	{
		ImpLead    *l = &st.leads[i];
		int32		p = order[i];

		l->id = DatumGetInt64(lead_id[p]);
		l->ordinal = 0;
		l->present = DatumGetInt32(lead_present[p]) & IMP_FIELDS;
		l->ek = imp_intern(&st, lead_key[7 * p + 0], lead_keyn[7 * p + 0]);
		l->pk = imp_intern(&st, lead_key[7 * p + 1], lead_keyn[7 * p + 1]);
		l->ck = imp_intern(&st, lead_key[7 * p + 2], lead_keyn[7 * p + 2]);
		l->fek = l->fpk = l->fck = -1;
		l->fresh = false;
		l->raw[0] = lead_keyn[7 * p + 3] ? NULL : DatumGetTextPP(lead_key[7 * p + 3]);
		l->raw[1] = lead_keyn[7 * p + 4] ? NULL : DatumGetTextPP(lead_key[7 * p + 4]);
		l->raw[2] = lead_keyn[7 * p + 5] ? NULL : DatumGetTextPP(lead_key[7 * p + 5]);
		l->nk = imp_intern(&st, lead_key[7 * p + 6], lead_keyn[7 * p + 6]);
		l->hidden = false;
		l->updated = false;
		l->attributes = DatumGetJsonbP(lead_attr[p]);
	}
	st.nleads = st.nexisting = nleads;
	for (i = 0; i < nleads; i++)
		imp_register(&st, i);
	for (i = 0; i < next; i++)
		imp_map_set(&st, IX_EXTERNAL_ID, imp_intern(&st, ext_id[i], false), 0,
					imp_target(&st, DatumGetInt64(ext_lead[i])));
	for (i = 0; i < nsys; i++)
		imp_map_set(&st, IX_SYSTEM_ID, imp_intern(&st, sys_id[2 * i], false),
					imp_intern(&st, sys_id[2 * i + 1], false),
					imp_target(&st, DatumGetInt64(sys_lead[i])));

	/* row keys, interned */
	rk = palloc(sizeof(int32) * 7 * ((Size) nrows + 1));
	for (i = 0; i < 7 * nrows; i++)
		rk[i] = imp_intern(&st, row_key[i], row_keyn[i]);

	/* rows in id order */
	order = imp_sorted(row_id, nrows, "row");

	out_lead = palloc0(sizeof(int64) * ((Size) nrows + 1));
	out_leadn = palloc0(sizeof(bool) * ((Size) nrows + 1));
	out_how = palloc0(sizeof(char *) * ((Size) nrows + 1));
	out_fills = palloc0(sizeof(int32) * ((Size) nrows + 1));

	for (i = 0; i < nrows; i++)
	{
		int32		p = order[i];
		const int32 *k = &rk[7 * p];
		int32		ek = k[0],
					pk = k[1],
					ck = k[2],
					nk = k[3],
					xid = k[4],
					sys = k[5],
					sysid = k[6];
		int32		present = (DatumGetInt32(row_present[p]) & (IMP_FIELDS & ~IMP_EXTERNAL_ID)) |
			(xid >= 0 ? IMP_EXTERNAL_ID : 0);
		Jsonb	   *attr = row_attrn[p] ? NULL : DatumGetJsonbP(row_attr[p]);
		int32		t = -1;
		const char *how = NULL;
		int32		fills = 0;
		ImpLead    *l;

		CHECK_FOR_INTERRUPTS();

		/* find_lead(system, system_id): matched, nothing filled */
		if (sys >= 0 && sysid >= 0)
			t = imp_map_get(&st, IX_SYSTEM_ID, sys, sysid);
		if (t >= 0)
		{
			l = &st.leads[t];
			out_lead[p] = l->id ? l->id : -(int64) l->ordinal;
			out_how[p] = "system_id";
			continue;
		}
		if (ek < 0 && pk < 0 && (ck < 0 || nk < 0) && xid < 0)
		{
			out_leadn[p] = true;	/* nothing to match on */
			continue;
		}

		/* upsert_lead(): external id, e-mail, phone, company + name */
		if (xid >= 0 && (t = imp_map_get(&st, IX_EXTERNAL_ID, xid, 0)) >= 0)
			how = "external_id";
		if (t < 0 && ek >= 0 && (t = imp_first(&st, IX_EMAIL, ek, 0)) >= 0)
			how = "email";
		if (t < 0 && pk >= 0)
		{
			if (nk < 0)
				t = imp_first(&st, IX_PHONE_ANY, pk, 0);
			else
			{
				int32		a = imp_first(&st, IX_PHONE_NO_NAME, pk, 0);
				int32		b = imp_first(&st, IX_PHONE_NAME, pk, nk);

				t = a < 0 ? b : b < 0 ? a : Min(a, b);
			}
			if (t >= 0)
				how = "phone";
		}
		if (t < 0 && ck >= 0 && nk >= 0 && (t = imp_first(&st, IX_COMPANY_NAME, ck, nk)) >= 0)
			how = "company_name";

		if (t < 0)
		{
			/* a new lead with the row's fields */
			t = st.nleads++;
			l = &st.leads[t];
			memset(l, 0, sizeof(ImpLead));
			l->ordinal = ++st.ncreated;
			l->present = present;
			l->ek = l->fek = ek;
			l->pk = l->fpk = pk;
			l->ck = l->fck = ck;
			l->fresh = true;
			l->nk = nk;
			l->updated = true;
			l->attributes = attr ? attr : st.empty_object;
			imp_register(&st, t);
			if (xid >= 0)
				imp_map_set(&st, IX_EXTERNAL_ID, xid, 0, t);
			fills = present;
		}
		else
		{
			/* fill the gaps: what upsert_lead()'s UPDATE ... WHERE does */
			int32		missing = present & ~st.leads[t].present;

			l = &st.leads[t];
			if (!l->hidden && (missing != 0 || imp_new_attribute_key(attr, l->attributes)))
			{
				int32		oek = l->ek,
							opk = l->pk,
							ock = l->ck,
							onk = l->nk;

				/*
				 * The keys lead_keys will compute from the current fields:
				 * the stored ones unless built by an older key version
				 * (computed only for leads that get updated)
				 */
				if (!l->fresh)
				{
					l->fek = imp_intern_key(&st, l->raw[0] ? lm_identity_email_key(l->raw[0]) : NULL);
					l->fpk = imp_intern_key(&st, l->raw[1] ? lm_identity_phone_key(l->raw[1], LM_LEAD_PHONE_REGION, false) : NULL);
					l->fck = imp_intern_key(&st, l->raw[2] ? lm_identity_company_key(l->raw[2]) : NULL);
					l->fresh = true;
				}
				fills = missing;
				/* external_id only when no other lead has it */
				if ((fills & IMP_EXTERNAL_ID) && imp_map_get(&st, IX_EXTERNAL_ID, xid, 0) >= 0)
					fills &= ~IMP_EXTERNAL_ID;
				if (fills & IMP_EXTERNAL_ID)
					imp_map_set(&st, IX_EXTERNAL_ID, xid, 0, t);
				l->present |= fills;
				if (fills & IMP_EMAIL)
					l->fek = ek;
				if (fills & IMP_PHONE)
					l->fpk = pk;
				if (fills & IMP_COMPANY)
					l->fck = ck;
				if (fills & IMP_NAME)
					l->nk = nk;
				l->attributes = DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
																   JsonbPGetDatum(attr ? attr : st.empty_object),
																   JsonbPGetDatum(l->attributes)));
				l->updated = true;
				/* lead_keys recomputes all three keys on the UPDATE */
				l->ek = l->fek;
				l->pk = l->fpk;
				l->ck = l->fck;
				if (l->ek != oek || l->pk != opk || l->ck != ock || l->nk != onk)
					imp_register(&st, t);
			}
		}
		/* link_external_id(): the system id now names this lead */
		if (sys >= 0 && sysid >= 0)
			imp_map_set(&st, IX_SYSTEM_ID, sys, sysid, t);
		out_lead[p] = l->id ? l->id : -(int64) l->ordinal;
		out_how[p] = how;
		out_fills[p] = fills;
	}

	/* results, in the caller's memory */
	MemoryContextSwitchTo(caller);
	o_lead = palloc(sizeof(Datum) * ((Size) nrows + 1));
	o_how = palloc(sizeof(Datum) * ((Size) nrows + 1));
	o_hown = palloc(sizeof(bool) * ((Size) nrows + 1));
	o_leadn = palloc(sizeof(bool) * ((Size) nrows + 1));
	o_fills = palloc(sizeof(Datum) * ((Size) nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		o_lead[i] = Int64GetDatum(out_lead[i]);
		o_leadn[i] = out_leadn[i];
		o_how[i] = out_how[i] ? CStringGetTextDatum(out_how[i]) : (Datum) 0;
		o_hown[i] = out_how[i] == NULL;
		o_fills[i] = Int32GetDatum(out_fills[i]);
	}
	o_ref = palloc(sizeof(Datum) * ((Size) st.nleads + 1));
	o_attr = palloc(sizeof(Datum) * ((Size) st.nleads + 1));
	nout = 0;
	for (i = 0; i < st.nleads; i++)
	{
		ImpLead    *l = &st.leads[i];

		if (!l->updated)
			continue;
		o_ref[nout] = Int64GetDatum(l->id ? l->id : -(int64) l->ordinal);
		o_attr[nout] = JsonbPGetDatum(l->attributes);
		nout++;
	}
	dims[0] = nrows;
	if (nrows == 0)
	{
		result[0] = PointerGetDatum(construct_empty_array(INT8OID));
		result[1] = PointerGetDatum(construct_empty_array(TEXTOID));
	}
	else
	{
		result[0] = PointerGetDatum(construct_md_array(o_lead, o_leadn, 1, dims, lbs,
													   INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		result[1] = PointerGetDatum(construct_md_array(o_how, o_hown, 1, dims, lbs,
													   TEXTOID, -1, false, TYPALIGN_INT));
	}
	result[2] = PointerGetDatum(construct_array(o_fills, nrows, INT4OID, 4, true, TYPALIGN_INT));
	result[3] = PointerGetDatum(construct_array(o_ref, nout, INT8OID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	result[4] = PointerGetDatum(construct_array(o_attr, nout, JSONBOID, -1, false, TYPALIGN_INT));
	MemoryContextDelete(work);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_nulls)));
}
