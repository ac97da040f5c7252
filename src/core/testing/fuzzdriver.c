/*
 * fuzzdriver.c
 *		Bounded, seeded random driver for the src/core fuzz targets.
 *
 * Every fuzz_*.c defines LLVMFuzzerTestOneInput, so the same target also
 * links with clang's -fsanitize=fuzzer for long coverage-guided runs.  This
 * driver makes it a short deterministic pass that works with plain gcc under
 * ASan/UBSan: FUZZ_ITERATIONS inputs (default 20000) of random length drawn
 * from a fixed-seed xorshift generator.  Usage: fuzz_x [iterations] [seed]
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t
next_random(uint64_t *state)
{
	uint64_t	x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

int
main(int argc, char **argv)
{
	long		iterations = argc > 1 ? atol(argv[1]) : 20000;
	uint64_t	state = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9e3779b97f4a7c15ULL;
	uint8_t		buf[4096];
	long		i;

	if (state == 0)
		state = 1;
	for (i = 0; i < iterations; i++)
	{
		/* mostly short inputs, where the interesting boundaries are */
		size_t		len = next_random(&state) % ((i % 10 == 0) ? sizeof(buf) : 64);
		size_t		j;

		for (j = 0; j < len; j++)
			buf[j] = (uint8_t) next_random(&state);
		LLVMFuzzerTestOneInput(buf, len);
	}
	printf("ok 1 - %ld fuzz inputs without a sanitizer report\n1..1\n", iterations);
	return 0;
}
