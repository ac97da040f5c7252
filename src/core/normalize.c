/*
 * normalize.c
 *		Match keys for identity resolution: the project-owned tables and rules.
 *
 * See normalize.h for the split between ICU (NFKC, case folding) and this
 * file.  The tables below are part of the key definition: changing one
 * changes keys already stored, so it must come with a bump of
 * LM_KEY_VERSION and a note in doc/identity.md.
 *
 * Company key, in order:
 *   1. fold: ignorables removed, widths folded, ASCII lower-cased, a hyphen
 *      typed for the long-vowel mark after kana ("ソニ－") made one,
 *      katakana to hiragana, a few kanji variants (髙 -> 高)
 *   2. parenthesised legal-form abbreviations removed anywhere: (株) (有) ...
 *      (NFKC has already turned ㈱ and （株） into "(株)")
 *   3. legal forms removed from the start and the end, repeatedly:
 *      Japanese ones as prefixes/suffixes (株式会社トヨタ, トヨタ株式会社),
 *      Western ones as whole words (Co., Ltd. / L.L.C. / GmbH)
 *   4. every separator (space, punctuation, symbols, emoji) dropped, so
 *      "Coca-Cola", "Coca Cola" and "CocaCola" meet, as do "トヨタ 自動車"
 *      and "トヨタ自動車" (Japanese is written without spaces)
 *   5. a placeholder ("n/a", "なし", "個人", ...) or an empty result is no key
 *
 * Why one file of this size: every key (e-mail, company, person, phone)
 * is defined by the tables here plus the short passes that apply them, and
 * the tables change only together with LM_KEY_VERSION; keeping the whole
 * key definition in one place is what makes such a change reviewable.
 */
#include "normalize.h"

#include <string.h>

/* ------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------ */

long
lm_utf8_decode(const char *str, size_t len, uint32_t *out)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t		i = 0;
	long		n = 0;

	while (i < len)
	{
		unsigned char b = s[i];
		uint32_t	cp;
		size_t		need;
		size_t		k;

		if (b < 0x80)
		{
			out[n++] = b;
			i++;
			continue;
		}
		else if (b >= 0xC2 && b <= 0xDF)
		{
			cp = b & 0x1F;
			need = 1;
		}
		else if (b >= 0xE0 && b <= 0xEF)
		{
			cp = b & 0x0F;
			need = 2;
		}
		else if (b >= 0xF0 && b <= 0xF4)
		{
			cp = b & 0x07;
			need = 3;
		}
		else
			return -1;
		if (len - i - 1 < need)
			return -1;
		for (k = 1; k <= need; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return -1;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
			(cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return -1;
		out[n++] = cp;
		i += need + 1;
	}
	return n;
}

size_t
lm_utf8_encode(const uint32_t *c, size_t n, char *out)
{
	unsigned char *o = (unsigned char *) out;
	size_t		j = 0;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		uint32_t	cp = c[i];

		/* never emit invalid UTF-8, whatever the array holds */
		if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			cp = 0xFFFD;
		if (cp < 0x80)
			o[j++] = (unsigned char) cp;
		else if (cp < 0x800)
		{
			o[j++] = (unsigned char) (0xC0 | (cp >> 6));
			o[j++] = (unsigned char) (0x80 | (cp & 0x3F));
		}
		else if (cp < 0x10000)
		{
			o[j++] = (unsigned char) (0xE0 | (cp >> 12));
			o[j++] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
			o[j++] = (unsigned char) (0x80 | (cp & 0x3F));
		}
		else
		{
			o[j++] = (unsigned char) (0xF0 | (cp >> 18));
			o[j++] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
			o[j++] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
			o[j++] = (unsigned char) (0x80 | (cp & 0x3F));
		}
	}
	return j;
}

/* UTF-8 literal of the tables -> code points (the literals are valid) */
static size_t
lit_decode(const char *lit, uint32_t *out, size_t cap)
{
	uint32_t	buf[64];
	long		n = lm_utf8_decode(lit, strlen(lit), buf);
	size_t		i;

	if (n < 0 || (size_t) n > cap || (size_t) n > sizeof(buf) / sizeof(buf[0]))
		return 0;
	for (i = 0; i < (size_t) n; i++)
		out[i] = buf[i];
	return (size_t) n;
}

/* ------------------------------------------------------------------------
 * Character classes (project tables: fixed, not the running Unicode data)
 * ------------------------------------------------------------------------ */

/*
 * Default_Ignorable_Code_Point as of Unicode 15 (the blocks, not just the
 * assigned ones, so a later assignment inside them changes nothing).
 */
int
lm_is_ignorable(uint32_t c)
{
	return c == 0x00AD || c == 0x034F || c == 0x061C ||
		c == 0x115F || c == 0x1160 || c == 0x17B4 || c == 0x17B5 ||
		(c >= 0x180B && c <= 0x180F) ||
		(c >= 0x200B && c <= 0x200F) ||
		(c >= 0x202A && c <= 0x202E) ||
		(c >= 0x2060 && c <= 0x206F) ||
		c == 0x3164 ||
		(c >= 0xFE00 && c <= 0xFE0F) ||
		c == 0xFEFF || c == 0xFFA0 ||
		(c >= 0xFFF0 && c <= 0xFFF8) ||
		(c >= 0x1BCA0 && c <= 0x1BCA3) ||
		(c >= 0x1D173 && c <= 0x1D17A) ||
		(c >= 0xE0000 && c <= 0xE0FFF);
}

