-- covers: funnel summaries (entry, pair and duration counts kept by triggers) give the funnel views exactly the answers of their reference definitions, on random histories with merges, source and cohort changes, a time-zone change, a restricted rep, compaction and rebuild
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP ROLE IF EXISTS fs_sales, fs_rep;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- The reference: the definitions of the four views before they read the
-- summaries (leadmgmt 1.0.0), computing everything from the history.
CREATE VIEW pg_temp.ref_funnel WITH (security_invoker = true) AS
	SELECT s.name AS stage,
	       row_number() OVER (ORDER BY s.rank, s.name)::integer AS position,
	       coalesce(en.leads, 0) AS leads_entered,
	       coalesce(cur.leads, 0) AS leads_current,
	       CASE WHEN s.next_stage IS NOT NULL AND coalesce(en.leads, 0) > 0
	            THEN coalesce(nx.leads, 0)::float8 / en.leads END AS conversion_to_next,
	       md.median AS median_time_in_stage
	  FROM leadmgmt.stage s
	  LEFT JOIN (SELECT h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h
	              WHERE h.entry_number = 1
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.to_stage) en ON en.stage = s.name
	  LEFT JOIN (SELECT l.stage, count(*) AS leads FROM leadmgmt.lead l
	              WHERE l.merged_into IS NULL GROUP BY l.stage) cur ON cur.stage = s.name
	  LEFT JOIN (SELECT u.stage, u.leads
	               FROM (SELECT leadmgmt.stage_conversions(
	                                h.lead_id, h.to_stage, h.changed_at,
	                                (SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st),
	                                (SELECT array_agg(st.next_stage ORDER BY st.name) FROM leadmgmt.stage st)) AS leads
	                       FROM leadmgmt.stage_history h
	                      WHERE h.from_stage IS DISTINCT FROM h.to_stage
	                        AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                         WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)) c,
	                    unnest((SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st), c.leads)
	                      AS u(stage, leads)) nx ON nx.stage = s.name
	  LEFT JOIN (SELECT h.from_stage AS stage,
	                    justify_hours((leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5}'))[1]) AS median
	               FROM leadmgmt.stage_history h
	              WHERE h.time_in_from_stage IS NOT NULL
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.from_stage) md ON md.stage = s.name;
CREATE VIEW pg_temp.ref_funnel_by_source WITH (security_invoker = true) AS
	WITH src AS (
		SELECT coalesce(l.source, '(none)') AS source, count(*) AS leads
		  FROM leadmgmt.lead l WHERE l.merged_into IS NULL GROUP BY 1
	)
	SELECT src.source, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / src.leads AS conversion_from_first
	  FROM src CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT coalesce(l.source, '(none)') AS source, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	              WHERE h.entry_number = 1 AND l.merged_into IS NULL
	              GROUP BY 1, 2) x ON x.source = src.source AND x.stage = s.name;
CREATE VIEW pg_temp.ref_funnel_cohort WITH (security_invoker = true) AS
	WITH tz AS (SELECT leadmgmt.get_setting('reporting_timezone') AS zone),
	cohort AS (
		SELECT l.id AS lead_id,
		       date_trunc('month', l.created_at AT TIME ZONE (SELECT zone FROM tz))::date AS cohort_month
		  FROM leadmgmt.lead l WHERE l.merged_into IS NULL
	), size AS (SELECT cohort_month, count(*) AS leads FROM cohort GROUP BY 1)
	SELECT size.cohort_month, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / size.leads AS conversion_from_first
	  FROM size CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT c.cohort_month, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN cohort c USING (lead_id)
	              WHERE h.entry_number = 1
	              GROUP BY 1, 2) x ON x.cohort_month = size.cohort_month AND x.stage = s.name;
CREATE VIEW pg_temp.ref_stage_velocity WITH (security_invoker = true) AS
	SELECT t.from_stage, t.to_stage, t.transitions, t.avg_time,
	       justify_hours(t.p[1]) AS median_time, justify_hours(t.p[2]) AS p90_time
	  FROM (SELECT h.from_stage, h.to_stage, count(*) AS transitions,
	               justify_hours(avg(h.time_in_from_stage)) AS avg_time,
	               leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5,0.9}') AS p
	          FROM leadmgmt.stage_history h
	         WHERE h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
	           AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                            WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	         GROUP BY h.from_stage, h.to_stage) t;

