/*
 * grow_array.h
 *		Growable arrays for aggregate states and per-statement buffers.
 *
 * Unit of use: one call before every append.
 *
 *		state->values = lm_grow_array(aggcxt, state->values, &state->capacity,
 *									  state->nvalues + 1, sizeof(Value), 64,
 *									  MAX_VALUES, "my_aggregate", "values");
 *		state->values[state->nvalues++] = v;
 *
 * The capacity at least doubles, so n appends cost O(n) copying in all; a
 * request past max_elems is a clear 54000 (program_limit_exceeded) naming
 * the aggregate, not an allocation failure.  Allocations are "huge"
 * (may pass 1 GB): max_elems is the real bound.
 */
#ifndef LM_PG_GROW_ARRAY_H
#define LM_PG_GROW_ARRAY_H

#include "postgres.h"

extern void *lm_grow_array(MemoryContext cxt, void *array, int64 *capacity, int64 need,
						   Size elem_size, int64 min_elems, int64 max_elems,
						   const char *aggname, const char *what);

#endif							/* LM_PG_GROW_ARRAY_H */
