-- covers: attribution aggregate: hand-computed weights of every model, one/two touches, w_shaped roles, repeats, input order, NULLs, errors, forced parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- lead 1: five touches on days 1..5, "web" twice, the seminar is the milestone
-- lead 2: one touch; lead 3: two touches; lead 4: only NULL touch / ts rows
CREATE TABLE t (lead int, touch text, ts timestamptz, milestone boolean);
INSERT INTO t VALUES
	(1, 'ad',      '2026-01-01', false),
	(1, 'web',     '2026-01-02', false),
	(1, 'seminar', '2026-01-03', true),
	(1, 'web',     '2026-01-04', false),
	(1, 'call',    '2026-01-05', false),
	(1, NULL,      '2026-01-06', true),     -- skipped: NULL touch
	(1, 'mail',    NULL,         false),    -- skipped: NULL ts
	(2, 'ad',      '2026-01-01', true),
	(3, 'ad',      '2026-01-01', false),
	(3, 'mail',    '2026-01-08', NULL),
	(4, NULL,      '2026-01-01', true),
	(4, 'ad',      NULL,         true);

-- first_touch: ad; last_touch: call (lead 1)
-- linear, lead 1: 1/5 each, web twice = 2/5
SELECT lead,
       leadmgmt.attribution('first_touch', touch, ts) AS first_touch,
       leadmgmt.attribution('last_touch', touch, ts) AS last_touch,
       leadmgmt.attribution('linear', touch, ts) AS linear
  FROM t GROUP BY lead ORDER BY lead;

-- u_shaped, lead 1: ad 0.4, call 0.4, three middle touches share 0.2:
--   web 2 * 0.2/3 = 0.133333333333333, seminar 0.2/3 = 0.066666666666667
--   (jsonb key order ad, web, call, seminar: seminar is last and takes
--   1 - 0.4 - 0.133333333333333 - 0.4 = 0.066666666666667)
-- one touch: 1; two touches: 0.5 / 0.5
SELECT lead, leadmgmt.attribution('u_shaped', touch, ts) AS u_shaped
  FROM t GROUP BY lead ORDER BY lead;

-- w_shaped, lead 1: ad (first) 0.3, seminar (milestone) 0.3, call (last) 0.3,
--   the two web touches share 0.1 = 0.05 + 0.05
-- lead 2: one touch holds all three roles: 1
SELECT lead, leadmgmt.attribution('w_shaped', touch, ts, milestone) AS w_shaped
  FROM t WHERE lead IN (1, 2, 4) GROUP BY lead ORDER BY lead;

-- w_shaped when roles coincide or there are fewer than 3 touches:
--   milestone = first of 3: 0.3 + 0.3 = 0.6, middle 0.1, last 0.3
--   milestone = last of 2: roles 1 : 2 -> 1/3, 2/3
--   3 touches, all distinct roles: 1/3 each (no touch left for the 10 %)
--   milestone = first touch of 4, a second milestone later is not a role:
--     a 0.6, b 0.05, c 0.05, d 0.3
SELECT g, leadmgmt.attribution('w_shaped', touch, ts, m)
  FROM (VALUES
	('first=milestone', 'a', timestamptz '2026-01-01', true), ('first=milestone', 'b', '2026-01-02', false),
	('first=milestone', 'c', '2026-01-03', false),
	('two', 'a', '2026-01-01', false), ('two', 'b', '2026-01-02', true),
	('three', 'a', '2026-01-01', false), ('three', 'b', '2026-01-02', true), ('three', 'c', '2026-01-03', false),
	('second milestone', 'a', '2026-01-01', true), ('second milestone', 'b', '2026-01-02', true),
	('second milestone', 'c', '2026-01-03', false), ('second milestone', 'd', '2026-01-04', false)
  ) v(g, touch, ts, m)
 GROUP BY g ORDER BY g;

