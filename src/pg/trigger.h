/*
 * trigger.h
 *		What every C trigger function of leadmgmt checks first, as contrib's
 *		trigger modules do.
 *
 * Unit of use: the first line of a trigger function, then one lm_column()
 * per column it reads or sets.
 *
 *		lm_check_trigger_context(fcinfo, "lead_fit", true, true);
 *		attnum = lm_column(trigdata->tg_relation, "attributes");
 *
 * A trigger attached the wrong way (AFTER instead of BEFORE, per statement
 * instead of per row, to a table without the column) fails with SQLSTATE
 * 39P01 and a message naming the function, instead of misbehaving.
 */
#ifndef LM_PG_TRIGGER_H
#define LM_PG_TRIGGER_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/rel.h"

extern void lm_check_trigger_context(FunctionCallInfo fcinfo, const char *funcname,
									 bool want_before, bool want_row);
extern int	lm_column(Relation rel, const char *colname);

#endif							/* LM_PG_TRIGGER_H */
