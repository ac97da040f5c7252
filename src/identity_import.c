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
#include "utils/typcache.h"

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
 * The columns of the composite types import_leads() and import_resolve()
 * pass each other (sql/parts/80_identity.sql), in order.  imp_rows() checks
 * the installed type against these, so the two sides cannot drift apart
 * unnoticed.
 */
typedef struct ImpColumn
{
	const char *name;
	Oid			type;
} ImpColumn;

#define IMP_FIELD_COLUMNS \
	{"email", TEXTOID}, {"name", TEXTOID}, {"company", TEXTOID}, {"phone", TEXTOID}, \
	{"source", TEXTOID}, {"origin", TEXTOID}, {"external_id", TEXTOID}

/* import_row */
enum
{
	ROW_ID, ROW_FIELDS, ROW_SYSTEM = ROW_FIELDS + IMPORT_NFIELDS, ROW_SYSTEM_ID, ROW_ATTRIBUTES,
	ROW_EMAIL_KEY, ROW_PHONE_KEY, ROW_COMPANY_KEY, ROW_NAME_KEY, ROW_NATTS
};
static const ImpColumn row_columns[ROW_NATTS] = {
	{"id", INT8OID}, IMP_FIELD_COLUMNS, {"system", TEXTOID}, {"system_id", TEXTOID},
	{"attributes", JSONBOID}, {"email_key", TEXTOID}, {"phone_key", TEXTOID},
	{"company_key", TEXTOID}, {"name_key", TEXTOID}
};

/* import_lead */
enum
{
	LEAD_ID, LEAD_FIELDS, LEAD_ATTRIBUTES = LEAD_FIELDS + IMPORT_NFIELDS,
	LEAD_EMAIL_KEY, LEAD_PHONE_KEY, LEAD_COMPANY_KEY, LEAD_NAME_KEY, LEAD_NATTS
};
static const ImpColumn lead_columns[LEAD_NATTS] = {
	{"id", INT8OID}, IMP_FIELD_COLUMNS, {"attributes", JSONBOID}, {"email_key", TEXTOID},
	{"phone_key", TEXTOID}, {"company_key", TEXTOID}, {"name_key", TEXTOID}
};

/* import_link */
enum
{
	LINK_SYSTEM, LINK_EXTERNAL_ID, LINK_LEAD_ID, LINK_NATTS
};
static const ImpColumn link_columns[LINK_NATTS] = {
	{"system", TEXTOID}, {"external_id", TEXTOID}, {"lead_id", INT8OID}
};

/* import_outcome */
enum
{
	OUTCOME_ID, OUTCOME_LEAD_REF, OUTCOME_MATCHED_ON, OUTCOME_NATTS
};
static const ImpColumn outcome_columns[OUTCOME_NATTS] = {
	{"id", INT8OID}, {"lead_ref", INT8OID}, {"matched_on", TEXTOID}
};

/* import_fill */
enum
{
	FILL_LEAD_REF, FILL_FIELDS, FILL_ATTRIBUTES = FILL_FIELDS + IMPORT_NFIELDS, FILL_NATTS
};
static const ImpColumn fill_columns[FILL_NATTS] = {
	{"lead_ref", INT8OID}, IMP_FIELD_COLUMNS, {"attributes", JSONBOID}
};

/* the descriptor of a row type, checked against the expected columns */
static TupleDesc
imp_rowtype(Oid elemtype, const ImpColumn *columns, int ncolumns, const char *what)
{
	TupleDesc	desc;
	int			i;

	if (!OidIsValid(elemtype) || !type_is_rowtype(elemtype))
		elog(ERROR, "import_resolve: %s must be an array of a row type", what);
	desc = lookup_rowtype_tupdesc_copy(elemtype, -1);
	if (desc->natts != ncolumns)
		elog(ERROR, "import_resolve: %s has %d columns, expected %d", what, desc->natts, ncolumns);
	for (i = 0; i < ncolumns; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != columns[i].type ||
			strcmp(NameStr(att->attname), columns[i].name) != 0)
			elog(ERROR, "import_resolve: column %d of %s is not \"%s\" of type %s",
				 i + 1, what, columns[i].name, format_type_be(columns[i].type));
	}
	return desc;
}

/*
 * The elements of composite array argument argno, each deformed into
 * ncolumns values: values[ncolumns * i + column].  Returns the count.
 */
