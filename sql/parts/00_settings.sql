-- leadmgmt install script, assembled from sql/parts/*.sql (one part per
-- capability, in the order of doc/).  Do not edit the assembled file.

\echo Use "CREATE EXTENSION leadmgmt" to load this file. \quit

-------------------------------------------------------------------------------
-- Schema
-------------------------------------------------------------------------------
-- CREATE EXTENSION creates the schema named in the control file when it does
-- not exist yet.  A pre-existing one owned by somebody else could hold objects
-- that shadow ours (CVE-2022-2625 class), so refuse it.
DO $guard$
DECLARE
	schema_owner oid;
BEGIN
	SELECT n.nspowner INTO schema_owner
	  FROM pg_catalog.pg_namespace n
	 WHERE n.nspname OPERATOR(pg_catalog.=) 'leadmgmt';
	IF schema_owner OPERATOR(pg_catalog.<>) (SELECT r.oid FROM pg_catalog.pg_roles r
	                        WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER) THEN
		RAISE EXCEPTION 'schema "leadmgmt" already exists and is owned by role "%"',
			pg_catalog.pg_get_userbyid(schema_owner)
			USING ERRCODE = '42501',
			      HINT = 'Drop the schema or have its owner run CREATE EXTENSION leadmgmt.';
	END IF;
	IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
		RAISE EXCEPTION 'leadmgmt requires a UTF8 database, this one is %',
			pg_catalog.getdatabaseencoding()
			USING ERRCODE = '22023',
			      HINT = 'Create the database with ENCODING ''UTF8''; company names and e-mail keys are Unicode-normalised.';
	END IF;
END
$guard$;

-- Others get USAGE (pure functions and aggregates are for everybody); tables
-- are reachable only through the grants made by leadmgmt.grant_access().
REVOKE ALL ON SCHEMA leadmgmt FROM PUBLIC;
GRANT USAGE ON SCHEMA leadmgmt TO PUBLIC;

-------------------------------------------------------------------------------
-- Settings
-------------------------------------------------------------------------------
-- Defaults live in code (leadmgmt.setting_defaults); the table holds overrides
-- only, so upgrading the extension can change a default nobody overrode.
CREATE TABLE leadmgmt.setting (
	key   text PRIMARY KEY,
	value text NOT NULL
);
COMMENT ON TABLE leadmgmt.setting IS
	'Overrides of leadmgmt settings; write through leadmgmt.set_setting(), read through leadmgmt.get_setting() or the leadmgmt.settings view';
COMMENT ON COLUMN leadmgmt.setting.key IS 'setting name, one of leadmgmt.setting_defaults()';
COMMENT ON COLUMN leadmgmt.setting.value IS 'overriding value, validated by leadmgmt.set_setting()';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.setting', '');

CREATE FUNCTION leadmgmt.setting_defaults(
	OUT key text, OUT default_value text, OUT value_type text, OUT description text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	VALUES
	('mql_threshold',      '100',             'float8',   'score at which an inquiry becomes a marketing-qualified lead'),
	('fit_grade_a',        '60',              'float8',   'lowest fit score graded A'),
	('fit_grade_b',        '40',              'float8',   'lowest fit score graded B'),
	('fit_grade_c',        '20',              'float8',   'lowest fit score graded C (below: D)'),
	('notify_channel',     'leadmgmt_sales',  'channel',  'NOTIFY channel for sales hand-offs'),
	('handoff_window',     '7 days',          'interval', 'how long a hand-off waits in the sales queue before it counts as late'),
	('dormant_after',      '90 days',         'interval', 'a lead without activity for this long is dormant'),
	('reengaged_within',   '14 days',         'interval', 'a dormant lead with activity this recent is re-engaged'),
	('stale_after',        '30 days',         'interval', 'an open lead without activity this long is stale'),
	('queue_min_score',    '50',              'float8',   're-engaged leads scoring at least this join the sales queue'),
	('reporting_timezone', 'UTC',             'timezone', 'time zone in which funnel cohorts and months are computed'),
	('rls_by_owner',       'off',             'boolean',  'row-level security: sales roles see only the leads they own'),
	('change_retention',   '30 days',         'interval', 'changes older than this are purged from the change feed when no consumer still needs them'),
	('change_channel',     'leadmgmt_changes', 'channel', 'NOTIFY channel that wakes change feed consumers when a transaction wrote changes'),
	('nurture_min_gap',    '3 days',          'interval', 'frequency cap: at most one nurture touch per lead within this interval, across tracks'),
	('nurture_horizon',    '90 days',         'interval', 'nurture conversions count within this interval after enrolment'),
	('nurture_convert_stage', 'mql',          'stage',    'a nurtured lead converts when it enters this stage or a higher-ranked one (not of category lost)')
$$;
COMMENT ON FUNCTION leadmgmt.setting_defaults() IS
	'Every leadmgmt setting with its built-in default, type and meaning';

CREATE FUNCTION leadmgmt.get_setting(key text)
RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result text;
	found_default boolean;
BEGIN
	IF key IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT s.value INTO result FROM leadmgmt.setting s WHERE s.key = get_setting.key;
	IF FOUND THEN
		RETURN result;
	END IF;
	SELECT d.default_value, true INTO result, found_default
	  FROM leadmgmt.setting_defaults() d WHERE d.key = get_setting.key;
	IF found_default IS NULL THEN
		RAISE EXCEPTION 'unknown leadmgmt setting "%"', key
			USING ERRCODE = '42704',
			      HINT = 'Known settings: ' || (SELECT string_agg(d.key, ', ' ORDER BY d.key) FROM leadmgmt.setting_defaults() d) || '.';
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION leadmgmt.get_setting(text) IS
	'Current value of a leadmgmt setting: the override if one is set, else the built-in default';

CREATE FUNCTION leadmgmt.set_setting(key text, value text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	vtype text;
	canonical text;
BEGIN
	IF key IS NULL THEN
		RAISE EXCEPTION 'setting name must not be null' USING ERRCODE = '22004';
	END IF;
	SELECT d.value_type INTO vtype FROM leadmgmt.setting_defaults() d WHERE d.key = set_setting.key;
	IF vtype IS NULL THEN
		RAISE EXCEPTION 'unknown leadmgmt setting "%"', key
			USING ERRCODE = '42704',
			      HINT = 'Known settings: ' || (SELECT string_agg(d.key, ', ' ORDER BY d.key) FROM leadmgmt.setting_defaults() d) || '.';
	END IF;
	IF value IS NULL THEN
		-- NULL means "back to the default"
		DELETE FROM leadmgmt.setting s WHERE s.key = set_setting.key;
		RETURN;
	END IF;
	BEGIN
		CASE vtype
		WHEN 'float8' THEN
			IF value::float8 IN ('NaN', 'Infinity', '-Infinity') THEN
				RAISE EXCEPTION 'not finite';
			END IF;
			canonical := value::float8::text;
		WHEN 'interval' THEN
			IF value::interval <= interval '0' THEN
				RAISE EXCEPTION 'not positive';
			END IF;
			canonical := value;	-- as given: the text form depends on IntervalStyle
		WHEN 'boolean' THEN
			canonical := CASE WHEN value::boolean THEN 'on' ELSE 'off' END;
		WHEN 'timezone' THEN
			PERFORM now() AT TIME ZONE value;
			canonical := value;
		WHEN 'stage' THEN
			IF (SELECT count(*) FROM leadmgmt.stage st WHERE st.name = value) = 0 THEN
				RAISE EXCEPTION 'unknown stage';
			END IF;
			canonical := value;
		WHEN 'channel' THEN
			IF value !~ '^[a-z_][a-z0-9_]{0,62}$' THEN
				RAISE EXCEPTION 'not a simple identifier';
			END IF;
			canonical := value;
		END CASE;
	EXCEPTION WHEN OTHERS THEN
		RAISE EXCEPTION 'invalid value for leadmgmt setting "%": "%"', key, value
			USING ERRCODE = '22023',
			      DETAIL = SQLERRM,
			      HINT = CASE vtype
			          WHEN 'float8'   THEN 'Give a finite number.'
			          WHEN 'interval' THEN 'Give a positive interval such as ''14 days''.'
			          WHEN 'boolean'  THEN 'Give on or off.'
			          WHEN 'timezone' THEN 'Give a time zone name from pg_timezone_names, such as ''Asia/Tokyo''.'
			          WHEN 'stage'    THEN 'Give the name of a stage in leadmgmt.stage, such as ''mql''.'
			          ELSE 'Give a lower-case identifier of at most 63 characters.' END;
	END;
	INSERT INTO leadmgmt.setting AS s (key, value) VALUES (set_setting.key, canonical)
	ON CONFLICT ON CONSTRAINT setting_pkey DO UPDATE SET value = EXCLUDED.value;
END
$$;
COMMENT ON FUNCTION leadmgmt.set_setting(text, text) IS
	'Validate and store a leadmgmt setting; a NULL value restores the default';

CREATE VIEW leadmgmt.settings WITH (security_invoker = true) AS
	SELECT d.key, COALESCE(s.value, d.default_value) AS value, d.default_value,
	       s.key IS NOT NULL AS overridden, d.value_type, d.description
	  FROM leadmgmt.setting_defaults() d
	  LEFT JOIN leadmgmt.setting s ON s.key OPERATOR(pg_catalog.=) d.key;
COMMENT ON VIEW leadmgmt.settings IS 'Every leadmgmt setting with its effective value';
COMMENT ON COLUMN leadmgmt.settings.key IS 'setting name';
COMMENT ON COLUMN leadmgmt.settings.value IS 'effective value (override or default)';
COMMENT ON COLUMN leadmgmt.settings.default_value IS 'built-in default';
COMMENT ON COLUMN leadmgmt.settings.overridden IS 'true when leadmgmt.setting holds an override';
COMMENT ON COLUMN leadmgmt.settings.value_type IS 'how set_setting validates the value';
COMMENT ON COLUMN leadmgmt.settings.description IS 'what the setting controls';
