-- covers: logreg / logreg_summary / logreg_predict / auc / logreg_step / logreg_train: closed forms, NULL skipping, empty input, every error case, parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET extra_float_digits = 0;

CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A binary feature has a closed-form MLE: x = 0: 3 of 10 positive, x = 1:
-- 6 of 10 positive, so b0 = ln(3/7), b1 = ln(6/4) - ln(3/7), and
-- se(b0) = sqrt(1/3 + 1/7), se(b1) = sqrt(1/3 + 1/7 + 1/6 + 1/4).
CREATE TEMP TABLE two (i int, y boolean, x float8);
INSERT INTO two SELECT i, CASE WHEN i < 10 THEN i < 3 ELSE i < 16 END, (i >= 10)::int
  FROM generate_series(0, 19) i;
SELECT abs(c[1] - ln(3.0 / 7)) < 1e-12 AS intercept_exact,
       abs(c[2] - (ln(6.0 / 4) - ln(3.0 / 7))) < 1e-12 AS slope_exact,
       round(c[1]::numeric, 10) AS b0, round(c[2]::numeric, 10) AS b1
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x]) AS c FROM two) s;
SELECT abs(std_err[1] - sqrt(1.0 / 3 + 1.0 / 7)) < 1e-10 AS se0_exact,
       abs(std_err[2] - sqrt(1.0 / 3 + 1.0 / 7 + 1.0 / 6 + 1.0 / 4)) < 1e-10 AS se1_exact,
       round(z_stats[2]::numeric, 6) AS z1,
       round(p_values[2]::numeric, 6) AS p1,
       round(odds_ratios[2]::numeric, 6) AS odds1,   -- (6/4) / (3/7) = 3.5
       round(log_likelihood::numeric, 8) AS loglik,
       num_rows, num_positive, l2
  FROM (SELECT (leadmgmt.logreg_summary(y, ARRAY[x])).* FROM two) s;
-- no features: the intercept is the log-odds of the base rate, ln(9/11)
SELECT abs((leadmgmt.logreg(y, '{}'))[1] - ln(9.0 / 11)) < 1e-12 AS intercept_only FROM two;

-- rows with a NULL label or NULL features are skipped
SELECT leadmgmt.logreg(y, f) = (SELECT leadmgmt.logreg(y, ARRAY[x]) FROM two) AS nulls_skipped
  FROM (SELECT y, ARRAY[x] AS f FROM two
        UNION ALL VALUES (NULL::boolean, '{5}'::float8[]), (true, NULL)) s;

-- empty input, or only skipped rows: NULL
SELECT leadmgmt.logreg(y, ARRAY[x]) IS NULL AS empty,
       leadmgmt.logreg(y, ARRAY[x], 1) IS NULL AS empty_l2,
       leadmgmt.logreg_summary(y, ARRAY[x]) IS NULL AS empty_summary,
       leadmgmt.auc(x, y) IS NULL AS empty_auc
  FROM two WHERE false;
SELECT leadmgmt.logreg(NULL::boolean, ARRAY[x]) IS NULL AS all_skipped FROM two;

-- l2 shrinks the slope, never the intercept; a huge l2 leaves the base rate
SELECT l2, round(c[1]::numeric, 6) AS b0, round(c[2]::numeric, 6) AS b1
  FROM (SELECT l2, leadmgmt.logreg(y, ARRAY[x], l2) AS c
          FROM two, (VALUES (0::float8), (1), (100), (1e300)) v(l2) GROUP BY l2) s
 ORDER BY l2;
SELECT abs(c[1] - ln(9.0 / 11)) < 1e-12 AS base_rate, abs(c[2]) < 1e-290 AS slope_zero
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x], 1e300) AS c FROM two) s;

-- errors
CREATE TEMP TABLE sep (i int, y boolean, x float8);
INSERT INTO sep SELECT i, i >= 5, i FROM generate_series(0, 9) i;
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT leadmgmt.logreg(y, CASE WHEN i = 3 THEN '{1,2}' ELSE ARRAY[x] END) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[CASE WHEN i = 3 THEN 'NaN' ELSE x END]) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[CASE WHEN i = 3 THEN '-Infinity' ELSE x END]) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[CASE WHEN i = 3 THEN NULL ELSE x END]) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[[x]]) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x], -1) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x], 'NaN') FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x], 'Infinity') FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x], NULL) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x], i % 2) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x]) FROM sep$$),
	($$SELECT leadmgmt.logreg(true, ARRAY[x], 1) FROM two$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x, x * x]) FROM two WHERE i IN (2, 3, 12)$$),
	($$SELECT leadmgmt.logreg(y, ARRAY[x * 1e200 * (i % 5 + 1) * (i % 2 * 2 - 1)]) FROM two$$),
	($$SELECT leadmgmt.logreg(y, (SELECT array_agg(g::float8) FROM generate_series(1, 1001) g)) FROM two$$),
	($$SELECT leadmgmt.logreg_summary(y, ARRAY[x, 2 * x]) FROM two$$)
	) v(q);
