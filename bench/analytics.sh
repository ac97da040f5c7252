#!/bin/sh
# Funnel views on 1 M leads / about 5 M history rows (ANALYTICS_LEADS to
# change), against the plain-SQL count of the same thing measured in the
# same run.  Data is written with triggers off (session_replication_role),
# as a restore would, to build it quickly.
set -eu
leads=${ANALYTICS_LEADS:-$(awk -v s="${BENCH_SCALE:-1}" 'BEGIN { printf "%d", 1000000 * s }')}
psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SET session_replication_role = replica;
DO \$\$ BEGIN PERFORM setseed(0.3); END \$\$;
-- each lead walks inquiry (sgl for one in ten) -> mql -> sal -> sql -> lost
-- -> recycled -> mql -> sal -> sql -> won, stopping at random: about five
-- history rows per lead, with re-entries
CREATE TEMP TABLE walk AS
SELECT g AS lead_id, (ARRAY['web_form','exhibition','seminar','purchased_list'])[1 + g % 4] AS source,
       timestamptz '2025-01-01' + random() * interval '365 days' AS created_at,
       least(10, 1 + floor(-ln(1 - random()) * 5.5))::int AS steps
  FROM generate_series(1, $leads) g;
-- the facts the stage machine records with each row, as a restore brings them
INSERT INTO leadmgmt.stage_history (lead_id, from_stage, to_stage, changed_at, changed_by,
                                    entry_number, time_in_from_stage)
SELECT w.lead_id,
       CASE WHEN s = 2 AND w.lead_id % 10 = 0 THEN 'sgl'
            WHEN s > 1 THEN (ARRAY['inquiry','mql','sal','sql','lost','recycled','mql','sal','sql','won'])[s - 1] END,
       CASE WHEN s = 1 AND w.lead_id % 10 = 0 THEN 'sgl'
            ELSE (ARRAY['inquiry','mql','sal','sql','lost','recycled','mql','sal','sql','won'])[s] END,
       w.created_at + (s - 1) * interval '9 days' + (w.lead_id % 97) * interval '1 hour', 'bench',
       CASE WHEN s BETWEEN 7 AND 9 THEN 2 ELSE 1 END,
       CASE WHEN s > 1 THEN interval '9 days' END
  FROM walk w, generate_series(1, w.steps) s;
INSERT INTO leadmgmt.lead (id, source, stage, stage_entered_at, created_at)
SELECT w.lead_id, w.source, h.to_stage, h.changed_at, w.created_at
  FROM walk w JOIN LATERAL (SELECT to_stage, changed_at FROM leadmgmt.stage_history x
                             WHERE x.lead_id = w.lead_id ORDER BY changed_at DESC LIMIT 1) h ON true;
RESET session_replication_role;
-- the generated facts are the ones the stage machine would have written
SELECT leadmgmt.fill_history_facts() AS facts_corrected;
ANALYZE leadmgmt.lead, leadmgmt.stage_history;
SELECT count(*) AS leads FROM leadmgmt.lead;
SELECT count(*) AS history_rows FROM leadmgmt.stage_history;
SET work_mem = '256MB';
SET jit = off;
CREATE TEMP TABLE bench_times (name text, ms float8);
-- wall time of a query, its rows counted rather than sent to the client
CREATE FUNCTION pg_temp.bench(name text, q text) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; n bigint;
BEGIN
	t0 := clock_timestamp();
	EXECUTE 'SELECT count(q.*) FROM (' || q || ') q' INTO n;
	INSERT INTO bench_times VALUES (name, extract(epoch FROM clock_timestamp() - t0) * 1000);
END \$\$;
-- what a user would write without the facts recorded with each history row
CREATE VIEW pg_temp.plain_entered AS
	SELECT to_stage, count(DISTINCT lead_id) AS leads FROM leadmgmt.stage_history GROUP BY 1;
CREATE VIEW pg_temp.plain_velocity AS
	SELECT from_stage, to_stage, count(*) AS n, avg(took) AS avg_time,
	       percentile_cont(0.5) WITHIN GROUP (ORDER BY took) AS median_time,
	       percentile_cont(0.9) WITHIN GROUP (ORDER BY took) AS p90_time
	  FROM (SELECT from_stage, to_stage,
	               changed_at - lag(changed_at) OVER (PARTITION BY lead_id ORDER BY changed_at, id) AS took
	          FROM leadmgmt.stage_history WHERE from_stage IS DISTINCT FROM to_stage) t
	 WHERE from_stage IS NOT NULL AND took IS NOT NULL GROUP BY 1, 2;
SET max_parallel_workers_per_gather = 0;
SELECT pg_temp.bench('count(*) of stage_history', 'SELECT count(*) FROM leadmgmt.stage_history');
SELECT pg_temp.bench('plain SQL: leads entered per stage', 'SELECT * FROM pg_temp.plain_entered');
SELECT pg_temp.bench('plain SQL: stage velocity (window)', 'SELECT * FROM pg_temp.plain_velocity');
SELECT pg_temp.bench('leadmgmt.funnel', 'SELECT * FROM leadmgmt.funnel');
SELECT pg_temp.bench('leadmgmt.funnel_by_source', 'SELECT * FROM leadmgmt.funnel_by_source');
SELECT pg_temp.bench('leadmgmt.funnel_cohort', 'SELECT * FROM leadmgmt.funnel_cohort');
SELECT pg_temp.bench('leadmgmt.stage_velocity', 'SELECT * FROM leadmgmt.stage_velocity');
\echo results (the views against the plain-SQL counts):
SELECT f.stage, f.leads_entered, p.leads AS plain_leads_entered, round(f.conversion_to_next::numeric, 3) AS conversion,
       f.median_time_in_stage
  FROM leadmgmt.funnel f LEFT JOIN pg_temp.plain_entered p ON p.to_stage = f.stage ORDER BY f.position;
SELECT (SELECT sum(transitions) FROM leadmgmt.stage_velocity) AS transitions,
       (SELECT sum(n) FROM pg_temp.plain_velocity) AS plain_transitions;
\echo times, single worker, work_mem 256MB:
SELECT name, round(ms::numeric) AS ms FROM bench_times;
\echo ratios:
SELECT round(((SELECT ms FROM bench_times WHERE name = 'plain SQL: leads entered per stage')
             / (SELECT ms FROM bench_times WHERE name = 'leadmgmt.funnel'))::numeric, 2) AS "plain entered / funnel",
       round(((SELECT ms FROM bench_times WHERE name = 'plain SQL: stage velocity (window)')
             / (SELECT ms FROM bench_times WHERE name = 'leadmgmt.stage_velocity'))::numeric, 2) AS "plain velocity / stage_velocity";
-- the bench table (bench/run.sh)
\pset format unaligned
\pset tuples_only on
SELECT 'table: views|' || v.name || ' (' || $leads || ' leads, ' || (SELECT count(*) FROM leadmgmt.stage_history)
       || ' history rows)|' || round(a.ms) || '|' || v.base || '|' || round(b.ms) || '|' || v.goal
  FROM (VALUES (1, 'leadmgmt.funnel', 'plain SQL: leads entered per stage', ''),
               (2, 'leadmgmt.stage_velocity', 'plain SQL: stage velocity (window)', ''),
               (3, 'leadmgmt.funnel_by_source', 'plain SQL: leads entered per stage', ''),
               (4, 'leadmgmt.funnel_cohort', 'plain SQL: leads entered per stage', ''))
       AS v(n, name, base, goal)
  JOIN bench_times a ON a.name = v.name JOIN bench_times b ON b.name = v.base
 ORDER BY v.n;
SQL
