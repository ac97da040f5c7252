-- covers: stage_conversions (conversion along next_stage in one scan), errors, NULLs, parallel plans
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SELECT setseed(0.17);
-- random entries of 3000 leads into 6 stages, re-entries included
CREATE TABLE conv AS
SELECT 1 + (random() * 2999)::bigint AS lead_id,
       (ARRAY['a','b','c','d','e','f'])[1 + (random() * 5)::int] AS stage,
       timestamptz '2025-01-01' + (random() * 1000)::int * interval '1 hour' AS at
  FROM generate_series(1, 20000);
INSERT INTO conv VALUES (NULL, 'a', now()), (5, NULL, now()), (5, 'a', NULL), (6, 'unlisted', now());
-- a -> b -> c -> d, e -> a, f has none; against a semi-join
WITH direct AS (
	SELECT s.stage, count(*) AS leads
	  FROM (SELECT lead_id, stage, min(at) AS first_at FROM conv
	         WHERE lead_id IS NOT NULL AND at IS NOT NULL GROUP BY 1, 2) s
	  JOIN (VALUES ('a','b'), ('b','c'), ('c','d'), ('e','a')) AS nx(stage, next) USING (stage)
	 WHERE EXISTS (SELECT 1 FROM conv n WHERE n.lead_id = s.lead_id AND n.stage = nx.next AND n.at >= s.first_at)
	 GROUP BY 1
), ours AS (
	SELECT u.stage, u.leads
	  FROM (SELECT leadmgmt.stage_conversions(lead_id, stage, at, '{a,b,c,d,e,f}', '{b,c,d,NULL,a,NULL}') AS c FROM conv) x,
	       unnest('{a,b,c,d,e,f}'::text[], x.c) AS u(stage, leads)
)
SELECT o.stage, o.leads, d.leads AS direct_leads, o.leads = coalesce(d.leads, 0) AS same
  FROM ours o LEFT JOIN direct d USING (stage) ORDER BY 1;
-- hand-computed: lead 1 enters a, then b later (converted); lead 2 enters b
-- before its first a, and never again (not converted); lead 3 enters a, b at
-- the same instant (converted: at or after)
SELECT leadmgmt.stage_conversions(l, s, t::timestamptz, '{a,b}', '{b,NULL}')
  FROM (VALUES (1, 'a', '2025-01-01'), (1, 'b', '2025-01-02'),
               (2, 'b', '2025-01-01'), (2, 'a', '2025-01-02'),
               (3, 'a', '2025-01-05'), (3, 'b', '2025-01-05')) AS v(l, s, t);
-- any bigint is a lead id: negative and extreme ones sort and count too
SELECT leadmgmt.stage_conversions(l, s, t::timestamptz, '{a,b}', '{b,NULL}')
  FROM (VALUES (-1::bigint, 'a', '2025-01-01'), (-1, 'b', '2025-01-02'),
               (9223372036854775807, 'a', '2025-01-01'), (9223372036854775807, 'b', '2025-01-02'),
               (-9223372036854775808, 'b', '2025-01-01'), (-9223372036854775808, 'a', '2025-01-03')) AS v(l, s, t);
-- a next stage that is not listed counts nothing; no rows: NULL
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{a}', '{zzz}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{a}', '{NULL}') FROM conv WHERE false;
-- bad input
SELECT leadmgmt.stage_conversions(1, 'a', now(), NULL, '{a}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{a,b}', '{a}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{}', '{}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{a,a}', '{NULL,NULL}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{a,NULL}', '{NULL,NULL}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), '{{a}}', '{{a}}');
SELECT leadmgmt.stage_conversions(1, 'a', now(), ARRAY[repeat('x', 300)], '{NULL}');
SELECT leadmgmt.stage_conversions(x, 'a', now(), CASE WHEN x = 1 THEN '{a}' ELSE '{b}' END::text[], '{NULL}')
  FROM generate_series(1, 2) x;
-- forced parallel plan: same answer, and the plan is parallel
ALTER TABLE conv SET (parallel_workers = 2);
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF)
SELECT leadmgmt.stage_conversions(lead_id, stage, at, '{a,b,c,d,e,f}', '{b,c,d,NULL,a,NULL}') FROM conv;
CREATE TEMP TABLE par AS
SELECT leadmgmt.stage_conversions(lead_id, stage, at, '{a,b,c,d,e,f}', '{b,c,d,NULL,a,NULL}') AS c FROM conv;
RESET max_parallel_workers_per_gather;
SELECT c = (SELECT leadmgmt.stage_conversions(lead_id, stage, at, '{a,b,c,d,e,f}', '{b,c,d,NULL,a,NULL}') FROM conv)
       AS parallel_equals_serial
  FROM par;