/*
 * Separators: spaces, punctuation and symbols (including emoji).  They split
 * words and never survive into a key.  Letters, digits and marks of every
 * script, and private-use characters (gaiji), are word characters.
 */
int
lm_is_separator(uint32_t c)
{
	if (c < 0x80)
		return !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
				 (c >= 'A' && c <= 'Z'));
	if (c < 0xC0)				/* C1 controls, Latin-1 punctuation */
		return !(c == 0xAA || c == 0xB2 || c == 0xB3 || c == 0xB5 ||
				 c == 0xB9 || c == 0xBA || (c >= 0xBC && c <= 0xBE));
	if (c == 0xD7 || c == 0xF7)
		return 1;
	if (c >= 0x2000 && c <= 0x206F)	/* general punctuation */
		return 1;
	if (c >= 0x20A0 && c <= 0x20CF)	/* currency */
		return 1;
	if (c >= 0x2190 && c <= 0x245F)	/* arrows, maths, technical */
		return 1;
	if (c >= 0x2500 && c <= 0x2BFF)	/* boxes, shapes, dingbats */
		return 1;
	if (c >= 0x2E00 && c <= 0x2E7F)	/* supplemental punctuation */
		return 1;
	if (c >= 0x3000 && c <= 0x303F)	/* CJK symbols, except 々〆〇 and kana repeats */
		return !((c >= 0x3005 && c <= 0x3007) || (c >= 0x3031 && c <= 0x3035) ||
				 c == 0x303B);
	if (c == 0x309B || c == 0x309C || c == 0x30A0 || c == 0x30FB)
		return 1;
	if ((c >= 0xFE10 && c <= 0xFE1F) || (c >= 0xFE30 && c <= 0xFE6F))
		return 1;
	if (c >= 0xFF00 && c <= 0xFFEF)	/* full-width punctuation left unfolded */
		return (c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
			(c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) ||
			c >= 0xFFE0;
	if (c >= 0xFFF0 && c <= 0xFFFF)
		return 1;
	if (c >= 0x1F000 && c <= 0x1FAFF)	/* emoji, cards, enclosed supplements */
		return 1;
	if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 1;
	return 0;
}

/* scripts written without spaces between words: a word boundary on change */
static int
is_unspaced(uint32_t c)
{
	return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x31F0 && c <= 0x31FF) ||
		(c >= 0x3005 && c <= 0x3007) || (c >= 0x3031 && c <= 0x3035) ||
		c == 0x303B ||
		(c >= 0x3400 && c <= 0x4DBF) || (c >= 0x4E00 && c <= 0x9FFF) ||
		(c >= 0xF900 && c <= 0xFAFF) || (c >= 0x20000 && c <= 0x3FFFF) ||
		(c >= 0x1B000 && c <= 0x1B16F) || (c >= 0x0E00 && c <= 0x0E7F);
}

static int
is_kana_letter(uint32_t c)
{
	return (c >= 0x3041 && c <= 0x3096) || (c >= 0x30A1 && c <= 0x30FA);
}

static int
is_hyphen_like(uint32_t c)
{
	return c == 0x2D || (c >= 0x2010 && c <= 0x2015) || c == 0x2043 ||
		c == 0x2212 || c == 0x2500 || c == 0x2501 || c == 0xFE63 || c == 0xFF0D;
}

/* ------------------------------------------------------------------------
 * Width and kana folding
 * ------------------------------------------------------------------------ */

/* U+FF61..U+FF9F half-width katakana and punctuation -> full-width */
static const uint16_t halfwidth_kana[] = {
	0x3002, 0x300C, 0x300D, 0x3001, 0x30FB, 0x30F2, 0x30A1, 0x30A3,	/* FF61 */
	0x30A5, 0x30A7, 0x30A9, 0x30E3, 0x30E5, 0x30E7, 0x30C3, 0x30FC,	/* FF69 */
	0x30A2, 0x30A4, 0x30A6, 0x30A8, 0x30AA, 0x30AB, 0x30AD, 0x30AF,	/* FF71 */
	0x30B1, 0x30B3, 0x30B5, 0x30B7, 0x30B9, 0x30BB, 0x30BD, 0x30BF,	/* FF79 */
	0x30C1, 0x30C4, 0x30C6, 0x30C8, 0x30CA, 0x30CB, 0x30CC, 0x30CD,	/* FF81 */
	0x30CE, 0x30CF, 0x30D2, 0x30D5, 0x30D8, 0x30DB, 0x30DE, 0x30DF,	/* FF89 */
	0x30E0, 0x30E1, 0x30E2, 0x30E4, 0x30E6, 0x30E8, 0x30E9, 0x30EA,	/* FF91 */
	0x30EB, 0x30EC, 0x30ED, 0x30EF, 0x30F3, 0x3099, 0x309A			/* FF99 */
};

/*
 * Kana + voiced (dakuten, 0x3099) or semi-voiced (handakuten, 0x309A) sound
 * mark -> the precomposed kana, or 0 when there is none.
 */