static int
imp_rows(FunctionCallInfo fcinfo, int argno, const ImpColumn *columns, int ncolumns,
		 const char *what, Datum **values, bool **nulls)
{
	ArrayType  *a = PG_GETARG_ARRAYTYPE_P(argno);
	TupleDesc	desc = imp_rowtype(ARR_ELEMTYPE(a), columns, ncolumns, what);
	Datum	   *elems;
	bool	   *elemnulls;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;
	int			i;

	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("import_resolve: %s must be a one-dimensional array", what),
				 IMP_HINT));
	get_typlenbyvalalign(ARR_ELEMTYPE(a), &typlen, &typbyval, &typalign);
	deconstruct_array(a, ARR_ELEMTYPE(a), typlen, typbyval, typalign, &elems, &elemnulls, &n);
	*values = palloc(sizeof(Datum) * ((Size) n * ncolumns + 1));
	*nulls = palloc(sizeof(bool) * ((Size) n * ncolumns + 1));
	for (i = 0; i < n; i++)
	{
		HeapTupleHeader td;
		HeapTupleData tuple;

		if (elemnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("import_resolve: %s must not contain NULL", what),
					 IMP_HINT));
		td = DatumGetHeapTupleHeader(elems[i]);
		tuple.t_len = HeapTupleHeaderGetDatumLength(td);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = InvalidOid;
		tuple.t_data = td;
		heap_deform_tuple(&tuple, desc, &(*values)[(Size) i * ncolumns], &(*nulls)[(Size) i * ncolumns]);
	}
	return n;
}

/* an array of rows of the element type of an OUT column */
static Datum
imp_array_of(Oid arraytype, const ImpColumn *columns, int ncolumns, const char *what,
			 int n, Datum *values, bool *nulls)
{
	Oid			elemtype = get_element_type(arraytype);
	TupleDesc	desc = BlessTupleDesc(imp_rowtype(elemtype, columns, ncolumns, what));
	Datum	   *elems = palloc(sizeof(Datum) * ((Size) n + 1));
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = HeapTupleGetDatum(heap_form_tuple(desc, &values[(Size) i * ncolumns],
													 &nulls[(Size) i * ncolumns]));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_array(elems, n, elemtype, typlen, typbyval, typalign));
}

/* the id in column col of a deformed row (never NULL) */
static int64
imp_id(const Datum *v, const bool *n, int col, const char *what)
{
	if (n[col])
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("import_resolve: a %s id must not be NULL", what),
				 IMP_HINT));
	return DatumGetInt64(v[col]);
}

/* e-mail, phone, company and name keys: four columns from first on */
static void
imp_keys(const Datum *v, const bool *n, int first, ImportStr *email, ImportStr *phone,
		 ImportStr *company, ImportStr *name)
{
	*email = imp_datum_str(v[first], n[first]);
	*phone = imp_datum_str(v[first + 1], n[first + 1]);
	*company = imp_datum_str(v[first + 2], n[first + 2]);
	*name = imp_datum_str(v[first + 3], n[first + 3]);
}

/* the IMPORT_BIT of each field that is not NULL */
static uint32
imp_present(const bool *fieldnulls)
{
	uint32		present = 0;
	int			f;

	for (f = 0; f < IMPORT_NFIELDS; f++)
		if (!fieldnulls[f])
			present |= IMPORT_BIT(f);
	return present;
}

