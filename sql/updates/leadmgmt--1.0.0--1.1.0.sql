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
COMMENT ON VIEW leadmgmt.funnel IS
	'The waterfall: per stage, leads that ever entered it, leads in it now, conversion to stage.next_stage and median time in stage';
COMMENT ON COLUMN leadmgmt.funnel.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel.position IS 'position along the waterfall (by stage.rank, then name)';
COMMENT ON COLUMN leadmgmt.funnel.leads_entered IS 'live leads that ever entered the stage (each lead once)';
COMMENT ON COLUMN leadmgmt.funnel.leads_current IS 'live leads in the stage now';
COMMENT ON COLUMN leadmgmt.funnel.conversion_to_next IS 'share of leads_entered that later entered stage.next_stage (NULL without a next stage)';
COMMENT ON COLUMN leadmgmt.funnel.median_time_in_stage IS 'median time from entering the stage to the next stage change (completed stays only)';
COMMENT ON COLUMN leadmgmt.funnel.median_time_in_stage_days IS 'median_time_in_stage in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.funnel_by_source WITH (security_invoker = true) AS
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

CREATE OR REPLACE VIEW leadmgmt.funnel_cohort WITH (security_invoker = true) AS
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
COMMENT ON VIEW leadmgmt.stage_velocity IS 'How long leads stay in a stage before each move: average, median and 90th percentile';
COMMENT ON COLUMN leadmgmt.stage_velocity.from_stage IS 'stage left';
COMMENT ON COLUMN leadmgmt.stage_velocity.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.stage_velocity.transitions IS 'number of such moves';
COMMENT ON COLUMN leadmgmt.stage_velocity.avg_time IS 'average time in from_stage before the move';
COMMENT ON COLUMN leadmgmt.stage_velocity.median_time IS 'median time in from_stage before the move';
COMMENT ON COLUMN leadmgmt.stage_velocity.p90_time IS '90th percentile of the time in from_stage before the move';
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
	                   AND a.occurred_at >= now() - (SELECT leadmgmt.get_setting('reengaged_within')::interval)
	                   AND a.occurred_at <= now()
	                 ORDER BY a.occurred_at, a.id LIMIT 1) n ON true
	  -- the touch before it
	  JOIN LATERAL (SELECT a.occurred_at, a.kind, a.detail FROM leadmgmt.activity a
	                 WHERE a.lead_id = l.id AND (a.occurred_at, a.id) < (n.occurred_at, n.id)
	                 ORDER BY a.occurred_at DESC, a.id DESC LIMIT 1) p ON true
	 WHERE l.merged_into IS NULL
	   AND n.occurred_at - p.occurred_at >= (SELECT leadmgmt.get_setting('dormant_after')::interval);
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
COMMENT ON COLUMN leadmgmt.reengaged.quiet_for_days IS 'quiet_for in days (fractional), for charting';

CREATE OR REPLACE VIEW leadmgmt.sales_queue WITH (security_invoker = true) AS
	WITH waiting AS (
		SELECT l.id AS lead_id, 'mql'::text AS reason, l.stage_entered_at AS handed_off_at
		  FROM leadmgmt.lead l WHERE l.stage = 'mql' AND l.merged_into IS NULL
		UNION ALL
		SELECT r.lead_id, 're-engaged', r.new_touch_at
		  FROM leadmgmt.reengaged r
		 WHERE r.stage IN ('inquiry', 'recycled')
	), scored AS (
		SELECT w.lead_id, w.reason, w.handed_off_at,
		       CASE WHEN leadmgmt.score_state_latest(st.state) IS NULL THEN 0::float8
		            WHEN now() >= leadmgmt.score_state_latest(st.state)
		            THEN leadmgmt.score_state_value(st.state, now())
		            ELSE leadmgmt.score(w.lead_id) END AS score_now
		  FROM waiting w LEFT JOIN leadmgmt.score_state st ON st.lead_id = w.lead_id
	)
	SELECT w.lead_id, l.name, l.company, l.owner, l.stage, w.reason,
	       w.score_now, l.grade,
	       w.handed_off_at, now() - w.handed_off_at AS waiting,
	       now() - w.handed_off_at > (SELECT leadmgmt.get_setting('handoff_window')::interval) AS overdue,
	       (SELECT string_agg(x.kind || coalesce(' ' || x.detail, '') || ' (' || to_char(x.occurred_at, 'YYYY-MM-DD') || ')',
	                          ', ' ORDER BY x.occurred_at DESC, x.id DESC)
	          FROM (SELECT a.kind, a.detail, a.occurred_at, a.id FROM leadmgmt.activity a
	                 WHERE a.lead_id = w.lead_id ORDER BY a.occurred_at DESC, a.id DESC LIMIT 3) x) AS last_activities,
	       date_part('epoch', now() - w.handed_off_at) / 86400 AS waiting_days
	  FROM scored w JOIN leadmgmt.lead l ON l.id = w.lead_id
	 WHERE w.reason = 'mql'
	    OR w.score_now >= (SELECT leadmgmt.get_setting('queue_min_score')::float8)
	 ORDER BY w.score_now DESC, w.handed_off_at, w.lead_id;
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
	       < pg_catalog.now() - (SELECT leadmgmt.get_setting('stale_after')::interval);
