-- leadmgmt 1.0.0 -> 1.1.0: what changed in the SQL surface since 1.0.0.
-- The upgrade test (test/t/003_upgrade.pl) checks that installing 1.0.0 and
-- running ALTER EXTENSION leadmgmt UPDATE gives exactly the objects and
-- built-in rows of a fresh 1.1.0 install.
--
-- One section per capability, in the order of sql/parts/; each section says
-- which part files it mirrors.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.1.0'" to load this file. \quit

-- BEGIN reliability (issue: concurrent load and merges)


-- END reliability



-- BEGIN versions (PostgreSQL 15, 17, 18)


-- END versions



-- BEGIN ingest (COPY speed, SSPACE)


-- END ingest



-- BEGIN behavioural (ClickHouse parity, sequences, retention)


-- END behavioural



-- BEGIN structure (one shape for every capability)


-- END structure



-- BEGIN sales loop (change feed, opportunities, campaigns)


-- END sales loop



-- BEGIN nurture


-- END nurture



-- BEGIN bi (chartable durations, reader surface)
-- Mirrors sql/parts/60_analytics.sql and 82_consent.sql: a numeric
-- companion <column>_days (fractional days) for every interval column of a
-- view, appended as the last columns (CREATE OR REPLACE VIEW can only add
-- columns at the end; a fresh install has them in the same place).
CREATE OR REPLACE VIEW leadmgmt.funnel WITH (security_invoker = true) AS
	SELECT s.name AS stage,
	       row_number() OVER (ORDER BY s.rank, s.name)::integer AS position,
	       coalesce(en.leads, 0) AS leads_entered,
	       coalesce(cur.leads, 0) AS leads_current,
	       CASE WHEN s.next_stage IS NOT NULL AND coalesce(en.leads, 0) > 0
	            THEN coalesce(nx.leads, 0)::float8 / en.leads END AS conversion_to_next,
	       md.median AS median_time_in_stage,
	       date_part('epoch', md.median) / 86400 AS median_time_in_stage_days
	  FROM leadmgmt.stage s
	  LEFT JOIN (SELECT h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h
	              WHERE h.entry_number = 1
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.to_stage) en ON en.stage = s.name
	  LEFT JOIN (SELECT l.stage, count(*) AS leads FROM leadmgmt.lead l
	              WHERE l.merged_into IS NULL GROUP BY l.stage) cur ON cur.stage = s.name
	  -- converted: the first entry into the stage is followed by an entry
	  -- into its next stage
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
	  -- a stay in a stage ends with the next entry, which records its length
	  LEFT JOIN (SELECT h.from_stage AS stage,
	                    justify_hours((leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5}'))[1]) AS median
	               FROM leadmgmt.stage_history h
	              WHERE h.time_in_from_stage IS NOT NULL
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.from_stage) md ON md.stage = s.name;
COMMENT ON COLUMN leadmgmt.funnel.median_time_in_stage_days IS 'median_time_in_stage in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.stage_velocity WITH (security_invoker = true) AS
	SELECT t.from_stage, t.to_stage, t.transitions, t.avg_time,
	       justify_hours(t.p[1]) AS median_time, justify_hours(t.p[2]) AS p90_time,
	       date_part('epoch', t.avg_time) / 86400 AS avg_time_days,
	       date_part('epoch', t.p[1]) / 86400 AS median_time_days,
	       date_part('epoch', t.p[2]) / 86400 AS p90_time_days
	  FROM (SELECT h.from_stage, h.to_stage, count(*) AS transitions,
	               justify_hours(avg(h.time_in_from_stage)) AS avg_time,
	               leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5,0.9}') AS p
	          FROM leadmgmt.stage_history h
	         WHERE h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
	           AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                            WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	         GROUP BY h.from_stage, h.to_stage) t;
