/*
 * test_score_state.c
 *		Unit tests for src/core/score_state.c: folding, awards, round trips
 *		and rejection of malformed states.
 */
#include "score_state.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>

#define DAY INT64_C(86400000000)

static void *arena[256];
static int	narena;

/* an arena freed at the end, as palloc'd memory is with its context */
static void *
test_alloc(size_t size)
{
	void	   *p = calloc(1, size);

	arena[narena++] = p;
	return p;
}

int
main(void)
{
	LmState		s;
	LmState		back;
	const char *error = NULL;
	uint8_t		buf[4096];
	size_t		len;
	LmStateAward *a;

	memset(&s, 0, sizeof(s));
	TAP_OK(lm_state_latest(&s) == INT64_MIN && lm_state_value_at(&s, 0) == 0, "empty state");

	lm_state_add_points(&s, 30 * DAY, 10, 0, test_alloc);
	lm_state_add_points(&s, 0, 5, 10 * DAY, test_alloc);
	lm_state_add_points(&s, 30 * DAY, 10, 30 * DAY, test_alloc);
	lm_state_add_points(&s, 7 * DAY, 4, 23 * DAY, test_alloc);
	TAP_OK(s.ncomponents == 3 && s.components[0].half_life_us == 0 &&
		   s.components[1].half_life_us == 7 * DAY && s.components[2].half_life_us == 30 * DAY,
		   "components sorted by half-life, one per half-life");
	TAP_OK(lm_state_latest(&s) == 30 * DAY, "latest reference time");
	TAP_OK(tap_close(lm_state_value_at(&s, 30 * DAY), 5 + 4 * 0.5 + 10 * 0.5 + 10, 1e-12),
		   "value at the latest time: %.15g", lm_state_value_at(&s, 30 * DAY));

	a = lm_state_award(&s, 42, test_alloc);
	a->times = 2;
	a->last = 5 * DAY;
	lm_state_award(&s, 7, test_alloc)->times = 1;
	TAP_OK(s.nawards == 2 && s.awards[0].rule_id == 7 && lm_state_find_award(&s, 42)->times == 2,
		   "awards sorted by rule and found again");
	TAP_OK(lm_state_find_award(&s, 8) == NULL, "missing award is NULL");

	len = lm_state_serialized_size(&s);
	lm_state_serialize(&s, buf);
	TAP_OK(lm_state_parse(buf, len, &back, test_alloc, &error), "round trip parses");
	TAP_OK(back.ncomponents == 3 && back.nawards == 2 &&
		   lm_state_value_at(&back, 40 * DAY) == lm_state_value_at(&s, 40 * DAY) &&
		   lm_state_find_award(&back, 42)->last == 5 * DAY, "round trip keeps every value");

	TAP_OK(!lm_state_parse(buf, len - 1, &back, test_alloc, &error), "truncated: %s", error);
	buf[0] = 99;
	TAP_OK(!lm_state_parse(buf, len, &back, test_alloc, &error), "bad version: %s", error);
	buf[0] = LM_STATE_VERSION;
	memcpy(buf + 8, &(int64_t) {-1}, 8);
	TAP_OK(!lm_state_parse(buf, len, &back, test_alloc, &error), "negative half-life: %s", error);
	lm_state_serialize(&s, buf);
	memcpy(buf + 8 + 24, &(int64_t) {0}, 8);
	TAP_OK(!lm_state_parse(buf, len, &back, test_alloc, &error), "unsorted components: %s", error);
	lm_state_serialize(&s, buf);
	memcpy(buf + 8 + 8, &(double) {NAN}, 8);
	TAP_OK(!lm_state_parse(buf, len, &back, test_alloc, &error), "NaN value: %s", error);
	while (narena > 0)
		free(arena[--narena]);
	return tap_done();
}
