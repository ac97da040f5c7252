-- covers: window_funnel/funnel_step_times: every case of ClickHouse's 00632_aggregation_window_funnel (answers of ClickHouse 26.7.2, make conformance), tie rules, NULLs, infinity, window edges, errors
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET search_path = public, leadmgmt;
SET timezone = 'UTC';

-- ClickHouse timestamps are UInt32 seconds here: t(n) is second n of 2018.
CREATE FUNCTION t(n bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT timestamptz '2018-01-01 00:00:00+00' + n * interval '1 second' $$;
CREATE FUNCTION w(n bigint) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT n * interval '1 second' $$;

-------------------------------------------------------------------------------
-- 00632: funnel_test, events 1000..1008 at seconds 0..8
-------------------------------------------------------------------------------
CREATE TABLE funnel_test (ts timestamptz, event int);
INSERT INTO funnel_test SELECT t(i), 1000 + i FROM generate_series(0, 8) i;
SELECT window_funnel(w(10000), ts, event = 1000) AS got, 1 AS clickhouse FROM funnel_test
UNION ALL SELECT window_funnel(w(10000), ts, event = 1000, event = 1001), 2 FROM funnel_test
UNION ALL SELECT window_funnel(w(10000), ts, event = 1000, event = 1001, event = 1002), 3 FROM funnel_test
UNION ALL SELECT window_funnel(w(10000), ts, event = 1000, event = 1001, event = 1002, event = 1008), 4 FROM funnel_test
UNION ALL SELECT window_funnel(w(1), ts, event = 1000), 1 FROM funnel_test
UNION ALL SELECT window_funnel(w(2), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007), 3 FROM funnel_test
UNION ALL SELECT window_funnel(w(3), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007), 4 FROM funnel_test
UNION ALL SELECT window_funnel(w(4), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007), 5 FROM funnel_test;

-- funnel_test2: DateTime '2018-01-01 01:01:01' .. 08, events 1001..1008
CREATE TABLE funnel_test2 (uid int DEFAULT 1, ts timestamptz, event int);
INSERT INTO funnel_test2 (ts, event)
SELECT timestamptz '2018-01-01 01:01:00+00' + i * interval '1 second', 1000 + i FROM generate_series(1, 8) i;
SELECT window_funnel(w(4), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007) AS got, 5 AS clickhouse FROM funnel_test2
UNION ALL SELECT window_funnel(w(10000), ts, event = 1001, event = 1008), 2 FROM funnel_test2
UNION ALL SELECT window_funnel(w(10000), ts, event = 1008, event = 1001), 1 FROM funnel_test2
UNION ALL SELECT window_funnel(w(4), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007), 5 FROM funnel_test2
UNION ALL SELECT window_funnel(w(4), ts, event <= 1007, event >= 1002, event <= 1006, event >= 1004), 4 FROM funnel_test2;

-- funnel_test_u64: UInt64 timestamps 1e14 + 1..8; here the far end of
-- timestamptz's range (year 294000) with the same second offsets
CREATE TABLE funnel_test_u64 (uid int DEFAULT 1, ts timestamptz, event int);
INSERT INTO funnel_test_u64 (ts, event)
SELECT timestamptz '294000-01-01 00:00:00+00' + i * interval '1 second', 1000 + i FROM generate_series(1, 8) i;
SELECT window_funnel(w(4), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007) AS got, 5 AS clickhouse FROM funnel_test_u64
UNION ALL SELECT window_funnel(w(10000), ts, event = 1001, event = 1008), 2 FROM funnel_test_u64
UNION ALL SELECT window_funnel(w(10000), ts, event = 1008, event = 1001), 1 FROM funnel_test_u64
UNION ALL SELECT window_funnel(w(4), ts, event = 1003, event = 1004, event = 1005, event = 1006, event = 1007), 5 FROM funnel_test_u64
UNION ALL SELECT window_funnel(w(4), ts, event <= 1007, event >= 1002, event <= 1006, event >= 1004), 4 FROM funnel_test_u64;

-- funnel_test_strict: 1005 twice (50, 51)
CREATE TABLE funnel_test_strict (ts timestamptz, event int);
INSERT INTO funnel_test_strict VALUES
	(t(0), 1000), (t(10), 1001), (t(20), 1002), (t(30), 1003), (t(40), 1004),
	(t(50), 1005), (t(51), 1005), (t(60), 1006), (t(70), 1007), (t(80), 1008);
SELECT window_funnel(w(10000), 'strict_deduplication', ts, event = 1000, event = 1001, event = 1002, event = 1003, event = 1004, event = 1005, event = 1006) AS got, 6 AS clickhouse FROM funnel_test_strict
UNION ALL SELECT window_funnel(w(10000), ts, event = 1000, event = 1001, event = 1002, event = 1003, event = 1004, event = 1005, event = 1006), 7 FROM funnel_test_strict;

-- funnel_test_strict_order: users 1..6, then 7
CREATE TABLE funnel_test_strict_order (dt timestamptz, "user" int, event text);
INSERT INTO funnel_test_strict_order VALUES
	(t(1), 1, 'a'), (t(2), 1, 'b'), (t(3), 1, 'c'),
	(t(1), 2, 'a'), (t(2), 2, 'd'), (t(3), 2, 'b'), (t(4), 2, 'c'),
	(t(1), 3, 'a'), (t(2), 3, 'a'), (t(3), 3, 'b'), (t(4), 3, 'b'), (t(5), 3, 'c'), (t(6), 3, 'c'),
	(t(1), 4, 'a'), (t(2), 4, 'a'), (t(3), 4, 'a'), (t(4), 4, 'a'), (t(5), 4, 'b'), (t(6), 4, 'b'), (t(7), 4, 'c'), (t(8), 4, 'c'),
	(t(1), 5, 'a'), (t(2), 5, 'a'), (t(3), 5, 'b'), (t(4), 5, 'b'), (t(5), 5, 'd'), (t(6), 5, 'c'), (t(7), 5, 'c'),
	(t(1), 6, 'c'), (t(2), 6, 'c'), (t(3), 6, 'b'), (t(4), 6, 'b'), (t(5), 6, 'a'), (t(6), 6, 'a');
-- ClickHouse 26.7.2 (as the 00632 .reference): default 3 3 3 3 3 1;
-- strict_order 3 1 3 3 2 1; both 3 1 2 2 2 1
SELECT "user",
	window_funnel(w(86400), dt, event = 'a', event = 'b', event = 'c') AS default_mode,
	window_funnel(w(86400), 'strict_order', dt, event = 'a', event = 'b', event = 'c') AS strict_order,
	window_funnel(w(86400), 'strict_deduplication, strict_order', dt, event = 'a', event = 'b', event = 'c') AS dedup_and_order
FROM funnel_test_strict_order GROUP BY "user" ORDER BY "user";
INSERT INTO funnel_test_strict_order VALUES (t(1), 7, 'a'), (t(2), 7, 'c'), (t(3), 7, 'b');
-- ClickHouse: [7, 1]
SELECT "user", window_funnel(w(10), 'strict_order', dt, event = 'a', event = 'b', event = 'c') AS s
FROM funnel_test_strict_order WHERE "user" = 7 GROUP BY "user";

-- ClickHouse issue 27469: a b c b d, strict_deduplication stops at the second b
CREATE TABLE strict_bitethedddd (ts timestamptz, event text);
INSERT INTO strict_bitethedddd VALUES (t(1), 'a'), (t(2), 'b'), (t(3), 'c'), (t(4), 'b'), (t(5), 'd');
SELECT window_funnel(w(86400), 'strict_deduplication', ts, event = 'a', event = 'b', event = 'c', event = 'd') AS got, 3 AS clickhouse
FROM strict_bitethedddd;

-- funnel_test_non_null: NULL columns.  ClickHouse's current test compares
-- COALESCE(a, '') = 'a1'; a plain a = 'a1' is NULL there, and a NULL step flag
-- counts as false, so both spellings must agree.
CREATE TABLE funnel_test_non_null (dt timestamptz, u int, a text, b text);
INSERT INTO funnel_test_non_null VALUES
	(t(1), 1, 'a1', 'b1'), (t(2), 1, 'a2', 'b2'),
	(t(1), 2, 'a1', NULL), (t(2), 2, 'a2', NULL),
	(t(1), 3, NULL, NULL),
	(t(1), 4, NULL, 'b1'), (t(2), 4, 'a2', NULL), (t(3), 4, NULL, 'b3');
-- ClickHouse: q1 2 2 0 0; q2 2 1 0 0; q3 0 0 1 0; q4 0 0 1 2; q5 (strict_order) 0 0 1 1
SELECT u,
	window_funnel(w(86400), dt, COALESCE(a, '') = 'a1', COALESCE(a, '') = 'a2') AS q1,
	window_funnel(w(86400), dt, a = 'a1', a = 'a2') AS q1_nulls,
	window_funnel(w(86400), dt, COALESCE(a, '') = 'a1', COALESCE(b, '') = 'b2') AS q2,
	window_funnel(w(86400), dt, a = 'a1', b = 'b2') AS q2_nulls,
	window_funnel(w(86400), dt, a IS NULL AND b IS NULL) AS q3,
	window_funnel(w(86400), dt, a IS NULL, COALESCE(b, '') = 'b3') AS q4,
	window_funnel(w(86400), dt, a IS NULL, b = 'b3') AS q4_nulls,
	window_funnel(w(86400), 'strict_order', dt, a IS NULL, COALESCE(b, '') = 'b3') AS q5,
	window_funnel(w(86400), 'strict_order', dt, a IS NULL, b = 'b3') AS q5_nulls
FROM funnel_test_non_null GROUP BY u ORDER BY u;

-- funnel_test_strict_increase: 1001, 1002, 1003 at the same second
CREATE TABLE funnel_test_strict_increase (ts timestamptz, event int);
INSERT INTO funnel_test_strict_increase VALUES (t(0), 1000), (t(1), 1001), (t(1), 1002), (t(1), 1003), (t(2), 1004);
SELECT window_funnel(w(10000), ts, event = 1000, event = 1001, event = 1002, event = 1003, event = 1004) AS got, 5 AS clickhouse FROM funnel_test_strict_increase
UNION ALL SELECT window_funnel(w(10000), 'strict_increase', ts, event = 1000, event = 1001, event = 1002, event = 1003, event = 1004), 2 FROM funnel_test_strict_increase
UNION ALL SELECT window_funnel(w(10000), ts, event = 1004, event = 1004, event = 1004), 3 FROM funnel_test_strict_increase
UNION ALL SELECT window_funnel(w(10000), 'strict_once', ts, event = 1004, event = 1004, event = 1004), 1 FROM funnel_test_strict_increase
UNION ALL SELECT window_funnel(w(10000), 'strict_increase', ts, event = 1004, event = 1004, event = 1004), 1 FROM funnel_test_strict_increase;

-- failure, failure, success per uid (strict_once and friends)
CREATE TABLE funnel_test_once (event_ts timestamptz, result text, uid int);
INSERT INTO funnel_test_once VALUES
	(t(100), 'failure', 234), (t(200), 'success', 345), (t(210), 'failure', 345),
	(t(230), 'success', 345), (t(250), 'failure', 234), (t(180), 'failure', 123),
	(t(220), 'failure', 123), (t(250), 'success', 123);
-- ClickHouse, all three modes: 123 -> 3, 234 -> 2, 345 -> 1
SELECT uid,
	window_funnel(w(200), 'strict_once, strict_increase', event_ts, result = 'failure', result = 'failure', result = 'success') AS once_increase,
	window_funnel(w(200), 'strict_once', event_ts, result = 'failure', result = 'failure', result = 'success') AS once,
	window_funnel(w(200), 'strict_once, strict_deduplication', event_ts, result = 'failure', result = 'failure', result = 'success') AS once_dedup
FROM funnel_test_once WHERE event_ts BETWEEN t(0) AND t(300) GROUP BY uid ORDER BY uid;

-- funnel_test_allow_reentry
CREATE TABLE funnel_test_allow_reentry (dt timestamptz, "user" int, event text);
INSERT INTO funnel_test_allow_reentry VALUES
	(t(1), 1, 'a'), (t(2), 1, 'b'), (t(3), 1, 'a'), (t(4), 1, 'c'),
	(t(1), 2, 'a'), (t(2), 2, 'b'), (t(3), 2, 'a'), (t(4), 2, 'b'), (t(5), 2, 'c'),
	(t(1), 3, 'a'), (t(2), 3, 'b'), (t(3), 3, 'c'), (t(4), 3, 'b'), (t(5), 3, 'd'),
	(t(1), 4, 'a'), (t(2), 4, 'c'), (t(3), 4, 'b'),
	(t(1), 5, 'a'), (t(2), 5, 'b'), (t(3), 5, 'c'), (t(4), 5, 'a'), (t(5), 5, 'b'), (t(6), 5, 'c'), (t(7), 5, 'd');
-- ClickHouse 26.7.2 (make conformance): strict_order 3 3 3 1 3;
-- allow_reentry 3 3 3 2 3; 4 steps: strict_order 3 3 4 1 4, allow_reentry
-- 3 3 4 2 4; combined with strict_deduplication 3 2 3 2 3.  The 00632
-- .reference disagreed: strict_order 2 2 3 1 3 and 2 2 4 1 3 (it had a step 1
-- after step 2 end the search, which ClickHouse does not), user 4 (a c b)
-- with allow_reentry 1 (ClickHouse skips the early c and reaches b: 2), and
-- combined 3 1 3 1 3 (user 2 from before ClickHouse #37177's fix)
SELECT "user",
	window_funnel(w(86400), 'strict_order', dt, event = 'a', event = 'b', event = 'c') AS strict_order,
	window_funnel(w(86400), 'strict_order,allow_reentry', dt, event = 'a', event = 'b', event = 'c') AS allow_reentry,
	window_funnel(w(86400), 'strict_order', dt, event = 'a', event = 'b', event = 'c', event = 'd') AS strict_order_4,
	window_funnel(w(86400), 'strict_order,allow_reentry', dt, event = 'a', event = 'b', event = 'c', event = 'd') AS allow_reentry_4,
	window_funnel(w(86400), 'strict_order,allow_reentry,strict_deduplication', dt, event = 'a', event = 'b', event = 'c') AS combined
FROM funnel_test_allow_reentry GROUP BY "user" ORDER BY "user";

-- funnel_test_ecommerce
CREATE TABLE funnel_test_ecommerce (ts timestamptz, user_id int, action text);
INSERT INTO funnel_test_ecommerce VALUES
	(t(100), 1, 'begin_checkout'), (t(200), 1, 'view_product_detail'), (t(300), 1, 'begin_checkout'), (t(400), 1, 'complete_payment'),
	(t(100), 2, 'begin_checkout'), (t(200), 2, 'view_product_detail'), (t(250), 2, 'view_product_detail'), (t(300), 2, 'begin_checkout'), (t(400), 2, 'complete_payment'),
	(t(100), 3, 'begin_checkout'), (t(200), 3, 'view_product_detail'), (t(300), 3, 'complete_payment');
-- ClickHouse 26.7.2: normal 3 3 3; reentry 3 3 3; normal_4 1 1 1; reentry_4
-- 4 4 2.  The 00632 .reference said normal 2 2 3 and reentry_4 1 1 1.
SELECT user_id,
	window_funnel(w(600), 'strict_order', ts, action = 'begin_checkout', action = 'view_product_detail', action = 'complete_payment') AS normal,
	window_funnel(w(600), 'strict_order, allow_reentry', ts, action = 'begin_checkout', action = 'view_product_detail', action = 'complete_payment') AS reentry,
	window_funnel(w(600), 'strict_order', ts, action = 'begin_checkout', action = 'view_product_detail', action = 'begin_checkout', action = 'complete_payment') AS normal_4,
	window_funnel(w(600), 'strict_order, allow_reentry', ts, action = 'begin_checkout', action = 'view_product_detail', action = 'begin_checkout', action = 'complete_payment') AS reentry_4
FROM funnel_test_ecommerce GROUP BY user_id ORDER BY user_id;

-------------------------------------------------------------------------------
-- Hand-computed cases: ties, windows, step times
-------------------------------------------------------------------------------
CREATE TABLE ev (lead int, ts timestamptz, kind text);
-- 1: one event matching steps 1..3 advances three steps by default only
INSERT INTO ev VALUES (1, t(10), 'abc');
-- 2: a, then b and c at the same second: entries at one instant by step
INSERT INTO ev VALUES (2, t(10), 'a'), (2, t(20), 'c'), (2, t(20), 'b');
-- 3: window inclusive: a at 0, b at 30 with a 30 s window; c at 31
INSERT INTO ev VALUES (3, t(0), 'a'), (3, t(30), 'b'), (3, t(31), 'c');
-- 4: a later step 1 gives the room: a 0, a 25, b 26, c 40 (window 30)
INSERT INTO ev VALUES (4, t(0), 'a'), (4, t(25), 'a'), (4, t(26), 'b'), (4, t(40), 'c');
-- 5: strict_order: x (no step) at the same second as b ends the search first
INSERT INTO ev VALUES (5, t(0), 'a'), (5, t(5), 'x'), (5, t(5), 'b'), (5, t(6), 'c');
-- 6: strict_increase as ClickHouse: a 0, b 1, b 2, c 2: b@2 overwrites the
--    level-2 chain and c@2 is not later than it: 2 (strict_once keeps both: 3)
INSERT INTO ev VALUES (6, t(0), 'a'), (6, t(1), 'b'), (6, t(2), 'b'), (6, t(2), 'c');
-- 7: strict_once: two rows at one instant, 'ab' and 'bc': a, then b, then c
INSERT INTO ev VALUES (7, t(0), 'ab'), (7, t(0), 'bc'), (7, t(0), 'a');
-- 8: only NULL and infinite timestamps: no events at all
INSERT INTO ev VALUES (8, NULL, 'a'), (8, 'infinity', 'a'), (8, '-infinity', 'b');
-- 9: NULL timestamps are skipped, the rest counts
INSERT INTO ev VALUES (9, t(0), 'a'), (9, NULL, 'b'), (9, t(1), 'b'), (9, t(2), NULL), (9, t(3), 'c');
SELECT lead,
	window_funnel(w(30), ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS dflt,
	window_funnel(w(30), 'strict_order', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS s_order,
	window_funnel(w(30), 'strict_increase', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS s_increase,
	window_funnel(w(30), 'strict_once', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS s_once,
	window_funnel(w(30), 'strict_deduplication', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS s_dedup,
	funnel_step_times(w(30), ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS step_times
FROM ev GROUP BY lead ORDER BY lead;

-- window 0: all steps at the instant of step 1
SELECT lead, window_funnel(interval '0', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%') AS window_0
FROM ev WHERE lead IN (1, 2, 7) GROUP BY lead ORDER BY lead;
-- a huge window is unbounded, a day is 24 hours, '1 day' = '24 hours'
SELECT window_funnel(interval '2147483647 days 2562047788 hours', ts, kind = 'a', kind = 'b') AS huge,
	window_funnel(interval '1 day', ts, kind = 'a', kind = 'b') AS one_day,
	window_funnel(interval '1 day -1 microsecond', ts, kind = 'a', kind = 'b') AS a_bit_less
FROM (VALUES (timestamptz '2024-03-30 12:00+00', 'a'), (timestamptz '2024-03-31 12:00+00', 'b')) v(ts, kind);
-- the far ends of timestamptz are events like any other
SELECT window_funnel(interval '1 second', ts, kind = 'a', kind = 'b') AS near_max,
	funnel_step_times(interval '1 second', ts, kind = 'a', kind = 'b') AS times
FROM (VALUES (timestamptz '294276-12-31 23:59:58+00', 'a'), (timestamptz '294276-12-31 23:59:59+00', 'b')) v(ts, kind);
SELECT window_funnel(interval '1 second', ts, kind = 'a', kind = 'b') AS near_min
FROM (VALUES (timestamptz '4713-11-24 00:00:00+00 BC', 'a'), (timestamptz '4713-11-24 00:00:01+00 BC', 'b')) v(ts, kind);

-- empty groups: no rows, only non-matching rows, only NULL steps
SELECT window_funnel(w(10), ts, kind = 'a') AS no_rows, funnel_step_times(w(10), ts, kind = 'a') AS no_times
FROM ev WHERE false;
SELECT window_funnel(w(10), ts, kind = 'zzz', kind = 'a') AS no_match,
	window_funnel(w(10), ts, NULL::boolean, NULL::boolean) AS null_steps,
	window_funnel(w(10), ts, VARIADIC NULL::boolean[]) AS null_array
FROM ev WHERE lead = 2;
-- one step, 32 steps
SELECT window_funnel(w(10), ts, true) AS one_step,
	window_funnel(w(10), ts, VARIADIC array_fill(true, ARRAY[32])) AS all_32,
	window_funnel(w(10), 'strict_once', ts, VARIADIC array_fill(true, ARRAY[32])) AS once_32
FROM ev WHERE lead = 2;
-- strict_once with strict_deduplication: rows at one instant are taken in
-- arrival order, as ClickHouse takes them (ab then b: 3; b then ab: ab's
-- step-2 entry is a repeat and the search stops at 2)
SELECT window_funnel(w(30), 'strict_once,strict_deduplication', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%' ORDER BY n) AS ab_first,
	window_funnel(w(30), 'strict_once,strict_deduplication', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%' ORDER BY n DESC) AS b_first
FROM (VALUES (1, t(5), 'ab'), (2, t(5), 'b'), (3, t(6), 'c')) v(n, ts, kind);
-- otherwise input order does not matter (ties included)
SELECT (SELECT window_funnel(w(30), 'strict_once', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%')
		FROM (SELECT * FROM ev WHERE lead = 7 ORDER BY kind) s) AS asc_order,
	(SELECT window_funnel(w(30), 'strict_once', ts, kind LIKE '%a%', kind LIKE '%b%', kind LIKE '%c%')
		FROM (SELECT * FROM ev WHERE lead = 7 ORDER BY kind DESC) s) AS desc_order;
-- both aggregates in one query share one state and agree
SELECT lead, window_funnel(w(30), ts, kind = 'a', kind = 'b', kind = 'c') AS level,
	cardinality(funnel_step_times(w(30), ts, kind = 'a', kind = 'b', kind = 'c')) AS times
FROM ev WHERE lead BETWEEN 2 AND 6 GROUP BY lead ORDER BY lead;
-- as a window aggregate (running level over a lead's timeline)
SELECT ts, kind, window_funnel(w(30), ts, kind = 'a', kind = 'b', kind = 'c') OVER (ORDER BY ts) AS running
FROM ev WHERE lead = 4 ORDER BY ts;

-------------------------------------------------------------------------------
-- Errors
-------------------------------------------------------------------------------
\set VERBOSITY default
SELECT window_funnel(interval '-1 second', ts, kind = 'a') FROM ev;
SELECT window_funnel(interval '1 month', ts, kind = 'a') FROM ev;
SELECT window_funnel(NULL::interval, ts, kind = 'a') FROM ev;
SELECT window_funnel(w(10), NULL, ts, kind = 'a') FROM ev;
SELECT window_funnel(w(10), 'strict_order,bogus', ts, kind = 'a') FROM ev;
SELECT window_funnel(w(10), 'strict', ts, kind = 'a') FROM ev;
SELECT window_funnel(w(10), 'allow_reentry', ts, kind = 'a') FROM ev;
SELECT window_funnel(w(10), ts, VARIADIC '{}'::boolean[]) FROM ev;
SELECT window_funnel(w(10), ts, VARIADIC '{{true},{false}}'::boolean[]) FROM ev;
SELECT window_funnel(w(10), ts, VARIADIC array_fill(true, ARRAY[33])) FROM ev;
-- per-row constants that vary inside a group
SELECT window_funnel(CASE WHEN kind = 'a' THEN w(10) ELSE w(20) END, ts, kind = 'a') FROM ev WHERE lead = 4;
SELECT window_funnel(w(10), CASE WHEN kind = 'a' THEN '' ELSE 'strict_order' END, ts, kind = 'a') FROM ev WHERE lead = 4;
SELECT window_funnel(w(10), ts, VARIADIC CASE WHEN kind = 'a' THEN ARRAY[true] ELSE ARRAY[true, false] END) FROM ev WHERE lead = 4;
-- ... but they may vary between groups, and equal spellings are equal
SELECT lead, window_funnel(w(lead * 10), CASE WHEN lead = 4 THEN 'strict_order' ELSE '' END, ts, kind = 'a', kind = 'b') AS per_group
FROM ev WHERE lead IN (3, 4) GROUP BY lead ORDER BY lead;
SELECT window_funnel(CASE WHEN kind = 'a' THEN interval '1 day' ELSE interval '24 hours' END,
	CASE WHEN kind = 'a' THEN 'strict_order' ELSE ' strict_order ,' END, ts, kind = 'a', kind = 'b') AS same_meaning
FROM ev WHERE lead = 4;
