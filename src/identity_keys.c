/*
 * identity_keys.c
 *		Match keys: ICU normalisation, the normalize_*() and key_similarity()
 *		functions, and the lead_keys trigger that keeps leadmgmt.lead's match
 *		keys current.  Part of identity (doc/identity.md); merging is in
 *		identity_merge.c, the bulk import in identity_import.c.
 *
 * How: a key is built in three steps (doc/identity.md):
 *   1. lm_prefold (src/core/normalize.c): ignorables out, widths folded,
 *      kana composed
 *   2. ICU: NFKC, full case folding, NFKC again (the Unicode definition of
 *      compatibility caseless matching, D146)
 *   3. lm_*_key (src/core/normalize.c): the project's own rules and tables
 * Step 2 is stable for assigned code points by the Unicode normalisation
 * and case-folding stability policies; everything else is project code, so
 * the keys change only when LM_KEY_VERSION does (or, for code points that
 * the linked ICU does not know yet, when ICU learns them: rebuild_keys()).
 *
 * State: the UNormalizer2 instance, looked up once per backend and kept
 * (ICU owns it; it is never freed).  Phone keys need no ICU at all.  Each
 * key is built in the caller's memory context.
 *
 * Complexity: a key is O(n) in its input, which is capped per kind
 * (LM_*_MAX_INPUT: longer input gets no key); key_similarity() is
 * O(a + b) on the first 1000 code points of each key.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "leadmgmt.h"
#include "identity.h"
#include "normalize.h"

#define ERRCODE_LM_UNKNOWN_PHONE_REGION	MAKE_SQLSTATE('L','M','0','3','0')

/* ---------------------------------------------------------------------
 * ICU
 * ---------------------------------------------------------------------
 */
static const UNormalizer2 *nfkc_instance = NULL;

static const UNormalizer2 *
get_nfkc(void)
{
	if (nfkc_instance == NULL)
	{
		UErrorCode	status = U_ZERO_ERROR;
		const UNormalizer2 *n = unorm2_getNFKCInstance(&status);

		if (U_FAILURE(status) || n == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("could not load the ICU NFKC normalizer: %s", u_errorName(status))));
		nfkc_instance = n;
	}
	return nfkc_instance;
}

static void
icu_check(UErrorCode status, const char *what)
{
	if (U_FAILURE(status))
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("ICU %s failed: %s", what, u_errorName(status))));
}

/* NFKC of src into a new palloc'd buffer; *len in, *len out */
static UChar *
icu_nfkc(const UChar *src, int32_t *len)
{
	const UNormalizer2 *nfkc = get_nfkc();
	UErrorCode	status = U_ZERO_ERROR;
	int32_t		cap = *len * 2 + 16;
	UChar	   *dst = palloc(sizeof(UChar) * cap);
	int32_t		out = unorm2_normalize(nfkc, src, *len, dst, cap, &status);

	if (status == U_BUFFER_OVERFLOW_ERROR)
	{
		status = U_ZERO_ERROR;
		pfree(dst);
		cap = out + 1;
		dst = palloc(sizeof(UChar) * cap);
		out = unorm2_normalize(nfkc, src, *len, dst, cap, &status);
	}
	icu_check(status, "normalization");
	*len = out;
	return dst;
}

static UChar *
icu_fold_case(const UChar *src, int32_t *len)
{
	UErrorCode	status = U_ZERO_ERROR;
	int32_t		cap = *len * 2 + 16;
	UChar	   *dst = palloc(sizeof(UChar) * cap);
	int32_t		out = u_strFoldCase(dst, cap, src, *len, U_FOLD_CASE_DEFAULT, &status);

	if (status == U_BUFFER_OVERFLOW_ERROR)
	{
		status = U_ZERO_ERROR;
		pfree(dst);
		cap = out + 1;
		dst = palloc(sizeof(UChar) * cap);
		out = u_strFoldCase(dst, cap, src, *len, U_FOLD_CASE_DEFAULT, &status);
	}
	icu_check(status, "case folding");
	*len = out;
	return dst;
}

/*
 * Decode a text value to code points; NULL when longer than max_input code
 * points (such input gets no key).  *n receives the length.
 */
