/*
 * leadmgmt.c
 *		Module entry point, the actor setting and the protect_builtin
 *		trigger.  The helpers shared by every capability (aggregate states,
 *		kept plans, run-as-owner, caches, trigger checks) are in src/pg/.
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
