-- covers: uplift_interval / wilson_interval against hand computation and Newcombe's published examples, nurture_performance counts per track and step, horizon and too-recent leads, reader access
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-------------------------------------------------------------------------------
-- the interval maths
-------------------------------------------------------------------------------
-- Wilson score interval of x/n, z = 1.959964 (z^2 = 3.841459):
--   (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
-- 12/20: p = 0.6, z^2/n = 0.192073, denominator 1.192073,
--   centre (0.6 + 0.096037) / 1.192073 = 0.583901,
--   half z sqrt(0.012 + 0.002401) / 1.192073 = 1.959964 * 0.120004 / 1.192073 = 0.197308
--   -> [0.386593, 0.781209] (to the 5th decimal: 0.38658, 0.78119)
-- 5/20: p = 0.25, centre (0.25 + 0.096037) / 1.192073 = 0.290281,
--   half 1.959964 * sqrt(0.009375 + 0.002401) / 1.192073 = 1.959964 * 0.108517 / 1.192073 = 0.178418
--   -> [0.11186, 0.46870]
SELECT round(low::numeric, 5) AS low, round(high::numeric, 5) AS high FROM leadmgmt.wilson_interval(12, 20);
SELECT round(low::numeric, 5) AS low, round(high::numeric, 5) AS high FROM leadmgmt.wilson_interval(5, 20);
-- Newcombe's hybrid score interval (method 10) for p1 - p2 = 0.6 - 0.25 = 0.35:
--   low  = 0.35 - sqrt((0.6 - 0.38658)^2 + (0.46870 - 0.25)^2) = 0.35 - sqrt(0.045547 + 0.047830) = 0.35 - 0.305576 = 0.04442
--   high = 0.35 + sqrt((0.78119 - 0.6)^2 + (0.25 - 0.11186)^2) = 0.35 + sqrt(0.032830 + 0.019083) = 0.35 + 0.227844 = 0.57784
--   -> 35 pp, [4.44 pp, 57.78 pp]
SELECT round(uplift_pp::numeric, 2) AS uplift_pp, round(low_pp::numeric, 2) AS low_pp, round(high_pp::numeric, 2) AS high_pp
  FROM leadmgmt.uplift_interval(12, 20, 5, 20);
-- Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10:
-- 56/70 - 48/80 -> [0.0524, 0.3339]; 9/10 - 3/10 -> [0.1705, 0.8090]
SELECT x1, n1, x2, n2, round(low_pp::numeric / 100, 4) AS low, round(high_pp::numeric / 100, 4) AS high
  FROM (VALUES (56, 70, 48, 80), (9, 10, 3, 10)) v(x1, n1, x2, n2),
       leadmgmt.uplift_interval(x1, n1, x2, n2);
-- no trials: no estimate
SELECT * FROM leadmgmt.uplift_interval(0, 0, 3, 10);
SELECT * FROM leadmgmt.wilson_interval(3, 2);

-------------------------------------------------------------------------------
-- nurture_performance on leads whose conversions are set by hand
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages) VALUES ('measured', 1, 50, '{inquiry}');
INSERT INTO leadmgmt.nurture_step VALUES ('measured', 1, 'email', 'intro', '0'), ('measured', 2, 'email', 'case', '30 days');
-- 20 leads the hash puts in the treated group and 20 it holds out
INSERT INTO leadmgmt.lead (id, created_at)
SELECT g, now() - interval '400 days'
  FROM ((SELECT g FROM generate_series(1, 1000) g WHERE leadmgmt.nurture_bucket(g, 'measured') >= 50 ORDER BY g LIMIT 20)
        UNION ALL
        (SELECT g FROM generate_series(1, 1000) g WHERE leadmgmt.nurture_bucket(g, 'measured') < 50 ORDER BY g LIMIT 20)) x;
SELECT enrolled, held_out FROM leadmgmt.nurture_enroll(now() - interval '100 days');
CREATE TEMP TABLE g AS
	SELECT e.id, e.lead_id, e.status, e.enrolled_at,
	       row_number() OVER (PARTITION BY e.status ORDER BY e.lead_id) AS k
	  FROM leadmgmt.nurture_enrollment e;
