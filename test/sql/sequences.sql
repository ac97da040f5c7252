-- covers: sequence_match, sequence_count, retention: every pattern element, ClickHouse's quirks, non-overlapping counting, the tie rule, NULLs and infinity, errors (42601, 22023, 54000), hostile patterns, forced parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET search_path = public, leadmgmt;
SET timezone = 'UTC';

-- second n of 2024
CREATE FUNCTION st(n bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT timestamptz '2024-01-01 00:00:00+00' + n * interval '1 second' $$;

-- events of lead l: kinds a, b, c, x (x matches no condition, so it is no event)
CREATE TABLE sev (lead int, n int, kind text);
INSERT INTO sev VALUES
	(1, 0, 'a'), (1, 3, 'b'), (1, 10, 'c'),
	(2, 0, 'a'), (2, 8, 'b'), (2, 9, 'c'),
	(3, 0, 'a'), (3, 1, 'x'), (3, 2, 'b'), (3, 4, 'a'), (3, 5, 'b'), (3, 6, 'a'), (3, 7, 'c'),
	(4, 0, 'b'), (4, 1, 'a'),
	(5, 0, 'a'), (5, 2, 'a'), (5, 4, 'a'), (5, 6, 'b');
-- the answers below are ClickHouse 26.7.2's (make conformance runs 28
-- patterns over 1,800 random groups through both engines)
SELECT lead,
	sequence_match('(?1)(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS adjacent,
	sequence_match('(?1).*(?3)', st(n), kind = 'a', kind = 'b', kind = 'c') AS a_then_c,
	sequence_match('(?1)(?t<=5)(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS b_within_5s,
	sequence_match('(?1)(?t>5)(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS b_after_5s,
	sequence_match('(?1).(?3)', st(n), kind = 'a', kind = 'b', kind = 'c') AS a_any_c,
	sequence_count('(?1)(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS count_ab,
	sequence_count('(?1).*(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS count_a_b,
	sequence_count('(?1)', st(n), kind = 'a', kind = 'b', kind = 'c') AS count_a,
	sequence_count('(?1)(?t==2)(?1)', st(n), kind = 'a', kind = 'b', kind = 'c') AS count_a_2s_a
FROM sev GROUP BY lead ORDER BY lead;

-- every pattern element, on lead 3 (a b a b a c at 0 2 4 5 6 7, x skipped)
SELECT p AS pattern,
	(SELECT sequence_match(p, st(n), kind = 'a', kind = 'b', kind = 'c') FROM sev WHERE lead = 3) AS match,
	(SELECT sequence_count(p, st(n), kind = 'a', kind = 'b', kind = 'c') FROM sev WHERE lead = 3) AS count
FROM unnest(ARRAY['', '.', '.*', '(?1)(?2)(?1)', '(?2)(?1)', '(?1)..(?3)', '(?1)(?t<2)(?2)',
	'(?1)(?t<=2)(?2)', '(?1)(?t>=2)(?2)', '(?1)(?t>1)(?2)', '(?1)(?t==1)(?2)', '(?t<1)(?3)',
	'(?1).*(?t<=1)(?3)', '(?1)(?t>=0)(?3)', '(?3)(?t<9)', '(?1)(?t>3).']) p;

-- ties: rows at one instant are taken in the order of their condition sets
-- (condition N weighs 2^(N-1)), whatever order they arrive in
SELECT sequence_match('(?1)(?2)', st(n), kind = 'a', kind = 'b' ORDER BY kind) AS asc_order,
	sequence_match('(?1)(?2)', st(n), kind = 'a', kind = 'b' ORDER BY kind DESC) AS desc_order,
	sequence_match('(?2)(?1)', st(n), kind = 'a', kind = 'b') AS b_before_a
FROM (VALUES (5, 'b'), (5, 'a')) v(n, kind);

-- NULL and infinite timestamps and NULL conditions are no events; no rows
SELECT sequence_match('(?1)(?2)', ts, k = 'a', k = 'b') AS m,
	sequence_count('(?1)', ts, k = 'a', k = 'b') AS c,
	retention(k = 'a', k = 'b') AS r
FROM (VALUES (st(1), 'a'), (NULL, 'b'), ('infinity', 'b'), (st(2), NULL), (st(3), 'b')) v(ts, k);
SELECT sequence_match('(?1)', st(n), kind = 'a') AS no_rows_match, sequence_count('(?1)', st(n), kind = 'a') AS no_rows_count,
	retention(kind = 'a', kind = 'b') AS no_rows_retention
FROM sev WHERE false;
SELECT sequence_match('(?1)', st(n), VARIADIC NULL::boolean[]) AS null_array,
	sequence_count('.', st(n), kind = 'zzz') AS no_event
FROM sev WHERE lead = 1;

-- retention: seminar attendees who came back in month 1, 2 and 3
CREATE TABLE seminar_visits (lead int, at date);
INSERT INTO seminar_visits VALUES
	(1, '2024-01-10'), (1, '2024-02-03'), (1, '2024-04-20'),
	(2, '2024-01-15'), (2, '2024-03-01'),
	(3, '2024-02-01'), (3, '2024-03-05'),
	(4, '2024-01-20');
SELECT lead, retention(at < '2024-02-01', at >= '2024-02-01' AND at < '2024-03-01',
	at >= '2024-03-01' AND at < '2024-04-01', at >= '2024-04-01' AND at < '2024-05-01') AS months
FROM seminar_visits GROUP BY lead ORDER BY lead;
SELECT retention(NULL::boolean, true) AS null_first, retention(true, NULL, true) AS null_middle;

-- the aggregates share their state over the same arguments, and work as
-- window functions (a running match over a lead's timeline)
SELECT n, kind, sequence_match('(?1).*(?2)', st(n), kind = 'a', kind = 'b') OVER (ORDER BY n) AS so_far,
	sequence_count('(?1).*(?2)', st(n), kind = 'a', kind = 'b') OVER (ORDER BY n) AS count_so_far
FROM sev WHERE lead = 3 ORDER BY n;

-- hostile patterns finish: nested .* and a time condition over 20,000 events
-- (ClickHouse's backtracking gives up with TOO_SLOW here)
SET statement_timeout = '60s';
SELECT sequence_match('(?1).*(?1).*(?1).*(?1).*(?1)(?t>100000)(?2)', st(i), i < 19999, i = 19999) AS hostile_match,
	sequence_count('(?1).*(?1).*(?1)(?t<=5000)(?2)', st(i), i < 19999, i = 19999) AS hostile_count
FROM generate_series(0, 19999) i;
RESET statement_timeout;

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------
\set VERBOSITY default
SELECT sequence_match('(?1)(?3)', st(n), kind = 'a', kind = 'b') FROM sev;
SELECT sequence_match('(?0)', st(n), kind = 'a') FROM sev;
SELECT sequence_match('(?1) (?2)', st(n), kind = 'a', kind = 'b') FROM sev;
SELECT sequence_match('(?1)(?t!5)(?2)', st(n), kind = 'a', kind = 'b') FROM sev;
SELECT sequence_count('(?1', st(n), kind = 'a') FROM sev;
SELECT sequence_count('(?1)(?t<1)(?t>2)', st(n), kind = 'a') FROM sev;
SELECT sequence_count('(?x)', st(n), kind = 'a') FROM sev;
SELECT sequence_count(repeat('.', 129), st(n), kind = 'a') FROM sev;
SELECT sequence_match(NULL, st(n), kind = 'a') FROM sev;
SELECT sequence_match('(?1)', st(n), VARIADIC '{}'::boolean[]) FROM sev;
SELECT sequence_match('(?1)', st(n), VARIADIC array_fill(true, ARRAY[33])) FROM sev;
SELECT sequence_match(CASE WHEN kind = 'a' THEN '(?1)' ELSE '(?1).' END, st(n), kind = 'a') FROM sev WHERE lead = 1;
SELECT retention(kind = 'a') FROM sev;
SELECT retention(VARIADIC CASE WHEN kind = 'a' THEN ARRAY[true, true] ELSE ARRAY[true, true, false] END) FROM sev WHERE lead = 1;
-- a malformed pattern is an error even when no row matches a condition
SELECT sequence_match('(?1)(', st(n), false) FROM sev;
-- but it may differ between groups
SELECT lead, sequence_match(CASE WHEN lead = 1 THEN '(?1)(?2)' ELSE '(?2)(?3)' END, st(n), kind = 'a', kind = 'b', kind = 'c') AS per_group
FROM sev WHERE lead IN (1, 2) GROUP BY lead ORDER BY lead;
\set VERBOSITY terse

-------------------------------------------------------------------------------
-- Forced parallel plans: partial states serialised, combined, deserialised
-------------------------------------------------------------------------------
SELECT setseed(0.1717);
CREATE TABLE spev (lead int, n int, kind text) WITH (parallel_workers = 2);
INSERT INTO spev
SELECT (random() * 2000)::int, (random() * 100000)::int,
	(ARRAY['a', 'b', 'c', 'd', 'x'])[1 + floor(random() * 5)::int]
FROM generate_series(1, 50000);
ANALYZE spev;
CREATE VIEW seq_per_lead AS
SELECT lead,
	sequence_match('(?1)(?t<=3600)(?2).*(?3)', st(n), kind = 'a', kind = 'b', kind = 'c') AS m,
	sequence_count('(?1).*(?2)', st(n), kind = 'a', kind = 'b', kind = 'c') AS c,
	retention(kind = 'a', kind = 'b', kind = 'c', kind = 'd') AS r
FROM spev GROUP BY lead;
CREATE VIEW seq_whole AS
SELECT sequence_count('(?1)(?2)', st(n), kind = 'a', kind = 'b') AS c,
	sequence_match('(?4)(?t<=10)(?4)', st(n), kind = 'a', kind = 'b', kind = 'c', kind = 'd') AS m,
	retention(kind = 'a', kind = 'b', kind = 'x') AS r
FROM spev;
SET max_parallel_workers_per_gather = 0;
CREATE TABLE seq_serial_per_lead AS SELECT * FROM seq_per_lead;
CREATE TABLE seq_serial_whole AS SELECT * FROM seq_whole;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT * FROM seq_per_lead;
EXPLAIN (COSTS OFF) SELECT * FROM seq_whole;
CREATE TABLE seq_parallel_per_lead AS SELECT * FROM seq_per_lead;
CREATE TABLE seq_parallel_whole AS SELECT * FROM seq_whole;
SELECT (SELECT count(*) FROM seq_serial_per_lead) AS leads,
	(SELECT count(*) FILTER (WHERE m) FROM seq_serial_per_lead) AS matching,
	(SELECT sum(c) FROM seq_serial_per_lead) AS counted,
	(SELECT count(*) FROM (SELECT * FROM seq_serial_per_lead EXCEPT SELECT * FROM seq_parallel_per_lead) d) AS serial_only,
	(SELECT count(*) FROM (SELECT * FROM seq_parallel_per_lead EXCEPT SELECT * FROM seq_serial_per_lead) d) AS parallel_only;
SELECT s.c = p.c AS same_count, s.m = p.m AS same_match, s.r = p.r AS same_retention, s.c, s.m, s.r
FROM seq_serial_whole s, seq_parallel_whole p;
RESET enable_hashagg;
RESET parallel_leader_participation;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;
