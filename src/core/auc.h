/*
 * auc.h
 *		Exact ROC AUC (Mann-Whitney U), pure C.
 *
 * AUC = P(score of a random positive > score of a random negative)
 *     + 1/2 P(equal): every (positive, negative) pair counts 1 when the
 * positive scores higher, 1/2 on a tie, 0 otherwise.
 */
#ifndef LM_AUC_H
#define LM_AUC_H

#include <stddef.h>

/*
 * pos: npos scores of positive rows, neg: nneg scores of negative rows.
 * Both arrays are sorted in place (ascending).  Scores must not be NaN
 * (the caller rejects them); infinities are ordinary values.  Returns NaN
 * when npos or nneg is 0 (AUC undefined).  O((npos + nneg) log(npos + nneg))
 * time, no extra memory; the pair count is kept exactly in 64-bit
 * integers (twice U), so the result is exact up to the final division.
 */
extern double lm_auc(double *pos, size_t npos, double *neg, size_t nneg);

/* the same by comparing every pair, O(npos * nneg): the test oracle */
extern double lm_auc_pairs(const double *pos, size_t npos,
						   const double *neg, size_t nneg);

#endif							/* LM_AUC_H */