-- separation is fine with l2 > 0
SELECT round(c[1]::numeric, 6) AS b0, round(c[2]::numeric, 6) AS b1
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x], 1) AS c FROM sep) s;
-- quasi-complete separation (both labels only at x = 0): coefficients diverge
CREATE TEMP TABLE quasi (y boolean, x float8);
INSERT INTO quasi VALUES (false, -4), (false, -3), (false, -2), (false, -1), (false, 0),
	(true, 0), (true, 1), (true, 2), (true, 3), (true, 4);
SELECT pg_temp.err($$SELECT leadmgmt.logreg(y, ARRAY[x]) FROM quasi$$) AS quasi_separation;
SELECT round(c[2]::numeric, 6) AS b1_with_l2 FROM (SELECT leadmgmt.logreg(y, ARRAY[x], 0.5) AS c FROM quasi) s;
-- a collinear copy: the fit still converges (ridge fallback) with the same
-- linear predictor; only the standard errors are refused (above)
SELECT abs(c2[1] - c1[1]) < 1e-7 AS same_intercept, abs(c2[2] + 2 * c2[3] - c1[2]) < 1e-7 AS same_predictor
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x]) AS c1, leadmgmt.logreg(y, ARRAY[x, 2 * x]) AS c2 FROM two) s;

-- logreg_predict
SELECT round(leadmgmt.logreg_predict('{0.5, 1, -2}', '{2, 0.25}')::numeric, 12) AS p,
       round((1 / (1 + exp(-(0.5 + 2 - 0.5))))::numeric, 12) AS by_hand,
       leadmgmt.logreg_predict('{0}', '{}') AS half,
       leadmgmt.logreg_predict('{0, 1}', '{1000}') AS one,
       leadmgmt.logreg_predict('{0, 1}', '{-1000}') AS zero,
       leadmgmt.logreg_predict(NULL, '{1}') IS NULL AS strict;
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT leadmgmt.logreg_predict('{1, 2}', '{1, 2}')$$),
	($$SELECT leadmgmt.logreg_predict('{1, 2}', '{NaN}')$$),
	($$SELECT leadmgmt.logreg_predict('{1, 2}', '{NULL}')$$),
	($$SELECT leadmgmt.logreg_predict('{0, 1e300, 1e300}', '{1e300, -1e300}')$$)
	) v(q);
-- prediction with fitted coefficients: group rates 6/10 and 3/10 come back
SELECT x, round(leadmgmt.logreg_predict(c, ARRAY[x])::numeric, 10) AS p
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x]) AS c FROM two) s, (VALUES (0::float8), (1)) v(x);

-- auc: ties count one half; pos {0.9, 0.5, 0.5}, neg {0.5, 0.1} -> 5/6
SELECT round(leadmgmt.auc(s, l)::numeric, 12) AS auc, round(5 / 6.0, 12) AS by_hand
  FROM (VALUES (0.9, true), (0.5, true), (0.5, true), (0.5, false), (0.1, false),
               (NULL, true), (0.7, NULL)) v(s, l);
SELECT leadmgmt.auc(s, l) AS perfect FROM (VALUES (2::float8, true), (1, false), ('-Infinity', false)) v(s, l);
SELECT leadmgmt.auc(s, l) AS reversed FROM (VALUES ('-Infinity'::float8, true), ('Infinity', false)) v(s, l);
SELECT leadmgmt.auc(s, l) IS NULL AS one_class FROM (VALUES (1, true), (2, true)) v(s, l);
SELECT pg_temp.err($$SELECT leadmgmt.auc(s, l) FROM (VALUES ('NaN'::float8, true), (1, false)) v(s, l)$$) AS nan_score;
-- against the obviously correct pair count, on random scores with ties
SELECT setseed(0.7);
CREATE TEMP TABLE scored AS
SELECT i, floor(random() * 50)::float8 AS s, random() < 0.3 AS l FROM generate_series(1, 3000) i;
SELECT abs(leadmgmt.auc(s, l) - (SELECT sum(CASE WHEN p.s > n.s THEN 1 WHEN p.s = n.s THEN 0.5 ELSE 0 END)
                                            / (count(*))::float8
                                   FROM scored p JOIN scored n ON p.l AND NOT n.l)) < 1e-12 AS auc_equals_pair_count
  FROM scored;

-- logreg_step and logreg_step_solve misuse
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT leadmgmt.logreg_step(y, ARRAY[x], ARRAY[0, i]::float8[]) FROM two$$),
	($$SELECT leadmgmt.logreg_step(y, ARRAY[x], '{0}') FROM two$$),
	($$SELECT leadmgmt.logreg_step(y, ARRAY[x], NULL) FROM two$$),
	($$SELECT leadmgmt.logreg_step_solve('{0, 0}', '{1, 2, 3}', 0)$$),
	($$SELECT leadmgmt.logreg_step_solve('{0, 0}', (SELECT leadmgmt.logreg_step(y, ARRAY[x], '{0, 0}') FROM two), -1)$$)
	) v(q);