COMMENT ON COLUMN leadmgmt.stage_velocity.avg_time_days IS 'avg_time in days (fractional), for charting';
COMMENT ON COLUMN leadmgmt.stage_velocity.median_time_days IS 'median_time in days (fractional), for charting';
COMMENT ON COLUMN leadmgmt.stage_velocity.p90_time_days IS 'p90_time in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.reengaged WITH (security_invoker = true) AS
	SELECT l.id AS lead_id, l.stage, l.owner, l.score,
	       p.occurred_at AS previous_touch_at, p.kind AS previous_kind, p.detail AS previous_detail,
	       n.occurred_at AS new_touch_at, n.kind AS new_kind, n.detail AS new_detail,
	       n.occurred_at - p.occurred_at AS quiet_for,
	       date_part('epoch', n.occurred_at - p.occurred_at) / 86400 AS quiet_for_days
	  FROM leadmgmt.lead l
	  -- the first touch of the current burst
	  JOIN LATERAL (SELECT a.occurred_at, a.kind, a.detail, a.id FROM leadmgmt.activity a
	                 WHERE a.lead_id = l.id
	                   AND a.occurred_at >= now() - leadmgmt.get_setting('reengaged_within')::interval
	                   AND a.occurred_at <= now()
	                 ORDER BY a.occurred_at, a.id LIMIT 1) n ON true
	  -- the touch before it
	  JOIN LATERAL (SELECT a.occurred_at, a.kind, a.detail FROM leadmgmt.activity a
	                 WHERE a.lead_id = l.id AND (a.occurred_at, a.id) < (n.occurred_at, n.id)
	                 ORDER BY a.occurred_at DESC, a.id DESC LIMIT 1) p ON true
	 WHERE l.merged_into IS NULL
	   AND n.occurred_at - p.occurred_at >= leadmgmt.get_setting('dormant_after')::interval;
COMMENT ON COLUMN leadmgmt.reengaged.quiet_for_days IS 'quiet_for in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.sales_queue WITH (security_invoker = true) AS
	WITH waiting AS (
		SELECT l.id AS lead_id, 'mql'::text AS reason, l.stage_entered_at AS handed_off_at
		  FROM leadmgmt.lead l WHERE l.stage = 'mql' AND l.merged_into IS NULL
		UNION ALL
		SELECT r.lead_id, 're-engaged', r.new_touch_at
		  FROM leadmgmt.reengaged r
		 WHERE r.stage IN ('inquiry', 'recycled')
		   AND leadmgmt.score(r.lead_id) >= leadmgmt.get_setting('queue_min_score')::float8
	)
	SELECT w.lead_id, l.name, l.company, l.owner, l.stage, w.reason,
	       leadmgmt.score(w.lead_id) AS score_now, l.grade,
	       w.handed_off_at, now() - w.handed_off_at AS waiting,
	       now() - w.handed_off_at > leadmgmt.get_setting('handoff_window')::interval AS overdue,
	       (SELECT string_agg(x.kind || coalesce(' ' || x.detail, '') || ' (' || to_char(x.occurred_at, 'YYYY-MM-DD') || ')',
	                          ', ' ORDER BY x.occurred_at DESC, x.id DESC)
	          FROM (SELECT a.kind, a.detail, a.occurred_at, a.id FROM leadmgmt.activity a
	                 WHERE a.lead_id = w.lead_id ORDER BY a.occurred_at DESC, a.id DESC LIMIT 3) x) AS last_activities,
	       date_part('epoch', now() - w.handed_off_at) / 86400 AS waiting_days
	  FROM waiting w JOIN leadmgmt.lead l ON l.id = w.lead_id
	 ORDER BY score_now DESC, w.handed_off_at, w.lead_id;
COMMENT ON COLUMN leadmgmt.sales_queue.waiting_days IS 'waiting in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.stale_leads WITH (security_invoker = true) AS
	SELECT l.id AS lead_id, l.stage, l.owner, l.stage_entered_at,
	       a.last_activity_at,
	       pg_catalog.now() - coalesce(a.last_activity_at, l.created_at) AS idle,
	       pg_catalog.date_part('epoch', pg_catalog.now() - coalesce(a.last_activity_at, l.created_at)) / 86400 AS idle_days
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage s ON s.name = l.stage
	  LEFT JOIN LATERAL (SELECT max(x.occurred_at) AS last_activity_at
	                       FROM leadmgmt.activity x WHERE x.lead_id = l.id) a ON true
	 WHERE l.merged_into IS NULL
	   AND s.category IN ('open', 'nurture')
	   AND coalesce(a.last_activity_at, l.created_at)
	       < pg_catalog.now() - leadmgmt.get_setting('stale_after')::interval;
COMMENT ON COLUMN leadmgmt.stale_leads.idle_days IS 'idle in days (fractional), for charting';


-- END bi