-- differences both ways between each view and its reference (intervals
-- compared as text: equal spans written differently count as different)
CREATE FUNCTION pg_temp.differences() RETURNS TABLE (view text, rows bigint, differ bigint)
LANGUAGE sql AS $$
	SELECT 'funnel', (SELECT count(*) FROM leadmgmt.funnel),
	       (SELECT count(*) FROM ((SELECT stage, position, leads_entered, leads_current, conversion_to_next, median_time_in_stage::text FROM leadmgmt.funnel
	                               EXCEPT ALL SELECT stage, position, leads_entered, leads_current, conversion_to_next, median_time_in_stage::text FROM pg_temp.ref_funnel)
	                              UNION ALL
	                              (SELECT stage, position, leads_entered, leads_current, conversion_to_next, median_time_in_stage::text FROM pg_temp.ref_funnel
	                               EXCEPT ALL SELECT stage, position, leads_entered, leads_current, conversion_to_next, median_time_in_stage::text FROM leadmgmt.funnel)) d)
	UNION ALL
	SELECT 'funnel_by_source', (SELECT count(*) FROM leadmgmt.funnel_by_source),
	       (SELECT count(*) FROM ((SELECT * FROM leadmgmt.funnel_by_source EXCEPT ALL SELECT * FROM pg_temp.ref_funnel_by_source)
	                              UNION ALL
	                              (SELECT * FROM pg_temp.ref_funnel_by_source EXCEPT ALL SELECT * FROM leadmgmt.funnel_by_source)) d)
	UNION ALL
	SELECT 'funnel_cohort', (SELECT count(*) FROM leadmgmt.funnel_cohort),
	       (SELECT count(*) FROM ((SELECT * FROM leadmgmt.funnel_cohort EXCEPT ALL SELECT * FROM pg_temp.ref_funnel_cohort)
	                              UNION ALL
	                              (SELECT * FROM pg_temp.ref_funnel_cohort EXCEPT ALL SELECT * FROM leadmgmt.funnel_cohort)) d)
	UNION ALL
	SELECT 'stage_velocity', (SELECT count(*) FROM leadmgmt.stage_velocity),
	       (SELECT count(*) FROM ((SELECT from_stage, to_stage, transitions, avg_time::text, median_time::text, p90_time::text FROM leadmgmt.stage_velocity
	                               EXCEPT ALL SELECT from_stage, to_stage, transitions, avg_time::text, median_time::text, p90_time::text FROM pg_temp.ref_stage_velocity)
	                              UNION ALL
	                              (SELECT from_stage, to_stage, transitions, avg_time::text, median_time::text, p90_time::text FROM pg_temp.ref_stage_velocity
	                               EXCEPT ALL SELECT from_stage, to_stage, transitions, avg_time::text, median_time::text, p90_time::text FROM leadmgmt.stage_velocity)) d)
$$;

-- the summaries as one row per key, to compare incremental with rebuilt
CREATE FUNCTION pg_temp.summary() RETURNS SETOF text LANGUAGE sql AS $$
	SELECT format('e %s %s %s %s %s', zone, source, cohort_month, stage, sum(leads))
	  FROM leadmgmt.funnel_entry_count GROUP BY zone, source, cohort_month, stage HAVING sum(leads) <> 0
	UNION ALL
	SELECT format('l %s %s %s %s', zone, source, cohort_month, sum(leads))
	  FROM leadmgmt.funnel_lead_count GROUP BY zone, source, cohort_month HAVING sum(leads) <> 0
	UNION ALL
	SELECT format('p %s %s %s', stage, later_stage, sum(leads))
	  FROM leadmgmt.funnel_pair_count GROUP BY stage, later_stage HAVING sum(leads) <> 0
	UNION ALL
	SELECT format('d %s %s %s %s', from_stage, to_stage, took::text, sum(moves))
	  FROM leadmgmt.funnel_duration_count GROUP BY from_stage, to_stage, took::text HAVING sum(moves) <> 0
$$;

-- 400 random leads, each walking the allowed transitions at random for up
-- to 8 moves, back-dated; a third of the stays last whole hours, so that
-- durations repeat
SELECT setseed(0.21);
INSERT INTO leadmgmt.lead (email, source, created_at)
SELECT 'r' || g || '@example.com',
       (ARRAY['web_form', 'exhibition', 'seminar', NULL])[1 + floor(random() * 4)::int],
       timestamptz '2025-01-01' + random() * interval '700 days'
  FROM generate_series(1, 400) g;
DO $$
DECLARE l record; t timestamptz; nxt text; moves int;
BEGIN
	FOR l IN SELECT id, created_at FROM leadmgmt.lead ORDER BY id LOOP
		t := l.created_at;
		moves := floor(random() * 9)::int;
		FOR i IN 1 .. moves LOOP
			SELECT tr.to_stage INTO nxt
			  FROM leadmgmt.stage_transition tr JOIN leadmgmt.lead x ON x.id = l.id AND tr.from_stage = x.stage
			 ORDER BY random() LIMIT 1;
			EXIT WHEN nxt IS NULL;
			t := t + CASE WHEN random() < 0.33 THEN floor(random() * 200) * interval '1 hour'
			              ELSE random() * interval '60 days' END;
			PERFORM leadmgmt.set_stage(l.id, nxt, at => t);
		END LOOP;
	END LOOP;
END $$;
SELECT count(*) AS history_rows, count(DISTINCT time_in_from_stage) < count(time_in_from_stage) AS durations_repeat
  FROM leadmgmt.stage_history;
SELECT * FROM pg_temp.differences();