static uint32_t
compose_voiced(uint32_t base, uint32_t mark)
{
	uint32_t	k = base;
	uint32_t	off = 0;

	/* work on katakana, give back the script we were given */
	if (base >= 0x3041 && base <= 0x309F)
	{
		k = base + 0x60;
		off = 0x60;
	}
	if (mark == 0x3099)
	{
		if ((k >= 0x30AB && k <= 0x30C2 && (k - 0x30AB) % 2 == 0) ||
			k == 0x30C4 || k == 0x30C6 || k == 0x30C8)
			return base + 1;
		if (k == 0x30CF || k == 0x30D2 || k == 0x30D5 || k == 0x30D8 || k == 0x30DB)
			return base + 1;
		if (k == 0x30A6)
			return 0x30F4 - off;
		if (k == 0x30FD)
			return 0x30FE - off;
		if (off == 0 && k >= 0x30EF && k <= 0x30F2)
			return k - 0x30EF + 0x30F7;
	}
	else if (mark == 0x309A)
	{
		if (k == 0x30CF || k == 0x30D2 || k == 0x30D5 || k == 0x30D8 || k == 0x30DB)
			return base + 2;
	}
	return 0;
}

size_t
lm_fold_width(uint32_t *c, size_t n)
{
	size_t		i;
	size_t		j = 0;

	for (i = 0; i < n; i++)
	{
		uint32_t	ch = c[i];

		if (ch >= 0xFF01 && ch <= 0xFF5E)
			ch -= 0xFEE0;
		else if (ch == 0x3000)
			ch = 0x20;
		else if (ch >= 0xFF61 && ch <= 0xFF9F)
			ch = halfwidth_kana[ch - 0xFF61];

		/* voiced sound marks in any form join the kana before them */
		if ((ch == 0x3099 || ch == 0x309A || ch == 0x309B || ch == 0x309C) && j > 0)
		{
			uint32_t	mark = (ch == 0x309B) ? 0x3099 : (ch == 0x309C) ? 0x309A : ch;
			uint32_t	composed = compose_voiced(c[j - 1], mark);

			if (composed != 0)
			{
				c[j - 1] = composed;
				continue;
			}
		}
		c[j++] = ch;
	}
	return j;
}

size_t
lm_fold_kana(uint32_t *c, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
	{
		if (c[i] >= 0x30A1 && c[i] <= 0x30F6)
			c[i] -= 0x60;
		else if (c[i] == 0x30FD || c[i] == 0x30FE)
			c[i] -= 0x60;
	}
	return n;
}

size_t
lm_prefold(uint32_t *c, size_t n)
{
	size_t		i;
	size_t		j = 0;

	/* ™ ℠ ℡: NFKC would spell them TM, SM, TEL and glue them to the name */
	for (i = 0; i < n; i++)
		if (!lm_is_ignorable(c[i]) && c[i] != 0x2122 && c[i] != 0x2120 && c[i] != 0x2121)
			c[j++] = c[i];
	return lm_fold_width(c, j);
}

/* kanji written differently in names and registers; the common one wins */
static const uint32_t kanji_variants[][2] = {
	{0x9AD9, 0x9AD8},			/* 髙 -> 高 */
	{0xFA11, 0x5D0E},			/* 﨑 -> 崎 */
	{0x20BB7, 0x5409},			/* 𠮷 -> 吉 */
};

/* the folds shared by company and person names */
static size_t
fold_for_names(uint32_t *c, size_t n)
{
	size_t		i;
	size_t		j = 0;

	n = lm_prefold(c, n);
	for (i = 0; i < n; i++)
	{
		uint32_t	ch = c[i];
		size_t		v;

		if (ch >= 'A' && ch <= 'Z')
			ch += 'a' - 'A';
		/* ソニ－: a hyphen typed for the long-vowel mark after a kana letter */
		if (is_hyphen_like(ch) && j > 0 && is_kana_letter(c[j - 1]) &&
			(i + 1 == n || is_kana_letter(c[i + 1]) || c[i + 1] == 0x30FC ||
			 lm_is_separator(c[i + 1])))
			ch = 0x30FC;
		for (v = 0; v < sizeof(kanji_variants) / sizeof(kanji_variants[0]); v++)
			if (ch == kanji_variants[v][0])
				ch = kanji_variants[v][1];
		c[j++] = ch;
	}
	return lm_fold_kana(c, j);
}

/* ------------------------------------------------------------------------
 * Matching helpers
 * ------------------------------------------------------------------------ */

/* length of literal lit if it matches c[pos..end), else 0 */
static size_t
match_lit(const uint32_t *c, size_t pos, size_t end, const char *lit)
{
	uint32_t	l[64];
	size_t		ln = lit_decode(lit, l, 64);

	if (ln == 0 || pos > end || end - pos < ln)
		return 0;
	return memcmp(c + pos, l, ln * sizeof(uint32_t)) == 0 ? ln : 0;
}

/* longest literal of list that c[b..e) starts with (0: none) */
static size_t
longest_prefix(const uint32_t *c, size_t b, size_t e, const char *const *list)
{
	size_t		best = 0;

	for (; *list; list++)
	{
		size_t		k = match_lit(c, b, e, *list);

		if (k > best)
			best = k;
	}
	return best;
}

