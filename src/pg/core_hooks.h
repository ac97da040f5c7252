/*
 * core_hooks.h
 *		What the pure-C cores (src/core/) call back for memory and
 *		cancellation when they run inside PostgreSQL.
 *
 * Unit of use: the three functions fill a core's hook struct or hook
 * variables once.
 *
 *		static const FunnelHooks pg_hooks = {lm_core_alloc, lm_core_free,
 *											 lm_core_interrupt};
 *
 * Allocations go to palloc in the current memory context, "huge" (past
 * 1 GB allowed: the cores bound their own sizes), and fail by ereport, so a
 * core never sees NULL from them; a cancel or a statement timeout reaches
 * the core's long loops through CHECK_FOR_INTERRUPTS.
 */
#ifndef LM_PG_CORE_HOOKS_H
#define LM_PG_CORE_HOOKS_H

#include "postgres.h"

extern void *lm_core_alloc(size_t size);
extern void lm_core_free(void *ptr);
extern void lm_core_interrupt(void);

#endif							/* LM_PG_CORE_HOOKS_H */
