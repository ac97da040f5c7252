-- covers: decayed_sum aggregate: exact values, NULLs, future rows, constants, far times, errors, parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';

CREATE TABLE touches (lead int, points float8, ts timestamptz);
INSERT INTO touches VALUES
	(1, 10, '2026-01-01'), (1, 4, '2026-01-08'), (1, -2, '2026-01-15'),
	(1, 100, '2026-02-01'),          -- after "at" below: excluded
	(1, NULL, '2026-01-02'), (1, 7, NULL),
	(2, 5, '2026-01-15'),
	(3, NULL, '2026-01-01');

-- one half-life is 7 days: 10/4 + 4/2 - 2 = 2.5 at 2026-01-15
SELECT lead, leadmgmt.decayed_sum(points, ts, '7 days', '2026-01-15') AS decayed,
       leadmgmt.decayed_sum(points, ts, NULL, '2026-01-15') AS no_decay
  FROM touches GROUP BY lead ORDER BY lead;
-- the same as the obvious formula
SELECT round(leadmgmt.decayed_sum(points, ts, '30 days', '2026-03-01')::numeric, 12) AS aggregate,
       round(sum(points * power(0.5, extract(epoch FROM '2026-03-01'::timestamptz - ts) / extract(epoch FROM interval '30 days')))::numeric, 12) AS formula
  FROM touches WHERE points IS NOT NULL AND ts IS NOT NULL;
-- no rows: NULL, like sum()
SELECT leadmgmt.decayed_sum(points, ts, '7 days', now()) FROM touches WHERE false;
-- far past and infinite times neither overflow nor produce NaN
SELECT leadmgmt.decayed_sum(p, t, '1 second', '294276-12-31 23:59:59+00') AS far_future_at,
       leadmgmt.decayed_sum(p, t, '1000 years', 'infinity') AS infinite_at
  FROM (VALUES (1.0::float8, '-infinity'::timestamptz), (2.0, '4713-01-01 BC'), (3.0, '2026-01-01')) v(p, t);
SELECT leadmgmt.decayed_sum(1, '-infinity', NULL, '2026-01-01') AS no_decay_from_minus_infinity;

-- errors: non-finite points, non-positive half-life, NULL at, constants that vary
SELECT leadmgmt.decayed_sum('NaN', now(), '1 day', now());
SELECT leadmgmt.decayed_sum('Infinity', now(), '1 day', now());
SELECT leadmgmt.decayed_sum(1, now(), '0', now());
SELECT leadmgmt.decayed_sum(1, now(), '-1 day', now());
SELECT leadmgmt.decayed_sum(1, now(), '1 day', NULL);
SELECT leadmgmt.decayed_sum(points, ts, ('1 day'::interval * lead), '2026-01-15') FROM touches;
SELECT leadmgmt.decayed_sum(points, ts, '1 day', '2026-01-15'::timestamptz + lead * interval '1 hour') FROM touches;

-- parallel plans: same answer as serial, with the partial aggregate in the workers
CREATE TABLE many AS
SELECT g % 97 AS lead, (g % 13) - 3.5 AS points, timestamptz '2026-01-01' + (g % 1000) * interval '1 hour' AS ts
  FROM generate_series(1, 200000) g;
ANALYZE many;
CREATE TEMP TABLE serial AS
SELECT lead, leadmgmt.decayed_sum(points, ts, '14 days', '2026-03-01') AS v FROM many GROUP BY lead;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF)
SELECT leadmgmt.decayed_sum(points, ts, '14 days', '2026-03-01') FROM many;
SELECT abs(leadmgmt.decayed_sum(points, ts, '14 days', '2026-03-01')
           - (SELECT sum(v) FROM serial)) < 1e-6 AS parallel_total_matches
  FROM many;
EXPLAIN (COSTS OFF)
SELECT lead, leadmgmt.decayed_sum(points, ts, '14 days', '2026-03-01') FROM many GROUP BY lead;
SELECT count(*) AS leads, count(*) FILTER (WHERE abs(p.v - s.v) > 1e-9 * greatest(1, abs(s.v))) AS mismatches
  FROM (SELECT lead, leadmgmt.decayed_sum(points, ts, '14 days', '2026-03-01') AS v FROM many GROUP BY lead) p
  JOIN serial s USING (lead);
-- partial aggregates that saw only NULL points (no state) are combined as
-- NULL, not serialised (this crashed a worker before 1.1.0)
EXPLAIN (COSTS OFF)
SELECT leadmgmt.decayed_sum(NULL::float8, ts, '14 days', '2026-03-01') FROM many;
SELECT leadmgmt.decayed_sum(NULL::float8, ts, '14 days', '2026-03-01') IS NULL AS all_null_is_null FROM many;
SELECT p.half, p.v IS NULL AS no_points, abs(p.v - s.total) < 1e-6 AS matches_serial
  FROM (SELECT lead % 2 AS half,
               leadmgmt.decayed_sum(CASE WHEN lead % 2 = 0 THEN points END, ts, '14 days', '2026-03-01') AS v
          FROM many GROUP BY lead % 2) p
  JOIN (SELECT lead % 2 AS half, sum(v) AS total FROM serial GROUP BY lead % 2) s USING (half)
 ORDER BY 1;
