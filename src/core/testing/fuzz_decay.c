/*
 * fuzz_decay.c
 *		Fuzz target: components folded from arbitrary points, times and
 *		half-lives stay finite for finite points, never exceed the sum of
 *		absolute points, and do not depend on the order of folding.
 */
#include "decay.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t		half_life;
	LmComponent forward = {0, INT64_MIN};
	LmComponent backward = {0, INT64_MIN};
	double		bound = 0;
	size_t		n;
	size_t		i;

	if (size < sizeof(int64_t))
		return 0;
	memcpy(&half_life, data, sizeof(int64_t));
	half_life = half_life < 0 ? -(half_life / 2) : half_life;
	data += sizeof(int64_t);
	size -= sizeof(int64_t);
	n = size / (sizeof(int64_t) + sizeof(int16_t));

	for (i = 0; i < n; i++)
	{
		int64_t		ts;
		int16_t		p;

		memcpy(&ts, data + i * 10, 8);
		memcpy(&p, data + i * 10 + 8, 2);
		lm_component_add(&forward, p, ts, half_life);
		bound += fabs((double) p);
	}
	for (i = n; i-- > 0;)
	{
		int64_t		ts;
		int16_t		p;

		memcpy(&ts, data + i * 10, 8);
		memcpy(&p, data + i * 10 + 8, 2);
		lm_component_add(&backward, p, ts, half_life);
	}
	if (!isfinite(forward.value) || fabs(forward.value) > bound * (1 + 1e-9) + 1e-9)
		abort();
	if (forward.ref != backward.ref ||
		fabs(forward.value - backward.value) > 1e-9 * (bound + 1))
		abort();
	if (!isfinite(lm_component_value_at(&forward, INT64_MAX, half_life)))
		abort();
	return 0;
}
