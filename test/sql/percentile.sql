-- covers: interval_percentiles (exact percentile_cont by selection), errors, NULLs, parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SELECT setseed(0.42);
-- groups of every size, intervals with months, days, negative and equal
-- values, and NULLs, against percentile_cont itself
CREATE TABLE pct AS
SELECT g % 97 AS grp,
       CASE WHEN random() < 0.05 THEN NULL
            WHEN g % 5 = 0 THEN make_interval(months => (random() * 3)::int, days => (random() * 40)::int - 10)
            WHEN g % 7 = 0 THEN interval '1 day'
            ELSE make_interval(secs => (random() * 2e6)::int - 5e5) END AS v
  FROM generate_series(1, 20000) g;
WITH ours AS (
	SELECT grp, leadmgmt.interval_percentiles(v, '{0,0.1,0.25,0.5,0.9,0.99,1}') AS p FROM pct GROUP BY grp
), theirs AS (
	SELECT grp, ARRAY[percentile_cont(0) WITHIN GROUP (ORDER BY v), percentile_cont(0.1) WITHIN GROUP (ORDER BY v),
	                  percentile_cont(0.25) WITHIN GROUP (ORDER BY v), percentile_cont(0.5) WITHIN GROUP (ORDER BY v),
	                  percentile_cont(0.9) WITHIN GROUP (ORDER BY v), percentile_cont(0.99) WITHIN GROUP (ORDER BY v),
	                  percentile_cont(1) WITHIN GROUP (ORDER BY v)] AS p
	  FROM pct GROUP BY grp
)
SELECT count(*) AS groups,
       count(*) FILTER (WHERE o.p IS DISTINCT FROM t.p) AS mismatches,
       -- equal lengths written differently ('1 mon' and '30 days') tie in
       -- both orders, and either may be picked
       count(*) FILTER (WHERE o.p::text IS DISTINCT FROM t.p::text) AS written_differently
  FROM ours o FULL JOIN theirs t USING (grp);
-- hand-computed: 1, 2, 3, 10 days: the median is halfway between 2 and 3
SELECT leadmgmt.interval_percentiles(v, '{0.5,0.9,1}')
  FROM (VALUES (interval '10 days'), ('1 day'), (NULL), ('3 days'), ('2 days')) AS t(v);
-- no values, or only NULLs: NULL, as percentile_cont
SELECT leadmgmt.interval_percentiles(v, '{0.5}') IS NULL AS empty_is_null
  FROM (SELECT NULL::interval WHERE false) t(v);
SELECT leadmgmt.interval_percentiles(NULL::interval, '{0.5}') IS NULL AS nulls_only_is_null;
-- as a window function: the state is not changed by the final function
SELECT x, leadmgmt.interval_percentiles(make_interval(days => x), '{0.5}') OVER (ORDER BY x) AS running_median
  FROM generate_series(1, 4) x;
-- bad fractions
SELECT leadmgmt.interval_percentiles(interval '1 day', '{1.5}');
SELECT leadmgmt.interval_percentiles(interval '1 day', '{-0.1}');
SELECT leadmgmt.interval_percentiles(interval '1 day', '{NaN}');
SELECT leadmgmt.interval_percentiles(interval '1 day', '{NULL}');
SELECT leadmgmt.interval_percentiles(interval '1 day', NULL);
SELECT leadmgmt.interval_percentiles(interval '1 day', '{}');
SELECT leadmgmt.interval_percentiles(interval '1 day', '{{0.5}}');
SELECT leadmgmt.interval_percentiles(make_interval(days => x), ARRAY[x / 10.0]) FROM generate_series(1, 3) x;
-- forced parallel plan: same answers, and the plan is parallel
ALTER TABLE pct SET (parallel_workers = 2);
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF)
SELECT grp, leadmgmt.interval_percentiles(v, '{0.5,0.9}') FROM pct GROUP BY grp;
CREATE TEMP TABLE par AS SELECT grp, leadmgmt.interval_percentiles(v, '{0.5,0.9}') AS p FROM pct GROUP BY grp;
RESET max_parallel_workers_per_gather;
CREATE TEMP TABLE ser AS SELECT grp, leadmgmt.interval_percentiles(v, '{0.5,0.9}') AS p FROM pct GROUP BY grp;
-- compared as values: of equal lengths written differently ('1 mon', '30 days')
-- either may be picked, and which one depends on which worker read which row
SELECT count(*) AS groups, count(*) FILTER (WHERE par.p IS DISTINCT FROM ser.p) AS mismatches
  FROM par FULL JOIN ser USING (grp);
-- whole table in one group through Gather: every partial state combined
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT leadmgmt.interval_percentiles(v, '{0.5}') FROM pct;
SELECT (SELECT leadmgmt.interval_percentiles(v, '{0.5}') FROM pct)
     = (SELECT ARRAY[percentile_cont(0.5) WITHIN GROUP (ORDER BY v)] FROM pct) AS parallel_equals_percentile_cont;
