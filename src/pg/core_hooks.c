/*
 * core_hooks.c
 *		Memory and cancellation for the pure-C cores (core_hooks.h).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "pg/core_hooks.h"

void *
lm_core_alloc(size_t size)
{
	return palloc_extended(size, MCXT_ALLOC_HUGE);
}

void
lm_core_free(void *ptr)
{
	pfree(ptr);
}

void
lm_core_interrupt(void)
{
	CHECK_FOR_INTERRUPTS();
}
