/*
 * fuzz_normalize.c
 *		Fuzz target for ../normalize.c.
 *
 * The bytes are tried twice: as UTF-8 (when valid) and as raw 32-bit code
 * points (any value, including surrogates and values above U+10FFFF).  Every
 * key function must stay in bounds, never grow its input, and produce what
 * its contract says (valid UTF-8; an e-mail key with one "@"; a phone key of
 * "+" and 7 to 15 digits).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normalize.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond, const char *what)
{
	if (!cond)
	{
		fprintf(stderr, "fuzz_normalize: %s\n", what);
		abort();
	}
}

static void
run_all(const uint32_t *in, size_t n)
{
	static const char *const regions[] = {"JP", "us", "GB", "SG", "XX"};
	uint32_t   *c = malloc((n + 1) * sizeof(uint32_t));
	char	   *utf8 = malloc(4 * n + 1);
	size_t		(*fns[]) (uint32_t *, size_t) = {
		lm_prefold, lm_fold_width, lm_fold_kana, lm_company_key, lm_name_key, lm_email_key
	};
	size_t		f;
	size_t		i;

	for (f = 0; f < sizeof(fns) / sizeof(fns[0]); f++)
	{
		size_t		k;
		size_t		bytes;

		memcpy(c, in, n * sizeof(uint32_t));
		k = fns[f] (c, n);
		check(k <= n, "key longer than its input");
		bytes = lm_utf8_encode(c, k, utf8);
		check(lm_utf8_decode(utf8, bytes, c) == (long) k, "encoded key is not valid UTF-8");
		if (fns[f] == lm_email_key && k > 0)
		{
			int			ats = 0;

			for (i = 0; i < bytes; i++)
				ats += utf8[i] == '@';
			check(ats == 1 && bytes <= LM_EMAIL_MAX_KEY, "e-mail key malformed");
		}
	}
	{
		unsigned char *used = malloc(n + 1);
		double		s1 = lm_key_similarity(in, n, in, n, used);
		double		s2 = lm_key_similarity(in, n / 2, in + n / 2, n - n / 2, used);

		check(s1 == 1.0, "a key is not similar to itself");
		check(s2 >= 0.0 && s2 <= 1.0, "similarity out of [0, 1]");
		free(used);
	}
	for (f = 0; f < sizeof(regions) / sizeof(regions[0]); f++)
	{
		char		out[LM_PHONE_KEY_SIZE];
		lm_phone_result r = lm_phone_key(in, n, regions[f], out);

		check((r == LM_PHONE_BAD_REGION) == (f == 4), "region lookup");
		if (r == LM_PHONE_KEY)
		{
			size_t		len = strlen(out);

			check(out[0] == '+' && len >= 8 && len <= 16, "phone key length");
			for (i = 1; i < len; i++)
				check(out[i] >= '0' && out[i] <= '9', "phone key digits");
		}
	}
	free(c);
	free(utf8);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t   *c = malloc((size + 1) * sizeof(uint32_t));
	long		n = lm_utf8_decode((const char *) data, size, c);
	size_t		i;

	if (n >= 0)
		run_all(c, (size_t) n);
	/* the same bytes as arbitrary code points, then as small ones (kana, CJK) */
	for (i = 0; i + 4 <= size; i += 4)
		c[i / 4] = (uint32_t) data[i] | (uint32_t) data[i + 1] << 8 |
			(uint32_t) data[i + 2] << 16 | (uint32_t) data[i + 3] << 24;
	run_all(c, size / 4);
	for (i = 0; i + 2 <= size; i += 2)
	{
		static const uint32_t bases[] = {0, 0x3000, 0xFF00, 0x2000, 0x5000, 0xE000};
		uint32_t	v = data[i + 1];

		c[i / 2] = bases[data[i] % 6] + v;
	}
	run_all(c, size / 2);
	free(c);
	return 0;
}
