-- covers: set-based import_leads against the row-by-row formulation (find_lead, upsert_lead, link_external_id per row in id order): worked examples, a random list of 3000 rows (fixed seed) with duplicates across e-mail, phone and company variants, Japanese and Western, merged leads, external and system ids, stale keys; import_resolve input checks
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

-- Rows of one list depend on each other: a row fills a lead's empty phone,
-- a later row matches that lead by phone; two rows of a new person make one
-- lead, the first row's fields win.
INSERT INTO leadmgmt.lead (email, name, company) VALUES ('taro@toyota.example.jp', '山田 太郎', 'トヨタ自動車');
COPY leadmgmt.lead_import (email, name, company, phone, attributes, kind, occurred_at) FROM stdin;
TARO@toyota.example.jp	\N	\N	03-1234-5678	{"industry": "automotive"}	exhibition_card	2025-03-01
\N	山田太郎 様	\N	０３－１２３４－５６７８	{"industry": "retail", "employees": 70000}	exhibition_card	2025-03-02
hanako@acme.example	佐藤 花子	Acme, Inc.	\N	{"employees": 50}	seminar_signup	2025-03-03
\N	Sato Hanako	\N	090-1111-2222	\N	seminar_signup	2025-03-03
hanako@acme.example	\N	ACME	090-1111-2222	{"employees": 60, "country": "JP"}	\N	\N
\N	佐藤花子	ACME CORPORATION	\N	\N	seminar_signup	2025-03-04
n/a	\N	株式会社	-	\N	exhibition_card	2025-03-05
\.
SELECT * FROM leadmgmt.import_leads();
SELECT id, lead_id, matched, matched_on, error IS NOT NULL AS rejected FROM leadmgmt.lead_import ORDER BY id;
SELECT id, email, name, company, phone, attributes FROM leadmgmt.lead ORDER BY id;
SELECT lead_id, kind, occurred_at, channel FROM leadmgmt.activity ORDER BY id;

-- The slow formulation: import_leads() as it was, one find_lead() or
-- upsert_lead() call per row in id order (committing every 500 rows, as the
-- advisory locks of thousands of rows would not fit in the lock table).
CREATE PROCEDURE pg_temp.import_rowwise(batch text)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	u record;
	target bigint;
	n integer := 0;
BEGIN
	FOR r IN
		SELECT * FROM leadmgmt.lead_import i
		 WHERE i.imported_at IS NULL AND (import_rowwise.batch IS NULL OR i.batch = import_rowwise.batch)
		 ORDER BY i.id
	LOOP
		target := NULL;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			target := leadmgmt.find_lead(r.system, r.system_id);
		END IF;
		IF target IS NOT NULL THEN
			SELECT target AS lead_id, true AS matched, 'system_id' AS matched_on INTO u;
		ELSIF leadmgmt.normalize_email(r.email) IS NULL AND leadmgmt.normalize_phone(r.phone, 'JP') IS NULL
		      AND (leadmgmt.normalize_company(r.company) IS NULL OR leadmgmt.normalize_name(r.name) IS NULL)
		      AND r.external_id IS NULL THEN
			UPDATE leadmgmt.lead_import i SET imported_at = now(),
			       error = 'nothing to match on: no usable e-mail, phone, company and name, or external id'
			 WHERE i.id = r.id;
			CONTINUE;
		ELSE
			SELECT * INTO u FROM leadmgmt.upsert_lead(r.email, r.name, r.company, r.phone, r.source,
			                                           r.origin, r.external_id, r.attributes);
		END IF;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			PERFORM leadmgmt.link_external_id(u.lead_id, r.system, r.system_id);
		END IF;
		IF r.kind IS NOT NULL THEN
			INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, channel)
			VALUES (u.lead_id, r.kind, COALESCE(r.occurred_at, now()), r.campaign, r.detail, 'import');
		END IF;
		UPDATE leadmgmt.lead_import i
		   SET lead_id = u.lead_id, matched = u.matched, matched_on = u.matched_on, imported_at = now()
		 WHERE i.id = r.id;
		n := n + 1;
		IF n % 500 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END