-- one Newton step from zero, by hand: gradient at b = 0 is sum (1/2 - y) z
SELECT s[1] AS rows, s[2] AS positives, round(s[3]::numeric, 10) = round((20 * ln(2))::numeric, 10) AS loglik_20_ln2,
       s[4] AS misclassified, s[5] AS grad0, s[6] AS grad1
  FROM (SELECT leadmgmt.logreg_step(y, ARRAY[x], '{0, 0}') AS s FROM two) t;

-- logreg_train
SELECT abs(t.coef[2] - (ln(6.0 / 4) - ln(3.0 / 7))) < 1e-12 AS driver_exact, t.iterations, t.num_rows
  FROM leadmgmt.logreg_train('two', 'y', 'ARRAY[x]') t;
SELECT leadmgmt.logreg_train('two', 'y', 'ARRAY[x]', max_iterations => 100) IS NOT NULL AS named_args,
       (SELECT max(abs(u.a - u.b)) FROM unnest((leadmgmt.logreg_train('sep', 'y', 'ARRAY[x]', 1)).coef,
                                         (SELECT leadmgmt.logreg(y, ARRAY[x], 1) FROM sep)) u(a, b)) < 1e-12 AS same_as_aggregate;
CREATE TEMP TABLE nothing (y boolean, x float8);
SELECT leadmgmt.logreg_train('nothing', 'y', 'ARRAY[x]') IS NULL AS empty_source;
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT leadmgmt.logreg_train('sep', 'y', 'ARRAY[x]')$$),
	($$SELECT leadmgmt.logreg_train('two', 'y', 'ARRAY[x]', max_iterations => 2)$$),
	($$SELECT leadmgmt.logreg_train('two', 'y', 'ARRAY[x]', -1)$$),
	($$SELECT leadmgmt.logreg_train('two', 'y', 'ARRAY[x, 2 * x]')$$),
	($$SELECT leadmgmt.logreg_train('two', 'y', NULL)$$),
	($$SELECT leadmgmt.logreg_train('no_such_table', 'y', 'ARRAY[x]')$$)
	) v(q);

-- parallel plans: partial states are serialised, combined and give the same answer
SELECT setseed(0.3);
CREATE TABLE par (i int, y boolean, x1 float8, x2 float8, s float8);
INSERT INTO par
SELECT i, random() < 1 / (1 + exp(-(0.5 * a - b))), a, b, floor(random() * 100)
  FROM (SELECT i, random() * 4 - 2 AS a, random() * 2 AS b FROM generate_series(1, 20000) i) g;
ANALYZE par;
CREATE TEMP TABLE serial AS
SELECT leadmgmt.logreg(y, ARRAY[x1, x2], 0.5) AS c, leadmgmt.auc(s, y) AS a,
       (leadmgmt.logreg_summary(y, ARRAY[x1, x2])).std_err AS se,
       leadmgmt.logreg_step(y, ARRAY[x1, x2], '{0.1, 0.2, 0.3}') AS st
  FROM par;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF)
SELECT leadmgmt.logreg(y, ARRAY[x1, x2], 0.5), leadmgmt.auc(s, y),
       leadmgmt.logreg_summary(y, ARRAY[x1, x2]), leadmgmt.logreg_step(y, ARRAY[x1, x2], '{0.1, 0.2, 0.3}')
  FROM par;
-- the solver stops once its largest relative step is below 1e-10, and a
-- parallel plan sums rows in another order, so the two fits may stop one
-- iteration apart: compare relative to that stopping rule
SELECT (SELECT max(abs(u.a - u.b) / greatest(1, abs(u.b))) FROM unnest(p.c, s.c) u(a, b)) < 1e-9 AS logreg_same,
       p.a = s.a AS auc_same,
       (SELECT max(abs(u.a - u.b)) FROM unnest(p.se, s.se) u(a, b)) < 1e-10 AS std_err_same,
       (SELECT max(abs(u.a - u.b) / greatest(1, abs(u.b))) FROM unnest(p.st, s.st) u(a, b)) < 1e-10 AS step_same,
       round(p.a::numeric, 6) AS auc
  FROM (SELECT leadmgmt.logreg(y, ARRAY[x1, x2], 0.5) AS c, leadmgmt.auc(s, y) AS a,
               (leadmgmt.logreg_summary(y, ARRAY[x1, x2])).std_err AS se,
               leadmgmt.logreg_step(y, ARRAY[x1, x2], '{0.1, 0.2, 0.3}') AS st
          FROM par) p, serial s;
-- errors raised inside a worker reach the leader
SELECT left(pg_temp.err($$SELECT leadmgmt.logreg(y, CASE WHEN i = 15000 THEN '{1}' ELSE ARRAY[x1, x2] END) FROM par$$), 5) AS in_worker;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;
DROP TABLE par;
