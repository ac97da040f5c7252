/*
 * identity_import.c
 *		import_resolve(): the glue of the bulk import's replay
 *		(src/core/import_replay.c) for import_leads()
 *		(sql/parts/80_identity.sql, import section).  Part of identity
 *		(doc/identity.md).
 *
 * What: import_leads() reads the pending rows and every lead they can
 * reach with a few set-based queries and calls import_resolve(), which
 * decides each row's lead exactly as find_lead()/upsert_lead() row by row
 * in id order would; import_leads() then writes the outcome with one
 * statement per table.  The rules, the state layout and the complexity of
 * the replay are in src/core/import_replay.c.
 *
 * How: this file checks and unpacks the SQL arguments into the core's
 * structs, and gives the core what needs PostgreSQL: the ICU keys of a
 * lead's current fields (identity_keys.c), and the jsonb attributes (the
 * key test and || of upsert_lead()'s UPDATE).
 *
 * State: everything lives in a memory context of the call, deleted before
 * returning; the results are built in the caller's context.
 *
 * Complexity: O((rows + leads) log(rows + leads)) for the replay, plus one
 * ICU key set per existing lead that gets updated.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
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
#include "import_replay.h"

#define IMP_HINT errhint("leadmgmt.import_resolve() is a step of leadmgmt.import_leads(), which builds its arguments.")

/* what the core's hooks need */
typedef struct ImpGlue
{
	text	  **raw;			/* 3 per input lead: email, phone, company */
	Jsonb	   *empty_object;
} ImpGlue;

static void *
imp_alloc(void *arg, size_t size)
{
	return MemoryContextAllocHuge(CurrentMemoryContext, size);
}

static void
imp_release(void *arg, void *ptr)
{
	pfree(ptr);
}

static void
imp_interrupt(void *arg)
{
	CHECK_FOR_INTERRUPTS();
}

static ImportStr
imp_str(text *t)
{
	ImportStr	s = {NULL, 0};

	if (t != NULL)
	{
		s.data = VARDATA_ANY(t);
		s.len = VARSIZE_ANY_EXHDR(t);
	}
	return s;
}

static ImportStr
imp_datum_str(Datum d, bool isnull)
{
	return imp_str(isnull ? NULL : DatumGetTextPP(d));
}

/* the keys lead_keys computes from the lead's current fields */
static void
imp_current_keys(void *arg, int32_t lead, ImportStr keys[3])
{
	ImpGlue    *g = arg;
	text	  **raw = &g->raw[3 * lead];

	keys[0] = imp_str(raw[0] ? lm_identity_email_key(raw[0]) : NULL);
	keys[1] = imp_str(raw[1] ? lm_identity_phone_key(raw[1], LM_LEAD_PHONE_REGION, false) : NULL);
	keys[2] = imp_str(raw[2] ? lm_identity_company_key(raw[2]) : NULL);
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


static bool
imp_new_key_hook(void *arg, const void *row, const void *lead)
{
	ImpGlue    *g = arg;

	return imp_new_attribute_key((Jsonb *) row, lead ? (Jsonb *) lead : g->empty_object);
}

static const void *
imp_concat_hook(void *arg, const void *row, const void *lead)
{
	ImpGlue    *g = arg;

	return DatumGetJsonbP(DirectFunctionCall2(jsonb_concat,
											  JsonbPGetDatum(row ? (Jsonb *) row : g->empty_object),
											  JsonbPGetDatum(lead ? (Jsonb *) lead : g->empty_object)));
}

static const ImportHooks imp_hooks = {
	.alloc = imp_alloc,
	.release = imp_release,
	.interrupt = imp_interrupt,
	.current_keys = imp_current_keys,
	.new_attribute_key = imp_new_key_hook,
	.concat_attributes = imp_concat_hook,
};

/* an error of the core, as the SQL error it stands for */
static void
imp_check(ImportError err)
{
	switch (err)
	{
		case IMPORT_OK:
			return;
		case IMPORT_TOO_MANY_STRINGS:
		case IMPORT_TOO_LARGE:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct keys in one import"),
					 errhint("Import the list in several batches.")));
			break;
		case IMPORT_DUPLICATE_ROW:
		case IMPORT_DUPLICATE_LEAD:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("import_resolve: %s ids must be distinct",
							err == IMPORT_DUPLICATE_ROW ? "row" : "lead"),
					 IMP_HINT));
			break;
		case IMPORT_NO_MEMORY:
			break;
	}
	elog(ERROR, "import_resolve: the replay failed (%d)", (int) err);
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


/*
 * import_resolve(row_id int8[], row_present int4[], row_keys text[][],
 *     row_attributes jsonb[], lead_id int8[], lead_present int4[],
 *     lead_keys text[][], lead_attributes jsonb[], external_id text[],
 *     external_lead int8[], system_ids text[][], system_lead int8[],
 *     OUT row_lead int8[], OUT row_matched_on text[], OUT row_fills int4[],
 *     OUT lead_ref int8[], OUT lead_attributes_after jsonb[])
 *
 * Rows, any order (processed by row_id): present has the IMPORT_BIT bits of
 * the fields given (email, name, company, phone, source, origin; the
 * external id bit comes from the keys), keys are [email key, phone key,
 * company key, name key, external_id, system, system_id], attributes as
 * given.  Leads: the live leads the rows can reach, any order, present with
 * the external id bit, keys [stored email, phone and company keys, email,
 * phone and company as they are, name key], attributes.  external_*:
 * leads having that external_id, resolved through merged_into; system_*:
 * rows of lead_external_id ([system, external_id]), resolved.
 *
 * Out, per row (input order): the lead (existing id, or -k for the k-th
 * lead the list creates; NULL: nothing to match on), matched_on (NULL when
 * created or rejected), the bits of the fields the row filled (created:
 * all it has).  Per lead created or updated: ref (id or -k) and its
 * attributes after the import.
 */
