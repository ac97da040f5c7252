#!/bin/sh
# Funnel views on 1 M leads / about 5 M history rows (ANALYTICS_LEADS to
# change), against the plain-SQL count of the same thing measured in the
# same run.  Data is written with triggers off (session_replication_role),
# as a restore would, to build it quickly.
set -eu
leads=${ANALYTICS_LEADS:-1000000}
psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SET session_replication_role = replica;
DO \$\$ BEGIN PERFORM setseed(0.3); END \$\$;
-- each lead walks inquiry -> mql -> sal -> sql -> won/lost, stopping at random
CREATE TEMP TABLE walk AS
SELECT g AS lead_id, (ARRAY['web_form','exhibition','seminar','purchased_list'])[1 + g % 4] AS source,
       timestamptz '2025-01-01' + random() * interval '365 days' AS created_at,
       least(6, 1 + floor(-ln(1 - random()) * 2.2))::int AS steps
  FROM generate_series(1, $leads) g;
INSERT INTO leadmgmt.stage_history (lead_id, from_stage, to_stage, changed_at, changed_by)
SELECT w.lead_id, (ARRAY[NULL,'inquiry','mql','sal','sql','sql'])[s], (ARRAY['inquiry','mql','sal','sql','won','lost'])[s],
       w.created_at + (s - 1) * interval '9 days', 'bench'
  FROM walk w, generate_series(1, w.steps) s
 WHERE s < 6 OR w.lead_id % 2 = 0;
INSERT INTO leadmgmt.lead (id, source, stage, stage_entered_at, created_at)
SELECT w.lead_id, w.source, h.to_stage, h.changed_at, w.created_at
  FROM walk w JOIN LATERAL (SELECT to_stage, changed_at FROM leadmgmt.stage_history x
                             WHERE x.lead_id = w.lead_id ORDER BY changed_at DESC LIMIT 1) h ON true;
RESET session_replication_role;
ANALYZE leadmgmt.lead, leadmgmt.stage_history;
SELECT count(*) AS leads FROM leadmgmt.lead;
SELECT count(*) AS history_rows FROM leadmgmt.stage_history;
SET work_mem = '256MB';
\timing on
\echo plain SQL floor: leads entered per stage
SELECT to_stage, count(DISTINCT lead_id) FROM leadmgmt.stage_history GROUP BY 1;
\echo leadmgmt.funnel
SELECT stage, leads_entered, round(conversion_to_next::numeric, 3) FROM leadmgmt.funnel ORDER BY position;
\echo leadmgmt.funnel_by_source
SELECT sum(leads_entered), sum(conversion_from_first) FROM leadmgmt.funnel_by_source;
\echo leadmgmt.funnel_cohort
SELECT sum(leads_entered), sum(conversion_from_first) FROM leadmgmt.funnel_cohort;
\echo leadmgmt.stage_velocity
SELECT sum(transitions), sum(extract(epoch FROM p90_time)) FROM leadmgmt.stage_velocity;
SQL
