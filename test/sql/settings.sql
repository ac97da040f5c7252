-- covers: get_setting / set_setting defaults, validation, reset, the settings view
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never

SELECT key, value, overridden FROM leadmgmt.settings ORDER BY key;

SELECT leadmgmt.set_setting('mql_threshold', '80');
SELECT leadmgmt.set_setting('dormant_after', '6 months');
SELECT leadmgmt.set_setting('reporting_timezone', 'Asia/Tokyo');
SELECT leadmgmt.set_setting('rls_by_owner', 'yes');
SELECT leadmgmt.set_setting('notify_channel', 'sales_handoff');
SELECT key, value, default_value, overridden FROM leadmgmt.settings WHERE overridden ORDER BY key;
SELECT leadmgmt.get_setting('mql_threshold')::float8 + 1 AS threshold_plus_one;

-- back to the default
SELECT leadmgmt.set_setting('mql_threshold', NULL);
SELECT leadmgmt.get_setting('mql_threshold');

-- errors: unknown key, bad values, NULL key
SELECT leadmgmt.get_setting('mql_treshold');
SELECT leadmgmt.set_setting('mql_treshold', '1');
SELECT leadmgmt.set_setting('mql_threshold', 'lots');
SELECT leadmgmt.set_setting('mql_threshold', 'NaN');
SELECT leadmgmt.set_setting('handoff_window', '-1 day');
SELECT leadmgmt.set_setting('reengaged_within', 'soon');
SELECT leadmgmt.set_setting('reporting_timezone', 'Mars/Olympus_Mons');
SELECT leadmgmt.set_setting('rls_by_owner', 'maybe');
SELECT leadmgmt.set_setting('notify_channel', 'sales; DROP TABLE x');
SELECT leadmgmt.set_setting(NULL, '1');
SELECT leadmgmt.get_setting(NULL) IS NULL AS null_key_gives_null;
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$SELECT leadmgmt.get_setting('mql_treshold')$$),
	($$SELECT leadmgmt.set_setting('mql_treshold', '1')$$),
	($$SELECT leadmgmt.set_setting('mql_threshold', 'lots')$$),
	($$SELECT leadmgmt.set_setting('notify_channel', 'Sales')$$),
	($$SELECT leadmgmt.set_setting(NULL, '1')$$)) v(q);
-- failed calls changed nothing
SELECT key, value FROM leadmgmt.setting ORDER BY key;
