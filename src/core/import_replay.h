/*
 * import_replay.h
 *		The bulk import's replay of upsert_lead()'s rules, pure C.
 *
 * No PostgreSQL headers: src/identity_import.c is the glue (it reads the
 * SQL arguments, computes keys with ICU and handles the jsonb attributes
 * through the hooks below); src/core/testing tests and fuzzes this
 * standalone against a slow formulation of the same rules.
 *
 * What it decides, for the pending rows of one leadmgmt.lead_import list:
 * exactly what the row-by-row import did.  Rows in id order, each first
 * looked up by (system, system_id) like find_lead(), else matched or created
 * like upsert_lead() (sql/parts/80_identity.sql): external id, e-mail key,
 * phone key with names that do not contradict, company key + name key; the
 * oldest live lead wins; a match fills the lead's empty fields and adds the
 * attribute keys it lacked.  doc/identity.md states the rules in prose.
 *
 * Strings are (pointer, length) pairs that stay valid until import_replay()
 * returns; data == NULL is SQL NULL.  Keys are compared as bytes.
 */
#ifndef LM_CORE_IMPORT_REPLAY_H
#define LM_CORE_IMPORT_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the fields of a lead a row can fill, as bits and as indexes */
typedef enum ImportField
{
	IMPORT_EMAIL = 0,
	IMPORT_NAME,
	IMPORT_COMPANY,
	IMPORT_PHONE,
	IMPORT_SOURCE,
	IMPORT_ORIGIN,
	IMPORT_EXTERNAL_ID,
	IMPORT_NFIELDS
} ImportField;

#define IMPORT_BIT(f)		(1u << (f))
#define IMPORT_ALL_FIELDS	((1u << IMPORT_NFIELDS) - 1)

typedef struct ImportStr
{
	const char *data;			/* NULL: no value */
	size_t		len;
} ImportStr;

/* a pending lead_import row */
typedef struct ImportRow
{
	int64_t		id;				/* rows are replayed in id order */
	uint32_t	present;		/* IMPORT_BIT of each field given; the
								 * external id bit is taken from external_id */
	ImportStr	email_key,
				phone_key,
				company_key,
				name_key;
	ImportStr	external_id,
				system,
				system_id;
	const void *attributes;		/* the glue's; NULL: none given */
} ImportRow;

/* a live lead the rows can reach */
typedef struct ImportLead
{
	int64_t		id;				/* distinct, > 0 */
	uint32_t	present;		/* IMPORT_BIT of each field that is set */
	ImportStr	email_key,		/* as stored (maybe by an older key version) */
				phone_key,
				company_key;
	ImportStr	name_key;		/* of the current name */
	const void *attributes;		/* the glue's */
} ImportLead;

/* a lead an external id (system.data == NULL) or a system id resolves to */
typedef struct ImportLink
{
	ImportStr	system;
	ImportStr	id;
	int64_t		lead_id;		/* resolved through merged_into */
} ImportLink;

typedef enum ImportMatch
{
	IMPORT_CREATED = 0,			/* a new lead, or rejected */
	IMPORT_ON_SYSTEM_ID,
	IMPORT_ON_EXTERNAL_ID,
	IMPORT_ON_EMAIL,
	IMPORT_ON_PHONE,
	IMPORT_ON_COMPANY_NAME
} ImportMatch;

/* per row, in input order */
typedef struct ImportRowResult
{
	bool		rejected;		/* nothing to match on: lead is 0 */
	int64_t		lead;			/* existing id, or -k: the k-th new lead */
	ImportMatch how;
	uint32_t	fills;			/* IMPORT_BIT of each field the row filled */
} ImportRowResult;

/* per lead the list creates or updates, existing leads by id, then new ones */
typedef struct ImportLeadResult
{
	int64_t		ref;			/* existing id, or -k */
	int32_t		filled_by[IMPORT_NFIELDS];	/* row (input index) that
											 * filled the field, or -1 */
	const void *attributes;		/* after the import; NULL: none */
} ImportLeadResult;

typedef struct ImportResult
{
	ImportRowResult *rows;		/* nrows */
	ImportLeadResult *leads;
	int32_t		nleads;
} ImportResult;

/*
 * What the replay cannot do itself.  alloc may throw (palloc) or return
 * NULL (then IMPORT_NO_MEMORY); release may be NULL when the glue frees
 * with a memory context.  interrupt may be NULL; it is called once per row.
 */
typedef struct ImportHooks
{
	void	   *(*alloc) (void *arg, size_t size);
	void		(*release) (void *arg, void *ptr);
	void		(*interrupt) (void *arg);

	/*
	 * The keys the lead_keys trigger computes from the current e-mail, phone
	 * and company of leads[lead] (differ from the stored ones when those
	 * were built by an older key version).  Asked once per lead, only for
	 * leads that get updated.  The strings must stay valid until
	 * import_replay() returns.
	 */
	void		(*current_keys) (void *arg, int32_t lead, ImportStr keys[3]);

	/* does row_attributes hold a key lead_attributes lacks?  (either NULL) */
	bool		(*new_attribute_key) (void *arg, const void *row_attributes,
									  const void *lead_attributes);
	/* row_attributes || lead_attributes (jsonb ||: the lead's values win) */
	const void *(*concat_attributes) (void *arg, const void *row_attributes,
									  const void *lead_attributes);
} ImportHooks;

typedef enum ImportError
{
	IMPORT_OK = 0,
	IMPORT_NO_MEMORY,			/* alloc returned NULL */
	IMPORT_TOO_MANY_STRINGS,	/* more than IMPORT_MAX_STRINGS distinct keys */
	IMPORT_TOO_LARGE,			/* more than IMPORT_MAX_ITEMS rows, leads or links */
	IMPORT_DUPLICATE_ROW,		/* two rows with one id */
	IMPORT_DUPLICATE_LEAD		/* two leads with one id */
} ImportError;

#define IMPORT_MAX_STRINGS	((int32_t) 1 << 29)
#define IMPORT_MAX_ITEMS	((int32_t) 1 << 28)

/*
 * Replay rows[0..nrows) against leads[0..nleads) and links[0..nlinks).
 * On IMPORT_OK, result->rows and result->leads are allocated with
 * hooks->alloc (free with import_result_free when release is set);
 * otherwise nothing is left allocated.
 */
extern ImportError import_replay(const ImportRow *rows, int32_t nrows,
								 const ImportLead *leads, int32_t nleads,
								 const ImportLink *links, int32_t nlinks,
								 const ImportHooks *hooks, void *arg,
								 ImportResult *result);
extern void import_result_free(const ImportHooks *hooks, void *arg, ImportResult *result);

/* "system_id", "external_id", "email", "phone", "company_name"; NULL if created */
extern const char *import_match_name(ImportMatch how);

#endif							/* LM_CORE_IMPORT_REPLAY_H */