static size_t
longest_suffix(const uint32_t *c, size_t b, size_t e, const char *const *list)
{
	size_t		best = 0;

	for (; *list; list++)
	{
		uint32_t	l[64];
		size_t		ln = lit_decode(*list, l, 64);

		if (ln > best && ln <= e - b && match_lit(c, e - ln, e, *list) == ln)
			best = ln;
	}
	return best;
}

/*
 * Words: runs of non-separators, also split where the text changes between
 * a script written without spaces (kana, kanji, Thai) and one with them, so
 * the "Inc" of "ソニーInc" is a word of its own.
 */
static int
prev_word(const uint32_t *c, size_t b, size_t pos, size_t *ws, size_t *we)
{
	int			kind;

	while (pos > b && lm_is_separator(c[pos - 1]))
		pos--;
	if (pos == b)
		return 0;
	*we = pos;
	kind = is_unspaced(c[pos - 1]);
	while (pos > b && !lm_is_separator(c[pos - 1]) && is_unspaced(c[pos - 1]) == kind)
		pos--;
	*ws = pos;
	return 1;
}

static int
next_word(const uint32_t *c, size_t pos, size_t e, size_t *ws, size_t *we)
{
	int			kind;

	while (pos < e && lm_is_separator(c[pos]))
		pos++;
	if (pos == e)
		return 0;
	*ws = pos;
	kind = is_unspaced(c[pos]);
	while (pos < e && !lm_is_separator(c[pos]) && is_unspaced(c[pos]) == kind)
		pos++;
	*we = pos;
	return 1;
}

static int
word_is(const uint32_t *c, size_t ws, size_t we, const char *ascii, size_t len)
{
	size_t		i;

	if (we - ws != len)
		return 0;
	for (i = 0; i < len; i++)
		if (c[ws + i] != (unsigned char) ascii[i])
			return 0;
	return 1;
}

/* does c[b..e) end with the words of phrase ("co ltd")?  *cut: where they start */
static int
ends_with_words(const uint32_t *c, size_t b, size_t e, const char *phrase, size_t *cut)
{
	size_t		plen = strlen(phrase);
	size_t		pend = plen;
	size_t		pos = e;

	while (pend > 0)
	{
		size_t		pstart = pend;
		size_t		ws, we;

		while (pstart > 0 && phrase[pstart - 1] != ' ')
			pstart--;
		if (!prev_word(c, b, pos, &ws, &we) ||
			!word_is(c, ws, we, phrase + pstart, pend - pstart))
			return 0;
		pos = ws;
		pend = pstart > 0 ? pstart - 1 : 0;
	}
	*cut = pos;
	return 1;
}

static int
starts_with_words(const uint32_t *c, size_t b, size_t e, const char *phrase, size_t *cut)
{
	const char *p = phrase;
	size_t		pos = b;

	while (*p)
	{
		size_t		wl = strcspn(p, " ");
		size_t		ws, we;

		if (!next_word(c, pos, e, &ws, &we) || !word_is(c, ws, we, p, wl))
			return 0;
		pos = we;
		p += wl;
		if (*p == ' ')
			p++;
	}
	*cut = pos;
	return 1;
}

static int
key_in_list(const uint32_t *c, size_t n, const char *const *list)
{
	for (; *list; list++)
	{
		uint32_t	l[64];
		size_t		ln = lit_decode(*list, l, 64);

		if (ln == n && memcmp(c, l, n * sizeof(uint32_t)) == 0)
			return 1;
	}
	return 0;
}

/* keep the word characters of c[b..e), moved to the front */
static size_t
compact_words(uint32_t *c, size_t b, size_t e)
{
	size_t		i;
	size_t		j = 0;

	for (i = b; i < e; i++)
		if (!lm_is_separator(c[i]))
			c[j++] = c[i];
	return j;
}

/* ------------------------------------------------------------------------
 * Company names
 * ------------------------------------------------------------------------ */

/*
 * Japanese legal forms (as they look after folding: kana in hiragana),
 * removed from the start or the end.  Longest match wins.
 */
static const char *const jp_forms[] = {
	"株式会社", "有限会社", "合同会社", "合資会社", "合名会社", "相互会社",
	"一般社団法人", "一般財団法人", "公益社団法人", "公益財団法人",
	"特定非営利活動法人", "npo法人", "社会福祉法人", "社会医療法人",
	"医療法人", "医療法人社団", "医療法人財団", "学校法人", "宗教法人",
	"独立行政法人", "地方独立行政法人", "国立研究開発法人", "国立大学法人",
	"有限責任事業組合", "弁護士法人", "税理士法人", "司法書士法人",
	"行政書士法人", "社会保険労務士法人", "特許業務法人", "監査法人",
	"有限責任監査法人",
	"かぶしきがいしゃ", "かぶしきかいしゃ", "ゆうげんがいしゃ",
	"ゆうげんかいしゃ", "ごうどうがいしゃ", "ごうどうかいしゃ",
	NULL
};

/* bank-transfer (全銀) abbreviations: カ)トヨタ, トヨタ(カ */
static const char *const jp_prefix_only[] = {"か)", "ゆ)", "ど)", NULL};
static const char *const jp_suffix_only[] = {"(か", "(ゆ", "(ど", NULL};

