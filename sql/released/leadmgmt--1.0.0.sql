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
	('rls_by_owner',       'off',             'boolean',  'row-level security: sales roles see only the leads they own')
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

-------------------------------------------------------------------------------
-- Stages: the demand waterfall (doc/stages.md)
-------------------------------------------------------------------------------
-- Built-in vocabulary rows are flagged `builtin`; a C trigger keeps them
-- read-only (users extend by adding rows) and pg_dump saves user rows only.
CREATE FUNCTION leadmgmt.protect_builtin()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_protect_builtin';
COMMENT ON FUNCTION leadmgmt.protect_builtin() IS
	'Trigger: refuses to change or delete built-in vocabulary rows, or to add rows flagged builtin';

CREATE FUNCTION leadmgmt.vocabulary_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_vocabulary_changed';
COMMENT ON FUNCTION leadmgmt.vocabulary_changed() IS
	'Trigger: invalidates the cached stage machine in every session when stages or transitions change';

CREATE TABLE leadmgmt.stage (
	name        text PRIMARY KEY
	            CONSTRAINT stage_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	rank        integer NOT NULL,
	category    text NOT NULL
	            CONSTRAINT stage_category_known CHECK (category IN ('open', 'nurture', 'won', 'lost')),
	is_entry    boolean NOT NULL DEFAULT false,
	next_stage  text,
	description text,
	builtin     boolean NOT NULL DEFAULT false
);
ALTER TABLE leadmgmt.stage ADD CONSTRAINT stage_next_stage_fkey
	FOREIGN KEY (next_stage) REFERENCES leadmgmt.stage (name);
COMMENT ON TABLE leadmgmt.stage IS 'Stages of the demand waterfall; add rows for your own stages';
COMMENT ON COLUMN leadmgmt.stage.name IS 'stage name (lower-case identifier)';
COMMENT ON COLUMN leadmgmt.stage.rank IS 'progress along the waterfall: a higher rank is more advanced';
COMMENT ON COLUMN leadmgmt.stage.category IS 'open, nurture, won or lost';
COMMENT ON COLUMN leadmgmt.stage.is_entry IS 'new leads may start in this stage';
COMMENT ON COLUMN leadmgmt.stage.next_stage IS 'main-path successor, used for conversion_to_next';
COMMENT ON COLUMN leadmgmt.stage.description IS 'what the stage means';
COMMENT ON COLUMN leadmgmt.stage.builtin IS 'shipped with the extension: read-only, not dumped';

CREATE TABLE leadmgmt.stage_transition (
	from_stage  text NOT NULL REFERENCES leadmgmt.stage (name),
	to_stage    text NOT NULL REFERENCES leadmgmt.stage (name),
	description text,
	builtin     boolean NOT NULL DEFAULT false,
	PRIMARY KEY (from_stage, to_stage),
	CONSTRAINT stage_transition_not_self CHECK (from_stage <> to_stage)
);
CREATE INDEX stage_transition_to_stage_idx ON leadmgmt.stage_transition (to_stage);
COMMENT ON TABLE leadmgmt.stage_transition IS 'Allowed stage moves; a move not listed here fails with SQLSTATE LM001';
COMMENT ON COLUMN leadmgmt.stage_transition.from_stage IS 'stage the lead is in';
COMMENT ON COLUMN leadmgmt.stage_transition.to_stage IS 'stage it may move to';
COMMENT ON COLUMN leadmgmt.stage_transition.description IS 'when this move happens';
COMMENT ON COLUMN leadmgmt.stage_transition.builtin IS 'shipped with the extension: read-only, not dumped';

INSERT INTO leadmgmt.stage (name, rank, category, is_entry, next_stage, description, builtin) VALUES
	('won',          60, 'won',     false, NULL,  'closed won: the customer bought', true),
	('lost',         60, 'lost',    false, NULL,  'closed lost: the opportunity ended without a purchase', true),
	('sql',          40, 'open',    false, 'won', 'sales-qualified lead: an opportunity with a deal in progress', true),
	('sal',          30, 'open',    false, 'sql', 'sales-accepted lead: sales took the hand-off', true),
	('sgl',          30, 'open',    true,  'sql', 'sales-generated lead: created by sales from an outbound inquiry, skipping MQL', true),
	('mql',          20, 'open',    false, 'sal', 'marketing-qualified lead: the score passed the threshold', true),
	('inquiry',      10, 'open',    true,  'mql', 'inquiry: a new lead, inbound or outbound', true),
	('recycled',      5, 'nurture', false, 'mql', 'back to nurturing after sales returned it or a deal was lost', true),
	('disqualified',  0, 'lost',    false, NULL,  'disqualified: bad data, competitor, spam', true);

INSERT INTO leadmgmt.stage_transition (from_stage, to_stage, description, builtin) VALUES
	('inquiry',  'mql',      'score passed the MQL threshold', true),
	('inquiry',  'sgl',      'sales picked up the inquiry directly', true),
	('mql',      'sal',      'sales accepted the hand-off', true),
	('mql',      'recycled', 'sales returned the lead to nurturing', true),
	('sal',      'sql',      'sales qualified an opportunity', true),
	('sal',      'recycled', 'sales returned the lead to nurturing', true),
	('sgl',      'sql',      'sales qualified an opportunity', true),
	('sgl',      'recycled', 'sales returned the lead to nurturing', true),
	('sql',      'won',      'deal closed won', true),
	('sql',      'lost',     'deal closed lost', true),
	('lost',     'recycled', 'lost deal goes back to nurturing', true),
	('recycled', 'mql',      'nurtured lead qualified again', true),
	('won',      'mql',      'next purchase cycle', true),
	('inquiry',  'disqualified', 'bad data, competitor or spam', true),
	('mql',      'disqualified', 'bad data, competitor or spam', true),
	('sal',      'disqualified', 'bad data, competitor or spam', true),
	('sgl',      'disqualified', 'bad data, competitor or spam', true),
	('sql',      'disqualified', 'bad data, competitor or spam', true);

CREATE TRIGGER stage_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER stage_transition_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage_transition
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER stage_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.stage
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
CREATE TRIGGER stage_transition_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.stage_transition
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();

SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_transition', 'WHERE NOT builtin');

-------------------------------------------------------------------------------
-- Leads and their stage history (doc/stages.md, doc/getting-started.md)
-------------------------------------------------------------------------------
-- Explicit sequences rather than identity columns: pg_extension_config_dump
-- can mark them, so a dump carries their position and a restored database
-- continues numbering where the old one stopped.
CREATE SEQUENCE leadmgmt.lead_id_seq AS bigint;
CREATE TABLE leadmgmt.lead (
	id               bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.lead_id_seq'),
	external_id      text UNIQUE,
	email            text,
	name             text,
	company          text,
	phone            text,
	source           text,
	origin           text CONSTRAINT lead_origin_known CHECK (origin IN ('inbound', 'outbound')),
	owner            text,
	stage            text NOT NULL DEFAULT 'inquiry' REFERENCES leadmgmt.stage (name),
	stage_entered_at timestamptz NOT NULL,
	score            float8 NOT NULL DEFAULT 0,
	score_at         timestamptz,
	fit_score        float8,
	grade            text,
	amount           numeric CONSTRAINT lead_amount_not_negative CHECK (amount >= 0),
	currency         text CONSTRAINT lead_currency_iso4217 CHECK (currency ~ '^[A-Z]{3}$'),
	attributes       jsonb NOT NULL DEFAULT '{}',
	email_status     text NOT NULL DEFAULT 'ok'
	                 CONSTRAINT lead_email_status_known CHECK (email_status IN ('ok', 'bounced', 'unsubscribed')),
	created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	merged_into      bigint REFERENCES leadmgmt.lead (id),
	email_key        text,
	company_key      text,
	phone_key        text,
	CONSTRAINT lead_not_merged_into_itself CHECK (merged_into <> id)
);
ALTER SEQUENCE leadmgmt.lead_id_seq OWNED BY leadmgmt.lead.id;
CREATE INDEX lead_stage_idx ON leadmgmt.lead (stage);
CREATE INDEX lead_merged_into_idx ON leadmgmt.lead (merged_into) WHERE merged_into IS NOT NULL;
COMMENT ON TABLE leadmgmt.lead IS 'One row per lead: the customer-centric record';
COMMENT ON COLUMN leadmgmt.lead.id IS 'lead id';
COMMENT ON COLUMN leadmgmt.lead.external_id IS 'id of the lead in the system it came from';
COMMENT ON COLUMN leadmgmt.lead.email IS 'e-mail address as given';
COMMENT ON COLUMN leadmgmt.lead.name IS 'person''s name as given';
COMMENT ON COLUMN leadmgmt.lead.company IS 'company name as given';
COMMENT ON COLUMN leadmgmt.lead.phone IS 'phone number as given';
COMMENT ON COLUMN leadmgmt.lead.source IS 'where the lead came from: web_form, exhibition, seminar, purchased_list, outbound_call, ...';
COMMENT ON COLUMN leadmgmt.lead.origin IS 'inbound (the lead came to us) or outbound (we reached it)';
COMMENT ON COLUMN leadmgmt.lead.owner IS 'sales rep who owns the lead';
COMMENT ON COLUMN leadmgmt.lead.stage IS 'current stage; change it with leadmgmt.set_stage() or UPDATE, validated against leadmgmt.stage_transition';
COMMENT ON COLUMN leadmgmt.lead.stage_entered_at IS 'when the lead entered its current stage (maintained by the extension)';
COMMENT ON COLUMN leadmgmt.lead.score IS 'engagement score as of score_at';
COMMENT ON COLUMN leadmgmt.lead.score_at IS 'time the score was last brought up to date';
COMMENT ON COLUMN leadmgmt.lead.fit_score IS 'firmographic fit score';
COMMENT ON COLUMN leadmgmt.lead.grade IS 'fit grade A to D';
COMMENT ON COLUMN leadmgmt.lead.amount IS 'deal value';
COMMENT ON COLUMN leadmgmt.lead.currency IS 'ISO 4217 currency of amount';
COMMENT ON COLUMN leadmgmt.lead.attributes IS 'firmographics (industry, employees, country, ...)';
COMMENT ON COLUMN leadmgmt.lead.email_status IS 'ok, bounced or unsubscribed';
COMMENT ON COLUMN leadmgmt.lead.created_at IS 'when the lead was created; importers may back-date it';
COMMENT ON COLUMN leadmgmt.lead.updated_at IS 'last change of the row';
COMMENT ON COLUMN leadmgmt.lead.merged_into IS 'set when this lead was merged into another one';
COMMENT ON COLUMN leadmgmt.lead.email_key IS 'match key from the e-mail address (maintained by the extension)';
COMMENT ON COLUMN leadmgmt.lead.company_key IS 'match key from the company name (maintained by the extension)';
COMMENT ON COLUMN leadmgmt.lead.phone_key IS 'match key from the phone number (maintained by the extension)';

CREATE SEQUENCE leadmgmt.stage_history_id_seq AS bigint;
CREATE TABLE leadmgmt.stage_history (
	id         bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.stage_history_id_seq'),
	lead_id    bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	from_stage text REFERENCES leadmgmt.stage (name),
	to_stage   text NOT NULL REFERENCES leadmgmt.stage (name),
	changed_at timestamptz NOT NULL,
	changed_by text NOT NULL,
	reason     text,
	CONSTRAINT stage_history_once UNIQUE (lead_id, to_stage, changed_at),
	-- Facts about the row that never change once it is written (history is
	-- append-only and in time order per lead), recorded with it so that the
	-- funnel views count and time stages in one scan instead of sorting the
	-- whole history by lead.
	entry_number       integer,
	time_in_from_stage interval
);
ALTER SEQUENCE leadmgmt.stage_history_id_seq OWNED BY leadmgmt.stage_history.id;
CREATE INDEX stage_history_to_stage_idx ON leadmgmt.stage_history (to_stage, changed_at);
COMMENT ON TABLE leadmgmt.stage_history IS
	'Append-only audit of every stage a lead entered; written only by the extension';
COMMENT ON COLUMN leadmgmt.stage_history.id IS 'row id, in the order the changes were recorded';
COMMENT ON COLUMN leadmgmt.stage_history.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.stage_history.from_stage IS 'stage left (NULL when the lead was created)';
COMMENT ON COLUMN leadmgmt.stage_history.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.stage_history.changed_at IS 'when the lead entered to_stage';
COMMENT ON COLUMN leadmgmt.stage_history.changed_by IS 'leadmgmt.actor setting if set, else the session user';
COMMENT ON COLUMN leadmgmt.stage_history.reason IS 'reason given to set_stage()';
COMMENT ON COLUMN leadmgmt.stage_history.entry_number IS
	'1 for the lead''s first entry into to_stage, 2 for the next (after recycling), ...; NULL for notes (from_stage = to_stage, such as merges)';
COMMENT ON COLUMN leadmgmt.stage_history.time_in_from_stage IS
	'time the lead spent in from_stage: changed_at minus its previous entry; NULL for the first row and for notes';

SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history_id_seq', '');

-- Validation before the row is written, bookkeeping after (DESIGN.md).
CREATE FUNCTION leadmgmt.lead_stage_check()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_stage_check';
COMMENT ON FUNCTION leadmgmt.lead_stage_check() IS
	'Trigger: validates a new lead''s entry stage or a stage move, and sets stage_entered_at';

CREATE FUNCTION leadmgmt.lead_stage_record()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_stage_record';
COMMENT ON FUNCTION leadmgmt.lead_stage_record() IS
	'Trigger: appends the stage a lead entered to leadmgmt.stage_history, as the extension owner';

CREATE FUNCTION leadmgmt.stage_history_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_stage_history_guard';
COMMENT ON FUNCTION leadmgmt.stage_history_guard() IS
	'Trigger: keeps leadmgmt.stage_history append-only and written by the extension alone';

CREATE TRIGGER lead_stage_check
	BEFORE INSERT OR UPDATE OF stage ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_stage_check();
CREATE TRIGGER lead_stage_record_insert
	AFTER INSERT ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_stage_record();
CREATE TRIGGER lead_stage_record_update
	AFTER UPDATE OF stage ON leadmgmt.lead
	FOR EACH ROW WHEN (OLD.stage IS DISTINCT FROM NEW.stage)
	EXECUTE FUNCTION leadmgmt.lead_stage_record();
CREATE TRIGGER stage_history_guard
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage_history
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.stage_history_guard();
CREATE TRIGGER stage_history_no_truncate
	BEFORE TRUNCATE ON leadmgmt.stage_history
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.stage_history_guard();

-- History written before 1.0.0, or restored from a dump of such a version,
-- lacks entry_number and time_in_from_stage; this fills them from the rows
-- themselves.  It writes past the append-only guard, so it runs only for a
-- superuser (session_replication_role), and it changes no other column.
CREATE FUNCTION leadmgmt.fill_history_facts()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	filled bigint;
BEGIN
	UPDATE leadmgmt.stage_history h
	   SET entry_number = f.entry_number, time_in_from_stage = f.time_in_from_stage
	  FROM (SELECT x.id,
	               CASE WHEN x.entry THEN pg_catalog.row_number() OVER (
	                        PARTITION BY x.lead_id, x.to_stage, x.entry ORDER BY x.changed_at, x.id) END AS entry_number,
	               CASE WHEN x.entry THEN x.changed_at OPERATOR(pg_catalog.-) pg_catalog.lag(x.changed_at) OVER (
	                        PARTITION BY x.lead_id, x.entry ORDER BY x.changed_at, x.id) END AS time_in_from_stage
	          FROM (SELECT y.*, y.from_stage IS DISTINCT FROM y.to_stage AS entry
	                  FROM leadmgmt.stage_history y) x) f
	 WHERE h.id OPERATOR(pg_catalog.=) f.id
	   AND (h.entry_number IS DISTINCT FROM f.entry_number::integer
	        OR h.time_in_from_stage IS DISTINCT FROM f.time_in_from_stage);
	GET DIAGNOSTICS filled = ROW_COUNT;
	RETURN filled;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.fill_history_facts() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.fill_history_facts() IS
	'Superuser: fills stage_history.entry_number and time_in_from_stage where they are missing or wrong (history from before 1.0.0); returns the rows changed';

CREATE FUNCTION leadmgmt.set_stage(lead bigint, stage text, reason text DEFAULT NULL,
                                   at timestamptz DEFAULT pg_catalog.now())
RETURNS leadmgmt.lead
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'leadmgmt_set_stage';
COMMENT ON FUNCTION leadmgmt.set_stage(bigint, text, text, timestamptz) IS
	'Move a lead to another stage, validated against leadmgmt.stage_transition and recorded in leadmgmt.stage_history at "at" with "reason"; same stage again is a no-op';

CREATE FUNCTION leadmgmt.lead_resolve(lead bigint)
RETURNS bigint
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_lead_resolve';
COMMENT ON FUNCTION leadmgmt.lead_resolve(bigint) IS
	'The lead a lead id stands for today: follows merged_into; error LM005 when it does not exist';

