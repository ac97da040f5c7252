/*
 * stage_internal.h
 *		Stage-machine entry points for other capabilities' C code only.
 *
 * (Candidates for leadmgmt.h; kept apart so the identity branch does not
 * touch the shared header.)
 */
#ifndef LM_STAGE_INTERNAL_H
#define LM_STAGE_INTERNAL_H

#include "postgres.h"

/* take stage without a transition check, history row with reason (merge) */
extern void lm_stage_move_internal(int64 lead_id, const char *stage, const char *reason);

#endif							/* LM_STAGE_INTERNAL_H */