/* what may stand between parentheses as a legal-form marker: (株) ... */
static const char *const jp_paren_forms[] = {
	"株", "有", "合", "名", "資", "同", "社", "財", "医", "学", "宗", "福",
	"独", "相", "特非", "一社", "一財", "公社", "公財", "npo", "か", "ゆ", "ど",
	"株式会社", "有限会社", "合同会社",
	NULL
};

#define LF_END		1
#define LF_START	2

typedef struct legal_form
{
	const char *words;			/* lower-case ASCII words, one space apart */
	int			where;
} legal_form;

/*
 * Western legal forms, matched as whole words ("Co.,Ltd." is the words co
 * and ltd; "L.L.C." is l l c).  Repeated removal handles combinations
 * ("GmbH & Co. KG", "Pte. Ltd.").  Mostly at the end only: "Co-op" must keep
 * its "co".  The first form in table order that matches is removed, so a
 * phrase comes before its last word ("private limited" before "limited").
 */
static const legal_form western_forms[] = {
	{"inc", LF_END}, {"incorporated", LF_END}, {"corp", LF_END},
	{"corporation", LF_END}, {"co", LF_END}, {"company", LF_END},
	{"private limited", LF_END}, {"ltd", LF_END}, {"limited", LF_END},
	{"llc", LF_END}, {"l l c", LF_END}, {"llp", LF_END}, {"l l p", LF_END},
	{"lp", LF_END}, {"l p", LF_END}, {"plc", LF_END}, {"p l c", LF_END},
	{"gmbh", LF_END}, {"mbh", LF_END}, {"ag", LF_END}, {"kg", LF_END},
	{"kgaa", LF_END}, {"ohg", LF_END}, {"ug", LF_END}, {"e v", LF_END},
	{"se", LF_END}, {"sa", LF_END}, {"s a", LF_END}, {"sas", LF_END},
	{"s a s", LF_END}, {"sarl", LF_END}, {"s a r l", LF_END},
	{"srl", LF_END}, {"s r l", LF_END}, {"spa", LF_END}, {"s p a", LF_END},
	{"bv", LF_END}, {"b v", LF_END}, {"nv", LF_END}, {"n v", LF_END},
	{"oy", LF_END}, {"oyj", LF_END}, {"ab", LF_END}, {"as", LF_END},
	{"a s", LF_END}, {"asa", LF_END}, {"aps", LF_END},
	{"pte", LF_END}, {"pty", LF_END}, {"pvt", LF_END}, {"bhd", LF_END},
	{"sdn", LF_END}, {"tbk", LF_END},
	{"kk", LF_END}, {"k k", LF_END}, {"gk", LF_END}, {"g k", LF_END},
	{"yk", LF_END},
	{"kabushiki kaisha", LF_END | LF_START}, {"kabushiki gaisha", LF_END | LF_START},
	{"kabushikikaisha", LF_END | LF_START}, {"kabushikigaisha", LF_END | LF_START},
	{"yugen kaisha", LF_END | LF_START}, {"godo kaisha", LF_END | LF_START},
	{"pt", LF_START}, {"cv", LF_START}, {"the", LF_START},
	{NULL, 0}
};

/* what people type when they have no company, or no name */
static const char *const placeholders[] = {
	"na", "none", "null", "nil", "unknown", "test", "てすと", "なし", "無し",
	"不明", "個人", "自営", "自営業", "個人事業主", "ふりー", "ふりーらんす",
	"freelance", "freelancer", "selfemployed", "self", "individual",
	"private", "student", "学生", "無職", "未定", "未記入",
	NULL
};

/* (株) and friends -> a space, anywhere */
static size_t
remove_paren_forms(uint32_t *c, size_t n)
{
	size_t		i = 0;
	size_t		j = 0;

	while (i < n)
	{
		if (c[i] == '(')
		{
			size_t		k = longest_prefix(c, i + 1, n, jp_paren_forms);

			if (k > 0 && i + 1 + k < n && c[i + 1 + k] == ')')
			{
				c[j++] = ' ';
				i += k + 2;
				continue;
			}
		}
		c[j++] = c[i++];
	}
	return j;
}

/* nothing but long-vowel marks ("ー", a common "none" in Japanese forms) */
static int
only_long_vowels(const uint32_t *c, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		if (c[i] != 0x30FC)
			return 0;
	return 1;
}

size_t
lm_company_key(uint32_t *c, size_t n)
{
	size_t		b = 0;
	size_t		e;

	n = fold_for_names(c, n);
	n = remove_paren_forms(c, n);
	e = n;

	for (;;)
	{
		size_t		k;
		size_t		cut;
		const legal_form *f;
		int			changed = 0;

		while (b < e && lm_is_separator(c[b]))
			b++;
		while (e > b && lm_is_separator(c[e - 1]))
			e--;
		if (b >= e)
			break;

		if ((k = longest_prefix(c, b, e, jp_forms)) > 0 ||
			(k = longest_prefix(c, b, e, jp_prefix_only)) > 0)
		{
			b += k;
			continue;
		}
		if ((k = longest_suffix(c, b, e, jp_forms)) > 0 ||
			(k = longest_suffix(c, b, e, jp_suffix_only)) > 0)
		{
			e -= k;
			continue;
		}
		for (f = western_forms; f->words && !changed; f++)
		{
			if ((f->where & LF_END) && ends_with_words(c, b, e, f->words, &cut))
			{
				e = cut;
				changed = 1;
			}
			else if ((f->where & LF_START) && starts_with_words(c, b, e, f->words, &cut))
			{
				b = cut;
				changed = 1;
			}
		}
		if (!changed)
			break;
	}

	n = compact_words(c, b, e);
	if (key_in_list(c, n, placeholders) || only_long_vowels(c, n))
		return 0;
	return n;
}

