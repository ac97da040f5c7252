-- demo/generate.sql: a realistic, reproducible year of lead management.
--
-- About 3,000 leads arrive over the last 365 days from web forms, exhibition
-- business cards, seminar lists, a purchased list and outbound calls.  Each
-- gets a timeline of page views, e-mails, downloads, seminars, calls and
-- visits, and moves down the waterfall with back-dated set_stage() calls, so
-- the history looks like a year of real work.  setseed() makes every run
-- produce the same data relative to the day it runs.
--
-- psql variable :leads overrides the number of leads (default 3000).
\if :{?leads}
\else
\set leads 3000
\endif

SELECT set_config('demo.leads', :'leads', false) AS leads, setseed(0.42);
-- Replaying a year of history must not hand leads to sales on the way (the
-- generator decides the stages); the threshold is restored at the end.
SELECT leadmgmt.set_setting('mql_threshold', '1e12');
-- our market: manufacturers and logistics firms in Japan with 300+ staff
INSERT INTO leadmgmt.fit_rule (name, attribute, op, value, min_value, max_value, points) VALUES
	('target_industry', 'industry', 'in', '["manufacturing", "logistics"]', NULL, NULL, 30),
	('japan', 'country', 'eq', '"JP"', NULL, NULL, 10),
	('mid_size', 'employees', 'between', NULL, 300, 1200, 25),
	('enterprise', 'employees', 'between', NULL, 1201, NULL, 35);

CREATE TEMP TABLE demo_source (source text, origin text, weight float8, campaign text, first_kind text, first_detail text);
INSERT INTO demo_source VALUES
	('web_form',       'inbound',  0.35, 'web-inbound',        'form_submit',     'contact-us'),
	('exhibition',     'inbound',  0.20, 'expo-2026-spring',   'exhibition_card', 'Japan IT Week'),
	('seminar',        'inbound',  0.15, 'dx-seminar',         'seminar_signup',  'DX seminar for manufacturers'),
	('purchased_list', 'outbound', 0.15, 'list-2026',          'direct_mail',     'brochure'),
	('outbound_call',  'outbound', 0.15, 'outbound-q1',        'call',            'cold call');

CREATE TEMP TABLE demo_name (family text, given text, company text);
INSERT INTO demo_name
SELECT f, g, c FROM
	unnest(ARRAY['佐藤','鈴木','高橋','田中','伊藤','渡辺','山本','中村','小林','加藤',
	             'Smith','Johnson','Brown','Garcia','Müller','Martin','Rossi','Kim']) f,
	unnest(ARRAY['太郎','花子','健一','美咲','翔','John','Emma','Lukas','Sofia']) g,
	unnest(ARRAY['株式会社サクラ精機','(株)ミドリ商事','有限会社ひかり工業','東和電機株式会社',
	             'Acme Corp.','Globex Inc.','Initech GmbH','Umbrella Co., Ltd.','Northwind LLC',
	             'ＡＢＣ株式会社','合同会社ソラ','Contoso Ltd.']) c;

DO $$
DECLARE
	n_leads int := current_setting('demo.leads')::int;
	horizon timestamptz := date_trunc('hour', now());
	i int;
	src record;
	nm record;
	lid bigint;
	created timestamptz;
	t timestamptz;
	stage text;
	engagement float8;
	n_acts int;
	k int;
	kinds text[] := ARRAY['page_view','page_view','page_view','email_open','email_open','email_click',
	                      'download','seminar_attend','page_view','visit'];
	pages text[] := ARRAY['/','/product','/pricing','/case-studies','/blog/dx','/pricing','/contact'];
	assets text[] := ARRAY['whitepaper-a.pdf','whitepaper-b.pdf','catalogue.pdf'];
	kind text;
	r float8;
