/*
 * scoring.h
 *		What scoring.c shares with the activity ingest path (ingest.c): the
 *		rule cache, matching one activity against the rules, the per-lead
 *		state of a statement, caps and decay folding, the hand-off, and
 *		running a kept plan.
 *
 * Internal to the module: not an API for other extensions.
 */
#ifndef LM_SCORING_H
#define LM_SCORING_H

#include "postgres.h"

#include "access/htup.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/timestamp.h"

#include "score_state.h"

typedef struct ScoringRule
{
	int64		id;
	char	   *kind;
	int			kind_len;		/* strlen(kind) */
	text	   *detail_pattern; /* NULL: any detail */
	char	   *campaign;		/* NULL: any campaign */
	int			campaign_len;
	int32		min_duration_s; /* -1: any duration */
	float8		points;
	int64		half_life_us;	/* 0: no decay */
	int32		max_times;		/* 0: unlimited */
} ScoringRule;

typedef struct RuleCache
{
	int			nrules;
	ScoringRule *rules;
	uint64		generation;		/* differs for every build of the cache */
} RuleCache;

/*
 * The columns of one activity that matching reads.  Strings point into the
 * tuple (not NUL-terminated), valid while the tuple is.
 */
typedef struct ActivityRow
{
	int64		id;
	int64		lead_id;
	TimestampTz occurred_at;
	const char *kind;			/* NULL when SQL NULL */
	int			kind_len;
	text	   *detail;			/* NULL when SQL NULL */
	const char *campaign;		/* NULL when SQL NULL */
	int			campaign_len;
	bool		has_duration;
	int32		duration_s;
	bool		points_given;
} ActivityRow;

/* attribute numbers of the activity table's columns that scoring reads */
typedef struct ActivityColumns
{
	int			id,
				lead_id,
				kind,
				occurred_at,
				campaign,
				detail,
				duration_s,
				points;
} ActivityColumns;

/* one (activity, rule) pair that matched */
typedef struct Match
{
	int64		lead_id;
	int			rule;			/* index into the rule cache */
	TimestampTz occurred_at;
	int64		activity_id;
	bool		awarded;
} Match;

/* one lead touched by the statement */
typedef struct LeadState
{
	int64		lead_id;
	TimestampTz latest_match;	/* latest occurred_at among its matches */
	bool		recompute;		/* back-filled past a cap: rescore this lead */
	bool		found;			/* the lead row was read and locked */
	bool		has_matches;	/* some row of the statement matched a rule */
	bool		had_state;		/* a score_state row exists */
	char	   *external_id;
	char	   *stage;
	TimestampTz stage_entered_at;
	LmState		state;
	float8		score;
	TimestampTz score_at;
} LeadState;

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

/* append room for one more element to a growable array (grow_array.h) */
#define APPEND(arr, n, cap) \
	do { \
		if ((n) == (cap)) \
			(arr) = lm_grow_array(CurrentMemoryContext, (arr), &(cap), (int64) (n) + 1, \
								  sizeof(*(arr)), 64, PG_INT32_MAX, "activity ingest", \
								  "entries"); \
	} while (0)

/* scoring.c: rules and matching */
extern RuleCache *lm_rule_cache(void);
extern const ActivityColumns *lm_activity_columns(TupleDesc desc);
extern void lm_activity_from_values(const Datum *values, const bool *nulls,
									const ActivityColumns *cols, ActivityRow *row);
extern bool lm_rule_matches(const ScoringRule *rule, const ActivityRow *row);

/* scoring.c: the leads of a statement, caps, decay, hand-off */
extern int	lm_lead_state_cmp(const void *a, const void *b);
extern LeadState *lm_find_lead(LeadState *leads, int nleads, int64 lead_id);
extern LeadState *lm_lead_of(LeadState *leads, int nleads, int64 lead_id, LeadState **hint);
extern void lm_apply_caps(Match *matches, int nmatches, RuleCache *cache, LeadState *leads,
						  int nleads);
extern void lm_fold_points(const Match *matches, int nmatches, RuleCache *cache,
						   LeadState *leads, int nleads);
extern void lm_store_scores(const Match *matches, int nmatches, RuleCache *cache,
							LeadState *leads, int nleads);
extern void lm_hand_off_hot_leads(LeadState *leads, int nleads);

/* scoring.c: SPI helpers */
extern ArrayType *lm_datum_array(Datum *d, int n, Oid type);
extern Datum lm_int8_datum_array(const int64 *values, int n);
extern Datum lm_lead_id_array(const LeadState *leads, int nleads, bool recompute_only,
							  int *count);
extern void lm_run_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
						int expected);

#endif							/* LM_SCORING_H */
