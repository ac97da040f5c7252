-- covers: window_funnel/funnel_step_times under forced parallel plans (partial aggregate, serialise, combine, deserialise) give the serial results
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET timezone = 'UTC';

SELECT setseed(0.77);
CREATE TABLE pev (lead int, ts timestamptz, kind text) WITH (parallel_workers = 2);
INSERT INTO pev
SELECT (random() * 3000)::int, timestamptz '2024-01-01 00:00+00' + random() * interval '20 days',
	(ARRAY['visit', 'download', 'seminar', 'purchase', 'email_open'])[1 + floor(random() * 5)::int]
FROM generate_series(1, 60000);
ANALYZE pev;

CREATE FUNCTION funnel_per_lead() RETURNS TABLE (lead int, level int, strict_level int, times timestamptz[])
LANGUAGE sql STABLE AS $$
	SELECT lead,
		leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase'),
		leadmgmt.window_funnel('3 days', 'strict_order,allow_reentry', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase'),
		leadmgmt.funnel_step_times('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase')
	FROM pev GROUP BY lead
$$;

-- serial reference
SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial_per_lead AS SELECT * FROM funnel_per_lead();
CREATE TABLE serial_total AS
SELECT leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') AS level,
	leadmgmt.funnel_step_times('1 day', 'strict_once', ts, kind = 'visit', kind = 'visit', kind = 'visit') AS times
FROM pev;

-- forced parallel plans
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
-- force_parallel_mode before 16, debug_parallel_query since: whichever exists
SELECT set_config(name, 'on', false) AS forced
  FROM pg_settings WHERE name IN ('force_parallel_mode', 'debug_parallel_query');
SET enable_hashagg = off;

EXPLAIN (COSTS OFF)
SELECT lead, leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase')
FROM pev GROUP BY lead;
EXPLAIN (COSTS OFF)
SELECT leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') FROM pev;

-- same answers: per lead (partial states of one lead from both workers are
-- combined) and over the whole table (one big state per worker)
CREATE TABLE parallel_per_lead AS
SELECT lead,
	leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') AS level,
	leadmgmt.window_funnel('3 days', 'strict_order,allow_reentry', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') AS strict_level,
	leadmgmt.funnel_step_times('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') AS times
FROM pev GROUP BY lead;
SELECT (SELECT count(*) FROM serial_per_lead) AS leads,
	(SELECT count(*) FROM (SELECT * FROM serial_per_lead EXCEPT SELECT * FROM parallel_per_lead) d) AS serial_only,
	(SELECT count(*) FROM (SELECT * FROM parallel_per_lead EXCEPT SELECT * FROM serial_per_lead) d) AS parallel_only;
SELECT s.level = p.level AS same_level, s.times = p.times AS same_times, s.level, cardinality(s.times) AS once_steps
FROM serial_total s,
	(SELECT leadmgmt.window_funnel('3 days', ts, kind = 'visit', kind = 'download', kind = 'seminar', kind = 'purchase') AS level,
		leadmgmt.funnel_step_times('1 day', 'strict_once', ts, kind = 'visit', kind = 'visit', kind = 'visit') AS times
	 FROM pev) p;
-- the level distribution, for the eye
SELECT level, count(*) AS leads FROM parallel_per_lead GROUP BY level ORDER BY level;

-- a per-row constant that differs between the rows of one lead is caught in
-- a parallel plan too (in a worker's transition or in the combine step; which
-- row comes first varies, so only the message is shown)
\set VERBOSITY terse
SELECT lead, leadmgmt.window_funnel(CASE WHEN kind = 'visit' THEN interval '3 days' ELSE interval '4 days' END, ts, kind = 'visit')
FROM pev WHERE lead = 7 GROUP BY lead;
