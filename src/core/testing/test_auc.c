/*
 * test_auc.c
 *		Unit tests of the exact ROC AUC (../auc.c) against hand-computed
 *		values and the O(n^2) pair count.
 */
#include <math.h>
#include <stdlib.h>

#include "auc.h"
#include "tap.h"

int
main(void)
{
	double		pos[8],
				neg[8];
	unsigned long long rng = 12345;
	int			round;

	/* perfect, reversed, all tied */
	pos[0] = 3; pos[1] = 4; neg[0] = 1; neg[1] = 2;
	TAP_OK(lm_auc(pos, 2, neg, 2) == 1.0, "perfect ranking: 1");
	pos[0] = 1; pos[1] = 2; neg[0] = 3; neg[1] = 4;
	TAP_OK(lm_auc(pos, 2, neg, 2) == 0.0, "reversed ranking: 0");
	pos[0] = 5; pos[1] = 5; neg[0] = 5; neg[1] = 5;
	TAP_OK(lm_auc(pos, 2, neg, 2) == 0.5, "all tied: 1/2");

	/* hand count: pos {0.9, 0.5, 0.5}, neg {0.5, 0.1}: pairs 1+1 + .5+1 + .5+1 = 5 of 6 */
	pos[0] = 0.9; pos[1] = 0.5; pos[2] = 0.5; neg[0] = 0.5; neg[1] = 0.1;
	TAP_OK(tap_close(lm_auc(pos, 3, neg, 2), 5.0 / 6.0, 1e-15), "ties count one half: 5/6");

	pos[0] = -INFINITY; neg[0] = INFINITY; neg[1] = -INFINITY;
	TAP_OK(lm_auc(pos, 1, neg, 2) == 0.25, "infinite scores order and tie normally");
	TAP_OK(isnan(lm_auc(pos, 0, neg, 2)), "no positives: NaN (undefined)");
	TAP_OK(isnan(lm_auc(pos, 1, neg, 0)), "no negatives: NaN (undefined)");

	/* random small sets with many ties against the pair count */
	for (round = 0; round < 200; round++)
	{
		size_t		np = 1 + round % 8,
					nn = 1 + (round / 8) % 8,
					i;
		double		a,
					b;

		for (i = 0; i < 8; i++)
		{
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			pos[i] = (double) ((rng >> 33) % 5);
			rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
			neg[i] = (double) ((rng >> 33) % 5);
		}
		b = lm_auc_pairs(pos, np, neg, nn);
		a = lm_auc(pos, np, neg, nn);
		if (a != b)
		{
			TAP_OK(0, "random round %d: %g != pair count %g", round, a, b);
			return tap_done();
		}
	}
	TAP_OK(1, "200 random tied sets equal the pair count exactly");
	return tap_done();
}