-------------------------------------------------------------------------------
-- Activity: one timeline per lead (doc/activity.md)
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.activity_kind (
	name        text PRIMARY KEY
	            CONSTRAINT activity_kind_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	description text,
	builtin     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE leadmgmt.activity_kind IS 'Vocabulary of activity kinds; add rows for your own';
COMMENT ON COLUMN leadmgmt.activity_kind.name IS 'kind name (lower-case identifier)';
COMMENT ON COLUMN leadmgmt.activity_kind.description IS 'what the activity is';
COMMENT ON COLUMN leadmgmt.activity_kind.builtin IS 'shipped with the extension: read-only, not dumped';

INSERT INTO leadmgmt.activity_kind (name, description, builtin) VALUES
	('page_view',       'viewed a web page (detail: URL, duration_s: time on page)', true),
	('email_open',      'opened a campaign e-mail', true),
	('email_click',     'clicked a link in a campaign e-mail', true),
	('email_bounce',    'a campaign e-mail bounced', true),
	('unsubscribe',     'unsubscribed from e-mail', true),
	('form_submit',     'submitted a web form', true),
	('download',        'downloaded an asset (detail: asset name)', true),
	('seminar_signup',  'signed up for a seminar (detail: seminar title)', true),
	('seminar_attend',  'attended a seminar (detail: seminar title)', true),
	('exhibition_card', 'left a business card at an exhibition (detail: exhibition)', true),
	('call',            'phone call with the lead', true),
	('visit',           'sales visit or meeting', true),
	('direct_mail',     'was sent direct mail', true),
	('purchase',        'bought something', true);

CREATE TRIGGER activity_kind_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.activity_kind
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.activity_kind', 'WHERE NOT builtin');

CREATE SEQUENCE leadmgmt.activity_id_seq AS bigint;
CREATE TABLE leadmgmt.activity (
	id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.activity_id_seq'),
	lead_id     bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	kind        text NOT NULL REFERENCES leadmgmt.activity_kind (name),
	occurred_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
	campaign    text,
	channel     text,
	detail      text,
	duration_s  integer CONSTRAINT activity_duration_not_negative CHECK (duration_s >= 0),
	props       jsonb,
	points      float8
);
ALTER SEQUENCE leadmgmt.activity_id_seq OWNED BY leadmgmt.activity.id;
CREATE INDEX activity_lead_time_idx ON leadmgmt.activity (lead_id, occurred_at);
-- time-range scans of a large log (retention, recent activity): activity
-- arrives roughly in time order, so a BRIN index of a few pages covers it;
-- autosummarize keeps new block ranges indexed without a manual VACUUM
CREATE INDEX activity_occurred_at_brin ON leadmgmt.activity USING brin (occurred_at)
	WITH (autosummarize = on);
COMMENT ON TABLE leadmgmt.activity IS 'Everything a lead did, one row per touch; bulk-load with COPY';
COMMENT ON COLUMN leadmgmt.activity.id IS 'activity id';
COMMENT ON COLUMN leadmgmt.activity.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.activity.kind IS 'what happened, from leadmgmt.activity_kind';
COMMENT ON COLUMN leadmgmt.activity.occurred_at IS 'when it happened';
COMMENT ON COLUMN leadmgmt.activity.campaign IS 'campaign the touch belongs to';
COMMENT ON COLUMN leadmgmt.activity.channel IS 'channel (web, email, event, phone, ...)';
COMMENT ON COLUMN leadmgmt.activity.detail IS 'page URL, asset name, seminar title, ...';
COMMENT ON COLUMN leadmgmt.activity.duration_s IS 'duration in seconds (time on page, call length)';
COMMENT ON COLUMN leadmgmt.activity.props IS 'anything else, as JSON';
COMMENT ON COLUMN leadmgmt.activity.points IS 'score points awarded (filled by scoring; rows arriving with points set are not scored again)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.activity', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.activity_id_seq', '');

CREATE FUNCTION leadmgmt.track(lead bigint, kind text, at timestamptz DEFAULT pg_catalog.now(),
                               detail text DEFAULT NULL, campaign text DEFAULT NULL,
                               duration_s integer DEFAULT NULL, props jsonb DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	new_id bigint;
BEGIN
	IF kind IS NULL THEN
		RAISE EXCEPTION 'activity kind must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (EXISTS (SELECT 1 FROM leadmgmt.activity_kind k WHERE k.name = track.kind)) THEN
		RAISE EXCEPTION 'unknown activity kind "%"', kind
			USING ERRCODE = 'LM006',
			      HINT = 'Valid kinds: ' || (SELECT string_agg(k.name, ', ' ORDER BY k.name) FROM leadmgmt.activity_kind k)
			             || '. Add your own to leadmgmt.activity_kind.';
	END IF;
	IF duration_s < 0 THEN
		RAISE EXCEPTION 'duration_s must not be negative, got %', duration_s
			USING ERRCODE = '22023';
	END IF;
	IF at IS NULL THEN
		RAISE EXCEPTION 'activity time must not be null' USING ERRCODE = '22004';
	END IF;
	target := leadmgmt.lead_resolve(lead);
	IF target IS NULL THEN
		RAISE EXCEPTION 'lead id must not be null' USING ERRCODE = '22004';
	END IF;
	INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, campaign, duration_s, props)
	VALUES (target, track.kind, track.at, track.detail, track.campaign, track.duration_s, track.props)
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION leadmgmt.track(bigint, text, timestamptz, text, text, integer, jsonb) IS
	'Record an activity of a lead (a merged lead resolves to the lead it was merged into); returns the activity id';

CREATE FUNCTION leadmgmt.timeline(lead bigint)
RETURNS TABLE (at timestamptz, kind text, detail text, campaign text, points float8, stage text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH target AS (SELECT leadmgmt.lead_resolve(timeline.lead) AS id)
	SELECT e.at, e.kind, e.detail, e.campaign, e.points, e.stage
	  FROM (
		SELECT a.occurred_at AS at, a.kind, a.detail, a.campaign, a.points,
		       (SELECT h.to_stage FROM leadmgmt.stage_history h
		         WHERE h.lead_id = a.lead_id AND h.changed_at <= a.occurred_at
		         ORDER BY h.changed_at DESC, h.id DESC LIMIT 1) AS stage,
		       1 AS seq, a.id
		  FROM leadmgmt.activity a, target t
		 WHERE a.lead_id = t.id
		UNION ALL
		SELECT h.changed_at, 'stage_change', COALESCE(h.from_stage, '(new)') || ' -> ' || h.to_stage,
		       NULL, NULL, h.to_stage, 0, h.id
		  FROM leadmgmt.stage_history h, target t
		 WHERE h.lead_id = t.id
	  ) e
	 ORDER BY e.at, e.seq, e.id;
END;
COMMENT ON FUNCTION leadmgmt.timeline(bigint) IS
	'Everything that happened to a lead in time order: activities (with the stage the lead was in) and stage changes (kind stage_change)';

-------------------------------------------------------------------------------
-- Scoring: rules, time decay, fit grade, hand-off (doc/scoring.md)
-------------------------------------------------------------------------------
CREATE SEQUENCE leadmgmt.scoring_rule_id_seq AS bigint;
CREATE TABLE leadmgmt.scoring_rule (
	id             bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.scoring_rule_id_seq'),
	name           text NOT NULL UNIQUE,
	kind           text NOT NULL REFERENCES leadmgmt.activity_kind (name),
	detail_pattern text
	               -- the one malformed LIKE pattern: a trailing lone escape character
	               CONSTRAINT scoring_rule_pattern_valid CHECK (detail_pattern !~ '(^|[^\\])(\\\\)*\\$'),
	campaign       text,
	min_duration_s integer CONSTRAINT scoring_rule_min_duration_not_negative CHECK (min_duration_s >= 0),
	points         float8 NOT NULL
	               CONSTRAINT scoring_rule_points_finite CHECK (points > '-Infinity' AND points < 'Infinity'),
	half_life      interval
	               CONSTRAINT scoring_rule_half_life_positive CHECK (half_life > interval '0'),
	max_times      integer CONSTRAINT scoring_rule_max_times_positive CHECK (max_times > 0),
	active         boolean NOT NULL DEFAULT true,
	overrides      text REFERENCES leadmgmt.scoring_rule (name),
	description    text,
	builtin        boolean NOT NULL DEFAULT false,
	CONSTRAINT scoring_rule_overrides_builtin_only CHECK (overrides IS NULL OR NOT builtin)
);
ALTER SEQUENCE leadmgmt.scoring_rule_id_seq OWNED BY leadmgmt.scoring_rule.id;
COMMENT ON TABLE leadmgmt.scoring_rule IS
	'Behaviour scoring rules: points for matching activities, with optional decay and cap';
COMMENT ON COLUMN leadmgmt.scoring_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt.scoring_rule.name IS 'unique rule name';
COMMENT ON COLUMN leadmgmt.scoring_rule.kind IS 'activity kind the rule applies to';
COMMENT ON COLUMN leadmgmt.scoring_rule.detail_pattern IS 'LIKE pattern on activity.detail (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.campaign IS 'activity.campaign must equal this (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.min_duration_s IS 'activity.duration_s must be at least this (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.points IS 'points awarded, may be negative; finite';
COMMENT ON COLUMN leadmgmt.scoring_rule.half_life IS 'points halve every half_life (NULL: no decay); positive';
COMMENT ON COLUMN leadmgmt.scoring_rule.max_times IS 'award only the first max_times matches per lead, in occurred_at order (NULL: unlimited)';
COMMENT ON COLUMN leadmgmt.scoring_rule.active IS 'inactive rules award nothing';
COMMENT ON COLUMN leadmgmt.scoring_rule.overrides IS 'name of a built-in rule this user rule replaces (the built-in one then no longer applies)';
COMMENT ON COLUMN leadmgmt.scoring_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt.scoring_rule.builtin IS 'shipped with the extension: read-only, not dumped';

-- The default rule set (doc/scoring.md explains the choice of values)
INSERT INTO leadmgmt.scoring_rule
	(name, kind, detail_pattern, min_duration_s, points, half_life, max_times, description, builtin) VALUES
	('form_submit',        'form_submit',     NULL,           NULL,  30, '90 days',  5,    'submitted a web form', true),
	('whitepaper',         'download',        '%whitepaper%', NULL,  20, '90 days',  5,    'downloaded a whitepaper', true),
	('download',           'download',        NULL,           NULL,   5, '90 days',  10,   'downloaded any asset', true),
	('seminar_signup',     'seminar_signup',  NULL,           NULL,  10, '90 days',  NULL, 'signed up for a seminar', true),
	('seminar_attend',     'seminar_attend',  NULL,           NULL,  25, '180 days', NULL, 'attended a seminar', true),
	('exhibition_card',    'exhibition_card', NULL,           NULL,  15, '180 days', NULL, 'left a business card at an exhibition', true),
	('pricing_page',       'page_view',       '%/pricing%',   30,    15, '30 days',  5,    'spent at least 30 s on the pricing page', true),
	('page_view',          'page_view',       NULL,           NULL,   1, '30 days',  20,   'viewed any page', true),
	('email_click',        'email_click',     NULL,           NULL,   5, '30 days',  10,   'clicked a link in an e-mail', true),
	('email_open',         'email_open',      NULL,           NULL,   1, '30 days',  10,   'opened an e-mail', true),
	('call',               'call',            NULL,           NULL,  10, '90 days',  NULL, 'talked to us on the phone', true),
	('visit',              'visit',           NULL,           NULL,  30, '180 days', NULL, 'met sales', true),
	('email_bounce',       'email_bounce',    NULL,           NULL, -20, NULL,       1,    'e-mail address bounced', true),
	('unsubscribe',        'unsubscribe',     NULL,           NULL, -50, NULL,       1,    'unsubscribed from e-mail', true);

CREATE TRIGGER scoring_rule_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.scoring_rule
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER scoring_rule_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.scoring_rule
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.scoring_rule', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.scoring_rule_id_seq', '');

CREATE SEQUENCE leadmgmt.fit_rule_id_seq AS bigint;
CREATE TABLE leadmgmt.fit_rule (
	id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.fit_rule_id_seq'),
	name        text NOT NULL UNIQUE,
	attribute   text NOT NULL,
	op          text NOT NULL CONSTRAINT fit_rule_op_known CHECK (op IN ('eq', 'in', 'between')),
	value       jsonb,
	min_value   numeric,
	max_value   numeric,
	points      float8 NOT NULL
	            CONSTRAINT fit_rule_points_finite CHECK (points > '-Infinity' AND points < 'Infinity'),
	active      boolean NOT NULL DEFAULT true,
	description text,
	builtin     boolean NOT NULL DEFAULT false,
	CONSTRAINT fit_rule_operands CHECK (CASE op
		WHEN 'eq' THEN pg_catalog.jsonb_typeof(value) IN ('string', 'number', 'boolean')
		WHEN 'in' THEN pg_catalog.jsonb_typeof(value) = 'array'
		ELSE value IS NULL AND (min_value IS NOT NULL OR max_value IS NOT NULL)
		     AND (min_value IS NULL OR max_value IS NULL OR min_value <= max_value) END)
);
ALTER SEQUENCE leadmgmt.fit_rule_id_seq OWNED BY leadmgmt.fit_rule.id;
COMMENT ON TABLE leadmgmt.fit_rule IS 'Firmographic fit rules on lead.attributes, giving fit_score and grade';
COMMENT ON COLUMN leadmgmt.fit_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt.fit_rule.name IS 'unique rule name';
COMMENT ON COLUMN leadmgmt.fit_rule.attribute IS 'top-level key of lead.attributes';
COMMENT ON COLUMN leadmgmt.fit_rule.op IS 'eq (equals value), in (one of the array value), between (numeric min_value..max_value, inclusive, either bound optional)';
COMMENT ON COLUMN leadmgmt.fit_rule.value IS 'JSON scalar for eq, JSON array for in';
COMMENT ON COLUMN leadmgmt.fit_rule.min_value IS 'lower bound for between (NULL: none)';
COMMENT ON COLUMN leadmgmt.fit_rule.max_value IS 'upper bound for between (NULL: none)';
COMMENT ON COLUMN leadmgmt.fit_rule.points IS 'fit points when the rule matches; finite';
COMMENT ON COLUMN leadmgmt.fit_rule.active IS 'inactive rules give nothing';
COMMENT ON COLUMN leadmgmt.fit_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt.fit_rule.builtin IS 'shipped with the extension: read-only, not dumped (none are shipped)';
CREATE TRIGGER fit_rule_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.fit_rule
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER fit_rule_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.fit_rule
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
-- grade thresholds are settings: reload the fit cache when they change
CREATE TRIGGER setting_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.setting
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.fit_rule', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.fit_rule_id_seq', '');

-- Score state, maintained by the triggers: one row per lead holding one
-- decay component per distinct half-life, (value, ref_at) = that half-life's
-- points decayed to the latest activity folded in, and one counter per capped
-- rule.  One compact row per lead keeps scoring a COPY at one read and one
-- write per lead; the views below show the contents.
CREATE TABLE leadmgmt.score_state (
	lead_id bigint PRIMARY KEY REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	state   bytea NOT NULL
);
COMMENT ON TABLE leadmgmt.score_state IS
	'Scoring state per lead (maintained by the extension); read it through leadmgmt.score_component and leadmgmt.score_award';
COMMENT ON COLUMN leadmgmt.score_state.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_state.state IS 'decay components and cap counters, packed (leadmgmt.score_state_pack)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.score_state', '');

-- What purged activity leaves behind (leadmgmt.purge_activity, doc/scaling.md):
-- per lead, the points its purged activities had earned, as decay components,
-- and how often each rule had awarded them, in the score_state format.
-- rescore() and score() add it to what the remaining activity earns, so
-- deleting old activity changes no score; it is frozen at the rules in force
-- when the activity was purged.
CREATE TABLE leadmgmt.purged_score (
	lead_id       bigint PRIMARY KEY REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	state         bytea NOT NULL,
	purged_before timestamptz NOT NULL,
	activities    bigint NOT NULL,
	purged_at     timestamptz NOT NULL
);
COMMENT ON TABLE leadmgmt.purged_score IS
	'Score points and cap counters of purged activity, per lead (written by leadmgmt.purge_activity); rescore() and score() count them';
COMMENT ON COLUMN leadmgmt.purged_score.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.purged_score.state IS 'decay components and award counters of the purged activity, packed like score_state.state';
COMMENT ON COLUMN leadmgmt.purged_score.purged_before IS 'latest cutoff: activity of this lead before it is gone';
COMMENT ON COLUMN leadmgmt.purged_score.activities IS 'activity rows of this lead purged so far';
COMMENT ON COLUMN leadmgmt.purged_score.purged_at IS 'when activity of this lead was last purged';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.purged_score', '');

CREATE FUNCTION leadmgmt.score_state_pack(half_life_us bigint[], value float8[], ref_at timestamptz[],
                                          award_rule bigint[], award_times integer[],
                                          award_last timestamptz[])
RETURNS bytea
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_pack';
COMMENT ON FUNCTION leadmgmt.score_state_pack(bigint[], float8[], timestamptz[], bigint[], integer[], timestamptz[]) IS
	'Pack decay components and cap counters into a score_state value (used by rescore)';

CREATE FUNCTION leadmgmt.score_state_components(state bytea,
	OUT half_life_us bigint, OUT value float8, OUT ref_at timestamptz)
RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_components';
COMMENT ON FUNCTION leadmgmt.score_state_components(bytea) IS 'The decay components of a score_state value';

CREATE FUNCTION leadmgmt.score_state_awards(state bytea,
	OUT rule_id bigint, OUT times integer, OUT last_awarded_at timestamptz)
RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_awards';
COMMENT ON FUNCTION leadmgmt.score_state_awards(bytea) IS 'The cap counters of a score_state value';

CREATE FUNCTION leadmgmt.score_state_value(state bytea, at timestamptz)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_value';
COMMENT ON FUNCTION leadmgmt.score_state_value(bytea, timestamptz) IS
	'Score held by a score_state value at a time at or after its latest activity';

CREATE FUNCTION leadmgmt.score_state_latest(state bytea)
RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_latest';
COMMENT ON FUNCTION leadmgmt.score_state_latest(bytea) IS
	'Time of the latest activity folded into a score_state value (NULL when none)';

-- Two states in one: components of a half-life fold exactly (score_state_pack
-- decays the older to the newer reference time), award counters add up.
CREATE FUNCTION leadmgmt.score_state_merge(a bytea, b bytea)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.score_state_pack(coalesce(c.half_life_us, '{}'), coalesce(c.value, '{}'),
	                                 coalesce(c.ref_at, '{}'), coalesce(w.rule_id, '{}'),
	                                 coalesce(w.times, '{}'), coalesce(w.last_at, '{}'))
	  FROM (SELECT array_agg(x.half_life_us ORDER BY x.ref_at) AS half_life_us,
	               array_agg(x.value ORDER BY x.ref_at) AS value,
	               array_agg(x.ref_at ORDER BY x.ref_at) AS ref_at
	          FROM (SELECT ca.half_life_us, ca.value, ca.ref_at FROM leadmgmt.score_state_components(a) ca
	                UNION ALL
	                SELECT cb.half_life_us, cb.value, cb.ref_at FROM leadmgmt.score_state_components(b) cb) x) c,
	       (SELECT array_agg(y.rule_id ORDER BY y.rule_id) AS rule_id,
	               array_agg(y.times ORDER BY y.rule_id) AS times,
	               array_agg(y.last_at ORDER BY y.rule_id) AS last_at
	          FROM (SELECT z.rule_id, sum(z.times)::integer AS times, max(z.last_awarded_at) AS last_at
	                  FROM (SELECT wa.rule_id, wa.times, wa.last_awarded_at FROM leadmgmt.score_state_awards(a) wa
	                        UNION ALL
	                        SELECT wb.rule_id, wb.times, wb.last_awarded_at FROM leadmgmt.score_state_awards(b) wb) z
	                 GROUP BY z.rule_id) y) w;
END;
COMMENT ON FUNCTION leadmgmt.score_state_merge(bytea, bytea) IS
	'Merge two score_state values: decay components of a half-life folded together, award counters added (NULL counts as empty)';

CREATE VIEW leadmgmt.score_component WITH (security_invoker = true) AS
	SELECT s.lead_id, c.half_life_us, c.value, c.ref_at
	  FROM leadmgmt.score_state s, leadmgmt.score_state_components(s.state) c;
COMMENT ON VIEW leadmgmt.score_component IS
	'Decay components per lead and half-life: score(lead, at) = sum of value * 2^-((at - ref_at) / half_life)';
COMMENT ON COLUMN leadmgmt.score_component.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_component.half_life_us IS 'half-life in microseconds (EXTRACT(EPOCH) conventions); 0 = no decay';
COMMENT ON COLUMN leadmgmt.score_component.value IS 'points of this half-life, decayed to ref_at';
COMMENT ON COLUMN leadmgmt.score_component.ref_at IS 'time of the latest activity folded in';

CREATE VIEW leadmgmt.score_award WITH (security_invoker = true) AS
	SELECT s.lead_id, a.rule_id, a.times, a.last_awarded_at
	  FROM leadmgmt.score_state s, leadmgmt.score_state_awards(s.state) a;
COMMENT ON VIEW leadmgmt.score_award IS
	'How often a capped rule (max_times) has awarded points to a lead';
COMMENT ON COLUMN leadmgmt.score_award.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_award.rule_id IS 'the capped rule';
COMMENT ON COLUMN leadmgmt.score_award.times IS 'awards so far (at most max_times)';
COMMENT ON COLUMN leadmgmt.score_award.last_awarded_at IS 'occurred_at of the latest awarded activity';

-- Decay arithmetic shared by the triggers, rescore() and score()
CREATE FUNCTION leadmgmt.half_life_us(half_life interval)
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_half_life_us';
COMMENT ON FUNCTION leadmgmt.half_life_us(interval) IS
	'Half-life in microseconds as scoring uses it (1 month = 30 days, 1 year = 365.25 days); NULL gives 0, no decay';

-- A half-life that scoring cannot use is refused when the rule is written:
-- beyond 2^63 microseconds (292,271 years) it does not fit (22008), and one
-- like '-1 year 361 days' is positive to PostgreSQL (a year of 360 days)
-- but not to scoring (365.25 days, 22023).  Found while fuzzing (by hand,
-- with the intervals of test/fuzz/setup.sql): such a rule was accepted,
-- and then every track() and COPY into activity failed.
-- half_life_us() raises the error; values PostgreSQL already calls not
-- positive are left to scoring_rule_half_life_positive (23514), which is
-- checked first (CHECK constraints run in name order).
ALTER TABLE leadmgmt.scoring_rule ADD CONSTRAINT scoring_rule_half_life_representable
	CHECK (half_life IS NULL OR half_life <= interval '0' OR leadmgmt.half_life_us(half_life) > 0);

CREATE FUNCTION leadmgmt.decay(points float8, ts timestamptz, half_life_us bigint, at timestamptz)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decay';
COMMENT ON FUNCTION leadmgmt.decay(float8, timestamptz, bigint, timestamptz) IS
	'points * 2^-((at - ts) / half_life) for at >= ts, else points; half_life_us 0 = no decay';

-- decayed_sum(points, ts, half_life, at): the aggregate of DESIGN.md
CREATE FUNCTION leadmgmt.decayed_sum_trans(internal, float8, timestamptz, interval, timestamptz)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_trans';
COMMENT ON FUNCTION leadmgmt.decayed_sum_trans(internal, float8, timestamptz, interval, timestamptz) IS
	'decayed_sum transition function';
CREATE FUNCTION leadmgmt.decayed_sum_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_combine';
COMMENT ON FUNCTION leadmgmt.decayed_sum_combine(internal, internal) IS 'decayed_sum combine function';
CREATE FUNCTION leadmgmt.decayed_sum_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_serialize';
COMMENT ON FUNCTION leadmgmt.decayed_sum_serialize(internal) IS 'decayed_sum serialisation function';
CREATE FUNCTION leadmgmt.decayed_sum_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_deserialize';
COMMENT ON FUNCTION leadmgmt.decayed_sum_deserialize(bytea, internal) IS 'decayed_sum deserialisation function';
CREATE FUNCTION leadmgmt.decayed_sum_final(internal)
RETURNS float8 LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_final';
COMMENT ON FUNCTION leadmgmt.decayed_sum_final(internal) IS 'decayed_sum final function';

