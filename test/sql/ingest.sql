-- covers: bulk activity ingest (INSERT ... SELECT and COPY of many rows) with merged leads, bounces, unsubscribes, caps and rows with points given: rows land on resolved leads, hygiene and consent follow, stored scores equal rescore() and score_explain
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- 300 leads; 29 merged into another one, and 4 of the kept ones merged
-- again later (merge_leads re-points the first ones), so ids name merged
-- leads of both generations
INSERT INTO leadmgmt.lead (id, email, created_at)
SELECT g, 'p' || g || '@example.com', '2025-01-01' FROM generate_series(1, 300) g;
SELECT count(leadmgmt.merge_leads(g + 1, g)) AS merged FROM generate_series(10, 290, 10) g;
SELECT count(leadmgmt.merge_leads(g + 2, g + 1)) AS merged_again FROM generate_series(10, 100, 30) g;
SELECT count(*) AS merged_leads, count(*) FILTER (WHERE leadmgmt.lead_resolve(id) <> merged_into) AS resolving_further
  FROM leadmgmt.lead WHERE merged_into IS NOT NULL;

-- the load: 20 k rows in one statement, every lead id (merged ones too),
-- kinds as a web log and an e-mail tool send them, some back-filled before
-- others, some with points given (a migration)
SELECT setseed(0.42);
CREATE TEMP TABLE src AS
SELECT g AS n, 1 + (g * 7919) % 300 AS lead_id,
       (ARRAY['page_view','page_view','page_view','email_open','email_click','download','form_submit',
              'seminar_attend','email_bounce','unsubscribe'])[1 + (g * 31) % 10] AS kind,
       timestamptz '2025-06-01' - (g % 400) * interval '1 day' + (g % 86400) * interval '1 second' AS occurred_at,
       (ARRAY['/','/pricing','whitepaper-x.pdf','/blog'])[1 + g % 4] AS detail,
       (g * 13) % 120 AS duration_s,
       CASE WHEN g % 97 = 0 THEN 3.5 END AS points
  FROM generate_series(1, 20000) g;
SELECT count(*) AS rows, count(*) FILTER (WHERE l.merged_into IS NOT NULL) AS rows_naming_merged_leads
  FROM src s JOIN leadmgmt.lead l ON l.id = s.lead_id;

INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, duration_s, points)
SELECT lead_id, kind, occurred_at, detail, duration_s, points FROM src ORDER BY n;

-- every row is on the lead its id resolves to, none on a merged lead
SELECT count(*) AS rows, count(*) FILTER (WHERE l.merged_into IS NOT NULL) AS rows_on_merged_leads
  FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id;
SELECT count(*) AS leads_with_other_counts
  FROM (SELECT leadmgmt.lead_resolve(lead_id) AS lead_id, count(*) AS n FROM src GROUP BY 1) e
  FULL JOIN (SELECT lead_id, count(*) AS n FROM leadmgmt.activity GROUP BY 1) a USING (lead_id)
 WHERE e.n IS DISTINCT FROM a.n;
-- hygiene and consent follow the resolved lead: unsubscribed beats bounced
WITH e AS (
	SELECT leadmgmt.lead_resolve(lead_id) AS lead_id,
	       CASE WHEN bool_or(kind = 'unsubscribe') THEN 'unsubscribed'
	            WHEN bool_or(kind = 'email_bounce') THEN 'bounced' ELSE 'ok' END AS status
	  FROM src GROUP BY 1
)
SELECT l.email_status, count(*) AS leads, count(*) FILTER (WHERE e.status IS DISTINCT FROM l.email_status) AS wrong
  FROM leadmgmt.lead l LEFT JOIN e ON e.lead_id = l.id
 WHERE l.merged_into IS NULL GROUP BY 1 ORDER BY 1;
SELECT (SELECT count(*) FROM leadmgmt.consent WHERE NOT granted AND source = 'activity:unsubscribe') AS consent_rows,
       (SELECT count(*) FROM src WHERE kind = 'unsubscribe') AS unsubscribe_rows,
       (SELECT count(*) FROM leadmgmt.consent c JOIN leadmgmt.lead l ON l.id = c.lead_id
         WHERE l.merged_into IS NOT NULL) AS consent_on_merged_leads;