-- time_decay:1 day, lead 1, relative to the last touch (day 5):
--   raw 1/16 (ad), 1/8 + 1/2 (web), 1/4 (seminar), 1 (call); total 31/16
--   ad 1/31 = 0.032258064516129, web 10/31 = 0.32258064516129(0),
--   call 16/31 = 0.516129032258065, seminar (last key) 4/31: the rest,
--   1 - 0.032258064516129 - 0.32258064516129 - 0.516129032258065 = 0.129032258064516
-- lead 3: 2^-7 / (1 + 2^-7) = 1/129 = 0.007751937984496 and 128/129
-- '24 hours' is the same half-life: another spelling of one model is fine
SELECT lead, leadmgmt.attribution('time_decay:1 day', touch, ts) AS one_day,
       leadmgmt.attribution(CASE WHEN lead = 1 THEN 'time_decay:1 day' ELSE 'time_decay:24 hours' END,
                            touch, ts) = leadmgmt.attribution('time_decay:1 day', touch, ts) AS same
  FROM t GROUP BY lead ORDER BY lead;

-- weights sum to exactly 1 (as numeric) for every model and lead
SELECT m, count(*) AS leads, bool_and(s = 1) AS all_exactly_one
  FROM (SELECT m, lead, (SELECT sum(value::numeric) FROM jsonb_each_text(a)) AS s
          FROM (SELECT m, lead, leadmgmt.attribution(m, touch, ts, milestone) AS a
                  FROM t, unnest(ARRAY['first_touch', 'last_touch', 'linear', 'u_shaped', 'w_shaped', 'time_decay:1 day']) m
                 WHERE lead IN (1, 2)
                 GROUP BY m, lead) x) y
 GROUP BY m ORDER BY m;
SELECT leadmgmt.attribution('linear', touch, ts)
  FROM (VALUES ('a', now()), ('b', now()), ('c', now())) v(touch, ts);

-- input order does not matter: same data in reversed order, and with ties
SELECT (SELECT leadmgmt.attribution('u_shaped', touch, ts ORDER BY ts, touch) FROM t WHERE lead = 1)
     = (SELECT leadmgmt.attribution('u_shaped', touch, ts ORDER BY ts DESC, touch DESC) FROM t WHERE lead = 1)
       AS reversed_same;
-- ties at one instant are ordered by touch text (bytewise), so "a" is first, "b" last
SELECT leadmgmt.attribution('first_touch', touch, ts ORDER BY touch DESC) AS first,
       leadmgmt.attribution('last_touch', touch, ts ORDER BY touch) AS last
  FROM (VALUES ('b', timestamptz '2026-01-01'), ('a', '2026-01-01')) v(touch, ts);

-- NULL handling: no rows and only skipped rows give NULL; NULL milestone = false
SELECT leadmgmt.attribution('linear', touch, ts) IS NULL AS no_rows FROM t WHERE false;
SELECT leadmgmt.attribution('w_shaped', touch, ts, milestone) IS NULL AS only_null_rows FROM t WHERE lead = 4;
-- infinite times are ordinary (extreme) times
SELECT leadmgmt.attribution('time_decay:1 day', touch, ts)
  FROM (VALUES ('old', timestamptz '-infinity'), ('new', 'infinity'), ('mid', '2026-01-01')) v(touch, ts);
-- works as a window function (the final function does not modify the state)
SELECT to_char(ts, 'YYYY-MM-DD') AS day, leadmgmt.attribution('linear', touch, ts) OVER (ORDER BY ts) AS running
  FROM t WHERE lead = 1 AND touch IS NOT NULL AND ts IS NOT NULL ORDER BY ts;

-- errors
SELECT leadmgmt.attribution('position', touch, ts) FROM t;
SELECT leadmgmt.attribution(NULL, touch, ts) FROM t;
SELECT leadmgmt.attribution(repeat('é', 40), 'x', now());   -- quoted up to 64 bytes, whole characters
SELECT leadmgmt.attribution('time_decay', touch, ts) FROM t;
SELECT leadmgmt.attribution('time_decay:soon', touch, ts) FROM t;
SELECT leadmgmt.attribution('time_decay:0', touch, ts) FROM t;
SELECT leadmgmt.attribution('time_decay:-1 day', touch, ts) FROM t;
SELECT leadmgmt.attribution('w_shaped', touch, ts) FROM t;
SELECT leadmgmt.attribution('w_shaped', touch, ts, false) FROM t WHERE lead = 1;
SELECT leadmgmt.attribution(CASE WHEN lead = 1 THEN 'linear' ELSE 'u_shaped' END, touch, ts) FROM t;
SELECT leadmgmt.attribution(CASE WHEN lead = 1 THEN 'time_decay:1 day' ELSE 'time_decay:2 days' END, touch, ts) FROM t;
-- SQLSTATEs: 22023 (invalid_parameter_value) for model errors
DO $$
BEGIN
	PERFORM leadmgmt.attribution(CASE WHEN lead = 1 THEN 'linear' ELSE 'u_shaped' END, touch, ts) FROM public.t;