-- every treated lead gets step 1 a day after enrolment
SELECT count(leadmgmt.nurture_sent(id, 1, enrolled_at + interval '1 day')) AS sent FROM g WHERE status = 'active';
-- treated: 12 of 20 become MQL 10 days in; 4 of them go on to SQL, 2 of those win
-- holdout:  5 of 20 become MQL 10 days in; 1 of them goes on to SQL
SELECT count((leadmgmt.set_stage(lead_id, 'mql', NULL, enrolled_at + interval '10 days')).stage) AS mql
  FROM g WHERE status = 'active' AND k <= 12 OR status = 'holdout' AND k <= 5;
SELECT count((leadmgmt.set_stage(lead_id, 'sal', NULL, enrolled_at + interval '11 days')).stage),
       count((leadmgmt.set_stage(lead_id, 'sql', NULL, enrolled_at + interval '12 days')).stage) AS sql
  FROM g WHERE status = 'active' AND k <= 4 OR status = 'holdout' AND k <= 1;
SELECT count((leadmgmt.set_stage(lead_id, 'won', NULL, enrolled_at + interval '13 days')).stage) AS won
  FROM g WHERE status = 'active' AND k <= 2;
-- the 8 treated leads that did not convert get step 2 after 31 days
SELECT count(leadmgmt.nurture_sent(id, 2, enrolled_at + interval '31 days')) AS sent
  FROM g WHERE status = 'active' AND k > 12;
-- one of them converts after the 90-day horizon: not counted
SELECT (leadmgmt.set_stage(lead_id, 'mql', NULL, enrolled_at + interval '95 days')).stage AS late
  FROM g WHERE status = 'active' AND k = 20;
-- three leads enrolled today are too recent for the horizon
INSERT INTO leadmgmt.lead (id, created_at) VALUES (2001, now() - interval '1 day'), (2002, now() - interval '1 day'), (2003, now() - interval '1 day');
-- record the exits (converted, finished)
SELECT * FROM leadmgmt.nurture_enroll();

-- whole track: 12 treated of 20 converted (60 %), 5 holdout of 20 (25 %):
-- 35 pp [4.44, 57.78] as computed above.  Step 1 reached the same leads.
-- Step 2 reached the 8 treated leads that had not converted (none converts
-- within the horizon) and the 15 holdout leads that had not converted 30
-- days in (none converts later): 0 pp; Wilson gives [0, 0.3244] for 0/8
-- (upper end (z^2/8) / (1 + z^2/8) = 0.48018 / 1.48018) and [0, 0.2039] for
-- 0/15 (0.25610 / 1.25610), so low = 0 - sqrt(0^2 + 0.2039^2) and
-- high = 0 + sqrt(0.3244^2 + 0^2): [-20.39, 32.44].
SELECT track, step_no, channel, enrolled, active, completed, exited_converted, holdout, too_recent
  FROM leadmgmt.nurture_performance ORDER BY track, step_no NULLS FIRST;
SELECT step_no, treated_total, treated_converted, treated_mql, treated_sql, treated_won,
       holdout_total, holdout_converted, holdout_mql, holdout_sql, holdout_won
  FROM leadmgmt.nurture_performance ORDER BY step_no NULLS FIRST;
SELECT step_no, round(treated_rate_pct::numeric, 2) AS treated_pct, round(holdout_rate_pct::numeric, 2) AS holdout_pct,
       round(uplift_pp::numeric, 2) AS uplift_pp, round(uplift_low_pp::numeric, 2) AS low_pp,
       round(uplift_high_pp::numeric, 2) AS high_pp
  FROM leadmgmt.nurture_performance ORDER BY step_no NULLS FIRST;
-- the same numbers straight from the function
SELECT round(low_pp::numeric, 2) AS low_pp, round(high_pp::numeric, 2) AS high_pp FROM leadmgmt.uplift_interval(0, 8, 0, 15);

