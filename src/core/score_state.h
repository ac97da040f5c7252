/*
 * score_state.h
 *		A lead's scoring state in one compact value, with no PostgreSQL headers.
 *
 * The state holds one decay component per distinct half-life (see decay.h)
 * and one award counter per capped rule.  It is stored as a bytea in
 * leadmgmt.score_state, one row per lead, so that scoring a statement's
 * activity costs one read and one write per lead, however many rules and
 * half-lives are involved.
 *
 * Serialised layout (little-endian as the host; the value never leaves the
 * database cluster, and pg_dump copies bytea verbatim):
 *	uint8 version, uint8 pad, uint16 ncomponents, uint16 nawards, uint16 pad
 *	ncomponents x { int64 half_life_us, float64 value, int64 ref }
 *	nawards     x { int64 rule_id, int64 last, int32 times, int32 pad }
 * Components are sorted by half_life_us, awards by rule_id, without
 * duplicates; lm_state_parse() checks all of it.
 */
#ifndef LM_SCORE_STATE_H
#define LM_SCORE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "decay.h"

#define LM_STATE_VERSION 1
#define LM_STATE_MAX_ENTRIES 65535

typedef struct LmStateComponent
{
	int64_t		half_life_us;
	LmComponent c;
} LmStateComponent;

typedef struct LmStateAward
{
	int64_t		rule_id;
	int64_t		last;			/* occurred_at of the latest awarded activity */
	int32_t		times;
} LmStateAward;

/*
 * The state is allocated by the caller with room for given capacities;
 * memory functions are passed in so the same code runs under palloc and
 * malloc.
 */
typedef struct LmState
{
	int			ncomponents;
	int			ncomponents_cap;
	LmStateComponent *components;
	int			nawards;
	int			nawards_cap;
	LmStateAward *awards;
} LmState;

typedef void *(*lm_alloc_fn) (size_t size);

/* parse; false (and *error set) on malformed input */
extern bool lm_state_parse(const uint8_t *data, size_t len, LmState *state,
						   lm_alloc_fn alloc, const char **error);
extern size_t lm_state_serialized_size(const LmState *state);
extern void lm_state_serialize(const LmState *state, uint8_t *out);

/* fold points of a half-life in (keeps components sorted) */
extern bool lm_state_add_points(LmState *state, int64_t half_life_us, double points,
								int64_t ts, lm_alloc_fn alloc);
/* the award counter of a rule, created at zero when missing */
extern LmStateAward *lm_state_award(LmState *state, int64_t rule_id, lm_alloc_fn alloc);
extern const LmStateAward *lm_state_find_award(const LmState *state, int64_t rule_id);

/* latest reference time (INT64_MIN when empty) and the score at time at */
extern int64_t lm_state_latest(const LmState *state);
extern double lm_state_value_at(const LmState *state, int64_t at);

#endif							/* LM_SCORE_STATE_H */
