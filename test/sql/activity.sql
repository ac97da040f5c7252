-- covers: track() validation, merged-lead resolution, COPY into activity, timeline(), history cascade on lead delete
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET TimeZone = 'Asia/Tokyo';

INSERT INTO leadmgmt.lead (id, name, company, source, origin, created_at) VALUES
	(1, '山田 太郎', '株式会社サンプル', 'exhibition', 'inbound', '2025-03-10 10:00+09'),
	(2, 'Jane Doe', 'Example Corp.', 'web_form', 'inbound', '2025-04-01 09:00+09'),
	(3, 'Jane Doe', 'Example Corporation', 'purchased_list', 'outbound', '2025-04-02 09:00+09');
-- lead 3 turned out to be lead 2
UPDATE leadmgmt.lead SET merged_into = 2 WHERE id = 3;

SELECT leadmgmt.track(1, 'exhibition_card', '2025-03-10 10:00+09', 'Japan IT Week Spring', 'expo-2025');
SELECT leadmgmt.track(1, 'seminar_attend', '2025-04-15 14:00+09', 'DX seminar', 'seminar-apr');
SELECT stage FROM leadmgmt.set_stage(1, 'mql', 'attended seminar', '2025-04-16 09:00+09');
SELECT leadmgmt.track(1, 'page_view', '2026-03-02 20:15+09', '/pricing', NULL, 95);
SELECT leadmgmt.track(3, 'email_click', '2025-05-01 08:00+09', 'newsletter-may', 'nl-2025-05');  -- lands on lead 2
SELECT lead_id, kind FROM leadmgmt.activity WHERE kind = 'email_click';

-- errors
SELECT leadmgmt.track(1, 'tweet');
SELECT leadmgmt.track(1, NULL);
SELECT leadmgmt.track(42, 'call');
SELECT leadmgmt.track(NULL, 'call');
SELECT leadmgmt.track(1, 'call', duration_s => -5);
SELECT leadmgmt.track(1, 'call', at => NULL);
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$SELECT leadmgmt.track(1, 'tweet')$$),
	($$SELECT leadmgmt.track(1, NULL)$$),
	($$SELECT leadmgmt.track(42, 'call')$$),
	($$SELECT leadmgmt.track(NULL, 'call')$$),
	($$SELECT leadmgmt.track(1, 'call', duration_s => -5)$$),
	($$SELECT leadmgmt.track(1, 'call', at => NULL)$$)) v(q);
-- a merge chain that points at a missing lead is reported as such
INSERT INTO leadmgmt.lead (id) VALUES (4);
UPDATE leadmgmt.lead SET merged_into = 3 WHERE id = 4;   -- 4 -> 3 -> 2
SELECT leadmgmt.lead_resolve(4);
SELECT leadmgmt.lead_resolve(NULL);

-- user-defined kinds are accepted once added
INSERT INTO leadmgmt.activity_kind (name, description) VALUES ('webinar_attend', 'attended a webinar');
SELECT leadmgmt.track(2, 'webinar_attend', '2025-06-01 11:00+09', 'Product tour') > 0 AS tracked;

-- bulk COPY works and is validated by the foreign keys and checks
COPY leadmgmt.activity (lead_id, kind, occurred_at, detail, duration_s) FROM stdin;
1	download	2025-05-20 12:00:00+09	whitepaper-b.pdf	\N
1	page_view	2025-05-20 12:01:00+09	/case-studies	40
2	visit	2025-06-10 15:00:00+09	on-site demo	3600
\.
COPY leadmgmt.activity (lead_id, kind, occurred_at) FROM stdin;
1	carrier_pigeon	2025-05-20 12:00:00+09
\.
SELECT kind, count(*) FROM leadmgmt.activity GROUP BY kind ORDER BY kind;

-- the timeline merges activities and stage changes in time order
SELECT * FROM leadmgmt.timeline(1);
SELECT count(*) AS via_merged_id FROM leadmgmt.timeline(3);
SELECT * FROM leadmgmt.timeline(99);

-- deleting a lead removes its activity and history (erasure), nothing else
DELETE FROM leadmgmt.lead WHERE id = 4;
DELETE FROM leadmgmt.lead WHERE id = 1;
SELECT (SELECT count(*) FROM leadmgmt.activity WHERE lead_id = 1) AS activity_left,
       (SELECT count(*) FROM leadmgmt.stage_history WHERE lead_id = 1) AS history_left,
       (SELECT count(*) FROM leadmgmt.stage_history) AS history_of_others;
