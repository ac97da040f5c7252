/*
 * as_owner.h
 *		Run the extension's own bookkeeping as the owner of its tables.
 *
 * Unit of use: a begin/end pair around the SPI work, in one C function.
 *
 *		LmAsOwner	saved;
 *
 *		lm_as_owner_begin(&saved, rel->rd_rel->relowner, LM_OWNER_RESTRICTED);
 *		...SPI_connect(), queries, SPI_finish()...
 *		lm_as_owner_end(&saved);
 *
 * Why: callers need no privilege on the internal tables (stage_history,
 * score_state) and row-level security on leadmgmt.lead must not hide rows
 * from the extension's own reads and writes.  The owner of the extension's
 * tables is the extension owner.
 *
 * The SECURITY_RESTRICTED_OPERATION rule, decided here once:
 *
 *	Set it (LM_OWNER_RESTRICTED), always, unless the code run as the owner
 *	must create temporary tables.  A restricted operation forbids exactly
 *	the session state that would outlive the switch back: temporary objects
 *	(which pg_temp would then find first), LISTEN, PREPARE TRANSACTION,
 *	cursors WITH HOLD, SET ROLE and SET SESSION AUTHORIZATION.  Without it,
 *	code reached while we act as the owner (a user's trigger on a table we
 *	write, an operator in an expression) could leave something behind that
 *	later runs with, or is trusted for, the owner's rights.  PostgreSQL sets
 *	the flag for the same reason when it runs maintenance as a table owner
 *	(VACUUM, CREATE INDEX, REFRESH MATERIALIZED VIEW).
 *
 *	The one exception (LM_OWNER_TEMP_TABLES) is code that calls
 *	leadmgmt.rescore_leads(), which builds ON COMMIT DROP temporary tables,
 *	and CREATE TEMP TABLE fails in a restricted operation: the scoring
 *	statement trigger (for a lead back-filled past a scoring cap) and
 *	merge_score() (which rebuilds both leads of a merge).  Those tables
 *	are our own, dropped at commit.  Anything new that needs this mode
 *	must say why next to its call.
 *
 * No PG_TRY is needed: when an error escapes, (sub)transaction abort
 * restores the user id and security context saved at its start.
 */
#ifndef LM_PG_AS_OWNER_H
#define LM_PG_AS_OWNER_H

#include "postgres.h"

typedef enum LmOwnerMode
{
	LM_OWNER_RESTRICTED,		/* the rule */
	LM_OWNER_TEMP_TABLES		/* the exception, see above */
} LmOwnerMode;

typedef struct LmAsOwner
{
	Oid			saved_userid;
	int			saved_sec_context;
} LmAsOwner;

extern void lm_as_owner_begin(LmAsOwner *saved, Oid owner, LmOwnerMode mode);
extern void lm_as_owner_end(const LmAsOwner *saved);

#endif							/* LM_PG_AS_OWNER_H */
