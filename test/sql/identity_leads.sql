-- covers: lead match keys (trigger, key_version, rebuild_keys), upsert_lead, external ids, lead_import, merge_leads (stages, history, activities, idempotence, errors), duplicate_candidates
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- keys are maintained by the trigger
INSERT INTO leadmgmt.lead (email, name, company, phone, created_at) VALUES
	('Taro.Yamada@Example.JP', '山田 太郎', 'トヨタ自動車株式会社', '03-1234-5678', '2025-01-01'),
	(NULL, NULL, '株式会社', 'n/a', '2025-01-02');
SELECT id, email_key, company_key, phone_key, key_version FROM leadmgmt.lead ORDER BY id;
UPDATE leadmgmt.lead SET company = '(株)デンソー', phone = '+81 90 1111 2222' WHERE id = 2;
-- keys cannot be set by hand
UPDATE leadmgmt.lead SET email_key = 'forged@example.jp', key_version = 0 WHERE id = 1;
SELECT id, email_key, company_key, phone_key, key_version FROM leadmgmt.lead ORDER BY id;

-- rebuild_keys() touches only leads whose keys are outdated
SELECT leadmgmt.rebuild_keys() AS rebuilt_when_current;
ALTER TABLE leadmgmt.lead DISABLE TRIGGER lead_keys;
UPDATE leadmgmt.lead SET company_key = 'stale', key_version = 0 WHERE id = 2;
ALTER TABLE leadmgmt.lead ENABLE TRIGGER lead_keys;
SELECT leadmgmt.rebuild_keys() AS rebuilt_after_drift;
SELECT id, company_key, key_version FROM leadmgmt.lead ORDER BY id;

-- upsert: by e-mail key, then phone key (names must agree), then company + name
SELECT * FROM leadmgmt.upsert_lead(email => 'ＴＡＲＯ.yamada@example.jp', phone => '090-9999-0000',
                                   source => 'seminar');
SELECT * FROM leadmgmt.upsert_lead(name => 'ヤマダ タロウ', phone => '０３－１２３４－５６７８');
SELECT * FROM leadmgmt.upsert_lead(name => '山田太郎', phone => '03-1234-5678');
SELECT * FROM leadmgmt.upsert_lead(name => '山田 太郎 様', company => 'トヨタ自動車（株）',
                                   attributes => '{"industry": "automotive"}');
SELECT * FROM leadmgmt.upsert_lead(email => 'hanako@example.jp', name => '佐藤 花子',
                                   company => 'Toyota Motor Corp.', origin => 'inbound',
                                   external_id => 'crm-1');
SELECT * FROM leadmgmt.upsert_lead(external_id => 'crm-1', phone => '080-1234-5678');
-- gaps were filled, nothing overwritten
SELECT id, email, name, company, phone, source, origin, external_id, attributes, stage
  FROM leadmgmt.lead ORDER BY id;
-- nothing to match on
SELECT * FROM leadmgmt.upsert_lead(email => 'n/a', company => '株式会社');

-- external ids of other systems
SELECT leadmgmt.link_external_id(1, 'salesforce', '00Q1') AS linked;
SELECT leadmgmt.link_external_id(1, 'salesforce', '00Q1') AS linked_again;
SELECT leadmgmt.link_external_id(2, 'salesforce', '00Q1');
SELECT leadmgmt.find_lead('salesforce', '00Q1') AS found, leadmgmt.find_lead('salesforce', 'nope') AS not_found;

-- a campaign list: COPY into lead_import, import in one call
COPY leadmgmt.lead_import (batch, email, name, company, phone, kind, occurred_at, detail, system, system_id) FROM stdin;
expo-2025	taro.yamada@example.jp	山田 太郎	トヨタ	\N	exhibition_card	2025-03-01 10:00+09	Japan IT Week	eight	E1
expo-2025	\N	鈴木 一郎	ｽｽﾞｷ(株)	０４５－１１１－２２２２	exhibition_card	2025-03-01 11:00+09	Japan IT Week	eight	E2
expo-2025	\N	鈴木一郎	スズキ株式会社	\N	exhibition_card	2025-03-02 11:00+09	Japan IT Week	eight	E3
expo-2025	n/a	\N	なし	-	exhibition_card	2025-03-02 12:00+09	Japan IT Week	\N	\N
\.
SELECT * FROM leadmgmt.import_leads('expo-2025');
SELECT id, lead_id, matched, matched_on, error IS NOT NULL AS rejected FROM leadmgmt.lead_import ORDER BY id;
SELECT system, external_id, lead_id FROM leadmgmt.lead_external_id ORDER BY 1, 2;
SELECT * FROM leadmgmt.import_leads('expo-2025') AS second_run;
SELECT l.id, a.kind, a.detail, a.occurred_at AT TIME ZONE 'Asia/Tokyo' AS at_jst
  FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id ORDER BY a.id;