EXCEPTION WHEN invalid_parameter_value THEN
	RAISE NOTICE 'varying model: SQLSTATE %', SQLSTATE;
END $$;

-- parallel plans: partial aggregates in the workers, same answer as serial
CREATE TABLE many AS
SELECT g % 97 AS lead, 'c' || (g % 7) AS touch,
       timestamptz '2026-01-01' + (g % 1000) * interval '1 hour' AS ts, g % 11 = 0 AS milestone
  FROM generate_series(1, 100000) g;
ANALYZE many;
CREATE TEMP TABLE serial AS
SELECT lead, leadmgmt.attribution('u_shaped', touch, ts) AS u,
       leadmgmt.attribution('w_shaped', touch, ts, milestone) AS w,
       leadmgmt.attribution('time_decay:3 days', touch, ts) AS d
  FROM many GROUP BY lead;
SELECT leadmgmt.attribution('linear', touch, ts) AS serial_total FROM many;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF)
SELECT leadmgmt.attribution('linear', touch, ts) FROM many;
SELECT leadmgmt.attribution('linear', touch, ts) AS parallel_total FROM many;
EXPLAIN (COSTS OFF)
SELECT lead, leadmgmt.attribution('w_shaped', touch, ts, milestone) FROM many GROUP BY lead;
SELECT count(*) AS leads,
       count(*) FILTER (WHERE p.u IS DISTINCT FROM s.u OR p.w IS DISTINCT FROM s.w OR p.d IS DISTINCT FROM s.d) AS mismatches
  FROM (SELECT lead, leadmgmt.attribution('u_shaped', touch, ts) AS u,
               leadmgmt.attribution('w_shaped', touch, ts, milestone) AS w,
               leadmgmt.attribution('time_decay:3 days', touch, ts) AS d
          FROM many GROUP BY lead) p
  JOIN serial s USING (lead);
-- linear against the obvious SQL: count of the touch / count of the lead's touches
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE a.w IS NULL OR q.w IS NULL OR abs(a.w - q.w) > 1e-14) AS mismatches
  FROM (SELECT lead, e.key AS touch, e.value::numeric AS w
          FROM (SELECT lead, leadmgmt.attribution('linear', touch, ts) AS credit FROM many GROUP BY lead) x,
               jsonb_each(x.credit) e) a
  FULL JOIN (SELECT lead, touch, count(*)::numeric / sum(count(*)) OVER (PARTITION BY lead) AS w
               FROM many GROUP BY lead, touch) q USING (lead, touch);
-- the model is checked across workers too
-- the leader or a worker may see the change first: no CONTEXT line either way
\set SHOW_CONTEXT never
SELECT leadmgmt.attribution(CASE WHEN lead < 50 THEN 'linear' ELSE 'u_shaped' END, touch, ts) FROM many;
\set SHOW_CONTEXT errors
RESET enable_hashagg;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;

-- campaign_attribution: linear credit over campaign touches before the deal's stage change
SET TimeZone = 'UTC';
INSERT INTO leadmgmt.lead (id, email, amount, created_at) VALUES
	(1, 'one@example.jp', 1000, '2026-01-01'), (2, 'two@example.jp', 600, '2026-01-01'),
	(3, 'three@example.jp', 500, '2026-01-01'), (4, 'four@example.jp', NULL, '2026-01-01'),
	(5, 'five@example.jp', 200, '2026-01-01');
