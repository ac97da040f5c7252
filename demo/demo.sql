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

\echo '== The waterfall (leadmgmt.funnel): leads that ever entered each stage, conversion to the next'
SELECT stage, leads_entered, leads_current,
       round(100 * conversion_to_next::numeric, 1) AS "conversion_%",
       date_trunc('hour', median_time_in_stage) AS median_time_in_stage
  FROM leadmgmt.funnel ORDER BY position;
SELECT * FROM leadmgmt.funnel_chart(40);

\echo '== Conversion from inquiry to won, per source (leadmgmt.funnel_by_source)'
SELECT source, leads_entered AS won, round(100 * conversion_from_first::numeric, 1) AS "won_%"
  FROM leadmgmt.funnel_by_source WHERE stage = 'won' ORDER BY conversion_from_first DESC;

\echo '== Campaigns that brought the deals (leadmgmt.campaign_attribution, linear model)'
SELECT campaign, round(won_deals::numeric, 1) AS won_deals, round(won_amount) AS won_amount_jpy,
       round(pipeline_deals::numeric, 1) AS pipeline_deals, round(pipeline_amount) AS pipeline_jpy
  FROM leadmgmt.campaign_attribution ORDER BY won_amount DESC NULLS LAST LIMIT 8;

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

\echo '== The sales queue: waiting for sales, hottest first'
SELECT lead_id, name, stage, reason, round(score_now::numeric) AS score, grade,
       justify_hours(date_trunc('hour', waiting)) AS waiting, overdue
  FROM leadmgmt.sales_queue LIMIT 8;

\echo '== Re-engaged: quiet for months, active this fortnight'
SELECT lead_id, stage, previous_touch_at::date AS last_seen, previous_kind,
       new_touch_at::date AS back_on, new_kind, new_detail
  FROM leadmgmt.reengaged ORDER BY new_touch_at DESC LIMIT 8;

\echo '== One lead''s timeline'
SELECT t.at::date AS day, t.kind, t.detail, t.stage
  FROM leadmgmt.timeline((SELECT lead_id FROM leadmgmt.stage_history WHERE to_stage = 'won'
                           ORDER BY lead_id LIMIT 1)) t;

\echo '== Nurture programs: two tracks run on 2,000 sign-ups, 20 % held out (demo/nurture.sql)'
\o /dev/null
\ir nurture.sql
\o
SELECT track, enrolled, holdout, completed, exited_converted AS converted_exits,
       treated_converted || ' / ' || treated_total AS treated_mql,
       round(treated_rate_pct::numeric, 1) AS "treated_%",
       holdout_converted || ' / ' || holdout_total AS holdout_mql,
       round(holdout_rate_pct::numeric, 1) AS "holdout_%",
       round(uplift_pp::numeric, 1) AS uplift_pp,
       '[' || round(uplift_low_pp::numeric, 1) || ', ' || round(uplift_high_pp::numeric, 1) || ']' AS "95%_interval"
  FROM leadmgmt.nurture_performance WHERE step_no IS NULL ORDER BY track;
\echo '== ... and per step: the leads still in the program when the step fell due'
SELECT track, step_no, channel, enrolled AS sent, treated_converted || ' / ' || treated_total AS treated_mql,
       holdout_converted || ' / ' || holdout_total AS holdout_mql, round(uplift_pp::numeric, 1) AS uplift_pp,
       treated_sql, treated_won, holdout_sql, holdout_won
  FROM leadmgmt.nurture_performance WHERE step_no IS NOT NULL ORDER BY track, step_no;
