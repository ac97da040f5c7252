/*
 * consent.c
 *		E-mail hygiene of new activity: bounces and unsubscribes.
 *
 * What: an email_bounce activity marks the lead's address bounced, an
 * unsubscribe marks it unsubscribed and logs an e-mail consent withdrawal
 * (leadmgmt.consent, doc/identity.md).
 *
 * How: the facts are collected per statement from the transition table and
 * applied in one write per lead; unsubscribed beats bounced beats ok.
 *
 * State: none beyond a statement.
 *
 * Complexity: O(n) over the statement's rows, one INSERT for all consent
 * rows.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "decay.h"
#include "leadmgmt.h"
#include "score_state.h"
#include "scoring.h"

/*
 * Deliverability and consent facts seen in the statement: a bounce marks the
 * address bounced, an unsubscribe marks it unsubscribed and withdraws e-mail
 * consent (identity's hygiene, done here because this trigger already reads
 * every new row).
 */
void
lm_note_hygiene(Hygiene *h, const ActivityRow *row)
{
	if (row->kind == NULL)
		return;
	if (strcmp(row->kind, "email_bounce") == 0)
	{
		APPEND(h->bounced, h->nbounced, h->cap_bounced);
		h->bounced[h->nbounced++] = row->lead_id;
	}
	else if (strcmp(row->kind, "unsubscribe") == 0)
	{
		int			cap = h->cap_unsubscribed;

		APPEND(h->unsubscribed, h->nunsubscribed, h->cap_unsubscribed);
		APPEND(h->unsubscribed_at, h->nunsubscribed, cap);
		h->unsubscribed[h->nunsubscribed] = row->lead_id;
		h->unsubscribed_at[h->nunsubscribed] = row->occurred_at;
		h->nunsubscribed++;
	}
}

/* email_status after the statement: unsubscribed beats bounced beats ok; NULL: unchanged */
const char *
lm_new_email_status(const LeadState *lead)
{
	if (lead->email_status == NULL)
		return NULL;
	if (lead->unsubscribed)
		return strcmp(lead->email_status, "unsubscribed") != 0 ? "unsubscribed" : NULL;
	if (lead->bounced)
		return strcmp(lead->email_status, "ok") == 0 ? "bounced" : NULL;
	return NULL;
}

/* an unsubscribe withdraws e-mail consent: one consent row per unsubscribe */
void
lm_record_consent(const Hygiene *h)
{
	static SPIPlanPtr consent_plan = NULL;
	Oid			consent_types[2] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[2];
	Datum	   *at;
	int			i;

	if (h->nunsubscribed == 0)
		return;
	at = palloc_extended(sizeof(Datum) * h->nunsubscribed, MCXT_ALLOC_HUGE);
	for (i = 0; i < h->nunsubscribed; i++)
		at[i] = TimestampTzGetDatum(h->unsubscribed_at[i]);
	args[0] = lm_int8_datum_array(h->unsubscribed, h->nunsubscribed);
	args[1] = PointerGetDatum(lm_datum_array(at, h->nunsubscribed, TIMESTAMPTZOID));
	lm_run_plan(&consent_plan,
			 "INSERT INTO leadmgmt.consent (lead_id, channel, granted, source, at, recorded_by) "
			 "SELECT u.lead_id, 'email', false, 'activity:unsubscribe', u.at, SESSION_USER "
			 "FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(lead_id, at) "
			 "ORDER BY u.lead_id, u.at",
			 2, consent_types, args, SPI_OK_INSERT);
}

