/*
 * nurture.h
 *		The holdout bucket of a nurture enrolment, with no PostgreSQL headers.
 *
 * Whether a lead enrolled in a track is kept out as a control (holdout) is
 * decided by a bucket 0..99 computed from the lead id and the track name
 * alone, by arithmetic specified here (doc/nurture.md), so that it is the
 * same on every run, on every platform and PostgreSQL version, and after a
 * dump and restore (which keeps ids and names):
 *
 *	h      = FNV-1a 64 over the bytes of the track name (offset basis
 *	         0xcbf29ce484222325, prime 0x100000001b3)
 *	x      = h XOR (uint64) lead_id
 *	bucket = splitmix64(x) mod 100, where splitmix64(x) is
 *	         z = x + 0x9e3779b97f4a7c15;
 *	         z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
 *	         z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
 *	         z ^ (z >> 31)                              (all mod 2^64)
 *
 * A lead is held out of a track when bucket < holdout_pct.  PostgreSQL's
 * hashtextextended() is not used because its results are not documented to
 * stay the same across major versions.
 */
#ifndef LM_NURTURE_H
#define LM_NURTURE_H

#include <stddef.h>
#include <stdint.h>

extern uint64_t lm_fnv1a64(const unsigned char *data, size_t len);
extern uint64_t lm_splitmix64(uint64_t x);
/* 0..99 */
extern int	lm_nurture_bucket(int64_t lead_id, const unsigned char *track, size_t len);

#endif							/* LM_NURTURE_H */