BEGIN
	FOR i IN 1 .. n_leads LOOP
		r := random();
		SELECT * INTO src FROM (
			SELECT s.*, sum(weight) OVER (ORDER BY source) AS upto FROM demo_source s) x
		 WHERE upto >= r ORDER BY upto LIMIT 1;
		IF src IS NULL THEN
			SELECT * INTO src FROM demo_source WHERE source = 'web_form';
		END IF;
		SELECT * INTO nm FROM demo_name OFFSET floor(random() * (SELECT count(*) FROM demo_name)) LIMIT 1;
		created := horizon - random() * interval '365 days';
		stage := CASE WHEN src.source = 'outbound_call' AND random() < 0.3 THEN 'sgl' ELSE 'inquiry' END;

		INSERT INTO leadmgmt.lead (email, name, company, phone, source, origin, owner, stage, created_at, attributes)
		VALUES (lower(translate(nm.given, ' ', '')) || i || '@' || CASE WHEN random() < 0.5 THEN 'example.jp' ELSE 'example.com' END,
		        nm.family || ' ' || nm.given, nm.company,
		        '03-' || lpad((1000 + floor(random() * 9000))::text, 4, '0') || '-' || lpad((floor(random() * 10000))::text, 4, '0'),
		        src.source, src.origin,
		        (ARRAY['sato','suzuki','tanaka','smith'])[1 + floor(random() * 4)::int],
		        stage, created,
		        jsonb_build_object('industry', (ARRAY['manufacturing','retail','it','finance','logistics'])[1 + floor(random() * 5)::int],
		                           'employees', (ARRAY[20, 80, 300, 1200, 5000])[1 + floor(random() * 5)::int],
		                           'country', CASE WHEN random() < 0.8 THEN 'JP' ELSE 'US' END))
		RETURNING id INTO lid;

		PERFORM leadmgmt.track(lid, src.first_kind, created, src.first_detail, src.campaign);

		-- engagement drives both the timeline and the progress
		engagement := power(random(), 2.0);
		n_acts := floor(engagement * 30)::int;
		t := created;
		FOR k IN 1 .. n_acts LOOP
			t := t + random() * interval '20 days';
			EXIT WHEN t > horizon;
			kind := kinds[1 + floor(random() * array_length(kinds, 1))::int];
			PERFORM leadmgmt.track(lid, kind, t,
				CASE kind WHEN 'page_view' THEN pages[1 + floor(random() * array_length(pages, 1))::int]
				          WHEN 'download' THEN assets[1 + floor(random() * 3)::int]
				          WHEN 'seminar_attend' THEN 'DX seminar for manufacturers'
				          WHEN 'visit' THEN 'on-site demo'
				          ELSE 'newsletter' END,
				CASE WHEN kind LIKE 'email%' THEN 'newsletter-' || to_char(t, 'YYYY-MM') ELSE src.campaign END,
				CASE WHEN kind = 'page_view' THEN (5 + floor(random() * 240))::int END);
		END LOOP;

		-- the waterfall, replayed with back-dated moves
		t := created;
		IF random() < 0.04 THEN
			t := t + random() * interval '10 days';
			IF t < horizon THEN
				PERFORM leadmgmt.set_stage(lid, 'disqualified', 'bad data', t);
			END IF;
			CONTINUE;
		END IF;
		IF stage = 'inquiry' THEN
			CONTINUE WHEN random() > 0.15 + engagement * 0.8;
			t := t + interval '1 day' + random() * interval '40 days';
			CONTINUE WHEN t > horizon;
			PERFORM leadmgmt.set_stage(lid, 'mql', 'score passed the threshold', t);
			stage := 'mql';
			r := random();
			CONTINUE WHEN r < 0.15;                        -- still waiting for sales
			t := t + random() * interval '7 days';
			CONTINUE WHEN t > horizon;
			IF r < 0.40 THEN
				PERFORM leadmgmt.set_stage(lid, 'recycled', 'not ready to buy', t);
				CONTINUE;
			END IF;
			PERFORM leadmgmt.set_stage(lid, 'sal', 'accepted', t);
			stage := 'sal';
		END IF;
		r := random();
		CONTINUE WHEN r < 0.25;
		t := t + interval '2 days' + random() * interval '30 days';
		CONTINUE WHEN t > horizon;
		IF r < 0.45 THEN
			PERFORM leadmgmt.set_stage(lid, 'recycled', 'no budget this year', t);
			CONTINUE;
		END IF;
		PERFORM leadmgmt.set_stage(lid, 'sql', 'opportunity opened', t);
		UPDATE leadmgmt.lead SET amount = (1 + floor(random() * 50)) * 100000, currency = 'JPY' WHERE id = lid;
		r := random();
		CONTINUE WHEN r < 0.25;                            -- deal still open
		t := t + interval '7 days' + random() * interval '60 days';
		CONTINUE WHEN t > horizon;
		IF r < 0.60 THEN
			PERFORM leadmgmt.set_stage(lid, 'won', 'contract signed', t);
			PERFORM leadmgmt.track(lid, 'purchase', t, 'annual licence');
		ELSE
			PERFORM leadmgmt.set_stage(lid, 'lost', 'chose a competitor', t);
			IF random() < 0.5 AND t + interval '14 days' < horizon THEN
				PERFORM leadmgmt.set_stage(lid, 'recycled', 'nurture again', t + interval '14 days');
			END IF;
		END IF;
	END LOOP;
END
$$;

-- some long-quiet leads come back this fortnight (the re-engagement case)
SELECT count(leadmgmt.track(q.id, 'page_view', now() - random() * interval '10 days', '/pricing',
                            duration_s => 30 + (random() * 200)::int)) AS reengaged
  FROM (SELECT l.id FROM leadmgmt.lead l
         WHERE l.stage IN ('inquiry', 'recycled')
           AND (SELECT max(a.occurred_at) FROM leadmgmt.activity a WHERE a.lead_id = l.id) < now() - interval '120 days'
         ORDER BY random() LIMIT 40) q;

SELECT leadmgmt.set_setting('mql_threshold', NULL);
ANALYZE leadmgmt.lead, leadmgmt.activity, leadmgmt.stage_history;