-- duplicate candidates
INSERT INTO leadmgmt.lead (email, name, company, phone) VALUES
	('ichiro@suzuki.example', '鈴木 一郎', 'スズキ', NULL),
	(NULL, '山田 太郎', 'トヨタ自動車販売株式会社', NULL),
	(NULL, '田中 次郎', 'スズキ', '045-111-2222'),
	('TARO.YAMADA@example.jp ', NULL, NULL, NULL);
SELECT * FROM leadmgmt.duplicate_candidates ORDER BY lead_a, lead_b;

-- merge: history in several stages on both sides
SELECT (leadmgmt.set_stage(1, 'mql', 'score', '2025-02-01')).stage;
SELECT (leadmgmt.set_stage(4, 'sgl', 'outbound call')).stage;
SELECT (leadmgmt.set_stage(4, 'sql', 'opportunity')).stage;
SELECT leadmgmt.track(4, 'call', '2025-03-06', 'first call') IS NOT NULL AS tracked;
SELECT id, stage, email, name, company, phone, attributes FROM leadmgmt.lead WHERE id IN (1, 4) ORDER BY id;
SELECT leadmgmt.merge_leads(1, 4) AS kept;
-- keep took the more advanced stage, with one 'merge' row; the duplicate's history stayed
SELECT lead_id, from_stage, to_stage, reason FROM leadmgmt.stage_history
 WHERE lead_id IN (1, 4) ORDER BY lead_id, id;
SELECT id, stage, merged_into, email, name, company, phone FROM leadmgmt.lead WHERE id IN (1, 4) ORDER BY id;
SELECT lead_id, count(*) FROM leadmgmt.activity WHERE lead_id IN (1, 4) GROUP BY 1 ORDER BY 1;
SELECT keep_id, duplicate_id, activities_moved, stage_before, stage_after, duplicate_stage FROM leadmgmt.lead_merge;
-- idempotent; activities and upserts for the dropped lead land on the kept one
SELECT leadmgmt.merge_leads(1, 4) AS kept_again;
SELECT leadmgmt.track(4, 'visit', '2025-04-01') IS NOT NULL AS tracked;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at) VALUES (4, 'email_open', '2025-04-02') RETURNING lead_id;
SELECT * FROM leadmgmt.upsert_lead(email => 'ichiro@suzuki.example');
SELECT count(*) AS left_on_dropped_lead FROM leadmgmt.activity WHERE lead_id = 4;
-- the kept lead is more advanced: its stage stays; the merge is still noted (from_stage = to_stage)
SELECT leadmgmt.merge_leads(1, 3) AS kept;
SELECT count(*) AS merge_rows FROM leadmgmt.stage_history WHERE lead_id = 1 AND reason = 'merge';
-- a chain: leads merged into a lead that is merged later point at the final one
SELECT leadmgmt.merge_leads(5, 6) AS kept;
SELECT leadmgmt.merge_leads(2, 5) AS kept;
SELECT id, merged_into, leadmgmt.lead_resolve(id) AS resolves_to FROM leadmgmt.lead WHERE id IN (5, 6) ORDER BY id;
-- an activity moved to a merged lead by UPDATE goes on to the lead it stands for (activity_lead_resolve)
UPDATE leadmgmt.activity SET lead_id = 6
 WHERE id = (SELECT max(id) FROM leadmgmt.activity WHERE lead_id = 1) RETURNING lead_id;
-- refusals
SELECT leadmgmt.merge_leads(1, 1);
SELECT leadmgmt.merge_leads(2, 4);
SELECT leadmgmt.merge_leads(4, 2);
SELECT leadmgmt.merge_leads(1, 999);
SELECT leadmgmt.merge_leads(NULL, 1);
SELECT leadmgmt.merge_stage(1, 2);
SELECT system, external_id, lead_id FROM leadmgmt.lead_external_id ORDER BY 1, 2;
-- merged leads leave the candidate list
SELECT * FROM leadmgmt.duplicate_candidates ORDER BY lead_a, lead_b;
