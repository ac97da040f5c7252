-- covers: SSPACE of every aggregate with an internal state: declared, and hash aggregation over 300 k groups planned in memory (no planned partitions) at work_mem 512MB
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- every aggregate of the extension with an internal state declares its size
SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args, a.aggtransspace
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND a.aggtranstype = 'internal'::regtype
 ORDER BY 1, 2;

-- 300 k groups as the planner sees them: one row per group, analyzed (the
-- plans are only explained, so the group size does not matter)
CREATE TEMP TABLE ev AS
SELECT g::bigint AS g, timestamptz '2024-01-01' + g * interval '1 minute' AS ts,
       (g % 10)::smallint AS kind, 'campaign-' || g % 20 AS touch, g % 3 = 0 AS label,
       (g % 100) / 100.0 AS score, ARRAY[g % 7, g % 11]::float8[] AS x,
       (ARRAY['inquiry','mql','sal','sql','won'])[1 + g % 5] AS stage
  FROM generate_series(1, 300000) g;
ANALYZE ev;

-- the plan of "SELECT g, <aggregate> FROM ev GROUP BY g", one line
CREATE FUNCTION pg_temp.grouping_plan(agg text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	plan json;
	node json;
BEGIN
	EXECUTE 'EXPLAIN (FORMAT JSON) SELECT g, ' || agg || ' FROM ev GROUP BY g' INTO plan;
	node := plan -> 0 -> 'Plan';
	RETURN concat_ws(' ', node ->> 'Node Type', node ->> 'Strategy',
	                 'groups ' || (node ->> 'Plan Rows'),
	                 'planned partitions ' || (node ->> 'Planned Partitions'));
END
$$;
CREATE TEMP TABLE agg (name text, call text);
INSERT INTO agg VALUES
	('count(*), for reference', 'count(*)'),
	('window_funnel', $$leadmgmt.window_funnel('30 days', ts, kind = 1, kind = 2, kind = 3)$$),
	('window_funnel mode', $$leadmgmt.window_funnel('30 days', 'strict_order', ts, kind = 1, kind = 2)$$),
	('funnel_step_times', $$leadmgmt.funnel_step_times('30 days', ts, kind = 1, kind = 2, kind = 3)$$),
	('funnel_step_times mode', $$leadmgmt.funnel_step_times('30 days', 'strict_order', ts, kind = 1, kind = 2)$$),
	('attribution', $$leadmgmt.attribution('linear', touch, ts)$$),
	('attribution milestone', $$leadmgmt.attribution('linear', touch, ts, kind = 9)$$),
	('decayed_sum', $$leadmgmt.decayed_sum(score, ts, interval '30 days', timestamptz '2025-01-01')$$),
	('logreg', $$leadmgmt.logreg(label, x)$$),
	('logreg l2', $$leadmgmt.logreg(label, x, 1.0)$$),
	('logreg_summary', $$leadmgmt.logreg_summary(label, x)$$),
	('logreg_summary l2', $$leadmgmt.logreg_summary(label, x, 1.0)$$),
	('logreg_step', $$leadmgmt.logreg_step(label, x, ARRAY[0, 0, 0]::float8[])$$),
	('auc', $$leadmgmt.auc(score, label)$$),
	('interval_percentiles', $$leadmgmt.interval_percentiles(ts - timestamptz '2024-01-01', ARRAY[0.5, 0.9])$$),
	('stage_conversions', $$leadmgmt.stage_conversions(g, stage, ts, ARRAY['inquiry','mql'], ARRAY['mql','sal'])$$);

SET max_parallel_workers_per_gather = 0;
-- (PostgreSQL's default work_mem of 4MB holds no 300 k groups, not even
-- count(*)'s: hash entries alone take about 15 MB)
-- 512MB: interval_percentiles' 1456 bytes a group fit in 256MB on 15 but
-- not on 18, whose hash-table entries are larger; the copy without SSPACE
-- (8 kB a group, 2.4 GB) still plans partitions
SET work_mem = '512MB';
SELECT name, pg_temp.grouping_plan(call) FROM agg ORDER BY name;
-- the check can fail: an aggregate without SSPACE plans partitions
CREATE AGGREGATE pg_temp.funnel_without_sspace(interval, timestamptz, VARIADIC boolean[]) (
	SFUNC = leadmgmt.window_funnel_trans, STYPE = internal, FINALFUNC = leadmgmt.window_funnel_final);
SELECT pg_temp.grouping_plan($$pg_temp.funnel_without_sspace('30 days', ts, kind = 1, kind = 2, kind = 3)$$);
RESET work_mem;
RESET max_parallel_workers_per_gather;
