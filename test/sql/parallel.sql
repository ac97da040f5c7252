-- covers: every aggregate is combinable and parallel safe (catalog, so a new one shows here); forced parallel plans for the overloads no other file runs in parallel (logreg without l2, logreg_summary with l2), grouped per lead and whole, same answers as serial
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- every aggregate: plain (no ordered-set, so no ORDER BY inside), parallel
-- safe, a combine function, and serialise/deserialise for internal states;
-- support functions parallel safe too.  Forced parallel runs: funnel_parallel
-- (window_funnel, funnel_step_times), sequences (sequence_match,
-- sequence_count, retention), decayed_sum, attribution, learned
-- (logreg with l2, logreg_summary, logreg_step, auc) and this file.
SELECT a.aggfnoid::regprocedure AS aggregate, a.aggkind, p.proparallel,
       a.aggcombinefn <> 0 AS combine,
       a.aggtranstype = 'internal'::regtype AS internal_state,
       a.aggserialfn <> 0 AND a.aggdeserialfn <> 0 AS serial,
       a.aggfinalmodify AS final_modify
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
 WHERE p.pronamespace = 'leadmgmt'::regnamespace
 ORDER BY a.aggfnoid::regprocedure::text;
SELECT a.aggfnoid::regprocedure AS aggregate, f.oid::regprocedure AS not_parallel_safe
  FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid,
       unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn]::oid[]) s(fn)
  JOIN pg_proc f ON f.oid = s.fn
 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND f.proparallel <> 's';

-- 40 groups of 1000 rows with a known logistic model
SELECT setseed(0.41);
CREATE TABLE obs (g int, y boolean, x1 float8, x2 float8) WITH (parallel_workers = 2);
INSERT INTO obs
SELECT i % 40, random() < 1 / (1 + exp(-(0.3 + 0.8 * a - 0.5 * b))), a, b
  FROM (SELECT i, random() * 4 - 2 AS a, random() * 3 AS b FROM generate_series(1, 40000) i) r;
ANALYZE obs;

CREATE VIEW fits AS
SELECT g, leadmgmt.logreg(y, ARRAY[x1, x2]) AS coef,
       (leadmgmt.logreg_summary(y, ARRAY[x1, x2], 2.0)).coef AS coef_l2,
       (leadmgmt.logreg_summary(y, ARRAY[x1, x2], 2.0)).std_err AS se_l2
  FROM obs GROUP BY g;
CREATE VIEW fit_all AS
SELECT leadmgmt.logreg(y, ARRAY[x1, x2]) AS coef,
       (leadmgmt.logreg_summary(y, ARRAY[x1, x2], 2.0)).coef AS coef_l2
  FROM obs;

SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial_fits AS SELECT * FROM fits;
CREATE TABLE serial_all AS SELECT * FROM fit_all;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET enable_hashagg = off;
-- the plans: partial aggregates in the workers, combined above the Gather
EXPLAIN (COSTS OFF) CREATE TABLE parallel_fits AS SELECT * FROM fits;
CREATE TABLE parallel_fits AS SELECT * FROM fits;
EXPLAIN (COSTS OFF) CREATE TABLE parallel_all AS SELECT * FROM fit_all;
CREATE TABLE parallel_all AS SELECT * FROM fit_all;

-- each worker fits its rows' share of a group's state; the solver stops on a
-- relative step below 1e-10, and another summation order may stop it one
-- step apart: compare relative to that
CREATE FUNCTION pg_temp.reldiff(a float8[], b float8[]) RETURNS float8 LANGUAGE sql AS $$
	SELECT max(abs(u.x - u.y) / greatest(1, abs(u.y))) FROM unnest(a, b) u(x, y)
$$;
SELECT count(*) AS groups,
       count(*) FILTER (WHERE pg_temp.reldiff(p.coef, s.coef) > 1e-9
                           OR pg_temp.reldiff(p.coef_l2, s.coef_l2) > 1e-9
                           OR pg_temp.reldiff(p.se_l2, s.se_l2) > 1e-9
                           OR p.coef IS NULL OR p.coef_l2 IS NULL) AS differ
  FROM parallel_fits p JOIN serial_fits s USING (g);
SELECT pg_temp.reldiff(p.coef, s.coef) < 1e-9 AS logreg_same,
       pg_temp.reldiff(p.coef_l2, s.coef_l2) < 1e-9 AS logreg_summary_l2_same,
       round(p.coef[2]::numeric, 2) AS slope_x1, round(p.coef[3]::numeric, 2) AS slope_x2
  FROM parallel_all p, serial_all s;
RESET enable_hashagg;
RESET parallel_leader_participation;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;
DROP VIEW fits, fit_all;
DROP TABLE obs, serial_fits, serial_all, parallel_fits, parallel_all;
