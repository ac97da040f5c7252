/*
 * scoring.h
 *		What scoring.c shares with the activity ingest path (ingest.c) and
 *		the consent hygiene (consent.c): the rule cache, matching one
 *		activity against the rules, the per-lead state of a statement, caps
 *		and decay folding, the hand-off, and small SPI helpers.
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
	text	   *detail_pattern; /* NULL: any detail */
	char	   *campaign;		/* NULL: any campaign */
	int32		min_duration_s; /* -1: any duration */
	float8		points;
	int64		half_life_us;	/* 0: no decay */
	int32		max_times;		/* 0: unlimited */
} ScoringRule;

typedef struct RuleCache
{
	MemoryContext context;
	int			nrules;
	ScoringRule *rules;
} RuleCache;

typedef struct ActivityRow
{
	int64		id;
	int64		lead_id;
	TimestampTz occurred_at;
	char	   *kind;
	text	   *detail;			/* NULL when SQL NULL */
	char	   *campaign;
	bool		has_duration;
	int32		duration_s;
	bool		points_given;
} ActivityRow;

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
	bool		bounced;		/* an email_bounce row in the statement */
	bool		unsubscribed;	/* an unsubscribe row in the statement */
	char	   *email_status;	/* as read */
	bool		had_state;		/* a score_state row exists */
	char	   *external_id;
	char	   *stage;
	TimestampTz stage_entered_at;
	LmState		state;
	float8		score;
	TimestampTz score_at;
} LeadState;

/*
 * Deliverability and consent facts seen in the statement: a bounce marks the
 * address bounced, an unsubscribe marks it unsubscribed and withdraws e-mail
 * consent (identity's hygiene, done here because this trigger already reads
 * every new row).
 */
typedef struct Hygiene
{
	int			nbounced;
	int			nunsubscribed;
	int			cap_bounced;
	int			cap_unsubscribed;
	int64	   *bounced;
	int64	   *unsubscribed;
	TimestampTz *unsubscribed_at;
} Hygiene;

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

/* grow-as-needed arrays */
#define APPEND(arr, n, cap) \
	do { \
		if ((n) == (cap)) \
		{ \
			(cap) = (cap) ? (cap) * 2 : 64; \
			(arr) = (arr) ? repalloc_huge((arr), sizeof(*(arr)) * (cap)) : \
				palloc_extended(sizeof(*(arr)) * (cap), MCXT_ALLOC_HUGE); \
		} \
	} while (0)


/* scoring.c: rules and matching */
extern RuleCache *lm_rule_cache(void);
extern const ActivityColumns *lm_activity_columns(TupleDesc desc);
extern void lm_read_activity(HeapTuple tuple, TupleDesc desc, const ActivityColumns *cols,
							 ActivityRow *row);
extern bool lm_rule_matches(const ScoringRule *rule, const ActivityRow *row);

/* scoring.c: the leads of a statement, caps, decay, hand-off */
extern int	lm_lead_state_cmp(const void *a, const void *b);
extern LeadState *lm_find_lead(LeadState *leads, int nleads, int64 lead_id);
extern void lm_apply_caps(Match *matches, int nmatches, RuleCache *cache, LeadState *leads,
						  int nleads);
extern void lm_fold_points(const Match *matches, int nmatches, RuleCache *cache,
						   LeadState *leads, int nleads);
extern void lm_hand_off_hot_leads(LeadState *leads, int nleads);

/* scoring.c: SPI helpers */
extern ArrayType *lm_datum_array(Datum *d, int n, Oid type);
extern Datum lm_int8_datum_array(const int64 *values, int n);
extern void lm_run_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
						int expected);

/* consent.c: e-mail hygiene of new activity */
extern void lm_note_hygiene(Hygiene *h, const ActivityRow *row);
extern const char *lm_new_email_status(const LeadState *lead);
extern void lm_record_consent(const Hygiene *h);

#endif							/* LM_SCORING_H */