-- scores: the incremental state equals a full recompute, and each stored
-- score is the sum of what score_explain lists at score_at
SELECT count(*) FILTER (WHERE score_at IS NOT NULL) AS leads_scored FROM leadmgmt.lead;
SELECT leadmgmt.rescore() AS changed_by_rescore;
SELECT count(*) AS scores_unlike_explain
  FROM leadmgmt.lead l
 WHERE l.merged_into IS NULL AND l.score_at IS NOT NULL
   AND abs(l.score - (SELECT coalesce(sum(x.decayed_points), 0) FROM leadmgmt.score_explain(l.id, l.score_at) x))
       > 1e-9 * greatest(1, abs(l.score));

-- a second load into the same leads: back-fills before awarded capped
-- matches, given by COPY, merged ids among them
CREATE TEMP TABLE src2 AS
SELECT lead_id, kind, occurred_at - interval '500 days' AS occurred_at, detail, duration_s
  FROM src WHERE n % 5 = 0;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, duration_s)
SELECT lead_id, kind, occurred_at, detail, duration_s FROM src2;
COPY leadmgmt.activity (lead_id, kind, occurred_at, detail) FROM stdin WITH (FORMAT csv);
10,page_view,2025-06-02 10:00:00+00,/pricing
11,form_submit,2025-06-02 10:01:00+00,
40,download,2025-06-02 10:02:00+00,whitepaper-y.pdf
41,unsubscribe,2025-06-02 10:03:00+00,
\.
SELECT count(*) AS rows_on_merged_leads
  FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id WHERE l.merged_into IS NOT NULL;
SELECT leadmgmt.rescore() AS changed_by_rescore;
SELECT count(*) AS scores_unlike_explain
  FROM leadmgmt.lead l
 WHERE l.merged_into IS NULL AND l.score_at IS NOT NULL
   AND abs(l.score - (SELECT coalesce(sum(x.decayed_points), 0) FROM leadmgmt.score_explain(l.id, l.score_at) x))
       > 1e-9 * greatest(1, abs(l.score));

-- RETURNING shows the lead the row landed on
SELECT leadmgmt.lead_resolve(10) AS lead_10_resolves_to;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at) VALUES (10, 'email_open', '2025-06-03')
RETURNING lead_id;

-- a merge that commits after the row trigger looked the lead up (here: in
-- the middle of the statement, by the statement's own SELECT) is caught by
-- the statement trigger, which moves the row
INSERT INTO leadmgmt.lead (id, created_at) VALUES (1001, '2025-01-01'), (1002, '2025-01-01');
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at)
SELECT 1002, 'page_view', timestamptz '2025-06-04' + g * interval '1 hour'
  FROM generate_series(1, 3) g
 WHERE g <> 2 OR leadmgmt.merge_leads(1001, 1002) = 1001;
SELECT lead_id, count(*) FROM leadmgmt.activity WHERE lead_id IN (1001, 1002) GROUP BY 1 ORDER BY 1;
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- the triggers of one activity statement fire in name order: scoring, which
-- locks every lead of the statement in id order, before the consent part's
-- hygiene, which then takes no lock of its own first
SELECT t.tgname, p.proname, t.tgnargs
  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
 WHERE t.tgrelid = 'leadmgmt.activity'::regclass AND NOT t.tgisinternal
   AND t.tgtype & 4 <> 0	-- INSERT
 ORDER BY t.tgname;

-- a merged_into circle written by hand ends the shared walk with LM050,
-- for the row trigger's probes and for the statement-level walk alike
INSERT INTO leadmgmt.lead (id, created_at) VALUES (1003, '2025-01-01'), (1004, '2025-01-01');
DO $$
BEGIN
	UPDATE leadmgmt.lead SET merged_into = 1004 WHERE id = 1003;
	UPDATE leadmgmt.lead SET merged_into = 1003 WHERE id = 1004;
	INSERT INTO leadmgmt.activity (lead_id, kind) VALUES (1003, 'page_view');
EXCEPTION WHEN SQLSTATE 'LM050' THEN
	RAISE NOTICE 'row: %', SQLERRM;
END
$$;
DO $$
BEGIN
	UPDATE leadmgmt.lead SET merged_into = 1004 WHERE id = 1003;
	ALTER TABLE leadmgmt.activity DISABLE TRIGGER activity_score_row;
	INSERT INTO leadmgmt.activity (lead_id, kind) VALUES (1003, 'page_view');
	UPDATE leadmgmt.lead SET merged_into = 1003 WHERE id = 1004;
	INSERT INTO leadmgmt.activity (lead_id, kind) VALUES (1003, 'unsubscribe');
EXCEPTION WHEN SQLSTATE 'LM050' THEN
	RAISE NOTICE 'statement: %', SQLERRM;
END
$$;
SELECT count(*) AS rows_left_by_the_circles FROM leadmgmt.activity WHERE lead_id IN (1003, 1004);
