-- covers: _days companions of interval view columns, schema leadmgmt_bi (SELECT * by every role, no personal data, comments, RLS by owner through it)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP ROLE IF EXISTS bi_admin, bi_marketing, bi_sales, bi_reader, bi_rep1, bi_rep2, bi_tool;
RESET client_min_messages;

-- every interval column of a view has a double precision <column>_days
-- companion after it (both schemas); nothing is left without one
SELECT c.relnamespace::regnamespace AS schema, c.relname, a.attname,
       d.attname IS NOT NULL AND d.atttypid = 'float8'::regtype AND d.attnum > a.attnum AS has_days
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attribute d ON d.attrelid = c.oid AND d.attname = a.attname || '_days' AND NOT d.attisdropped
 WHERE c.relnamespace IN ('leadmgmt'::regnamespace, 'leadmgmt_bi'::regnamespace)
   AND c.relkind = 'v' AND a.atttypid = 'interval'::regtype
 ORDER BY 1, 2, 3;

-- every view of leadmgmt has its copy in leadmgmt_bi, same columns (JSON as text)
SELECT c.relname AS missing_or_different
  FROM pg_class c
 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'v'
   AND (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
       IS DISTINCT FROM
       (SELECT array_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
         WHERE a.attrelid = to_regclass('leadmgmt_bi.' || quote_ident(c.relname)) AND a.attnum > 0);

-- the relations of leadmgmt_bi: views only, every one and every column commented
SELECT c.relname, c.relkind, obj_description(c.oid, 'pg_class') IS NOT NULL AS commented,
       (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
           AND col_description(c.oid, a.attnum) IS NULL) AS uncommented_columns,
       c.reloptions
  FROM pg_class c WHERE c.relnamespace = 'leadmgmt_bi'::regnamespace ORDER BY 1;

-- no personal data in the table views
SELECT c.relname, a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
 WHERE c.relnamespace = 'leadmgmt_bi'::regnamespace
   AND c.relname IN ('lead', 'activity', 'stage_history')
   AND a.attname IN ('email', 'name', 'company', 'phone', 'attributes', 'external_id',
                     'email_key', 'company_key', 'phone_key', 'detail', 'props', 'changed_by', 'reason');

CREATE ROLE bi_admin NOLOGIN;
CREATE ROLE bi_marketing NOLOGIN;
CREATE ROLE bi_sales NOLOGIN;
CREATE ROLE bi_reader NOLOGIN;
SELECT leadmgmt.grant_access('bi_admin', 'bi_marketing', 'bi_sales', 'bi_reader');
CREATE ROLE bi_rep1 IN ROLE bi_sales;
CREATE ROLE bi_rep2 IN ROLE bi_sales;
CREATE ROLE bi_tool IN ROLE bi_reader;

-- data: two leads of rep1, one of rep2, with history and activity
SET TimeZone = 'UTC';
INSERT INTO leadmgmt.lead (email, name, source, owner, created_at)
SELECT 'a' || g || '@example.com', 'P' || g, CASE WHEN g < 3 THEN 'seminar' ELSE 'web_form' END,
       CASE WHEN g < 3 THEN 'bi_rep1' ELSE 'bi_rep2' END, timestamptz '2026-01-01' + g * interval '1 day'
  FROM generate_series(1, 3) g;
SELECT count(*) FROM (SELECT leadmgmt.set_stage(id, 'mql', at => timestamptz '2026-01-05 06:00') FROM leadmgmt.lead) x;
SELECT leadmgmt.track(1, 'download', at => now() - interval '200 days', detail => 'Whitepaper') > 0 AS tracked,
       leadmgmt.track(1, 'visit', at => now() - interval '1 day') > 0 AS tracked_again;
SELECT leadmgmt.snapshot_funnel() > 0 AS snapshot;

-- every relation of leadmgmt_bi answers SELECT * for every role
CREATE FUNCTION pg_temp.select_all(who text) RETURNS TABLE (relname name, result text)
LANGUAGE plpgsql AS $$
DECLARE r record; n bigint;
BEGIN
	FOR r IN SELECT c.relname AS rel FROM pg_class c
	          WHERE c.relnamespace = 'leadmgmt_bi'::regnamespace ORDER BY 1 LOOP
		relname := r.rel;
		BEGIN
			EXECUTE format('SET LOCAL ROLE %I', who);
			EXECUTE format('SELECT count(*) FROM (SELECT * FROM leadmgmt_bi.%I) x', r.rel) INTO n;
			result := 'ok';
		EXCEPTION WHEN OTHERS THEN
			result := SQLSTATE || ' ' || SQLERRM;
		END;
		RETURN NEXT;
	END LOOP;
END $$;
SELECT relname,
       (SELECT result FROM pg_temp.select_all('bi_tool') s WHERE s.relname = c.relname) AS reader,
       (SELECT result FROM pg_temp.select_all('bi_rep1') s WHERE s.relname = c.relname) AS sales,
       (SELECT result FROM pg_temp.select_all('bi_marketing') s WHERE s.relname = c.relname) AS marketing,
       (SELECT result FROM pg_temp.select_all('bi_admin') s WHERE s.relname = c.relname) AS admin
  FROM pg_class c WHERE c.relnamespace = 'leadmgmt_bi'::regnamespace ORDER BY 1;

-- the reader level still may not read personal data in schema leadmgmt
SET ROLE bi_tool;
SELECT count(email) FROM leadmgmt.lead;
SELECT count(*) FROM leadmgmt_bi.stage_transition;
SELECT id, source, stage, owner FROM leadmgmt_bi.lead ORDER BY id;
RESET ROLE;

-- row-level security by owner applies through leadmgmt_bi
SELECT leadmgmt.set_setting('rls_by_owner', 'on');
SET ROLE bi_rep1;
SELECT id, owner FROM leadmgmt_bi.lead ORDER BY id;
SELECT lead_id, stage FROM leadmgmt_bi.sales_queue ORDER BY lead_id;
SELECT stage, leads_current FROM leadmgmt_bi.funnel WHERE stage = 'mql';
SET ROLE bi_tool;
SELECT count(*) AS reader_sees FROM leadmgmt_bi.lead;
RESET ROLE;
SELECT leadmgmt.set_setting('rls_by_owner', 'off');

-- the companions are the intervals in days
SELECT count(*) AS rows,
       count(*) FILTER (WHERE waiting_days = extract(epoch FROM waiting)::float8 / 86400) AS same
  FROM leadmgmt_bi.sales_queue;
SELECT quiet_for, round(quiet_for_days::numeric, 6) AS quiet_for_days FROM leadmgmt.reengaged;
SELECT from_stage, to_stage, avg_time, round(avg_time_days::numeric, 6) AS avg_time_days,
       median_time = justify_hours(median_time_days * interval '1 day') AS median_same,
       p90_time = justify_hours(p90_time_days * interval '1 day') AS p90_same
  FROM leadmgmt.stage_velocity ORDER BY 1, 2;
SELECT stage, median_time_in_stage, round(median_time_in_stage_days::numeric, 6) AS days
  FROM leadmgmt_bi.funnel_snapshot WHERE median_time_in_stage IS NOT NULL;

-- the dashboard queries of doc/bi.md, as the BI tool's role
SET ROLE bi_tool;
SELECT f.stage, f.leads_entered, f.leads_current,
       round((100 * f.conversion_to_next)::numeric, 1) AS conversion_pct,
       round(f.median_time_in_stage_days::numeric, 1) AS median_days
  FROM leadmgmt_bi.funnel f JOIN leadmgmt_bi.stage s ON s.name = f.stage
 WHERE s.category IN ('open', 'won')
 ORDER BY f.position;
SELECT source, stage, leads_entered, round(conversion_from_first::numeric, 3) AS conversion
  FROM leadmgmt_bi.funnel_by_source
 WHERE stage IN ('mql', 'sql', 'won')
 ORDER BY source, stage;

SELECT cohort_month, stage, round(conversion_from_first::numeric, 3) AS conversion
  FROM leadmgmt_bi.funnel_cohort
 WHERE stage IN ('mql', 'sql', 'won')
 ORDER BY cohort_month, stage;
SELECT from_stage || ' → ' || to_stage AS move, transitions,
       round(avg_time_days::numeric, 1) AS avg_days,
       round(median_time_days::numeric, 1) AS median_days,
       round(p90_time_days::numeric, 1) AS p90_days
  FROM leadmgmt_bi.stage_velocity
 ORDER BY transitions DESC;

-- (depends on now(): rows only)
SELECT count(*) AS rows FROM (
SELECT coalesce(owner, '(unassigned)') AS owner, count(*) AS waiting,
       round(avg(waiting_days)::numeric, 1) AS avg_days_waiting,
       count(*) FILTER (WHERE overdue) AS overdue
  FROM leadmgmt_bi.sales_queue
 GROUP BY 1 ORDER BY overdue DESC, waiting DESC) q;
SELECT campaign, round(won_deals::numeric, 2) AS won_deals, won_amount,
       round(pipeline_deals::numeric, 2) AS pipeline_deals, pipeline_amount
  FROM leadmgmt_bi.campaign_attribution
 ORDER BY won_amount DESC, campaign;
-- (depends on now(): rows only)
SELECT count(*) AS rows FROM (
SELECT date_trunc('week', new_touch_at)::date AS week, count(*) AS reengaged,
       round(avg(quiet_for_days)::numeric, 0) AS avg_days_quiet
  FROM leadmgmt_bi.reengaged
 GROUP BY 1 ORDER BY 1) q;
RESET ROLE;

SET client_min_messages = warning;
DROP OWNED BY bi_admin, bi_marketing, bi_sales, bi_reader, bi_rep1, bi_rep2, bi_tool;
DROP ROLE bi_admin, bi_marketing, bi_sales, bi_reader, bi_rep1, bi_rep2, bi_tool;
