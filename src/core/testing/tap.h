/*
 * tap.h
 *		Minimal TAP producer for the standalone src/core unit tests.
 *
 * Each test program prints "ok N - what" / "not ok N - what" lines and a
 * final plan; scripts/test.sh counts them.  No PostgreSQL headers.
 */
#ifndef LM_TAP_H
#define LM_TAP_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int	tap_count;
static int	tap_failed;

static inline int
tap_ok(int cond, const char *what)
{
	tap_count++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap_count, what);
	return cond;
}

#define TAP_OK(cond, ...) \
	do { \
		char		tap_buf_[512]; \
		snprintf(tap_buf_, sizeof(tap_buf_), __VA_ARGS__); \
		tap_ok((cond), tap_buf_); \
	} while (0)

/* |a - b| <= tol, treating equal infinities and two NaNs as equal */
static inline int
tap_close(double a, double b, double tol)
{
	if (isnan(a) || isnan(b))
		return isnan(a) && isnan(b);
	if (a == b)
		return 1;
	return fabs(a - b) <= tol;
}

static inline int
tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

/*
 * xorshift64: the seeded pseudo-random sequence of the randomised tests, the
 * same on every run and machine.  Each test program sets its own seed.
 */
static uint64_t tap_rng_state = UINT64_C(0x9E3779B97F4A7C15);

static inline void
tap_seed(uint64_t seed)
{
	tap_rng_state = seed;
}

static inline uint64_t
tap_random(void)
{
	tap_rng_state ^= tap_rng_state << 13;
	tap_rng_state ^= tap_rng_state >> 7;
	tap_rng_state ^= tap_rng_state << 17;
	return tap_rng_state;
}

#endif							/* LM_TAP_H */
