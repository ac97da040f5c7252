-- covers: bounce and unsubscribe hygiene, consent log and current state, stale leads, forget_lead
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

INSERT INTO leadmgmt.lead (id, email, name, company, phone, created_at, attributes) VALUES
	(1, 'taro@example.jp', '山田 太郎', '株式会社サンプル', '03-1234-5678', '2026-01-01', '{"employees": 300}'),
	(2, 'jane@example.com', 'Jane Doe', 'Example Corp.', NULL, '2026-01-01', '{}'),
	(3, 'old@example.com', 'Old Lead', 'Dormant Inc.', NULL, now() - interval '100 days', '{}'),
	(4, 'taro.y@example.jp', '山田太郎', 'サンプル', NULL, '2026-01-02', '{}');

-- a bounce marks the address; an unsubscribe wins over a bounce, in any order
SELECT leadmgmt.track(1, 'email_bounce', '2026-02-01', 'newsletter') > 0 AS tracked;
SELECT id, email_status FROM leadmgmt.lead WHERE id = 1;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at) VALUES
	(2, 'unsubscribe', '2026-02-02'), (2, 'email_bounce', '2026-02-03');
SELECT leadmgmt.track(1, 'unsubscribe', '2026-02-04') > 0 AS tracked;
SELECT id, email_status FROM leadmgmt.lead WHERE id IN (1, 2) ORDER BY id;
-- and withdraws e-mail consent
SELECT lead_id, channel, granted, source, at FROM leadmgmt.consent ORDER BY lead_id, at;

-- consent given again re-opens e-mail; the latest state per channel counts
SELECT leadmgmt.consent(2, 'email', true, 'preference centre', '2026-03-01') > 0 AS recorded;
SELECT leadmgmt.consent(2, 'phone', false, 'call', '2026-03-02') > 0 AS recorded;
SELECT leadmgmt.consent(2, 'email', false, 'old form, entered late', '2026-02-15') > 0 AS recorded;
SELECT lead_id, channel, granted, source FROM leadmgmt.consent_current WHERE lead_id = 2 ORDER BY channel;
SELECT email_status FROM leadmgmt.lead WHERE id = 2;
-- (terse: the failing row in the DETAIL ends with recorded_by, the session
-- user, whose name depends on the installation)
\set VERBOSITY terse
SELECT leadmgmt.consent(2, 'Email!', true, NULL, '2026-03-03');
\set VERBOSITY default
SELECT leadmgmt.consent(2, 'email', NULL);
SELECT leadmgmt.consent(99, 'email', true);

-- stale leads: open or nurture, no activity for stale_after (30 days)
SELECT lead_id, stage, last_activity_at IS NULL AS never_active, idle > interval '99 days' AS idle_100_days
  FROM leadmgmt.stale_leads WHERE lead_id = 3;
SELECT leadmgmt.track(3, 'page_view', now() - interval '1 day', '/') > 0 AS tracked;
SELECT count(*) AS lead_3_stale FROM leadmgmt.stale_leads WHERE lead_id = 3;

-- forget_lead erases personal data of the lead and its merged duplicates,
-- and keeps ids, stages, history, scores and activity counts
SELECT stage FROM leadmgmt.set_stage(1, 'mql', 'web score', '2026-02-10');
INSERT INTO leadmgmt.fit_rule (name, attribute, op, min_value, points) VALUES ('mid', 'employees', 'between', 100, 50);
UPDATE leadmgmt.lead SET attributes = attributes WHERE id = 1;
SELECT leadmgmt.merge_leads(1, 4);
CREATE TEMP TABLE before AS
SELECT l.id, l.stage, l.score, l.fit_score, l.grade,
       (SELECT count(*) FROM leadmgmt.activity a WHERE a.lead_id = l.id) AS activities,
       (SELECT count(*) FROM leadmgmt.stage_history h WHERE h.lead_id = l.id) AS history
  FROM leadmgmt.lead l WHERE l.id IN (1, 4);
SELECT leadmgmt.forget_lead(4) AS leads_erased;
SELECT id, email, name, company, phone, attributes, email_key, company_key, phone_key,
       forgotten_at IS NOT NULL AS forgotten
  FROM leadmgmt.lead WHERE id IN (1, 4) ORDER BY id;
SELECT count(*) FILTER (WHERE detail IS NOT NULL OR props IS NOT NULL) AS details_left
  FROM leadmgmt.activity WHERE lead_id IN (1, 4);
SELECT b.id, b.stage = l.stage AS same_stage, b.score = l.score AS same_score,
       b.fit_score IS NOT DISTINCT FROM l.fit_score AND b.grade IS NOT DISTINCT FROM l.grade AS same_fit,
       b.activities = (SELECT count(*) FROM leadmgmt.activity a WHERE a.lead_id = l.id) AS same_activities,
       b.history = (SELECT count(*) FROM leadmgmt.stage_history h WHERE h.lead_id = l.id) AS same_history
  FROM before b JOIN leadmgmt.lead l USING (id) ORDER BY b.id;
-- other leads are untouched
SELECT id, email, name FROM leadmgmt.lead WHERE id = 2;
SELECT leadmgmt.forget_lead(NULL);
SELECT leadmgmt.forget_lead(99);
-- not for everybody
SELECT has_function_privilege('public', 'leadmgmt.forget_lead(bigint)', 'EXECUTE') AS public_may_forget;
