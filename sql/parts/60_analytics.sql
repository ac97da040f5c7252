
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
-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.interval_percentiles(value interval, fractions float8[]) (
	SFUNC = leadmgmt.interval_percentiles_trans,
	STYPE = internal,
	SSPACE = 1456,
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
-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.stage_conversions(lead_id bigint, stage text, changed_at timestamptz,
                                            stages text[], next_stages text[]) (
	SFUNC = leadmgmt.stage_conversions_trans,
	STYPE = internal,
	SSPACE = 1008,
	FINALFUNC = leadmgmt.stage_conversions_final,
	FINALFUNC_MODIFY = SHAREABLE,
	COMBINEFUNC = leadmgmt.stage_conversions_combine,
	SERIALFUNC = leadmgmt.stage_conversions_serialize,
	DESERIALFUNC = leadmgmt.stage_conversions_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.stage_conversions(bigint, text, timestamptz, text[], text[]) IS
	'For each stages[i], the number of leads that entered next_stages[i] at or after their first entry into stages[i] (rows are stage entries); rows with a NULL or unlisted stage skipped';

-- Funnel summaries (doc/analytics.md, "Summaries"): what the four funnel
-- views count, kept as history is appended, so that a view reads a few
-- thousand summary rows instead of scanning the whole history.
--   funnel_lead_count     live leads per (source, cohort month), counted
--                         by their first history row (every lead has one)
--   funnel_entry_count    first entries per (source, cohort month, stage)
--   funnel_pair_count     leads that entered later_stage at or after their
--                         first entry into stage (conversion_to_next for
--                         any next_stage)
--   funnel_duration_count every completed stay, as a multiset of
--                         (from_stage, to_stage, time_in_from_stage) with
--                         counts: the exact mergeable state that averages
--                         and percentiles are computed from
-- Rows are deltas: triggers only append (no row locks, no deadlocks between
-- concurrent moves); funnel_summary_compact() folds them into one row per
-- key now and then.  Live leads only (merged leads leave the counts when
-- merged_into is set).  A data-only restore with triggers disabled brings
-- these tables with their rows; after loading history any other way, run
-- leadmgmt.rebuild_funnel_summary().
CREATE TABLE leadmgmt.funnel_entry_count (
	zone         text NOT NULL,
	source       text NOT NULL,
	cohort_month date NOT NULL,
	stage        text NOT NULL,
	leads        bigint NOT NULL
);
COMMENT ON TABLE leadmgmt.funnel_entry_count IS
	'Summary of stage_history for the funnel views: first stage entries of live leads per source and cohort month (delta rows; written by the extension only)';
COMMENT ON COLUMN leadmgmt.funnel_entry_count.zone IS 'the reporting_timezone setting cohort_month was computed in';
COMMENT ON COLUMN leadmgmt.funnel_entry_count.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_entry_count.cohort_month IS 'month of lead.created_at in zone';
COMMENT ON COLUMN leadmgmt.funnel_entry_count.stage IS 'stage entered for the first time';
COMMENT ON COLUMN leadmgmt.funnel_entry_count.leads IS 'number of leads (a delta: sum the rows of a key)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.funnel_entry_count', '');

CREATE TABLE leadmgmt.funnel_lead_count (
	zone         text NOT NULL,
	source       text NOT NULL,
	cohort_month date NOT NULL,
	leads        bigint NOT NULL
);
COMMENT ON TABLE leadmgmt.funnel_lead_count IS
	'Summary of stage_history for the funnel views: live leads per source and cohort month, by their first history row (delta rows; written by the extension only)';
COMMENT ON COLUMN leadmgmt.funnel_lead_count.zone IS 'the reporting_timezone setting cohort_month was computed in';
COMMENT ON COLUMN leadmgmt.funnel_lead_count.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_lead_count.cohort_month IS 'month of lead.created_at in zone';
COMMENT ON COLUMN leadmgmt.funnel_lead_count.leads IS 'number of leads (a delta: sum the rows of a key)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.funnel_lead_count', '');

CREATE TABLE leadmgmt.funnel_pair_count (
	stage       text NOT NULL,
	later_stage text NOT NULL,
	leads       bigint NOT NULL
);
COMMENT ON TABLE leadmgmt.funnel_pair_count IS
	'Summary of stage_history for the funnel views: live leads that entered later_stage at or after their first entry into stage (delta rows; written by the extension only)';
COMMENT ON COLUMN leadmgmt.funnel_pair_count.stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.funnel_pair_count.later_stage IS 'stage entered at or after the first entry into stage';
COMMENT ON COLUMN leadmgmt.funnel_pair_count.leads IS 'number of leads (a delta: sum the rows of a key)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.funnel_pair_count', '');

