-- covers: funnel, funnel_by_source, funnel_cohort, stage_velocity, reengaged, sales_queue, snapshots, chart; hand-computed
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';
SET IntervalStyle = 'postgres';

-- Six leads, hand-made paths (days after 2026-01-01 in brackets):
--  1 web     inquiry[0] mql[10] sal[12] sql[20] won[50]
--  2 web     inquiry[0] mql[5] recycled[9] mql[30] sal[31]        (re-enters mql)
--  3 expo    inquiry[0] mql[20] sal[24] recycled[30]
--  4 call    sgl[0] sql[6] lost[16]                            (skips mql, sal)
--  5 expo    inquiry[31]                                       (cohort February)
--  6 web     inquiry[0] mql[2], merged into 1                  (excluded everywhere)
INSERT INTO leadmgmt.lead (id, source, stage, created_at) VALUES
	(1, 'web', 'inquiry', '2026-01-01'), (2, 'web', 'inquiry', '2026-01-01'),
	(3, 'expo', 'inquiry', '2026-01-01'), (4, 'call', 'sgl', '2026-01-01'),
	(5, 'expo', 'inquiry', '2026-02-01'), (6, 'web', 'inquiry', '2026-01-01');
CREATE FUNCTION pg_temp.walk(lead bigint, steps text[], days int[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	FOR i IN 1 .. cardinality(steps) LOOP
		PERFORM leadmgmt.set_stage(lead, steps[i], NULL, timestamptz '2026-01-01' + days[i] * interval '1 day');
	END LOOP;
END $$;
SELECT pg_temp.walk(1, '{mql,sal,sql,won}', '{10,12,20,50}'),
       pg_temp.walk(2, '{mql,recycled,mql,sal}', '{5,9,30,31}'),
       pg_temp.walk(3, '{mql,sal,recycled}', '{20,24,30}'),
       pg_temp.walk(4, '{sql,lost}', '{6,16}'),
       pg_temp.walk(6, '{mql}', '{2}');
UPDATE leadmgmt.lead SET merged_into = 1 WHERE id = 6;

-- entered: inquiry 4 (1,2,3,5), mql 3 (1,2,3), sal 3, sgl 1, sql 2 (1,4), won 1, lost 1, recycled 2
-- conversion inquiry->mql 3/4; mql->sal 3/3; sal->sql 1/3; sgl->sql 1/1; sql->won 1/2; recycled->mql 1/2
-- (lead 2 re-entered mql after recycling; lead 3 did not)
-- time in inquiry: 10, 5, 20 days (lead 5 still there) -> median 10 days
-- time in mql: 2 (1), 4 (2, first stay), 1 (2, second stay), 4 (3) -> median 3 days
SELECT stage, position, leads_entered, leads_current, round(conversion_to_next::numeric, 4) AS conversion_to_next,
       median_time_in_stage
  FROM leadmgmt.funnel ORDER BY position;

SELECT source, stage, leads_entered, round(conversion_from_first::numeric, 4) AS conversion_from_first
  FROM leadmgmt.funnel_by_source WHERE leads_entered > 0 ORDER BY source, stage;

-- cohorts by the month of the first stage entry, in reporting_timezone
SELECT cohort_month, stage, leads_entered, round(conversion_from_first::numeric, 4) AS conversion_from_first
  FROM leadmgmt.funnel_cohort WHERE stage IN ('inquiry', 'mql', 'sgl', 'won') ORDER BY 1, 2;
-- 2026-01-31 20:00 UTC is already February in Tokyo
INSERT INTO leadmgmt.lead (id, source, created_at) VALUES (7, 'web', '2026-01-31 20:00+00');
SELECT cohort_month, leads_entered FROM leadmgmt.funnel_cohort WHERE stage = 'inquiry' ORDER BY 1;
SELECT leadmgmt.set_setting('reporting_timezone', 'Asia/Tokyo');
SELECT cohort_month, leads_entered FROM leadmgmt.funnel_cohort WHERE stage = 'inquiry' ORDER BY 1;
SELECT leadmgmt.set_setting('reporting_timezone', NULL);
DELETE FROM leadmgmt.lead WHERE id = 7;

-- velocity: mql->sal took 2 (1), 1 (2), 4 (3) days: avg 2 days 8 hours, median 2 days
SELECT from_stage, to_stage, transitions, avg_time, median_time, p90_time
  FROM leadmgmt.stage_velocity ORDER BY from_stage, to_stage;

-- re-engagement: a seminar long ago, the pricing page this week
INSERT INTO leadmgmt.lead (id, name, company, owner, source, created_at) VALUES
	(20, '佐藤 花子', '株式会社サクラ精機', 'tanaka', 'seminar', now() - interval '400 days'),
	(21, 'Busy Bee', 'Always On Ltd.', 'smith', 'web', now() - interval '400 days');
SELECT leadmgmt.track(20, 'seminar_attend', now() - interval '300 days', 'DX seminar') > 0,
       leadmgmt.track(20, 'page_view', now() - interval '3 days', '/pricing', duration_s => 120) > 0,
       leadmgmt.track(20, 'page_view', now() - interval '1 day', '/pricing', duration_s => 60) > 0,
       leadmgmt.track(21, 'page_view', now() - interval '20 days', '/blog') > 0,
       leadmgmt.track(21, 'page_view', now() - interval '2 days', '/blog') > 0;
SELECT lead_id, stage, previous_kind, previous_detail, new_kind, new_detail,
       quiet_for = interval '297 days' AS quiet_297_days
  FROM leadmgmt.reengaged ORDER BY lead_id;

-- the sales queue: MQLs waiting, and re-engaged leads above queue_min_score
SELECT lead_id, stage, reason, round(score_now::numeric, 2) AS score_now, waiting > interval '0' AS waiting,
       overdue, last_activities IS NOT NULL AS has_activities
  FROM leadmgmt.sales_queue ORDER BY lead_id;
SELECT leadmgmt.set_setting('queue_min_score', '10');
SELECT lead_id, reason, owner, last_activities ~ '^page_view /pricing' AS newest_first
  FROM leadmgmt.sales_queue WHERE reason = 're-engaged';
SELECT leadmgmt.set_setting('queue_min_score', NULL);

-- snapshots: one row per stage and day, a second call refreshes
SELECT leadmgmt.snapshot_funnel() AS stages, leadmgmt.snapshot_funnel() AS again;
SELECT count(*) AS rows, count(DISTINCT snapshot_date) AS days FROM leadmgmt.funnel_snapshot;
SELECT stage, leads_entered FROM leadmgmt.funnel_snapshot WHERE stage IN ('inquiry', 'won') ORDER BY stage;

-- a chart for psql
SELECT * FROM leadmgmt.funnel_chart(20);

-- the views agree with a direct computation on random data
SELECT setseed(0.77);
INSERT INTO leadmgmt.lead (id, source, created_at)
SELECT 100 + g, (ARRAY['a','b','c'])[1 + g % 3], '2025-01-01' FROM generate_series(1, 300) g;
DO $$
DECLARE l record; t timestamptz; nxt text[]; st text;
BEGIN
	FOR l IN SELECT id, stage FROM leadmgmt.lead WHERE id > 100 LOOP
		t := '2025-01-01'; st := l.stage;
		FOR i IN 1 .. (random() * 6)::int LOOP
			SELECT array_agg(to_stage ORDER BY to_stage) INTO nxt FROM leadmgmt.stage_transition WHERE from_stage = st;
			EXIT WHEN nxt IS NULL;
			st := nxt[1 + floor(random() * cardinality(nxt))::int];
			t := t + random() * interval '30 days';
			PERFORM leadmgmt.set_stage(l.id, st, NULL, t);
		END LOOP;
	END LOOP;
END $$;
WITH direct AS (
	SELECT s.name AS stage,
	       (SELECT count(DISTINCT h.lead_id) FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	         WHERE h.to_stage = s.name AND l.merged_into IS NULL) AS entered,
	       (SELECT count(DISTINCT h.lead_id) FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	         WHERE h.to_stage = s.name AND l.merged_into IS NULL
	           AND EXISTS (SELECT 1 FROM leadmgmt.stage_history n WHERE n.lead_id = h.lead_id
	                        AND n.to_stage = s.next_stage AND n.changed_at >= h.changed_at)) AS went_on
	  FROM leadmgmt.stage s
)
SELECT count(*) AS stages,
       count(*) FILTER (WHERE f.leads_entered <> d.entered
                           OR f.conversion_to_next IS DISTINCT FROM
                              CASE WHEN s.next_stage IS NOT NULL AND d.entered > 0 THEN d.went_on::float8 / d.entered END) AS mismatches
  FROM leadmgmt.funnel f JOIN direct d USING (stage) JOIN leadmgmt.stage s ON s.name = f.stage;
SELECT count(*) AS velocity_mismatches
  FROM leadmgmt.stage_velocity v
 WHERE v.transitions <> (SELECT count(*) FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
                         WHERE h.from_stage = v.from_stage AND h.to_stage = v.to_stage AND l.merged_into IS NULL);
-- times in stage: the facts recorded with each history row against a window
-- over the whole history, the way they were computed before 1.0.0
WITH ordered AS (
	SELECT h.from_stage, h.to_stage,
	       h.changed_at - lag(h.changed_at) OVER w AS took,
	       lead(h.changed_at) OVER w - h.changed_at AS stay
	  FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	 WHERE l.merged_into IS NULL AND h.from_stage IS DISTINCT FROM h.to_stage
	WINDOW w AS (PARTITION BY h.lead_id ORDER BY h.changed_at, h.id)
), velocity AS (
	SELECT from_stage, to_stage, count(*) AS n, justify_hours(avg(took)) AS a,
	       justify_hours(percentile_cont(0.5) WITHIN GROUP (ORDER BY took)) AS m,
	       justify_hours(percentile_cont(0.9) WITHIN GROUP (ORDER BY took)) AS p
	  FROM ordered WHERE from_stage IS NOT NULL AND took IS NOT NULL GROUP BY 1, 2
), median AS (
	SELECT to_stage AS stage, justify_hours(percentile_cont(0.5) WITHIN GROUP (ORDER BY stay)) AS m
	  FROM ordered WHERE stay IS NOT NULL GROUP BY 1
)
SELECT (SELECT count(*) FROM velocity) AS pairs,
       (SELECT count(*) FROM leadmgmt.stage_velocity v FULL JOIN velocity d USING (from_stage, to_stage)
         WHERE (v.transitions, v.avg_time, v.median_time, v.p90_time) IS DISTINCT FROM (d.n, d.a, d.m, d.p)) AS velocity_mismatches,
       (SELECT count(*) FROM leadmgmt.funnel f LEFT JOIN median d USING (stage)
         WHERE f.median_time_in_stage IS DISTINCT FROM d.m) AS median_mismatches;
-- the facts written with each row are what the whole history says ...
SELECT leadmgmt.fill_history_facts() AS rows_changed;
-- ... and history without them (written before 1.0.0) gets them back
CREATE TEMP TABLE funnel_before AS SELECT * FROM leadmgmt.funnel;
CREATE TEMP TABLE velocity_before AS SELECT * FROM leadmgmt.stage_velocity;
SET session_replication_role = replica;
UPDATE leadmgmt.stage_history SET entry_number = NULL, time_in_from_stage = NULL;
RESET session_replication_role;
SELECT (SELECT count(*) FROM leadmgmt.stage_history) = leadmgmt.fill_history_facts() AS every_row_filled;
SELECT (SELECT count(*) FROM (SELECT * FROM leadmgmt.funnel EXCEPT SELECT * FROM funnel_before) d) AS funnel_changed,
       (SELECT count(*) FROM (SELECT * FROM leadmgmt.stage_velocity EXCEPT SELECT * FROM velocity_before) d) AS velocity_changed;
-- only a superuser may write past the append-only guard
CREATE ROLE lm_facts_user;
SET ROLE lm_facts_user;
SELECT leadmgmt.fill_history_facts();
RESET ROLE;
DROP ROLE lm_facts_user;