CREATE FUNCTION pg_temp.walk(lead bigint, VARIADIC steps text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
	-- steps are 'stage@timestamp'
	FOREACH s IN ARRAY steps LOOP
		PERFORM leadmgmt.set_stage(lead, split_part(s, '@', 1), NULL, split_part(s, '@', 2)::timestamptz);
	END LOOP;
END $$;
-- lead 1 (1000): webinar, newsletter, spring_seminar before won; a page view
-- without campaign and a newsletter after won do not count
SELECT leadmgmt.track(1, 'seminar_attend', '2026-01-02', campaign => 'spring_seminar') > 0 AS tracked
UNION ALL SELECT leadmgmt.track(1, 'email_click', '2026-01-05', campaign => 'newsletter') > 0
UNION ALL SELECT leadmgmt.track(1, 'page_view', '2026-01-06') > 0
UNION ALL SELECT leadmgmt.track(1, 'page_view', '2026-01-15', campaign => 'webinar') > 0
UNION ALL SELECT leadmgmt.track(1, 'email_click', '2026-01-25', campaign => 'newsletter') > 0
-- lead 2 (600, now in sql): newsletter before sql; webinar after entering sql does not count
UNION ALL SELECT leadmgmt.track(2, 'email_click', '2026-01-03', campaign => 'newsletter') > 0
UNION ALL SELECT leadmgmt.track(2, 'page_view', '2026-01-14', campaign => 'webinar') > 0
-- lead 3 (500): won, but merged into lead 1 below: excluded
UNION ALL SELECT leadmgmt.track(3, 'seminar_attend', '2026-01-02', campaign => 'spring_seminar') > 0
-- lead 4 (no amount): newsletter twice, spring_seminar once before won
UNION ALL SELECT leadmgmt.track(4, 'email_click', '2026-01-02', campaign => 'newsletter') > 0
UNION ALL SELECT leadmgmt.track(4, 'email_click', '2026-01-03', campaign => 'newsletter') > 0
UNION ALL SELECT leadmgmt.track(4, 'seminar_attend', '2026-01-04', campaign => 'spring_seminar') > 0
-- lead 5 (200): sql, lost, recycled, back in sql: the current stay counts, so
-- both ads (before the first sql) and webinar (between the two) count
UNION ALL SELECT leadmgmt.track(5, 'page_view', '2026-01-02', campaign => 'ads') > 0
UNION ALL SELECT leadmgmt.track(5, 'page_view', '2026-01-08', campaign => 'webinar') > 0;
SELECT pg_temp.walk(1, 'mql@2026-01-07', 'sal@2026-01-08', 'sql@2026-01-10', 'won@2026-01-20', 'mql@2026-01-26',
                    'sal@2026-01-27', 'sql@2026-01-28', 'won@2026-01-29');
SELECT pg_temp.walk(2, 'mql@2026-01-10', 'sal@2026-01-11', 'sql@2026-01-12');
SELECT pg_temp.walk(3, 'mql@2026-01-03', 'sal@2026-01-04', 'sql@2026-01-05', 'won@2026-01-06');
UPDATE leadmgmt.lead SET merged_into = 1 WHERE id = 3;
SELECT pg_temp.walk(4, 'mql@2026-01-05', 'sal@2026-01-06', 'sql@2026-01-07', 'won@2026-01-08');
SELECT pg_temp.walk(5, 'mql@2026-01-03', 'sal@2026-01-04', 'sql@2026-01-05', 'lost@2026-01-06', 'recycled@2026-01-07',
                    'mql@2026-01-09', 'sal@2026-01-10', 'sql@2026-01-11');
-- won (lead 1, first won on 01-20; its touches after that and the second won cycle do not add):
--   lead 1: webinar, newsletter, spring_seminar 1/3 each (jsonb key order:
--           webinar 0.333333333333333, newsletter 0.333333333333333, spring_seminar the rest 0.333333333333334)
--   lead 4: newsletter 2/3 = 0.666666666666667, spring_seminar 0.333333333333333; no amount
--   won_deals:  newsletter 0.333333333333333 + 0.666666666666667 = 1
--               spring_seminar 0.333333333333334 + 0.333333333333333 = 0.666666666666667
--               webinar 0.333333333333333
--   won_amount: 1000 x those of lead 1: 333.333333333333, 333.333333333334, 333.333333333333
-- pipeline: lead 2 newsletter 1 (600); lead 5 ads 0.5, webinar 0.5 (100 each)
SELECT * FROM leadmgmt.campaign_attribution ORDER BY campaign;
SELECT sum(won_amount) AS won_total, sum(pipeline_amount) AS pipeline_total,
       sum(won_deals) AS won_deal_count, sum(pipeline_deals) AS pipeline_deal_count
  FROM leadmgmt.campaign_attribution;

-- leave no tables behind for the tests that follow in the same database
DROP TABLE t, many;
