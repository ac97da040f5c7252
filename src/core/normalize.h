/*
 * normalize.h
 *		Match-key algorithms for identity resolution (no PostgreSQL, no ICU).
 *
 * The keys are built in two layers.  src/identity_keys.c runs ICU for what the
 * Unicode stability policies freeze (NFKC, full case folding); everything
 * that decides whether two spellings match is here, in tables owned by the
 * project, so a key cannot change because the ICU or CLDR data changed:
 * width folding, katakana->hiragana, kanji variants, legal forms, separator
 * removal, e-mail syntax and phone number rules.  A change to any table or
 * rule here must bump LM_KEY_VERSION (stored on every lead row; see
 * leadmgmt.rebuild_keys()).
 *
 * Everything works on arrays of Unicode code points (uint32_t), in place:
 * no function allocates and none writes past n.  Functions taking a code
 * point array accept any values, including invalid ones, without reading or
 * writing out of bounds (the fuzz target checks that).
 */
#ifndef LM_NORMALIZE_H
#define LM_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

/* bump when any rule or table below changes the key of some input */
#define LM_KEY_VERSION			1

/* longest inputs that get a key (code points); longer ones get none */
#define LM_COMPANY_MAX_INPUT	1000
#define LM_NAME_MAX_INPUT		1000
#define LM_EMAIL_MAX_INPUT		1000
#define LM_PHONE_MAX_INPUT		100
/* an e-mail key longer than this (bytes) is not an address (RFC 5321) */
#define LM_EMAIL_MAX_KEY		254
/* '+', at most 15 digits (E.164), NUL */
#define LM_PHONE_KEY_SIZE		17

/* UTF-8: decode returns the number of code points, or -1 when invalid */
extern long lm_utf8_decode(const char *s, size_t len, uint32_t *out);
/* out must hold 4 * n bytes; returns the bytes written (no NUL) */
extern size_t lm_utf8_encode(const uint32_t *c, size_t n, char *out);

/* character classes used by the keys */
extern int	lm_is_separator(uint32_t c);
extern int	lm_is_ignorable(uint32_t c);

/*
 * Folds, in place, returning the new length (never longer than n).
 *
 * lm_prefold: before ICU.  Removes default-ignorable code points (zero
 * width spaces and joiners, soft hyphen, variation selectors, BOM, tags)
 * and folds widths, composing kana with separate voiced sound marks (which
 * NFKC would otherwise split off as " \u3099");
 * drops ™ ℠ ℡, which NFKC would turn into letters glued to the name.
 * lm_fold_width: full-width ASCII to ASCII, half-width katakana to
 * katakana (with dakuten), ideographic space to space.
 * lm_fold_kana: katakana to hiragana.
 */
extern size_t lm_prefold(uint32_t *c, size_t n);
extern size_t lm_fold_width(uint32_t *c, size_t n);
extern size_t lm_fold_kana(uint32_t *c, size_t n);

/*
 * Keys, computed in place from text that went through lm_prefold and then
 * NFKC + case folding (they also work on raw text, folding ASCII case and
 * width themselves).  A result of 0 means "no key" (NULL in SQL): empty
 * input, nothing left after removing legal forms, a placeholder such as
 * "n/a" or "個人", or not an e-mail address.
 */
extern size_t lm_company_key(uint32_t *c, size_t n);
extern size_t lm_name_key(uint32_t *c, size_t n);
extern size_t lm_email_key(uint32_t *c, size_t n);

typedef enum lm_phone_result
{
	LM_PHONE_KEY,				/* out holds the E.164 key */
	LM_PHONE_NO_KEY,			/* not a phone number we can place */
	LM_PHONE_BAD_REGION			/* region is not one we know */
} lm_phone_result;

/*
 * Phone number to E.164 ("+81312345678").  region is an ISO 3166 alpha-2
 * code, case-insensitive, used for numbers written without a country code.
 */
extern lm_phone_result lm_phone_key(const uint32_t *c, size_t n, const char *region,
									char out[LM_PHONE_KEY_SIZE]);
/*
 * Similarity of two keys in [0, 1]: Dice coefficient of their multisets of
 * character bigrams, 2|A∩B| / (|A| + |B|).  Two equal keys score 1; keys of
 * one character score 1 when equal, else 0.  used must hold nb bytes
 * (scratch).  O(na * nb).
 */
extern double lm_key_similarity(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
								unsigned char *used);

/* "AU, CA, ..." for error hints */
extern const char *lm_phone_regions(void);

#endif							/* LM_NORMALIZE_H */