$$;

-- A generated list.  Persons: Japanese (4 of 5) and Western names, 20
-- companies (Japanese ones with legal forms before or after, (株) ㈱ （株）,
-- half-width kana, old kanji 髙 﨑; Western ones with Inc./Corp./Co., Ltd./
-- LLC, upper and lower case), an e-mail at the company's domain, a direct
-- line, a mobile for some, the company's main line shared by everyone
-- there.  Persons p and p + 320 have the same name and company.
CREATE FUNCTION pg_temp.p_name(p integer, v integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN p % 5 = 0 THEN
		(ARRAY[g || ' ' || f, upper(g || ' ' || f), 'Mr. ' || g || ' ' || f, g || '  ' || f])[1 + v % 4]
	ELSE
		(ARRAY[jf || ' ' || jg, jf || jg, jf || '　' || jg || ' 様', jf || jg || 'さま'])[1 + v % 4]
	END
	  FROM (SELECT (ARRAY['Smith', 'Müller', 'García', 'Brown'])[1 + p % 4] AS f,
	               (ARRAY['John', 'Anna', 'Maria', 'David'])[1 + (p / 4) % 4] AS g,
	               (ARRAY['山田', '田中', '佐藤', '鈴木', '高橋', '伊藤', '渡辺', '中村'])[1 + p % 8] AS jf,
	               (ARRAY['太郎', '花子', '一郎', '美咲', '翔太', '陽菜', '健', 'さくら'])[1 + (p / 8) % 8] AS jg) n
$$;
CREATE FUNCTION pg_temp.p_company(p integer, v integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT CASE WHEN c > 16 THEN
		(ARRAY[n || ' Inc.', n || ', Inc', upper(n) || ' CORPORATION', n || ' Co., Ltd.', lower(n),
		       n || ' LLC', 'The ' || n, n])[1 + v % 8]
	ELSE
		(ARRAY['株式会社' || n, n || '株式会社', '(株)' || n, '㈱' || n, n || '（株）', n,
		       COALESCE(hw, n), ' ' || n || ' '])[1 + v % 8]
	END
	  FROM (SELECT c,
	               (ARRAY['トヨタ自動車', 'ソニーグループ', '日立製作所', 'パナソニック', '富士通', 'キヤノン',
	                      '任天堂', '三菱商事', '髙島屋', '山﨑製パン', 'ヤマト運輸', 'キーエンス', '味の素',
	                      '花王', '資生堂', 'デンソー', 'Acme', 'Globex', 'Initech', 'Umbrella'])[c] AS n,
	               (ARRAY['ﾄﾖﾀ自動車', 'ｿﾆｰｸﾞﾙｰﾌﾟ', NULL, 'ﾊﾟﾅｿﾆｯｸ', NULL, 'ｷﾔﾉﾝ', NULL, NULL, '高島屋',
	                      '山崎製パン', 'ﾔﾏﾄ運輸', 'ｷｰｴﾝｽ', NULL, NULL, NULL, 'ﾃﾞﾝｿｰ'])[c] AS hw
	          FROM (SELECT 1 + (p * 7) % 20 AS c) x) n
$$;
CREATE FUNCTION pg_temp.p_email(p integer, v integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT (ARRAY[e, upper(e), ' ' || e || ' ',
	              translate(e, '0123456789abcdefghijklmnopqrstuvwxyz.@',
	                        '０１２３４５６７８９ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ．＠'),
	              'mailto:' || e, pg_temp.p_name(p, 0) || ' <' || e || '>',
	              split_part(e, '.', 1) || p || '@gmail.example.com'])[1 + v % 7]
	  FROM (SELECT (ARRAY['taro', 'hanako', 'ichiro', 'misaki', 'shota', 'hina', 'ken', 'sakura'])[1 + (p / 8) % 8]
	               || '.' || (ARRAY['yamada', 'tanaka', 'sato', 'suzuki', 'takahashi', 'ito', 'watanabe', 'nakamura'])[1 + p % 8]
	               || p || '@c' || (1 + (p * 7) % 20) || '.example.jp' AS e) x
$$;
-- kind: 0 direct line, 1 mobile, 2 main line (代表)
CREATE FUNCTION pg_temp.p_phone(p integer, kind integer, v integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT (ARRAY[n, translate(n, '0123456789-', '０１２３４５６７８９－'), '+81 ' || substr(n, 2),
	              '(' || split_part(n, '-', 1) || ') ' || split_part(n, '-', 2) || '-' || split_part(n, '-', 3),
	              replace(n, '-', ''), 'TEL: ' || n, n || ' (代表)'])[1 + v % 7]
	  FROM (SELECT CASE kind
	                 WHEN 0 THEN '03-' || (2000 + p) || '-' || lpad(((p * 37) % 10000)::text, 4, '0')
	                 WHEN 1 THEN '090-' || (3000 + p) || '-' || lpad(((p * 53) % 10000)::text, 4, '0')
	                 ELSE '03-5' || lpad((1 + (p * 7) % 20)::text, 3, '0') || '-0000' END AS n) x
$$;

CREATE FUNCTION pg_temp.gen_list(nrows integer, npersons integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	p integer;
	keep bigint;
	dup bigint;
	g integer;
BEGIN
	PERFORM setseed(0.4242);
	-- existing leads: every fifth person, some fields missing
	FOR p IN 0 .. npersons - 1 LOOP
		CONTINUE WHEN p % 5 <> 1;
		INSERT INTO leadmgmt.lead (email, name, company, phone, source, external_id, attributes, created_at)
		VALUES (CASE WHEN p % 3 <> 0 THEN pg_temp.p_email(p, 0) END,
		        CASE WHEN p % 7 <> 0 THEN pg_temp.p_name(p, 0) END,
		        CASE WHEN p % 11 <> 0 THEN pg_temp.p_company(p, 0) END,
		        CASE WHEN p % 2 = 0 THEN pg_temp.p_phone(p, 0, 0) END,
		        CASE WHEN p % 4 = 1 THEN 'web_form' END,
		        CASE WHEN p % 6 = 1 THEN 'crm-' || p END,
		        CASE WHEN p % 4 = 1 THEN jsonb_build_object('industry', 'it', 'employees', p) ELSE '{}' END,
		        '2024-06-01')
		RETURNING id INTO keep;
		IF p % 9 = 1 THEN
			PERFORM leadmgmt.link_external_id(keep, 'eight', 'E' || p);
		END IF;
		-- every 25th has a duplicate merged into it, with its own ids
		IF p % 25 = 1 THEN
			INSERT INTO leadmgmt.lead (email, name, external_id, created_at)
			VALUES (pg_temp.p_email(p, 6), pg_temp.p_name(p, 1), 'dup-' || p, '2024-07-01')
			RETURNING id INTO dup;
			INSERT INTO leadmgmt.lead_external_id (system, external_id, lead_id) VALUES ('salesforce', 'SF' || p, dup);
			PERFORM leadmgmt.merge_leads(keep, dup);
		END IF;
	END LOOP;
	-- the reception of every third company: main line, no name
	INSERT INTO leadmgmt.lead (company, phone, created_at)
	SELECT pg_temp.p_company(c, 5), pg_temp.p_phone(c, 2, 0), '2024-05-01'
	  FROM generate_series(0, 19) c WHERE c % 3 = 0;
	-- keys built by an older key version (before rebuild_keys())
	ALTER TABLE leadmgmt.lead DISABLE TRIGGER lead_keys;
	UPDATE leadmgmt.lead SET email_key = upper(email_key), key_version = 0 WHERE id % 9 = 4;
	UPDATE leadmgmt.lead SET phone_key = phone_key || '0', key_version = 0 WHERE id % 13 = 5;
	UPDATE leadmgmt.lead SET company_key = company_key || '・', key_version = 0 WHERE id % 11 = 6;
	ALTER TABLE leadmgmt.lead ENABLE TRIGGER lead_keys;

	-- the list: skewed towards some persons, so many appear several times
	FOR g IN 1 .. nrows LOOP
		p := floor(power(random(), 2) * npersons)::integer;
		INSERT INTO leadmgmt.lead_import (batch, email, name, company, phone, source, origin, external_id,
		                                  system, system_id, attributes, kind, occurred_at, campaign, detail)
		VALUES (CASE WHEN g % 3 = 0 THEN 'expo-2025' ELSE 'seminar-2025' END,
		        CASE WHEN random() < 0.03 THEN (ARRAY['n/a', 'なし', '-'])[1 + floor(random() * 3)::int]
		             WHEN random() < 0.7 THEN pg_temp.p_email(p, floor(random() * 7)::int) END,
		        CASE WHEN random() < 0.85 THEN pg_temp.p_name(p, floor(random() * 4)::int) END,
		        CASE WHEN random() < 0.03 THEN '株式会社'
		             WHEN random() < 0.8 THEN pg_temp.p_company(p, floor(random() * 8)::int) END,
		        CASE WHEN random() < 0.5 THEN pg_temp.p_phone(p, (ARRAY[0, 0, 1, 2])[1 + floor(random() * 4)::int],
		                                                      floor(random() * 7)::int) END,
		        (ARRAY[NULL, 'exhibition', 'seminar', 'purchased_list'])[1 + floor(random() * 4)::int],
		        (ARRAY[NULL, 'inbound', 'outbound'])[1 + floor(random() * 3)::int],
		        CASE WHEN random() < 0.06 THEN (ARRAY['crm-', 'dup-'])[1 + floor(random() * 2)::int] || p END,
		        CASE WHEN random() < 0.15 THEN (ARRAY['eight', 'salesforce'])[1 + floor(random() * 2)::int] END,
		        CASE WHEN random() < 0.9 THEN (ARRAY['E', 'SF'])[1 + floor(random() * 2)::int] || p END,
		        CASE WHEN random() < 0.25 THEN jsonb_build_object('industry', (ARRAY['it', 'retail', 'auto'])[1 + floor(random() * 3)::int])
		                                       || CASE WHEN random() < 0.5 THEN jsonb_build_object('source_row', g) ELSE '{}' END END,
		        CASE WHEN random() < 0.9 THEN (ARRAY['exhibition_card', 'seminar_signup', 'seminar_attend'])[1 + floor(random() * 3)::int] END,
		        timestamptz '2025-01-01' + floor(random() * 300) * interval '1 day',
		        'spring-2025', 'row ' || g);
	END LOOP;
END
$$;

-- one run: fresh extension, the same generated data, two imports (one
-- batch, then the rest), the outcome kept in temp tables under the method
CREATE TEMP TABLE out_row (method text, id bigint, lead_id bigint, matched boolean, matched_on text, error text);
CREATE TEMP TABLE out_lead (method text, id bigint, email text, name text, company text, phone text,
	source text, origin text, external_id text, attributes jsonb, stage text, email_key text,
	phone_key text, company_key text, key_version integer, merged_into bigint, fit_score float8,
	grade text, touched boolean);
CREATE TEMP TABLE out_link (method text, system text, external_id text, lead_id bigint);
CREATE TEMP TABLE out_activity (method text, id bigint, lead_id bigint, kind text, occurred_at timestamptz,
	campaign text, detail text, channel text, points float8);
CREATE TEMP TABLE out_history (method text, lead_id bigint, from_stage text, to_stage text, reason text);
CREATE TEMP TABLE out_score (method text, lead_id bigint, score float8);
CREATE TEMP TABLE out_meta (method text, last_existing bigint);
CREATE PROCEDURE pg_temp.run(method text)
LANGUAGE plpgsql AS $$
DECLARE
	generated timestamptz;
BEGIN
	DROP EXTENSION IF EXISTS leadmgmt CASCADE;
	CREATE EXTENSION leadmgmt;
	PERFORM pg_temp.gen_list(3000, 400);
	INSERT INTO out_meta SELECT method, max(l.id) FROM leadmgmt.lead l;
	generated := now();
	COMMIT;
	IF method = 'rowwise' THEN
		CALL pg_temp.import_rowwise('expo-2025');
		CALL pg_temp.import_rowwise(NULL);
	ELSE
		PERFORM leadmgmt.import_leads('expo-2025');
		PERFORM leadmgmt.import_leads();
	END IF;
	INSERT INTO out_row SELECT method, i.id, i.lead_id, i.matched, i.matched_on, i.error
	  FROM leadmgmt.lead_import i;
	INSERT INTO out_lead SELECT method, l.id, l.email, l.name, l.company, l.phone, l.source, l.origin,
	       l.external_id, l.attributes, l.stage, l.email_key, l.phone_key, l.company_key, l.key_version,
	       l.merged_into, l.fit_score, l.grade, l.updated_at > generated
	  FROM leadmgmt.lead l;
	INSERT INTO out_link SELECT method, x.system, x.external_id, x.lead_id FROM leadmgmt.lead_external_id x;
	INSERT INTO out_activity SELECT method, a.id, a.lead_id, a.kind, a.occurred_at, a.campaign, a.detail,
	       a.channel, a.points
	  FROM leadmgmt.activity a;
	INSERT INTO out_history SELECT method, h.lead_id, h.from_stage, h.to_stage, h.reason
	  FROM leadmgmt.stage_history h;
	INSERT INTO out_score SELECT method, l.id, leadmgmt.score(l.id, '2026-01-01') FROM leadmgmt.lead l;
END
$$;
SET client_min_messages = warning;
CALL pg_temp.run('rowwise');
CALL pg_temp.run('setbased');
RESET client_min_messages;

-- what the list holds and how it was matched (both methods)
SELECT method, count(*) AS rows, count(*) FILTER (WHERE error IS NOT NULL) AS rejected,
       count(*) FILTER (WHERE NOT matched) AS created,
       count(*) FILTER (WHERE matched_on = 'system_id') AS system_id,
       count(*) FILTER (WHERE matched_on = 'external_id') AS external_id,
       count(*) FILTER (WHERE matched_on = 'email') AS email,
       count(*) FILTER (WHERE matched_on = 'phone') AS phone,
       count(*) FILTER (WHERE matched_on = 'company_name') AS company_name
  FROM out_row GROUP BY method ORDER BY method;
-- leads before the import, leads the list created and how many rows each got
SELECT method, count(*) FILTER (WHERE id <= m.last_existing) AS existing,
       count(*) FILTER (WHERE id <= m.last_existing AND merged_into IS NOT NULL) AS merged,
       count(*) FILTER (WHERE id <= m.last_existing AND touched) AS existing_updated,
       count(*) FILTER (WHERE id <= m.last_existing AND key_version = 0) AS stale_keys_left,
       count(*) FILTER (WHERE id > m.last_existing) AS created
  FROM out_lead JOIN out_meta m USING (method) GROUP BY method ORDER BY method;
SELECT method, count(*) AS leads_created, count(*) FILTER (WHERE rows > 1) AS with_several_rows,
       max(rows) AS most_rows
  FROM (SELECT method, lead_id, count(*) AS rows FROM out_row JOIN out_meta m USING (method)
         WHERE lead_id > m.last_existing GROUP BY method, lead_id) x
 GROUP BY method ORDER BY method;
-- rows matched to a lead an earlier row of the list created: what a join
-- against the leads as they were would miss
SELECT method, count(*) AS rows_on_lead_created_by_list
  FROM out_row r JOIN out_meta m USING (method)
 WHERE r.matched AND r.lead_id > m.last_existing GROUP BY method ORDER BY method;

-- the same partition of rows into leads (by the first row of each lead, so
-- independent of lead ids), and the same ids too
SELECT count(*) AS rows_compared,
       count(*) FILTER (WHERE a.first_row IS DISTINCT FROM b.first_row) AS different_partition,
       count(*) FILTER (WHERE a.lead_id IS DISTINCT FROM b.lead_id) AS different_lead
  FROM (SELECT id, lead_id, min(id) OVER (PARTITION BY lead_id) AS first_row FROM out_row WHERE method = 'rowwise') a
  FULL JOIN (SELECT id, lead_id, min(id) OVER (PARTITION BY lead_id) AS first_row FROM out_row WHERE method = 'setbased') b
    USING (id);
-- everything else the import writes: no difference either way
SELECT 'rows' AS what,
       (SELECT count(*) FROM (SELECT id, lead_id, matched, matched_on, error FROM out_row WHERE method = 'rowwise'
                              EXCEPT ALL SELECT id, lead_id, matched, matched_on, error FROM out_row WHERE method = 'setbased') x) AS only_rowwise,
       (SELECT count(*) FROM (SELECT id, lead_id, matched, matched_on, error FROM out_row WHERE method = 'setbased'
                              EXCEPT ALL SELECT id, lead_id, matched, matched_on, error FROM out_row WHERE method = 'rowwise') x) AS only_setbased
UNION ALL
SELECT 'leads',
       (SELECT count(*) FROM (SELECT id, email, name, company, phone, source, origin, external_id, attributes, stage, email_key, phone_key, company_key, key_version, merged_into, fit_score, grade, touched FROM out_lead WHERE method = 'rowwise'
                              EXCEPT ALL SELECT id, email, name, company, phone, source, origin, external_id, attributes, stage, email_key, phone_key, company_key, key_version, merged_into, fit_score, grade, touched FROM out_lead WHERE method = 'setbased') x),
       (SELECT count(*) FROM (SELECT id, email, name, company, phone, source, origin, external_id, attributes, stage, email_key, phone_key, company_key, key_version, merged_into, fit_score, grade, touched FROM out_lead WHERE method = 'setbased'
                              EXCEPT ALL SELECT id, email, name, company, phone, source, origin, external_id, attributes, stage, email_key, phone_key, company_key, key_version, merged_into, fit_score, grade, touched FROM out_lead WHERE method = 'rowwise') x)
UNION ALL
SELECT 'external ids',
       (SELECT count(*) FROM (SELECT system, external_id, lead_id FROM out_link WHERE method = 'rowwise'
                              EXCEPT ALL SELECT system, external_id, lead_id FROM out_link WHERE method = 'setbased') x),
       (SELECT count(*) FROM (SELECT system, external_id, lead_id FROM out_link WHERE method = 'setbased'
                              EXCEPT ALL SELECT system, external_id, lead_id FROM out_link WHERE method = 'rowwise') x)
UNION ALL
SELECT 'activities',
       (SELECT count(*) FROM (SELECT id, lead_id, kind, occurred_at, campaign, detail, channel, points FROM out_activity WHERE method = 'rowwise'
                              EXCEPT ALL SELECT id, lead_id, kind, occurred_at, campaign, detail, channel, points FROM out_activity WHERE method = 'setbased') x),
       (SELECT count(*) FROM (SELECT id, lead_id, kind, occurred_at, campaign, detail, channel, points FROM out_activity WHERE method = 'setbased'
                              EXCEPT ALL SELECT id, lead_id, kind, occurred_at, campaign, detail, channel, points FROM out_activity WHERE method = 'rowwise') x)
UNION ALL
SELECT 'stage history',
       (SELECT count(*) FROM (SELECT lead_id, from_stage, to_stage, reason FROM out_history WHERE method = 'rowwise'
                              EXCEPT ALL SELECT lead_id, from_stage, to_stage, reason FROM out_history WHERE method = 'setbased') x),
       (SELECT count(*) FROM (SELECT lead_id, from_stage, to_stage, reason FROM out_history WHERE method = 'setbased'
                              EXCEPT ALL SELECT lead_id, from_stage, to_stage, reason FROM out_history WHERE method = 'rowwise') x);
-- scores: the same up to rounding (scoring folds the rows of one INSERT in
-- lead and time order, the row-by-row import one row at a time, so sums of
-- decayed points may differ in the last bits)
SELECT count(*) AS leads_scored,
       count(*) FILTER (WHERE a.score IS NULL OR b.score IS NULL
                           OR abs(a.score - b.score) > 1e-9 * greatest(1, abs(a.score))) AS different
  FROM (SELECT lead_id, score FROM out_score WHERE method = 'rowwise') a
  FULL JOIN (SELECT lead_id, score FROM out_score WHERE method = 'setbased') b USING (lead_id);

-- attributes that are not a JSON object behave as with upsert_lead(): a
-- new lead keeps them as given, a match with a new key concatenates
-- (jsonb ||), a match with nothing to fill fails looking for keys
SET client_min_messages = warning;
DROP EXTENSION leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set VERBOSITY terse
INSERT INTO leadmgmt.lead_import (batch, email, attributes) VALUES
	('a', 'list@example.jp', '["vip"]'), ('a', 'LIST@example.jp', '{"tier": 1}');
BEGIN;
CALL pg_temp.import_rowwise('a');
SELECT id, email, attributes FROM leadmgmt.lead;
ROLLBACK;
SELECT * FROM leadmgmt.import_leads('a');
SELECT id, email, attributes FROM leadmgmt.lead;
INSERT INTO leadmgmt.lead_import (batch, email, attributes) VALUES ('c', 'list@example.jp', '"gold"');
CALL pg_temp.import_rowwise('c');
SELECT * FROM leadmgmt.import_leads('c');
\set VERBOSITY default
DELETE FROM leadmgmt.lead_import WHERE batch = 'c';
-- the same system id twice in one list: linked once, the second row finds it
INSERT INTO leadmgmt.lead_import (batch, name, company, system, system_id, kind) VALUES
	('b', '鈴木 一郎', 'スズキ', 'eight', 'E9', 'exhibition_card'),
	('b', NULL, NULL, 'eight', 'E9', 'exhibition_card'),
	('b', NULL, NULL, 'eight', 'E10', 'exhibition_card');
SELECT * FROM leadmgmt.import_leads('b');
SELECT id, lead_id, matched, matched_on, error IS NOT NULL AS rejected FROM leadmgmt.lead_import WHERE batch = 'b' ORDER BY id;
SELECT system, external_id, lead_id FROM leadmgmt.lead_external_id;
-- nothing pending
SELECT * FROM leadmgmt.import_leads('b');

-- import_resolve() is internal, but checks what it is given (named rows:
-- leadmgmt.import_row, import_lead, import_link in; import_outcome,
-- import_fill out)
SELECT outcomes, fills FROM leadmgmt.import_resolve('{}', '{}', '{}');
-- row 1 creates lead -1 with its name; row 2 (later by id, first in the
-- array) finds it by e-mail key and fills the e-mail
SELECT outcomes, fills
  FROM leadmgmt.import_resolve(
         ARRAY[ROW(2, 'a@x.jp', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'a@x.jp', NULL, NULL, NULL),
               ROW(1, NULL, 'A', NULL, NULL, 'fair', NULL, NULL, NULL, NULL, '{"k": 1}', 'a@x.jp', NULL, NULL, 'a')
              ]::leadmgmt.import_row[], '{}', '{}');
SELECT * FROM leadmgmt.import_resolve(
         ARRAY[ROW(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'a', NULL, NULL, NULL),
               ROW(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'b', NULL, NULL, NULL)
              ]::leadmgmt.import_row[], '{}', '{}');
SELECT * FROM leadmgmt.import_resolve(ARRAY[NULL]::leadmgmt.import_row[], '{}', '{}');
SELECT * FROM leadmgmt.import_resolve(
         ARRAY[ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'a', NULL, NULL, NULL)
              ]::leadmgmt.import_row[], '{}', '{}');
SELECT * FROM leadmgmt.import_resolve(
         '{}', ARRAY[ROW(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', 'a', NULL, NULL, NULL),
                     ROW(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', 'b', NULL, NULL, NULL)
                    ]::leadmgmt.import_lead[], '{}');
SELECT * FROM leadmgmt.import_resolve('{}', '{}', ARRAY[ROW('crm', NULL, 5)]::leadmgmt.import_link[]);
SELECT * FROM leadmgmt.import_resolve('{}', '{}', ARRAY[[ROW('crm', 'x', 5)]]::leadmgmt.import_link[]);
