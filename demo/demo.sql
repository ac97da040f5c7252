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

\echo '== The hottest open leads: engagement score today (decayed), fit grade'
SELECT l.id, l.name, l.company, l.stage, round(leadmgmt.score(l.id)::numeric, 1) AS score_now,
       l.grade, (SELECT max(a.occurred_at)::date FROM leadmgmt.activity a WHERE a.lead_id = l.id) AS last_touch
  FROM leadmgmt.lead l
 WHERE l.stage IN ('inquiry', 'recycled', 'mql')
 ORDER BY leadmgmt.score(l.id) DESC, l.id LIMIT 10;

\echo '== A quiet lead wakes up: two long looks at the pricing page and a form, right now'
LISTEN leadmgmt_sales;
SELECT l.id AS lead, l.stage AS stage_before, round(leadmgmt.score(l.id)::numeric, 1) AS score_before,
       (SELECT max(a.occurred_at)::date FROM leadmgmt.activity a WHERE a.lead_id = l.id) AS quiet_since
  FROM leadmgmt.lead l
 WHERE l.stage = 'inquiry' AND leadmgmt.score(l.id) BETWEEN 40 AND 90
 ORDER BY (SELECT max(a.occurred_at) FROM leadmgmt.activity a WHERE a.lead_id = l.id), l.id
 LIMIT 1 \gset
SELECT leadmgmt.track(:lead, 'page_view', now() - interval '2 hours', '/pricing', duration_s => 120) > 0 AS tracked,
       leadmgmt.track(:lead, 'page_view', now() - interval '1 hour', '/pricing', duration_s => 95) > 0 AS again,
       leadmgmt.track(:lead, 'form_submit', now(), 'contact-sales') > 0 AS form;
SELECT id, :'quiet_since' AS quiet_since, :'stage_before' AS stage_before, stage AS stage_now,
       :score_before AS score_before, round(score::numeric, 1) AS score_now
  FROM leadmgmt.lead WHERE id = :lead;

\echo '== One lead''s timeline'
SELECT t.at::date AS day, t.kind, t.detail, t.stage
  FROM leadmgmt.timeline((SELECT lead_id FROM leadmgmt.stage_history WHERE to_stage = 'won'
                           ORDER BY lead_id LIMIT 1)) t;
