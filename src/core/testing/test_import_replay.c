/*
 * test_import_replay.c
 *		Unit tests of the import replay (../import_replay.c): upsert_lead()'s
 *		rules one by one on hand-made lists, then seeded random lists
 *		against the slow reference formulation (import_reference.h), and the
 *		error paths (duplicate ids, a failed allocation leaves nothing).
 */
#include <stdint.h>
#include <stdlib.h>

#include "import_reference.h"
#include "tap.h"

static ImportStr
S(const char *s)
{
	return (ImportStr) {s, s ? strlen(s) : 0};
}

static TestCtx ctx;
static ImportResult res;

static ImportError
run(const ImportRow *rows, int nrows, const ImportLead *leads, int nleads,
	const ImportLink *links, int nlinks, const ImportStr *current)
{
	import_result_free(&test_hooks, &ctx, &res);
	memset(&ctx, 0, sizeof(ctx));
	ctx.fail_after = -1;
	ctx.current = current;
	return import_replay(rows, nrows, leads, nleads, links, nlinks, &test_hooks, &ctx, &res);
}

#define EMAIL	IMPORT_BIT(IMPORT_EMAIL)
#define NAME	IMPORT_BIT(IMPORT_NAME)
#define COMPANY	IMPORT_BIT(IMPORT_COMPANY)
#define PHONE	IMPORT_BIT(IMPORT_PHONE)
#define SOURCE	IMPORT_BIT(IMPORT_SOURCE)
#define XID		IMPORT_BIT(IMPORT_EXTERNAL_ID)

