/*
 * score_state.c
 *		Parse, update and serialise a lead's scoring state (score_state.h).
 *
 * Components and awards are small sorted arrays (a few half-lives, a dozen
 * capped rules); insertion keeps them sorted, lookups are linear or binary
 * over a handful of entries.  Parsing validates version, counts, length,
 * order and finiteness before anything is trusted.
 */
#include "score_state.h"

#include <math.h>
#include <string.h>

#define HEADER_SIZE 8
#define COMPONENT_SIZE 24
#define AWARD_SIZE 24

static void
put_u16(uint8_t *p, uint16_t v)
{
	memcpy(p, &v, sizeof(v));
}

static uint16_t
get_u16(const uint8_t *p)
{
	uint16_t	v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static bool
grow(void **array, int *cap, int need, size_t elem, lm_alloc_fn alloc)
{
	void	   *bigger;
	int			newcap;

	if (need <= *cap)
		return true;
	if (need > LM_STATE_MAX_ENTRIES)
		return false;
	newcap = *cap ? *cap * 2 : 4;
	while (newcap < need)
		newcap *= 2;
	bigger = alloc(elem * (size_t) newcap);
	if (*cap > 0)
		memcpy(bigger, *array, elem * (size_t) *cap);
	*array = bigger;			/* the old block belongs to the caller's arena */
	*cap = newcap;
	return true;
}

bool
lm_state_parse(const uint8_t *data, size_t len, LmState *state,
			   lm_alloc_fn alloc, const char **error)
{
	int			nc;
	int			na;
	int			i;
	const uint8_t *p;

	memset(state, 0, sizeof(*state));
	if (len < HEADER_SIZE)
	{
		*error = "too short";
		return false;
	}
	if (data[0] != LM_STATE_VERSION)
	{
		*error = "unknown version";
		return false;
	}
	nc = get_u16(data + 2);
	na = get_u16(data + 4);
	if (len != HEADER_SIZE + (size_t) nc * COMPONENT_SIZE + (size_t) na * AWARD_SIZE)
	{
		*error = "length does not match the counts";
		return false;
	}
	if (!grow((void **) &state->components, &state->ncomponents_cap, nc,
			  sizeof(LmStateComponent), alloc) ||
		!grow((void **) &state->awards, &state->nawards_cap, na,
			  sizeof(LmStateAward), alloc))
	{
		*error = "too many entries";
		return false;
	}

	p = data + HEADER_SIZE;
	for (i = 0; i < nc; i++, p += COMPONENT_SIZE)
	{
		LmStateComponent *c = &state->components[i];

		memcpy(&c->half_life_us, p, 8);
		memcpy(&c->c.value, p + 8, 8);
		memcpy(&c->c.ref, p + 16, 8);
		if (c->half_life_us < 0 || !isfinite(c->c.value) ||
			(i > 0 && c->half_life_us <= state->components[i - 1].half_life_us))
		{
			*error = "invalid component";
			return false;
		}
	}
	for (i = 0; i < na; i++, p += AWARD_SIZE)
	{
		LmStateAward *a = &state->awards[i];

		memcpy(&a->rule_id, p, 8);
		memcpy(&a->last, p + 8, 8);
		memcpy(&a->times, p + 16, 4);
		if (a->times < 0 || (i > 0 && a->rule_id <= state->awards[i - 1].rule_id))
		{
			*error = "invalid award";
			return false;
		}
	}
	state->ncomponents = nc;
	state->nawards = na;
	return true;
}

size_t
lm_state_serialized_size(const LmState *state)
{
	return HEADER_SIZE + (size_t) state->ncomponents * COMPONENT_SIZE +
		(size_t) state->nawards * AWARD_SIZE;
}

void
lm_state_serialize(const LmState *state, uint8_t *out)
{
	uint8_t    *p = out + HEADER_SIZE;
	int32_t		pad = 0;
	int			i;

	memset(out, 0, HEADER_SIZE);
	out[0] = LM_STATE_VERSION;
	put_u16(out + 2, (uint16_t) state->ncomponents);
	put_u16(out + 4, (uint16_t) state->nawards);
	for (i = 0; i < state->ncomponents; i++, p += COMPONENT_SIZE)
	{
		memcpy(p, &state->components[i].half_life_us, 8);
		memcpy(p + 8, &state->components[i].c.value, 8);
		memcpy(p + 16, &state->components[i].c.ref, 8);
	}
	for (i = 0; i < state->nawards; i++, p += AWARD_SIZE)
	{
		memcpy(p, &state->awards[i].rule_id, 8);
		memcpy(p + 8, &state->awards[i].last, 8);
		memcpy(p + 16, &state->awards[i].times, 4);
		memcpy(p + 20, &pad, 4);
	}
}

bool
lm_state_add_points(LmState *state, int64_t half_life_us, double points,
					int64_t ts, lm_alloc_fn alloc)
{
	int			i = 0;

	while (i < state->ncomponents && state->components[i].half_life_us < half_life_us)
		i++;
	if (i < state->ncomponents && state->components[i].half_life_us == half_life_us)
	{
		lm_component_add(&state->components[i].c, points, ts, half_life_us);
		return true;
	}
	if (!grow((void **) &state->components, &state->ncomponents_cap,
			  state->ncomponents + 1, sizeof(LmStateComponent), alloc))
		return false;
	memmove(&state->components[i + 1], &state->components[i],
			sizeof(LmStateComponent) * (size_t) (state->ncomponents - i));
	state->components[i].half_life_us = half_life_us;
	state->components[i].c.value = points;
	state->components[i].c.ref = ts;
	state->ncomponents++;
	return true;
}

const LmStateAward *
lm_state_find_award(const LmState *state, int64_t rule_id)
{
	int			lo = 0;
	int			hi = state->nawards - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (state->awards[mid].rule_id == rule_id)
			return &state->awards[mid];
		if (state->awards[mid].rule_id < rule_id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

LmStateAward *
lm_state_award(LmState *state, int64_t rule_id, lm_alloc_fn alloc)
{
	int			i = 0;

	while (i < state->nawards && state->awards[i].rule_id < rule_id)
		i++;
	if (i < state->nawards && state->awards[i].rule_id == rule_id)
		return &state->awards[i];
	if (!grow((void **) &state->awards, &state->nawards_cap, state->nawards + 1,
			  sizeof(LmStateAward), alloc))
		return NULL;
	memmove(&state->awards[i + 1], &state->awards[i],
			sizeof(LmStateAward) * (size_t) (state->nawards - i));
	state->awards[i].rule_id = rule_id;
	state->awards[i].last = INT64_MIN;
	state->awards[i].times = 0;
	state->nawards++;
	return &state->awards[i];
}

int64_t
lm_state_latest(const LmState *state)
{
	int64_t		latest = INT64_MIN;
	int			i;

	for (i = 0; i < state->ncomponents; i++)
		if (state->components[i].c.ref > latest)
			latest = state->components[i].c.ref;
	return latest;
}

double
lm_state_value_at(const LmState *state, int64_t at)
{
	LmSum		sum = {0, 0};
	int			i;

	for (i = 0; i < state->ncomponents; i++)
		lm_sum_add(&sum, lm_component_value_at(&state->components[i].c, at,
											   state->components[i].half_life_us));
	return lm_sum_value(&sum);
}