/*
 * import_resolve(pending import_row[], leads import_lead[],
 *     links import_link[], OUT outcomes import_outcome[],
 *     OUT fills import_fill[])
 *
 * pending: the rows, any order (replayed by id), with their match keys;
 * leads: the live leads the rows can reach, any order, with their stored
 * keys and the name key of their current name; links: leads having an
 * external_id (system NULL) or a lead_external_id row the rows name,
 * resolved through merged_into.
 *
 * outcomes, per row (input order): the lead (existing id, or -k for the
 * k-th lead the list creates; NULL: nothing to match on) and what it
 * matched on (NULL when created or rejected).  fills, per lead created or
 * updated: the values the rows fill in and its attributes after the import.
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
	Datum	   *rv,
			   *lv,
			   *kv,
			   *ov,
			   *fv;
	bool	   *rn,
			   *ln,
			   *kn,
			   *on,
			   *fn;
	int			nrows,
				nleads,
				nlinks;
	int			i;
	Datum		result[2];
	bool		result_nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE || tupdesc->natts != 2)
		elog(ERROR, "import_resolve: return type must be a row type of two columns");

	work = AllocSetContextCreate(CurrentMemoryContext, "import_resolve", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(work);

	nrows = imp_rows(fcinfo, 0, row_columns, ROW_NATTS, "pending", &rv, &rn);
	nleads = imp_rows(fcinfo, 1, lead_columns, LEAD_NATTS, "leads", &lv, &ln);
	nlinks = imp_rows(fcinfo, 2, link_columns, LINK_NATTS, "links", &kv, &kn);

	glue.empty_object = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	glue.raw = palloc(sizeof(text *) * 3 * ((Size) nleads + 1));
	rows = palloc(sizeof(ImportRow) * ((Size) nrows + 1));
	leads = palloc(sizeof(ImportLead) * ((Size) nleads + 1));
	links = palloc(sizeof(ImportLink) * ((Size) nlinks + 1));
	for (i = 0; i < nrows; i++)
	{
		ImportRow  *r = &rows[i];
		Datum	   *v = &rv[(Size) i * ROW_NATTS];
		bool	   *n = &rn[(Size) i * ROW_NATTS];

		r->id = imp_id(v, n, ROW_ID, "row");
		r->present = imp_present(&n[ROW_FIELDS]);
		imp_keys(v, n, ROW_EMAIL_KEY, &r->email_key, &r->phone_key, &r->company_key, &r->name_key);
		r->external_id = imp_datum_str(v[ROW_FIELDS + IMPORT_EXTERNAL_ID],
									   n[ROW_FIELDS + IMPORT_EXTERNAL_ID]);
		r->system = imp_datum_str(v[ROW_SYSTEM], n[ROW_SYSTEM]);
		r->system_id = imp_datum_str(v[ROW_SYSTEM_ID], n[ROW_SYSTEM_ID]);
		r->attributes = n[ROW_ATTRIBUTES] ? NULL : DatumGetJsonbP(v[ROW_ATTRIBUTES]);
	}
	for (i = 0; i < nleads; i++)
	{
		ImportLead *l = &leads[i];
		Datum	   *v = &lv[(Size) i * LEAD_NATTS];
		bool	   *n = &ln[(Size) i * LEAD_NATTS];
		static const int raw[3] = {IMPORT_EMAIL, IMPORT_PHONE, IMPORT_COMPANY};
		int			j;

		l->id = imp_id(v, n, LEAD_ID, "lead");
		l->present = imp_present(&n[LEAD_FIELDS]);
		imp_keys(v, n, LEAD_EMAIL_KEY, &l->email_key, &l->phone_key, &l->company_key, &l->name_key);
		for (j = 0; j < 3; j++)
			glue.raw[3 * i + j] = n[LEAD_FIELDS + raw[j]] ? NULL :
				DatumGetTextPP(v[LEAD_FIELDS + raw[j]]);
		l->attributes = n[LEAD_ATTRIBUTES] ? NULL : DatumGetJsonbP(v[LEAD_ATTRIBUTES]);
	}
	for (i = 0; i < nlinks; i++)
	{
		Datum	   *v = &kv[(Size) i * LINK_NATTS];
		bool	   *n = &kn[(Size) i * LINK_NATTS];

		if (n[LINK_EXTERNAL_ID] || n[LINK_LEAD_ID])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("import_resolve: a link needs an external_id and a lead_id"),
					 IMP_HINT));
		links[i].system = imp_datum_str(v[LINK_SYSTEM], n[LINK_SYSTEM]);
		links[i].id = imp_datum_str(v[LINK_EXTERNAL_ID], false);
		links[i].lead_id = DatumGetInt64(v[LINK_LEAD_ID]);
	}

	imp_check(import_replay(rows, nrows, leads, nleads, links, nlinks, &imp_hooks, &glue, &res));

	/* results, in the caller's memory */
	MemoryContextSwitchTo(caller);
	ov = palloc(sizeof(Datum) * OUTCOME_NATTS * ((Size) nrows + 1));
	on = palloc0(sizeof(bool) * OUTCOME_NATTS * ((Size) nrows + 1));
	for (i = 0; i < nrows; i++)
	{
		const ImportRowResult *r = &res.rows[i];
		const char *how = import_match_name(r->how);
		Datum	   *v = &ov[(Size) i * OUTCOME_NATTS];
		bool	   *n = &on[(Size) i * OUTCOME_NATTS];

		v[OUTCOME_ID] = Int64GetDatum(rows[i].id);
		v[OUTCOME_LEAD_REF] = Int64GetDatum(r->lead);
		n[OUTCOME_LEAD_REF] = r->rejected;
		v[OUTCOME_MATCHED_ON] = how ? CStringGetTextDatum(how) : (Datum) 0;
		n[OUTCOME_MATCHED_ON] = how == NULL;
	}
	fv = palloc(sizeof(Datum) * FILL_NATTS * ((Size) res.nleads + 1));
	fn = palloc0(sizeof(bool) * FILL_NATTS * ((Size) res.nleads + 1));
	for (i = 0; i < res.nleads; i++)
	{
		const ImportLeadResult *l = &res.leads[i];
		Datum	   *v = &fv[(Size) i * FILL_NATTS];
		bool	   *n = &fn[(Size) i * FILL_NATTS];
		int			f;

		v[FILL_LEAD_REF] = Int64GetDatum(l->ref);
		/* each field is filled by one row at most: that row's value */
		for (f = 0; f < IMPORT_NFIELDS; f++)
		{
			int32		p = l->filled_by[f];

			n[FILL_FIELDS + f] = p < 0;
			v[FILL_FIELDS + f] = p < 0 ? (Datum) 0 : rv[(Size) p * ROW_NATTS + ROW_FIELDS + f];
		}
		v[FILL_ATTRIBUTES] = JsonbPGetDatum(l->attributes ? (Jsonb *) l->attributes :
											glue.empty_object);
	}
	result[0] = imp_array_of(TupleDescAttr(tupdesc, 0)->atttypid, outcome_columns, OUTCOME_NATTS,
							 "outcomes", nrows, ov, on);
	result[1] = imp_array_of(TupleDescAttr(tupdesc, 1)->atttypid, fill_columns, FILL_NATTS,
							 "fills", res.nleads, fv, fn);
	MemoryContextDelete(work);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, result, result_nulls)));
}