-- merges, new sources, back-dated creation: the summaries follow
SELECT count(leadmgmt.merge_leads(g, g + 1)) AS merged FROM generate_series(1, 40, 4) g;
UPDATE leadmgmt.lead SET source = 'seminar' WHERE id % 17 = 0 AND merged_into IS NULL;
UPDATE leadmgmt.lead SET source = NULL WHERE id % 23 = 0 AND merged_into IS NULL;
UPDATE leadmgmt.lead SET created_at = created_at - interval '45 days' WHERE id % 19 = 0;
SELECT * FROM pg_temp.differences();

-- rows of one statement: a bulk stage change
UPDATE leadmgmt.lead SET stage = 'disqualified'
 WHERE merged_into IS NULL AND stage IN ('inquiry', 'mql') AND id % 5 = 0;
SELECT * FROM pg_temp.differences();

-- the triggers fold the counts every 256 history rows and the durations,
-- which hardly ever repeat, far less often: the counts-only fold leaves the
-- duration rows as they are and keeps the answers
CREATE TEMP TABLE before_fold AS
SELECT (SELECT count(*) FROM leadmgmt.funnel_duration_count) AS durations,
       (SELECT count(*) FROM leadmgmt.funnel_pair_count) AS pairs;
SELECT leadmgmt.funnel_summary_compact(false) > 0 AS folded_counts;
SELECT (SELECT count(*) FROM leadmgmt.funnel_duration_count) = durations AS durations_kept,
       (SELECT count(*) FROM leadmgmt.funnel_pair_count) < pairs AS pairs_folded
  FROM before_fold;
SELECT * FROM pg_temp.differences();

-- compaction keeps the answers and folds the rows; a rebuild gives the same rows
SELECT (SELECT count(*) FROM leadmgmt.funnel_entry_count) + (SELECT count(*) FROM leadmgmt.funnel_pair_count)
       + (SELECT count(*) FROM leadmgmt.funnel_lead_count)
       + (SELECT count(*) FROM leadmgmt.funnel_duration_count) > leadmgmt.funnel_summary_compact() AS folded;
SELECT * FROM pg_temp.differences();
CREATE TEMP TABLE incremental AS SELECT * FROM pg_temp.summary();
SELECT leadmgmt.rebuild_funnel_summary() > 0 AS rebuilt;
SELECT (SELECT count(*) FROM ((SELECT * FROM incremental EXCEPT ALL SELECT * FROM pg_temp.summary())
                              UNION ALL (SELECT * FROM pg_temp.summary() EXCEPT ALL SELECT * FROM incremental)) d) AS rebuild_differs,
       (SELECT count(*) FROM incremental) > 100 AS nonempty;

-- another reporting time zone: the cohort view answers from the history
-- until the summaries are rebuilt in the new zone
SELECT leadmgmt.set_setting('reporting_timezone', 'Pacific/Chatham');
SELECT * FROM pg_temp.differences() WHERE view = 'funnel_cohort';
SELECT count(leadmgmt.set_stage(id, 'mql', at => stage_entered_at + interval '1 day'))
  FROM leadmgmt.lead WHERE merged_into IS NULL AND stage = 'inquiry' AND id % 3 = 0;
SELECT * FROM pg_temp.differences();
SELECT leadmgmt.rebuild_funnel_summary() > 0 AS rebuilt;
SELECT * FROM pg_temp.differences();
SELECT EXISTS (SELECT 1 FROM leadmgmt.funnel_entry_count WHERE zone <> 'Pacific/Chatham')
       OR EXISTS (SELECT 1 FROM leadmgmt.funnel_lead_count WHERE zone <> 'Pacific/Chatham') AS other_zone_left;

-- a rep restricted by row-level security gets the reference answers over
-- the leads it sees
CREATE ROLE fs_sales NOLOGIN;
CREATE ROLE fs_rep IN ROLE fs_sales;
DO $$ BEGIN
	EXECUTE 'CREATE ROLE fs_admin NOLOGIN; CREATE ROLE fs_marketing NOLOGIN; CREATE ROLE fs_reader NOLOGIN';
	PERFORM leadmgmt.grant_access('fs_admin', 'fs_marketing', 'fs_sales', 'fs_reader');
END $$;
GRANT SELECT ON ALL TABLES IN SCHEMA pg_temp TO fs_rep;
UPDATE leadmgmt.lead SET owner = 'fs_rep' WHERE id % 3 = 0;
SELECT leadmgmt.set_setting('rls_by_owner', 'on');
SET ROLE fs_rep;
SELECT count(*) AS rep_sees FROM leadmgmt.lead;
SELECT * FROM pg_temp.differences();
RESET ROLE;
SELECT leadmgmt.set_setting('rls_by_owner', 'off');

SET client_min_messages = warning;
DROP OWNED BY fs_admin, fs_marketing, fs_sales, fs_reader, fs_rep;
DROP ROLE fs_admin, fs_marketing, fs_sales, fs_reader, fs_rep;
