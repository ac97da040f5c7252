/*
 * leadmgmt.c
 *		Module entry point and helpers shared by every capability.
 *
 * _PG_init defines the leadmgmt.* settings that belong in postgresql.conf or
 * SET (today only leadmgmt.actor; everything else lives in the
 * leadmgmt.setting table so it is dumped with the data).  The generic
 * protect_builtin trigger guarding the shipped vocabulary rows is here too,
 * because every vocabulary table (stages, activity kinds, scoring rules)
 * uses it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "leadmgmt.h"

PG_MODULE_MAGIC;

/* leadmgmt.actor: who is acting, for applications behind a connection pool */
char	   *leadmgmt_actor = NULL;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("leadmgmt.actor",
							   "Name recorded as changed_by in stage history.",
							   "Set it per transaction from an application that "
							   "connects through a pool; empty means the session user.",
							   &leadmgmt_actor,
							   "",
							   PGC_USERSET,
							   0,
							   NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("leadmgmt");
#else
	EmitWarningsOnPlaceholders("leadmgmt");
#endif
}

/*
 * The name recorded for the current change: the leadmgmt.actor setting if
 * given, else the session user (not the current user, which is the extension
 * owner while our own bookkeeping runs).
 */
const char *
lm_current_actor(void)
{
	if (leadmgmt_actor != NULL && leadmgmt_actor[0] != '\0')
		return leadmgmt_actor;
	return GetUserNameFromId(GetSessionUserId(), false);
}

Oid
lm_schema_oid(void)
{
	return get_namespace_oid(LEADMGMT_SCHEMA, false);
}

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

static bool
tuple_is_builtin(Relation rel, HeapTuple tuple)
{
	bool		isnull;
	Datum		value;

	value = heap_getattr(tuple, lm_column(rel, "builtin"), RelationGetDescr(rel), &isnull);
	return !isnull && DatumGetBool(value);
}

/*
 * BEFORE ROW trigger on vocabulary tables: shipped rows are read-only, and
 * only the install or upgrade script may add rows flagged builtin (pg_dump
 * leaves builtin rows out, so a user row flagged builtin would vanish on
 * restore).
 */
PG_FUNCTION_INFO_V1(leadmgmt_protect_builtin);
Datum
leadmgmt_protect_builtin(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TriggerEvent event;
	HeapTuple	result;

	lm_check_trigger_context(fcinfo, "protect_builtin", true, true);
	rel = trigdata->tg_relation;
	event = trigdata->tg_event;
	result = TRIGGER_FIRED_BY_UPDATE(event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	if (creating_extension)
		return PointerGetDatum(result);

	if (!TRIGGER_FIRED_BY_INSERT(event) && tuple_is_builtin(rel, trigdata->tg_trigtuple))
		ereport(ERROR,
				(errcode(ERRCODE_LM_BUILTIN_READ_ONLY),
				 errmsg("built-in rows of \"%s.%s\" cannot be %s",
						LEADMGMT_SCHEMA, RelationGetRelationName(rel),
						TRIGGER_FIRED_BY_DELETE(event) ? "deleted" : "changed"),
				 errhint("Add a row of your own instead.")));

	if (!TRIGGER_FIRED_BY_DELETE(event) && tuple_is_builtin(rel, result))
		ereport(ERROR,
				(errcode(ERRCODE_LM_BUILTIN_READ_ONLY),
				 errmsg("only the extension itself can add built-in rows to \"%s.%s\"",
						LEADMGMT_SCHEMA, RelationGetRelationName(rel)),
				 errhint("Leave the column \"builtin\" false.")));

	return PointerGetDatum(result);
}
