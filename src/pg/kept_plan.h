/*
 * kept_plan.h
 *		Prepared SPI plans kept for the life of the backend.
 *
 * Unit of use: one static SPIPlanPtr per SQL string, NULL at start.
 *
 *		static SPIPlanPtr plan = NULL;
 *		...inside SPI_connect()/SPI_finish():
 *		SPI_execute_plan(lm_kept_plan(&plan, "SELECT ...", 1, types), ...);
 *
 * The first call prepares the statement, checks the result and keeps the
 * plan (SPI_keepplan: it moves to CacheMemoryContext and outlives
 * SPI_finish); later calls return it.  PostgreSQL's plan cache replans it
 * when the tables or functions it uses change, so nothing here invalidates.
 * SQL sent this way is checked by scripts/hardening.pl like any other SPI
 * string: qualify every name and operator.
 */
#ifndef LM_PG_KEPT_PLAN_H
#define LM_PG_KEPT_PLAN_H

#include "postgres.h"

#include "executor/spi.h"

extern SPIPlanPtr lm_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes);

#endif							/* LM_PG_KEPT_PLAN_H */
