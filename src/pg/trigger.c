/*
 * trigger.c
 *		Checks every C trigger function of leadmgmt makes first (trigger.h).
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/rel.h"

#include "pg/trigger.h"

/*
 * Fail clearly when one of our trigger functions is attached the wrong way,
 * as contrib's trigger modules do.
 */
void
lm_check_trigger_context(FunctionCallInfo fcinfo, const char *funcname,
						 bool want_before, bool want_row)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: not called by trigger manager", funcname)));
	if (want_before != (bool) TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		want_row != (bool) TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s: must be fired %s %s", funcname,
						want_before ? "BEFORE" : "AFTER",
						want_row ? "FOR EACH ROW" : "FOR EACH STATEMENT")));
}

/*
 * The attribute number of a column our trigger needs, or a clear error when
 * the trigger was attached to a table without it.
 */
int
lm_column(Relation rel, const char *colname)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), colname);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" has no column \"%s\"",
						RelationGetRelationName(rel), colname)));
	return attnum;
}
