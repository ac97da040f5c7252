/*
 * merged_into.h
 *		Follow leadmgmt.lead.merged_into to the lead a lead id stands for.
 *
 * Unit of use: one call, between SPI_connect() and SPI_finish(), usually
 * as the extension owner (as_owner.h) so that row-level security cannot
 * hide a link of the chain.
 *
 *		bool	exists;
 *		int64	live = lm_follow_merged_into(lead_id, false, &exists);
 *
 * merge_leads() points a duplicate at the kept lead and repoints the
 * duplicate's own duplicates, so a chain normally has one hop; longer ones
 * come from merges done before that rule or by hand.  The walk stops after
 * LM_MERGED_INTO_MAX_HOPS hops: a chain that long is a cycle somebody wrote
 * by hand (the CHECK only forbids a lead merged into itself), and the
 * answer is an error (LM050) rather than a loop.  One cap,
 * here, for every caller.
 */
#ifndef LM_PG_MERGED_INTO_H
#define LM_PG_MERGED_INTO_H

#include "postgres.h"

#define LM_MERGED_INTO_MAX_HOPS 1000

/*
 * The lead reached by following merged_into from lead_id: the first one
 * whose merged_into is NULL.  When a lead on the way does not exist,
 * *exists is false and that lead's id is returned (lead_id itself when it
 * does not exist), so the caller decides: an LM005 error, or letting a
 * foreign key report it.  key_share locks the live lead FOR KEY SHARE,
 * which waits for a concurrent merge_leads() of it (that one holds FOR
 * UPDATE) and then sees where it went; merged leads passed on the way are
 * read without a lock.
 */
extern int64 lm_follow_merged_into(int64 lead_id, bool key_share, bool *exists);

/* LM050: the walk from lead_id took more than LM_MERGED_INTO_MAX_HOPS hops */
extern void lm_merged_into_cycle_error(int64 lead_id);

/*
 * The steps of merge_leads() (merge_stage, merge_score) refuse a pair it
 * did not merge: attno of the first row of the last SPI result must be the
 * duplicate's merged_into and equal keep (no row: not merged either).
 */
extern void lm_require_merged_pair(int64 keep, int64 duplicate, int attno);

#endif							/* LM_PG_MERGED_INTO_H */