static uint32_t *
text_to_codepoints(text *t, size_t max_input, size_t *n)
{
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	uint32_t   *c;
	long		count;

	/* at least one byte per code point: cheap early exit for huge values */
	if (len > max_input * 4)
		return NULL;
	c = palloc(sizeof(uint32_t) * (len + 1));
	count = lm_utf8_decode(s, len, c);
	if (count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid UTF-8 in match-key input"),
				 errhint("leadmgmt needs a UTF8 database.")));
	if ((size_t) count > max_input)
		return NULL;
	*n = (size_t) count;
	return c;
}

static text *
codepoints_to_text(const uint32_t *c, size_t n)
{
	char	   *buf = palloc(4 * n + 1);
	size_t		bytes = lm_utf8_encode(c, n, buf);

	return cstring_to_text_with_len(buf, (int) bytes);
}

/*
 * The whole key pipeline for company, name and e-mail keys.  NULL: no key.
 */
static text *
icu_key(text *input, size_t max_input, size_t (*keyfn) (uint32_t *, size_t))
{
	size_t		n;
	uint32_t   *c = text_to_codepoints(input, max_input, &n);
	UChar	   *u;
	int32_t		ulen;
	UErrorCode	status = U_ZERO_ERROR;
	int32_t		n32;
	uint32_t   *folded;
	size_t		k;

	if (c == NULL)
		return NULL;
	n = lm_prefold(c, n);
	if (n == 0)
		return NULL;

	/* to UTF-16 (at most two units per code point) */
	u = palloc(sizeof(UChar) * (2 * n + 1));
	u_strFromUTF32(u, (int32_t) (2 * n + 1), &ulen, (const UChar32 *) c, (int32_t) n, &status);
	icu_check(status, "UTF-32 conversion");

	u = icu_nfkc(u, &ulen);
	u = icu_fold_case(u, &ulen);
	u = icu_nfkc(u, &ulen);

	/* back to code points (never more than UTF-16 units) */
	folded = palloc(sizeof(uint32_t) * (ulen + 1));
	status = U_ZERO_ERROR;
	u_strToUTF32((UChar32 *) folded, ulen + 1, &n32, u, ulen, &status);
	icu_check(status, "UTF-16 conversion");

	k = keyfn(folded, (size_t) n32);
	if (k == 0)
		return NULL;
	return codepoints_to_text(folded, k);
}

text *
lm_identity_company_key(text *t)
{
	return icu_key(t, LM_COMPANY_MAX_INPUT, lm_company_key);
}

text *
lm_identity_email_key(text *t)
{
	return icu_key(t, LM_EMAIL_MAX_INPUT, lm_email_key);
}

text *
lm_identity_name_key(text *t)
{
	return icu_key(t, LM_NAME_MAX_INPUT, lm_name_key);
}

/* phone key; unknown region: error when raise_error, else NULL */
text *
lm_identity_phone_key(text *t, const char *region, bool raise_error)
{
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	uint32_t	c[LM_PHONE_MAX_INPUT + 1];
	char		out[LM_PHONE_KEY_SIZE];
	long		n = 0;
	lm_phone_result r;

	/* too long to be a phone number: only the region still gets checked */
	if (len <= LM_PHONE_MAX_INPUT)
	{
		n = lm_utf8_decode(s, len, c);
		if (n < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
					 errmsg("invalid UTF-8 in match-key input")));
	}
	else
		n = LM_PHONE_MAX_INPUT + 1;
	r = lm_phone_key(c, (size_t) n, region, out);
	if (r == LM_PHONE_BAD_REGION)
	{
		if (raise_error)
			ereport(ERROR,
					(errcode(ERRCODE_LM_UNKNOWN_PHONE_REGION),
					 errmsg("unknown phone region \"%s\"", region),
					 errdetail("Phone numbers written without a country code are read with the rules of a region given as an ISO 3166-1 alpha-2 code."),
					 errhint("Known regions: %s. Numbers written with \"+\" and a country code get a key in any region.",
							 lm_phone_regions())));
		return NULL;
	}
	if (r != LM_PHONE_KEY)
		return NULL;
	return cstring_to_text(out);
}