COMMENT ON VIEW leadmgmt.stale_leads IS
	'Open and nurture leads without activity for the stale_after setting (default 30 days)';
COMMENT ON COLUMN leadmgmt.stale_leads.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.stale_leads.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt.stale_leads.owner IS 'sales rep';
COMMENT ON COLUMN leadmgmt.stale_leads.stage_entered_at IS 'when it entered its stage';
COMMENT ON COLUMN leadmgmt.stale_leads.last_activity_at IS 'latest activity (NULL: none)';
COMMENT ON COLUMN leadmgmt.stale_leads.idle IS 'time since the latest activity, or since creation';
COMMENT ON COLUMN leadmgmt.stale_leads.idle_days IS 'idle in days (fractional), for charting';

-- Mirrors sql/parts/90_access.sql: grant_access() covers schema leadmgmt_bi
-- and gives every role the vocabularies whole.
CREATE OR REPLACE FUNCTION leadmgmt.grant_access(admin regrole, marketing regrole, sales regrole, reader regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ext_owner oid;
	kinds text[] := ARRAY['admin', 'marketing', 'sales', 'reader'];
	roles regrole[] := ARRAY[admin, marketing, sales, reader];
	r text;
	obj text;
	i integer;
	-- object lists per kind; names in leadmgmt
	vocab text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule', 'fit_rule'];
	sales_read text[] := ARRAY['lead', 'activity', 'stage_history', 'score_state', 'consent',
	                           'lead_external_id', 'lead_merge', 'model', 'purged_score'];
	mkt_write text[] := ARRAY['lead', 'activity', 'lead_import', 'lead_external_id', 'consent'];
	mkt_seq text[] := ARRAY['lead_id_seq', 'activity_id_seq', 'lead_import_id_seq',
	                        'consent_id_seq', 'lead_merge_id_seq'];
	admin_write text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule',
	                            'fit_rule', 'setting', 'model'];
	admin_seq text[] := ARRAY['scoring_rule_id_seq', 'fit_rule_id_seq'];
	admin_fn text[] := ARRAY['leadmgmt.rescore()', 'leadmgmt.forget_lead(bigint)',
	                         'leadmgmt.rebuild_keys()', 'leadmgmt.purge_activity(timestamptz,integer)',
	                         'leadmgmt.shard_table(text,text[],regclass)'];
	views text[];