CREATE AGGREGATE leadmgmt.decayed_sum(points float8, ts timestamptz, half_life interval, at timestamptz) (
	SFUNC = leadmgmt.decayed_sum_trans,
	STYPE = internal,
	SSPACE = 48,
	FINALFUNC = leadmgmt.decayed_sum_final,
	COMBINEFUNC = leadmgmt.decayed_sum_combine,
	SERIALFUNC = leadmgmt.decayed_sum_serialize,
	DESERIALFUNC = leadmgmt.decayed_sum_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.decayed_sum(float8, timestamptz, interval, timestamptz) IS
	'Sum of points * 2^-((at - ts) / half_life) over rows with ts <= at; NULL half_life = no decay; NULL when no row has points and ts';

-- Which activity earns which points under the current rules: the set-based
-- statement of what the triggers do row by row, for some leads (NULL: every
-- lead).  The activity comes from one of two branches, of which a plan runs
-- only one: a SQL function's plan is generic, and a generic plan cannot use
-- the (lead_id, occurred_at) index for "leads IS NULL OR lead_id = ANY
-- (leads)".  No parallel workers and no JIT: the generic plan's cost counts
-- the branch it does not run, and starting workers or compiling would cost a
-- per-lead call far more than its index scan.
-- Caps count the awards of purged activity (leadmgmt.purged_score) first.
CREATE FUNCTION leadmgmt.score_matches_batch(leads bigint[], upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET max_parallel_workers_per_gather = 0
SET jit = off
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM (
		SELECT a.id AS activity_id, a.lead_id, a.occurred_at, r.id AS rule_id, r.points,
		       leadmgmt.half_life_us(r.half_life) AS half_life_us, r.max_times,
		       row_number() OVER (PARTITION BY a.lead_id, r.id ORDER BY a.occurred_at, a.id) AS nth
		  FROM (SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE score_matches_batch.leads IS NULL
		        UNION ALL
		        SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE x.lead_id = ANY (score_matches_batch.leads)
		           AND x.occurred_at <= coalesce(score_matches_batch.upto, 'infinity')) a
		  JOIN leadmgmt.scoring_rule r ON r.kind = a.kind
		 WHERE (score_matches_batch.upto IS NULL OR a.occurred_at <= score_matches_batch.upto)
		   AND r.active
		   AND NOT EXISTS (SELECT 1 FROM leadmgmt.scoring_rule o WHERE o.overrides = r.name)
		   AND (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
		   AND (r.campaign IS NULL OR a.campaign = r.campaign)
		   AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s)
	  ) m
	  LEFT JOIN (SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE score_matches_batch.leads IS NULL
	             UNION ALL
	             SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE p.lead_id = ANY (score_matches_batch.leads)) pw
	    ON pw.lead_id = m.lead_id AND pw.rule_id = m.rule_id
	 WHERE m.max_times IS NULL OR m.nth + coalesce(pw.times, 0) <= m.max_times;
END;
COMMENT ON FUNCTION leadmgmt.score_matches_batch(bigint[], timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for the given leads (or all when NULL) up to a time (or all when NULL)';

CREATE FUNCTION leadmgmt.score_matches(lead bigint, upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM leadmgmt.score_matches_batch(CASE WHEN score_matches.lead IS NOT NULL
	                                         THEN ARRAY[score_matches.lead] END, score_matches.upto) m;
END;
COMMENT ON FUNCTION leadmgmt.score_matches(bigint, timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for one lead (or all when NULL) up to a time (or all when NULL)';

CREATE FUNCTION leadmgmt.rescore_leads(leads bigint[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed bigint;
BEGIN
	-- a full rescore makes new activity wait until it is committed; the
	-- per-lead path runs inside the scoring trigger, which holds the leads'
	-- row locks already
	IF leads IS NULL THEN
		LOCK TABLE leadmgmt.activity IN SHARE MODE;
	END IF;
	CREATE TEMP TABLE leadmgmt_rescore_match ON COMMIT DROP AS
		SELECT * FROM leadmgmt.score_matches_batch(leads, NULL) m;
	-- what purged activity earned stays (doc/scaling.md)
	CREATE TEMP TABLE leadmgmt_rescore_purged ON COMMIT DROP AS
		SELECT p.lead_id, p.state FROM leadmgmt.purged_score p
		 WHERE leads IS NULL OR p.lead_id = ANY (leads);

	UPDATE leadmgmt.activity a SET points = coalesce(x.points, 0)
	  FROM (SELECT a2.id, s.points
	          FROM leadmgmt.activity a2
	          LEFT JOIN (SELECT activity_id, sum(points) AS points FROM leadmgmt_rescore_match
	                      GROUP BY activity_id) s ON s.activity_id = a2.id
	         WHERE leads IS NULL OR a2.lead_id = ANY (leads)) x
	 WHERE a.id = x.id AND a.points IS DISTINCT FROM coalesce(x.points, 0);

	DELETE FROM leadmgmt.score_state st WHERE leads IS NULL OR st.lead_id = ANY (leads);
	INSERT INTO leadmgmt.score_state (lead_id, state)
	WITH point AS (
		SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at FROM leadmgmt_rescore_match m
		UNION ALL
		SELECT p.lead_id, c.half_life_us, c.value, c.ref_at
		  FROM leadmgmt_rescore_purged p, leadmgmt.score_state_components(p.state) c
	), component AS (
		SELECT x.lead_id, x.half_life_us, x.ref_at,
		       sum(leadmgmt.decay(x.points, x.occurred_at, x.half_life_us, x.ref_at)) AS value
		  FROM (SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at,
		               max(m.occurred_at) OVER (PARTITION BY m.lead_id, m.half_life_us) AS ref_at
		          FROM point m) x
		 GROUP BY x.lead_id, x.half_life_us, x.ref_at
	), components AS (
		SELECT c.lead_id,
		       array_agg(c.half_life_us ORDER BY c.half_life_us) AS half_life_us,
		       array_agg(c.value ORDER BY c.half_life_us) AS value,
		       array_agg(c.ref_at ORDER BY c.half_life_us) AS ref_at
		  FROM component c GROUP BY c.lead_id
	), award AS (
		SELECT m.lead_id, m.rule_id, sum(m.times)::integer AS times, max(m.last_at) AS last_at
		  FROM (SELECT m1.lead_id, m1.rule_id, 1 AS times, m1.occurred_at AS last_at
		          FROM leadmgmt_rescore_match m1
		        UNION ALL
		        SELECT p.lead_id, w.rule_id, w.times, w.last_awarded_at
		          FROM leadmgmt_rescore_purged p, leadmgmt.score_state_awards(p.state) w) m
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		 WHERE r.max_times IS NOT NULL
		 GROUP BY m.lead_id, m.rule_id
	), awards AS (
		SELECT a.lead_id,
		       array_agg(a.rule_id ORDER BY a.rule_id) AS rule_id,
		       array_agg(a.times ORDER BY a.rule_id) AS times,
		       array_agg(a.last_at ORDER BY a.rule_id) AS last_at
		  FROM award a GROUP BY a.lead_id
	)
	SELECT c.lead_id,
	       leadmgmt.score_state_pack(c.half_life_us, c.value, c.ref_at, w.rule_id, w.times, w.last_at)
	  FROM components c LEFT JOIN awards w ON w.lead_id = c.lead_id
	 ORDER BY c.lead_id;

	WITH fresh AS (
		SELECT l.id, l.score AS old_score, l.score_at AS old_score_at,
		       coalesce(leadmgmt.score_state_value(st.state, leadmgmt.score_state_latest(st.state)), 0) AS score,
		       leadmgmt.score_state_latest(st.state) AS score_at
		  FROM leadmgmt.lead l
		  LEFT JOIN leadmgmt.score_state st ON st.lead_id = l.id
		 WHERE leads IS NULL OR l.id = ANY (leads)
	), upd AS (
		UPDATE leadmgmt.lead l SET score = f.score, score_at = f.score_at
		  FROM fresh f
		 WHERE l.id = f.id AND (f.old_score IS DISTINCT FROM f.score OR f.old_score_at IS DISTINCT FROM f.score_at)
		RETURNING f.old_score_at IS DISTINCT FROM f.score_at
		          -- summing in another order moves the last bits: not a change
		          OR abs(f.score - f.old_score) > 1e-9 * greatest(1, abs(f.score)) AS really
	)
	SELECT count(*) FILTER (WHERE really) INTO changed FROM upd;

	UPDATE leadmgmt.lead l SET fit_score = f.fit_score, grade = f.grade
	  FROM (SELECT l2.id, leadmgmt.fit_score(l2.attributes) AS fit_score,
	               leadmgmt.fit_grade(leadmgmt.fit_score(l2.attributes)) AS grade
	          FROM leadmgmt.lead l2 WHERE leads IS NULL OR l2.id = ANY (leads)) f
	 WHERE l.id = f.id AND (l.fit_score IS DISTINCT FROM f.fit_score OR l.grade IS DISTINCT FROM f.grade);

	DROP TABLE leadmgmt_rescore_match, leadmgmt_rescore_purged;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION leadmgmt.rescore_leads(bigint[]) IS
	'Recompute points, caps, decay components, scores and fit of the given leads (all when NULL) from the current rules and what purged activity earned; returns the number of leads whose score changed';

CREATE FUNCTION leadmgmt.rescore()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.rescore_leads(NULL);
END;
COMMENT ON FUNCTION leadmgmt.rescore() IS
	'Recompute every score from the current rules after rule edits; returns the number of leads whose score changed';
REVOKE ALL ON FUNCTION leadmgmt.rescore() FROM PUBLIC;
REVOKE ALL ON FUNCTION leadmgmt.rescore_leads(bigint[]) FROM PUBLIC;

CREATE FUNCTION leadmgmt.score(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS float8
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint := leadmgmt.lead_resolve(lead);
	state bytea;
	latest timestamptz;
	purged bytea;
	purged_latest timestamptz;
	result float8;
BEGIN
	SELECT st.state INTO state FROM leadmgmt.score_state st WHERE st.lead_id = target;
	latest := leadmgmt.score_state_latest(state);
	IF latest IS NULL THEN
		RETURN 0;
	END IF;
	IF at >= latest THEN
		-- O(number of distinct half-lives)
		RETURN leadmgmt.score_state_value(state, score.at);
	ELSE
		-- a time before the lead's latest activity: from the activity log,
		-- plus what purged activity earned, known only as of its latest point
		SELECT p.state INTO purged FROM leadmgmt.purged_score p WHERE p.lead_id = target;
		purged_latest := leadmgmt.score_state_latest(purged);
		IF at < purged_latest THEN
			RAISE EXCEPTION 'score of lead % at % is unknown: activity it depends on was purged', target, at
				USING ERRCODE = 'LM040',
				      DETAIL = format('Purged activity of the lead earned points until %s.', purged_latest),
				      HINT = 'Ask for a time at or after that.';
		END IF;
		SELECT coalesce(sum(leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score.at)), 0)
		       + coalesce((SELECT sum(leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score.at))
		                     FROM leadmgmt.score_state_components(purged) c), 0) INTO result
		  FROM leadmgmt.score_matches_batch(ARRAY[target], score.at) m;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION leadmgmt.score(bigint, timestamptz) IS
	'Engagement score of a lead at a time, counting activities with occurred_at <= at; O(1) when at is at or after the lead''s latest scored activity; LM040 before the latest point of purged activity';

CREATE FUNCTION leadmgmt.score_explain(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (activity_id bigint, occurred_at timestamptz, kind text, detail text, rule text,
               points float8, half_life interval, decayed_points float8)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT e.activity_id, e.occurred_at, e.kind, e.detail, e.rule, e.points, e.half_life, e.decayed_points
	  FROM (
		SELECT m.activity_id, m.occurred_at, a.kind, a.detail, r.name AS rule, m.points, r.half_life,
		       leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score_explain.at) AS decayed_points
		  FROM leadmgmt.score_matches_batch(ARRAY[leadmgmt.lead_resolve(score_explain.lead)], score_explain.at) m
		  JOIN leadmgmt.activity a ON a.id = m.activity_id
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		UNION ALL
		-- purged activity: one line per half-life, its points as of ref_at
		SELECT NULL, c.ref_at, NULL, '(purged activity)', NULL, c.value,
		       CASE WHEN c.half_life_us > 0 THEN justify_hours(c.half_life_us * interval '1 microsecond') END,
		       leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score_explain.at)
		  FROM leadmgmt.purged_score p, leadmgmt.score_state_components(p.state) c
		 WHERE p.lead_id = leadmgmt.lead_resolve(score_explain.lead)
		   AND leadmgmt.score_state_latest(p.state) <= score_explain.at
	  ) e
	 ORDER BY e.occurred_at, e.activity_id, e.rule;
END;
COMMENT ON FUNCTION leadmgmt.score_explain(bigint, timestamptz) IS
	'Each activity and rule that contributes to a lead''s score at a time, with its points decayed to that time; purged activity as one line per half-life (detail "(purged activity)")';

CREATE FUNCTION leadmgmt.fit_score(attributes jsonb)
RETURNS float8
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_fit_score';
COMMENT ON FUNCTION leadmgmt.fit_score(jsonb) IS
	'Sum of the points of the active fit rules that the attributes match (0 when none)';

CREATE FUNCTION leadmgmt.fit_grade(fit_score float8)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_fit_grade';
COMMENT ON FUNCTION leadmgmt.fit_grade(float8) IS
	'Grade A to D of a fit score, by the settings fit_grade_a, fit_grade_b and fit_grade_c';

-- Triggers: points on the row before it is written, lead scores and the
-- hand-off once per statement from the transition table.
CREATE FUNCTION leadmgmt.activity_score_row()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_row';
COMMENT ON FUNCTION leadmgmt.activity_score_row() IS
	'Trigger: puts the points of matching scoring rules on a new activity row';
CREATE FUNCTION leadmgmt.activity_score_statement()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_statement';
COMMENT ON FUNCTION leadmgmt.activity_score_statement() IS
	'Trigger: applies caps, decay components and lead scores for the rows of one statement, in lead order, and hands hot leads to sales';
CREATE FUNCTION leadmgmt.lead_fit()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_fit';
COMMENT ON FUNCTION leadmgmt.lead_fit() IS
	'Trigger: computes fit_score and grade from lead.attributes';

CREATE TRIGGER activity_score_row
	BEFORE INSERT ON leadmgmt.activity
	FOR EACH ROW WHEN (NEW.points IS NULL)
	EXECUTE FUNCTION leadmgmt.activity_score_row();
CREATE TRIGGER activity_score_statement
	AFTER INSERT ON leadmgmt.activity
	REFERENCING NEW TABLE AS new_activity
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.activity_score_statement();
CREATE TRIGGER lead_fit
	BEFORE INSERT OR UPDATE OF attributes ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_fit();

-------------------------------------------------------------------------------
-- Funnels: windowed conversion funnels per lead (doc/funnel.md)
-------------------------------------------------------------------------------
-- window_funnel and funnel_step_times are C aggregates with ClickHouse
-- windowFunnel semantics.  The support functions are C and resolve no names,
-- so they need no pinned search_path (a SET clause would route every row
-- through fmgr_security_definer).  One transition, combine, serialise and
-- deserialise function serves all four aggregates; aggregates over the same
-- arguments share one state.  The final functions leave the state untouched
-- (they sort a copy when needed), so they are READ_ONLY and the aggregates
-- also work as window functions.
CREATE FUNCTION leadmgmt.window_funnel_trans(internal, interval, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_trans';
COMMENT ON FUNCTION leadmgmt.window_funnel_trans(internal, interval, timestamptz, boolean[]) IS
	'Transition function of window_funnel and funnel_step_times: keeps the events that match a step';

CREATE FUNCTION leadmgmt.window_funnel_trans(internal, interval, text, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_trans_mode';
COMMENT ON FUNCTION leadmgmt.window_funnel_trans(internal, interval, text, timestamptz, boolean[]) IS
	'Transition function of window_funnel and funnel_step_times with a mode: keeps the events that match a step';

CREATE FUNCTION leadmgmt.window_funnel_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_combine';
COMMENT ON FUNCTION leadmgmt.window_funnel_combine(internal, internal) IS
	'Combine function of the funnel aggregates: merges two partial states with the same window, mode and steps';

CREATE FUNCTION leadmgmt.window_funnel_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_serialize';
COMMENT ON FUNCTION leadmgmt.window_funnel_serialize(internal) IS
	'Serialisation function of the funnel aggregates (parallel workers)';

CREATE FUNCTION leadmgmt.window_funnel_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_deserialize';
COMMENT ON FUNCTION leadmgmt.window_funnel_deserialize(bytea, internal) IS
	'Deserialisation function of the funnel aggregates; rejects malformed states';

CREATE FUNCTION leadmgmt.window_funnel_final(internal)
RETURNS integer
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_final';
COMMENT ON FUNCTION leadmgmt.window_funnel_final(internal) IS
	'Final function of window_funnel: the highest step reached (0 when none)';

CREATE FUNCTION leadmgmt.funnel_step_times_final(internal)
RETURNS timestamptz[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_funnel_step_times_final';
COMMENT ON FUNCTION leadmgmt.funnel_step_times_final(internal) IS
	'Final function of funnel_step_times: the step times of the chain that reached the highest step first';

CREATE AGGREGATE leadmgmt.window_funnel(window_size interval, ts timestamptz, VARIADIC steps boolean[]) (
	SFUNC = leadmgmt.window_funnel_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.window_funnel_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.window_funnel_combine,
	SERIALFUNC = leadmgmt.window_funnel_serialize,
	DESERIALFUNC = leadmgmt.window_funnel_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, timestamptz, VARIADIC boolean[]) IS
	'Highest step (0..number of steps) of a chain step 1, step 2, ... in time order with every step within window_size of step 1 (ClickHouse windowFunnel)';

CREATE AGGREGATE leadmgmt.window_funnel(window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]) (
	SFUNC = leadmgmt.window_funnel_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.window_funnel_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.window_funnel_combine,
	SERIALFUNC = leadmgmt.window_funnel_serialize,
	DESERIALFUNC = leadmgmt.window_funnel_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, text, timestamptz, VARIADIC boolean[]) IS
	'window_funnel with a mode: comma-separated strict_deduplication, strict_order, strict_increase, strict_once, allow_reentry ('''' = default)';

CREATE AGGREGATE leadmgmt.funnel_step_times(window_size interval, ts timestamptz, VARIADIC steps boolean[]) (
	SFUNC = leadmgmt.window_funnel_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.funnel_step_times_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.window_funnel_combine,
	SERIALFUNC = leadmgmt.window_funnel_serialize,
	DESERIALFUNC = leadmgmt.window_funnel_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, timestamptz, VARIADIC boolean[]) IS
	'Times of steps 1..window_funnel of the chain that reached the highest step first (its latest possible step 1); empty when no step was reached';

CREATE AGGREGATE leadmgmt.funnel_step_times(window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]) (
	SFUNC = leadmgmt.window_funnel_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.funnel_step_times_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.window_funnel_combine,
	SERIALFUNC = leadmgmt.window_funnel_serialize,
	DESERIALFUNC = leadmgmt.window_funnel_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, text, timestamptz, VARIADIC boolean[]) IS
	'funnel_step_times with a mode (see window_funnel)';

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
-- (src/conversion.c): one scan collects the entries, a radix sort by lead
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

-------------------------------------------------------------------------------
-- Attribution: multi-touch attribution of a lead's touches (doc/attribution.md)
-------------------------------------------------------------------------------
-- attribution(model, touch, ts [, milestone]) is a C aggregate returning
-- {touch: weight} per group.  The support functions are C and resolve no
-- names, so they need no pinned search_path.  Both forms share the combine,
-- serialise, deserialise and final functions; the final function sorts a
-- copy of the touches, so it is READ_ONLY.
CREATE FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz)
RETURNS internal
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_trans';
COMMENT ON FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz) IS
	'Transition function of attribution: checks the model and keeps (ts, touch) of rows with both non-NULL';

CREATE FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz, boolean)
RETURNS internal
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_trans_milestone';
COMMENT ON FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz, boolean) IS
	'Transition function of attribution with a milestone flag: keeps (ts, touch, milestone) of rows with touch and ts non-NULL';

CREATE FUNCTION leadmgmt.attribution_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_combine';
COMMENT ON FUNCTION leadmgmt.attribution_combine(internal, internal) IS
	'Combine function of attribution: concatenates the touches of two partial states of the same model';

CREATE FUNCTION leadmgmt.attribution_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_serialize';
COMMENT ON FUNCTION leadmgmt.attribution_serialize(internal) IS
	'Serialisation function of attribution (parallel workers)';

CREATE FUNCTION leadmgmt.attribution_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_deserialize';
COMMENT ON FUNCTION leadmgmt.attribution_deserialize(bytea, internal) IS
	'Deserialisation function of attribution: validates lengths, counts and the model before use';

CREATE FUNCTION leadmgmt.attribution_final(internal)
RETURNS jsonb
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_final';
COMMENT ON FUNCTION leadmgmt.attribution_final(internal) IS
	'Final function of attribution: sorts a copy of the touches and returns {touch: weight}, weights summing to exactly 1';

CREATE AGGREGATE leadmgmt.attribution(model text, touch text, ts timestamptz) (
	SFUNC = leadmgmt.attribution_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.attribution_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.attribution_combine,
	SERIALFUNC = leadmgmt.attribution_serialize,
	DESERIALFUNC = leadmgmt.attribution_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz) IS
	'Per group {touch: weight} under model first_touch, last_touch, linear, u_shaped or ''time_decay:<half-life>''; weights sum to exactly 1, repeated touches summed; NULL touch or ts rows skipped; NULL for no touches';

CREATE AGGREGATE leadmgmt.attribution(model text, touch text, ts timestamptz, milestone boolean) (
	SFUNC = leadmgmt.attribution_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.attribution_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.attribution_combine,
	SERIALFUNC = leadmgmt.attribution_serialize,
	DESERIALFUNC = leadmgmt.attribution_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz, boolean) IS
	'attribution with a milestone flag, needed by w_shaped (30 % first, 30 % first milestone, 30 % last, 10 % the others); other models ignore it';

-- campaign_attribution: won deals and open pipeline credited to campaigns
-- with the linear model over each deal's campaign touches (activity rows
-- with a campaign) strictly before the deal's stage change: the first entry
-- into 'won' for won deals, the entry that started the current stay in 'sql'
-- for open pipeline.  Merged leads are excluded.  A deal with no campaign
-- touch before that change credits no campaign.  Amounts are added as they
-- are, whatever their currency.
CREATE VIEW leadmgmt.campaign_attribution WITH (security_invoker = true) AS
	WITH deal AS (
		SELECT true AS won, l.id, l.amount, min(h.changed_at) AS at
		  FROM leadmgmt.lead l
		  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'won'
		 WHERE l.merged_into IS NULL
		 GROUP BY l.id, l.amount
		UNION ALL
		SELECT false AS won, l.id, l.amount, max(h.changed_at) AS at
		  FROM leadmgmt.lead l
		  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'sql'
		 WHERE l.merged_into IS NULL AND l.stage = 'sql'
		 GROUP BY l.id, l.amount
	), credit AS (
		SELECT d.won, d.amount,
		       leadmgmt.attribution('linear', a.campaign, a.occurred_at) AS weights
		  FROM deal d
		  JOIN leadmgmt.activity a
		    ON a.lead_id = d.id AND a.campaign IS NOT NULL AND a.occurred_at < d.at
		 GROUP BY d.won, d.id, d.amount
	)
	SELECT e.key AS campaign, 'linear'::text AS model,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE c.won), 0)::float8 AS won_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE c.won), 0)) AS won_amount,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE NOT c.won), 0)::float8 AS pipeline_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE NOT c.won), 0)) AS pipeline_amount
	  FROM credit c, jsonb_each(c.weights) e
	 GROUP BY e.key;
COMMENT ON VIEW leadmgmt.campaign_attribution IS
	'Won deals and open pipeline credited to campaigns (linear model) over each deal''s campaign touches before it entered won (first time) or its current stay in sql; merged leads excluded';
COMMENT ON COLUMN leadmgmt.campaign_attribution.campaign IS 'activity.campaign of the touches';
COMMENT ON COLUMN leadmgmt.campaign_attribution.model IS 'attribution model used: linear';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_deals IS 'fractional count of won deals credited to the campaign (sum of its weights)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_amount IS 'sum of lead.amount x weight over won deals (NULL amounts add nothing; currencies not converted)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_deals IS 'fractional count of leads now in stage sql credited to the campaign';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_amount IS 'sum of lead.amount x weight over leads now in stage sql';

-------------------------------------------------------------------------------
-- Learned scoring: logistic regression, AUC, models, rule suggestions
-- (doc/learned-scoring.md; C in src/learned.c and src/core/logreg.c)
-------------------------------------------------------------------------------
-- Aggregates are pure and parallel safe; their support functions are named
-- after the aggregate.  The in-memory logreg keeps every row (8 bytes per
-- feature); leadmgmt.logreg_train() runs one O(p^2)-state Newton-step
-- aggregate per iteration for data that does not fit.

CREATE TYPE leadmgmt.logreg_result AS (
	coef           float8[],
	std_err        float8[],
	z_stats        float8[],
	p_values       float8[],
	odds_ratios    float8[],
	log_likelihood float8,
	condition_no   float8,
	num_rows       bigint,
	num_positive   bigint,
	iterations     integer,
	l2             float8
);
COMMENT ON TYPE leadmgmt.logreg_result IS
	'A fitted logistic regression with Wald statistics (as MADlib''s logregr_train reports them); arrays are intercept first';
COMMENT ON COLUMN leadmgmt.logreg_result.coef IS 'coefficients, intercept first';
COMMENT ON COLUMN leadmgmt.logreg_result.std_err IS 'standard errors: square roots of the diagonal of the inverse Hessian of the (penalised) objective';
COMMENT ON COLUMN leadmgmt.logreg_result.z_stats IS 'Wald z statistics, coef / std_err';
COMMENT ON COLUMN leadmgmt.logreg_result.p_values IS 'two-sided p-values of the z statistics under the standard normal';
COMMENT ON COLUMN leadmgmt.logreg_result.odds_ratios IS 'exp(coef)';
COMMENT ON COLUMN leadmgmt.logreg_result.log_likelihood IS 'log-likelihood at the solution (without the penalty)';
COMMENT ON COLUMN leadmgmt.logreg_result.condition_no IS 'condition number estimate of the Hessian (squared ratio of the largest to the smallest Cholesky pivot)';
COMMENT ON COLUMN leadmgmt.logreg_result.num_rows IS 'rows used (rows with a NULL label or features are skipped)';
COMMENT ON COLUMN leadmgmt.logreg_result.num_positive IS 'rows with label true';
COMMENT ON COLUMN leadmgmt.logreg_result.iterations IS 'Newton steps (passes over the data for logreg_train)';
COMMENT ON COLUMN leadmgmt.logreg_result.l2 IS 'ridge penalty used';

-- logreg and logreg_summary: in-memory state (every row kept)
CREATE FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[])
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_trans';
COMMENT ON FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[]) IS
	'Transition function of leadmgmt.logreg(label, features): stores the row';

CREATE FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[], float8)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_trans_l2';
COMMENT ON FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[], float8) IS
	'Transition function of leadmgmt.logreg(label, features, l2): stores the row, l2 fixed by the first row';

CREATE FUNCTION leadmgmt.logreg_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_combine';
COMMENT ON FUNCTION leadmgmt.logreg_combine(internal, internal) IS
	'Combine function of leadmgmt.logreg: concatenates two partial states';

CREATE FUNCTION leadmgmt.logreg_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_serialize';
COMMENT ON FUNCTION leadmgmt.logreg_serialize(internal) IS
	'Serialise function of leadmgmt.logreg (partial states up to 1 GB)';

CREATE FUNCTION leadmgmt.logreg_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_deserialize';
COMMENT ON FUNCTION leadmgmt.logreg_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.logreg; validates its input';

CREATE FUNCTION leadmgmt.logreg_final(internal)
RETURNS float8[]
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_final';
COMMENT ON FUNCTION leadmgmt.logreg_final(internal) IS
	'Final function of leadmgmt.logreg: Newton fit, coefficients intercept first';

CREATE FUNCTION leadmgmt.logreg_summary_final(internal)
RETURNS leadmgmt.logreg_result
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_summary_final';
COMMENT ON FUNCTION leadmgmt.logreg_summary_final(internal) IS
	'Final function of leadmgmt.logreg_summary: Newton fit plus standard errors, z and p-values';

CREATE AGGREGATE leadmgmt.logreg(label boolean, features float8[]) (
	SFUNC = leadmgmt.logreg_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.logreg_final,
	COMBINEFUNC = leadmgmt.logreg_combine,
	SERIALFUNC = leadmgmt.logreg_serialize,
	DESERIALFUNC = leadmgmt.logreg_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[]) IS
	'Logistic regression by maximum likelihood (Newton/IRLS): coefficients, intercept first; rows with a NULL label or features are skipped';

CREATE AGGREGATE leadmgmt.logreg(label boolean, features float8[], l2 float8) (
	SFUNC = leadmgmt.logreg_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.logreg_final,
	COMBINEFUNC = leadmgmt.logreg_combine,
	SERIALFUNC = leadmgmt.logreg_serialize,
	DESERIALFUNC = leadmgmt.logreg_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[], float8) IS
	'L2-regularised logistic regression: minimises -loglik + (l2/2)*||beta_1..p||^2 (intercept not penalised; scikit-learn C = 1/l2); coefficients, intercept first';

CREATE AGGREGATE leadmgmt.logreg_summary(label boolean, features float8[]) (
	SFUNC = leadmgmt.logreg_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.logreg_summary_final,
	COMBINEFUNC = leadmgmt.logreg_combine,
	SERIALFUNC = leadmgmt.logreg_serialize,
	DESERIALFUNC = leadmgmt.logreg_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg_summary(boolean, float8[]) IS
	'Logistic regression with standard errors, z statistics, p-values and odds ratios (leadmgmt.logreg_result)';

CREATE AGGREGATE leadmgmt.logreg_summary(label boolean, features float8[], l2 float8) (
	SFUNC = leadmgmt.logreg_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.logreg_summary_final,
	COMBINEFUNC = leadmgmt.logreg_combine,
	SERIALFUNC = leadmgmt.logreg_serialize,
	DESERIALFUNC = leadmgmt.logreg_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg_summary(boolean, float8[], float8) IS
	'L2-regularised logistic regression with standard errors from the penalised Hessian, z statistics, p-values and odds ratios';

CREATE FUNCTION leadmgmt.logreg_predict(coef float8[], features float8[])
RETURNS float8
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_predict';
COMMENT ON FUNCTION leadmgmt.logreg_predict(float8[], float8[]) IS
	'Probability 1 / (1 + exp(-(coef[1] + coef[2:] . features))) for coefficients from leadmgmt.logreg()';

-- logreg_step: one Newton step over data of any size (O(p^2) state)
CREATE FUNCTION leadmgmt.logreg_step_trans(internal, boolean, float8[], float8[])
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_trans';
COMMENT ON FUNCTION leadmgmt.logreg_step_trans(internal, boolean, float8[], float8[]) IS
	'Transition function of leadmgmt.logreg_step: adds the row''s gradient and Hessian at coef';

CREATE FUNCTION leadmgmt.logreg_step_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_combine';
COMMENT ON FUNCTION leadmgmt.logreg_step_combine(internal, internal) IS
	'Combine function of leadmgmt.logreg_step: adds two partial sums';

CREATE FUNCTION leadmgmt.logreg_step_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_serialize';
COMMENT ON FUNCTION leadmgmt.logreg_step_serialize(internal) IS
	'Serialise function of leadmgmt.logreg_step';

CREATE FUNCTION leadmgmt.logreg_step_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_deserialize';
COMMENT ON FUNCTION leadmgmt.logreg_step_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.logreg_step; validates its input';

CREATE FUNCTION leadmgmt.logreg_step_final(internal)
RETURNS float8[]
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_final';
COMMENT ON FUNCTION leadmgmt.logreg_step_final(internal) IS
	'Final function of leadmgmt.logreg_step: the accumulated sums as an array';

CREATE AGGREGATE leadmgmt.logreg_step(label boolean, features float8[], coef float8[]) (
	SFUNC = leadmgmt.logreg_step_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.logreg_step_final,
	COMBINEFUNC = leadmgmt.logreg_step_combine,
	SERIALFUNC = leadmgmt.logreg_step_serialize,
	DESERIALFUNC = leadmgmt.logreg_step_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg_step(boolean, float8[], float8[]) IS
	'Sums for one Newton step at coef: {rows, positives, -loglik, misclassified rows, gradient (p+1), X''WX (p+1)^2 upper triangle}; feed to logreg_step_solve()';

CREATE FUNCTION leadmgmt.logreg_step_solve(coef float8[], step float8[], l2 float8,
	OUT new_coef float8[], OUT max_step float8, OUT objective float8)
RETURNS record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_solve';
COMMENT ON FUNCTION leadmgmt.logreg_step_solve(float8[], float8[], float8) IS
	'Newton update from logreg_step sums: next coefficients, largest relative step, penalised objective at coef';

CREATE FUNCTION leadmgmt.logreg_step_result(coef float8[], step float8[], l2 float8, iterations integer)
RETURNS leadmgmt.logreg_result
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_result';
COMMENT ON FUNCTION leadmgmt.logreg_step_result(float8[], float8[], float8, integer) IS
	'A leadmgmt.logreg_result (standard errors, z, p) from coefficients and the logreg_step sums at them';

CREATE FUNCTION leadmgmt.logreg_train(source regclass, label text, features text,
                                      l2 float8 DEFAULT 0, max_iterations integer DEFAULT 100)
RETURNS leadmgmt.logreg_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	step_query text;
	p integer;
	coef float8[];
	prev float8[];
	prev_objective float8 := 'Infinity';
	sums float8[];
	s record;
	iteration integer := 0;
	halvings integer := 0;
BEGIN
	IF source IS NULL OR label IS NULL OR features IS NULL THEN
		RAISE EXCEPTION 'source, label and features must not be null' USING ERRCODE = '22004';
	END IF;
	IF l2 IS NULL OR l2 < 0 OR l2 IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', l2
			USING ERRCODE = '22023',
			      HINT = 'l2 is the ridge penalty (scikit-learn''s 1/C); 0 means plain maximum likelihood.';
	END IF;
	IF max_iterations IS NULL OR max_iterations < 1 THEN
		RAISE EXCEPTION 'max_iterations must be at least 1, got %', max_iterations USING ERRCODE = '22023';
	END IF;

	EXECUTE format('SELECT pg_catalog.cardinality((%s)::float8[]) FROM %s WHERE (%s) IS NOT NULL AND (%s) IS NOT NULL LIMIT 1',
	               features, source, label, features)
	   INTO p;
	IF p IS NULL THEN
		RETURN NULL;		-- no rows: like the aggregates
	END IF;
	step_query := format('SELECT leadmgmt.logreg_step((%s)::boolean, (%s)::float8[], $1) FROM %s',
	                     label, features, source);
	coef := array_fill(0::float8, ARRAY[p + 1]);
	LOOP
		iteration := iteration + 1;
		EXECUTE step_query INTO sums USING coef;
		s := leadmgmt.logreg_step_solve(coef, sums, l2);
		IF s.objective > prev_objective + 1e-12 * (1 + abs(prev_objective)) AND halvings < 30 THEN
			-- the full step overshot: go back halfway towards the previous point
			coef := ARRAY(SELECT (a + b) / 2 FROM unnest(prev, coef) AS u(a, b));
			halvings := halvings + 1;
		ELSIF s.max_step <= 1e-10 THEN
			RETURN leadmgmt.logreg_step_result(s.new_coef, sums, l2, iteration);
		ELSE
			prev := coef;
			prev_objective := s.objective;
			coef := s.new_coef;
			halvings := 0;
		END IF;
		IF iteration >= max_iterations THEN
			RAISE EXCEPTION 'logistic regression did not converge in % passes', iteration
				USING ERRCODE = 'LM021',
				      DETAIL = format('Last relative step %s, objective %s.', s.max_step, s.objective),
				      HINT = 'The classes may be quasi-separated: pass l2 > 0, rescale the features, or raise max_iterations.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION leadmgmt.logreg_train(regclass, text, text, float8, integer) IS
	'Logistic regression over a table or view of any size: one leadmgmt.logreg_step pass per Newton iteration (O(p^2) memory); label and features are SQL expressions over source, evaluated with search_path = pg_catalog';

-- auc
CREATE FUNCTION leadmgmt.auc_trans(internal, float8, boolean)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_trans';
COMMENT ON FUNCTION leadmgmt.auc_trans(internal, float8, boolean) IS
	'Transition function of leadmgmt.auc: stores the score by class';

CREATE FUNCTION leadmgmt.auc_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_combine';
COMMENT ON FUNCTION leadmgmt.auc_combine(internal, internal) IS
	'Combine function of leadmgmt.auc: concatenates two partial states';

CREATE FUNCTION leadmgmt.auc_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_serialize';
COMMENT ON FUNCTION leadmgmt.auc_serialize(internal) IS
	'Serialise function of leadmgmt.auc';

CREATE FUNCTION leadmgmt.auc_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_deserialize';
COMMENT ON FUNCTION leadmgmt.auc_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.auc; validates its input';

CREATE FUNCTION leadmgmt.auc_final(internal)
RETURNS float8
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_final';
COMMENT ON FUNCTION leadmgmt.auc_final(internal) IS
	'Final function of leadmgmt.auc: sorts the scores in place and counts pairs';

CREATE AGGREGATE leadmgmt.auc(score float8, label boolean) (
	SFUNC = leadmgmt.auc_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.auc_final,
	FINALFUNC_MODIFY = READ_WRITE,
	COMBINEFUNC = leadmgmt.auc_combine,
	SERIALFUNC = leadmgmt.auc_serialize,
	DESERIALFUNC = leadmgmt.auc_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.auc(float8, boolean) IS
	'Exact ROC AUC: share of (positive, negative) pairs ranked correctly, ties one half; NULL without both classes; rows with a NULL score or label are skipped';

-------------------------------------------------------------------------------
-- Managed models: features from the activity log, train, store, apply
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.model (
	name           text PRIMARY KEY,
	target_stage   text NOT NULL REFERENCES leadmgmt.stage (name),
	horizon        interval NOT NULL,
	observe        interval NOT NULL,
	l2             float8 NOT NULL,
	features       text[] NOT NULL,
	spec           jsonb NOT NULL,
	coef           float8[] NOT NULL,
	holdout        float8 NOT NULL,
	seed           integer NOT NULL,
	as_of          timestamptz NOT NULL,
	train_rows     bigint NOT NULL,
	train_positive bigint NOT NULL,
	test_rows      bigint NOT NULL,
	test_positive  bigint NOT NULL,
	auc_train      float8,
	auc_test       float8,
	trained_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	trained_by     text NOT NULL DEFAULT SESSION_USER,
	CONSTRAINT model_coef_matches_features
		CHECK (pg_catalog.cardinality(coef) = pg_catalog.cardinality(features) + 1)
);
COMMENT ON TABLE leadmgmt.model IS
	'Learned scoring models trained by leadmgmt.train_model() and applied by leadmgmt.predicted_score()';
COMMENT ON COLUMN leadmgmt.model.name IS 'model name; training again under the same name replaces the model';
COMMENT ON COLUMN leadmgmt.model.target_stage IS 'the label: the lead reached this stage within horizon after the snapshot';
COMMENT ON COLUMN leadmgmt.model.horizon IS 'how long after the snapshot the target stage counts';
COMMENT ON COLUMN leadmgmt.model.observe IS 'behaviour window: activity in the observe period before the snapshot makes the counts; training snapshots are at created_at + observe';
COMMENT ON COLUMN leadmgmt.model.l2 IS 'ridge penalty of the fit';
COMMENT ON COLUMN leadmgmt.model.features IS 'feature names in coefficient order (after the intercept)';
COMMENT ON COLUMN leadmgmt.model.spec IS 'how leadmgmt.lead_features() computes the features (activity kinds, attribute levels, windows)';
COMMENT ON COLUMN leadmgmt.model.coef IS 'coefficients, intercept first, for leadmgmt.logreg_predict()';
COMMENT ON COLUMN leadmgmt.model.holdout IS 'share of leads held out for testing, chosen by a seeded hash of the lead id';
COMMENT ON COLUMN leadmgmt.model.seed IS 'seed of the hold-out hash';
COMMENT ON COLUMN leadmgmt.model.as_of IS 'training time point: only leads whose snapshot + horizon lies before it were used';
COMMENT ON COLUMN leadmgmt.model.train_rows IS 'leads in the training split';
COMMENT ON COLUMN leadmgmt.model.train_positive IS 'training leads that reached the target stage';
COMMENT ON COLUMN leadmgmt.model.test_rows IS 'leads in the held-out split';
COMMENT ON COLUMN leadmgmt.model.test_positive IS 'held-out leads that reached the target stage';
COMMENT ON COLUMN leadmgmt.model.auc_train IS 'ROC AUC on the training split';
COMMENT ON COLUMN leadmgmt.model.auc_test IS 'ROC AUC on the held-out split (NULL when it lacks a class)';
COMMENT ON COLUMN leadmgmt.model.trained_at IS 'when the model was trained';
COMMENT ON COLUMN leadmgmt.model.trained_by IS 'session user who trained it';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.model', '');

CREATE FUNCTION leadmgmt.lead_features(spec jsonb, lead bigint, at timestamptz)
RETURNS float8[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH act AS (
		SELECT a.kind, a.occurred_at, a.detail, a.campaign, a.duration_s
		  FROM leadmgmt.activity a
		 WHERE a.lead_id = lead_features.lead AND a.occurred_at <= lead_features.at
	), f(ord, v) AS (
		-- ln(1 + count) of each activity kind within the observe window
		SELECT k.ord, ln(1 + (SELECT count(*) FROM act
		                       WHERE act.kind = k.kind
		                         AND act.occurred_at > lead_features.at - (spec ->> 'observe')::interval))::float8
		  FROM jsonb_array_elements_text(spec -> 'kinds') WITH ORDINALITY AS k(kind, ord)
		UNION ALL
		-- ln(1 + count) of the activities matching each scoring rule of the spec
		SELECT 500000 + r.ord, ln(1 + (SELECT count(*) FROM act
		                       WHERE act.occurred_at > lead_features.at - (spec ->> 'observe')::interval
		                         AND act.kind = r.rule ->> 'kind'
		                         AND (r.rule ->> 'detail_pattern' IS NULL OR act.detail LIKE r.rule ->> 'detail_pattern')
		                         AND (r.rule ->> 'campaign' IS NULL OR act.campaign = r.rule ->> 'campaign')
		                         AND (r.rule ->> 'min_duration_s' IS NULL
		                              OR act.duration_s >= (r.rule ->> 'min_duration_s')::integer)))::float8
		  FROM jsonb_array_elements(COALESCE(spec -> 'rules', '[]')) WITH ORDINALITY AS r(rule, ord)
		UNION ALL
		-- recency: 2^-(time since the last activity / half-life), 0 without activity
		SELECT 1000000, COALESCE(power(2::float8,
		           -(extract(epoch FROM lead_features.at - max(act.occurred_at))
		             / extract(epoch FROM (spec ->> 'recency_half_life')::interval))::float8), 0)
		  FROM act
		UNION ALL
		-- one-hot firmographic attribute levels
		SELECT 2000000 + x.ord, (COALESCE(l.attributes ->> (x.level ->> 'key') = x.level ->> 'value', false))::integer::float8
		  FROM jsonb_array_elements(spec -> 'attributes') WITH ORDINALITY AS x(level, ord)
		  LEFT JOIN leadmgmt.lead l ON l.id = lead_features.lead
	)
	SELECT array_agg(f.v ORDER BY f.ord) FROM f;
END;
COMMENT ON FUNCTION leadmgmt.lead_features(jsonb, bigint, timestamptz) IS
	'Feature vector of a lead at a time point as described by a model spec (leadmgmt.model.spec): per-kind and per-rule ln(1 + count) in the observe window, recency, one-hot attributes';

CREATE FUNCTION leadmgmt.train_model(name text, target_stage text DEFAULT 'won',
                                     horizon interval DEFAULT '180 days',
                                     observe interval DEFAULT '90 days',
                                     l2 float8 DEFAULT 1,
                                     attributes text[] DEFAULT '{}',
                                     holdout float8 DEFAULT 0.3,
                                     seed integer DEFAULT 0,
                                     as_of timestamptz DEFAULT pg_catalog.now(),
                                     min_level_leads integer DEFAULT 5)
RETURNS leadmgmt.model
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	spec jsonb;
	names text[];
	fit float8[];
	m leadmgmt.model;
	kinds text[];
	rules jsonb;
	levels jsonb;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'model name must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (EXISTS (SELECT 1 FROM leadmgmt.stage s WHERE s.name = target_stage)) THEN
		RAISE EXCEPTION 'unknown stage "%"', target_stage
			USING ERRCODE = 'LM002',
			      HINT = 'Stages: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.rank DESC, s.name) FROM leadmgmt.stage s) || '.';
	END IF;
	IF horizon IS NULL OR horizon <= interval '0' OR observe IS NULL OR observe <= interval '0' THEN
		RAISE EXCEPTION 'horizon and observe must be positive intervals' USING ERRCODE = '22023';
	END IF;
	IF holdout IS NULL OR NOT (holdout >= 0 AND holdout < 1) THEN
		RAISE EXCEPTION 'holdout must be in [0, 1), got %', holdout USING ERRCODE = '22023';
	END IF;
	IF l2 IS NULL OR l2 < 0 OR l2 IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', l2 USING ERRCODE = '22023';
	END IF;
	IF seed IS NULL OR as_of IS NULL OR attributes IS NULL OR min_level_leads IS NULL THEN
		RAISE EXCEPTION 'seed, as_of, attributes and min_level_leads must not be null' USING ERRCODE = '22004';
	END IF;

	-- one training example per lead: snapshot at created_at + observe, the
	-- label decided within horizon after it, leads already at the target
	-- stage by the snapshot left out
	CREATE TEMPORARY TABLE pg_temp.lm_train_leads ON COMMIT DROP AS
	SELECT l.id, l.created_at + observe AS snapshot,
	       EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                  AND h.changed_at > l.created_at + observe
	                  AND h.changed_at <= l.created_at + observe + horizon) AS label,
	       (abs(hashint8extended(l.id, seed) % 1000) < holdout * 1000) AS is_test
	  FROM leadmgmt.lead l
	 WHERE l.merged_into IS NULL
	   AND l.created_at + observe + horizon <= as_of
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                    WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                      AND h.changed_at <= l.created_at + observe);

	SELECT COALESCE(array_agg(DISTINCT a.kind ORDER BY a.kind), '{}') INTO kinds
	  FROM pg_temp.lm_train_leads t
	  JOIN leadmgmt.activity a ON a.lead_id = t.id
	 WHERE NOT t.is_test AND a.occurred_at <= t.snapshot AND a.occurred_at > t.snapshot - observe;

	-- active scoring rules narrower than their kind (a pattern, campaign or
	-- minimum duration) that match some training activity; their
	-- definitions are copied into the spec, so editing a rule later does not
	-- change what the model computes
	SELECT COALESCE(jsonb_agg(jsonb_build_object('name', r.name, 'kind', r.kind,
	                                             'detail_pattern', r.detail_pattern,
	                                             'campaign', r.campaign,
	                                             'min_duration_s', r.min_duration_s) ORDER BY r.name), '[]')
	  INTO rules
	  FROM leadmgmt.scoring_rule r
	 WHERE r.active
	   AND (r.detail_pattern IS NOT NULL OR r.campaign IS NOT NULL OR r.min_duration_s IS NOT NULL)
	   AND EXISTS (SELECT 1 FROM pg_temp.lm_train_leads t
	                 JOIN leadmgmt.activity a ON a.lead_id = t.id
	                WHERE NOT t.is_test AND a.occurred_at <= t.snapshot AND a.occurred_at > t.snapshot - observe
	                  AND a.kind = r.kind
	                  AND (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
	                  AND (r.campaign IS NULL OR a.campaign = r.campaign)
	                  AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s));

	-- attribute levels seen on at least min_level_leads training leads; the
	-- most frequent level of each key is the reference (no column)
	SELECT COALESCE(jsonb_agg(jsonb_build_object('key', c.key, 'value', c.value) ORDER BY c.key_ord, c.value), '[]')
	  INTO levels
	  FROM (SELECT k.key, k.ord AS key_ord, l.attributes ->> k.key AS value, count(*) AS n,
	               rank() OVER (PARTITION BY k.key ORDER BY count(*) DESC, l.attributes ->> k.key) AS r
	          FROM unnest(attributes) WITH ORDINALITY AS k(key, ord)
	          CROSS JOIN pg_temp.lm_train_leads t
	          JOIN leadmgmt.lead l ON l.id = t.id
	         WHERE NOT t.is_test AND l.attributes ->> k.key IS NOT NULL
	         GROUP BY k.key, k.ord, l.attributes ->> k.key) c
	 WHERE c.n >= min_level_leads AND c.r > 1;

	spec := jsonb_build_object('version', 1, 'observe', observe::text,
	                           'recency_half_life', '30 days',
	                           'kinds', to_jsonb(kinds), 'rules', rules, 'attributes', levels);
	names := ARRAY(SELECT 'count:' || k FROM unnest(kinds) AS k)
	      || ARRAY(SELECT 'rule:' || (r ->> 'name') FROM jsonb_array_elements(rules) AS r)
	      || ARRAY['recency']
	      || ARRAY(SELECT 'attr:' || (x ->> 'key') || '=' || (x ->> 'value') FROM jsonb_array_elements(levels) AS x);

	CREATE TEMPORARY TABLE pg_temp.lm_train_rows ON COMMIT DROP AS
	SELECT t.id, t.label, t.is_test, leadmgmt.lead_features(spec, t.id, t.snapshot) AS x
	  FROM pg_temp.lm_train_leads t;

	IF NOT (EXISTS (SELECT 1 FROM pg_temp.lm_train_rows r WHERE NOT r.is_test AND r.label))
	   AND EXISTS (SELECT 1 FROM pg_temp.lm_train_rows r WHERE NOT r.is_test) THEN
		RAISE EXCEPTION 'no training lead reached stage "%" within % after its snapshot', target_stage, horizon
			USING ERRCODE = 'LM020',
			      DETAIL = format('%s training leads, all negative.', (SELECT count(*) FROM pg_temp.lm_train_rows r WHERE NOT r.is_test)),
			      HINT = 'Pick an earlier stage such as sql, a longer horizon, or wait for more history.';
	END IF;
	SELECT leadmgmt.logreg(r.label, r.x, train_model.l2 ORDER BY r.id) INTO fit
	  FROM pg_temp.lm_train_rows r WHERE NOT r.is_test;
	IF fit IS NULL THEN
		RAISE EXCEPTION 'no lead is old enough to train model "%"', name
			USING ERRCODE = '22023',
			      DETAIL = format('Training needs leads created before %s (as_of - horizon - observe) outside the hold-out split.',
			                      as_of - horizon - observe),
			      HINT = 'Shorten observe or horizon, or wait for more history.';
	END IF;

	INSERT INTO leadmgmt.model AS mm (name, target_stage, horizon, observe, l2, features, spec, coef,
	                                  holdout, seed, as_of, train_rows, train_positive, test_rows,
	                                  test_positive, auc_train, auc_test)
	SELECT train_model.name, train_model.target_stage, train_model.horizon, train_model.observe,
	       train_model.l2, names, spec, fit, train_model.holdout, train_model.seed, train_model.as_of,
	       count(*) FILTER (WHERE NOT r.is_test), count(*) FILTER (WHERE NOT r.is_test AND r.label),
	       count(*) FILTER (WHERE r.is_test), count(*) FILTER (WHERE r.is_test AND r.label),
	       leadmgmt.auc(leadmgmt.logreg_predict(fit, r.x), r.label) FILTER (WHERE NOT r.is_test),
	       leadmgmt.auc(leadmgmt.logreg_predict(fit, r.x), r.label) FILTER (WHERE r.is_test)
	  FROM pg_temp.lm_train_rows r
	ON CONFLICT ON CONSTRAINT model_pkey DO UPDATE
	   SET target_stage = EXCLUDED.target_stage, horizon = EXCLUDED.horizon, observe = EXCLUDED.observe,
	       l2 = EXCLUDED.l2, features = EXCLUDED.features, spec = EXCLUDED.spec, coef = EXCLUDED.coef,
	       holdout = EXCLUDED.holdout, seed = EXCLUDED.seed, as_of = EXCLUDED.as_of,
	       train_rows = EXCLUDED.train_rows, train_positive = EXCLUDED.train_positive,
	       test_rows = EXCLUDED.test_rows, test_positive = EXCLUDED.test_positive,
	       auc_train = EXCLUDED.auc_train, auc_test = EXCLUDED.auc_test,
	       trained_at = EXCLUDED.trained_at, trained_by = EXCLUDED.trained_by
	RETURNING mm.* INTO m;

	DROP TABLE pg_temp.lm_train_rows;
	DROP TABLE pg_temp.lm_train_leads;
	RETURN m;
END
$$;
COMMENT ON FUNCTION leadmgmt.train_model(text, text, interval, interval, float8, text[], float8, integer, timestamptz, integer) IS
	'Train (or retrain) a learned scoring model: per-lead activity and scoring-rule features at created_at + observe, label "reached target_stage within horizon", L2 logistic regression, AUC on a seeded hold-out split; stored in leadmgmt.model';

CREATE FUNCTION leadmgmt.predicted_score(lead bigint, model text DEFAULT NULL,
                                         at timestamptz DEFAULT pg_catalog.now())
RETURNS float8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m leadmgmt.model;
	target bigint;
BEGIN
	IF lead IS NULL OR at IS NULL THEN
		RETURN NULL;
	END IF;
	IF model IS NULL THEN
		SELECT * INTO m FROM leadmgmt.model mm ORDER BY mm.trained_at DESC, mm.name LIMIT 1;
	ELSE
		SELECT * INTO m FROM leadmgmt.model mm WHERE mm.name = predicted_score.model;
	END IF;
	IF m.name IS NULL THEN
		RAISE EXCEPTION '%', CASE WHEN model IS NULL THEN 'no model has been trained'
		                          ELSE format('model "%s" does not exist', model) END
			USING ERRCODE = '42704',
			      HINT = 'Train one with leadmgmt.train_model(); leadmgmt.model lists the models.';
	END IF;
	target := leadmgmt.lead_resolve(lead);
	RETURN leadmgmt.logreg_predict(m.coef, leadmgmt.lead_features(m.spec, target, at));
END
$$;
COMMENT ON FUNCTION leadmgmt.predicted_score(bigint, text, timestamptz) IS
	'Probability that the lead reaches the model''s target stage within its horizon, from its activity up to "at" (NULL model: the most recently trained one)';

-------------------------------------------------------------------------------
-- Rule suggestions: lift of each behaviour among converted leads
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.suggest_rules_leads(target_stage text, since timestamptz)
RETURNS TABLE (id bigint, converted_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT l.id,
	       (SELECT min(h.changed_at) FROM leadmgmt.stage_history h
	         WHERE h.lead_id = l.id AND h.to_stage = suggest_rules_leads.target_stage)
	  FROM leadmgmt.lead l
	 WHERE l.merged_into IS NULL
	   AND (suggest_rules_leads.since IS NULL OR l.created_at >= suggest_rules_leads.since);
END;
COMMENT ON FUNCTION leadmgmt.suggest_rules_leads(text, timestamptz) IS
	'Leads analysed by leadmgmt.suggest_rules(): not merged, created since "since", with the first time they reached target_stage (NULL: never)';

CREATE FUNCTION leadmgmt.suggest_rules(target_stage text DEFAULT 'won',
                                       since timestamptz DEFAULT NULL,
                                       min_leads integer DEFAULT 5,
                                       lift_at_threshold float8 DEFAULT 16,
                                       prior_leads float8 DEFAULT 10)
RETURNS TABLE (name text, kind text, detail_pattern text, campaign text, points float8,
               max_times integer, leads_with bigint, converted_with bigint,
               converted_share float8, overall_share float8, conversion_rate float8, lift float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	threshold float8 := leadmgmt.get_setting('mql_threshold')::float8;
	total bigint;
	converted bigint;
BEGIN
	IF NOT (EXISTS (SELECT 1 FROM leadmgmt.stage s WHERE s.name = target_stage)) THEN
		RAISE EXCEPTION 'unknown stage "%"', target_stage
			USING ERRCODE = 'LM002',
			      HINT = 'Stages: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.rank DESC, s.name) FROM leadmgmt.stage s) || '.';
	END IF;
	IF min_leads IS NULL OR min_leads < 1 THEN
		RAISE EXCEPTION 'min_leads must be at least 1, got %', min_leads USING ERRCODE = '22023';
	END IF;
	IF lift_at_threshold IS NULL OR NOT (lift_at_threshold > 1) OR lift_at_threshold = 'Infinity' THEN
		RAISE EXCEPTION 'lift_at_threshold must be a finite number > 1, got %', lift_at_threshold
			USING ERRCODE = '22023',
			      HINT = 'It is the conversion lift a lead needs to reach mql_threshold points: 16 means each doubling of the conversion rate is worth a quarter of the threshold.';
	END IF;
	IF prior_leads IS NULL OR NOT (prior_leads >= 0) OR prior_leads = 'Infinity' THEN
		RAISE EXCEPTION 'prior_leads must be a finite number >= 0, got %', prior_leads USING ERRCODE = '22023';
	END IF;

	SELECT count(*), count(t.converted_at) INTO total, converted
	  FROM leadmgmt.suggest_rules_leads(target_stage, since) t;
	IF converted = 0 THEN
		RAISE EXCEPTION 'no lead reached stage "%"%', target_stage,
			CASE WHEN since IS NULL THEN '' ELSE format(' among the leads created since %s', since) END
			USING ERRCODE = 'LM020',
			      DETAIL = format('%s leads analysed.', total),
			      HINT = 'Lift needs converted leads: pick an earlier stage such as sql, or a longer period.';
	END IF;

	RETURN QUERY
	WITH touched AS (
		-- what each lead did before it converted (everything for the others)
		SELECT DISTINCT a.lead_id, a.kind, a.detail, a.campaign, t.converted_at IS NOT NULL AS conv
		  FROM leadmgmt.suggest_rules_leads(suggest_rules.target_stage, suggest_rules.since) t
		  JOIN leadmgmt.activity a ON a.lead_id = t.id
		 WHERE t.converted_at IS NULL OR a.occurred_at < t.converted_at
	), grouped AS (
		SELECT g.kind, g.detail, g.campaign, GROUPING(g.detail, g.campaign) AS level,
		       count(DISTINCT g.lead_id) AS leads_with,
		       count(DISTINCT g.lead_id) FILTER (WHERE g.conv) AS converted_with
		  FROM touched g
		 GROUP BY GROUPING SETS ((g.kind), (g.kind, g.detail), (g.kind, g.campaign))
	), rated AS (
		SELECT gr.*,
		       ((gr.converted_with + prior_leads * converted::float8 / total)
		        / (gr.leads_with + prior_leads)) / (converted::float8 / total) AS smoothed_lift
		  FROM grouped gr
		 -- a detail (campaign) row needs the detail (campaign) to be set
		 WHERE (gr.level = 3)
		    OR (gr.level = 1 AND gr.detail IS NOT NULL)
		    OR (gr.level = 2 AND gr.campaign IS NOT NULL)
	)
	SELECT 'suggested ' || r.kind || CASE r.level WHEN 1 THEN ': ' || r.detail WHEN 2 THEN ' @ ' || r.campaign ELSE '' END,
	       r.kind,
	       CASE WHEN r.level = 1
	            THEN replace(replace(replace(r.detail, '\', '\\'), '%', '\%'), '_', '\_') END,
	       CASE WHEN r.level = 2 THEN r.campaign END,
	       round(threshold * ln(r.smoothed_lift) / ln(lift_at_threshold))::float8 + 0,  -- no -0
	       1,
	       r.leads_with,
	       r.converted_with,
	       r.converted_with::float8 / converted,
	       r.leads_with::float8 / total,
	       r.converted_with::float8 / r.leads_with,
	       (r.converted_with::float8 / r.leads_with) / (converted::float8 / total)
	  FROM rated r
	 WHERE r.leads_with >= min_leads
	 ORDER BY 5 DESC, 1;
END
$$;
COMMENT ON FUNCTION leadmgmt.suggest_rules(text, timestamptz, integer, float8, float8) IS
	'Lift analysis of converted leads per activity kind, kind + detail and kind + campaign, with suggested rule points on the mql_threshold scale (rows shaped for leadmgmt.scoring_rule)';

-------------------------------------------------------------------------------
-- Identity resolution: match keys, upsert, external ids, merge, bulk import,
-- duplicate candidates (doc/identity.md)
-------------------------------------------------------------------------------
-- Keys: ICU NFKC + case folding (stable for assigned code points by the
-- Unicode stability policies), then project-owned tables in src/core.  The
-- functions are IMMUTABLE on that ground; key_version() names the rule set,
-- every lead row stores the version its keys were built with, and
-- rebuild_keys() rebuilds them after an upgrade (of leadmgmt or of ICU).

CREATE FUNCTION leadmgmt.normalize_company(company text)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_normalize_company';
COMMENT ON FUNCTION leadmgmt.normalize_company(text) IS
	'Match key of a company name: NFKC, case folding, width and kana folding, legal forms (株式会社, (株), Inc., Co., Ltd., GmbH, ...) removed at the start or end, separators removed; NULL when nothing usable is left';

CREATE FUNCTION leadmgmt.normalize_email(email text)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_normalize_email';
COMMENT ON FUNCTION leadmgmt.normalize_email(text) IS
	'Match key of an e-mail address: NFKC, trimmed, case-folded; dots and +tags are kept; NULL when it is not an address';

CREATE FUNCTION leadmgmt.normalize_name(name text)
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_normalize_name';
COMMENT ON FUNCTION leadmgmt.normalize_name(text) IS
	'Match key of a person''s name: NFKC, case folding, width and kana folding, honorifics (様, Mr.) and separators removed; word order is kept';

CREATE FUNCTION leadmgmt.normalize_phone(phone text, region text DEFAULT 'JP')
RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_normalize_phone';
COMMENT ON FUNCTION leadmgmt.normalize_phone(text, text) IS
	'Phone number in E.164 (+81312345678); region (ISO 3166 alpha-2) reads numbers without a country code; NULL when not a valid number; unknown region: error LM030';

CREATE FUNCTION leadmgmt.key_version()
RETURNS integer
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_key_version';
COMMENT ON FUNCTION leadmgmt.key_version() IS
	'Version of the match-key rules built into this leadmgmt library';

-------------------------------------------------------------------------------
-- Keys on leadmgmt.lead
-------------------------------------------------------------------------------
ALTER TABLE leadmgmt.lead ADD COLUMN key_version integer;
COMMENT ON COLUMN leadmgmt.lead.key_version IS
	'leadmgmt.key_version() the match keys were built with (maintained by the extension)';

CREATE FUNCTION leadmgmt.lead_keys()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_keys';
COMMENT ON FUNCTION leadmgmt.lead_keys() IS
	'Trigger: computes email_key, company_key and phone_key (region JP) of a lead and stamps key_version';

-- The key columns are in the list too, so a key cannot be set by hand.
CREATE TRIGGER lead_keys
	BEFORE INSERT OR UPDATE OF email, company, phone, email_key, company_key, phone_key, key_version
	ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_keys();

-- Matching looks at live leads only; merged ones resolve through merged_into.
CREATE INDEX lead_email_key_idx ON leadmgmt.lead (email_key)
	WHERE merged_into IS NULL AND email_key IS NOT NULL;
CREATE INDEX lead_phone_key_idx ON leadmgmt.lead (phone_key)
	WHERE merged_into IS NULL AND phone_key IS NOT NULL;
CREATE INDEX lead_company_key_idx ON leadmgmt.lead (company_key)
	WHERE merged_into IS NULL AND company_key IS NOT NULL;

CREATE FUNCTION leadmgmt.rebuild_keys()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed bigint;
BEGIN
	-- setting key_version fires lead_keys, which recomputes all three keys
	UPDATE leadmgmt.lead l SET key_version = NULL
	 WHERE l.key_version IS DISTINCT FROM leadmgmt.key_version()
	    OR l.email_key IS DISTINCT FROM leadmgmt.normalize_email(l.email)
	    OR l.company_key IS DISTINCT FROM leadmgmt.normalize_company(l.company)
	    OR l.phone_key IS DISTINCT FROM leadmgmt.normalize_phone(l.phone, 'JP');
	GET DIAGNOSTICS changed = ROW_COUNT;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION leadmgmt.rebuild_keys() IS
	'Recompute the match keys of every lead whose keys or key_version differ from what this library computes (after upgrading leadmgmt or ICU); returns the number of leads updated';
REVOKE EXECUTE ON FUNCTION leadmgmt.rebuild_keys() FROM PUBLIC;

-------------------------------------------------------------------------------
-- External ids from other systems
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.lead_external_id (
	system      text NOT NULL CONSTRAINT lead_external_id_system_not_empty CHECK (system <> ''),
	external_id text NOT NULL CONSTRAINT lead_external_id_not_empty CHECK (external_id <> ''),
	lead_id     bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (system, external_id)
);
CREATE INDEX lead_external_id_lead_idx ON leadmgmt.lead_external_id (lead_id);
COMMENT ON TABLE leadmgmt.lead_external_id IS
	'Ids of a lead in other systems (CRMs, marketing tools, list vendors); one id per system points to one lead';
COMMENT ON COLUMN leadmgmt.lead_external_id.system IS 'the other system (salesforce, hubspot, eight, ...)';
COMMENT ON COLUMN leadmgmt.lead_external_id.external_id IS 'the lead''s id in that system';
COMMENT ON COLUMN leadmgmt.lead_external_id.lead_id IS 'the lead (a merge moves the ids to the kept lead)';
COMMENT ON COLUMN leadmgmt.lead_external_id.created_at IS 'when the id was linked';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_external_id', '');

CREATE FUNCTION leadmgmt.link_external_id(lead bigint, system text, external_id text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	existing bigint;
BEGIN
	IF lead IS NULL OR system IS NULL OR external_id IS NULL THEN
		RAISE EXCEPTION 'lead, system and external_id must not be null' USING ERRCODE = '22004';
	END IF;
	target := leadmgmt.lead_resolve(lead);
	SELECT x.lead_id INTO existing FROM leadmgmt.lead_external_id x
	 WHERE x.system = link_external_id.system AND x.external_id = link_external_id.external_id
	   FOR UPDATE;
	IF FOUND THEN
		IF leadmgmt.lead_resolve(existing) <> target THEN
			RAISE EXCEPTION 'external id "%" of system "%" already belongs to lead %', external_id, system, existing
				USING ERRCODE = '23505',
				      HINT = 'Merge the two leads with leadmgmt.merge_leads() if they are the same person.';
		END IF;
		RETURN target;
	END IF;
	INSERT INTO leadmgmt.lead_external_id (system, external_id, lead_id)
	VALUES (link_external_id.system, link_external_id.external_id, target);
	RETURN target;
END
$$;
COMMENT ON FUNCTION leadmgmt.link_external_id(bigint, text, text) IS
	'Record the id a lead has in another system; returns the lead id (a merged lead resolves to the lead it was merged into)';

CREATE FUNCTION leadmgmt.find_lead(system text, external_id text)
RETURNS bigint
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.lead_resolve(x.lead_id) FROM leadmgmt.lead_external_id x
	 WHERE x.system = find_lead.system AND x.external_id = find_lead.external_id;
END;
COMMENT ON FUNCTION leadmgmt.find_lead(text, text) IS
	'The lead that has this id in another system (following merges), or NULL';

-------------------------------------------------------------------------------
-- Upsert
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.upsert_lead(email text DEFAULT NULL, name text DEFAULT NULL,
      company text DEFAULT NULL, phone text DEFAULT NULL, source text DEFAULT NULL,
      origin text DEFAULT NULL, external_id text DEFAULT NULL,
      attributes jsonb DEFAULT NULL)
RETURNS TABLE (lead_id bigint, matched boolean, matched_on text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ek text := leadmgmt.normalize_email(email);
	pk text := leadmgmt.normalize_phone(phone, 'JP');
	ck text := leadmgmt.normalize_company(company);
	nk text := leadmgmt.normalize_name(name);
	target bigint;
	how text;
	lock_key bigint;
BEGIN
	IF ek IS NULL AND pk IS NULL AND (ck IS NULL OR nk IS NULL) AND upsert_lead.external_id IS NULL THEN
		RAISE EXCEPTION 'lead has nothing to match on'
			USING ERRCODE = '22023',
			      DETAIL = 'A lead needs a usable e-mail address, phone number, company and name, or external id.',
			      HINT = 'Check the input: placeholders such as "n/a" or "なし" give no key (see leadmgmt.normalize_email()).';
	END IF;

	-- Serialise upserts and imports that could match each other with
	-- transaction-level advisory locks (doc/identity.md): each key hashes to
	-- one of 1024 buckets; an upsert holds its keys' buckets shared and its
	-- keys exclusively, import_leads() holds the buckets of all its keys
	-- exclusively (a bounded number of locks however long the list).  Buckets
	-- ascending, then keys ascending: no deadlocks.  Under READ COMMITTED the
	-- lookups below then see what the other committed.
	FOR lock_key IN
		SELECT DISTINCT pg_catalog.hashtextextended('leadmgmt.lead:' || k, 0) & 1023
		  FROM unnest(ARRAY['e:' || ek, 'p:' || pk, 'c:' || ck || ':' || nk,
		                    'x:' || upsert_lead.external_id]) AS k
		 WHERE k IS NOT NULL ORDER BY 1
	LOOP
		PERFORM pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('leadmgmt.lead'), lock_key::integer);
	END LOOP;
	FOR lock_key IN
		SELECT DISTINCT pg_catalog.hashtextextended('leadmgmt.lead:' || k, 0)
		  FROM unnest(ARRAY['e:' || ek, 'p:' || pk, 'c:' || ck || ':' || nk,
		                    'x:' || upsert_lead.external_id]) AS k
		 WHERE k IS NOT NULL ORDER BY 1
	LOOP
		PERFORM pg_catalog.pg_advisory_xact_lock(lock_key);
	END LOOP;

	IF upsert_lead.external_id IS NOT NULL THEN
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.external_id = upsert_lead.external_id;
		IF FOUND THEN
			target := leadmgmt.lead_resolve(target);
			how := 'external_id';
		END IF;
	END IF;
	IF target IS NULL AND ek IS NOT NULL THEN
		SELECT l.id INTO target FROM leadmgmt.lead l
		 WHERE l.email_key = ek AND l.merged_into IS NULL ORDER BY l.id LIMIT 1;
		how := CASE WHEN FOUND THEN 'email' END;
	END IF;
	IF target IS NULL AND pk IS NOT NULL THEN
		-- a shared number (a company's main line) must not join two people:
		-- the names must not contradict each other
		SELECT l.id INTO target FROM leadmgmt.lead l
		 WHERE l.phone_key = pk AND l.merged_into IS NULL
		   AND (nk IS NULL OR l.name IS NULL OR leadmgmt.normalize_name(l.name) IS NULL
		        OR leadmgmt.normalize_name(l.name) = nk)
		 ORDER BY l.id LIMIT 1;
		how := CASE WHEN FOUND THEN 'phone' END;
	END IF;
	IF target IS NULL AND ck IS NOT NULL AND nk IS NOT NULL THEN
		SELECT l.id INTO target FROM leadmgmt.lead l
		 WHERE l.company_key = ck AND l.merged_into IS NULL
		   AND leadmgmt.normalize_name(l.name) = nk
		 ORDER BY l.id LIMIT 1;
		how := CASE WHEN FOUND THEN 'company_name' END;
	END IF;

	IF target IS NULL THEN
		INSERT INTO leadmgmt.lead (email, name, company, phone, source, origin, external_id, attributes)
		VALUES (upsert_lead.email, upsert_lead.name, upsert_lead.company, upsert_lead.phone,
		        upsert_lead.source, upsert_lead.origin, upsert_lead.external_id,
		        COALESCE(upsert_lead.attributes, '{}'))
		RETURNING id INTO target;
		RETURN QUERY SELECT target, false, NULL::text;
		RETURN;
	END IF;

	-- What we knew wins; new information fills the gaps (doc/identity.md).
	UPDATE leadmgmt.lead l SET
		email = COALESCE(l.email, upsert_lead.email),
		name = COALESCE(l.name, upsert_lead.name),
		company = COALESCE(l.company, upsert_lead.company),
		phone = COALESCE(l.phone, upsert_lead.phone),
		source = COALESCE(l.source, upsert_lead.source),
		origin = COALESCE(l.origin, upsert_lead.origin),
		external_id = COALESCE(l.external_id,
		                       CASE WHEN NOT EXISTS (SELECT 1 FROM leadmgmt.lead o
		                                              WHERE o.external_id = upsert_lead.external_id)
		                            THEN upsert_lead.external_id END),
		attributes = COALESCE(upsert_lead.attributes, '{}') || l.attributes,
		updated_at = pg_catalog.now()
	 WHERE l.id = target
	   AND (l.email IS NULL AND upsert_lead.email IS NOT NULL
	        OR l.name IS NULL AND upsert_lead.name IS NOT NULL
	        OR l.company IS NULL AND upsert_lead.company IS NOT NULL
	        OR l.phone IS NULL AND upsert_lead.phone IS NOT NULL
	        OR l.source IS NULL AND upsert_lead.source IS NOT NULL
	        OR l.origin IS NULL AND upsert_lead.origin IS NOT NULL
	        OR l.external_id IS NULL AND upsert_lead.external_id IS NOT NULL
	        OR EXISTS (SELECT 1 FROM jsonb_object_keys(COALESCE(upsert_lead.attributes, '{}')) AS n(k)
	                    WHERE NOT l.attributes ? n.k));
	RETURN QUERY SELECT target, true, how;
END
$$;
COMMENT ON FUNCTION leadmgmt.upsert_lead(text, text, text, text, text, text, text, jsonb) IS
	'Find the lead by external id, e-mail key, phone key (names must not contradict) or company key + normalised name, in that order, filling its empty fields; else create it at the entry stage. Returns the lead id, whether it matched and on what';

-------------------------------------------------------------------------------
-- Merge
-------------------------------------------------------------------------------
CREATE SEQUENCE leadmgmt.lead_merge_id_seq AS bigint;
CREATE TABLE leadmgmt.lead_merge (
	id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.lead_merge_id_seq'),
	keep_id      bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	duplicate_id bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	merged_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
	merged_by    text NOT NULL,
	activities_moved bigint NOT NULL,
	stage_before text NOT NULL,
	stage_after  text NOT NULL,
	duplicate_stage text NOT NULL,
	CONSTRAINT lead_merge_once UNIQUE (duplicate_id)
);
ALTER SEQUENCE leadmgmt.lead_merge_id_seq OWNED BY leadmgmt.lead_merge.id;
CREATE INDEX lead_merge_keep_idx ON leadmgmt.lead_merge (keep_id);
COMMENT ON TABLE leadmgmt.lead_merge IS 'One row per merge_leads() call that merged something: who was merged into whom, when, by whom';
COMMENT ON COLUMN leadmgmt.lead_merge.id IS 'row id';
COMMENT ON COLUMN leadmgmt.lead_merge.keep_id IS 'the lead that was kept';
COMMENT ON COLUMN leadmgmt.lead_merge.duplicate_id IS 'the lead merged into it (its merged_into is keep_id)';
COMMENT ON COLUMN leadmgmt.lead_merge.merged_at IS 'when';
COMMENT ON COLUMN leadmgmt.lead_merge.merged_by IS 'leadmgmt.actor setting if set, else the session user';
COMMENT ON COLUMN leadmgmt.lead_merge.activities_moved IS 'activities moved from the duplicate to the kept lead';
COMMENT ON COLUMN leadmgmt.lead_merge.stage_before IS 'stage of the kept lead before the merge';
COMMENT ON COLUMN leadmgmt.lead_merge.stage_after IS 'stage of the kept lead after the merge (the more advanced of the two)';
COMMENT ON COLUMN leadmgmt.lead_merge.duplicate_stage IS 'stage of the duplicate when it was merged';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_merge', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_merge_id_seq', '');

CREATE FUNCTION leadmgmt.merge_stage(keep bigint, duplicate bigint)
RETURNS text
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_merge_stage';
COMMENT ON FUNCTION leadmgmt.merge_stage(bigint, bigint) IS
	'Step of merge_leads(): once duplicate is merged into keep, keep takes the higher-ranked stage of the two (stage_history reason ''merge''); refuses pairs that are not merged';

CREATE FUNCTION leadmgmt.merge_leads(keep bigint, duplicate bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k leadmgmt.lead;
	d leadmgmt.lead;
	moved bigint;
	new_stage text;
BEGIN
	IF keep IS NULL OR duplicate IS NULL THEN
		RAISE EXCEPTION 'lead ids must not be null' USING ERRCODE = '22004';
	END IF;
	IF keep = duplicate THEN
		RAISE EXCEPTION 'cannot merge lead % into itself', keep
			USING ERRCODE = 'LM031';
	END IF;
	-- row locks in id order; FOR UPDATE (not NO KEY) so that activity inserts
	-- for the duplicate (FOR KEY SHARE in activity_lead_resolve) wait for us
	PERFORM 1 FROM leadmgmt.lead l WHERE l.id IN (keep, duplicate) ORDER BY l.id FOR UPDATE;
	SELECT * INTO k FROM leadmgmt.lead l WHERE l.id = keep;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'lead % does not exist', keep USING ERRCODE = 'LM005';
	END IF;
	SELECT * INTO d FROM leadmgmt.lead l WHERE l.id = duplicate;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'lead % does not exist', duplicate USING ERRCODE = 'LM005';
	END IF;
	IF d.merged_into IS NOT NULL THEN
		IF leadmgmt.lead_resolve(duplicate) = leadmgmt.lead_resolve(keep) THEN
			RETURN leadmgmt.lead_resolve(keep);		-- done already: idempotent
		END IF;
		RAISE EXCEPTION 'lead % was already merged into lead %', duplicate, d.merged_into
			USING ERRCODE = 'LM032',
			      HINT = format('Merge lead %s instead.', leadmgmt.lead_resolve(duplicate));
	END IF;
	IF k.merged_into IS NOT NULL THEN
		RAISE EXCEPTION 'lead % was merged into lead %: keep the lead it resolves to', keep, k.merged_into
			USING ERRCODE = 'LM032',
			      HINT = format('Use leadmgmt.merge_leads(%s, %s).', leadmgmt.lead_resolve(keep), duplicate);
	END IF;

	-- the timeline: activities move, the duplicate's stage history stays
	UPDATE leadmgmt.activity a SET lead_id = keep WHERE a.lead_id = duplicate;
	GET DIAGNOSTICS moved = ROW_COUNT;
	UPDATE leadmgmt.lead_external_id x SET lead_id = keep WHERE x.lead_id = duplicate;
	-- leads merged into the duplicate earlier now point at keep directly
	UPDATE leadmgmt.lead l SET merged_into = keep WHERE l.merged_into = duplicate;

	-- the duplicate's external_id moves only if keep has none (it is unique)
	IF k.external_id IS NULL AND d.external_id IS NOT NULL THEN
		UPDATE leadmgmt.lead l SET external_id = NULL WHERE l.id = duplicate;
	END IF;
	UPDATE leadmgmt.lead l SET merged_into = keep, updated_at = pg_catalog.now()
	 WHERE l.id = duplicate;
	-- what the duplicate's purged activity earned follows its activities
	PERFORM leadmgmt.purged_score_follow(duplicate);

	-- fields: the kept lead wins, the duplicate fills its gaps; consent and
	-- bounces are never lost (unsubscribed > bounced > ok)
	UPDATE leadmgmt.lead l SET
		email = COALESCE(k.email, d.email),
		name = COALESCE(k.name, d.name),
		company = COALESCE(k.company, d.company),
		phone = COALESCE(k.phone, d.phone),
		source = COALESCE(k.source, d.source),
		origin = COALESCE(k.origin, d.origin),
		owner = COALESCE(k.owner, d.owner),
		fit_score = COALESCE(k.fit_score, d.fit_score),
		grade = COALESCE(k.grade, d.grade),
		amount = CASE WHEN k.amount IS NULL THEN d.amount ELSE k.amount END,
		currency = CASE WHEN k.amount IS NULL THEN d.currency ELSE k.currency END,
		external_id = COALESCE(k.external_id, d.external_id),
		attributes = d.attributes || k.attributes,
		email_status = CASE WHEN 'unsubscribed' IN (k.email_status, d.email_status) THEN 'unsubscribed'
		                    WHEN 'bounced' IN (k.email_status, d.email_status) THEN 'bounced'
		                    ELSE 'ok' END,
		updated_at = pg_catalog.now()
	 WHERE l.id = keep;

	new_stage := leadmgmt.merge_stage(keep, duplicate);

	INSERT INTO leadmgmt.lead_merge (keep_id, duplicate_id, merged_by, activities_moved,
	                                 stage_before, stage_after, duplicate_stage)
	VALUES (keep, duplicate,
	        COALESCE(NULLIF(pg_catalog.current_setting('leadmgmt.actor', true), ''), SESSION_USER),
	        moved, k.stage, new_stage, d.stage);

	-- scores follow the activities (when the scoring capability is installed)
	IF pg_catalog.to_regprocedure('leadmgmt.score(bigint,timestamp with time zone)') IS NOT NULL THEN
		EXECUTE 'SELECT leadmgmt.score($1)' USING keep;
	END IF;
	RETURN keep;
END
$$;
COMMENT ON FUNCTION leadmgmt.merge_leads(bigint, bigint) IS
	'Merge lead duplicate into lead keep: activities and external ids move, keep takes the more advanced stage (history reason ''merge''), empty fields are filled from the duplicate, duplicate.merged_into = keep; idempotent; returns keep';

-- Activities for a merged lead land on the lead it was merged into, also
-- when they race the merge (see src/identity.c).
CREATE FUNCTION leadmgmt.activity_lead_resolve()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_lead_resolve';
COMMENT ON FUNCTION leadmgmt.activity_lead_resolve() IS
	'Trigger: an activity of a merged lead goes to the lead it was merged into; waits for a merge in progress';
CREATE TRIGGER activity_lead_resolve
	BEFORE INSERT OR UPDATE OF lead_id ON leadmgmt.activity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.activity_lead_resolve();

-------------------------------------------------------------------------------
-- Bulk import of lists
-------------------------------------------------------------------------------
CREATE SEQUENCE leadmgmt.lead_import_id_seq AS bigint;
CREATE TABLE leadmgmt.lead_import (
	id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.lead_import_id_seq'),
	batch       text NOT NULL DEFAULT '',
	email       text,
	name        text,
	company     text,
	phone       text,
	source      text,
	origin      text,
	external_id text,
	system      text,
	system_id   text,
	attributes  jsonb,
	kind        text REFERENCES leadmgmt.activity_kind (name),
	occurred_at timestamptz,
	campaign    text,
	detail      text,
	lead_id     bigint REFERENCES leadmgmt.lead (id) ON DELETE SET NULL,
	matched     boolean,
	matched_on  text,
	error       text,
	imported_at timestamptz
);
ALTER SEQUENCE leadmgmt.lead_import_id_seq OWNED BY leadmgmt.lead_import.id;
CREATE INDEX lead_import_pending_idx ON leadmgmt.lead_import (batch, id) WHERE imported_at IS NULL;
COMMENT ON TABLE leadmgmt.lead_import IS
	'Staging table for lists (exhibition cards, seminar sign-ups, purchased lists): COPY rows in, then call leadmgmt.import_leads()';
COMMENT ON COLUMN leadmgmt.lead_import.id IS 'row id, the order rows are imported in';
COMMENT ON COLUMN leadmgmt.lead_import.batch IS 'name of the list, to import one list at a time';
COMMENT ON COLUMN leadmgmt.lead_import.email IS 'e-mail address as given';
COMMENT ON COLUMN leadmgmt.lead_import.name IS 'person''s name as given';
COMMENT ON COLUMN leadmgmt.lead_import.company IS 'company name as given';
COMMENT ON COLUMN leadmgmt.lead_import.phone IS 'phone number as given';
COMMENT ON COLUMN leadmgmt.lead_import.source IS 'lead source for new leads (exhibition, seminar, purchased_list, ...)';
COMMENT ON COLUMN leadmgmt.lead_import.origin IS 'inbound or outbound, for new leads';
COMMENT ON COLUMN leadmgmt.lead_import.external_id IS 'leadmgmt.lead.external_id to match or set';
COMMENT ON COLUMN leadmgmt.lead_import.system IS 'other system the row comes from (with system_id: linked in leadmgmt.lead_external_id)';
COMMENT ON COLUMN leadmgmt.lead_import.system_id IS 'id of the lead in that system';
COMMENT ON COLUMN leadmgmt.lead_import.attributes IS 'firmographics; fill the gaps of a matched lead';
COMMENT ON COLUMN leadmgmt.lead_import.kind IS 'activity recorded on the lead (exhibition_card, seminar_signup, ...); NULL records none';
COMMENT ON COLUMN leadmgmt.lead_import.occurred_at IS 'when the activity happened (NULL: now)';
COMMENT ON COLUMN leadmgmt.lead_import.campaign IS 'campaign of the activity';
COMMENT ON COLUMN leadmgmt.lead_import.detail IS 'detail of the activity (exhibition or seminar name)';
COMMENT ON COLUMN leadmgmt.lead_import.lead_id IS 'result: the lead the row was matched to or created as';
COMMENT ON COLUMN leadmgmt.lead_import.matched IS 'result: true when an existing lead was found';
COMMENT ON COLUMN leadmgmt.lead_import.matched_on IS 'result: external_id, system_id, email, phone or company_name';
COMMENT ON COLUMN leadmgmt.lead_import.error IS 'result: why the row was not imported (nothing to match on)';
COMMENT ON COLUMN leadmgmt.lead_import.imported_at IS 'result: when the row was processed; NULL = pending';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_import', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_import_id_seq', '');

CREATE FUNCTION leadmgmt.import_resolve(
	row_id bigint[], row_present integer[], row_keys text[], row_attributes jsonb[],
	lead_id bigint[], lead_present integer[], lead_keys text[], lead_attributes jsonb[],
	external_id text[], external_lead bigint[], system_ids text[], system_lead bigint[],
	OUT row_lead bigint[], OUT row_matched_on text[], OUT row_fills integer[],
	OUT lead_ref bigint[], OUT lead_attributes_after jsonb[])
RETURNS record
LANGUAGE c IMMUTABLE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_import_resolve';
COMMENT ON FUNCTION leadmgmt.import_resolve(bigint[], integer[], text[], jsonb[], bigint[], integer[], text[], jsonb[], text[], bigint[], text[], bigint[]) IS
	'Internal step of import_leads(): replays the rows of a list in id order against the leads they can reach, in memory, as upsert_lead() row by row would; returns each row''s lead (negative: the k-th new lead), match and filled fields, and the attributes of every lead created or updated';

-- Set-based: a fixed number of statements per call, whatever the length of
-- the list.  Exactly what calling find_lead()/upsert_lead() per row in id
-- order gives (doc/identity.md): the rows and every lead they can reach are
-- read in a few queries, import_resolve() replays the rows in memory, and
-- the outcome is written with one statement per table.
CREATE FUNCTION leadmgmt.import_leads(batch text DEFAULT NULL,
	OUT imported bigint, OUT matched bigint, OUT created bigint,
	OUT activities bigint, OUT rejected bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	-- the pending rows, one element per row: id, fields given (bits: 1 email,
	-- 2 name, 4 company, 8 phone, 16 source, 32 origin), keys [e-mail key,
	-- phone key, company key, name key, external_id, system, system_id] (for
	-- import_resolve) and the same keys one array each (for the queries)
	r_id bigint[]; r_present integer[]; r_keys text[]; r_attributes jsonb[];
	r_ek text[]; r_pk text[]; r_ck text[]; r_nk text[]; r_xid text[]; r_system text[]; r_system_id text[];
	-- what the rows can reach: external ids, system ids, live leads by key
	x_id text[]; x_lead bigint[];
	s_ids text[]; s_lead bigint[];
	l_id bigint[]; l_present integer[]; l_keys text[]; l_attributes jsonb[];
	res record;
	new_id bigint[];
	bucket integer;
BEGIN
	imported := 0; matched := 0; created := 0; activities := 0; rejected := 0;

	-- 1. claim the pending rows (row locks, id order) and compute their keys
	-- once (company and name keys once per distinct value: lists repeat them)
	WITH c AS MATERIALIZED (
		SELECT i.id, i.company, i.name, i.external_id, i.system, i.system_id, i.attributes,
		       leadmgmt.normalize_email(i.email) AS ek, leadmgmt.normalize_phone(i.phone, 'JP') AS pk,
		       (i.email IS NOT NULL)::integer + 2 * (i.name IS NOT NULL)::integer
		       + 4 * (i.company IS NOT NULL)::integer + 8 * (i.phone IS NOT NULL)::integer
		       + 16 * (i.source IS NOT NULL)::integer + 32 * (i.origin IS NOT NULL)::integer AS present
		  FROM leadmgmt.lead_import i
		 WHERE i.imported_at IS NULL AND (import_leads.batch IS NULL OR i.batch = import_leads.batch)
		 ORDER BY i.id
		   FOR UPDATE OF i),
	ck AS (SELECT d.company, leadmgmt.normalize_company(d.company) AS ck
	         FROM (SELECT DISTINCT c.company FROM c WHERE c.company IS NOT NULL) d),
	nk AS (SELECT d.name, leadmgmt.normalize_name(d.name) AS nk
	         FROM (SELECT DISTINCT c.name FROM c WHERE c.name IS NOT NULL) d)
	SELECT array_agg(c.id), array_agg(c.present),
	       array_agg(ARRAY[c.ek, c.pk, ck.ck, nk.nk, c.external_id, c.system, c.system_id]),
	       array_agg(c.attributes), array_agg(c.ek), array_agg(c.pk), array_agg(ck.ck), array_agg(nk.nk),
	       array_agg(c.external_id), array_agg(c.system), array_agg(c.system_id)
	  INTO r_id, r_present, r_keys, r_attributes, r_ek, r_pk, r_ck, r_nk, r_xid, r_system, r_system_id
	  FROM c
	  LEFT JOIN ck ON ck.company = c.company
	  LEFT JOIN nk ON nk.name = c.name;
	IF r_id IS NULL THEN
		RETURN;
	END IF;

	-- 2. the advisory locks of upsert_lead(), by bucket: every bucket a key
	-- of the list falls in, exclusively, ascending
	FOR bucket IN
		SELECT DISTINCT (pg_catalog.hashtextextended('leadmgmt.lead:' || k.k, 0) & 1023)::integer
		  FROM unnest(r_ek, r_pk, r_ck, r_nk, r_xid) AS r(ek, pk, ck, nk, xid),
		       unnest(ARRAY['e:' || r.ek, 'p:' || r.pk, 'c:' || r.ck || ':' || r.nk, 'x:' || r.xid]) AS k(k)
		 WHERE k.k IS NOT NULL
		 ORDER BY 1
	LOOP
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('leadmgmt.lead'), bucket);
	END LOOP;

	-- 3. what the rows can reach (a new snapshot: what others committed
	-- before we got the locks)
	SELECT array_agg(x.external_id), array_agg(leadmgmt.lead_resolve(x.id))
	  INTO x_id, x_lead
	  FROM leadmgmt.lead x
	 WHERE x.external_id = ANY (r_xid);
	SELECT array_agg(ARRAY[s.system, s.external_id]), array_agg(leadmgmt.lead_resolve(s.lead_id))
	  INTO s_ids, s_lead
	  FROM leadmgmt.lead_external_id s
	 WHERE (s.system, s.external_id) IN (SELECT u.system, u.system_id
	                                       FROM unnest(r_system, r_system_id) AS u(system, system_id));
	SELECT array_agg(l.id), array_agg(l.present),
	       array_agg(ARRAY[l.email_key, l.phone_key, l.company_key, l.email, l.phone, l.company,
	                       leadmgmt.normalize_name(l.name)]),
	       array_agg(l.attributes)
	  INTO l_id, l_present, l_keys, l_attributes
	  FROM (SELECT c.id, c.email, c.phone, c.company, c.name, c.email_key, c.phone_key, c.company_key,
	               c.attributes,
	               (c.email IS NOT NULL)::integer + 2 * (c.name IS NOT NULL)::integer
	               + 4 * (c.company IS NOT NULL)::integer + 8 * (c.phone IS NOT NULL)::integer
	               + 16 * (c.source IS NOT NULL)::integer + 32 * (c.origin IS NOT NULL)::integer
	               + 64 * (c.external_id IS NOT NULL)::integer AS present
	          FROM leadmgmt.lead c
	         WHERE c.id IN (SELECT e.id FROM leadmgmt.lead e
	                         WHERE e.merged_into IS NULL AND e.email_key = ANY (r_ek)
	                        UNION ALL
	                        SELECT e.id FROM leadmgmt.lead e
	                         WHERE e.merged_into IS NULL AND e.phone_key = ANY (r_pk)
	                        UNION ALL
	                        SELECT e.id FROM leadmgmt.lead e
	                         WHERE e.merged_into IS NULL AND e.company_key = ANY (r_ck)
	                        UNION ALL
	                        SELECT unnest(x_lead || s_lead))
	         ORDER BY c.id) l;

	-- 4. replay the rows in id order, in memory
	SELECT * INTO res
	  FROM leadmgmt.import_resolve(r_id, r_present, r_keys, r_attributes,
	                               COALESCE(l_id, '{}'), COALESCE(l_present, '{}'), COALESCE(l_keys, '{}'),
	                               COALESCE(l_attributes, '{}'), COALESCE(x_id, '{}'), COALESCE(x_lead, '{}'),
	                               COALESCE(s_ids, '{}'), COALESCE(s_lead, '{}'));

	-- 5. ids of the new leads, in creation order
	new_id := ARRAY(SELECT pg_catalog.nextval('leadmgmt.lead_id_seq')
	                  FROM pg_catalog.generate_series(1, (SELECT count(*) FROM unnest(res.lead_ref) AS u(ref)
	                                                       WHERE u.ref < 0)));

	-- 6. new leads: the fields of the rows that created or filled them
	INSERT INTO leadmgmt.lead (id, email, name, company, phone, source, origin, external_id, attributes)
	SELECT new_id[-u.ref], f.email, f.name, f.company, f.phone, f.source, f.origin, f.external_id,
	       u.attributes
	  FROM unnest(res.lead_ref, res.lead_attributes_after) AS u(ref, attributes)
	  LEFT JOIN (SELECT r.lead,
	                    max(i.email) FILTER (WHERE (r.fills & 1) <> 0) AS email,
	                    max(i.name) FILTER (WHERE (r.fills & 2) <> 0) AS name,
	                    max(i.company) FILTER (WHERE (r.fills & 4) <> 0) AS company,
	                    max(i.phone) FILTER (WHERE (r.fills & 8) <> 0) AS phone,
	                    max(i.source) FILTER (WHERE (r.fills & 16) <> 0) AS source,
	                    max(i.origin) FILTER (WHERE (r.fills & 32) <> 0) AS origin,
	                    max(i.external_id) FILTER (WHERE (r.fills & 64) <> 0) AS external_id
	               FROM unnest(r_id, res.row_lead, res.row_fills) AS r(id, lead, fills)
	               JOIN leadmgmt.lead_import i ON i.id = r.id
	              WHERE r.lead < 0 AND r.fills <> 0
	              GROUP BY r.lead) f ON f.lead = u.ref
	 WHERE u.ref < 0
	 ORDER BY u.ref DESC;

	-- 7. matched leads: fill their gaps (row locks in id order first, as
	-- merge_leads() takes them)
	PERFORM 1 FROM leadmgmt.lead l
	 WHERE l.id IN (SELECT u.ref FROM unnest(res.lead_ref) AS u(ref) WHERE u.ref > 0)
	 ORDER BY l.id
	   FOR NO KEY UPDATE OF l;
	UPDATE leadmgmt.lead l SET
		email = COALESCE(l.email, f.email),
		name = COALESCE(l.name, f.name),
		company = COALESCE(l.company, f.company),
		phone = COALESCE(l.phone, f.phone),
		source = COALESCE(l.source, f.source),
		origin = COALESCE(l.origin, f.origin),
		external_id = COALESCE(l.external_id, f.external_id),
		attributes = u.attributes,
		updated_at = pg_catalog.now()
	  FROM unnest(res.lead_ref, res.lead_attributes_after) AS u(ref, attributes)
	  LEFT JOIN (SELECT r.lead,
	                    max(i.email) FILTER (WHERE (r.fills & 1) <> 0) AS email,
	                    max(i.name) FILTER (WHERE (r.fills & 2) <> 0) AS name,
	                    max(i.company) FILTER (WHERE (r.fills & 4) <> 0) AS company,
	                    max(i.phone) FILTER (WHERE (r.fills & 8) <> 0) AS phone,
	                    max(i.source) FILTER (WHERE (r.fills & 16) <> 0) AS source,
	                    max(i.origin) FILTER (WHERE (r.fills & 32) <> 0) AS origin,
	                    max(i.external_id) FILTER (WHERE (r.fills & 64) <> 0) AS external_id
	               FROM unnest(r_id, res.row_lead, res.row_fills) AS r(id, lead, fills)
	               JOIN leadmgmt.lead_import i ON i.id = r.id
	              WHERE r.lead > 0 AND r.fills <> 0
	              GROUP BY r.lead) f ON f.lead = u.ref
	 WHERE u.ref > 0 AND l.id = u.ref;

	-- 8. system ids seen for the first time
	INSERT INTO leadmgmt.lead_external_id (system, external_id, lead_id)
	SELECT i.system, i.system_id, CASE WHEN r.lead < 0 THEN new_id[-r.lead] ELSE r.lead END
	  FROM unnest(r_id, res.row_lead, res.row_matched_on) AS r(id, lead, how)
	  JOIN leadmgmt.lead_import i ON i.id = r.id
	 WHERE r.lead IS NOT NULL AND r.how IS DISTINCT FROM 'system_id'
	   AND i.system IS NOT NULL AND i.system_id IS NOT NULL
	 ORDER BY r.id;

	-- 9. the list as activity on the leads: one statement, so scoring runs
	-- once for all of them (statement trigger)
	INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, channel)
	SELECT CASE WHEN r.lead < 0 THEN new_id[-r.lead] ELSE r.lead END, i.kind,
	       COALESCE(i.occurred_at, pg_catalog.now()), i.campaign, i.detail, 'import'
	  FROM unnest(r_id, res.row_lead) AS r(id, lead)
	  JOIN leadmgmt.lead_import i ON i.id = r.id
	 WHERE r.lead IS NOT NULL AND i.kind IS NOT NULL
	 ORDER BY r.id;
	GET DIAGNOSTICS activities = ROW_COUNT;

	-- 10. the outcome on the staging rows
	UPDATE leadmgmt.lead_import i SET
		lead_id = CASE WHEN r.lead IS NULL THEN i.lead_id
		               WHEN r.lead < 0 THEN new_id[-r.lead] ELSE r.lead END,
		matched = CASE WHEN r.lead IS NULL THEN i.matched ELSE r.how IS NOT NULL END,
		matched_on = CASE WHEN r.lead IS NULL THEN i.matched_on ELSE r.how END,
		error = CASE WHEN r.lead IS NULL
		             THEN 'nothing to match on: no usable e-mail, phone, company and name, or external id'
		             ELSE i.error END,
		imported_at = pg_catalog.now()
	  FROM unnest(r_id, res.row_lead, res.row_matched_on) AS r(id, lead, how)
	 WHERE i.id = r.id;

	SELECT count(*) FILTER (WHERE r.lead IS NOT NULL), count(*) FILTER (WHERE r.how IS NOT NULL),
	       count(*) FILTER (WHERE r.lead IS NOT NULL AND r.how IS NULL), count(*) FILTER (WHERE r.lead IS NULL)
	  INTO imported, matched, created, rejected
	  FROM unnest(res.row_lead, res.row_matched_on) AS r(lead, how);
END
$$;
COMMENT ON FUNCTION leadmgmt.import_leads(text) IS
	'Import the pending rows of leadmgmt.lead_import (one batch, or all) in one set-based pass, with the result of matching or creating each row''s lead as upsert_lead() would in id order: system ids linked, the row''s activity recorded on the lead; rows without anything to match on are marked with an error';

-------------------------------------------------------------------------------
-- Duplicate candidates
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.key_similarity(a text, b text)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_key_similarity';
COMMENT ON FUNCTION leadmgmt.key_similarity(text, text) IS
	'Similarity of two match keys in [0, 1]: Dice coefficient of their character bigrams (1 = same key)';

CREATE VIEW leadmgmt.duplicate_candidates WITH (security_invoker = true) AS
	WITH live AS (
		SELECT l.id, l.email_key, l.phone_key, l.company_key,
		       leadmgmt.normalize_name(l.name) AS name_key
		  FROM leadmgmt.lead l
		 WHERE l.merged_into IS NULL
	), pairs AS (
		SELECT a.id AS lead_a, b.id AS lead_b, 'email'::text AS reason, 0.95::float8 AS confidence
		  FROM live a JOIN live b ON b.email_key OPERATOR(pg_catalog.=) a.email_key AND b.id OPERATOR(pg_catalog.>) a.id
		UNION ALL
		SELECT a.id, b.id, 'phone', 0.85
		  FROM live a JOIN live b ON b.phone_key OPERATOR(pg_catalog.=) a.phone_key AND b.id OPERATOR(pg_catalog.>) a.id
		 WHERE a.name_key IS NULL OR b.name_key IS NULL OR a.name_key OPERATOR(pg_catalog.=) b.name_key
		UNION ALL
		SELECT a.id, b.id, 'company_name', 0.8
		  FROM live a JOIN live b ON b.company_key OPERATOR(pg_catalog.=) a.company_key
		                         AND b.name_key OPERATOR(pg_catalog.=) a.name_key
		                         AND b.id OPERATOR(pg_catalog.>) a.id
		UNION ALL
		-- near matches: same person's name, similar company key
		SELECT a.id, b.id, 'similar_company',
		       0.7::float8 OPERATOR(pg_catalog.*) leadmgmt.key_similarity(a.company_key, b.company_key)
		  FROM live a JOIN live b ON b.name_key OPERATOR(pg_catalog.=) a.name_key AND b.id OPERATOR(pg_catalog.>) a.id
		 WHERE a.company_key OPERATOR(pg_catalog.<>) b.company_key
		   AND leadmgmt.key_similarity(a.company_key, b.company_key) OPERATOR(pg_catalog.>=) 0.6
	)
	SELECT p.lead_a, p.lead_b,
	       pg_catalog.string_agg(p.reason, ',' ORDER BY p.confidence DESC, p.reason) AS reason,
	       pg_catalog.max(p.confidence) AS confidence
	  FROM pairs p
	 GROUP BY p.lead_a, p.lead_b;
COMMENT ON VIEW leadmgmt.duplicate_candidates IS
	'Pairs of live leads that are probably the same person, with why and how sure; merge with leadmgmt.merge_leads()';
COMMENT ON COLUMN leadmgmt.duplicate_candidates.lead_a IS 'the older lead of the pair (lower id): keep it when merging';
COMMENT ON COLUMN leadmgmt.duplicate_candidates.lead_b IS 'the newer lead of the pair';
COMMENT ON COLUMN leadmgmt.duplicate_candidates.reason IS 'comma-separated: email, phone (names do not contradict), company_name, similar_company';
COMMENT ON COLUMN leadmgmt.duplicate_candidates.confidence IS 'the strongest reason''s confidence: email 0.95, phone 0.85, company_name 0.8, similar_company 0.7 x similarity';

-------------------------------------------------------------------------------
-- Hygiene and consent: bounces, unsubscribes, consent log, stale leads,
-- erasure (doc/identity.md)
-------------------------------------------------------------------------------
-- email_bounce and unsubscribe activities set lead.email_status in the
-- activity statement trigger (src/scoring.c); unsubscribes also log an
-- e-mail consent withdrawal here.
CREATE SEQUENCE leadmgmt.consent_id_seq AS bigint;
CREATE TABLE leadmgmt.consent (
	id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.consent_id_seq'),
	lead_id     bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	channel     text NOT NULL CONSTRAINT consent_channel_format CHECK (channel ~ '^[a-z][a-z0-9_]{0,62}$'),
	granted     boolean NOT NULL,
	source      text,
	at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
	recorded_by text NOT NULL DEFAULT SESSION_USER
);
ALTER SEQUENCE leadmgmt.consent_id_seq OWNED BY leadmgmt.consent.id;
CREATE INDEX consent_lead_channel_idx ON leadmgmt.consent (lead_id, channel, at);
COMMENT ON TABLE leadmgmt.consent IS 'Consent log: every grant or withdrawal per lead and channel, append as they happen';
COMMENT ON COLUMN leadmgmt.consent.id IS 'row id';
COMMENT ON COLUMN leadmgmt.consent.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.consent.channel IS 'email, phone, post, ... (lower-case identifier)';
COMMENT ON COLUMN leadmgmt.consent.granted IS 'true: consent given; false: withdrawn';
COMMENT ON COLUMN leadmgmt.consent.source IS 'where it was given or withdrawn (form, call, activity:unsubscribe, ...)';
COMMENT ON COLUMN leadmgmt.consent.at IS 'when it was given or withdrawn';
COMMENT ON COLUMN leadmgmt.consent.recorded_by IS 'session user that recorded it';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.consent', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.consent_id_seq', '');

CREATE VIEW leadmgmt.consent_current WITH (security_invoker = true) AS
	SELECT DISTINCT ON (c.lead_id, c.channel) c.lead_id, c.channel, c.granted, c.source, c.at
	  FROM leadmgmt.consent c
	 ORDER BY c.lead_id, c.channel, c.at DESC, c.id DESC;
COMMENT ON VIEW leadmgmt.consent_current IS 'The latest consent state per lead and channel';
COMMENT ON COLUMN leadmgmt.consent_current.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.consent_current.channel IS 'channel';
COMMENT ON COLUMN leadmgmt.consent_current.granted IS 'latest state: true = may be contacted on this channel';
COMMENT ON COLUMN leadmgmt.consent_current.source IS 'source of the latest state';
COMMENT ON COLUMN leadmgmt.consent_current.at IS 'time of the latest state';

CREATE FUNCTION leadmgmt.consent(lead_id bigint, channel text, granted boolean,
                                 source text DEFAULT NULL, at timestamptz DEFAULT pg_catalog.now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	new_id bigint;
	latest boolean;
BEGIN
	IF lead_id IS NULL OR channel IS NULL OR granted IS NULL OR at IS NULL THEN
		RAISE EXCEPTION 'lead_id, channel, granted and at must not be null' USING ERRCODE = '22004';
	END IF;
	target := leadmgmt.lead_resolve(consent.lead_id);
	INSERT INTO leadmgmt.consent (lead_id, channel, granted, source, at)
	VALUES (target, consent.channel, consent.granted, consent.source, consent.at)
	RETURNING id INTO new_id;
	-- the e-mail status follows the latest e-mail consent, not the latest call
	IF consent.channel = 'email' THEN
		SELECT cc.granted INTO latest FROM leadmgmt.consent_current cc
		 WHERE cc.lead_id = target AND cc.channel = 'email';
		UPDATE leadmgmt.lead l
		   SET email_status = CASE WHEN latest THEN 'ok' ELSE 'unsubscribed' END
		 WHERE l.id = target
		   AND (NOT latest AND l.email_status <> 'unsubscribed'
		        OR latest AND l.email_status = 'unsubscribed');
	END IF;
	RETURN new_id;
END
$$;
COMMENT ON FUNCTION leadmgmt.consent(bigint, text, boolean, text, timestamptz) IS
	'Record consent given (granted true) or withdrawn for a lead and channel; e-mail consent also sets lead.email_status';

CREATE VIEW leadmgmt.stale_leads WITH (security_invoker = true) AS
	SELECT l.id AS lead_id, l.stage, l.owner, l.stage_entered_at,
	       a.last_activity_at,
	       pg_catalog.now() - coalesce(a.last_activity_at, l.created_at) AS idle
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage s ON s.name = l.stage
	  LEFT JOIN LATERAL (SELECT max(x.occurred_at) AS last_activity_at
	                       FROM leadmgmt.activity x WHERE x.lead_id = l.id) a ON true
	 WHERE l.merged_into IS NULL
	   AND s.category IN ('open', 'nurture')
	   AND coalesce(a.last_activity_at, l.created_at)
	       < pg_catalog.now() - leadmgmt.get_setting('stale_after')::interval;
COMMENT ON VIEW leadmgmt.stale_leads IS
	'Open and nurture leads without activity for the stale_after setting (default 30 days)';
COMMENT ON COLUMN leadmgmt.stale_leads.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.stale_leads.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt.stale_leads.owner IS 'sales rep';
COMMENT ON COLUMN leadmgmt.stale_leads.stage_entered_at IS 'when it entered its stage';
COMMENT ON COLUMN leadmgmt.stale_leads.last_activity_at IS 'latest activity (NULL: none)';
COMMENT ON COLUMN leadmgmt.stale_leads.idle IS 'time since the latest activity, or since creation';

-- Erasure: personal data goes, counts, stages, scores and history stay, so
-- funnel metrics remain correct.
ALTER TABLE leadmgmt.lead ADD COLUMN forgotten_at timestamptz;
COMMENT ON COLUMN leadmgmt.lead.forgotten_at IS 'when leadmgmt.forget_lead() erased the personal data of this lead';

CREATE FUNCTION leadmgmt.forget_lead(lead bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	family bigint[];
BEGIN
	IF lead IS NULL THEN
		RAISE EXCEPTION 'lead id must not be null' USING ERRCODE = '22004';
	END IF;
	target := leadmgmt.lead_resolve(lead);
	-- the person is the lead and every duplicate merged into it
	WITH RECURSIVE f(id) AS (
		SELECT target
		UNION
		SELECT l.id FROM leadmgmt.lead l JOIN f ON l.merged_into = f.id
	)
	SELECT array_agg(id ORDER BY id) INTO family FROM f;
	PERFORM 1 FROM leadmgmt.lead l WHERE l.id = ANY (family) ORDER BY l.id FOR NO KEY UPDATE;

	-- the fit trigger would re-grade the emptied attributes: keep fit as it was
	CREATE TEMP TABLE leadmgmt_forget_fit ON COMMIT DROP AS
		SELECT l.id, l.fit_score, l.grade FROM leadmgmt.lead l WHERE l.id = ANY (family);
	UPDATE leadmgmt.lead l
	   SET email = NULL, name = NULL, company = NULL, phone = NULL, external_id = NULL,
	       attributes = '{}', forgotten_at = now(), updated_at = now()
	 WHERE l.id = ANY (family);
	UPDATE leadmgmt.lead l SET fit_score = o.fit_score, grade = o.grade
	  FROM leadmgmt_forget_fit o WHERE o.id = l.id;
	DROP TABLE leadmgmt_forget_fit;
	UPDATE leadmgmt.activity a SET detail = NULL, props = NULL
	 WHERE a.lead_id = ANY (family) AND (a.detail IS NOT NULL OR a.props IS NOT NULL);
	DELETE FROM leadmgmt.lead_external_id e WHERE e.lead_id = ANY (family);
	DELETE FROM leadmgmt.lead_import i WHERE i.lead_id = ANY (family);
	RETURN cardinality(family);
END
$$;
COMMENT ON FUNCTION leadmgmt.forget_lead(bigint) IS
	'Erase the personal data of a lead and of every lead merged into it (names, contacts, company, attributes, external ids, activity details, import rows); keeps ids, stages, history, scores and activity counts; returns the number of leads erased';
REVOKE ALL ON FUNCTION leadmgmt.forget_lead(bigint) FROM PUBLIC;

-------------------------------------------------------------------------------
-- Access model: grant_access() and row-level security by owner (doc/roles.md)
-------------------------------------------------------------------------------
-- The extension creates no roles: roles are cluster-wide, outlive DROP
-- EXTENSION, and a name we pre-created could be squatted.  The DBA creates
-- four NOLOGIN roles and hands them to grant_access(), which records them
-- here; the row-level security helper reads the sales role from this table.
CREATE TABLE leadmgmt.access_role (
	kind text PRIMARY KEY
	     CONSTRAINT access_role_kind_known CHECK (kind IN ('admin', 'marketing', 'sales', 'reader')),
	role regrole NOT NULL
);
COMMENT ON TABLE leadmgmt.access_role IS
	'The roles leadmgmt.grant_access() last granted to, one per kind; written by grant_access() only';
COMMENT ON COLUMN leadmgmt.access_role.kind IS 'admin, marketing, sales or reader';
COMMENT ON COLUMN leadmgmt.access_role.role IS 'the role that holds the privileges of this kind';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.access_role', '');

-- Whether row-level security restricts the role "who" to its own leads: the
-- rls_by_owner setting is on and "who" is a member of the sales role.  The
-- policies below call it once per query (an InitPlan), passing CURRENT_USER:
-- inside this SECURITY DEFINER function CURRENT_USER is the extension owner.
-- SECURITY DEFINER so that nobody needs a privilege on leadmgmt.setting or
-- leadmgmt.access_role.  It is the one definer function PUBLIC may execute
-- (test/sql/hardening.sql lists it): every role that may read lead runs it,
-- including roles a DBA granted privileges to by hand, and it only tells
-- whether a role is restricted.
CREATE FUNCTION leadmgmt.rls_restricted(who name)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT COALESCE(leadmgmt.get_setting('rls_by_owner') = 'on', false)
	       AND EXISTS (SELECT 1
	                     FROM leadmgmt.access_role a
	                     JOIN pg_catalog.pg_roles r ON r.oid = a.role::oid
	                    WHERE a.kind = 'sales'
	                      AND pg_catalog.pg_has_role(rls_restricted.who, a.role::oid, 'MEMBER'));
END;
COMMENT ON FUNCTION leadmgmt.rls_restricted(name) IS
	'Row-level security helper: true when the rls_by_owner setting is on and the role is a member of the sales role recorded by grant_access()';
GRANT EXECUTE ON FUNCTION leadmgmt.rls_restricted(name) TO PUBLIC;

-- RLS is always enabled (not forced: the table owner, and so the extension's
-- own triggers running as the owner, bypass it); the setting switches the
-- policy's effect, so nothing runs ALTER TABLE at runtime and pg_dump keeps
-- the policy with the extension.  One permissive policy for every command:
-- unrestricted roles see every row, restricted ones the rows they own.
ALTER TABLE leadmgmt.lead ENABLE ROW LEVEL SECURITY;
CREATE POLICY lead_by_owner ON leadmgmt.lead
	USING ((SELECT NOT leadmgmt.rls_restricted(CURRENT_USER))
	       OR owner OPERATOR(pg_catalog.=) CURRENT_USER::pg_catalog.text)
	WITH CHECK ((SELECT NOT leadmgmt.rls_restricted(CURRENT_USER))
	            OR owner OPERATOR(pg_catalog.=) CURRENT_USER::pg_catalog.text);
COMMENT ON POLICY lead_by_owner ON leadmgmt.lead IS
	'With rls_by_owner on, members of the sales role see and change only the leads whose owner is their role name (CURRENT_USER); everybody else is unaffected';

CREATE FUNCTION leadmgmt.grant_access(admin regrole, marketing regrole, sales regrole, reader regrole)
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
	END LOOP;

	-- every view of the schema at call time (BI views added later: call again)
	SELECT array_agg(c.relname::text ORDER BY c.relname) INTO views
	  FROM pg_catalog.pg_class c
	 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind IN ('v', 'm');

	FOR i IN 1 .. 4 LOOP
		r := roles[i]::text;
		EXECUTE format('GRANT USAGE ON SCHEMA leadmgmt TO %s', r);
		-- the views are security_invoker: their readers need SELECT on the
		-- columns they read, so grant exactly those (from the views' rules)
		FOREACH obj IN ARRAY COALESCE(views, '{}') LOOP
			EXECUTE format('GRANT SELECT ON leadmgmt.%I TO %s', obj, r);
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
			 WHERE v.relnamespace = 'leadmgmt'::regnamespace AND v.relkind IN ('v', 'm')
			   AND d.refobjsubid > 0
			 GROUP BY t.oid
		LOOP
			EXECUTE obj;
		END LOOP;
		-- get_setting() runs as the caller; settings are no secret
		EXECUTE format('GRANT SELECT ON leadmgmt.setting TO %s', r);
		CONTINUE WHEN kinds[i] = 'reader';

		-- sales and up: vocabulary, leads, activity and their history
		FOREACH obj IN ARRAY vocab || sales_read LOOP
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
COMMENT ON FUNCTION leadmgmt.grant_access(regrole, regrole, regrole, regrole) IS
	'Grant the privileges of the four leadmgmt roles (admin, marketing, sales, reader; doc/roles.md) to roles the DBA created; extension owner or superuser only; idempotent';
REVOKE ALL ON FUNCTION leadmgmt.grant_access(regrole, regrole, regrole, regrole) FROM PUBLIC;

-------------------------------------------------------------------------------
-- Scaling: retention and sharding over postgres_fdw (doc/scaling.md)
-------------------------------------------------------------------------------
-- Retention.  Deleting activity fires no trigger: lead.score and score_state
-- stay as they are.  What purge_activity() must keep is what rescore() and
-- score() rebuild from the log: it records the points and cap counters the
-- purged rows had earned in leadmgmt.purged_score (40_scoring.sql), which
-- both count.  One batch is a set of whole leads with about batch_size old
-- rows, locked like the scoring trigger locks them (FOR NO KEY UPDATE, id
-- order), matched and deleted in one statement: the matches are read with
-- the statement's snapshot, before its DELETE.  Cost: one scan of the old
-- rows (the BRIN index on occurred_at) to list the leads, then per batch one
-- scan of the (lead_id, occurred_at) index for the matches and one for the
-- DELETE, touching only the old rows of the batch's leads.
CREATE FUNCTION leadmgmt.purge_activity(before timestamptz, batch_size integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
	deleted bigint := 0;
	n bigint;
BEGIN
	IF before IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION 'before and batch_size must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT isfinite(before) THEN
		RAISE EXCEPTION 'cannot purge activity before %', before
			USING ERRCODE = '22008',
			      HINT = 'Give a finite time; activity older than it is deleted.';
	END IF;
	IF batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be positive, got %', batch_size USING ERRCODE = '22023';
	END IF;

	FOR b IN
		SELECT array_agg(c.lead_id ORDER BY c.lead_id) AS leads
		  FROM (SELECT o.lead_id,
		               div(sum(o.n) OVER (ORDER BY o.lead_id) - o.n, purge_activity.batch_size) AS batch
		          FROM (SELECT a.lead_id, count(*) AS n FROM leadmgmt.activity a
		                 WHERE a.occurred_at < purge_activity.before GROUP BY a.lead_id) o) c
		 GROUP BY c.batch ORDER BY c.batch
	LOOP
		-- no activity of these leads is scored meanwhile (src/scoring.c)
		PERFORM 1 FROM leadmgmt.lead l WHERE l.id = ANY (b.leads) ORDER BY l.id FOR NO KEY UPDATE;
		WITH match AS (
			-- caps count the lead's earlier purged awards first (score_matches)
			SELECT m.* FROM leadmgmt.score_matches_batch(b.leads, purge_activity.before - interval '1 microsecond') m
		), gone AS (
			DELETE FROM leadmgmt.activity a
			 WHERE a.lead_id = ANY (b.leads) AND a.occurred_at < purge_activity.before
			RETURNING a.lead_id
		), per_lead AS (
			SELECT g.lead_id, count(*) AS n FROM gone g GROUP BY g.lead_id
		), component AS (
			SELECT m.lead_id,
			       array_agg(m.half_life_us ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS half_life_us,
			       array_agg(m.points ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS points,
			       array_agg(m.occurred_at ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS occurred_at
			  FROM match m GROUP BY m.lead_id
		), award AS (
			SELECT x.lead_id, array_agg(x.rule_id ORDER BY x.rule_id) AS rule_id,
			       array_agg(x.times ORDER BY x.rule_id) AS times,
			       array_agg(x.last_at ORDER BY x.rule_id) AS last_at
			  FROM (SELECT m.lead_id, m.rule_id, count(*)::integer AS times, max(m.occurred_at) AS last_at
			          FROM match m GROUP BY m.lead_id, m.rule_id) x
			 GROUP BY x.lead_id
		), recorded AS (
			INSERT INTO leadmgmt.purged_score AS p (lead_id, state, purged_before, activities, purged_at)
			SELECT g.lead_id,
			       leadmgmt.score_state_pack(coalesce(c.half_life_us, '{}'), coalesce(c.points, '{}'),
			                                 coalesce(c.occurred_at, '{}'), coalesce(w.rule_id, '{}'),
			                                 coalesce(w.times, '{}'), coalesce(w.last_at, '{}')),
			       purge_activity.before, g.n, pg_catalog.now()
			  FROM per_lead g
			  LEFT JOIN component c ON c.lead_id = g.lead_id
			  LEFT JOIN award w ON w.lead_id = g.lead_id
			ON CONFLICT (lead_id) DO UPDATE
			   SET state = leadmgmt.score_state_merge(p.state, excluded.state),
			       purged_before = greatest(p.purged_before, excluded.purged_before),
			       activities = p.activities + excluded.activities,
			       purged_at = excluded.purged_at
		)
		SELECT coalesce(sum(g.n), 0) INTO n FROM per_lead g;
		deleted := deleted + n;
	END LOOP;
	RETURN deleted;
END
$$;
COMMENT ON FUNCTION leadmgmt.purge_activity(timestamptz, integer) IS
	'Delete activity that occurred before a time, in batches of about batch_size rows (whole leads), recording in leadmgmt.purged_score what it had earned so that scores, caps and rescore() stay as they were; returns the number of rows deleted';
REVOKE ALL ON FUNCTION leadmgmt.purge_activity(timestamptz, integer) FROM PUBLIC;

-- merge_leads() moves a duplicate's activity; this moves what its purged
-- activity earned along.  It acts only on a lead that is merged, so calling
-- it does nothing a merge has not done already.
CREATE FUNCTION leadmgmt.purged_score_follow(duplicate bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
BEGIN
	SELECT leadmgmt.lead_resolve(l.id) INTO target
	  FROM leadmgmt.lead l WHERE l.id = duplicate AND l.merged_into IS NOT NULL;
	IF target IS NULL THEN
		RETURN;
	END IF;
	WITH moved AS (
		DELETE FROM leadmgmt.purged_score p WHERE p.lead_id = duplicate RETURNING p.*
	)
	INSERT INTO leadmgmt.purged_score AS p (lead_id, state, purged_before, activities, purged_at)
	SELECT target, m.state, m.purged_before, m.activities, m.purged_at FROM moved m
	ON CONFLICT (lead_id) DO UPDATE
	   SET state = leadmgmt.score_state_merge(p.state, excluded.state),
	       purged_before = greatest(p.purged_before, excluded.purged_before),
	       activities = p.activities + excluded.activities,
	       purged_at = greatest(p.purged_at, excluded.purged_at);
END
$$;
COMMENT ON FUNCTION leadmgmt.purged_score_follow(bigint) IS
	'Step of merge_leads(): what purged activity of a merged lead earned moves to the lead it is merged into (no-op for a lead that is not merged)';
REVOKE ALL ON FUNCTION leadmgmt.purged_score_follow(bigint) FROM PUBLIC;

-- Sharding.  A lead lives on shard shard_of(id, n): PostgreSQL's own hash
-- partitioning of a bigint key (hashint8extended with the partition seed,
-- combined as compute_partition_hash_value does, modulo n), so a coordinator
-- table hash-partitioned by lead_id into MODULUS n, REMAINDER r finds lead
-- id on partition shard_of(id, n).  Unsigned 64-bit arithmetic in numeric.
CREATE FUNCTION leadmgmt.shard_of(lead_id bigint, shards integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF shards < 1 THEN
		RAISE EXCEPTION 'number of shards must be positive, got %', shards USING ERRCODE = '22023';
	END IF;
	-- HASH_PARTITION_SEED 0x7A5B22367996DCFD; hash_combine64(0, h) = h + 0x49a0f4dd15e5a8e3
	RETURN ((hashint8extended(lead_id, 8816678312871386365)::numeric
	         + 18446744073709551616 + 5305509591434766563) % 18446744073709551616 % shards)::integer;
END
$$;
COMMENT ON FUNCTION leadmgmt.shard_of(bigint, integer) IS
	'The shard (0 .. shards - 1) of a lead id: the REMAINDER of the hash partition, MODULUS shards, that PostgreSQL routes the id to';

-- The coordinator's view of the shards: a table hash-partitioned by the
-- lead, one postgres_fdw foreign table per server (servers[1] holds
-- REMAINDER 0), each reading the same table in schema leadmgmt on its shard.
-- Runs as the caller, who needs CREATE on the schema and USAGE on the servers.
CREATE FUNCTION leadmgmt.shard_table(target text, servers text[],
                                     source regclass DEFAULT 'leadmgmt.activity')
RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[];
	key name;
	remote name;
	srv record;
	i integer;
	n integer;
	created regclass;
BEGIN
	IF target IS NULL OR servers IS NULL OR source IS NULL THEN
		RAISE EXCEPTION 'target, servers and source must not be null' USING ERRCODE = '22004';
	END IF;
	parts := parse_ident(target);
	IF cardinality(parts) <> 2 THEN
		RAISE EXCEPTION 'target table "%" must be schema-qualified', target
			USING ERRCODE = '22023', HINT = 'Write it as schema.table, for example public.lead_activity.';
	END IF;
	n := cardinality(servers);
	IF n = 0 OR array_position(servers, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'servers must list at least one foreign server and no NULL' USING ERRCODE = '22023';
	END IF;
	IF (SELECT count(DISTINCT s) FROM unnest(servers) s) <> n THEN
		RAISE EXCEPTION 'a server is listed twice in %', servers
			USING ERRCODE = '22023', HINT = 'Each shard is one server, listed once, in remainder order.';
	END IF;

	SELECT c.relname INTO remote FROM pg_class c
	 WHERE c.oid = source AND c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'r';
	IF remote IS NULL THEN
		RAISE EXCEPTION '% is not a table of extension leadmgmt', source USING ERRCODE = '22023';
	END IF;
	key := CASE WHEN source = 'leadmgmt.lead'::regclass THEN 'id'
	            WHEN EXISTS (SELECT 1 FROM pg_attribute a
	                          WHERE a.attrelid = source AND a.attname = 'lead_id' AND NOT a.attisdropped)
	            THEN 'lead_id' END;
	IF key IS NULL THEN
		RAISE EXCEPTION 'table % has no lead_id column to shard by', source USING ERRCODE = '22023';
	END IF;

	FOR i IN 1 .. n LOOP
		SELECT s.srvname, w.fdwname,
		       EXISTS (SELECT 1 FROM pg_options_to_table(s.srvoptions) o
		                WHERE o.option_name = 'extensions'
		                  AND 'leadmgmt' = ANY (string_to_array(replace(o.option_value, ' ', ''), ','))) AS ships
		  INTO srv
		  FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
		 WHERE s.srvname = servers[i];
		IF NOT FOUND THEN
			RAISE EXCEPTION 'foreign server "%" does not exist', servers[i]
				USING ERRCODE = '42704',
				      HINT = 'CREATE SERVER ... FOREIGN DATA WRAPPER postgres_fdw OPTIONS (..., extensions ''leadmgmt'') first.';
		END IF;
		IF srv.fdwname <> 'postgres_fdw' THEN
			RAISE EXCEPTION 'foreign server "%" uses foreign-data wrapper "%", not postgres_fdw', servers[i], srv.fdwname
				USING ERRCODE = '22023';
		END IF;
		IF NOT srv.ships THEN
			RAISE EXCEPTION 'foreign server "%" does not ship leadmgmt functions', servers[i]
				USING ERRCODE = '22023',
				      DETAIL = 'Without the server option extensions ''leadmgmt'', postgres_fdw evaluates leadmgmt aggregates on the coordinator, over every row.',
				      HINT = format('ALTER SERVER %I OPTIONS (ADD extensions ''leadmgmt'');', servers[i]);
		END IF;
	END LOOP;

	EXECUTE format('CREATE TABLE %I.%I (LIKE %s) PARTITION BY HASH (%I)', parts[1], parts[2], source, key);
	created := format('%I.%I', parts[1], parts[2])::regclass;
	EXECUTE format('COMMENT ON TABLE %s IS %L', created,
	               format('%s of %s shards, partitioned like leadmgmt.shard_of(%s, %s)', source, n, key, n));
	FOR i IN 1 .. n LOOP
		EXECUTE format('CREATE FOREIGN TABLE %I.%I PARTITION OF %s FOR VALUES WITH (MODULUS %s, REMAINDER %s) '
		               'SERVER %I OPTIONS (schema_name %L, table_name %L)',
		               parts[1], parts[2] || '_' || (i - 1), created, n, i - 1, servers[i], 'leadmgmt', remote);
	END LOOP;
	RETURN created;
END
$$;
COMMENT ON FUNCTION leadmgmt.shard_table(text, text[], regclass) IS
	'On a coordinator: create schema.table, hash-partitioned by lead like leadmgmt.shard_of(), with one postgres_fdw foreign partition per server (servers[1] holds remainder 0) reading the source leadmgmt table of that shard; returns the new table';
REVOKE ALL ON FUNCTION leadmgmt.shard_table(text, text[], regclass) FROM PUBLIC;
