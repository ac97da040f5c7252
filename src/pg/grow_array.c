/*
 * grow_array.c
 *		Growable arrays (grow_array.h).
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "pg/grow_array.h"

/*
 * Make room for need elements of elem_size bytes in array (NULL for none
 * yet, then allocated in cxt; otherwise it stays in its own context): at
 * least min_elems and at least double the old capacity, at most max_elems.
 * Returns the array, which may have moved; *capacity is updated.
 */
void *
lm_grow_array(MemoryContext cxt, void *array, int64 *capacity, int64 need,
			  Size elem_size, int64 min_elems, int64 max_elems,
			  const char *aggname, const char *what)
{
	int64		cap;

	if (need <= *capacity)
		return array;
	if (need > max_elems)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s can hold at most " INT64_FORMAT " %s per group",
						aggname, max_elems, what)));
	cap = Min(Max(need, Max(*capacity * 2, min_elems)), max_elems);
	array = array == NULL ? MemoryContextAllocHuge(cxt, cap * elem_size)
		: repalloc_huge(array, cap * elem_size);
	*capacity = cap;
	return array;
}
