/*
 * leadmgmt.h
 *		Declarations shared by the PostgreSQL glue files of leadmgmt.
 *
 * Custom SQLSTATEs live in class LM (doc/errors.md lists them all).
 */
#ifndef LEADMGMT_H
#define LEADMGMT_H

#include "postgres.h"

/* the varlena macros (VARSIZE_ANY_EXHDR, VARDATA_ANY) left postgres.h in 16 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif
#include "utils/rel.h"
#include "utils/timestamp.h"

/* the shared PostgreSQL layer (src/pg/, doc/design.md) */
#include "pg/agg_state.h"
#include "pg/as_owner.h"
#include "pg/core_hooks.h"
#include "pg/grow_array.h"
#include "pg/kept_plan.h"
#include "pg/lookup_cache.h"
#include "pg/merged_into.h"
#include "pg/merged_into_batch.h"
#include "pg/trigger.h"

#define ERRCODE_LM_FORBIDDEN_TRANSITION	MAKE_SQLSTATE('L','M','0','0','1')
#define ERRCODE_LM_UNKNOWN_STAGE		MAKE_SQLSTATE('L','M','0','0','2')
#define ERRCODE_LM_OUT_OF_ORDER			MAKE_SQLSTATE('L','M','0','0','3')
#define ERRCODE_LM_BUILTIN_READ_ONLY	MAKE_SQLSTATE('L','M','0','0','4')
#define ERRCODE_LM_UNKNOWN_LEAD			MAKE_SQLSTATE('L','M','0','0','5')
#define ERRCODE_LM_UNKNOWN_KIND			MAKE_SQLSTATE('L','M','0','0','6')
#define ERRCODE_LM_MERGE_CYCLE			MAKE_SQLSTATE('L','M','0','5','0')

#define LEADMGMT_SCHEMA "leadmgmt"

/* leadmgmt.c */
extern char *leadmgmt_actor;
extern const char *lm_current_actor(void);
extern Oid	lm_schema_oid(void);

/* stage.c */
extern Datum lm_set_stage(int64 lead_id, const char *stage, const char *reason,
						  TimestampTz at, bool explicit_at);
/* the live lead an id stands for, locked FOR KEY SHARE (merged leads on the way are not) */
extern int64 lm_lock_lead(int64 lead_id);
/* take stage without a transition check, history row with reason (merge) */
extern void lm_stage_move_internal(int64 lead_id, const char *stage, const char *reason);
/* a history row without a stage change (from_stage = to_stage), e.g. a merge */
extern void lm_stage_note(int64 lead_id, const char *reason);

/* decayed_sum.c */
extern int64 lm_half_life_usecs(Interval *half_life);

/* score_state.c: the per-lead scoring state (src/core/score_state.h) */
struct LmState;
struct LmStateAward;
extern void lm_state_from_bytea(bytea *raw, struct LmState *state);
extern bytea *lm_state_to_bytea(const struct LmState *state);
extern bool lm_state_fold(struct LmState *state, int64 half_life_us, float8 points, TimestampTz ts);
extern struct LmStateAward *lm_state_counter(struct LmState *state, int64 rule_id);

#endif							/* LEADMGMT_H */
