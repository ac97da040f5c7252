/*
 * nurture.c
 *		The holdout bucket of a nurture enrolment (see nurture.h for the
 *		arithmetic, which doc/nurture.md repeats).  Every step is defined on
 *		bytes and unsigned 64-bit integers, so the result does not depend on
 *		the platform's endianness or word size.
 */
#include "nurture.h"

uint64_t
lm_fnv1a64(const unsigned char *data, size_t len)
{
	uint64_t	h = UINT64_C(0xcbf29ce484222325);
	size_t		i;

	for (i = 0; i < len; i++)
	{
		h ^= (uint64_t) data[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

uint64_t
lm_splitmix64(uint64_t x)
{
	uint64_t	z = x + UINT64_C(0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

int
lm_nurture_bucket(int64_t lead_id, const unsigned char *track, size_t len)
{
	return (int) (lm_splitmix64(lm_fnv1a64(track, len) ^ (uint64_t) lead_id) % 100);
}