-- a shorter horizon counts fewer conversions and excludes nobody here;
-- a longer one counts the late convert and makes every lead too recent
SELECT leadmgmt.set_setting('nurture_horizon', '5 days');
SELECT step_no, treated_converted, holdout_converted, too_recent FROM leadmgmt.nurture_performance WHERE step_no IS NULL;
SELECT leadmgmt.set_setting('nurture_horizon', '120 days');
SELECT step_no, treated_total, treated_converted, too_recent FROM leadmgmt.nurture_performance WHERE step_no IS NULL;
SELECT leadmgmt.set_setting('nurture_horizon', NULL);
-- conversion can be defined as a later stage
SELECT leadmgmt.set_setting('nurture_convert_stage', 'sql');
SELECT step_no, treated_converted, holdout_converted, round(uplift_pp::numeric, 2) AS uplift_pp
  FROM leadmgmt.nurture_performance WHERE step_no IS NULL;
SELECT leadmgmt.set_setting('nurture_convert_stage', NULL);

-------------------------------------------------------------------------------
-- access: the reader reads the performance, marketing runs the programs
-------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS nurture_admin;
DROP ROLE IF EXISTS nurture_marketing;
DROP ROLE IF EXISTS nurture_sales;
DROP ROLE IF EXISTS nurture_reader;
RESET client_min_messages;
CREATE ROLE nurture_admin NOLOGIN;
CREATE ROLE nurture_marketing NOLOGIN;
CREATE ROLE nurture_sales NOLOGIN;
CREATE ROLE nurture_reader NOLOGIN;
SELECT leadmgmt.grant_access('nurture_admin', 'nurture_marketing', 'nurture_sales', 'nurture_reader');
SET ROLE nurture_reader;
SELECT step_no, treated_converted, holdout_converted FROM leadmgmt.nurture_performance ORDER BY step_no NULLS FIRST;
\set VERBOSITY sqlstate
SELECT holdout_pct FROM leadmgmt.nurture_track;
SELECT * FROM leadmgmt.nurture_enroll();
RESET ROLE;
SET ROLE nurture_sales;
INSERT INTO leadmgmt.nurture_track (name) VALUES ('by_sales');
SELECT count(*) AS tracks FROM leadmgmt.nurture_track;
RESET ROLE;
SET ROLE nurture_marketing;
\set VERBOSITY default
INSERT INTO leadmgmt.nurture_track (name, holdout_pct) VALUES ('by_marketing', 10);
INSERT INTO leadmgmt.nurture_step VALUES ('by_marketing', 1, 'email', 'hello', '1 day');
UPDATE leadmgmt.nurture_track SET priority = 2 WHERE name = 'by_marketing';
SELECT enrolled FROM leadmgmt.nurture_enroll();
SELECT count(*) > 0 AS sees_due FROM leadmgmt.nurture_due;
\set VERBOSITY sqlstate
DELETE FROM leadmgmt.nurture_enrollment;
INSERT INTO leadmgmt.nurture_channel VALUES ('fax', 'fax');
\set VERBOSITY default
DELETE FROM leadmgmt.nurture_step WHERE track = 'by_marketing' AND step_no = 1;
-- a track with enrolments keeps its history: it cannot be deleted, only paused
\set VERBOSITY sqlstate
DELETE FROM leadmgmt.nurture_track WHERE name = 'by_marketing';
\set VERBOSITY default
UPDATE leadmgmt.nurture_track SET active = false WHERE name = 'by_marketing';
RESET ROLE;
SET ROLE nurture_admin;
INSERT INTO leadmgmt.nurture_channel VALUES ('line', 'line', 'LINE message');
RESET ROLE;
SELECT name, consent_channel, builtin FROM leadmgmt.nurture_channel WHERE NOT builtin;
SET client_min_messages = warning;
DROP OWNED BY nurture_admin, nurture_marketing, nurture_sales, nurture_reader;
DROP ROLE nurture_admin;
DROP ROLE nurture_marketing;
DROP ROLE nurture_sales;
DROP ROLE nurture_reader;
