/*
 * kept_plan.c
 *		Prepared SPI plans kept for the life of the backend (kept_plan.h).
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pg/kept_plan.h"

/*
 * *plan if it is prepared already, else prepare sql, keep it and store it
 * in *plan.  Call it between SPI_connect() and SPI_finish().
 */
SPIPlanPtr
lm_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	p;

	if (*plan != NULL)
		return *plan;
	p = SPI_prepare(sql, nargs, argtypes);
	if (p == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(p) != 0)
		elog(ERROR, "SPI_keepplan failed for \"%s\"", sql);
	*plan = p;
	return p;
}