int
main(void)
{
	ImportLead	leads[4];
	ImportRow	rows[6];
	ImportLink	links[2];
	ImportStr	current[12];
	uint32_t	a1 = 1,
				a2 = 2,
				a3 = 3;
	uint64_t	rng = 0x5eed;
	int			i,
				bad;

	memset(leads, 0, sizeof(leads));
	memset(rows, 0, sizeof(rows));
	memset(current, 0, sizeof(current));

	/* two existing leads share an e-mail key: the oldest (lowest id) wins */
	leads[0] = (ImportLead) {.id = 20, .present = EMAIL, .email_key = S("e"), .attributes = &a1};
	leads[1] = (ImportLead) {.id = 10, .present = EMAIL | NAME, .email_key = S("e"),
		.name_key = S("n"), .attributes = &a1};
	rows[0] = (ImportRow) {.id = 1, .present = EMAIL | PHONE, .email_key = S("e"), .phone_key = S("p")};
	current[3] = S("e");
	TAP_OK(run(rows, 1, leads, 2, NULL, 0, current) == IMPORT_OK, "e-mail match runs");
	TAP_OK(res.rows[0].lead == 10 && res.rows[0].how == IMPORT_ON_EMAIL,
		   "e-mail: the oldest live lead wins (got %lld)", (long long) res.rows[0].lead);
	TAP_OK(res.rows[0].fills == PHONE, "a match fills only the empty fields");
	TAP_OK(res.nleads == 1 && res.leads[0].ref == 10 && res.leads[0].filled_by[IMPORT_PHONE] == 0 &&
		   res.leads[0].filled_by[IMPORT_EMAIL] == -1, "the lead filled, and by which row");
	TAP_OK(ctx.asked == 1, "current keys asked once, for the updated lead only");

	/* phone: names must not contradict; a lead without a name matches any */
	leads[0] = (ImportLead) {.id = 10, .present = PHONE | NAME, .phone_key = S("p"), .name_key = S("x")};
	leads[1] = (ImportLead) {.id = 20, .present = PHONE, .phone_key = S("p")};
	rows[0] = (ImportRow) {.id = 1, .present = PHONE | NAME, .phone_key = S("p"), .name_key = S("y")};
	rows[1] = (ImportRow) {.id = 2, .present = PHONE, .phone_key = S("p")};
	run(rows, 2, leads, 2, NULL, 0, current);
	TAP_OK(res.rows[0].lead == 20 && res.rows[0].how == IMPORT_ON_PHONE,
		   "phone: another person's name is passed over (got %lld)", (long long) res.rows[0].lead);
	TAP_OK(res.rows[1].lead == 10, "phone without a name: the oldest lead");

	/* company + name; nothing to match on; a new lead found by a later row */
	rows[0] = (ImportRow) {.id = 5, .present = COMPANY | NAME | SOURCE, .company_key = S("c"), .name_key = S("n"), .attributes = &a2};
	rows[1] = (ImportRow) {.id = 6, .present = COMPANY, .company_key = S("c")};
	rows[2] = (ImportRow) {.id = 7, .present = COMPANY | NAME | EMAIL, .company_key = S("c"),
		.name_key = S("n"), .email_key = S("m"), .attributes = &a1};
	rows[3] = (ImportRow) {.id = 8, .present = EMAIL, .email_key = S("m")};
	run(rows, 4, NULL, 0, NULL, 0, current);
	TAP_OK(res.rows[0].lead == -1 && res.rows[0].how == IMPORT_CREATED &&
		   res.rows[0].fills == (COMPANY | NAME | SOURCE), "no match: the first new lead, with all it has");
	TAP_OK(res.rows[1].rejected, "company without a name: nothing to match on");
	TAP_OK(res.rows[2].lead == -1 && res.rows[2].how == IMPORT_ON_COMPANY_NAME && res.rows[2].fills == EMAIL,
		   "company + name finds the new lead and fills its e-mail");
	TAP_OK(res.rows[3].lead == -1 && res.rows[3].how == IMPORT_ON_EMAIL && res.rows[3].fills == 0,
		   "the e-mail the list filled is found by a later row");
	TAP_OK(res.nleads == 1 && *(const uint32_t *) res.leads[0].attributes == 3 &&
		   res.leads[0].filled_by[IMPORT_EMAIL] == 2, "attributes merged; e-mail filled by row 2");

	/* rows are replayed in id order whatever the input order */
	rows[0] = (ImportRow) {.id = 9, .present = EMAIL, .email_key = S("q")};
	rows[1] = (ImportRow) {.id = 3, .present = EMAIL | NAME, .email_key = S("q")};
	run(rows, 2, NULL, 0, NULL, 0, current);
	TAP_OK(res.rows[1].lead == -1 && res.rows[0].lead == -1 && res.rows[0].how == IMPORT_ON_EMAIL,
		   "the row with the lower id creates the lead");

	/* system ids and external ids; a hidden target is matched, never updated */
	links[0] = (ImportLink) {.system = S("crm"), .id = S("7"), .lead_id = 99};
	links[1] = (ImportLink) {.system = {NULL, 0}, .id = S("X"), .lead_id = 98};
	rows[0] = (ImportRow) {.id = 1, .present = EMAIL, .email_key = S("z"), .system = S("crm"), .system_id = S("7")};
	rows[1] = (ImportRow) {.id = 2, .present = EMAIL, .email_key = S("z"), .external_id = S("X")};
	rows[2] = (ImportRow) {.id = 3, .present = PHONE, .phone_key = S("w"), .system = S("crm"), .system_id = S("8")};
	rows[3] = (ImportRow) {.id = 4, .present = 0, .system = S("crm"), .system_id = S("8")};
	run(rows, 4, NULL, 0, links, 2, current);
	TAP_OK(res.rows[0].lead == 99 && res.rows[0].how == IMPORT_ON_SYSTEM_ID && res.rows[0].fills == 0,
		   "a known system id: that lead, nothing filled");
	TAP_OK(res.rows[1].lead == 98 && res.rows[1].how == IMPORT_ON_EXTERNAL_ID && res.rows[1].fills == 0,
		   "external id of a lead the caller cannot read: matched, not updated");
	TAP_OK(res.rows[3].lead == -1 && res.rows[3].how == IMPORT_ON_SYSTEM_ID,
		   "a system id seen earlier in the list names the lead it went to");
	TAP_OK(res.nleads == 1, "only the new lead is written");

	/* external id filled only when no other lead has it */
	leads[0] = (ImportLead) {.id = 10, .present = EMAIL, .email_key = S("e")};
	leads[1] = (ImportLead) {.id = 20, .present = EMAIL | XID, .email_key = S("f")};
	links[0] = (ImportLink) {.system = {NULL, 0}, .id = S("X"), .lead_id = 20};
	rows[0] = (ImportRow) {.id = 1, .present = EMAIL, .email_key = S("e"), .external_id = S("Y")};
	rows[1] = (ImportRow) {.id = 2, .present = 0, .external_id = S("Y")};
	current[0] = S("e");
	run(rows, 2, leads, 2, links, 1, current);
	TAP_OK(res.rows[0].lead == 10 && res.rows[0].fills == XID, "a free external id is filled");
	TAP_OK(res.rows[1].lead == 10 && res.rows[1].how == IMPORT_ON_EXTERNAL_ID,
		   "and found by the next row");

	/* stale stored keys: the lead_keys trigger recomputes them on the update */
	leads[0] = (ImportLead) {.id = 10, .present = EMAIL, .email_key = S("old"), .attributes = &a3};
	current[0] = S("new");
	rows[0] = (ImportRow) {.id = 1, .present = EMAIL | PHONE, .email_key = S("old"), .phone_key = S("p")};
	rows[1] = (ImportRow) {.id = 2, .present = EMAIL, .email_key = S("old")};
	rows[2] = (ImportRow) {.id = 3, .present = EMAIL, .email_key = S("new")};
	run(rows, 3, leads, 1, NULL, 0, current);
	TAP_OK(res.rows[0].lead == 10 && res.rows[1].lead == -1 && res.rows[2].lead == 10,
		   "after an update a lead is found by its recomputed key only");

	/* errors */
	rows[1].id = 1;
	TAP_OK(run(rows, 2, NULL, 0, NULL, 0, current) == IMPORT_DUPLICATE_ROW && ctx.live == 0,
		   "two rows with one id: an error, nothing allocated");
	leads[1].id = 10;
	TAP_OK(run(rows, 1, leads, 2, NULL, 0, current) == IMPORT_DUPLICATE_LEAD && ctx.live == 0,
		   "two leads with one id: an error, nothing allocated");
	TAP_OK(run(rows, 0, NULL, 0, NULL, 0, current) == IMPORT_OK && res.nleads == 0,
		   "an empty list");
	for (i = 0, bad = 0; i < 12; i++)
	{
		ImportError e;

		import_result_free(&test_hooks, &ctx, &res);
		memset(&ctx, 0, sizeof(ctx));
		ctx.fail_after = i;
		ctx.current = current;
		e = import_replay(rows, 1, leads, 1, NULL, 0, &test_hooks, &ctx, &res);
		if (e == IMPORT_NO_MEMORY ? ctx.live != 0 : e != IMPORT_OK)
			bad++;
	}
	TAP_OK(bad == 0, "a failed allocation at any point leaves nothing allocated");
	import_result_free(&test_hooks, &ctx, &res);

	/* seeded random lists against the reference */
	for (i = 0, bad = 0; i < 3000; i++)
	{
		static RefInput in;
		uint8_t		buf[600];
		size_t		len = 3 + 5 * 16 + 3 * 8 + 4 * (1 + i % 120);
		size_t		j;
		const char *why;

		for (j = 0; j < len; j++)
		{
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			buf[j] = (uint8_t) rng;
		}
		buf[2] &= ~7;			/* no forced errors here */
		if (!ref_decode(buf, len, &in))
			continue;
		why = ref_check(&in);
		if (why != NULL)
		{
			if (bad++ == 0)
				printf("# input %d: %s\n", i, why);
		}
	}
	TAP_OK(bad == 0, "3000 seeded random lists: the replay equals the reference (%d differ)", bad);

	printf("1..%d\n", tap_count);
	return tap_failed != 0;
}