PG_FUNCTION_INFO_V1(leadmgmt_import_resolve);
Datum
leadmgmt_import_resolve(PG_FUNCTION_ARGS)
{
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext work;
	TupleDesc	tupdesc;
	ImpGlue		glue;
	ImportRow  *rows;
	ImportLead *leads;
	ImportLink *links;
	ImportResult res;
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
	Datum	   *o_lead,
			   *o_how,
			   *o_fills,
			   *o_ref,
			   *o_attr;
	bool	   *o_leadn,
			   *o_hown;
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

	glue.empty_object = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	glue.raw = palloc(sizeof(text *) * 3 * ((Size) nleads + 1));
	rows = palloc(sizeof(ImportRow) * ((Size) nrows + 1));
	leads = palloc(sizeof(ImportLead) * ((Size) nleads + 1));
	links = palloc(sizeof(ImportLink) * ((Size) next + nsys + 1));
	for (i = 0; i < nrows; i++)
	{
		ImportRow  *r = &rows[i];
		Datum	   *k = &row_key[7 * i];
		bool	   *kn = &row_keyn[7 * i];

		r->id = DatumGetInt64(row_id[i]);
		r->present = (uint32) DatumGetInt32(row_present[i]);
		r->email_key = imp_datum_str(k[0], kn[0]);
		r->phone_key = imp_datum_str(k[1], kn[1]);
		r->company_key = imp_datum_str(k[2], kn[2]);
		r->name_key = imp_datum_str(k[3], kn[3]);
		r->external_id = imp_datum_str(k[4], kn[4]);
		r->system = imp_datum_str(k[5], kn[5]);
		r->system_id = imp_datum_str(k[6], kn[6]);
		r->attributes = row_attrn[i] ? NULL : DatumGetJsonbP(row_attr[i]);
	}
	for (i = 0; i < nleads; i++)
	{
		ImportLead *l = &leads[i];
		Datum	   *k = &lead_key[7 * i];
		bool	   *kn = &lead_keyn[7 * i];
		int			j;

		l->id = DatumGetInt64(lead_id[i]);
		l->present = (uint32) DatumGetInt32(lead_present[i]);
		l->email_key = imp_datum_str(k[0], kn[0]);
		l->phone_key = imp_datum_str(k[1], kn[1]);
		l->company_key = imp_datum_str(k[2], kn[2]);
		for (j = 0; j < 3; j++)
			glue.raw[3 * i + j] = kn[3 + j] ? NULL : DatumGetTextPP(k[3 + j]);
		l->name_key = imp_datum_str(k[6], kn[6]);
		l->attributes = DatumGetJsonbP(lead_attr[i]);
	}
	for (i = 0; i < next; i++)
	{
		links[i].system = imp_str(NULL);
		links[i].id = imp_datum_str(ext_id[i], false);
		links[i].lead_id = DatumGetInt64(ext_lead[i]);
	}
	for (i = 0; i < nsys; i++)
	{
		links[next + i].system = imp_datum_str(sys_id[2 * i], false);
		links[next + i].id = imp_datum_str(sys_id[2 * i + 1], false);
		links[next + i].lead_id = DatumGetInt64(sys_lead[i]);
	}

	imp_check(import_replay(rows, nrows, leads, nleads, links, next + nsys,
							&imp_hooks, &glue, &res));

	/* results, in the caller's memory */
	MemoryContextSwitchTo(caller);
	o_lead = palloc(sizeof(Datum) * ((Size) nrows + 1));
	o_how = palloc(sizeof(Datum) * ((Size) nrows + 1));
	o_hown = palloc(sizeof(bool) * ((Size) nrows + 1));
	o_leadn = palloc(sizeof(bool) * ((Size) nrows + 1));
	o_fills = palloc(sizeof(Datum) * ((Size) nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		const ImportRowResult *r = &res.rows[i];
		const char *how = import_match_name(r->how);

		o_lead[i] = Int64GetDatum(r->lead);
		o_leadn[i] = r->rejected;
		o_how[i] = how ? CStringGetTextDatum(how) : (Datum) 0;
		o_hown[i] = how == NULL;
		o_fills[i] = Int32GetDatum((int32) r->fills);
	}
	o_ref = palloc(sizeof(Datum) * ((Size) res.nleads + 1));
	o_attr = palloc(sizeof(Datum) * ((Size) res.nleads + 1));
	for (i = 0; i < res.nleads; i++)
	{
		o_ref[i] = Int64GetDatum(res.leads[i].ref);
		o_attr[i] = JsonbPGetDatum(res.leads[i].attributes ?
								   (Jsonb *) res.leads[i].attributes : glue.empty_object);
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
	result[3] = PointerGetDatum(construct_array(o_ref, res.nleads, INT8OID, 8, FLOAT8PASSBYVAL,
												TYPALIGN_DOUBLE));
	result[4] = PointerGetDatum(construct_array(o_attr, res.nleads, JSONBOID, -1, false, TYPALIGN_INT));
	MemoryContextDelete(work);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_nulls)));
}