CREATE TABLE leadmgmt.funnel_duration_count (
	from_stage text NOT NULL,
	to_stage   text NOT NULL,
	took       interval NOT NULL,
	moves      bigint NOT NULL
);
COMMENT ON TABLE leadmgmt.funnel_duration_count IS
	'Summary of stage_history for the funnel views: completed stays of live leads, as counts per exact duration (delta rows; written by the extension only)';
COMMENT ON COLUMN leadmgmt.funnel_duration_count.from_stage IS 'stage left';
COMMENT ON COLUMN leadmgmt.funnel_duration_count.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.funnel_duration_count.took IS 'stage_history.time_in_from_stage of the move';
COMMENT ON COLUMN leadmgmt.funnel_duration_count.moves IS 'number of such moves (a delta: sum the rows of a key)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.funnel_duration_count', '');

-- The three summaries of the given live leads' history, times sign, as
-- delta rows; history rows whose id is in skip are left out (the history
-- trigger subtracts the leads' summary before the new rows that way).
-- Lead attributes come from the arguments (the lead trigger passes OLD and
-- NEW) or, when srcs is NULL, from the lead table.
CREATE FUNCTION leadmgmt.funnel_summary_add(leads bigint[], srcs text[], created timestamptz[],
                                            skip bigint[], sign integer)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tz text := leadmgmt.get_setting('reporting_timezone');
BEGIN
	INSERT INTO leadmgmt.funnel_entry_count (zone, source, cohort_month, stage, leads)
	SELECT tz, coalesce(a.source, '(none)'), date_trunc('month', a.created_at AT TIME ZONE tz)::date,
	       h.to_stage, sign * count(*)
	  FROM leadmgmt.stage_history h
	  JOIN (SELECT u.id, u.source, u.created_at
	          FROM unnest(leads, srcs, created) AS u(id, source, created_at)
	         WHERE srcs IS NOT NULL
	        UNION ALL
	        SELECT l.id, l.source, l.created_at FROM leadmgmt.lead l
	         WHERE srcs IS NULL AND l.id = ANY (leads)) a ON a.id = h.lead_id
	 WHERE h.lead_id = ANY (leads) AND (skip IS NULL OR h.id <> ALL (skip))
	   AND h.entry_number = 1
	 GROUP BY 2, 3, 4;
		INSERT INTO leadmgmt.funnel_lead_count (zone, source, cohort_month, leads)
	SELECT tz, coalesce(a.source, '(none)'), date_trunc('month', a.created_at AT TIME ZONE tz)::date,
	       sign * count(*)
	  FROM leadmgmt.stage_history h
	  JOIN (SELECT u.id, u.source, u.created_at
	          FROM unnest(leads, srcs, created) AS u(id, source, created_at)
	         WHERE srcs IS NOT NULL
	        UNION ALL
	        SELECT l.id, l.source, l.created_at FROM leadmgmt.lead l
	         WHERE srcs IS NULL AND l.id = ANY (leads)) a ON a.id = h.lead_id
	 WHERE h.lead_id = ANY (leads) AND (skip IS NULL OR h.id <> ALL (skip))
	   AND h.from_stage IS NULL
	 GROUP BY 2, 3;
	INSERT INTO leadmgmt.funnel_duration_count (from_stage, to_stage, took, moves)
	SELECT min(h.from_stage), min(h.to_stage), min(h.time_in_from_stage), sign * count(*)
	  FROM leadmgmt.stage_history h
	 WHERE h.lead_id = ANY (leads) AND (skip IS NULL OR h.id <> ALL (skip))
	   AND h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
	 GROUP BY h.from_stage, h.to_stage, h.time_in_from_stage::text;
	INSERT INTO leadmgmt.funnel_pair_count (stage, later_stage, leads)
	WITH e AS (
		SELECT h.lead_id, h.to_stage AS stage, min(h.changed_at) AS first_at, max(h.changed_at) AS last_at
		  FROM leadmgmt.stage_history h
		 WHERE h.lead_id = ANY (leads) AND (skip IS NULL OR h.id <> ALL (skip))
		   AND h.from_stage IS DISTINCT FROM h.to_stage
		 GROUP BY 1, 2
	)
	SELECT x.stage, y.stage, sign * count(*)
	  FROM e x JOIN e y ON y.lead_id = x.lead_id AND y.last_at >= x.first_at
	 GROUP BY 1, 2;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_add(bigint[], text[], timestamptz[], bigint[], integer) FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_add(bigint[], text[], timestamptz[], bigint[], integer) IS
	'Internal: append sign times the funnel summaries of the given leads'' history (attributes given, or NULL to read lead) as delta rows';

-- Fold the delta rows into one row per key (rows that sum to zero go).
-- One compaction at a time (an advisory lock; a caller that does not get it
-- skips), and only under READ COMMITTED, where deleting rows another
-- compaction just rewrote cannot fail a user's transaction.
CREATE FUNCTION leadmgmt.funnel_summary_compact(durations boolean DEFAULT true)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	kept bigint := 0;
	n bigint;
BEGIN
	IF current_setting('transaction_isolation') <> 'read committed'
	   OR NOT pg_try_advisory_xact_lock('leadmgmt.funnel_entry_count'::regclass::oid::bigint) THEN
		RETURN NULL;
	END IF;
	WITH d AS (DELETE FROM leadmgmt.funnel_entry_count RETURNING *),
	i AS (INSERT INTO leadmgmt.funnel_entry_count (zone, source, cohort_month, stage, leads)
	      SELECT d.zone, d.source, d.cohort_month, d.stage, sum(d.leads)::bigint FROM d
	       GROUP BY 1, 2, 3, 4 HAVING sum(d.leads) <> 0 RETURNING 1)
	SELECT count(*) INTO n FROM i;
	kept := kept + n;
	WITH d AS (DELETE FROM leadmgmt.funnel_lead_count RETURNING *),
	i AS (INSERT INTO leadmgmt.funnel_lead_count (zone, source, cohort_month, leads)
	      SELECT d.zone, d.source, d.cohort_month, sum(d.leads)::bigint FROM d
	       GROUP BY 1, 2, 3 HAVING sum(d.leads) <> 0 RETURNING 1)
	SELECT count(*) INTO n FROM i;
	kept := kept + n;
	WITH d AS (DELETE FROM leadmgmt.funnel_pair_count RETURNING *),
	i AS (INSERT INTO leadmgmt.funnel_pair_count (stage, later_stage, leads)
	      SELECT d.stage, d.later_stage, sum(d.leads)::bigint FROM d
	       GROUP BY 1, 2 HAVING sum(d.leads) <> 0 RETURNING 1)
	SELECT count(*) INTO n FROM i;
	kept := kept + n;
	IF NOT durations THEN
		RETURN kept;
	END IF;
	-- durations: grouped by their fields, not by interval equality, which
	-- takes '1 day' and '24:00:00' as one value
	WITH d AS (DELETE FROM leadmgmt.funnel_duration_count RETURNING *),
	i AS (INSERT INTO leadmgmt.funnel_duration_count (from_stage, to_stage, took, moves)
	      SELECT d.from_stage, d.to_stage, min(d.took), sum(d.moves)::bigint FROM d
	       GROUP BY d.from_stage, d.to_stage, d.took::text HAVING sum(d.moves) <> 0 RETURNING 1)
	SELECT count(*) INTO n FROM i;
	RETURN kept + n;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_compact(boolean) FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_compact(boolean) IS
	'Fold the delta rows of the funnel summaries into one row per key (the durations too unless durations is false); returns the rows kept, NULL when another compaction runs or the transaction is not READ COMMITTED';

-- AFTER INSERT ON stage_history, once per statement: first entries and
-- stays come straight from the new rows; the stage pairs of the affected
-- leads are counted with and without the new rows, and the difference added.
CREATE FUNCTION leadmgmt.funnel_summary_apply(ids bigint[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- Kept generic plans: planning the five statements took three quarters of
-- a move's cost, and custom plans won the plan cache's comparison at every
-- call (an array parameter is costed as ten elements), so they were planned
-- anew each time.  The generic plans probe the indexes for any number of
-- ids: a single move costs 0.27 ms here instead of 1.3 ms, and a stage
-- UPDATE of 10,000 leads 6.0 s instead of 12.3 s, same run.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
	tz text;
	live bigint[];
BEGIN
	SELECT array_agg(l.id) INTO live
	  FROM leadmgmt.lead l
	 WHERE l.id = ANY (ARRAY(SELECT DISTINCT h.lead_id FROM leadmgmt.stage_history h WHERE h.id = ANY (ids)))
	   AND l.merged_into IS NULL;
	IF live IS NOT NULL THEN
		tz := leadmgmt.get_setting('reporting_timezone');
		INSERT INTO leadmgmt.funnel_entry_count (zone, source, cohort_month, stage, leads)
		SELECT tz, coalesce(l.source, '(none)'), date_trunc('month', l.created_at AT TIME ZONE tz)::date,
		       h.to_stage, count(*)
		  FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
		 WHERE h.id = ANY (ids) AND h.lead_id = ANY (live) AND l.id = ANY (live)
		   AND h.entry_number = 1
		 GROUP BY 2, 3, 4;
		INSERT INTO leadmgmt.funnel_lead_count (zone, source, cohort_month, leads)
		SELECT tz, coalesce(l.source, '(none)'), date_trunc('month', l.created_at AT TIME ZONE tz)::date,
		       count(*)
		  FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
		 WHERE h.id = ANY (ids) AND h.lead_id = ANY (live) AND l.id = ANY (live)
		   AND h.from_stage IS NULL
		 GROUP BY 2, 3;
		INSERT INTO leadmgmt.funnel_duration_count (from_stage, to_stage, took, moves)
		SELECT min(h.from_stage), min(h.to_stage), min(h.time_in_from_stage), count(*)
		  FROM leadmgmt.stage_history h
		 WHERE h.id = ANY (ids) AND h.lead_id = ANY (live)
		   AND h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
		 GROUP BY h.from_stage, h.to_stage, h.time_in_from_stage::text;
		INSERT INTO leadmgmt.funnel_pair_count (stage, later_stage, leads)
		WITH e AS (
			-- per lead and stage: first and last entry with the new rows, and without
			SELECT h.lead_id, h.to_stage AS stage,
			       min(h.changed_at) AS first_at, max(h.changed_at) AS last_at,
			       min(h.changed_at) FILTER (WHERE h.id <> ALL (ids)) AS first_old,
			       max(h.changed_at) FILTER (WHERE h.id <> ALL (ids)) AS last_old
			  FROM leadmgmt.stage_history h
			 WHERE h.lead_id = ANY (live) AND h.from_stage IS DISTINCT FROM h.to_stage
			 GROUP BY 1, 2
		)
		SELECT x.stage, y.stage,
		       count(*) FILTER (WHERE y.last_at >= x.first_at)
		       - count(*) FILTER (WHERE y.last_old >= x.first_old)
		  FROM e x JOIN e y ON y.lead_id = x.lead_id
		 GROUP BY 1, 2
		HAVING count(*) FILTER (WHERE y.last_at >= x.first_at)
		       <> count(*) FILTER (WHERE y.last_old >= x.first_old);
	END IF;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_apply(bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_apply(bigint[]) IS
	'Internal: add the stage_history rows with the given ids to the funnel summaries';

-- The trigger itself only collects the new rows' ids: queries on a
-- transition table are planned anew at every call, those of
-- funnel_summary_apply() are kept.
CREATE FUNCTION leadmgmt.funnel_summary_history()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ids bigint[];
	lo bigint;
	hi bigint;
	step bigint := 256;
BEGIN
	SELECT array_agg(n.id), min(n.id), max(n.id) INTO ids, lo, hi FROM new_rows n;
	IF ids IS NOT NULL THEN
		PERFORM leadmgmt.funnel_summary_apply(ids);
		-- The counts fold into a few rows per key, so they are folded every
		-- 256 history rows.  Exact durations hardly ever repeat: that table
		-- stays about as big as the history, and folding it every 256 rows
		-- made each move pay for the whole table.  It is folded when the
		-- history ids cross a multiple of a step between an eighth and a
		-- quarter of the newest id: a few row rewrites per move, whatever
		-- the size, with at most a quarter of the table in delta rows.
		WHILE step * 8 <= hi LOOP
			step := step * 2;
		END LOOP;
		IF hi / step > (lo - 1) / step THEN
			PERFORM leadmgmt.funnel_summary_compact();
		ELSIF hi / 256 > (lo - 1) / 256 THEN
			PERFORM leadmgmt.funnel_summary_compact(false);
		END IF;
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_history() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_history() IS
	'Trigger: adds the stage_history rows of a statement to the funnel summaries';

-- AFTER UPDATE OF source, created_at, merged_into ON lead: the lead's
-- summary moves to its new source or cohort, or leaves when it is merged.
-- Named so that it fires before lead_stage_record_update (triggers of an
-- event fire in name order): the history row of a stage change made by the
-- same UPDATE is then added under the new attributes only.
CREATE FUNCTION leadmgmt.funnel_summary_lead()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF OLD.merged_into IS NULL THEN
		PERFORM leadmgmt.funnel_summary_add(ARRAY[OLD.id], ARRAY[OLD.source], ARRAY[OLD.created_at], NULL, -1);
	END IF;
	IF NEW.merged_into IS NULL THEN
		PERFORM leadmgmt.funnel_summary_add(ARRAY[NEW.id], ARRAY[NEW.source], ARRAY[NEW.created_at], NULL, 1);
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_lead() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_lead() IS
	'Trigger: moves a lead''s part of the funnel summaries when its source, created_at or merged_into changes';

-- BEFORE DELETE ON lead: a deleted lead takes its history along (ON DELETE
-- CASCADE), so its part leaves the summaries while the history is still
-- there to compute it from (after the delete it is gone).
CREATE FUNCTION leadmgmt.funnel_summary_lead_delete()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF OLD.merged_into IS NULL THEN
		PERFORM leadmgmt.funnel_summary_add(ARRAY[OLD.id], ARRAY[OLD.source], ARRAY[OLD.created_at], NULL, -1);
	END IF;
	RETURN OLD;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.funnel_summary_lead_delete() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.funnel_summary_lead_delete() IS
	'Trigger: takes a deleted lead''s part out of the funnel summaries';

CREATE TRIGGER funnel_summary
	AFTER INSERT ON leadmgmt.stage_history
	REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.funnel_summary_history();
CREATE TRIGGER lead_funnel_summary
	AFTER UPDATE OF source, created_at, merged_into ON leadmgmt.lead
	FOR EACH ROW
	WHEN (OLD.source IS DISTINCT FROM NEW.source OR OLD.created_at IS DISTINCT FROM NEW.created_at
	      OR OLD.merged_into IS DISTINCT FROM NEW.merged_into)
	EXECUTE FUNCTION leadmgmt.funnel_summary_lead();
CREATE TRIGGER lead_funnel_summary_delete
	BEFORE DELETE ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.funnel_summary_lead_delete();

-- Whether the calling role sees every lead, so that the summaries (which
-- count every live lead) answer for it: false for a sales rep restricted by
-- rls_by_owner (doc/roles.md).  PL/pgSQL, so that it binds to
-- rls_restricted() (sql/parts/90_roles.sql) when it runs.
CREATE FUNCTION leadmgmt.funnel_summary_usable()
RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN NOT leadmgmt.rls_restricted(CURRENT_USER);
END
$$;
COMMENT ON FUNCTION leadmgmt.funnel_summary_usable() IS
	'Whether the funnel views may answer the calling role from the funnel summaries: true unless row-level security by owner restricts it';

-- After a data-only restore that did not bring the summaries, after
-- fill_history_facts(), or after loading history with triggers disabled.
CREATE FUNCTION leadmgmt.rebuild_funnel_summary()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tz text := leadmgmt.get_setting('reporting_timezone');
	n bigint;
	total bigint := 0;
BEGIN
	LOCK TABLE leadmgmt.funnel_lead_count, leadmgmt.funnel_entry_count, leadmgmt.funnel_pair_count,
		leadmgmt.funnel_duration_count IN EXCLUSIVE MODE;
	DELETE FROM leadmgmt.funnel_lead_count;
	DELETE FROM leadmgmt.funnel_entry_count;
	DELETE FROM leadmgmt.funnel_pair_count;
	DELETE FROM leadmgmt.funnel_duration_count;
	INSERT INTO leadmgmt.funnel_lead_count (zone, source, cohort_month, leads)
	SELECT tz, coalesce(l.source, '(none)'), date_trunc('month', l.created_at AT TIME ZONE tz)::date, count(*)
	  FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	 WHERE h.from_stage IS NULL AND l.merged_into IS NULL
	 GROUP BY 2, 3;
	GET DIAGNOSTICS n = ROW_COUNT;
	total := total + n;
	INSERT INTO leadmgmt.funnel_entry_count (zone, source, cohort_month, stage, leads)
	SELECT tz, coalesce(l.source, '(none)'), date_trunc('month', l.created_at AT TIME ZONE tz)::date,
	       h.to_stage, count(*)
	  FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	 WHERE h.entry_number = 1 AND l.merged_into IS NULL
	 GROUP BY 2, 3, 4;
	GET DIAGNOSTICS n = ROW_COUNT;
	total := total + n;
	INSERT INTO leadmgmt.funnel_duration_count (from_stage, to_stage, took, moves)
	SELECT min(h.from_stage), min(h.to_stage), min(h.time_in_from_stage), count(*)
	  FROM leadmgmt.stage_history h
	 WHERE h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	 GROUP BY h.from_stage, h.to_stage, h.time_in_from_stage::text;
	GET DIAGNOSTICS n = ROW_COUNT;
	total := total + n;
	INSERT INTO leadmgmt.funnel_pair_count (stage, later_stage, leads)
	SELECT x.stage, y.stage, count(*)
	  FROM leadmgmt.stage_entry x
	  JOIN leadmgmt.stage_entry y ON y.lead_id = x.lead_id AND y.last_entered_at >= x.first_entered_at
	 GROUP BY 1, 2;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN total + n;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.rebuild_funnel_summary() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.rebuild_funnel_summary() IS
	'Admin: recompute the funnel summaries (funnel_lead_count, funnel_entry_count, funnel_pair_count, funnel_duration_count) from stage_history, in the current reporting_timezone; returns the rows written';

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

-- The funnel views read the summaries above when they can: for every role
-- that row-level security does not restrict (a restricted sales rep sees
-- only some leads, which the summaries do not know), and for funnel_cohort
-- only while every summary row was computed in the current
-- reporting_timezone.  Otherwise, and as the reference the summaries are
-- tested against (test/sql/funnel_summary.sql), they compute from the
-- history: from the facts recorded with each history row (entry_number,
-- time_in_from_stage), so that each number is one scan of stage_history,
-- with no sort of the history by lead.  The two branches are gated by
-- InitPlans: only one of them runs.
CREATE VIEW leadmgmt.funnel WITH (security_invoker = true) AS
	WITH gate AS MATERIALIZED (SELECT leadmgmt.funnel_summary_usable() AS summary),
	dur AS (
		-- completed stays per from_stage, as counts per duration
		SELECT d.from_stage, min(d.took) AS took, sum(d.moves) AS n
		  FROM leadmgmt.funnel_duration_count d
		 WHERE (SELECT g.summary FROM gate g)
		 GROUP BY d.from_stage, d.took::text HAVING sum(d.moves) > 0
	), pos AS (
		SELECT dur.*, sum(dur.n) OVER (PARTITION BY dur.from_stage ORDER BY dur.took ROWS UNBOUNDED PRECEDING) AS upto,
		       sum(dur.n) OVER (PARTITION BY dur.from_stage) AS total
		  FROM dur
	), pick AS (
		-- percentile_cont(0.5)'s two rows and their proportion
		SELECT p.from_stage, p.total, x.pos, floor(x.pos) AS lo, least(ceil(x.pos), p.total - 1) AS hi
		  FROM (SELECT DISTINCT pos.from_stage, pos.total FROM pos) p,
		       LATERAL (SELECT 0.5::float8 * (p.total - 1)::float8 AS pos) x
	), rows AS (
		-- the durations at the two rows (each covers a range of positions)
		SELECT k.from_stage, k.pos, k.lo, k.hi,
		       min(p.took) FILTER (WHERE k.lo >= p.upto - p.n AND k.lo < p.upto) AS v_lo,
		       min(p.took) FILTER (WHERE k.hi >= p.upto - p.n AND k.hi < p.upto) AS v_hi
		  FROM pick k JOIN pos p ON p.from_stage = k.from_stage
		 WHERE (k.lo >= p.upto - p.n AND k.lo < p.upto) OR (k.hi >= p.upto - p.n AND k.hi < p.upto)
		 GROUP BY 1, 2, 3, 4
	)
	SELECT s.name AS stage,
	       row_number() OVER (ORDER BY s.rank, s.name)::integer AS position,
	       coalesce(en.leads, 0) AS leads_entered,
	       coalesce(cur.leads, 0) AS leads_current,
	       CASE WHEN s.next_stage IS NOT NULL AND coalesce(en.leads, 0) > 0
	            THEN coalesce(nx.leads, 0)::float8 / en.leads END AS conversion_to_next,
	       md.median AS median_time_in_stage,
	       date_part('epoch', md.median) / 86400 AS median_time_in_stage_days
	  FROM leadmgmt.stage s
	  LEFT JOIN (SELECT c.stage, sum(c.leads)::bigint AS leads
	               FROM leadmgmt.funnel_entry_count c
	              WHERE (SELECT g.summary FROM gate g)
	              GROUP BY c.stage
	             UNION ALL
	             SELECT h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h
	              WHERE NOT (SELECT g.summary FROM gate g)
	                AND h.entry_number = 1
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.to_stage) en ON en.stage = s.name
	  LEFT JOIN (SELECT l.stage, count(*) AS leads FROM leadmgmt.lead l
	              WHERE l.merged_into IS NULL GROUP BY l.stage) cur ON cur.stage = s.name
	  -- converted: the first entry into the stage is followed by an entry
	  -- into its next stage
	  LEFT JOIN (SELECT p.stage, p.later_stage, sum(p.leads)::bigint AS leads
	               FROM leadmgmt.funnel_pair_count p
	              WHERE (SELECT g.summary FROM gate g)
	              GROUP BY p.stage, p.later_stage
	             UNION ALL
	             SELECT u.stage, u.next_stage, u.leads
	               FROM (SELECT leadmgmt.stage_conversions(
	                                h.lead_id, h.to_stage, h.changed_at,
	                                (SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st),
	                                (SELECT array_agg(st.next_stage ORDER BY st.name) FROM leadmgmt.stage st)) AS leads
	                       FROM leadmgmt.stage_history h
	                      WHERE NOT (SELECT g.summary FROM gate g)
	                        AND h.from_stage IS DISTINCT FROM h.to_stage
	                        AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                         WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)) c,
	                    unnest((SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st),
	                           (SELECT array_agg(st.next_stage ORDER BY st.name) FROM leadmgmt.stage st), c.leads)
	                      AS u(stage, next_stage, leads)
	              -- the aggregate answers one row even when its input is gated off
	              WHERE NOT (SELECT g.summary FROM gate g)) nx ON nx.stage = s.name AND nx.later_stage = s.next_stage
	  -- a stay in a stage ends with the next entry, which records its length
	  LEFT JOIN (SELECT r.from_stage AS stage,
	                    justify_hours(CASE WHEN r.hi > r.lo
	                                       THEN (r.v_hi - r.v_lo) * (r.pos - r.lo) + r.v_lo
	                                       ELSE r.v_lo END) AS median
	               FROM rows r
	             UNION ALL
	             SELECT h.from_stage AS stage,
	                    justify_hours((leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5}'))[1]) AS median
	               FROM leadmgmt.stage_history h
	              WHERE NOT (SELECT g.summary FROM gate g)
	                AND h.time_in_from_stage IS NOT NULL
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

CREATE VIEW leadmgmt.funnel_by_source WITH (security_invoker = true) AS
	WITH gate AS MATERIALIZED (SELECT leadmgmt.funnel_summary_usable() AS summary),
	src AS (
		SELECT c.source, sum(c.leads)::bigint AS leads
		  FROM leadmgmt.funnel_lead_count c
		 WHERE (SELECT g.summary FROM gate g)
		 GROUP BY 1 HAVING sum(c.leads) <> 0
		UNION ALL
		SELECT coalesce(l.source, '(none)') AS source, count(*) AS leads
		  FROM leadmgmt.lead l WHERE NOT (SELECT g.summary FROM gate g) AND l.merged_into IS NULL GROUP BY 1
	)
	SELECT src.source, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / src.leads AS conversion_from_first
	  FROM src CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT c.source, c.stage, sum(c.leads)::bigint AS leads
	               FROM leadmgmt.funnel_entry_count c
	              WHERE (SELECT g.summary FROM gate g)
	              GROUP BY 1, 2
	             UNION ALL
	             SELECT coalesce(l.source, '(none)') AS source, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	              WHERE NOT (SELECT g.summary FROM gate g)
	                AND h.entry_number = 1 AND l.merged_into IS NULL
	              GROUP BY 1, 2) x ON x.source = src.source AND x.stage = s.name;
COMMENT ON VIEW leadmgmt.funnel_by_source IS 'The waterfall per lead source';
COMMENT ON COLUMN leadmgmt.funnel_by_source.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_by_source.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel_by_source.leads_entered IS 'live leads of the source that ever entered the stage';
COMMENT ON COLUMN leadmgmt.funnel_by_source.conversion_from_first IS 'leads_entered / all live leads of the source';

CREATE VIEW leadmgmt.funnel_cohort WITH (security_invoker = true) AS
	WITH tz AS (SELECT leadmgmt.get_setting('reporting_timezone') AS zone),
	gate AS MATERIALIZED (
		SELECT leadmgmt.funnel_summary_usable()
		       AND NOT EXISTS (SELECT 1 FROM leadmgmt.funnel_entry_count c
		                        WHERE c.zone <> (SELECT zone FROM tz))
		       AND NOT EXISTS (SELECT 1 FROM leadmgmt.funnel_lead_count c
		                        WHERE c.zone <> (SELECT zone FROM tz)) AS summary
	),
	cohort AS (
		-- the first stage entry is recorded at created_at (the stage machine
		-- does so), so the lead row gives the cohort without aggregating history
		SELECT l.id AS lead_id,
		       date_trunc('month', l.created_at AT TIME ZONE (SELECT zone FROM tz))::date AS cohort_month
		  FROM leadmgmt.lead l WHERE l.merged_into IS NULL
	), size AS (
		SELECT c.cohort_month, sum(c.leads)::bigint AS leads
		  FROM leadmgmt.funnel_lead_count c
		 WHERE (SELECT g.summary FROM gate g)
		 GROUP BY 1 HAVING sum(c.leads) <> 0
		UNION ALL
		SELECT cohort.cohort_month, count(*) AS leads FROM cohort WHERE NOT (SELECT g.summary FROM gate g) GROUP BY 1
	)
	SELECT size.cohort_month, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / size.leads AS conversion_from_first
	  FROM size CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT c.cohort_month, c.stage, sum(c.leads)::bigint AS leads
	               FROM leadmgmt.funnel_entry_count c
	              WHERE (SELECT g.summary FROM gate g)
	              GROUP BY 1, 2
	             UNION ALL
	             SELECT c.cohort_month, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN cohort c USING (lead_id)
	              WHERE NOT (SELECT g.summary FROM gate g)
	                AND h.entry_number = 1
	              GROUP BY 1, 2) x ON x.cohort_month = size.cohort_month AND x.stage = s.name;
COMMENT ON VIEW leadmgmt.funnel_cohort IS
	'The waterfall per monthly cohort (month of the lead''s first stage entry, in the reporting_timezone setting)';
COMMENT ON COLUMN leadmgmt.funnel_cohort.cohort_month IS 'first day of the cohort month, in reporting_timezone';
COMMENT ON COLUMN leadmgmt.funnel_cohort.stage IS 'stage';
COMMENT ON COLUMN leadmgmt.funnel_cohort.leads_entered IS 'live leads of the cohort that ever entered the stage';
COMMENT ON COLUMN leadmgmt.funnel_cohort.conversion_from_first IS 'leads_entered / all live leads of the cohort';

CREATE VIEW leadmgmt.stage_velocity WITH (security_invoker = true) AS
	WITH gate AS MATERIALIZED (SELECT leadmgmt.funnel_summary_usable() AS summary),
	dur AS (
		-- completed stays per move, as counts per duration
		SELECT d.from_stage, d.to_stage, min(d.took) AS took, sum(d.moves) AS n
		  FROM leadmgmt.funnel_duration_count d
		 WHERE (SELECT g.summary FROM gate g)
		 GROUP BY d.from_stage, d.to_stage, d.took::text HAVING sum(d.moves) > 0
	), pos AS (
		SELECT dur.*, sum(dur.n) OVER (PARTITION BY dur.from_stage, dur.to_stage ORDER BY dur.took
		                                ROWS UNBOUNDED PRECEDING) AS upto
		  FROM dur
	), total AS (
		-- avg(interval) adds months, days and time separately and divides
		-- the sum by the count: the same sum, exactly, from the counts
		SELECT dur.from_stage, dur.to_stage, sum(dur.n) AS n,
		       sum((extract(year FROM dur.took) * 12 + extract(month FROM dur.took)) * dur.n) AS months,
		       sum(extract(day FROM dur.took) * dur.n) AS days,
		       sum((extract(hour FROM dur.took) * 3600000000 + extract(minute FROM dur.took) * 60000000
		            + extract(microseconds FROM dur.took)) * dur.n) AS us
		  FROM dur GROUP BY 1, 2
	), pick AS (
		-- percentile_cont's two rows for each fraction, and their proportion
		SELECT t.from_stage, t.to_stage, f.i, x.pos, floor(x.pos) AS lo, least(ceil(x.pos), t.n - 1) AS hi
		  FROM total t,
		       unnest('{0.5,0.9}'::float8[]) WITH ORDINALITY AS f(fraction, i),
		       LATERAL (SELECT f.fraction * (t.n - 1)::float8 AS pos) x
	), rows AS (
		-- the durations at the two rows (each covers a range of positions)
		SELECT k.from_stage, k.to_stage, k.i, k.pos, k.lo, k.hi,
		       min(p.took) FILTER (WHERE k.lo >= p.upto - p.n AND k.lo < p.upto) AS v_lo,
		       min(p.took) FILTER (WHERE k.hi >= p.upto - p.n AND k.hi < p.upto) AS v_hi
		  FROM pick k JOIN pos p ON p.from_stage = k.from_stage AND p.to_stage = k.to_stage
		 WHERE (k.lo >= p.upto - p.n AND k.lo < p.upto) OR (k.hi >= p.upto - p.n AND k.hi < p.upto)
		 GROUP BY 1, 2, 3, 4, 5, 6
	), pct AS (
		SELECT r.from_stage, r.to_stage,
		       array_agg(CASE WHEN r.hi > r.lo THEN (r.v_hi - r.v_lo) * (r.pos - r.lo) + r.v_lo
		                      ELSE r.v_lo END ORDER BY r.i) AS p
		  FROM rows r
		 GROUP BY 1, 2
	), t AS (
		SELECT t.from_stage, t.to_stage, t.n AS transitions,
		       justify_hours(format('%s mons %s days %s hours %s minutes %s microseconds',
		                            t.months, t.days, div(t.us, 3600000000), div(mod(t.us, 3600000000), 60000000),
		                            mod(t.us, 60000000))::interval / t.n::float8) AS avg_time,
		       pct.p
		  FROM total t JOIN pct USING (from_stage, to_stage)
		UNION ALL
		SELECT h.from_stage, h.to_stage, count(*) AS transitions,
		       justify_hours(avg(h.time_in_from_stage)) AS avg_time,
		       leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5,0.9}') AS p
		  FROM leadmgmt.stage_history h
		 WHERE NOT (SELECT g.summary FROM gate g)
		   AND h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
		                    WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
		 GROUP BY h.from_stage, h.to_stage
	)
	SELECT t.from_stage, t.to_stage, t.transitions::bigint AS transitions, t.avg_time,
	       justify_hours(t.p[1]) AS median_time, justify_hours(t.p[2]) AS p90_time,
	       date_part('epoch', t.avg_time) / 86400 AS avg_time_days,
	       date_part('epoch', t.p[1]) / 86400 AS median_time_days,
	       date_part('epoch', t.p[2]) / 86400 AS p90_time_days
	  FROM t;
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

-- "A seminar a year ago, the pricing page this week"
CREATE VIEW leadmgmt.reengaged WITH (security_invoker = true) AS
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

-- The score now comes from the lead's score_state in the same query, not
-- from a score() call per row: score() resolves the lead id through lead,
-- which row-level security filters, so every call would evaluate the policy
-- (rls_restricted()) again.  Read here, the policy runs once per query.  A
-- lead with activity dated after now falls back to score() (rare).
CREATE VIEW leadmgmt.sales_queue WITH (security_invoker = true) AS
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
