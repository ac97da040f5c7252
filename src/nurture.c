/*
 * nurture.c
 *		SQL glue for nurture programs: nurture_bucket(lead, track), the
 *		holdout bucket 0..99 of src/core/nurture.c.  The rest of the
 *		capability is SQL (sql/parts/86_nurture.sql, doc/nurture.md).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "nurture.h"

PG_FUNCTION_INFO_V1(leadmgmt_nurture_bucket);
Datum
leadmgmt_nurture_bucket(PG_FUNCTION_ARGS)
{
	int64		lead_id = PG_GETARG_INT64(0);
	text	   *track = PG_GETARG_TEXT_PP(1);

	PG_RETURN_INT32(lm_nurture_bucket(lead_id,
									  (const unsigned char *) VARDATA_ANY(track),
									  VARSIZE_ANY_EXHDR(track)));
}