/* ---------------------------------------------------------------------
 * SQL-callable functions
 * ---------------------------------------------------------------------
 */
PG_FUNCTION_INFO_V1(leadmgmt_normalize_company);
Datum
leadmgmt_normalize_company(PG_FUNCTION_ARGS)
{
	text	   *result = lm_identity_company_key(PG_GETARG_TEXT_PP(0));

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(leadmgmt_normalize_email);
Datum
leadmgmt_normalize_email(PG_FUNCTION_ARGS)
{
	text	   *result = lm_identity_email_key(PG_GETARG_TEXT_PP(0));

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(leadmgmt_normalize_name);
Datum
leadmgmt_normalize_name(PG_FUNCTION_ARGS)
{
	text	   *result = lm_identity_name_key(PG_GETARG_TEXT_PP(0));

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(leadmgmt_normalize_phone);
Datum
leadmgmt_normalize_phone(PG_FUNCTION_ARGS)
{
	char	   *region = text_to_cstring(PG_GETARG_TEXT_PP(1));
	text	   *result = lm_identity_phone_key(PG_GETARG_TEXT_PP(0), region, true);

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(leadmgmt_key_version);
Datum
leadmgmt_key_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(LM_KEY_VERSION);
}

/* ---------------------------------------------------------------------
 * Trigger: lead match keys
 * ---------------------------------------------------------------------
 */
/*
 * BEFORE INSERT OR UPDATE OF email, company, phone ON leadmgmt.lead:
 * compute email_key, company_key and phone_key (no SQL, no catalog access
 * beyond the tuple descriptor) and stamp key_version.
 */
PG_FUNCTION_INFO_V1(leadmgmt_lead_keys);
Datum
leadmgmt_lead_keys(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	static const char *const sources[3] = {"email", "company", "phone"};
	int			attnums[4];
	Datum		values[4];
	bool		nulls[4];
	int			i;

	lm_check_trigger_context(fcinfo, "lead_keys", true, true);
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("lead_keys: must be fired for INSERT or UPDATE")));
	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple :
		trigdata->tg_trigtuple;

	for (i = 0; i < 3; i++)
	{
		bool		isnull;
		Datum		v = heap_getattr(tuple, lm_column(rel, sources[i]), desc, &isnull);
		text	   *key = NULL;

		if (!isnull)
		{
			text	   *t = DatumGetTextPP(v);

			key = i == 0 ? lm_identity_email_key(t) : i == 1 ? lm_identity_company_key(t) :
				lm_identity_phone_key(t, LM_LEAD_PHONE_REGION, false);
		}
		attnums[i] = lm_column(rel, i == 0 ? "email_key" : i == 1 ? "company_key" : "phone_key");
		values[i] = key ? PointerGetDatum(key) : (Datum) 0;
		nulls[i] = key == NULL;
	}
	attnums[3] = lm_column(rel, "key_version");
	values[3] = Int32GetDatum(LM_KEY_VERSION);
	nulls[3] = false;

	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, 4, attnums, values, nulls));
}

/*
 * key_similarity(a text, b text) RETURNS float8: bigram Dice coefficient of
 * two keys (code points; the first 1000 of each).
 */
PG_FUNCTION_INFO_V1(leadmgmt_key_similarity);
Datum
leadmgmt_key_similarity(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	text	   *b = PG_GETARG_TEXT_PP(1);
	size_t		la = VARSIZE_ANY_EXHDR(a);
	size_t		lb = VARSIZE_ANY_EXHDR(b);
	uint32_t   *ca = palloc(sizeof(uint32_t) * (la + 1));
	uint32_t   *cb = palloc(sizeof(uint32_t) * (lb + 1));
	long		na = lm_utf8_decode(VARDATA_ANY(a), la, ca);
	long		nb = lm_utf8_decode(VARDATA_ANY(b), lb, cb);
	unsigned char *used;

	if (na < 0 || nb < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("invalid UTF-8 in match-key input")));
	na = Min(na, 1000);
	nb = Min(nb, 1000);
	used = palloc(nb + 1);
	PG_RETURN_FLOAT8(lm_key_similarity(ca, (size_t) na, cb, (size_t) nb, used));
}