/* ------------------------------------------------------------------------
 * Person names (used with the company key to match leads)
 * ------------------------------------------------------------------------ */

static const char *const honorific_suffixes[] = {"様", "殿", "さま", NULL};
static const char *const titles[] = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", NULL};

size_t
lm_name_key(uint32_t *c, size_t n)
{
	size_t		b = 0;
	size_t		e;

	n = fold_for_names(c, n);
	e = n;
	for (;;)
	{
		size_t		k;
		size_t		ws, we;
		const char *const *t;
		int			changed = 0;

		while (b < e && lm_is_separator(c[b]))
			b++;
		while (e > b && lm_is_separator(c[e - 1]))
			e--;
		if (b >= e)
			break;
		if ((k = longest_suffix(c, b, e, honorific_suffixes)) > 0 && k < e - b)
		{
			e -= k;
			continue;
		}
		/* a title word, when a name follows it */
		if (next_word(c, b, e, &ws, &we) && we < e)
			for (t = titles; *t && !changed; t++)
				if (word_is(c, ws, we, *t, strlen(*t)))
				{
					b = we;
					changed = 1;
				}
		if (!changed)
			break;
	}
	n = compact_words(c, b, e);
	if (key_in_list(c, n, placeholders) || only_long_vowels(c, n))
		return 0;
	return n;
}

/* ------------------------------------------------------------------------
 * E-mail addresses
 * ------------------------------------------------------------------------ */