BEGIN
	SELECT e.extowner INTO ext_owner FROM pg_catalog.pg_extension e WHERE e.extname = 'leadmgmt';
	IF NOT (SELECT me.rolsuper FROM pg_catalog.pg_roles me WHERE me.rolname = CURRENT_USER)
	   AND (SELECT me.oid FROM pg_catalog.pg_roles me WHERE me.rolname = CURRENT_USER) <> ext_owner THEN
		RAISE EXCEPTION 'only the owner of extension leadmgmt or a superuser may call grant_access()'
			USING ERRCODE = '42501';
	END IF;
	FOR i IN 1 .. 4 LOOP
		IF roles[i] IS NULL OR roles[i]::oid = 0 THEN
			RAISE EXCEPTION 'the % role must be a role, not %', kinds[i],
				CASE WHEN roles[i] IS NULL THEN 'NULL' ELSE 'PUBLIC' END
				USING ERRCODE = '22004',
				      HINT = 'Create the four roles with CREATE ROLE ... NOLOGIN first (doc/roles.md).';
		END IF;
		IF roles[i]::oid = ext_owner THEN
			RAISE EXCEPTION 'the % role must not be role "%", which owns extension leadmgmt', kinds[i], roles[i]
				USING ERRCODE = '22023',
				      HINT = 'Create a separate role and grant it to the users (doc/roles.md).';
		END IF;
	END LOOP;

	-- start from nothing, so that the result is exactly the matrix below
	-- (also when a role changes kind); roles replaced since the last call
	-- lose what they had
	FOR r IN
		SELECT x.role::text FROM (SELECT a.role FROM leadmgmt.access_role a
		                          UNION SELECT u FROM unnest(roles) u) x
		 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles p WHERE p.oid = x.role::oid)
	LOOP
		EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA leadmgmt_bi FROM %s', r);
		EXECUTE format('REVOKE ALL ON SCHEMA leadmgmt_bi FROM %s', r);
	END LOOP;

	-- every view of the two schemas at call time (BI views added later:
	-- call again); leadmgmt_bi is the surface for BI tools (doc/bi.md)
	SELECT array_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text) INTO views
	  FROM pg_catalog.pg_class c
	 WHERE c.relnamespace IN ('leadmgmt'::regnamespace, 'leadmgmt_bi'::regnamespace)
	   AND c.relkind IN ('v', 'm');

	FOR i IN 1 .. 4 LOOP
		r := roles[i]::text;
		EXECUTE format('GRANT USAGE ON SCHEMA leadmgmt TO %s', r);
		EXECUTE format('GRANT USAGE ON SCHEMA leadmgmt_bi TO %s', r);
		-- the views are security_invoker: their readers need SELECT on the
		-- columns they read, so grant exactly those (from the views' rules)
		FOREACH obj IN ARRAY COALESCE(views, '{}') LOOP
			EXECUTE format('GRANT SELECT ON %s TO %s', obj, r);
		END LOOP;
		FOR obj IN
			SELECT format('GRANT SELECT (%s) ON %s TO %s',
			              string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum), t.oid::regclass, r)
			  FROM pg_catalog.pg_rewrite w
			  JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
			  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
			                             AND d.objid = w.oid
			                             AND d.refclassid = 'pg_catalog.pg_class'::regclass
			  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.relkind = 'r'
			  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
			 WHERE v.relnamespace IN ('leadmgmt'::regnamespace, 'leadmgmt_bi'::regnamespace)
			   AND v.relkind IN ('v', 'm')
			   AND d.refobjsubid > 0
			 GROUP BY t.oid
		LOOP
			EXECUTE obj;
		END LOOP;
		-- get_setting() runs as the caller; settings are no secret
		EXECUTE format('GRANT SELECT ON leadmgmt.setting TO %s', r);
		-- the vocabularies hold nothing personal: every role reads them whole
		FOREACH obj IN ARRAY vocab LOOP
			EXECUTE format('GRANT SELECT ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		CONTINUE WHEN kinds[i] = 'reader';

		-- sales and up: leads, activity and their history
		FOREACH obj IN ARRAY sales_read LOOP
			EXECUTE format('GRANT SELECT ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		IF kinds[i] = 'sales' THEN
			EXECUTE format('GRANT UPDATE (stage) ON leadmgmt.lead TO %s', r);
			CONTINUE;
		END IF;

		-- marketing and admin: leads, activity, consent, imports, merges
		FOREACH obj IN ARRAY mkt_write LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		EXECUTE format('GRANT SELECT, INSERT ON leadmgmt.lead_merge TO %s', r);
		FOREACH obj IN ARRAY mkt_seq LOOP
			EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.%I TO %s', obj, r);
		END LOOP;
		-- merge_leads() moves what purged activity earned along
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.purged_score_follow(bigint) TO %s', r);
		CONTINUE WHEN kinds[i] = 'marketing';

		-- admin: rules, stages, transitions, settings, models, maintenance
		FOREACH obj IN ARRAY admin_write LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY admin_seq LOOP
			EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY admin_fn LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', obj, r);
		END LOOP;
	END LOOP;

	DELETE FROM leadmgmt.access_role;
	INSERT INTO leadmgmt.access_role (kind, role)
	SELECT k, x FROM unnest(kinds, roles) AS u(k, x);
END
$$;

-- Mirrors sql/parts/97_bi.sql (verbatim): the BI surface, last, as in a
-- fresh install.
-------------------------------------------------------------------------------
-- The BI surface: schema leadmgmt_bi (doc/bi.md)
-------------------------------------------------------------------------------
-- A BI tool (Metabase, Superset, Grafana, Tableau) lists the relations of a
-- schema and samples each with SELECT *.  In schema leadmgmt that fails for
-- the reader: tables carry column grants (lead, activity, stage_history) or
-- none.  Schema leadmgmt_bi holds only views every role of grant_access()
-- may read whole: one per view of schema leadmgmt, and views of the tables
-- with the columns that are no personal data.  They are security_invoker,
-- so row-level security by owner applies as in schema leadmgmt, and
-- grant_access() grants their readers the table columns they read.
-- Created last (after every other part): the views of leadmgmt are copied
-- from the catalog below, so a view added in an earlier part gets its copy.
CREATE SCHEMA leadmgmt_bi;
COMMENT ON SCHEMA leadmgmt_bi IS
	'leadmgmt for BI tools: every relation here can be read whole (SELECT *) by the roles of leadmgmt.grant_access(); point the BI tool at this schema (doc/bi.md)';

CREATE VIEW leadmgmt_bi.lead WITH (security_invoker = true) AS
	SELECT l.id, l.source, l.origin, l.owner, l.stage, l.stage_entered_at, l.score, l.score_at,
	       l.fit_score, l.grade, l.amount, l.currency, l.email_status, l.created_at, l.updated_at,
	       l.merged_into, l.forgotten_at
	  FROM leadmgmt.lead l;
COMMENT ON VIEW leadmgmt_bi.lead IS
	'Leads without personal data (no e-mail, name, company, phone, attributes, external id or match keys); merged leads included (merged_into set)';
COMMENT ON COLUMN leadmgmt_bi.lead.id IS 'lead id';
COMMENT ON COLUMN leadmgmt_bi.lead.source IS 'where the lead came from: web_form, exhibition, seminar, purchased_list, outbound_call, ...';
COMMENT ON COLUMN leadmgmt_bi.lead.origin IS 'inbound (the lead came to us) or outbound (we reached it)';
COMMENT ON COLUMN leadmgmt_bi.lead.owner IS 'sales rep who owns the lead';
COMMENT ON COLUMN leadmgmt_bi.lead.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt_bi.lead.stage_entered_at IS 'when the lead entered its current stage';
COMMENT ON COLUMN leadmgmt_bi.lead.score IS 'engagement score as of score_at';
COMMENT ON COLUMN leadmgmt_bi.lead.score_at IS 'time the score was last brought up to date';
COMMENT ON COLUMN leadmgmt_bi.lead.fit_score IS 'firmographic fit score';
COMMENT ON COLUMN leadmgmt_bi.lead.grade IS 'fit grade A to D';
COMMENT ON COLUMN leadmgmt_bi.lead.amount IS 'deal value';
COMMENT ON COLUMN leadmgmt_bi.lead.currency IS 'ISO 4217 currency of amount';
COMMENT ON COLUMN leadmgmt_bi.lead.email_status IS 'ok, bounced or unsubscribed';
COMMENT ON COLUMN leadmgmt_bi.lead.created_at IS 'when the lead was created';
COMMENT ON COLUMN leadmgmt_bi.lead.updated_at IS 'last change of the row';
COMMENT ON COLUMN leadmgmt_bi.lead.merged_into IS 'set when this lead was merged into another one (leave such leads out of counts)';
COMMENT ON COLUMN leadmgmt_bi.lead.forgotten_at IS 'when forget_lead() erased the personal data of this lead';

CREATE VIEW leadmgmt_bi.activity WITH (security_invoker = true) AS
	SELECT a.id, a.lead_id, a.kind, a.occurred_at, a.campaign, a.channel, a.duration_s
	  FROM leadmgmt.activity a;
COMMENT ON VIEW leadmgmt_bi.activity IS
	'Every activity of every lead, without detail and props (page URLs, asset names and free-form properties may name the person) and without points (the reader level sees scores, not the points of single activities)';
COMMENT ON COLUMN leadmgmt_bi.activity.id IS 'activity id';
COMMENT ON COLUMN leadmgmt_bi.activity.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt_bi.activity.kind IS 'kind of activity (activity_kind)';
COMMENT ON COLUMN leadmgmt_bi.activity.occurred_at IS 'when it happened';
COMMENT ON COLUMN leadmgmt_bi.activity.campaign IS 'campaign it belongs to';
COMMENT ON COLUMN leadmgmt_bi.activity.channel IS 'channel (email, web, event, ...)';
COMMENT ON COLUMN leadmgmt_bi.activity.duration_s IS 'duration in seconds (page views, calls, visits)';

CREATE VIEW leadmgmt_bi.stage_history WITH (security_invoker = true) AS
	SELECT h.id, h.lead_id, h.from_stage, h.to_stage, h.changed_at, h.entry_number,
	       h.time_in_from_stage,
	       pg_catalog.date_part('epoch', h.time_in_from_stage) / 86400 AS time_in_from_stage_days
	  FROM leadmgmt.stage_history h;
COMMENT ON VIEW leadmgmt_bi.stage_history IS
	'Every stage a lead entered, without who made the change and why';
COMMENT ON COLUMN leadmgmt_bi.stage_history.id IS 'row id, in the order the changes were recorded';
COMMENT ON COLUMN leadmgmt_bi.stage_history.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt_bi.stage_history.from_stage IS 'stage left (NULL when the lead was created)';
COMMENT ON COLUMN leadmgmt_bi.stage_history.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt_bi.stage_history.changed_at IS 'when the lead entered to_stage';
COMMENT ON COLUMN leadmgmt_bi.stage_history.entry_number IS '1 for the lead''s first entry into to_stage, 2 for the next, ...; NULL for notes';
COMMENT ON COLUMN leadmgmt_bi.stage_history.time_in_from_stage IS 'time the lead spent in from_stage';
COMMENT ON COLUMN leadmgmt_bi.stage_history.time_in_from_stage_days IS 'time_in_from_stage in days (fractional), for charting';

CREATE VIEW leadmgmt_bi.funnel_snapshot WITH (security_invoker = true) AS
	SELECT f.snapshot_date, f.stage, f.position, f.leads_entered, f.leads_current,
	       f.conversion_to_next, f.median_time_in_stage,
	       pg_catalog.date_part('epoch', f.median_time_in_stage) / 86400 AS median_time_in_stage_days,
	       f.taken_at
	  FROM leadmgmt.funnel_snapshot f;
COMMENT ON VIEW leadmgmt_bi.funnel_snapshot IS 'Daily copies of the funnel (snapshot_funnel()), for charting the funnel over time';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.snapshot_date IS 'day of the snapshot, in reporting_timezone';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.stage IS 'stage';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.position IS 'position along the waterfall';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.leads_entered IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.leads_current IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.conversion_to_next IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.median_time_in_stage IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.median_time_in_stage_days IS 'median_time_in_stage in days (fractional), for charting';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.taken_at IS 'when the snapshot was (last) taken';

-- The vocabularies, whole
CREATE VIEW leadmgmt_bi.stage WITH (security_invoker = true) AS
	SELECT s.name, s.rank, s.category, s.is_entry, s.next_stage, s.description, s.builtin
	  FROM leadmgmt.stage s;
COMMENT ON VIEW leadmgmt_bi.stage IS 'The stages of the waterfall';
COMMENT ON COLUMN leadmgmt_bi.stage.name IS 'stage name';
COMMENT ON COLUMN leadmgmt_bi.stage.rank IS 'progress along the waterfall (higher is further)';
COMMENT ON COLUMN leadmgmt_bi.stage.category IS 'open, nurture, won or lost';
COMMENT ON COLUMN leadmgmt_bi.stage.is_entry IS 'a lead may start in this stage';
COMMENT ON COLUMN leadmgmt_bi.stage.next_stage IS 'main-path successor (for conversion_to_next)';
COMMENT ON COLUMN leadmgmt_bi.stage.description IS 'what the stage means';
COMMENT ON COLUMN leadmgmt_bi.stage.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.stage_transition WITH (security_invoker = true) AS
	SELECT t.from_stage, t.to_stage, t.description, t.builtin
	  FROM leadmgmt.stage_transition t;
COMMENT ON VIEW leadmgmt_bi.stage_transition IS 'The allowed stage moves';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.from_stage IS 'stage the lead is in';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.to_stage IS 'stage it may move to';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.description IS 'when this move happens';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.activity_kind WITH (security_invoker = true) AS
	SELECT k.name, k.description, k.builtin
	  FROM leadmgmt.activity_kind k;
COMMENT ON VIEW leadmgmt_bi.activity_kind IS 'The kinds of activity';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.name IS 'kind name';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.description IS 'what it records';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.scoring_rule WITH (security_invoker = true) AS
	SELECT r.id, r.name, r.kind, r.detail_pattern, r.campaign, r.min_duration_s, r.points,
	       r.half_life, r.max_times, r.active, r.overrides, r.description, r.builtin,
	       pg_catalog.date_part('epoch', r.half_life) / 86400 AS half_life_days
	  FROM leadmgmt.scoring_rule r;
COMMENT ON VIEW leadmgmt_bi.scoring_rule IS 'The behaviour scoring rules';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.name IS 'rule name';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.kind IS 'activity kind it matches';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.detail_pattern IS 'LIKE pattern on activity.detail (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.campaign IS 'campaign it matches (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.min_duration_s IS 'least duration_s it needs (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.points IS 'points per matching activity';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.half_life IS 'time for the points to halve (NULL: no decay)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.max_times IS 'most awards per lead (NULL: unlimited)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.active IS 'whether the rule scores';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.overrides IS 'name of a built-in rule this user rule replaces';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.builtin IS 'shipped with the extension';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.half_life_days IS 'half_life in days (fractional), for charting';

CREATE VIEW leadmgmt_bi.fit_rule WITH (security_invoker = true) AS
	SELECT r.id, r.name, r.attribute, r.op, r.value::text AS value, r.min_value, r.max_value,
	       r.points, r.active, r.description, r.builtin
	  FROM leadmgmt.fit_rule r;
COMMENT ON VIEW leadmgmt_bi.fit_rule IS 'The firmographic fit rules';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.name IS 'rule name';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.attribute IS 'key of lead.attributes it tests';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.op IS 'eq (equals value), in (one of the array value), between (numeric min_value..max_value, inclusive, either bound optional)';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.value IS 'JSON scalar for eq, JSON array for in, as text';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.min_value IS 'lower bound of a range test';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.max_value IS 'upper bound of a range test';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.points IS 'points when it matches';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.active IS 'whether the rule scores';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.builtin IS 'shipped with the extension';

-- One view per view of schema leadmgmt, same name, same columns and
-- comments, JSON, XML and UUID columns as text (PgJDBC reports them as
-- Types.OTHER, which BI tools show as opaque text anyway).  Generated from
-- the catalog so that fresh install and update (which runs this same block
-- last) agree; an update that adds or changes a view of leadmgmt re-creates
-- its copy here.
DO $bi$
DECLARE
	v record;
	cols text;
BEGIN
	FOR v IN
		SELECT c.oid, c.relname FROM pg_catalog.pg_class c
		 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'v'
		 ORDER BY c.relname
	LOOP
		SELECT pg_catalog.string_agg(
		           CASE WHEN a.atttypid IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype, 'uuid'::regtype)
		                THEN format('v.%1$I::text AS %1$I', a.attname)
		                ELSE format('v.%I', a.attname) END, ', ' ORDER BY a.attnum)
		  INTO cols
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped;
		EXECUTE format('CREATE VIEW leadmgmt_bi.%1$I WITH (security_invoker = true) AS SELECT %2$s FROM leadmgmt.%1$I v',
		               v.relname, cols);
		EXECUTE format('COMMENT ON VIEW leadmgmt_bi.%I IS %L', v.relname,
		               pg_catalog.obj_description(v.oid, 'pg_class'));
		FOR cols IN
			SELECT format('COMMENT ON COLUMN leadmgmt_bi.%I.%I IS %L', v.relname, a.attname,
			              pg_catalog.col_description(v.oid, a.attnum))
			  FROM pg_catalog.pg_attribute a
			 WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum
		LOOP
			EXECUTE cols;
		END LOOP;
	END LOOP;
END
$bi$;

-- END bi
