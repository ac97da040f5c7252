/*
 * fuzz_import_replay.c
 *		Fuzz target for src/core/import_replay.c: arbitrary lists of rows,
 *		leads and links (byte layout in import_reference.h, ref_decode) with
 *		keys from a three-word alphabet, so that rows collide with leads and
 *		with each other on every key.  Each input is replayed by the core and
 *		by the slow reference formulation of the same rules; the outcomes
 *		must be equal, duplicate ids must give the same error, and a failed
 *		allocation must leave nothing allocated.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "import_reference.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static RefInput in;
	const char *why;

	if (!ref_decode(data, size, &in))
		return 0;
	why = ref_check(&in);
	if (why != NULL)
	{
		fprintf(stderr, "fuzz_import_replay: %s (%d rows, %d leads, %d links)\n",
				why, in.nrows, in.nleads, in.nlinks);
		abort();
	}
	return 0;
}
