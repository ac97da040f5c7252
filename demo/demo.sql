-- demo/demo.sql: install leadmgmt, load a year of demo data, show the funnel.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

\echo 'Generating a year of leads, activities and stage moves ...'
\o /dev/null
\ir generate.sql
\o

\echo
\echo '== Leads by source'
SELECT source, origin, count(*) AS leads,
       count(*) FILTER (WHERE stage = 'won') AS won
  FROM leadmgmt.lead GROUP BY source, origin ORDER BY leads DESC;

\echo '== Where the leads are now'
SELECT l.stage, s.category, count(*) AS leads
  FROM leadmgmt.lead l JOIN leadmgmt.stage s ON s.name = l.stage
 GROUP BY l.stage, s.category, s.rank ORDER BY s.rank, l.stage;

\echo '== The waterfall: leads that ever entered each stage, and how many of them went on to the next'
SELECT s.name AS stage, count(DISTINCT h.lead_id) AS leads_entered, s.next_stage,
       count(DISTINCT h.lead_id) FILTER (WHERE EXISTS (
           SELECT 1 FROM leadmgmt.stage_history n
            WHERE n.lead_id = h.lead_id AND n.to_stage = s.next_stage
              AND n.changed_at >= h.changed_at)) AS went_on,
       round(100.0 * count(DISTINCT h.lead_id) FILTER (WHERE EXISTS (
           SELECT 1 FROM leadmgmt.stage_history n
            WHERE n.lead_id = h.lead_id AND n.to_stage = s.next_stage
              AND n.changed_at >= h.changed_at)) / nullif(count(DISTINCT h.lead_id), 0), 1) AS "conversion_%"
  FROM leadmgmt.stage s
  LEFT JOIN leadmgmt.stage_history h ON h.to_stage = s.name
 WHERE s.category IN ('open', 'won')
 GROUP BY s.name, s.next_stage, s.rank
 ORDER BY s.rank, s.name;

\echo '== Most active leads in the last 30 days'
SELECT l.id, l.name, l.company, l.stage, count(*) AS touches_30d,
       max(a.occurred_at)::date AS last_touch
  FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id
 WHERE a.occurred_at > now() - interval '30 days' AND l.stage IN ('inquiry', 'mql', 'recycled')
 GROUP BY l.id ORDER BY touches_30d DESC, last_touch DESC, l.id LIMIT 10;

\echo '== One lead''s timeline'
SELECT t.at::date AS day, t.kind, t.detail, t.stage
  FROM leadmgmt.timeline((SELECT lead_id FROM leadmgmt.stage_history WHERE to_stage = 'won'
                           ORDER BY lead_id LIMIT 1)) t;