static int
is_space_or_control(uint32_t c)
{
	return c <= 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 ||
		c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

static size_t
utf8_length(const uint32_t *c, size_t n)
{
	size_t		bytes = 0;
	size_t		i;

	for (i = 0; i < n; i++)
		bytes += c[i] < 0x80 ? 1 : c[i] < 0x800 ? 2 : c[i] < 0x10000 ? 3 : 4;
	return bytes;
}

/*
 * Trimmed, "mailto:" and "Name <...>" unwrapped, lower-cased, the domain's
 * ideographic full stops made dots (UTS #46 label separators) and its
 * trailing root dot dropped.  Not an address (no key): no or several "@",
 * an empty local part, a domain without a dot or with an empty label,
 * whitespace or one of <>()[],;:\" inside, more than 254 bytes.
 * Deliberately not folded: dots and +tags in the local part (Gmail ignores
 * them, most providers do not), googlemail.com vs gmail.com, punycode vs
 * Unicode domains.
 */
size_t
lm_email_key(uint32_t *c, size_t n)
{
	size_t		b = 0;
	size_t		e;
	size_t		i;
	size_t		at = 0;
	int			ats = 0;
	size_t		j;

	n = lm_prefold(c, n);
	for (i = 0; i < n; i++)
		if (c[i] >= 'A' && c[i] <= 'Z')
			c[i] += 'a' - 'A';
	e = n;
	while (b < e && is_space_or_control(c[b]))
		b++;
	while (e > b && is_space_or_control(c[e - 1]))
		e--;
	if (match_lit(c, b, e, "mailto:"))
		b += 7;
	/* Taro Yamada <taro@example.jp> */
	if (e > b && c[e - 1] == '>')
	{
		size_t		lt = e - 1;

		while (lt > b && c[lt - 1] != '<')
			lt--;
		if (lt > b)
		{
			b = lt;
			e = e - 1;
		}
	}
	while (b < e && is_space_or_control(c[b]))
		b++;
	while (e > b && is_space_or_control(c[e - 1]))
		e--;

	for (i = b; i < e; i++)
	{
		uint32_t	ch = c[i];

		if (is_space_or_control(ch) || ch == '<' || ch == '>' || ch == '(' ||
			ch == ')' || ch == '[' || ch == ']' || ch == ',' || ch == ';' ||
			ch == ':' || ch == '\\' || ch == '"')
			return 0;
		if (ch == '@')
		{
			ats++;
			at = i;
		}
	}
	if (ats != 1 || at == b || at + 1 >= e)
		return 0;

	/* the domain: 。．｡ are label separators; one trailing dot is the root */
	for (i = at + 1; i < e; i++)
		if (c[i] == 0x3002 || c[i] == 0xFF0E || c[i] == 0xFF61)
			c[i] = '.';
	if (c[e - 1] == '.')
		e--;
	{
		int			dots = 0;
		uint32_t	prev = '@';

		for (i = at + 1; i < e; i++)
		{
			if (c[i] == '.')
			{
				if (prev == '.' || prev == '@')
					return 0;
				dots++;
			}
			prev = c[i];
		}
		if (dots == 0 || prev == '.' || prev == '@')
			return 0;
	}

	j = 0;
	for (i = b; i < e; i++)
		c[j++] = c[i];
	if (utf8_length(c, j) > LM_EMAIL_MAX_KEY)
		return 0;
	return j;
}

/* ------------------------------------------------------------------------
 * Phone numbers
 * ------------------------------------------------------------------------ */

typedef struct phone_region
{
	const char *code;			/* ISO 3166-1 alpha-2 */
	const char *cc;				/* country calling code */
	char		trunk;			/* national trunk prefix digit, 0 if none */
	const char *intl;			/* international call prefix, NULL: not parsed */
	int			nsn_min;		/* national significant number length */
	int			nsn_max;
} phone_region;

/* keep in code order; lm_phone_regions() lists them in the error hint */
static const phone_region phone_regions[] = {
	{"AU", "61", '0', "0011", 9, 9},
	{"CA", "1", '1', "011", 10, 10},
	{"DE", "49", '0', "00", 6, 13},
	{"FR", "33", '0', "00", 9, 9},
	{"GB", "44", '0', "00", 9, 10},
	{"HK", "852", 0, NULL, 8, 8},
	{"JP", "81", '0', "010", 9, 10},
	{"KR", "82", '0', NULL, 8, 10},
	{"SG", "65", 0, NULL, 8, 8},
	{"TW", "886", '0', NULL, 8, 9},
	{"US", "1", '1', "011", 10, 10},
	{NULL, NULL, 0, NULL, 0, 0}
};

const char *
lm_phone_regions(void)
{
	return "AU, CA, DE, FR, GB, HK, JP, KR, SG, TW, US";
}

static const phone_region *
find_region(const char *code)
{
	const phone_region *r;

	if (code == NULL || strlen(code) != 2)
		return NULL;
	for (r = phone_regions; r->code; r++)
	{
		char		a = code[0];
		char		b = code[1];

		if (a >= 'a' && a <= 'z')
			a -= 'a' - 'A';
		if (b >= 'a' && b <= 'z')
			b -= 'a' - 'A';
		if (a == r->code[0] && b == r->code[1])
			return r;
	}
	return NULL;
}

/* Japanese national significant number (without the trunk 0) */
static int
jp_nsn_ok(const char *d, size_t len)
{
	if (len < 9 || len > 10 || d[0] == '0')
		return 0;
	/* 11-digit domestic numbers: 020, 050, 060, 070, 080, 090, 0800 */
	if (d[1] == '0' && strchr("256789", d[0]) != NULL)
		return len == 10;
	return len == 9;
}

/* North American numbering plan: NXX-NXX-XXXX */
static int
nanp_nsn_ok(const char *d, size_t len)
{
	return len == 10 && d[0] >= '2' && d[3] >= '2';
}

static int
nsn_ok(const phone_region *r, const char *d, size_t len)
{
	if (strcmp(r->cc, "81") == 0)
		return jp_nsn_ok(d, len);
	if (strcmp(r->cc, "1") == 0)
		return nanp_nsn_ok(d, len);
	return (int) len >= r->nsn_min && (int) len <= r->nsn_max && d[0] != '0';
}

static lm_phone_result
emit(char out[LM_PHONE_KEY_SIZE], const char *cc, const char *nsn, size_t nsn_len)
{
	size_t		cl = strlen(cc);

	if (cl + nsn_len > 15)
		return LM_PHONE_NO_KEY;
	out[0] = '+';
	memcpy(out + 1, cc, cl);
	memcpy(out + 1 + cl, nsn, nsn_len);
	out[1 + cl + nsn_len] = '\0';
	return LM_PHONE_KEY;
}

/* digits of a number with its country code, as written after "+" */
static lm_phone_result
international(const char *d, size_t len, char out[LM_PHONE_KEY_SIZE])
{
	const phone_region *r;
	const phone_region *best = NULL;

	if (len == 0 || d[0] == '0')
		return LM_PHONE_NO_KEY;
	/* a country we know: check its rules ("+81 03-..." drops the trunk 0) */
	for (r = phone_regions; r->code; r++)
	{
		size_t		cl = strlen(r->cc);

		if (len > cl && strncmp(d, r->cc, cl) == 0 && (best == NULL || cl > strlen(best->cc)))
			best = r;
	}
	if (best != NULL)
	{
		size_t		cl = strlen(best->cc);
		const char *nsn = d + cl;
		size_t		nl = len - cl;

		if (best->trunk == '0' && nl > 0 && nsn[0] == '0')
		{
			nsn++;
			nl--;
		}
		if (!nsn_ok(best, nsn, nl))
			return LM_PHONE_NO_KEY;
		return emit(out, best->cc, nsn, nl);
	}
	/* elsewhere: trust the digits, within E.164's length */
	if (len < 7 || len > 15)
		return LM_PHONE_NO_KEY;
	return emit(out, "", d, len);
}

/* labels people put before the number on cards and forms */
static const char *const phone_labels[] = {
	"tel", "phone", "ph", "mobile", "mob", "cell", "t", "m",
	"電話番号", "電話", "携帯電話", "携帯", "代表", "℡", "☎", "☏",
	NULL
};

/* what ends the number: an extension or a remark */
static const char *const phone_trailers[] = {
	"ext", "ex", "x", "#", "内線", "内", "代表", "代", "直通", "直",
	"(代", "(内", "(直", "〜", "~",
	NULL
};

static int
phone_separator(uint32_t c)
{
	return c == ' ' || c == '\t' || c == '-' || c == '.' || c == '/' ||
		c == '(' || c == ')' || c == ':' || c == 0xA0 ||
		(c >= 0x2010 && c <= 0x2015) || c == 0x2212 || c == 0x2500 ||
		c == 0x3000 || c == 0x30FC || c == 0x30FB || c == 0xFF70 ||
		c == 0xFF0D || c == 0xFF0E || c == 0xFF0F || c == 0xFF08 ||
		c == 0xFF09 || c == 0xFF1A || c == 0xFF65 || c == 0xFE63;
}

static uint32_t
phone_fold(uint32_t c)
{
	if (c >= 0xFF10 && c <= 0xFF19)
		return '0' + (c - 0xFF10);
	if (c == 0xFF0B)
		return '+';
	if (c == 0xFF03)
		return '#';
	if (c == 0xFF5E)
		return '~';
	if (c >= 'A' && c <= 'Z')
		return c + ('a' - 'A');
	if (c >= 0xFF21 && c <= 0xFF3A)
		return c - 0xFF21 + 'a';
	if (c >= 0xFF41 && c <= 0xFF5A)
		return c - 0xFF41 + 'a';
	return c;
}

/* does the (folded) text at i start with one of list? returns its length */
static size_t
phone_word(const uint32_t *c, size_t i, size_t n, const char *const *list)
{
	uint32_t	buf[8];
	size_t		k;
	size_t		best = 0;

	for (k = 0; k < 8 && i + k < n; k++)
		buf[k] = phone_fold(c[i + k]);
	for (; *list; list++)
	{
		size_t		m = match_lit(buf, 0, k, *list);

		if (m > best)
		{
			/* an ASCII label must end there: "tel" but not "telephone" */
			if (i + m < n && (unsigned char) (*list)[0] < 0x80 &&
				phone_fold(c[i + m]) >= 'a' &&
				phone_fold(c[i + m]) <= 'z')
				continue;
			best = m;
		}
	}
	return best;
}

lm_phone_result
lm_phone_key(const uint32_t *c, size_t n, const char *region, char out[LM_PHONE_KEY_SIZE])
{
	const phone_region *r = find_region(region);
	char		d[LM_PHONE_MAX_INPUT + 1];
	size_t		nd = 0;
	int			plus = 0;
	size_t		i = 0;

	out[0] = '\0';
	if (r == NULL)
		return LM_PHONE_BAD_REGION;
	if (n > LM_PHONE_MAX_INPUT)
		return LM_PHONE_NO_KEY;

	while (i < n)
	{
		uint32_t	ch = phone_fold(c[i]);
		size_t		k;

		if (ch >= '0' && ch <= '9')
		{
			d[nd++] = (char) ch;
			i++;
		}
		else if (ch == '+')
		{
			if (plus || nd > 0)
				return LM_PHONE_NO_KEY;
			plus = 1;
			i++;
		}
		else if (ch == '(' && plus && nd > 0 && i + 2 < n &&
				 phone_fold(c[i + 1]) == '0' && phone_fold(c[i + 2]) == ')')
			i += 3;				/* +44 (0)20 ...: the trunk prefix, shown */
		else if (phone_separator(ch) || lm_is_ignorable(ch))
			i++;
		else if (nd == 0 && !plus && (k = phone_word(c, i, n, phone_labels)) > 0)
			i += k;
		else if (nd > 0 && phone_word(c, i, n, phone_trailers) > 0)
			break;				/* extension or remark: the rest is not the number */
		else
			return LM_PHONE_NO_KEY;
	}
	if (nd == 0)
		return LM_PHONE_NO_KEY;
	d[nd] = '\0';

	if (plus)
		return international(d, nd, out);
	if (r->intl && strncmp(d, r->intl, strlen(r->intl)) == 0)
		return international(d + strlen(r->intl), nd - strlen(r->intl), out);
	if (r->trunk != 0)
	{
		if (d[0] == r->trunk)
		{
			if (!nsn_ok(r, d + 1, nd - 1))
				return LM_PHONE_NO_KEY;
			return emit(out, r->cc, d + 1, nd - 1);
		}
		/* North America: the trunk 1 is optional */
		if (strcmp(r->cc, "1") == 0 && nsn_ok(r, d, nd))
			return emit(out, r->cc, d, nd);
		return LM_PHONE_NO_KEY;
	}
	if (!nsn_ok(r, d, nd))
		return LM_PHONE_NO_KEY;
	return emit(out, r->cc, d, nd);
}

/* ------------------------------------------------------------------------
 * Similarity (duplicate candidates)
 * ------------------------------------------------------------------------ */

double
lm_key_similarity(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
				  unsigned char *used)
{
	size_t		i;
	size_t		j;
	size_t		common = 0;

	if (na < 2 || nb < 2)
		return (na == nb && (na == 0 || a[0] == b[0])) ? 1.0 : 0.0;
	memset(used, 0, nb);
	for (i = 0; i + 1 < na; i++)
		for (j = 0; j + 1 < nb; j++)
			if (!used[j] && a[i] == b[j] && a[i + 1] == b[j + 1])
			{
				used[j] = 1;
				common++;
				break;
			}
	return 2.0 * (double) common / (double) ((na - 1) + (nb - 1));
}
