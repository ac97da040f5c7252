
-------------------------------------------------------------------------------
-- Analytics: funnel views for BI tools (doc/analytics.md)
-------------------------------------------------------------------------------
-- Exact percentiles without percentile_cont's sort (src/percentile.c): an
-- ordinary, hashable, parallel aggregate that the views below use for times
-- in stage.
CREATE FUNCTION leadmgmt.interval_percentiles_trans(internal, interval, float8[])
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_trans';
CREATE FUNCTION leadmgmt.interval_percentiles_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_combine';
CREATE FUNCTION leadmgmt.interval_percentiles_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_serialize';
CREATE FUNCTION leadmgmt.interval_percentiles_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_deserialize';
CREATE FUNCTION leadmgmt.interval_percentiles_final(internal)
RETURNS interval[] LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_final';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_trans(internal, interval, float8[]) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_combine(internal, internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_serialize(internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_deserialize(bytea, internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_final(internal) IS
	'Support function of the interval_percentiles aggregate';
CREATE AGGREGATE leadmgmt.interval_percentiles(value interval, fractions float8[]) (
	SFUNC = leadmgmt.interval_percentiles_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.interval_percentiles_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.interval_percentiles_combine,
	SERIALFUNC = leadmgmt.interval_percentiles_serialize,
	DESERIALFUNC = leadmgmt.interval_percentiles_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.interval_percentiles(interval, float8[]) IS
	'For each fraction, exactly what percentile_cont(fraction) WITHIN GROUP (ORDER BY value) returns, by selection instead of a sort; NULL values skipped; NULL for no values';

-- Conversion along next_stage without joining the history to itself
-- (src/stage_conversions.c): one scan collects the entries, a radix sort by lead
-- puts each lead's entries together.
CREATE FUNCTION leadmgmt.stage_conversions_trans(internal, bigint, text, timestamptz, text[], text[])
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_trans';
CREATE FUNCTION leadmgmt.stage_conversions_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_combine';
CREATE FUNCTION leadmgmt.stage_conversions_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_serialize';
CREATE FUNCTION leadmgmt.stage_conversions_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_deserialize';
CREATE FUNCTION leadmgmt.stage_conversions_final(internal)
RETURNS bigint[] LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_final';
COMMENT ON FUNCTION leadmgmt.stage_conversions_trans(internal, bigint, text, timestamptz, text[], text[]) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_combine(internal, internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_serialize(internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_deserialize(bytea, internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_final(internal) IS
	'Support function of the stage_conversions aggregate';
CREATE AGGREGATE leadmgmt.stage_conversions(lead_id bigint, stage text, changed_at timestamptz,
                                            stages text[], next_stages text[]) (
	SFUNC = leadmgmt.stage_conversions_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.stage_conversions_final,
	FINALFUNC_MODIFY = SHAREABLE,
	COMBINEFUNC = leadmgmt.stage_conversions_combine,
	SERIALFUNC = leadmgmt.stage_conversions_serialize,
	DESERIALFUNC = leadmgmt.stage_conversions_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.stage_conversions(bigint, text, timestamptz, text[], text[]) IS
	'For each stages[i], the number of leads that entered next_stages[i] at or after their first entry into stages[i] (rows are stage entries); rows with a NULL or unlisted stage skipped';

-- Shared base: per lead and stage, the first and last time the lead entered
-- it, for leads that are not merged into another one.
CREATE VIEW leadmgmt.stage_entry WITH (security_invoker = true) AS
	SELECT h.lead_id, h.to_stage AS stage, min(h.changed_at) AS first_entered_at,
	       max(h.changed_at) AS last_entered_at, count(*) AS entries
	  FROM leadmgmt.stage_history h
	 -- merged leads are few: an anti-join against them beats joining every lead
	 WHERE NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                    WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	   AND h.from_stage IS DISTINCT FROM h.to_stage	-- notes (merges) are no entries
	 GROUP BY h.lead_id, h.to_stage;
COMMENT ON VIEW leadmgmt.stage_entry IS
	'Per live lead and stage: when it first and last entered the stage and how often';
COMMENT ON COLUMN leadmgmt.stage_entry.lead_id IS 'the lead (merged leads excluded)';
COMMENT ON COLUMN leadmgmt.stage_entry.stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.stage_entry.first_entered_at IS 'first entry';
COMMENT ON COLUMN leadmgmt.stage_entry.last_entered_at IS 'latest entry (re-entries after recycling)';
COMMENT ON COLUMN leadmgmt.stage_entry.entries IS 'number of entries';

-- The funnel views read the facts recorded with each history row
-- (entry_number, time_in_from_stage) so that each number is one scan of
-- stage_history, with no sort of the history by lead.
CREATE VIEW leadmgmt.funnel WITH (security_invoker = true) AS
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
COMMENT ON VIEW leadmgmt.funnel IS
	'The waterfall: per stage, leads that ever entered it, leads in it now, conversion to stage.next_stage and median time in stage';
COMMENT ON COLUMN leadmgmt.funnel.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel.position IS 'position along the waterfall (by stage.rank, then name)';
COMMENT ON COLUMN leadmgmt.funnel.leads_entered IS 'live leads that ever entered the stage (each lead once)';
COMMENT ON COLUMN leadmgmt.funnel.leads_current IS 'live leads in the stage now';
COMMENT ON COLUMN leadmgmt.funnel.conversion_to_next IS 'share of leads_entered that later entered stage.next_stage (NULL without a next stage)';
COMMENT ON COLUMN leadmgmt.funnel.median_time_in_stage IS 'median time from entering the stage to the next stage change (completed stays only)';

CREATE VIEW leadmgmt.funnel_by_source WITH (security_invoker = true) AS
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
COMMENT ON VIEW leadmgmt.funnel_by_source IS 'The waterfall per lead source';
COMMENT ON COLUMN leadmgmt.funnel_by_source.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_by_source.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel_by_source.leads_entered IS 'live leads of the source that ever entered the stage';
COMMENT ON COLUMN leadmgmt.funnel_by_source.conversion_from_first IS 'leads_entered / all live leads of the source';

CREATE VIEW leadmgmt.funnel_cohort WITH (security_invoker = true) AS
	WITH tz AS (SELECT leadmgmt.get_setting('reporting_timezone') AS zone),
	cohort AS (
		-- the first stage entry is recorded at created_at (the stage machine
		-- does so), so the lead row gives the cohort without aggregating history
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
COMMENT ON VIEW leadmgmt.funnel_cohort IS
	'The waterfall per monthly cohort (month of the lead''s first stage entry, in the reporting_timezone setting)';
COMMENT ON COLUMN leadmgmt.funnel_cohort.cohort_month IS 'first day of the cohort month, in reporting_timezone';
COMMENT ON COLUMN leadmgmt.funnel_cohort.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel_cohort.leads_entered IS 'live leads of the cohort that ever entered the stage';
COMMENT ON COLUMN leadmgmt.funnel_cohort.conversion_from_first IS 'leads_entered / all live leads of the cohort';

CREATE VIEW leadmgmt.stage_velocity WITH (security_invoker = true) AS
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
COMMENT ON VIEW leadmgmt.stage_velocity IS 'How long leads stay in a stage before each move: average, median and 90th percentile';
COMMENT ON COLUMN leadmgmt.stage_velocity.from_stage IS 'stage left';
COMMENT ON COLUMN leadmgmt.stage_velocity.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.stage_velocity.transitions IS 'number of such moves';
COMMENT ON COLUMN leadmgmt.stage_velocity.avg_time IS 'average time in from_stage before the move';
COMMENT ON COLUMN leadmgmt.stage_velocity.median_time IS 'median time in from_stage before the move';
COMMENT ON COLUMN leadmgmt.stage_velocity.p90_time IS '90th percentile of the time in from_stage before the move';

-- "A seminar a year ago, the pricing page this week"
CREATE VIEW leadmgmt.reengaged WITH (security_invoker = true) AS
	SELECT l.id AS lead_id, l.stage, l.owner, l.score,
	       p.occurred_at AS previous_touch_at, p.kind AS previous_kind, p.detail AS previous_detail,
	       n.occurred_at AS new_touch_at, n.kind AS new_kind, n.detail AS new_detail,
	       n.occurred_at - p.occurred_at AS quiet_for
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
COMMENT ON VIEW leadmgmt.reengaged IS
	'Leads quiet for at least dormant_after that have activity within reengaged_within, with the touch before the silence and the new one';
COMMENT ON COLUMN leadmgmt.reengaged.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.reengaged.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt.reengaged.owner IS 'sales rep';
COMMENT ON COLUMN leadmgmt.reengaged.score IS 'stored score (as of the latest scored activity)';
COMMENT ON COLUMN leadmgmt.reengaged.previous_touch_at IS 'the last touch before the silence';
COMMENT ON COLUMN leadmgmt.reengaged.previous_kind IS 'its kind';
COMMENT ON COLUMN leadmgmt.reengaged.previous_detail IS 'its detail';
COMMENT ON COLUMN leadmgmt.reengaged.new_touch_at IS 'the first touch after the silence (within reengaged_within)';
COMMENT ON COLUMN leadmgmt.reengaged.new_kind IS 'its kind';
COMMENT ON COLUMN leadmgmt.reengaged.new_detail IS 'its detail';
COMMENT ON COLUMN leadmgmt.reengaged.quiet_for IS 'length of the silence';

CREATE VIEW leadmgmt.sales_queue WITH (security_invoker = true) AS
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
	                 WHERE a.lead_id = w.lead_id ORDER BY a.occurred_at DESC, a.id DESC LIMIT 3) x) AS last_activities
	  FROM waiting w JOIN leadmgmt.lead l ON l.id = w.lead_id
	 ORDER BY score_now DESC, w.handed_off_at, w.lead_id;
COMMENT ON VIEW leadmgmt.sales_queue IS
	'Leads waiting for sales: MQLs not yet accepted and re-engaged leads scoring at least queue_min_score, hottest first';
COMMENT ON COLUMN leadmgmt.sales_queue.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.sales_queue.name IS 'name';
COMMENT ON COLUMN leadmgmt.sales_queue.company IS 'company';
COMMENT ON COLUMN leadmgmt.sales_queue.owner IS 'sales rep';
COMMENT ON COLUMN leadmgmt.sales_queue.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt.sales_queue.reason IS 'mql or re-engaged';
COMMENT ON COLUMN leadmgmt.sales_queue.score_now IS 'engagement score now (decayed)';
COMMENT ON COLUMN leadmgmt.sales_queue.grade IS 'fit grade';
COMMENT ON COLUMN leadmgmt.sales_queue.handed_off_at IS 'when it became an MQL, or its first touch after the silence';
COMMENT ON COLUMN leadmgmt.sales_queue.waiting IS 'time since handed_off_at (speed-to-lead)';
COMMENT ON COLUMN leadmgmt.sales_queue.overdue IS 'waiting longer than the handoff_window setting';
COMMENT ON COLUMN leadmgmt.sales_queue.last_activities IS 'the three latest activities, newest first';

-- Point-in-time trends
CREATE TABLE leadmgmt.funnel_snapshot (
	snapshot_date        date NOT NULL,
	stage                text NOT NULL,
	position             integer NOT NULL,
	leads_entered        bigint NOT NULL,
	leads_current        bigint NOT NULL,
	conversion_to_next   float8,
	median_time_in_stage interval,
	taken_at             timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (snapshot_date, stage)
);
COMMENT ON TABLE leadmgmt.funnel_snapshot IS 'Daily copies of leadmgmt.funnel, for charting the funnel over time';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.snapshot_date IS 'day of the snapshot, in reporting_timezone';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.position IS 'position along the waterfall';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.leads_entered IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.leads_current IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.conversion_to_next IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.median_time_in_stage IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt.funnel_snapshot.taken_at IS 'when the snapshot was (last) taken';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.funnel_snapshot', '');

CREATE FUNCTION leadmgmt.snapshot_funnel()
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH day AS (SELECT (now() AT TIME ZONE leadmgmt.get_setting('reporting_timezone'))::date AS d),
	ins AS (
		INSERT INTO leadmgmt.funnel_snapshot AS fs
			(snapshot_date, stage, position, leads_entered, leads_current, conversion_to_next, median_time_in_stage)
		SELECT day.d, f.stage, f.position, f.leads_entered, f.leads_current, f.conversion_to_next, f.median_time_in_stage
		  FROM leadmgmt.funnel f, day
		ON CONFLICT (snapshot_date, stage) DO UPDATE
		   SET position = EXCLUDED.position, leads_entered = EXCLUDED.leads_entered,
		       leads_current = EXCLUDED.leads_current, conversion_to_next = EXCLUDED.conversion_to_next,
		       median_time_in_stage = EXCLUDED.median_time_in_stage, taken_at = now()
		RETURNING 1
	)
	SELECT count(*) FROM ins;
END;
COMMENT ON FUNCTION leadmgmt.snapshot_funnel() IS
	'Copy today''s funnel into leadmgmt.funnel_snapshot (a second call the same day refreshes it); returns the number of stages';

CREATE FUNCTION leadmgmt.funnel_chart(width integer DEFAULT 40)
RETURNS TABLE (stage text, leads_entered bigint, bar text, conversion_to_next text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT f.stage, f.leads_entered,
	       repeat('█', (round(greatest(funnel_chart.width, 1) * f.leads_entered::numeric
	                          / nullif(max(f.leads_entered) OVER (), 0)))::integer),
	       CASE WHEN f.conversion_to_next IS NOT NULL
	            THEN to_char(100 * f.conversion_to_next, 'FM990.0') || ' %' END
	  FROM leadmgmt.funnel f
	  JOIN leadmgmt.stage s ON s.name = f.stage
	 WHERE s.category IN ('open', 'won')
	 ORDER BY f.position;
END;
COMMENT ON FUNCTION leadmgmt.funnel_chart(integer) IS
	'The funnel as text bars for psql: open and won stages, bar length proportional to leads_entered';

CREATE FUNCTION leadmgmt.funnel_svg(width integer DEFAULT 640)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH f AS (
		SELECT f.stage, f.leads_entered, f.conversion_to_next,
		       row_number() OVER (ORDER BY f.position) - 1 AS i,
		       max(f.leads_entered) OVER () AS top
		  FROM leadmgmt.funnel f JOIN leadmgmt.stage s ON s.name = f.stage
		 WHERE s.category IN ('open', 'won')
	), geo AS (
		SELECT f.*, greatest(funnel_svg.width, 200) AS w,
		       (CASE WHEN f.top > 0
		             THEN greatest(2, round((greatest(funnel_svg.width, 200) - 40) * f.leads_entered::numeric / f.top))
		             ELSE 2 END)::integer AS bar
		  FROM f
	)
	SELECT format('<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" font-family="sans-serif" font-size="13">',
	              max(w), 20 + 44 * count(*))
	       || string_agg(format('<rect x="%s" y="%s" width="%s" height="30" rx="3" fill="#3b7dd8"/>'
	                            || '<text x="%s" y="%s" text-anchor="middle" fill="#fff" stroke="#1b3d6b" stroke-width="3" paint-order="stroke">%s: %s%s</text>',
	                            round((w - bar) / 2.0, 1), 10 + 44 * i, bar, w / 2, 30 + 44 * i, stage, leads_entered,
	                            CASE WHEN conversion_to_next IS NOT NULL
	                                 THEN ' (' || to_char(100 * conversion_to_next, 'FM990.0') || ' % on)' ELSE '' END),
	                     '' ORDER BY i)
	       || '</svg>'
	  FROM geo;
END;
COMMENT ON FUNCTION leadmgmt.funnel_svg(integer) IS
	'The funnel as an SVG picture (open and won stages, bar width proportional to leads_entered, with conversion to the next stage)';
