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

-------------------------------------------------------------------------------
-- Leads (doc/getting-started.md, doc/identity.md)
-------------------------------------------------------------------------------
-- The lead table is created whole here, every capability's columns with it
-- (the match keys of 80_identity.sql, email_status and forgotten_at of
-- 82_consent.sql), in the column order an install updated from 1.0.0 has
-- (test/t/003_upgrade.pl compares the two).  The link of stage to the stage
-- vocabulary, and the stage machine's triggers, are in 25_stages.sql.
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
	stage            text NOT NULL DEFAULT 'inquiry',	-- REFERENCES leadmgmt.stage: 25_stages.sql
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
	key_version      integer,
	forgotten_at     timestamptz,
	CONSTRAINT lead_not_merged_into_itself CHECK (merged_into <> id),
	-- every later stage change is recorded after these (doc/stages.md)
	CONSTRAINT lead_created_at_finite CHECK (pg_catalog.isfinite(created_at)),
	CONSTRAINT lead_stage_entered_at_finite CHECK (pg_catalog.isfinite(stage_entered_at))
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
COMMENT ON COLUMN leadmgmt.lead.key_version IS
	'leadmgmt.key_version() the match keys were built with (maintained by the extension)';
COMMENT ON COLUMN leadmgmt.lead.forgotten_at IS 'when leadmgmt.forget_lead() erased the personal data of this lead';

SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.lead_id_seq', '');

CREATE FUNCTION leadmgmt.lead_resolve(lead bigint)
RETURNS bigint
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_lead_resolve';
COMMENT ON FUNCTION leadmgmt.lead_resolve(bigint) IS
	'The lead a lead id stands for today: follows merged_into; error LM005 when it does not exist';

-- What writers use instead of lead_resolve(): follows merged_into and locks
-- the live lead FOR KEY SHARE (and no merged lead on the way), so a writer
-- blocked behind merge_leads() ends on the surviving lead, which cannot be
-- merged away until it commits (doc/operations.md, "Lock order").
CREATE FUNCTION leadmgmt.lead_lock(lead bigint)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_lead_lock';
COMMENT ON FUNCTION leadmgmt.lead_lock(bigint) IS
	'The live lead a lead id stands for, locked FOR KEY SHARE until the transaction ends (waits for a merge in progress, then follows merged_into); error LM005 when it does not exist, LM050 for a circle of merged_into';

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
-- The stage machine on leads: validated moves and their history
-- (doc/stages.md, doc/design.md "The life of a stage move")
-------------------------------------------------------------------------------
-- Here rather than on the lead table in 20_leads.sql: a lead's stage is a
-- name of this part's vocabulary.
ALTER TABLE leadmgmt.lead ADD CONSTRAINT lead_stage_fkey
	FOREIGN KEY (stage) REFERENCES leadmgmt.stage (name);

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
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history_id_seq', '');

-- Validation before the row is written, bookkeeping after (doc/design.md).
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
	-- the funnel summaries count these facts
	IF filled > 0 THEN
		PERFORM leadmgmt.rebuild_funnel_summary();
	END IF;
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
	points      float8,
	-- scores decay from occurred_at, and views subtract it from now()
	CONSTRAINT activity_occurred_at_finite CHECK (pg_catalog.isfinite(occurred_at)),
	-- no sum of points over any number of rows can overflow (doc/scoring.md)
	CONSTRAINT activity_points_bounded CHECK (points BETWEEN -1e15 AND 1e15)
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
	IF NOT isfinite(at) THEN
		RAISE EXCEPTION 'activity time must be finite, not %', at
			USING ERRCODE = '22008',
			      HINT = 'Give the time the activity happened, or leave "at" out for now().';
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
	               CONSTRAINT scoring_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9),
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
COMMENT ON COLUMN leadmgmt.scoring_rule.points IS 'points awarded, may be negative; between -1e9 and 1e9';
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
	            CONSTRAINT fit_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9),
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
COMMENT ON COLUMN leadmgmt.fit_rule.points IS 'fit points when the rule matches; between -1e9 and 1e9';
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

-- decayed_sum(points, ts, half_life, at): the aggregate of doc/design.md
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

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.decayed_sum(points float8, ts timestamptz, half_life interval, at timestamptz) (
	SFUNC = leadmgmt.decayed_sum_trans,
	STYPE = internal,
	SSPACE = 88,
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

-- merge_leads() moves activities by UPDATE, which the scoring triggers do
-- not see: this rebuilds both leads from their log and hands the kept one
-- off like a tracked activity would (src/scoring.c).
CREATE FUNCTION leadmgmt.merge_score(keep bigint, duplicate bigint)
RETURNS float8
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_merge_score';
COMMENT ON FUNCTION leadmgmt.merge_score(bigint, bigint) IS
	'Step of merge_leads(): once duplicate is merged into keep, rescores both from their activity and hands keep to sales (stage mql, NOTIFY) when the merge took it over the threshold; refuses pairs that are not merged; returns keep''s score';

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

-- Triggers: the resolved lead and the points on the row before it is
-- written (no query per row); lead locks, scores and the hand-off once per
-- statement from the transition table (src/ingest.c, doc/activity.md: bulk
-- load).  E-mail hygiene is the consent part's trigger (82_consent.sql).
CREATE FUNCTION leadmgmt.activity_score_row()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_row';
COMMENT ON FUNCTION leadmgmt.activity_score_row() IS
	'Trigger: a new activity row of a merged lead goes to the lead it was merged into (looked up once per lead and statement, no query per row), and gets the points of matching scoring rules unless it arrives with points';
CREATE FUNCTION leadmgmt.activity_score_statement()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_statement';
COMMENT ON FUNCTION leadmgmt.activity_score_statement() IS
	'Trigger: for the rows of one statement, moves rows of merged leads to the lead they resolve to, locks every lead of the statement in id order, then applies caps, decay components and lead scores, one write per lead, and hands hot leads to sales';
CREATE FUNCTION leadmgmt.lead_fit()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_fit';
COMMENT ON FUNCTION leadmgmt.lead_fit() IS
	'Trigger: computes fit_score and grade from lead.attributes';

CREATE TRIGGER activity_score_row
	BEFORE INSERT ON leadmgmt.activity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.activity_score_row();
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

-- The four aggregates differ only in their arguments and final function, so
-- one template declares them (the objects are the same as four literal
-- CREATE AGGREGATE statements; test/expected/install.out lists them):
--	SFUNC window_funnel_trans, STYPE internal, SSPACE 120 (state bytes per
--	group measured by bench/aggregates.sh, doc/scaling.md), FINALFUNC the
--	one named, READ_ONLY, COMBINEFUNC window_funnel_combine, SERIALFUNC
--	window_funnel_serialize, DESERIALFUNC window_funnel_deserialize,
--	PARALLEL SAFE.
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('window_funnel',     'window_size interval, ts timestamptz, VARIADIC steps boolean[]',            'window_funnel_final'),
		('window_funnel',     'window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]', 'window_funnel_final'),
		('funnel_step_times', 'window_size interval, ts timestamptz, VARIADIC steps boolean[]',            'funnel_step_times_final'),
		('funnel_step_times', 'window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]', 'funnel_step_times_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.window_funnel_trans, STYPE = internal, SSPACE = 120,
			FINALFUNC = leadmgmt.%I, FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.window_funnel_combine,
			SERIALFUNC = leadmgmt.window_funnel_serialize,
			DESERIALFUNC = leadmgmt.window_funnel_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, timestamptz, VARIADIC boolean[]) IS
	'Highest step (0..number of steps) of a chain step 1, step 2, ... in time order with every step within window_size of step 1 (ClickHouse windowFunnel)';
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, text, timestamptz, VARIADIC boolean[]) IS
	'window_funnel with a mode: comma-separated strict_deduplication, strict_order, strict_increase, strict_once, allow_reentry ('''' = default)';
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, timestamptz, VARIADIC boolean[]) IS
	'Times of steps 1..window_funnel of the chain that reached the highest step first (its latest possible step 1); empty when no step was reached';
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, text, timestamptz, VARIADIC boolean[]) IS
	'funnel_step_times with a mode (see window_funnel)';

-------------------------------------------------------------------------------
-- Sequences and retention (doc/sequences.md)
-------------------------------------------------------------------------------
-- sequence_match and sequence_count are C aggregates with ClickHouse's
-- sequenceMatch / sequenceCount semantics, retention with ClickHouse's
-- retention.  As for the funnel, the support functions are C and resolve no
-- names.  sequence_match and sequence_count share their transition, combine,
-- serialise and deserialise functions (and their state, over the same
-- arguments); the final functions leave the state untouched (READ_ONLY).
CREATE FUNCTION leadmgmt.sequence_trans(internal, text, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_trans';
COMMENT ON FUNCTION leadmgmt.sequence_trans(internal, text, timestamptz, boolean[]) IS
	'Transition function of sequence_match and sequence_count: checks the pattern once per group, keeps the rows that match a condition';

CREATE FUNCTION leadmgmt.sequence_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_combine';
COMMENT ON FUNCTION leadmgmt.sequence_combine(internal, internal) IS
	'Combine function of sequence_match and sequence_count: merges two partial states with the same pattern and conditions';

CREATE FUNCTION leadmgmt.sequence_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_serialize';
COMMENT ON FUNCTION leadmgmt.sequence_serialize(internal) IS
	'Serialisation function of sequence_match and sequence_count (parallel workers)';

CREATE FUNCTION leadmgmt.sequence_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_deserialize';
COMMENT ON FUNCTION leadmgmt.sequence_deserialize(bytea, internal) IS
	'Deserialisation function of sequence_match and sequence_count; rejects malformed states';

CREATE FUNCTION leadmgmt.sequence_match_final(internal)
RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_match_final';
COMMENT ON FUNCTION leadmgmt.sequence_match_final(internal) IS
	'Final function of sequence_match: whether the events match the pattern';

CREATE FUNCTION leadmgmt.sequence_count_final(internal)
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_count_final';
COMMENT ON FUNCTION leadmgmt.sequence_count_final(internal) IS
	'Final function of sequence_count: the number of non-overlapping matches of the pattern';

-- SSPACE: a state is a 32-byte header and the pattern (one chunk), and an
-- event array of 16 bytes an event that starts at 4 events (another chunk):
-- about 160 bytes for the few events of a typical lead.
-- Both aggregates differ only in their final function, so one template
-- declares them (the same objects as literal CREATE AGGREGATE statements;
-- test/expected/install.out lists them).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('sequence_match', 'pattern text, ts timestamptz, VARIADIC conds boolean[]', 'sequence_match_final'),
		('sequence_count', 'pattern text, ts timestamptz, VARIADIC conds boolean[]', 'sequence_count_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.sequence_trans,
			STYPE = internal,
			SSPACE = 160,
			FINALFUNC = leadmgmt.%I,
			FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.sequence_combine,
			SERIALFUNC = leadmgmt.sequence_serialize,
			DESERIALFUNC = leadmgmt.sequence_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.sequence_match(text, timestamptz, VARIADIC boolean[]) IS
	'Whether the group''s events, in time order, match the pattern: (?N) an event matching condition N, . any event, .* any events, (?t<=S) etc. seconds since the previous event (ClickHouse sequenceMatch)';

COMMENT ON AGGREGATE leadmgmt.sequence_count(text, timestamptz, VARIADIC boolean[]) IS
	'Number of non-overlapping matches of the pattern in the group''s events (ClickHouse sequenceCount)';

CREATE FUNCTION leadmgmt.retention_trans(bigint, boolean[])
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_trans';
COMMENT ON FUNCTION leadmgmt.retention_trans(bigint, boolean[]) IS
	'Transition function of retention: the conditions that held for some row (bits 0..31) and their number (bits 32..39)';

CREATE FUNCTION leadmgmt.retention_combine(bigint, bigint)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_combine';
COMMENT ON FUNCTION leadmgmt.retention_combine(bigint, bigint) IS
	'Combine function of retention: the union of the conditions seen';

CREATE FUNCTION leadmgmt.retention_final(bigint)
RETURNS boolean[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_final';
COMMENT ON FUNCTION leadmgmt.retention_final(bigint) IS
	'Final function of retention: element 1 is condition 1, element k is condition 1 and condition k';

CREATE AGGREGATE leadmgmt.retention(VARIADIC conds boolean[]) (
	SFUNC = leadmgmt.retention_trans,
	STYPE = bigint,
	FINALFUNC = leadmgmt.retention_final,
	COMBINEFUNC = leadmgmt.retention_combine,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.retention(VARIADIC boolean[]) IS
	'Element 1: condition 1 held for some row of the group; element k: condition 1 and condition k each held for some row (ClickHouse retention)';

-------------------------------------------------------------------------------
-- Opportunities from the CRM: the deals sales reports back (doc/integration.md)
-------------------------------------------------------------------------------
-- One row per CRM deal, written by leadmgmt.record_opportunity() (an
-- idempotent upsert keyed by crm_id).  A customer who buys again has one row
-- per deal; nothing is overwritten but the deal's own fields.  The part sits
-- before the analytics views because campaign_attribution and the deal view
-- read it; the change feed, campaigns and ROI follow in 85_sales.sql.
CREATE SEQUENCE leadmgmt.opportunity_id_seq AS bigint;
CREATE TABLE leadmgmt.opportunity (
	id             bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.opportunity_id_seq'),
	lead_id        bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	crm_id         text NOT NULL CONSTRAINT opportunity_crm_id_key UNIQUE
	               CONSTRAINT opportunity_crm_id_not_empty CHECK (crm_id <> ''),
	name           text,
	amount         numeric CONSTRAINT opportunity_amount_not_negative CHECK (amount >= 0),
	currency       text CONSTRAINT opportunity_currency_iso4217 CHECK (currency ~ '^[A-Z]{3}$'),
	status         text NOT NULL DEFAULT 'open'
	               CONSTRAINT opportunity_status_known CHECK (status IN ('open', 'won', 'lost')),
	created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	closed_at      timestamptz,
	crm_updated_at timestamptz,
	props          jsonb NOT NULL DEFAULT '{}',
	CONSTRAINT opportunity_amount_has_currency CHECK (amount IS NULL OR currency IS NOT NULL),
	CONSTRAINT opportunity_closed_after_created CHECK (closed_at >= created_at)
);
ALTER SEQUENCE leadmgmt.opportunity_id_seq OWNED BY leadmgmt.opportunity.id;
CREATE INDEX opportunity_lead_idx ON leadmgmt.opportunity (lead_id);
COMMENT ON TABLE leadmgmt.opportunity IS
	'Deals reported back by the CRM, one row per CRM deal; write through leadmgmt.record_opportunity()';
COMMENT ON COLUMN leadmgmt.opportunity.id IS 'opportunity id';
COMMENT ON COLUMN leadmgmt.opportunity.lead_id IS 'the lead (a merge moves the deal to the kept lead)';
COMMENT ON COLUMN leadmgmt.opportunity.crm_id IS 'id of the deal in the CRM: the key of record_opportunity()';
COMMENT ON COLUMN leadmgmt.opportunity.name IS 'deal name as the CRM gives it';
COMMENT ON COLUMN leadmgmt.opportunity.amount IS 'deal value (>= 0) in currency';
COMMENT ON COLUMN leadmgmt.opportunity.currency IS 'ISO 4217 currency of amount; required with an amount';
COMMENT ON COLUMN leadmgmt.opportunity.status IS 'open, won or lost';
COMMENT ON COLUMN leadmgmt.opportunity.created_at IS 'when the deal was opened in the CRM';
COMMENT ON COLUMN leadmgmt.opportunity.closed_at IS 'when the deal was won or lost';
COMMENT ON COLUMN leadmgmt.opportunity.crm_updated_at IS 'the CRM''s last-modified time of the deal: older messages are ignored';
COMMENT ON COLUMN leadmgmt.opportunity.props IS 'anything else worth keeping from the CRM (free-form)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.opportunity', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.opportunity_id_seq', '');

-- Deals as the analytics count them: every opportunity of a live lead, and,
-- for a live lead without any opportunity, its own amount as 1.0.0 counted
-- it (won from its first entry into won, open while it stays in sql).
-- credited_at is the time before which a campaign touch earns credit: the
-- close of a won or lost deal, the opening of an open one.
CREATE VIEW leadmgmt.deal WITH (security_invoker = true) AS
	SELECT o.lead_id, o.id AS opportunity_id, o.status, o.amount, o.currency,
	       o.created_at AS opened_at, o.closed_at,
	       CASE WHEN o.status = 'open' THEN o.created_at ELSE o.closed_at END AS credited_at
	  FROM leadmgmt.opportunity o
	  JOIN leadmgmt.lead l ON l.id = o.lead_id
	 WHERE l.merged_into IS NULL
	UNION ALL
	SELECT l.id, NULL, 'won', l.amount, l.currency, NULL, min(h.changed_at), min(h.changed_at)
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'won'
	 WHERE l.merged_into IS NULL
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.opportunity o WHERE o.lead_id = l.id)
	 GROUP BY l.id, l.amount, l.currency
	UNION ALL
	SELECT l.id, NULL, 'open', l.amount, l.currency, max(h.changed_at), NULL, max(h.changed_at)
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'sql'
	 WHERE l.merged_into IS NULL AND l.stage = 'sql'
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.opportunity o WHERE o.lead_id = l.id)
	 GROUP BY l.id, l.amount, l.currency;
COMMENT ON VIEW leadmgmt.deal IS
	'Deals of live leads: every opportunity, and for a lead without opportunities its own amount (won at its first entry into won, open while in sql)';
COMMENT ON COLUMN leadmgmt.deal.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.deal.opportunity_id IS 'the opportunity (NULL: the lead''s own amount)';
COMMENT ON COLUMN leadmgmt.deal.status IS 'open, won or lost';
COMMENT ON COLUMN leadmgmt.deal.amount IS 'deal value';
COMMENT ON COLUMN leadmgmt.deal.currency IS 'ISO 4217 currency of amount';
COMMENT ON COLUMN leadmgmt.deal.opened_at IS 'when the deal was opened (for a lead''s own open amount: its entry into sql)';
COMMENT ON COLUMN leadmgmt.deal.closed_at IS 'when it was won or lost';
COMMENT ON COLUMN leadmgmt.deal.credited_at IS 'campaign touches strictly before this time earn credit: closed_at for won and lost deals, opened_at for open ones';

-- The upsert.  Runs as the caller (the connector's role needs the sales
-- privileges of grant_access()); the stage moves go through set_stage, so
-- the stage machine, history and hand-off rules apply as for any move.
CREATE FUNCTION leadmgmt.record_opportunity(crm_id text, lead_id bigint DEFAULT NULL,
                                            email text DEFAULT NULL, external_id text DEFAULT NULL,
                                            amount numeric DEFAULT NULL, currency text DEFAULT NULL,
                                            status text DEFAULT 'open', name text DEFAULT NULL,
                                            created_at timestamptz DEFAULT NULL,
                                            closed_at timestamptz DEFAULT NULL,
                                            crm_updated_at timestamptz DEFAULT NULL)
RETURNS TABLE (opportunity_id bigint, lead bigint, outcome text, lead_stage text, refused_move text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	merged bigint;
	given text;
	old leadmgmt.opportunity;
	have_old boolean;
	v_amount numeric;
	v_currency text;
	v_created timestamptz;
	v_closed timestamptz;
	v_updated timestamptz;
	v_id bigint;
	v_outcome text;
	refused text;
	steps text[];
	step_at timestamptz[];
	current_stage text;
	last_change timestamptz;
	move_at timestamptz;
	i integer;
	tries integer := 0;
BEGIN
	-- validation first: bad input changes nothing
	IF crm_id IS NULL OR crm_id = '' THEN
		RAISE EXCEPTION 'crm_id must not be null or empty' USING ERRCODE = '22004',
			HINT = 'Pass the CRM''s id of the deal: it is the key that makes replays harmless.';
	END IF;
	IF status IS NULL OR status NOT IN ('open', 'won', 'lost') THEN
		RAISE EXCEPTION 'unknown opportunity status "%"', coalesce(status, 'NULL')
			USING ERRCODE = 'LM081',
			      HINT = 'Use open, won or lost; map the CRM''s own stage names onto these three.';
	END IF;
	IF amount < 0 OR amount IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'opportunity amount must be a finite number >= 0, got %', amount
			USING ERRCODE = 'LM080',
			      HINT = 'Give the deal value; a refund or credit note is a deal of its own, not a negative amount.';
	END IF;
	IF currency IS NOT NULL AND currency !~ '^[A-Z]{3}$' THEN
		RAISE EXCEPTION 'currency "%" is not an ISO 4217 code', currency
			USING ERRCODE = 'LM082',
			      HINT = 'Give three capital letters such as JPY, USD or EUR.';
	END IF;

	-- the lead: the strongest identifier given, else the stored deal's lead
	IF record_opportunity.lead_id IS NOT NULL THEN
		given := format('lead id %s', record_opportunity.lead_id);
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.id = record_opportunity.lead_id;
	END IF;
	IF target IS NULL AND record_opportunity.external_id IS NOT NULL THEN
		given := concat_ws(', ', given, format('external id "%s"', record_opportunity.external_id));
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.external_id = record_opportunity.external_id;
		IF target IS NULL THEN
			SELECT x.lead_id INTO target FROM leadmgmt.lead_external_id x
			 WHERE x.system = 'crm' AND x.external_id = record_opportunity.external_id;
		END IF;
	END IF;
	IF target IS NULL AND record_opportunity.email IS NOT NULL THEN
		given := concat_ws(', ', given, 'e-mail');
		SELECT l.id INTO target FROM leadmgmt.lead l
		 WHERE l.email_key = leadmgmt.normalize_email(record_opportunity.email) AND l.merged_into IS NULL
		 ORDER BY l.id LIMIT 1;
		IF target IS NULL THEN
			-- the address of a merged duplicate resolves to the lead it was merged into
			SELECT l.id INTO target FROM leadmgmt.lead l
			 WHERE l.email_key = leadmgmt.normalize_email(record_opportunity.email)
			 ORDER BY l.id LIMIT 1;
		END IF;
	END IF;
	IF target IS NULL AND given IS NULL THEN
		EXECUTE 'SELECT o.lead_id FROM leadmgmt.opportunity o WHERE o.crm_id OPERATOR(pg_catalog.=) $1'
		   INTO target USING record_opportunity.crm_id;
		IF target IS NULL THEN
			RAISE EXCEPTION 'opportunity "%" names no lead', crm_id
				USING ERRCODE = 'LM087',
				      HINT = 'A new deal needs lead_id, external_id or email of a lead leadmgmt knows.';
		END IF;
	END IF;
	IF target IS NULL THEN
		-- an unknown person is never created here: the CRM and marketing would
		-- disagree about who it is
		RAISE EXCEPTION 'no lead matches opportunity "%" (%)', crm_id, given
			USING ERRCODE = 'LM005',
			      HINT = 'Create or import the lead first (leadmgmt.upsert_lead), or link the CRM''s contact id with leadmgmt.link_external_id(lead, ''crm'', id).';
	END IF;

	-- lock the lead it resolves to; a merge that committed while we waited
	-- moved it on, so resolve again after taking the lock
	LOOP
		target := leadmgmt.lead_resolve(target);
		SELECT l.merged_into INTO merged FROM leadmgmt.lead l WHERE l.id = target FOR NO KEY UPDATE;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'lead % does not exist', target USING ERRCODE = 'LM005',
				HINT = 'The lead was deleted while the deal was being recorded; record the deal again.';
		END IF;
		EXIT WHEN merged IS NULL;
		target := merged;
	END LOOP;

	LOOP
		tries := tries + 1;
		-- the statements on opportunity are planned at each call (EXECUTE):
		-- a plan kept from the session's first calls, made while the table
		-- was nearly empty, scans it whole for the rest of the session,
		-- which made a connector's long session slow down with every deal
		EXECUTE 'SELECT * FROM leadmgmt.opportunity o WHERE o.crm_id OPERATOR(pg_catalog.=) $1 FOR UPDATE'
		   INTO old USING record_opportunity.crm_id;
		have_old := old.id IS NOT NULL;

		IF have_old AND record_opportunity.crm_updated_at < old.crm_updated_at THEN
			-- an older message arriving late: the stored deal is newer
			SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
			RETURN QUERY SELECT old.id, old.lead_id, 'stale'::text, current_stage, NULL::text;
			RETURN;
		END IF;

		v_amount := coalesce(record_opportunity.amount, old.amount);
		v_currency := coalesce(record_opportunity.currency, old.currency);
		IF record_opportunity.currency IS DISTINCT FROM old.currency AND record_opportunity.currency IS NOT NULL
		   AND old.currency IS NOT NULL AND record_opportunity.amount IS NULL AND old.amount IS NOT NULL THEN
			RAISE EXCEPTION 'opportunity "%" has its amount in %, the message gives currency % without an amount',
				crm_id, old.currency, record_opportunity.currency
				USING ERRCODE = 'LM082',
				      HINT = 'Send the amount together with its currency; amounts in different currencies are never mixed.';
		END IF;
		IF v_amount IS NOT NULL AND v_currency IS NULL THEN
			RAISE EXCEPTION 'opportunity "%" has an amount but no currency', crm_id
				USING ERRCODE = 'LM082',
				      HINT = 'Give the ISO 4217 currency of the amount, such as JPY.';
		END IF;
		v_updated := coalesce(record_opportunity.crm_updated_at, old.crm_updated_at);
		v_created := coalesce(record_opportunity.created_at, old.created_at, record_opportunity.closed_at,
		                      record_opportunity.crm_updated_at, pg_catalog.now());
		v_closed := CASE WHEN status = 'open' THEN record_opportunity.closed_at
		                 ELSE coalesce(record_opportunity.closed_at,
		                               CASE WHEN old.status = status THEN old.closed_at END,
		                               record_opportunity.crm_updated_at, greatest(pg_catalog.now(), v_created)) END;
		IF v_closed < v_created THEN
			RAISE EXCEPTION 'opportunity "%" closes at % before it was created at %', crm_id, v_closed, v_created
				USING ERRCODE = 'LM083',
				      HINT = 'closed_at must not be earlier than created_at; check the CRM''s dates and time zones.';
		END IF;

		IF have_old THEN
			IF old.lead_id = target AND old.status = status
			   AND old.name IS NOT DISTINCT FROM coalesce(record_opportunity.name, old.name)
			   AND old.amount IS NOT DISTINCT FROM v_amount AND old.currency IS NOT DISTINCT FROM v_currency
			   AND old.created_at = v_created AND old.closed_at IS NOT DISTINCT FROM v_closed
			   AND old.crm_updated_at IS NOT DISTINCT FROM v_updated THEN
				-- a replay: nothing changes, not even the lead's stage
				SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
				RETURN QUERY SELECT old.id, target, 'unchanged'::text, current_stage, NULL::text;
				RETURN;
			END IF;
			EXECUTE 'UPDATE leadmgmt.opportunity o
			            SET lead_id = $2, name = coalesce($3, o.name), amount = $4, currency = $5, status = $6,
			                created_at = $7, closed_at = $8, crm_updated_at = $9
			          WHERE o.id OPERATOR(pg_catalog.=) $1'
			  USING old.id, target, record_opportunity.name, v_amount, v_currency, record_opportunity.status,
			        v_created, v_closed, v_updated;
			v_id := old.id;
			v_outcome := 'updated';
			EXIT;
		END IF;
		INSERT INTO leadmgmt.opportunity AS o (lead_id, crm_id, name, amount, currency, status,
		                                      created_at, closed_at, crm_updated_at)
		VALUES (target, record_opportunity.crm_id, record_opportunity.name, v_amount, v_currency,
		        record_opportunity.status, v_created, v_closed, v_updated)
		ON CONFLICT ON CONSTRAINT opportunity_crm_id_key DO NOTHING
		RETURNING o.id INTO v_id;
		IF v_id IS NOT NULL THEN
			v_outcome := 'inserted';
			EXIT;
		END IF;
		-- a concurrent message inserted the deal first: take its row lock and
		-- compare with what it stored
		IF tries > 3 THEN
			RAISE EXCEPTION 'opportunity "%" keeps changing under record_opportunity()', crm_id
				USING ERRCODE = '40001', HINT = 'Retry the message.';
		END IF;
	END LOOP;

	-- the lead's stage follows the deal, back-dated to the CRM's times: the
	-- deal opened (sql), then closed (won or lost)
	steps := CASE status WHEN 'open' THEN ARRAY['sql'] ELSE ARRAY['sql', status] END;
	step_at := CASE status WHEN 'open' THEN ARRAY[v_created] ELSE ARRAY[v_created, v_closed] END;
	SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
	IF current_stage <> steps[cardinality(steps)] THEN
		FOR i IN 1 .. cardinality(steps) LOOP
			CONTINUE WHEN current_stage = steps[i];
			-- a CRM clock slightly behind ours must not make a legal move fail,
			-- and a date in the future must not block the lead's next moves
			SELECT max(h.changed_at) INTO last_change FROM leadmgmt.stage_history h WHERE h.lead_id = target;
			move_at := greatest(least(step_at[i], pg_catalog.now()), last_change);
			BEGIN
				PERFORM leadmgmt.set_stage(target, steps[i], format('crm opportunity %s %s', crm_id, status), move_at);
				current_stage := steps[i];
			EXCEPTION WHEN SQLSTATE 'LM001' OR SQLSTATE 'LM003' OR unique_violation THEN
				refused := format('%s -> %s: %s', current_stage, steps[i], SQLERRM);
				EXIT;
			END;
		END LOOP;
	END IF;
	RETURN QUERY SELECT v_id, target, v_outcome, current_stage, refused;
END
$$;
COMMENT ON FUNCTION leadmgmt.record_opportunity(text, bigint, text, text, numeric, text, text, text, timestamptz, timestamptz, timestamptz) IS
	'Idempotent upsert of a CRM deal keyed by crm_id: finds the lead (lead id, external id, e-mail; follows merges; never creates one), ignores messages older than the stored crm_updated_at, and moves the lead to sql, won or lost back-dated to the CRM times; a move the stage machine refuses is reported in refused_move and the deal is stored anyway';

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

-- Both forms differ only in their arguments, so one template declares them
-- (the same objects as literal CREATE AGGREGATE statements;
-- test/expected/install.out lists them).  SSPACE: state bytes per group
-- measured by bench/aggregates.sh (doc/scaling.md).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('attribution', 'model text, touch text, ts timestamptz',                    'attribution_final'),
		('attribution', 'model text, touch text, ts timestamptz, milestone boolean', 'attribution_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.attribution_trans,
			STYPE = internal,
			SSPACE = 984,
			FINALFUNC = leadmgmt.%I,
			FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.attribution_combine,
			SERIALFUNC = leadmgmt.attribution_serialize,
			DESERIALFUNC = leadmgmt.attribution_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz) IS
	'Per group {touch: weight} under model first_touch, last_touch, linear, u_shaped or ''time_decay:<half-life>''; weights sum to exactly 1, repeated touches summed; NULL touch or ts rows skipped; NULL for no touches';

COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz, boolean) IS
	'attribution with a milestone flag, needed by w_shaped (30 % first, 30 % first milestone, 30 % last, 10 % the others); other models ignore it';

-- campaign_attribution: won deals and open pipeline credited to campaigns
-- with the linear model over each deal's campaign touches (activity rows
-- with a campaign) strictly before the deal's credited_at (leadmgmt.deal:
-- the close of a won deal, the opening of an open one; for a lead without
-- opportunities its first entry into 'won', or the entry that started its
-- current stay in 'sql').  Merged leads are excluded.  A deal with no
-- campaign touch before that time credits no campaign.  One row per campaign
-- and currency: amounts in different currencies are never added up.
CREATE VIEW leadmgmt.campaign_attribution WITH (security_invoker = true) AS
	WITH credit AS (
		SELECT d.status = 'won' AS won, d.amount, d.currency,
		       leadmgmt.attribution('linear', a.campaign, a.occurred_at) AS weights
		  FROM leadmgmt.deal d
		  JOIN leadmgmt.activity a
		    ON a.lead_id = d.lead_id AND a.campaign IS NOT NULL AND a.occurred_at < d.credited_at
		 WHERE d.status IN ('won', 'open')
		 GROUP BY d.status, d.lead_id, d.opportunity_id, d.amount, d.currency
	)
	SELECT e.key AS campaign, 'linear'::text AS model,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE c.won), 0)::float8 AS won_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE c.won), 0)) AS won_amount,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE NOT c.won), 0)::float8 AS pipeline_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE NOT c.won), 0)) AS pipeline_amount,
	       c.currency
	  FROM credit c, jsonb_each(c.weights) e
	 GROUP BY e.key, c.currency;
COMMENT ON VIEW leadmgmt.campaign_attribution IS
	'Won deals and open pipeline credited to campaigns (linear model) over each deal''s campaign touches before it closed won or opened (leadmgmt.deal); one row per campaign and currency; merged leads excluded';
COMMENT ON COLUMN leadmgmt.campaign_attribution.campaign IS 'activity.campaign of the touches';
COMMENT ON COLUMN leadmgmt.campaign_attribution.model IS 'attribution model used: linear';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_deals IS 'fractional count of won deals in this currency credited to the campaign (sum of its weights)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_amount IS 'sum of deal amount x weight over won deals (NULL amounts add nothing)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_deals IS 'fractional count of open deals in this currency credited to the campaign';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_amount IS 'sum of deal amount x weight over open deals';
COMMENT ON COLUMN leadmgmt.campaign_attribution.currency IS 'ISO 4217 currency of the deals of this row (NULL: deals without an amount or currency)';

-------------------------------------------------------------------------------
-- Learned scoring: logistic regression, AUC, models, rule suggestions
-- (doc/learned.md; C in src/learned.c, src/auc.c, src/core/logreg.c, src/core/auc.c)
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

-- The four aggregates differ only in their arguments and final function, so
-- one template declares them (the same objects as literal CREATE AGGREGATE
-- statements; test/expected/install.out lists them).  SSPACE: state bytes
-- per group measured by bench/aggregates.sh (doc/scaling.md).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('logreg',         'label boolean, features float8[]',            'logreg_final'),
		('logreg',         'label boolean, features float8[], l2 float8', 'logreg_final'),
		('logreg_summary', 'label boolean, features float8[]',            'logreg_summary_final'),
		('logreg_summary', 'label boolean, features float8[], l2 float8', 'logreg_summary_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.logreg_trans,
			STYPE = internal,
			SSPACE = 1024,
			FINALFUNC = leadmgmt.%I,
			COMBINEFUNC = leadmgmt.logreg_combine,
			SERIALFUNC = leadmgmt.logreg_serialize,
			DESERIALFUNC = leadmgmt.logreg_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[]) IS
	'Logistic regression by maximum likelihood (Newton/IRLS): coefficients, intercept first; rows with a NULL label or features are skipped';

COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[], float8) IS
	'L2-regularised logistic regression: minimises -loglik + (l2/2)*||beta_1..p||^2 (intercept not penalised; scikit-learn C = 1/l2); coefficients, intercept first';

COMMENT ON AGGREGATE leadmgmt.logreg_summary(boolean, float8[]) IS
	'Logistic regression with standard errors, z statistics, p-values and odds ratios (leadmgmt.logreg_result)';

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

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.logreg_step(label boolean, features float8[], coef float8[]) (
	SFUNC = leadmgmt.logreg_step_trans,
	STYPE = internal,
	SSPACE = 672,
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

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.auc(score float8, label boolean) (
	SFUNC = leadmgmt.auc_trans,
	STYPE = internal,
	SSPACE = 280,
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
	-- stage by the snapshot left out.  For target_stage 'won' a deal the CRM
	-- reported won (leadmgmt.opportunity, closed_at) counts as reaching it,
	-- also when the stage machine refused to move the lead.
	CREATE TEMPORARY TABLE pg_temp.lm_train_leads ON COMMIT DROP AS
	SELECT l.id, l.created_at + observe AS snapshot,
	       EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                  AND h.changed_at > l.created_at + observe
	                  AND h.changed_at <= l.created_at + observe + horizon)
	       OR (target_stage = 'won'
	           AND EXISTS (SELECT 1 FROM leadmgmt.opportunity o
	                        WHERE o.lead_id = l.id AND o.status = 'won'
	                          AND o.closed_at > l.created_at + observe
	                          AND o.closed_at <= l.created_at + observe + horizon)) AS label,
	       (abs(hashint8extended(l.id, seed) % 1000) < holdout * 1000) AS is_test
	  FROM leadmgmt.lead l
	 WHERE l.merged_into IS NULL
	   AND l.created_at + observe + horizon <= as_of
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                    WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                      AND h.changed_at <= l.created_at + observe)
	   AND NOT (target_stage = 'won'
	            AND EXISTS (SELECT 1 FROM leadmgmt.opportunity o
	                         WHERE o.lead_id = l.id AND o.status = 'won'
	                           AND o.closed_at <= l.created_at + observe));

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
	'Train (or retrain) a learned scoring model: per-lead activity and scoring-rule features at created_at + observe, label "reached target_stage within horizon" (for won also: a deal the CRM reported won), L2 logistic regression, AUC on a seeded hold-out split; stored in leadmgmt.model';

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
-- The key columns (email_key, company_key, phone_key, key_version) are
-- created with the lead table (20_leads.sql).
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
	target := leadmgmt.lead_lock(lead);
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

	-- The lead found may be merged away meanwhile (merge_leads does not take
	-- the key locks): lock it, waiting for a merge in progress, and follow
	-- merged_into to the survivor, which then cannot be merged until we commit.
	target := leadmgmt.lead_lock(target);

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
	pass integer;
	target bigint;
	tries integer;
BEGIN
	IF keep IS NULL OR duplicate IS NULL THEN
		RAISE EXCEPTION 'lead ids must not be null' USING ERRCODE = '22004';
	END IF;
	IF keep = duplicate THEN
		RAISE EXCEPTION 'cannot merge lead % into itself', keep
			USING ERRCODE = 'LM031';
	END IF;
	-- Lock order (doc/operations.md, "Lock order"): the two leads FOR UPDATE
	-- (not NO KEY, so that activity inserts for them, which read their lead
	-- FOR KEY SHARE, wait for us), one at a time in ascending id order, and
	-- both checked before each lock and again after it, so a lead merged
	-- away meanwhile is refused before we wait for it.
	--
	-- A merge never queues for FOR UPDATE behind a writer.  A writer holds
	-- FOR KEY SHARE on its lead from its activity insert on and asks for NO
	-- KEY UPDATE later in the same statement (scoring); a merge queued on
	-- that row in between would wait for the writer that waits for it.  So
	-- the merge queues for NO KEY UPDATE like a writer (which lets KEY SHARE
	-- through), then takes FOR UPDATE only if no writer holds KEY SHARE
	-- (SKIP LOCKED); else it gives the row back (the block is rolled back,
	-- which releases its lock), pauses 1-20 ms and queues again.  After 200
	-- rounds it queues for FOR UPDATE like any session.
	FOR pass IN 1 .. 3 LOOP
		IF pass > 1 THEN
			target := CASE WHEN pass = 2 THEN least(keep, duplicate) ELSE greatest(keep, duplicate) END;
			tries := 0;
			LOOP
				tries := tries + 1;
				IF tries > 200 THEN
					PERFORM 1 FROM leadmgmt.lead l WHERE l.id = target FOR UPDATE;
					EXIT;
				END IF;
				BEGIN
					PERFORM 1 FROM leadmgmt.lead l WHERE l.id = target FOR NO KEY UPDATE;
					EXIT WHEN NOT FOUND;	-- deleted: the checks below say so
					PERFORM 1 FROM leadmgmt.lead l WHERE l.id = target FOR UPDATE SKIP LOCKED;
					EXIT WHEN FOUND;
					RAISE EXCEPTION 'lead % is held by a writer', target USING ERRCODE = 'LM059';
				EXCEPTION WHEN SQLSTATE 'LM059' THEN
					NULL;		-- rolled back: our NO KEY UPDATE is released
				END;
				PERFORM pg_catalog.pg_sleep(0.001 + 0.019 * pg_catalog.random());
			END LOOP;
		END IF;
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
	END LOOP;

	-- the timeline: activities move, the duplicate's stage history stays
	UPDATE leadmgmt.activity a SET lead_id = keep WHERE a.lead_id = duplicate;
	GET DIAGNOSTICS moved = ROW_COUNT;
	UPDATE leadmgmt.lead_external_id x SET lead_id = keep WHERE x.lead_id = duplicate;
	-- leads merged into the duplicate earlier now point at keep directly;
	-- one that another transaction holds keeps pointing at the duplicate
	-- (it resolves the same): waiting for it, out of id order, could close
	-- a circle of waits with a merge that locked it first
	UPDATE leadmgmt.lead l SET merged_into = keep
	 WHERE l.id IN (SELECT x.id FROM leadmgmt.lead x WHERE x.merged_into = duplicate
	                   FOR NO KEY UPDATE SKIP LOCKED);

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

	-- scores follow the activities: both leads rescored from their log, and
	-- keep handed to sales if the merge took it over the threshold
	PERFORM leadmgmt.merge_score(keep, duplicate);
	RETURN keep;
END
$$;
COMMENT ON FUNCTION leadmgmt.merge_leads(bigint, bigint) IS
	'Merge lead duplicate into lead keep: activities and external ids move, keep takes the more advanced stage (history reason ''merge''), empty fields are filled from the duplicate, duplicate.merged_into = keep; idempotent; returns keep';

-- Activities for a merged lead land on the lead it was merged into, also
-- when they race the merge.  New rows are resolved by the activity ingest
-- triggers (activity_score_row and activity_score_statement, src/ingest.c,
-- doc/activity.md), so COPY runs no query per row; this row trigger covers
-- UPDATEs of lead_id (src/identity_merge.c).
CREATE FUNCTION leadmgmt.activity_lead_resolve()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_lead_resolve';
COMMENT ON FUNCTION leadmgmt.activity_lead_resolve() IS
	'Trigger: an activity whose lead_id is updated to a merged lead goes to the lead it was merged into; waits for a merge in progress';
CREATE TRIGGER activity_lead_resolve
	BEFORE UPDATE OF lead_id ON leadmgmt.activity
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

-- What import_leads() and import_resolve() (src/identity_import.c, over
-- src/core/import_replay.c) pass each other: named rows, one type each.
CREATE TYPE leadmgmt.import_row AS (
	id          bigint,
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
	email_key   text,
	phone_key   text,
	company_key text,
	name_key    text
);
COMMENT ON TYPE leadmgmt.import_row IS
	'Internal, for import_leads(): a pending lead_import row as given, with its match keys';
CREATE TYPE leadmgmt.import_lead AS (
	id          bigint,
	email       text,
	name        text,
	company     text,
	phone       text,
	source      text,
	origin      text,
	external_id text,
	attributes  jsonb,
	email_key   text,
	phone_key   text,
	company_key text,
	name_key    text
);
COMMENT ON TYPE leadmgmt.import_lead IS
	'Internal, for import_leads(): a live lead the rows of a list can reach, with its stored match keys and the name key of its current name';
CREATE TYPE leadmgmt.import_link AS (
	system      text,
	external_id text,
	lead_id     bigint
);
COMMENT ON TYPE leadmgmt.import_link IS
	'Internal, for import_leads(): the live lead an external id (system NULL: leadmgmt.lead.external_id) or a system id (leadmgmt.lead_external_id) stands for';
CREATE TYPE leadmgmt.import_outcome AS (
	id          bigint,
	lead_ref    bigint,
	matched_on  text
);
COMMENT ON TYPE leadmgmt.import_outcome IS
	'Internal, for import_leads(): a row''s lead (an id, or -k for the k-th lead the list creates; NULL: nothing to match on) and what it matched on (NULL: created)';
CREATE TYPE leadmgmt.import_fill AS (
	lead_ref    bigint,
	email       text,
	name        text,
	company     text,
	phone       text,
	source      text,
	origin      text,
	external_id text,
	attributes  jsonb
);
COMMENT ON TYPE leadmgmt.import_fill IS
	'Internal, for import_leads(): a lead the list creates or updates (lead_ref as in import_outcome), the values the rows fill in (NULL: none) and its attributes after the import';

CREATE FUNCTION leadmgmt.import_resolve(
	pending leadmgmt.import_row[], leads leadmgmt.import_lead[], links leadmgmt.import_link[],
	OUT outcomes leadmgmt.import_outcome[], OUT fills leadmgmt.import_fill[])
RETURNS record
LANGUAGE c IMMUTABLE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_import_resolve';
COMMENT ON FUNCTION leadmgmt.import_resolve(leadmgmt.import_row[], leadmgmt.import_lead[], leadmgmt.import_link[]) IS
	'Internal step of import_leads(): replays the rows of a list in id order against the leads they can reach, in memory, as upsert_lead() row by row would; returns each row''s lead and match, and the fields and attributes of every lead created or updated';

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
	-- the pending rows with their keys, and the keys one array each (for
	-- the queries)
	pending leadmgmt.import_row[];
	r_ek text[]; r_pk text[]; r_ck text[]; r_xid text[]; r_system text[]; r_system_id text[];
	-- what the rows can reach: external ids and system ids, live leads
	x_links leadmgmt.import_link[];
	s_links leadmgmt.import_link[];
	reach leadmgmt.import_lead[];
	res record;
	new_id bigint[];
	bucket integer;
BEGIN
	imported := 0; matched := 0; created := 0; activities := 0; rejected := 0;

	-- 1. claim the pending rows (row locks, id order) and compute their keys
	-- once (company and name keys once per distinct value: lists repeat them)
	WITH c AS MATERIALIZED (
		SELECT i.id, i.email, i.name, i.company, i.phone, i.source, i.origin, i.external_id,
		       i.system, i.system_id, i.attributes,
		       leadmgmt.normalize_email(i.email) AS ek, leadmgmt.normalize_phone(i.phone, 'JP') AS pk
		  FROM leadmgmt.lead_import i
		 WHERE i.imported_at IS NULL AND (import_leads.batch IS NULL OR i.batch = import_leads.batch)
		 ORDER BY i.id
		   FOR UPDATE OF i),
	ck AS (SELECT d.company, leadmgmt.normalize_company(d.company) AS ck
	         FROM (SELECT DISTINCT c.company FROM c WHERE c.company IS NOT NULL) d),
	nk AS (SELECT d.name, leadmgmt.normalize_name(d.name) AS nk
	         FROM (SELECT DISTINCT c.name FROM c WHERE c.name IS NOT NULL) d)
	SELECT array_agg(ROW(c.id, c.email, c.name, c.company, c.phone, c.source, c.origin, c.external_id,
	                     c.system, c.system_id, c.attributes, c.ek, c.pk, ck.ck, nk.nk)::leadmgmt.import_row),
	       array_agg(c.ek), array_agg(c.pk), array_agg(ck.ck),
	       array_agg(c.external_id), array_agg(c.system), array_agg(c.system_id)
	  INTO pending, r_ek, r_pk, r_ck, r_xid, r_system, r_system_id
	  FROM c
	  LEFT JOIN ck ON ck.company = c.company
	  LEFT JOIN nk ON nk.name = c.name;
	IF pending IS NULL THEN
		RETURN;
	END IF;

	-- 2. the advisory locks of upsert_lead(), by bucket: every bucket a key
	-- of the list falls in, exclusively, ascending
	FOR bucket IN
		SELECT DISTINCT (pg_catalog.hashtextextended('leadmgmt.lead:' || k.k, 0) & 1023)::integer
		  FROM unnest(pending) AS r,
		       unnest(ARRAY['e:' || r.email_key, 'p:' || r.phone_key,
		                    'c:' || r.company_key || ':' || r.name_key, 'x:' || r.external_id]) AS k(k)
		 WHERE k.k IS NOT NULL
		 ORDER BY 1
	LOOP
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('leadmgmt.lead'), bucket);
	END LOOP;

	-- 3. what the rows can reach (a new snapshot: what others committed
	-- before we got the locks).  merge_leads() takes no key locks: the
	-- leads are locked FOR KEY SHARE (lead_lock, and in id order below), so
	-- a lead merged while we waited is passed over for its survivor, and
	-- none can be merged away before we commit.
	SELECT array_agg(ROW(NULL, x.external_id, leadmgmt.lead_lock(x.id))::leadmgmt.import_link)
	  INTO x_links
	  FROM leadmgmt.lead x
	 WHERE x.external_id = ANY (r_xid);
	SELECT array_agg(ROW(s.system, s.external_id, leadmgmt.lead_lock(s.lead_id))::leadmgmt.import_link)
	  INTO s_links
	  FROM leadmgmt.lead_external_id s
	 WHERE (s.system, s.external_id) IN (SELECT u.system, u.system_id
	                                       FROM unnest(r_system, r_system_id) AS u(system, system_id));
	x_links := COALESCE(x_links, '{}') || COALESCE(s_links, '{}');
	SELECT array_agg(ROW(c.id, c.email, c.name, c.company, c.phone, c.source, c.origin, c.external_id,
	                     c.attributes, c.email_key, c.phone_key, c.company_key,
	                     leadmgmt.normalize_name(c.name))::leadmgmt.import_lead)
	  INTO reach
	  FROM (SELECT c.*
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
	                        SELECT k.lead_id FROM unnest(x_links) AS k)
	           AND c.merged_into IS NULL
	         ORDER BY c.id
	           FOR KEY SHARE OF c) c;

	-- 4. replay the rows in id order, in memory
	SELECT * INTO res
	  FROM leadmgmt.import_resolve(pending, COALESCE(reach, '{}'), x_links);

	-- 5. ids of the new leads, in creation order
	new_id := ARRAY(SELECT pg_catalog.nextval('leadmgmt.lead_id_seq')
	                  FROM pg_catalog.generate_series(1, (SELECT count(*) FROM unnest(res.fills) AS f
	                                                       WHERE f.lead_ref < 0)));

	-- 6. new leads: the fields of the rows that created or filled them
	INSERT INTO leadmgmt.lead (id, email, name, company, phone, source, origin, external_id, attributes)
	SELECT new_id[-f.lead_ref], f.email, f.name, f.company, f.phone, f.source, f.origin, f.external_id,
	       f.attributes
	  FROM unnest(res.fills) AS f
	 WHERE f.lead_ref < 0
	 ORDER BY f.lead_ref DESC;

	-- 7. matched leads: fill their gaps (row locks in id order first, as
	-- merge_leads() takes them)
	PERFORM 1 FROM leadmgmt.lead l
	 WHERE l.id IN (SELECT f.lead_ref FROM unnest(res.fills) AS f WHERE f.lead_ref > 0)
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
		attributes = f.attributes,
		updated_at = pg_catalog.now()
	  FROM unnest(res.fills) AS f
	 WHERE f.lead_ref > 0 AND l.id = f.lead_ref;

	-- 8. system ids seen for the first time
	INSERT INTO leadmgmt.lead_external_id (system, external_id, lead_id)
	SELECT i.system, i.system_id, CASE WHEN r.lead_ref < 0 THEN new_id[-r.lead_ref] ELSE r.lead_ref END
	  FROM unnest(res.outcomes) AS r
	  JOIN leadmgmt.lead_import i ON i.id = r.id
	 WHERE r.lead_ref IS NOT NULL AND r.matched_on IS DISTINCT FROM 'system_id'
	   AND i.system IS NOT NULL AND i.system_id IS NOT NULL
	 ORDER BY r.id;

	-- 9. the list as activity on the leads: one statement, so scoring runs
	-- once for all of them (statement trigger)
	INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, channel)
	SELECT CASE WHEN r.lead_ref < 0 THEN new_id[-r.lead_ref] ELSE r.lead_ref END, i.kind,
	       COALESCE(i.occurred_at, pg_catalog.now()), i.campaign, i.detail, 'import'
	  FROM unnest(res.outcomes) AS r
	  JOIN leadmgmt.lead_import i ON i.id = r.id
	 WHERE r.lead_ref IS NOT NULL AND i.kind IS NOT NULL
	 ORDER BY r.id;
	GET DIAGNOSTICS activities = ROW_COUNT;

	-- 10. the outcome on the staging rows
	UPDATE leadmgmt.lead_import i SET
		lead_id = CASE WHEN r.lead_ref IS NULL THEN i.lead_id
		               WHEN r.lead_ref < 0 THEN new_id[-r.lead_ref] ELSE r.lead_ref END,
		matched = CASE WHEN r.lead_ref IS NULL THEN i.matched ELSE r.matched_on IS NOT NULL END,
		matched_on = CASE WHEN r.lead_ref IS NULL THEN i.matched_on ELSE r.matched_on END,
		error = CASE WHEN r.lead_ref IS NULL
		             THEN 'nothing to match on: no usable e-mail, phone, company and name, or external id'
		             ELSE i.error END,
		imported_at = pg_catalog.now()
	  FROM unnest(res.outcomes) AS r
	 WHERE i.id = r.id;

	SELECT count(*) FILTER (WHERE r.lead_ref IS NOT NULL), count(*) FILTER (WHERE r.matched_on IS NOT NULL),
	       count(*) FILTER (WHERE r.lead_ref IS NOT NULL AND r.matched_on IS NULL),
	       count(*) FILTER (WHERE r.lead_ref IS NULL)
	  INTO imported, matched, created, rejected
	  FROM unnest(res.outcomes) AS r;
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
-- email_bounce and unsubscribe activities set lead.email_status, and
-- unsubscribes log an e-mail consent withdrawal here, through this part's
-- own trigger on leadmgmt.activity (below the consent table).
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

-- Bounces and unsubscribes, once per statement from the transition table
-- (src/consent.c): the trigger's arguments are the bounce kind and the
-- unsubscribe kind.  Its name makes it fire after activity_score_statement
-- (the triggers of one event fire in name order), which has locked every
-- lead of the statement in id order: so it takes no new lock, and
-- concurrent loads cannot deadlock on the order of the two.
CREATE FUNCTION leadmgmt.activity_consent()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_consent';
COMMENT ON FUNCTION leadmgmt.activity_consent() IS
	'Trigger: new activities of the bounce kind (argument 1) mark the lead''s e-mail bounced, of the unsubscribe kind (argument 2) unsubscribed, with an e-mail consent withdrawal; once per statement';
CREATE TRIGGER activity_suppression
	AFTER INSERT ON leadmgmt.activity
	REFERENCING NEW TABLE AS new_activity
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.activity_consent('email_bounce', 'unsubscribe');

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
	target := leadmgmt.lead_lock(consent.lead_id);
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

-- Erasure: personal data goes, counts, stages, scores and history stay, so
-- funnel metrics remain correct.  The lead's forgotten_at column is created
-- with the lead table (20_leads.sql).

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
	-- locked: no merge can move the person while we erase it
	target := leadmgmt.lead_lock(lead);
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
-- The sales loop: change feed for CRM connectors, campaigns and their ROI
-- (doc/integration.md, doc/analytics.md)
-------------------------------------------------------------------------------
-- A transactional outbox.  Triggers append a row to leadmgmt.change in the
-- transaction that made the change; connectors page through it with
-- read_changes()/ack_changes().
--
-- No lost change: a writer's row becomes readable only once every
-- transaction that was running when it could have been written has ended.
-- Each row records the top-level xid8 of its writer; read_changes() gives
-- a position (from change_position_seq, under one lock) to the rows whose
-- xid is below the xmin of its snapshot, in (xid, id) order, and hands out
-- rows by position.  Rows below the xmin are final (no transaction that
-- could still add or remove one is running), and positions are only ever
-- given after every smaller one is visible, so a reader that acknowledged
-- position p can never later find an unread row below p.
CREATE SEQUENCE leadmgmt.change_id_seq AS bigint;
CREATE SEQUENCE leadmgmt.change_position_seq AS bigint;
CREATE TABLE leadmgmt.change (
	position bigint CONSTRAINT change_position_key UNIQUE,
	at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	kind     text NOT NULL
	         CONSTRAINT change_kind_known CHECK (kind IN ('lead_created', 'lead_updated', 'stage_changed', 'handoff',
	                                                      'lead_merged', 'lead_forgotten', 'opportunity_changed')),
	lead_id  bigint,
	payload  jsonb NOT NULL DEFAULT '{}',
	id       bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.change_id_seq'),
	xid      xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
ALTER SEQUENCE leadmgmt.change_id_seq OWNED BY leadmgmt.change.id;
ALTER SEQUENCE leadmgmt.change_position_seq OWNED BY leadmgmt.change.position;
CREATE INDEX change_unsequenced_idx ON leadmgmt.change (xid, id) WHERE position IS NULL;
COMMENT ON TABLE leadmgmt.change IS
	'Change feed (transactional outbox) for CRM connectors: one row per change, written by triggers in the changing transaction; read with leadmgmt.read_changes()';
COMMENT ON COLUMN leadmgmt.change.position IS
	'place in the feed, given by read_changes() once no older transaction can still commit (NULL until then); increases in the order the rows are handed out';
COMMENT ON COLUMN leadmgmt.change.at IS 'time of the changing transaction';
COMMENT ON COLUMN leadmgmt.change.kind IS
	'lead_created, lead_updated, stage_changed, handoff (entry into mql), lead_merged, lead_forgotten or opportunity_changed';
COMMENT ON COLUMN leadmgmt.change.lead_id IS 'the lead (no foreign key: changes outlive deleted leads)';
COMMENT ON COLUMN leadmgmt.change.payload IS
	'ids, stages, score and reason; never contact data (a connector reads those from leadmgmt.lead with its own privileges)';
COMMENT ON COLUMN leadmgmt.change.id IS 'row id, in the order the rows were written';
COMMENT ON COLUMN leadmgmt.change.xid IS 'top-level transaction id (xid8) of the writer';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_position_seq', '');

CREATE TABLE leadmgmt.change_consumer (
	name           text PRIMARY KEY
	               CONSTRAINT change_consumer_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	acked_position bigint NOT NULL DEFAULT 0,
	read_position  bigint NOT NULL DEFAULT 0,
	created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	read_at        timestamptz,
	acked_at       timestamptz,
	CONSTRAINT change_consumer_ack_read CHECK (acked_position <= read_position)
);
COMMENT ON TABLE leadmgmt.change_consumer IS
	'Cursors of the change feed''s consumers; an admin adds a row per connector (INSERT ... (name)); deleting it releases the changes kept for it';
COMMENT ON COLUMN leadmgmt.change_consumer.name IS 'consumer name, a lower-case identifier';
COMMENT ON COLUMN leadmgmt.change_consumer.acked_position IS 'every change up to this position is acknowledged (ack_changes)';
COMMENT ON COLUMN leadmgmt.change_consumer.read_position IS 'highest position read_changes() handed out to the consumer';
COMMENT ON COLUMN leadmgmt.change_consumer.created_at IS 'when the consumer was added';
COMMENT ON COLUMN leadmgmt.change_consumer.read_at IS 'last read_changes() call';
COMMENT ON COLUMN leadmgmt.change_consumer.acked_at IS 'last ack_changes() call that moved the cursor';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_consumer', '');

-- Trigger functions: SECURITY DEFINER (writers need no privilege on the
-- feed) with a pinned search_path; the per-statement ones (new leads, stage
-- entries) add one INSERT per statement, whatever the number of rows.
CREATE FUNCTION leadmgmt.change_lead_created()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	SELECT 'lead_created', n.id,
	       pg_catalog.jsonb_build_object('stage', n.stage, 'score', n.score, 'source', n.source, 'origin', n.origin)
	  FROM new_leads n ORDER BY n.id;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_created() IS
	'Trigger: a lead_created change per new lead';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_created() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_lead_updated()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_updated', NEW.id, pg_catalog.jsonb_build_object('fields', pg_catalog.array_remove(ARRAY[
		CASE WHEN NEW.email IS DISTINCT FROM OLD.email THEN 'email' END,
		CASE WHEN NEW.name IS DISTINCT FROM OLD.name THEN 'name' END,
		CASE WHEN NEW.company IS DISTINCT FROM OLD.company THEN 'company' END,
		CASE WHEN NEW.phone IS DISTINCT FROM OLD.phone THEN 'phone' END,
		CASE WHEN NEW.external_id IS DISTINCT FROM OLD.external_id THEN 'external_id' END,
		CASE WHEN NEW.owner IS DISTINCT FROM OLD.owner THEN 'owner' END,
		CASE WHEN NEW.email_status IS DISTINCT FROM OLD.email_status THEN 'email_status' END], NULL::text)));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_updated() IS
	'Trigger: a lead_updated change naming the contact fields that changed (not their values)';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_updated() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_stage_entered()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- a row trigger: the stage machine writes history one row per statement,
	-- and the trigger's WHEN leaves out the entry stage of a new lead (in
	-- lead_created) and notes such as merges (from_stage = to_stage)
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES (CASE WHEN NEW.to_stage = 'mql' THEN 'handoff' ELSE 'stage_changed' END, NEW.lead_id,
	        jsonb_build_object('from_stage', NEW.from_stage, 'to_stage', NEW.to_stage,
	                           'changed_at', NEW.changed_at, 'reason', NEW.reason,
	                           'score', (SELECT l.score FROM leadmgmt.lead l WHERE l.id = NEW.lead_id)));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_stage_entered() IS
	'Trigger: a stage_changed change per stage move (handoff for entries into mql), with stages, time, reason and score';
REVOKE ALL ON FUNCTION leadmgmt.change_stage_entered() FROM PUBLIC;

-- Merges and forgets are seen on the lead row (merged_into, forgotten_at),
-- whatever function made them.
CREATE FUNCTION leadmgmt.change_lead_merged()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- the duplicate's deals follow it to the lead it was merged into
	UPDATE leadmgmt.opportunity o SET lead_id = NEW.merged_into
	 WHERE o.lead_id OPERATOR(pg_catalog.=) NEW.id;
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_merged', NEW.id, pg_catalog.jsonb_build_object('merged_into', NEW.merged_into,
	                                                             'previously_merged_into', OLD.merged_into));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_merged() IS
	'Trigger: when a lead is merged into another, its opportunities move along and a lead_merged change names the kept lead';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_merged() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_lead_forgotten()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- deal names and CRM extras may name the person
	UPDATE leadmgmt.opportunity o SET name = NULL, props = '{}'
	 WHERE o.lead_id OPERATOR(pg_catalog.=) NEW.id
	   AND (o.name IS NOT NULL OR o.props OPERATOR(pg_catalog.<>) '{}'::jsonb);
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_forgotten', NEW.id, pg_catalog.jsonb_build_object('forgotten_at', NEW.forgotten_at));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_forgotten() IS
	'Trigger: when forget_lead() erases a lead, its deals lose their names and CRM extras and a lead_forgotten change tells connectors to erase it too';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_forgotten() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_opportunity()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('opportunity_changed', NEW.lead_id,
	        pg_catalog.jsonb_build_object('opportunity_id', NEW.id, 'crm_id', NEW.crm_id, 'status', NEW.status,
	                                      'amount', NEW.amount, 'currency', NEW.currency,
	                                      'previous_lead_id', CASE WHEN TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
	                                                                AND OLD.lead_id OPERATOR(pg_catalog.<>) NEW.lead_id
	                                                               THEN OLD.lead_id END));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_opportunity() IS
	'Trigger: an opportunity_changed change with the deal''s ids, status and amount';
REVOKE ALL ON FUNCTION leadmgmt.change_opportunity() FROM PUBLIC;

-- NOTIFY is delivered by PostgreSQL at commit, once per transaction and
-- channel (equal payloads fold), and never carries data: it only wakes.
CREATE FUNCTION leadmgmt.change_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- once per transaction: PostgreSQL folds equal notifications anyway, so
	-- the later statements of a transaction skip the work.  The marker is a
	-- transaction-local setting holding the transaction id (it is undone
	-- with a rolled-back subtransaction, as the notification is).
	IF current_setting('leadmgmt_change.notified', true) IS DISTINCT FROM pg_current_xact_id()::text THEN
		PERFORM set_config('leadmgmt_change.notified', pg_current_xact_id()::text, true);
		-- the setting read directly (get_setting() costs more): the
		-- override, else the default from setting_defaults()
		PERFORM pg_notify(coalesce((SELECT s.value FROM leadmgmt.setting s WHERE s.key = 'change_channel'),
		                           (SELECT d.default_value FROM leadmgmt.setting_defaults() d
		                             WHERE d.key = 'change_channel')), '');
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_notify() IS
	'Trigger: NOTIFY on the change_channel setting when a transaction wrote changes (delivered at commit)';

CREATE TRIGGER change_lead_created
	AFTER INSERT ON leadmgmt.lead
	REFERENCING NEW TABLE AS new_leads
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.change_lead_created();
CREATE TRIGGER change_lead_updated
	AFTER UPDATE OF email, name, company, phone, external_id, owner, email_status ON leadmgmt.lead
	FOR EACH ROW
	WHEN ((OLD.email, OLD.name, OLD.company, OLD.phone, OLD.external_id, OLD.owner, OLD.email_status)
	      IS DISTINCT FROM (NEW.email, NEW.name, NEW.company, NEW.phone, NEW.external_id, NEW.owner, NEW.email_status)
	      AND OLD.forgotten_at IS NOT DISTINCT FROM NEW.forgotten_at)
	EXECUTE FUNCTION leadmgmt.change_lead_updated();
CREATE TRIGGER change_lead_merged
	AFTER UPDATE OF merged_into ON leadmgmt.lead
	FOR EACH ROW WHEN (NEW.merged_into IS NOT NULL AND OLD.merged_into IS DISTINCT FROM NEW.merged_into)
	EXECUTE FUNCTION leadmgmt.change_lead_merged();
CREATE TRIGGER change_lead_forgotten
	AFTER UPDATE OF forgotten_at ON leadmgmt.lead
	FOR EACH ROW WHEN (NEW.forgotten_at IS NOT NULL AND OLD.forgotten_at IS DISTINCT FROM NEW.forgotten_at)
	EXECUTE FUNCTION leadmgmt.change_lead_forgotten();
CREATE TRIGGER change_stage_entered
	AFTER INSERT ON leadmgmt.stage_history
	FOR EACH ROW WHEN (NEW.from_stage IS NOT NULL AND NEW.from_stage <> NEW.to_stage)
	EXECUTE FUNCTION leadmgmt.change_stage_entered();
CREATE TRIGGER change_opportunity
	AFTER INSERT OR UPDATE ON leadmgmt.opportunity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.change_opportunity();
CREATE TRIGGER change_notify
	AFTER INSERT ON leadmgmt.change
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.change_notify();

-- Reading: one sequencer at a time (a transaction-level advisory lock in
-- the two-key space, which upsert_lead's one-key locks never meet).
CREATE FUNCTION leadmgmt.read_changes(consumer text, max_rows integer DEFAULT 1000)
RETURNS TABLE ("position" bigint, at timestamptz, kind text, lead_id bigint, payload jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	cur leadmgmt.change_consumer;
BEGIN
	IF consumer IS NULL OR max_rows IS NULL OR max_rows < 1 THEN
		RAISE EXCEPTION 'consumer must not be null and max_rows must be at least 1'
			USING ERRCODE = '22023', HINT = 'Call leadmgmt.read_changes(''my_connector'', 1000).';
	END IF;
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		-- an older snapshot could miss positions given after it was taken
		RAISE EXCEPTION 'read_changes() needs a READ COMMITTED transaction, this one is %',
			upper(current_setting('transaction_isolation'))
			USING ERRCODE = 'LM086',
			      HINT = 'Call it outside an explicit REPEATABLE READ or SERIALIZABLE transaction.';
	END IF;
	SELECT * INTO cur FROM leadmgmt.change_consumer c WHERE c.name = read_changes.consumer FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown change consumer "%"', consumer
			USING ERRCODE = 'LM084',
			      HINT = 'An admin adds it: INSERT INTO leadmgmt.change_consumer (name) VALUES (''' || consumer || ''').';
	END IF;

	PERFORM pg_advisory_xact_lock(hashtext('leadmgmt.change_position'), 0);
	-- positions for the rows no running transaction can add to any more
	UPDATE leadmgmt.change c SET position = s.pos
	  FROM (SELECT o.id, nextval('leadmgmt.change_position_seq') AS pos
	          FROM (SELECT u.id FROM leadmgmt.change u
	                 WHERE u.position IS NULL
	                   AND u.xid < pg_snapshot_xmin(pg_current_snapshot())
	                 ORDER BY u.xid, u.id
	                 LIMIT greatest(read_changes.max_rows, 10000)) o) s
	 WHERE c.id = s.id;

	RETURN QUERY
	WITH batch AS (
		SELECT c.position, c.at, c.kind, c.lead_id, c.payload
		  FROM leadmgmt.change c
		 WHERE c.position > cur.acked_position
		 ORDER BY c.position
		 LIMIT read_changes.max_rows
	), mark AS (
		UPDATE leadmgmt.change_consumer m
		   SET read_position = greatest(m.read_position, coalesce((SELECT max(b.position) FROM batch b), 0)),
		       read_at = now()
		 WHERE m.name = read_changes.consumer
	)
	SELECT b.position, b.at, b.kind, b.lead_id, b.payload FROM batch b ORDER BY b.position;
END
$$;
COMMENT ON FUNCTION leadmgmt.read_changes(text, integer) IS
	'The next changes after the consumer''s acknowledged position, at most max_rows, in position order; a batch not acknowledged is handed out again (at-least-once); never skips a change that commits late';
REVOKE ALL ON FUNCTION leadmgmt.read_changes(text, integer) FROM PUBLIC;

CREATE FUNCTION leadmgmt.ack_changes(consumer text, upto bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur leadmgmt.change_consumer;
BEGIN
	IF consumer IS NULL OR upto IS NULL THEN
		RAISE EXCEPTION 'consumer and upto must not be null' USING ERRCODE = '22004',
			HINT = 'Pass the position of the last change of the batch you processed.';
	END IF;
	SELECT * INTO cur FROM leadmgmt.change_consumer c WHERE c.name = ack_changes.consumer FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown change consumer "%"', consumer
			USING ERRCODE = 'LM084',
			      HINT = 'An admin adds it: INSERT INTO leadmgmt.change_consumer (name) VALUES (''' || consumer || ''').';
	END IF;
	IF upto > cur.read_position THEN
		RAISE EXCEPTION 'cannot acknowledge position % for consumer "%": it has read up to position %',
			upto, consumer, cur.read_position
			USING ERRCODE = 'LM085',
			      HINT = 'Acknowledge only changes read_changes() returned: pass the position of the last change of the batch.';
	END IF;
	IF upto <= cur.acked_position THEN
		RETURN cur.acked_position;	-- acknowledged already: a repeated ack is harmless
	END IF;
	UPDATE leadmgmt.change_consumer c SET acked_position = upto, acked_at = now()
	 WHERE c.name = ack_changes.consumer;
	-- what every consumer has acknowledged is not needed any more
	DELETE FROM leadmgmt.change c
	 WHERE c.position <= (SELECT min(x.acked_position) FROM leadmgmt.change_consumer x);
	RETURN upto;
END
$$;
COMMENT ON FUNCTION leadmgmt.ack_changes(text, bigint) IS
	'Acknowledge every change up to position upto for the consumer; changes every consumer acknowledged are purged; returns the acknowledged position';
REVOKE ALL ON FUNCTION leadmgmt.ack_changes(text, bigint) FROM PUBLIC;

CREATE VIEW leadmgmt.change_lag WITH (security_invoker = true) AS
	SELECT k.name AS consumer, k.acked_position, k.read_position,
	       count(c.id) AS pending, min(c.at) AS oldest_pending_at,
	       COALESCE(min(c.at) < now() - leadmgmt.get_setting('change_retention')::interval, false) AS lagging
	  FROM leadmgmt.change_consumer k
	  LEFT JOIN leadmgmt.change c ON c.position > k.acked_position OR c.position IS NULL
	 GROUP BY k.name, k.acked_position, k.read_position;
COMMENT ON VIEW leadmgmt.change_lag IS
	'Per change feed consumer: what it has not acknowledged yet, and whether it lags behind the change_retention setting';
COMMENT ON COLUMN leadmgmt.change_lag.consumer IS 'consumer name';
COMMENT ON COLUMN leadmgmt.change_lag.acked_position IS 'acknowledged up to this position';
COMMENT ON COLUMN leadmgmt.change_lag.read_position IS 'handed out up to this position';
COMMENT ON COLUMN leadmgmt.change_lag.pending IS 'changes kept for it: not acknowledged, or not yet given a position';
COMMENT ON COLUMN leadmgmt.change_lag.oldest_pending_at IS 'time of the oldest of them';
COMMENT ON COLUMN leadmgmt.change_lag.lagging IS 'the oldest is older than change_retention: purge_changes() keeps them and warns';

CREATE FUNCTION leadmgmt.purge_changes()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
	more bigint;
	lag record;
BEGIN
	IF EXISTS (SELECT 1 FROM leadmgmt.change_consumer) THEN
		-- acknowledged by everybody; older ones are still needed by someone
		DELETE FROM leadmgmt.change c
		 WHERE c.position <= (SELECT min(x.acked_position) FROM leadmgmt.change_consumer x);
		GET DIAGNOSTICS purged = ROW_COUNT;
		FOR lag IN SELECT l.consumer, l.pending, l.oldest_pending_at FROM leadmgmt.change_lag l
		            WHERE l.lagging ORDER BY l.consumer LOOP
			RAISE WARNING 'change consumer "%" lags: % changes kept for it, the oldest from %',
				lag.consumer, lag.pending, lag.oldest_pending_at
				USING DETAIL = 'Changes older than change_retention (' || leadmgmt.get_setting('change_retention')
				               || ') are kept while a consumer has not acknowledged them.',
				      HINT = 'Let the connector catch up, or delete its row from leadmgmt.change_consumer to release them.';
		END LOOP;
	ELSE
		-- nobody reads the feed: keep change_retention of it for the next consumer
		DELETE FROM leadmgmt.change c
		 WHERE c.at < now() - leadmgmt.get_setting('change_retention')::interval;
		GET DIAGNOSTICS purged = ROW_COUNT;
	END IF;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION leadmgmt.purge_changes() IS
	'Purge the change feed: changes every consumer acknowledged; without consumers, changes older than change_retention; warns about consumers lagging behind change_retention; returns the rows purged';
REVOKE ALL ON FUNCTION leadmgmt.purge_changes() FROM PUBLIC;

-------------------------------------------------------------------------------
-- Campaigns: cost, and what they brought (doc/analytics.md)
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.campaign (
	name      text PRIMARY KEY CONSTRAINT campaign_name_not_empty CHECK (name <> ''),
	channel   text,
	starts_on date,
	ends_on   date,
	cost      numeric NOT NULL DEFAULT 0 CONSTRAINT campaign_cost_not_negative CHECK (cost >= 0),
	currency  text NOT NULL CONSTRAINT campaign_currency_iso4217 CHECK (currency ~ '^[A-Z]{3}$'),
	CONSTRAINT campaign_dates_in_order CHECK (ends_on >= starts_on)
);
COMMENT ON TABLE leadmgmt.campaign IS 'Campaigns with their cost; name is the activity.campaign value of their touches';
COMMENT ON COLUMN leadmgmt.campaign.name IS 'the activity.campaign value of the campaign''s touches';
COMMENT ON COLUMN leadmgmt.campaign.channel IS 'email, seminar, exhibition, ads, ... (free text)';
COMMENT ON COLUMN leadmgmt.campaign.starts_on IS 'first day';
COMMENT ON COLUMN leadmgmt.campaign.ends_on IS 'last day';
COMMENT ON COLUMN leadmgmt.campaign.cost IS 'what the campaign cost (>= 0), in currency';
COMMENT ON COLUMN leadmgmt.campaign.currency IS 'ISO 4217 currency of cost';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.campaign', '');

-- Validation with a SQLSTATE and a hint (the CHECK constraints stay as the
-- backstop for restores that disable triggers).
CREATE FUNCTION leadmgmt.campaign_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.cost IS NULL OR NEW.cost OPERATOR(pg_catalog.<) 0 OR NEW.cost OPERATOR(pg_catalog.=) 'NaN'::numeric
	   OR NEW.cost OPERATOR(pg_catalog.=) 'Infinity'::numeric THEN
		RAISE EXCEPTION 'campaign "%": cost must be a finite number >= 0, got %', NEW.name, coalesce(NEW.cost::text, 'NULL')
			USING ERRCODE = 'LM080', HINT = 'Give what the campaign cost; 0 for a free one.';
	END IF;
	IF NEW.currency IS NULL OR NEW.currency OPERATOR(pg_catalog.!~) '^[A-Z]{3}$' THEN
		RAISE EXCEPTION 'campaign "%": currency "%" is not an ISO 4217 code', NEW.name, coalesce(NEW.currency, 'NULL')
			USING ERRCODE = 'LM082',
			      HINT = 'Give the currency of the cost as three capital letters such as JPY; also for a cost of 0.';
	END IF;
	IF NEW.ends_on OPERATOR(pg_catalog.<) NEW.starts_on THEN
		RAISE EXCEPTION 'campaign "%" ends on % before it starts on %', NEW.name, NEW.ends_on, NEW.starts_on
			USING ERRCODE = 'LM083', HINT = 'Swap the dates or leave ends_on NULL.';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadmgmt.campaign_check() IS
	'Trigger: validates a campaign''s cost, currency and dates with SQLSTATEs and hints';
CREATE TRIGGER campaign_check
	BEFORE INSERT OR UPDATE ON leadmgmt.campaign
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.campaign_check();

-- ROI per campaign and currency.  Credit is linear (the model column says
-- so) over a live lead's campaign touches strictly before the milestone:
-- its first entry into mql or sql, or a deal's credited_at (leadmgmt.deal).
-- The campaign's own row (currency = campaign.currency) carries cost, reach
-- and stage counts, plus the deals in that currency and those without an
-- amount; deals in another currency get a row of their own with only
-- won_deals, revenue and pipeline, so no sum ever mixes currencies.
CREATE VIEW leadmgmt.campaign_roi WITH (security_invoker = true) AS
	WITH touch AS (
		SELECT a.lead_id, a.campaign, a.occurred_at, a.id
		  FROM leadmgmt.activity a
		  JOIN leadmgmt.lead l ON l.id = a.lead_id
		 WHERE a.campaign IS NOT NULL AND l.merged_into IS NULL
	), reach AS (
		SELECT t.campaign, count(DISTINCT t.lead_id) AS leads_touched
		  FROM touch t GROUP BY t.campaign
	), first_touch AS (
		SELECT f.campaign, count(*) AS leads_first_touched
		  FROM (SELECT DISTINCT ON (t.lead_id) t.lead_id, t.campaign
		          FROM touch t ORDER BY t.lead_id, t.occurred_at, t.id) f
		 GROUP BY f.campaign
	), milestone AS (
		SELECT w.stage, e.key AS campaign, sum(e.value::numeric) AS credit
		  FROM (SELECT h.to_stage AS stage, h.lead_id,
		               leadmgmt.attribution('linear', t.campaign, t.occurred_at) AS weights
		          FROM leadmgmt.stage_history h
		          JOIN touch t ON t.lead_id = h.lead_id AND t.occurred_at < h.changed_at
		         WHERE h.to_stage IN ('mql', 'sql') AND h.entry_number = 1
		         GROUP BY h.to_stage, h.lead_id) w,
		       jsonb_each(w.weights) e
		 GROUP BY w.stage, e.key
	), deal_credit AS (
		SELECT e.key AS campaign, d.currency,
		       sum(e.value::numeric) FILTER (WHERE d.status = 'won') AS won_deals,
		       sum(d.amount * e.value::numeric) FILTER (WHERE d.status = 'won') AS revenue,
		       sum(d.amount * e.value::numeric) FILTER (WHERE d.status = 'open') AS pipeline
		  FROM (SELECT d.status, d.amount, d.currency,
		               leadmgmt.attribution('linear', t.campaign, t.occurred_at) AS weights
		          FROM leadmgmt.deal d
		          JOIN touch t ON t.lead_id = d.lead_id AND t.occurred_at < d.credited_at
		         WHERE d.status IN ('won', 'open')
		         GROUP BY d.lead_id, d.opportunity_id, d.status, d.amount, d.currency) d,
		       jsonb_each(d.weights) e
		 GROUP BY e.key, d.currency
	), per_currency AS (
		-- deals without a currency (no amount) count on the campaign's own row
		SELECT dc.campaign, coalesce(dc.currency, c.currency) AS currency,
		       sum(dc.won_deals) AS won_deals, sum(dc.revenue) AS revenue, sum(dc.pipeline) AS pipeline
		  FROM deal_credit dc JOIN leadmgmt.campaign c ON c.name = dc.campaign
		 GROUP BY 1, 2
	), total_won AS (
		SELECT dc.campaign, sum(dc.won_deals) AS won_deals FROM deal_credit dc GROUP BY 1
	), row_key AS (
		SELECT c.name AS campaign, c.currency FROM leadmgmt.campaign c
		UNION
		SELECT p.campaign, p.currency FROM per_currency p
	), base AS (
		SELECT k.campaign, k.currency, k.currency = c.currency AS own,
		       c.cost, r.leads_touched, f.leads_first_touched,
		       mq.credit AS mqls, sq.credit AS sqls, tw.won_deals AS all_won,
		       p.won_deals, p.revenue, p.pipeline
		  FROM row_key k
		  JOIN leadmgmt.campaign c ON c.name = k.campaign
		  LEFT JOIN reach r ON r.campaign = k.campaign
		  LEFT JOIN first_touch f ON f.campaign = k.campaign
		  LEFT JOIN milestone mq ON mq.campaign = k.campaign AND mq.stage = 'mql'
		  LEFT JOIN milestone sq ON sq.campaign = k.campaign AND sq.stage = 'sql'
		  LEFT JOIN total_won tw ON tw.campaign = k.campaign
		  LEFT JOIN per_currency p ON p.campaign = k.campaign AND p.currency = k.currency
	)
	SELECT b.campaign, b.currency, 'linear'::text AS model,
	       CASE WHEN b.own THEN b.cost END AS cost,
	       CASE WHEN b.own THEN coalesce(b.leads_touched, 0) END AS leads_touched,
	       CASE WHEN b.own THEN coalesce(b.leads_first_touched, 0) END AS leads_first_touched,
	       CASE WHEN b.own THEN coalesce(b.mqls, 0)::float8 END AS mqls,
	       CASE WHEN b.own THEN coalesce(b.sqls, 0)::float8 END AS sqls,
	       coalesce(b.won_deals, 0)::float8 AS won_deals,
	       trim_scale(coalesce(b.revenue, 0)) AS revenue,
	       trim_scale(coalesce(b.pipeline, 0)) AS pipeline,
	       CASE WHEN b.own THEN round(b.cost / nullif(b.leads_touched, 0), 2) END AS cost_per_lead,
	       CASE WHEN b.own THEN round(b.cost / nullif(round(b.mqls, 12), 0), 2) END AS cost_per_mql,
	       CASE WHEN b.own THEN round(b.cost / nullif(round(b.all_won, 12), 0), 2) END AS cost_per_won,
	       CASE WHEN b.own AND b.cost > 0
	            THEN ((coalesce(b.revenue, 0) - b.cost) / b.cost)::float8 END AS roi
	  FROM base b;
COMMENT ON VIEW leadmgmt.campaign_roi IS
	'Per campaign and currency: cost, reach, MQLs, SQLs and won deals credited by the linear model, revenue won, open pipeline, cost per lead/MQL/won deal and ROI; currencies never mixed';
COMMENT ON COLUMN leadmgmt.campaign_roi.campaign IS 'leadmgmt.campaign.name';
COMMENT ON COLUMN leadmgmt.campaign_roi.currency IS 'currency of the row: the campaign''s own (cost) or that of deals credited to it';
COMMENT ON COLUMN leadmgmt.campaign_roi.model IS 'attribution model of mqls, sqls, won_deals, revenue and pipeline: linear';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost IS 'campaign cost (NULL on rows of another currency)';
COMMENT ON COLUMN leadmgmt.campaign_roi.leads_touched IS 'live leads with a touch of the campaign (on the campaign''s own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.leads_first_touched IS 'live leads whose first campaign touch was this campaign (on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.mqls IS 'leads credited for their first entry into mql (fractional, linear model; on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.sqls IS 'leads credited for their first entry into sql (fractional, linear model; on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.won_deals IS 'won deals in this currency credited to the campaign (fractional; deals without an amount on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.revenue IS 'sum of won deal amount x credit, in this currency';
COMMENT ON COLUMN leadmgmt.campaign_roi.pipeline IS 'sum of open deal amount x credit, in this currency';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_lead IS 'cost / leads_touched (NULL without leads)';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_mql IS 'cost / mqls (NULL without MQLs)';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_won IS 'cost / won deals in every currency (NULL without won deals)';
COMMENT ON COLUMN leadmgmt.campaign_roi.roi IS '(revenue - cost) / cost in the campaign''s currency; NULL when cost is 0';

-- Deal value along the funnel, per lead source and currency
CREATE VIEW leadmgmt.funnel_revenue WITH (security_invoker = true) AS
	SELECT coalesce(l.source, '(none)') AS source, d.currency,
	       count(*) FILTER (WHERE d.status = 'open') AS open_deals,
	       trim_scale(coalesce(sum(d.amount) FILTER (WHERE d.status = 'open'), 0)) AS pipeline,
	       count(*) FILTER (WHERE d.status = 'won') AS won_deals,
	       trim_scale(coalesce(sum(d.amount) FILTER (WHERE d.status = 'won'), 0)) AS revenue,
	       count(*) FILTER (WHERE d.status = 'lost') AS lost_deals,
	       count(*) FILTER (WHERE d.status = 'won')::float8
	         / nullif(count(*) FILTER (WHERE d.status IN ('won', 'lost')), 0) AS win_rate
	  FROM leadmgmt.deal d
	  JOIN leadmgmt.lead l ON l.id = d.lead_id
	 GROUP BY 1, 2;
COMMENT ON VIEW leadmgmt.funnel_revenue IS
	'Deals per lead source and currency: open pipeline, won revenue, lost deals and win rate (leadmgmt.deal)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.currency IS 'ISO 4217 currency of the deals (NULL: deals without an amount)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.open_deals IS 'open deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.pipeline IS 'sum of the amounts of open deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.won_deals IS 'won deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.revenue IS 'sum of the amounts of won deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.lost_deals IS 'lost deals (opportunities only)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.win_rate IS 'won / (won + lost) deals (NULL when none closed)';

-------------------------------------------------------------------------------
-- Nurture programs: tracks and steps, enrolment with a holdout, due touches
-- that respect consent and a frequency cap, measured uplift (doc/nurture.md)
-------------------------------------------------------------------------------
-- The application sends; the program, its state and its measurement live
-- here.  One home per rule: eligibility and exits in nurture_enroll(), what
-- may be sent now in the nurture_due view, advancing in nurture_sent(), the
-- holdout split in src/core/nurture.c, the interval maths in uplift_interval().
INSERT INTO leadmgmt.activity_kind (name, description, builtin) VALUES
	('nurture_touch', 'a nurture program sent a touch (campaign: track, channel: step channel, detail: content)', true);

-- Channels a step may use, and the consent channel (leadmgmt.consent) that
-- governs each.  A channel whose consent channel is email also needs
-- lead.email_status = 'ok'.
CREATE TABLE leadmgmt.nurture_channel (
	name            text PRIMARY KEY
	                CONSTRAINT nurture_channel_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	consent_channel text NOT NULL
	                CONSTRAINT nurture_channel_consent_format CHECK (consent_channel ~ '^[a-z][a-z0-9_]{0,62}$'),
	description     text,
	builtin         boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE leadmgmt.nurture_channel IS 'Channels a nurture step may use; add rows for your own';
COMMENT ON COLUMN leadmgmt.nurture_channel.name IS 'channel name, as nurture_step.channel (lower-case identifier)';
COMMENT ON COLUMN leadmgmt.nurture_channel.consent_channel IS 'the leadmgmt.consent channel whose latest withdrawal stops touches on this channel; email also requires lead.email_status ok';
COMMENT ON COLUMN leadmgmt.nurture_channel.description IS 'what the channel is';
COMMENT ON COLUMN leadmgmt.nurture_channel.builtin IS 'shipped with the extension: read-only, not dumped';
INSERT INTO leadmgmt.nurture_channel (name, consent_channel, description, builtin) VALUES
	('email',       'email', 'e-mail', true),
	('call',        'phone', 'phone call', true),
	('sms',         'sms',   'text message', true),
	('direct_mail', 'post',  'letter or parcel by post', true);
CREATE TRIGGER nurture_channel_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.nurture_channel
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.nurture_channel', 'WHERE NOT builtin');

CREATE TABLE leadmgmt.nurture_track (
	name             text PRIMARY KEY,
	description      text,
	priority         integer NOT NULL DEFAULT 0,
	active           boolean NOT NULL DEFAULT true,
	holdout_pct      integer NOT NULL DEFAULT 10,
	entry_stages     text[],
	entry_grades     text[],
	min_score        float8,
	max_score        float8,
	interest_kind    text,
	interest_pattern text,
	interest_within  interval
);
COMMENT ON TABLE leadmgmt.nurture_track IS
	'Nurture tracks: who enters (entry criteria; NULL matches everything), in which order (priority), and the share kept out as a control group';
COMMENT ON COLUMN leadmgmt.nurture_track.name IS 'track name (lower-case identifier); the campaign of its nurture_touch activities';
COMMENT ON COLUMN leadmgmt.nurture_track.description IS 'what the track is for';
COMMENT ON COLUMN leadmgmt.nurture_track.priority IS 'a lead matching several tracks enters the one with the highest priority (ties: by name)';
COMMENT ON COLUMN leadmgmt.nurture_track.active IS 'false: no new enrolments and nothing due; enrolments stay where they are';
COMMENT ON COLUMN leadmgmt.nurture_track.holdout_pct IS 'percentage of enrolled leads kept out as a control group (0 to 50)';
COMMENT ON COLUMN leadmgmt.nurture_track.entry_stages IS 'the lead''s stage is one of these (NULL: any stage not of category lost)';
COMMENT ON COLUMN leadmgmt.nurture_track.entry_grades IS 'the lead''s fit grade is one of these (A to D; NULL: any)';
COMMENT ON COLUMN leadmgmt.nurture_track.min_score IS 'the lead''s score is at least this (NULL: no lower bound)';
COMMENT ON COLUMN leadmgmt.nurture_track.max_score IS 'the lead''s score is at most this (NULL: no upper bound)';
COMMENT ON COLUMN leadmgmt.nurture_track.interest_kind IS 'interest: the lead has an activity of this kind (NULL: no interest criterion)';
COMMENT ON COLUMN leadmgmt.nurture_track.interest_pattern IS 'interest: whose detail matches this ILIKE pattern (NULL: any detail)';
COMMENT ON COLUMN leadmgmt.nurture_track.interest_within IS 'interest: within this interval before enrolment (NULL: ever)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.nurture_track', '');

CREATE TABLE leadmgmt.nurture_step (
	track   text NOT NULL REFERENCES leadmgmt.nurture_track (name) ON UPDATE CASCADE ON DELETE CASCADE,
	step_no integer NOT NULL,
	channel text NOT NULL REFERENCES leadmgmt.nurture_channel (name),
	content text NOT NULL,
	wait    interval NOT NULL DEFAULT '0',
	PRIMARY KEY (track, step_no)
);
CREATE INDEX nurture_step_channel_idx ON leadmgmt.nurture_step (channel);
COMMENT ON TABLE leadmgmt.nurture_step IS 'The touches of a nurture track, numbered 1, 2, 3, ... without gaps';
COMMENT ON COLUMN leadmgmt.nurture_step.track IS 'the track';
COMMENT ON COLUMN leadmgmt.nurture_step.step_no IS 'position in the track, from 1';
COMMENT ON COLUMN leadmgmt.nurture_step.channel IS 'channel, from leadmgmt.nurture_channel (email, call, sms, direct_mail, ...)';
COMMENT ON COLUMN leadmgmt.nurture_step.content IS 'what to send: asset id or URL';
COMMENT ON COLUMN leadmgmt.nurture_step.wait IS 'how long after the previous touch (or the enrolment, for step 1) this step falls due';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.nurture_step', '');

CREATE SEQUENCE leadmgmt.nurture_enrollment_id_seq AS bigint;
CREATE TABLE leadmgmt.nurture_enrollment (
	id           bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.nurture_enrollment_id_seq'),
	-- no foreign keys: measured on a million enrolments, the per-row check
	-- of lead_id took the INSERT from 12.5 s to 25.3 s (it locks every lead
	-- row FOR KEY SHARE, a write to each), and that of track to 32.5 s with
	-- both (doc/nurture.md); nurture_enroll() enrols existing leads into
	-- existing tracks, the triggers below cascade deleted leads and keep
	-- tracks with enrolments from being deleted or renamed
	lead_id      bigint NOT NULL,
	track        text NOT NULL,
	enrolled_at  timestamptz NOT NULL,
	step_no      integer NOT NULL DEFAULT 0,
	status       text NOT NULL
	             CONSTRAINT nurture_enrollment_status_known
	             CHECK (status IN ('active', 'completed', 'exited', 'holdout')),
	exited_at    timestamptz,
	exit_reason  text
	             CONSTRAINT nurture_enrollment_exit_reason_known
	             CHECK (exit_reason IN ('converted', 'unsubscribed', 'bounced', 'consent_withdrawn',
	                                    'merged', 'forgotten', 'disqualified', 'finished')),
	last_sent_at timestamptz,
	next_due_at  timestamptz,
	CONSTRAINT nurture_enrollment_exit_consistent CHECK (
		(exited_at IS NULL) = (exit_reason IS NULL)
		AND (status IN ('active', 'holdout') OR exited_at IS NOT NULL)
		AND (status <> 'active' OR exited_at IS NULL)
		AND (status = 'active' OR next_due_at IS NULL))
);
ALTER SEQUENCE leadmgmt.nurture_enrollment_id_seq OWNED BY leadmgmt.nurture_enrollment.id;
-- at most one current enrolment per lead: concurrent nurture_enroll() runs
-- meet here and the loser's INSERT ... ON CONFLICT DO NOTHING skips the lead
CREATE UNIQUE INDEX nurture_enrollment_current ON leadmgmt.nurture_enrollment (lead_id)
	WHERE exited_at IS NULL;
-- a lead enters each track once
CREATE UNIQUE INDEX nurture_enrollment_once ON leadmgmt.nurture_enrollment (lead_id, track);
-- nurture_due reads the due rows through this index, not the whole table
CREATE INDEX nurture_enrollment_due ON leadmgmt.nurture_enrollment (next_due_at)
	WHERE status = 'active';
-- current holdouts by age: nurture_enroll() releases those past the horizon
CREATE INDEX nurture_enrollment_holdout ON leadmgmt.nurture_enrollment (enrolled_at)
	WHERE status = 'holdout' AND exited_at IS NULL;
COMMENT ON TABLE leadmgmt.nurture_enrollment IS
	'Every enrolment of a lead in a nurture track, current and past; written by nurture_enroll(), nurture_sent() and merges/erasures';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.id IS 'enrolment id';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.track IS 'the track';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.enrolled_at IS 'when the lead entered the track';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.step_no IS 'the last step sent (0 before the first)';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.status IS
	'active (receiving touches), completed (every step sent), exited (left early, see exit_reason) or holdout (control group: never sent anything)';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.exited_at IS 'when the enrolment ended (NULL: current); a holdout keeps its status';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.exit_reason IS
	'converted, unsubscribed, bounced, consent_withdrawn, merged, forgotten, disqualified or finished';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.last_sent_at IS 'when the last step was sent';
COMMENT ON COLUMN leadmgmt.nurture_enrollment.next_due_at IS 'when the next step falls due (active enrolments only)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.nurture_enrollment', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.nurture_enrollment_id_seq', '');

CREATE FUNCTION leadmgmt.nurture_bucket(lead bigint, track text)
RETURNS integer
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_nurture_bucket';
COMMENT ON FUNCTION leadmgmt.nurture_bucket(bigint, text) IS
	'Holdout bucket 0..99 of a lead in a track, from the ids alone (FNV-1a 64 of the track name, splitmix64 with the lead id; doc/nurture.md); held out when below holdout_pct';

-- Validation: one BEFORE trigger per table, with a SQLSTATE and a hint for
-- each mistake; the step numbering (1..n without gaps) is checked at commit,
-- so steps can be inserted or renumbered in any order within a transaction.
CREATE FUNCTION leadmgmt.nurture_track_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bad text;
BEGIN
	IF NEW.name IS NULL OR NEW.name !~ '^[a-z][a-z0-9_]{0,62}$' THEN
		RAISE EXCEPTION 'invalid nurture track name "%"', NEW.name
			USING ERRCODE = 'LM093',
			      HINT = 'Use a lower-case identifier of at most 63 characters, such as ''dx_whitepaper''.';
	END IF;
	IF NEW.holdout_pct IS NULL OR NEW.holdout_pct NOT BETWEEN 0 AND 50 THEN
		RAISE EXCEPTION 'holdout_pct of nurture track "%" must be between 0 and 50, got %',
			NEW.name, coalesce(NEW.holdout_pct::text, 'NULL')
			USING ERRCODE = 'LM093',
			      HINT = 'Keep 0 (no control group) to 50 percent of the enrolled leads out as a control group; 10 is usual.';
	END IF;
	SELECT x INTO bad FROM unnest(NEW.entry_stages) x
	 WHERE x IS NULL OR NOT EXISTS (SELECT 1 FROM leadmgmt.stage s WHERE s.name = x) LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown stage "%" in entry_stages of nurture track "%"', coalesce(bad, 'NULL'), NEW.name
			USING ERRCODE = 'LM002',
			      HINT = 'Known stages: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.rank, s.name) FROM leadmgmt.stage s) || '.';
	END IF;
	SELECT x INTO bad FROM unnest(NEW.entry_grades) x
	 WHERE x IS NULL OR x NOT IN ('A', 'B', 'C', 'D') LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'unknown grade "%" in entry_grades of nurture track "%"', coalesce(bad, 'NULL'), NEW.name
			USING ERRCODE = 'LM093',
			      HINT = 'Fit grades are A, B, C and D.';
	END IF;
	IF NEW.min_score IN ('NaN', 'Infinity', '-Infinity') OR NEW.max_score IN ('NaN', 'Infinity', '-Infinity')
	   OR NEW.min_score > NEW.max_score THEN
		RAISE EXCEPTION 'invalid score range [%, %] of nurture track "%"', NEW.min_score, NEW.max_score, NEW.name
			USING ERRCODE = 'LM093',
			      HINT = 'Give finite bounds with min_score <= max_score, or NULL for no bound.';
	END IF;
	IF NEW.interest_kind IS NULL AND (NEW.interest_pattern IS NOT NULL OR NEW.interest_within IS NOT NULL) THEN
		RAISE EXCEPTION 'interest_pattern and interest_within of nurture track "%" need an interest_kind', NEW.name
			USING ERRCODE = 'LM093',
			      HINT = 'Set interest_kind to the activity kind the interest is about, such as ''download''.';
	END IF;
	IF NEW.interest_kind IS NOT NULL
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.activity_kind k WHERE k.name = NEW.interest_kind) THEN
		RAISE EXCEPTION 'unknown activity kind "%" in interest_kind of nurture track "%"', NEW.interest_kind, NEW.name
			USING ERRCODE = 'LM006',
			      HINT = 'Valid kinds: ' || (SELECT string_agg(k.name, ', ' ORDER BY k.name) FROM leadmgmt.activity_kind k) || '.';
	END IF;
	IF NEW.interest_within <= interval '0' THEN
		RAISE EXCEPTION 'interest_within of nurture track "%" must be positive, got "%"', NEW.name, NEW.interest_within
			USING ERRCODE = 'LM093',
			      HINT = 'Give a positive interval such as ''90 days'', or NULL for "ever".';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadmgmt.nurture_track_check() IS
	'Trigger: validates a nurture track (name, holdout_pct 0..50, known stages and grades, score range, interest)';
CREATE TRIGGER nurture_track_check
	BEFORE INSERT OR UPDATE ON leadmgmt.nurture_track
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.nurture_track_check();

CREATE FUNCTION leadmgmt.nurture_step_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.channel IS NULL
	   OR NOT EXISTS (SELECT 1 FROM leadmgmt.nurture_channel c WHERE c.name = NEW.channel) THEN
		RAISE EXCEPTION 'unknown nurture channel "%"', coalesce(NEW.channel, 'NULL')
			USING ERRCODE = 'LM090',
			      HINT = 'Valid channels: ' || (SELECT string_agg(c.name, ', ' ORDER BY c.name) FROM leadmgmt.nurture_channel c)
			             || '. Add your own to leadmgmt.nurture_channel.';
	END IF;
	IF NEW.step_no IS NULL OR NEW.step_no < 1 THEN
		RAISE EXCEPTION 'nurture step numbers start at 1, got %', coalesce(NEW.step_no::text, 'NULL')
			USING ERRCODE = 'LM091',
			      HINT = 'Number the steps of a track 1, 2, 3, ... without gaps.';
	END IF;
	IF NEW.wait < interval '0' THEN
		RAISE EXCEPTION 'wait of nurture step % of track "%" must not be negative, got "%"', NEW.step_no, NEW.track, NEW.wait
			USING ERRCODE = 'LM092',
			      HINT = 'The wait is the time after the previous touch (or the enrolment): give ''0'' or a positive interval such as ''7 days''.';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadmgmt.nurture_step_check() IS
	'Trigger: validates a nurture step (known channel, step number from 1, wait not negative)';
CREATE TRIGGER nurture_step_check
	BEFORE INSERT OR UPDATE ON leadmgmt.nurture_step
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.nurture_step_check();

CREATE FUNCTION leadmgmt.nurture_step_numbering()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text;
	numbers text;
BEGIN
	FOR t IN SELECT DISTINCT x FROM unnest(ARRAY[CASE WHEN TG_OP <> 'DELETE' THEN NEW.track END,
	                                             CASE WHEN TG_OP <> 'INSERT' THEN OLD.track END]) x
	          WHERE x IS NOT NULL
	LOOP
		IF (SELECT count(*) <> coalesce(max(s.step_no), 0) FROM leadmgmt.nurture_step s WHERE s.track = t) THEN
			SELECT string_agg(s.step_no::text, ', ' ORDER BY s.step_no) INTO numbers
			  FROM leadmgmt.nurture_step s WHERE s.track = t;
			RAISE EXCEPTION 'steps of nurture track "%" have a gap', t
				USING ERRCODE = 'LM091',
				      DETAIL = 'Steps: ' || numbers || '.',
				      HINT = 'Number the steps of a track 1, 2, 3, ... without gaps (renumber within one transaction: the check runs at commit).';
		END IF;
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.nurture_step_numbering() IS
	'Constraint trigger, deferred to commit: the steps of a track are numbered 1..n without gaps';
CREATE CONSTRAINT TRIGGER nurture_step_numbering
	AFTER INSERT OR UPDATE OR DELETE ON leadmgmt.nurture_step
	DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.nurture_step_numbering();

-- A changed step moves the due time of the enrolments waiting for it: one
-- pass over the active enrolments per statement (an index on track would
-- cost every enrolment a third text index entry, for an administrative
-- change).  An enrolment whose next step is gone waits with no due time;
-- nurture_enroll() records it finished if the step is still gone then (a
-- renumbering within a transaction passes through such states).
CREATE FUNCTION leadmgmt.nurture_step_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE leadmgmt.nurture_enrollment e
	   SET next_due_at = x.due
	  FROM (SELECT a.id, coalesce(a.last_sent_at, a.enrolled_at) + s.wait AS due
	          FROM leadmgmt.nurture_enrollment a
	          LEFT JOIN leadmgmt.nurture_step s ON s.track = a.track AND s.step_no = a.step_no + 1
	         WHERE a.status = 'active') x
	 WHERE e.id = x.id AND e.status = 'active' AND e.next_due_at IS DISTINCT FROM x.due;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_step_changed() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_step_changed() IS
	'Trigger: recomputes next_due_at of the active enrolments after steps were added, changed or removed';
CREATE TRIGGER nurture_step_changed
	AFTER INSERT OR UPDATE OR DELETE ON leadmgmt.nurture_step
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.nurture_step_changed();

-- Merges and erasures end the enrolment at once.  SKIP LOCKED: an enrolment
-- that nurture_sent() or nurture_enroll() holds is left to the next
-- nurture_enroll(), which exits it for the same reason, so a merge never
-- waits for (or deadlocks with) the nurture program.
CREATE FUNCTION leadmgmt.nurture_lead_left()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	UPDATE leadmgmt.nurture_enrollment e
	   SET status = CASE WHEN e.status = 'holdout' THEN 'holdout' ELSE 'exited' END,
	       exited_at = greatest(pg_catalog.now(), e.enrolled_at, e.last_sent_at),
	       exit_reason = CASE WHEN NEW.merged_into IS NOT NULL THEN 'merged' ELSE 'forgotten' END,
	       next_due_at = NULL
	 WHERE e.id IN (SELECT x.id FROM leadmgmt.nurture_enrollment x
	                 WHERE x.lead_id = NEW.id AND x.exited_at IS NULL
	                 FOR UPDATE SKIP LOCKED);
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_lead_left() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_lead_left() IS
	'Trigger: a lead merged into another or forgotten leaves its nurture track (reason merged or forgotten); the surviving lead keeps its own enrolment';
CREATE TRIGGER lead_nurture_left
	AFTER UPDATE OF merged_into, forgotten_at ON leadmgmt.lead
	FOR EACH ROW
	WHEN (OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL
	      OR OLD.forgotten_at IS NULL AND NEW.forgotten_at IS NOT NULL)
	EXECUTE FUNCTION leadmgmt.nurture_lead_left();

-- The other exits also happen when their cause does, in the transaction
-- that records it: a lead that converts (enters the nurture_convert_stage
-- stage or a higher one, not lost) or is disqualified (a lost stage), whose
-- e-mail unsubscribes or bounces while its next step is an e-mail, or that
-- withdraws consent for the channel of its next step.  These triggers run
-- while the lead row is locked by the change, and wait for the enrolment:
-- lead first, then enrolment, the order nurture_sent() keeps too.  They fire
-- only for the rows whose stage or e-mail status changed (the WHEN clause);
-- a stage change that is neither a conversion nor lost costs a lookup of
-- the stage, an exit one UPDATE of the enrolment by index (measured in
-- doc/nurture.md).
CREATE FUNCTION leadmgmt.nurture_lead_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	reason text;
	category text;
	rank integer;
BEGIN
	IF NEW.stage IS DISTINCT FROM OLD.stage THEN
		SELECT s.category, s.rank INTO category, rank FROM leadmgmt.stage s WHERE s.name = NEW.stage;
		IF category = 'lost' THEN
			reason := 'disqualified';
		ELSIF rank >= (SELECT cs.rank FROM leadmgmt.stage cs
		                WHERE cs.name = leadmgmt.get_setting('nurture_convert_stage')) THEN
			reason := 'converted';
		END IF;
	END IF;
	IF reason IS NOT NULL THEN
		-- converted: only by a stage entered after the enrolment (a
		-- back-dated move is history the enrolment did not see)
		UPDATE leadmgmt.nurture_enrollment e
		   SET status = CASE WHEN e.status = 'holdout' THEN 'holdout' ELSE 'exited' END,
		       exited_at = greatest(pg_catalog.now(), e.enrolled_at, e.last_sent_at),
		       exit_reason = reason,
		       next_due_at = NULL
		 WHERE e.lead_id = NEW.id AND e.exited_at IS NULL
		   AND (reason = 'disqualified' OR NEW.stage_entered_at > e.enrolled_at);
		IF FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	IF NEW.email_status IN ('unsubscribed', 'bounced') AND NEW.email_status IS DISTINCT FROM OLD.email_status THEN
		UPDATE leadmgmt.nurture_enrollment e
		   SET status = 'exited',
		       exited_at = greatest(pg_catalog.now(), e.enrolled_at, e.last_sent_at),
		       exit_reason = NEW.email_status,
		       next_due_at = NULL
		 WHERE e.lead_id = NEW.id AND e.exited_at IS NULL AND e.status = 'active'
		   AND EXISTS (SELECT 1 FROM leadmgmt.nurture_step s
		                 JOIN leadmgmt.nurture_channel ch ON ch.name = s.channel
		                WHERE s.track = e.track AND s.step_no = e.step_no + 1
		                  AND ch.consent_channel = 'email');
	END IF;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_lead_changed() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_lead_changed() IS
	'Trigger: a lead that converts or is disqualified leaves its nurture track (converted, disqualified), and one whose e-mail unsubscribes or bounces while its next step is an e-mail leaves it (unsubscribed, bounced)';
CREATE TRIGGER lead_nurture_changed
	AFTER UPDATE OF stage, email_status ON leadmgmt.lead
	FOR EACH ROW
	WHEN (NEW.merged_into IS NULL AND NEW.forgotten_at IS NULL
	      AND (OLD.stage IS DISTINCT FROM NEW.stage
	           OR OLD.email_status IS DISTINCT FROM NEW.email_status AND NEW.email_status <> 'ok'))
	EXECUTE FUNCTION leadmgmt.nurture_lead_changed();

CREATE FUNCTION leadmgmt.nurture_consent_withdrawn()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- only when this withdrawal is the latest word on the channel (a
	-- back-dated one behind a later grant changes nothing)
	UPDATE leadmgmt.nurture_enrollment e
	   SET status = 'exited',
	       exited_at = greatest(pg_catalog.now(), e.enrolled_at, e.last_sent_at),
	       exit_reason = 'consent_withdrawn',
	       next_due_at = NULL
	 WHERE e.lead_id = NEW.lead_id AND e.exited_at IS NULL AND e.status = 'active'
	   AND EXISTS (SELECT 1 FROM leadmgmt.nurture_step s
	                 JOIN leadmgmt.nurture_channel ch ON ch.name = s.channel
	                WHERE s.track = e.track AND s.step_no = e.step_no + 1
	                  AND ch.consent_channel = NEW.channel)
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.consent c
	                    WHERE c.lead_id = NEW.lead_id AND c.channel = NEW.channel
	                      AND (c.at > NEW.at OR c.at = NEW.at AND c.id > NEW.id));
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_consent_withdrawn() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_consent_withdrawn() IS
	'Trigger: a lead that withdraws consent for the consent channel of its next nurture step leaves its track (consent_withdrawn)';
CREATE TRIGGER consent_nurture_withdrawn
	AFTER INSERT ON leadmgmt.consent
	FOR EACH ROW
	WHEN (NOT NEW.granted)
	EXECUTE FUNCTION leadmgmt.nurture_consent_withdrawn();

-- What the foreign keys would do: a deleted lead takes its enrolments
-- along; a track with enrolments keeps its name and cannot be deleted (its
-- history would lose its meaning): pause it instead.
CREATE FUNCTION leadmgmt.nurture_lead_deleted()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM leadmgmt.nurture_enrollment e WHERE e.lead_id IN (SELECT o.id FROM deleted_leads o);
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_lead_deleted() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_lead_deleted() IS
	'Trigger: deleting leads deletes their nurture enrolments';
CREATE TRIGGER lead_nurture_deleted
	AFTER DELETE ON leadmgmt.lead
	REFERENCING OLD TABLE AS deleted_leads
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.nurture_lead_deleted();

CREATE FUNCTION leadmgmt.nurture_track_in_use()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF (TG_OP = 'DELETE' OR NEW.name IS DISTINCT FROM OLD.name)
	   AND EXISTS (SELECT 1 FROM leadmgmt.nurture_enrollment e WHERE e.track = OLD.name) THEN
		RAISE EXCEPTION 'nurture track "%" has enrolments', OLD.name
			USING ERRCODE = 'LM093',
			      DETAIL = 'Its enrolments, touches and measurement refer to it by name.',
			      HINT = 'Set active = false to stop it; make a new track for a new program.';
	END IF;
	RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_track_in_use() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_track_in_use() IS
	'Trigger: a nurture track with enrolments cannot be deleted or renamed';
CREATE TRIGGER nurture_track_in_use
	BEFORE DELETE OR UPDATE OF name ON leadmgmt.nurture_track
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.nurture_track_in_use();

CREATE FUNCTION leadmgmt.nurture_enroll(at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (enrolled bigint, held_out bigint, exited bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- Set operations over every lead and enrolment: hash joins are right, and
-- the statistics of nurture_enrollment lag behind the rows this very
-- function adds (a nested loop planned for an "empty" table is quadratic);
-- JIT costs a second of compilation for a statement that runs in a few.
SET enable_nestloop = off
SET jit = off
SET work_mem = '64MB'
AS $$
DECLARE
	convert_rank integer;
	horizon interval;
	t leadmgmt.nurture_track;
	first_channel text;
	first_consent text;
	first_wait interval;
	n_new bigint;
	n_held bigint;
	exit_ids bigint[];
	exit_reasons text[];
	candidates bigint[];
BEGIN
	IF at IS NULL OR NOT isfinite(at) THEN
		RAISE EXCEPTION 'enrolment time must be finite and not null' USING ERRCODE = '22004';
	END IF;
	SELECT s.rank INTO convert_rank FROM leadmgmt.stage s
	 WHERE s.name = leadmgmt.get_setting('nurture_convert_stage');
	IF NOT FOUND THEN
		RAISE EXCEPTION 'the nurture_convert_stage setting names no stage' USING ERRCODE = 'LM002',
			HINT = 'Set it with leadmgmt.set_setting(''nurture_convert_stage'', ''mql'').';
	END IF;
	horizon := leadmgmt.get_setting('nurture_horizon')::interval;
	enrolled := 0;
	held_out := 0;
	-- one run at a time: a second run waits here until the first commits,
	-- and its statements then see the first one's enrolments.  This mode
	-- conflicts with itself only, not with nurture_sent(), the exit
	-- triggers or readers.  It spares the INSERTs below ON CONFLICT, whose
	-- speculative insertion cost a third more per row; under REPEATABLE READ
	-- or SERIALIZABLE the snapshot predates the lock, so there ON CONFLICT
	-- on the one-current-enrolment index still skips what a concurrent run
	-- took.
	LOCK TABLE leadmgmt.nurture_enrollment IN SHARE UPDATE EXCLUSIVE MODE;

	-- 1. exits.  Their causes record them when they happen (the triggers
	-- above, and nurture_sent() for a finished track or a closed next
	-- channel); what is left here costs in proportion to what it finds, not
	-- to the enrolments: enrolments a merge or an erasure skipped (SKIP
	-- LOCKED), holdouts past the horizon, active enrolments whose next step
	-- was removed, and the due ones nurture_due would hide for a reason the
	-- triggers could not see (a changed nurture_convert_stage setting or step
	-- channel, rows written with triggers off).  Probes by index here.
	PERFORM pg_catalog.set_config('enable_nestloop', 'on', true);
	WITH cur AS (
		SELECT e.id, CASE WHEN l.merged_into IS NOT NULL THEN 'merged' ELSE 'forgotten' END AS reason
		  FROM leadmgmt.lead l
		  JOIN leadmgmt.nurture_enrollment e ON e.lead_id = l.id AND e.exited_at IS NULL
		 WHERE l.merged_into IS NOT NULL OR l.forgotten_at IS NOT NULL
		UNION ALL
		SELECT e.id, 'finished'
		  FROM leadmgmt.nurture_enrollment e
		 WHERE e.status = 'holdout' AND e.exited_at IS NULL AND e.enrolled_at <= nurture_enroll.at - horizon
		UNION ALL
		-- through nurture_enrollment_due: the waiting (next_due_at NULL) and
		-- the due
		SELECT e.id,
		       CASE
		       WHEN l.merged_into IS NOT NULL THEN 'merged'
		       WHEN l.forgotten_at IS NOT NULL THEN 'forgotten'
		       WHEN st.category <> 'lost' AND st.rank >= convert_rank AND l.stage_entered_at > e.enrolled_at THEN 'converted'
		       WHEN st.category = 'lost' THEN 'disqualified'
		       WHEN s.step_no IS NULL THEN 'finished'
		       WHEN ch.consent_channel = 'email' AND l.email_status IN ('unsubscribed', 'bounced') THEN l.email_status
		       WHEN (SELECT x.granted FROM leadmgmt.consent x
		              WHERE x.lead_id = e.lead_id AND x.channel = ch.consent_channel
		              ORDER BY x.at DESC, x.id DESC LIMIT 1) IS FALSE THEN 'consent_withdrawn'
		       END
		  FROM leadmgmt.nurture_enrollment e
		  JOIN leadmgmt.lead l ON l.id = e.lead_id
		  JOIN leadmgmt.stage st ON st.name = l.stage
		  LEFT JOIN leadmgmt.nurture_step s ON s.track = e.track AND s.step_no = e.step_no + 1
		  LEFT JOIN leadmgmt.nurture_channel ch ON ch.name = s.channel
		 WHERE e.status = 'active' AND (e.next_due_at IS NULL OR e.next_due_at <= nurture_enroll.at)
	)
	SELECT array_agg(x.id), array_agg(x.reason) INTO exit_ids, exit_reasons
	  FROM (SELECT DISTINCT ON (cur.id) cur.id, cur.reason FROM cur WHERE cur.reason IS NOT NULL
	         ORDER BY cur.id, cur.reason IN ('merged', 'forgotten') DESC) x;
	-- read first, then write the few that leave (a concurrent run or a merge
	-- may have ended some meanwhile: the exited_at test sees its result)
	UPDATE leadmgmt.nurture_enrollment e
	   SET status = CASE WHEN e.status = 'holdout' THEN 'holdout'
	                     WHEN x.reason = 'finished' THEN 'completed'
	                     ELSE 'exited' END,
	       exited_at = greatest(nurture_enroll.at, e.enrolled_at, e.last_sent_at),
	       exit_reason = x.reason,
	       next_due_at = NULL
	  FROM unnest(exit_ids, exit_reasons) AS x(id, reason)
	 WHERE e.id = x.id AND e.exited_at IS NULL;
	GET DIAGNOSTICS exited = ROW_COUNT;
	PERFORM pg_catalog.set_config('enable_nestloop', 'off', true);

	-- 2. enrolment.  The candidates: leads that may be nurtured and have no
	-- current enrolment (in the steady state, only the new ones; none: no
	-- per-track work at all; more than 10,000: a first run, which scans).
	-- Then track by track in priority order, those that match and were
	-- never in the track.  No lead row is locked, so merges and stage
	-- changes never wait for a run.
	SELECT array_agg(c.id) INTO candidates
	  FROM (SELECT l.id
	          FROM leadmgmt.lead l
	          JOIN leadmgmt.stage st ON st.name = l.stage
	         WHERE l.merged_into IS NULL AND l.forgotten_at IS NULL AND st.category <> 'lost'
	           AND l.created_at <= nurture_enroll.at
	           AND NOT EXISTS (SELECT 1 FROM leadmgmt.nurture_enrollment x
	                            WHERE x.lead_id = l.id AND x.exited_at IS NULL)
	         LIMIT 10001) c;
	FOR t IN SELECT * FROM leadmgmt.nurture_track tr WHERE tr.active AND candidates IS NOT NULL
	          ORDER BY tr.priority DESC, tr.name LOOP
		SELECT s.channel, c.consent_channel, s.wait INTO first_channel, first_consent, first_wait
		  FROM leadmgmt.nurture_step s JOIN leadmgmt.nurture_channel c ON c.name = s.channel
		 WHERE s.track = t.name AND s.step_no = 1;
		CONTINUE WHEN NOT FOUND;
		-- EXECUTE: a plan for this track's criteria, not a generic one.  A
		-- few candidates (the steady state) are looked up by id; many (a
		-- first run) are found by a scan of lead.  A lead that was in the
		-- track before is left out by the query.
		EXECUTE format($sql$
			WITH ins AS (
				INSERT INTO leadmgmt.nurture_enrollment AS ne (lead_id, track, enrolled_at, step_no, status, next_due_at)
				SELECT l.id, $1, $2, 0,
				       CASE WHEN leadmgmt.nurture_bucket(l.id, $1) < $3 THEN 'holdout' ELSE 'active' END,
				       CASE WHEN leadmgmt.nurture_bucket(l.id, $1) < $3 THEN NULL ELSE $2 + $4 END
				  FROM leadmgmt.lead l
				 WHERE %s
				   AND NOT EXISTS (SELECT 1 FROM leadmgmt.nurture_enrollment x
				                    WHERE x.lead_id = l.id AND (x.exited_at IS NULL OR x.track = $1) %s)
				   AND ($5::text[] IS NULL OR l.stage = ANY ($5))
				   AND ($6::text[] IS NULL OR l.grade = ANY ($6))
				   AND ($7::float8 IS NULL OR l.score >= $7)
				   AND ($8::float8 IS NULL OR l.score <= $8)
				   AND ($9::text IS NULL OR EXISTS (
				        SELECT 1 FROM leadmgmt.activity a
				         WHERE a.lead_id = l.id AND a.kind = $9 AND a.occurred_at <= $2
				           AND ($10::text IS NULL OR a.detail ILIKE $10)
				           AND ($11::interval IS NULL OR a.occurred_at >= $2 - $11)))
				   AND ($12 <> 'email' OR l.email_status = 'ok')
				   AND NOT EXISTS (
				        SELECT 1 FROM (SELECT DISTINCT ON (c.lead_id) c.lead_id, c.granted
				                         FROM leadmgmt.consent c WHERE c.channel = $12
				                        ORDER BY c.lead_id, c.at DESC, c.id DESC) w
				         WHERE w.lead_id = l.id AND NOT w.granted)
				 ORDER BY l.id
				%s
				RETURNING ne.status)
			SELECT count(*), count(*) FILTER (WHERE ins.status = 'holdout') FROM ins
		$sql$, CASE WHEN cardinality(candidates) <= 10000 THEN 'l.id = ANY ($13)'
		            ELSE 'l.merged_into IS NULL AND l.forgotten_at IS NULL AND l.created_at <= $2
				   AND l.stage IN (SELECT st.name FROM leadmgmt.stage st WHERE st.category <> ''lost'')' END,
		       CASE WHEN cardinality(candidates) <= 10000 THEN 'AND x.lead_id = ANY ($13)' ELSE '' END,
		       CASE WHEN pg_catalog.current_setting('transaction_isolation') <> 'read committed'
		            THEN 'ON CONFLICT (lead_id) WHERE exited_at IS NULL DO NOTHING' ELSE '' END)
		INTO n_new, n_held
		USING t.name, nurture_enroll.at, t.holdout_pct, first_wait, t.entry_stages, t.entry_grades,
		      t.min_score, t.max_score, t.interest_kind, t.interest_pattern, t.interest_within,
		      first_consent, candidates;
		enrolled := enrolled + n_new;
		held_out := held_out + n_held;
	END LOOP;
	-- a run that grew the table by a tenth or more refreshes its statistics
	-- for the next run and for nurture_due (autovacuum comes later)
	IF enrolled > 1000 AND enrolled * 10 > (SELECT c.reltuples FROM pg_catalog.pg_class c
	                                        WHERE c.oid = 'leadmgmt.nurture_enrollment'::regclass) THEN
		ANALYZE leadmgmt.nurture_enrollment;
	END IF;
	RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_enroll(timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_enroll(timestamptz) IS
	'Record the exits of current enrolments, then put every eligible lead into the highest-priority active track it matches and has not been in (holdout by nurture_bucket); idempotent, for pg_cron; returns the enrolments made (held_out of them in the control group) and the exits recorded';

CREATE VIEW leadmgmt.nurture_due WITH (security_invoker = true) AS
	SELECT e.id AS enrollment, e.lead_id, e.track, s.step_no, s.channel, s.content,
	       e.next_due_at AS due_at
	  FROM leadmgmt.nurture_enrollment e
	  JOIN leadmgmt.nurture_track t ON t.name = e.track
	  JOIN leadmgmt.nurture_step s ON s.track = e.track AND s.step_no = e.step_no + 1
	  JOIN leadmgmt.nurture_channel c ON c.name = s.channel
	  JOIN leadmgmt.lead l ON l.id = e.lead_id
	  JOIN leadmgmt.stage st ON st.name = l.stage
	 WHERE e.status = 'active'
	   AND e.next_due_at <= pg_catalog.now()
	   AND t.active
	   AND l.merged_into IS NULL AND l.forgotten_at IS NULL
	   AND st.category <> 'lost'
	   -- converted since the enrolment (the exit is recorded when it happens;
	   -- this also holds after a change of the nurture_convert_stage setting)
	   AND NOT (l.stage_entered_at > e.enrolled_at
	            AND st.rank >= (SELECT cs.rank FROM leadmgmt.stage cs
	                             WHERE cs.name = leadmgmt.get_setting('nurture_convert_stage')))
	   AND (c.consent_channel <> 'email' OR l.email_status = 'ok')
	   AND (SELECT x.granted FROM leadmgmt.consent x
	         WHERE x.lead_id = e.lead_id AND x.channel = c.consent_channel
	         ORDER BY x.at DESC, x.id DESC LIMIT 1) IS NOT FALSE
	   -- the frequency cap, across tracks (the bound is computed once)
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.activity a
	                    WHERE a.lead_id = e.lead_id AND a.kind = 'nurture_touch'
	                      AND a.occurred_at > (SELECT pg_catalog.now() - leadmgmt.get_setting('nurture_min_gap')::interval));
COMMENT ON VIEW leadmgmt.nurture_due IS
	'Nurture touches to send now: the next step of every active enrolment whose wait has passed, if the lead may be contacted on the step''s channel (consent, email_status) and had no nurture touch within the nurture_min_gap setting; holdout leads never appear';
COMMENT ON COLUMN leadmgmt.nurture_due.enrollment IS 'the enrolment; pass it to nurture_sent() after sending';
COMMENT ON COLUMN leadmgmt.nurture_due.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.nurture_due.track IS 'the track';
COMMENT ON COLUMN leadmgmt.nurture_due.step_no IS 'the step to send';
COMMENT ON COLUMN leadmgmt.nurture_due.channel IS 'its channel';
COMMENT ON COLUMN leadmgmt.nurture_due.content IS 'its content (asset id or URL)';
COMMENT ON COLUMN leadmgmt.nurture_due.due_at IS 'when it fell due: the previous touch (or the enrolment) plus the step''s wait';

CREATE FUNCTION leadmgmt.nurture_sent(enrollment bigint, step_no integer, at timestamptz DEFAULT pg_catalog.now())
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e leadmgmt.nurture_enrollment;
	s leadmgmt.nurture_step;
	next_wait interval;
	next_consent text;
	has_next boolean;
	closed text;
	enrolled_lead bigint;
	touch bigint;
BEGIN
	IF enrollment IS NULL OR step_no IS NULL OR at IS NULL OR NOT isfinite(at) THEN
		RAISE EXCEPTION 'enrollment, step_no and at must be given and finite' USING ERRCODE = '22004';
	END IF;
	SELECT x.lead_id INTO enrolled_lead FROM leadmgmt.nurture_enrollment x WHERE x.id = nurture_sent.enrollment;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'nurture enrolment % does not exist', enrollment USING ERRCODE = 'LM094',
			HINT = 'Pass the enrollment column of leadmgmt.nurture_due.';
	END IF;
	-- the lead first, then the enrolment: the order of the exit triggers,
	-- which run while a change holds the lead (the touch's activity would
	-- lock the lead anyway, to score it)
	PERFORM 1 FROM leadmgmt.lead l WHERE l.id = enrolled_lead FOR NO KEY UPDATE;
	SELECT * INTO e FROM leadmgmt.nurture_enrollment x WHERE x.id = nurture_sent.enrollment FOR UPDATE;
	IF e.status = 'holdout' THEN
		RAISE EXCEPTION 'nurture enrolment % is in the holdout group of track "%"', enrollment, e.track
			USING ERRCODE = 'LM095',
			      DETAIL = 'Holdout leads are the control group: they are never sent anything.',
			      HINT = 'Send only what leadmgmt.nurture_due lists.';
	END IF;
	IF nurture_sent.step_no <= e.step_no AND nurture_sent.step_no >= 1 THEN
		-- sent before: idempotent, return the touch recorded then
		SELECT a.id INTO touch FROM leadmgmt.activity a
		 WHERE a.lead_id = leadmgmt.lead_resolve(e.lead_id) AND a.kind = 'nurture_touch'
		   AND a.props @> jsonb_build_object('nurture_enrollment', e.id, 'step_no', nurture_sent.step_no)
		 ORDER BY a.id LIMIT 1;
		RETURN touch;
	END IF;
	SELECT * INTO s FROM leadmgmt.nurture_step x WHERE x.track = e.track AND x.step_no = nurture_sent.step_no;
	IF nurture_sent.step_no <> e.step_no + 1 OR NOT FOUND THEN
		RAISE EXCEPTION 'step % is not the next step of nurture enrolment %', nurture_sent.step_no, enrollment
			USING ERRCODE = 'LM095',
			      DETAIL = format('The last step sent is %s; track "%s" has %s steps.', e.step_no, e.track,
			                      (SELECT count(*) FROM leadmgmt.nurture_step x WHERE x.track = e.track)),
			      HINT = 'Send the steps in order, as leadmgmt.nurture_due lists them.';
	END IF;
	IF at < coalesce(e.last_sent_at, e.enrolled_at) THEN
		RAISE EXCEPTION 'touch time % is before the previous touch or the enrolment of nurture enrolment %', at, enrollment
			USING ERRCODE = 'LM096',
			      DETAIL = format('The enrolment''s last event is at %s.', coalesce(e.last_sent_at, e.enrolled_at)),
			      HINT = 'Record touches in the order they were sent.';
	END IF;

	INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, channel, detail, props)
	VALUES (e.lead_id, 'nurture_touch', at, e.track, s.channel, s.content,
	        jsonb_build_object('nurture_enrollment', e.id, 'step_no', s.step_no))
	RETURNING id INTO touch;

	SELECT true, x.wait, c.consent_channel INTO has_next, next_wait, next_consent
	  FROM leadmgmt.nurture_step x JOIN leadmgmt.nurture_channel c ON c.name = x.channel
	 WHERE x.track = e.track AND x.step_no = s.step_no + 1;
	-- the next step's channel may be closed already (the lead unsubscribed
	-- while waiting for a call): the enrolment ends now, not when it falls due
	IF has_next THEN
		SELECT CASE WHEN next_consent = 'email' AND l.email_status IN ('unsubscribed', 'bounced') THEN l.email_status
		            WHEN (SELECT cc.granted FROM leadmgmt.consent cc
		                   WHERE cc.lead_id = l.id AND cc.channel = next_consent
		                   ORDER BY cc.at DESC, cc.id DESC LIMIT 1) IS FALSE THEN 'consent_withdrawn' END
		  INTO closed
		  FROM leadmgmt.lead l WHERE l.id = leadmgmt.lead_resolve(e.lead_id);
	END IF;
	-- an enrolment that ended while this touch was on its way (a merge, an
	-- exit) records the step but stays ended
	UPDATE leadmgmt.nurture_enrollment x
	   SET step_no = s.step_no,
	       last_sent_at = at,
	       status = CASE WHEN x.status <> 'active' THEN x.status
	                     WHEN has_next IS NULL THEN 'completed'
	                     WHEN closed IS NOT NULL THEN 'exited'
	                     ELSE 'active' END,
	       exited_at = CASE WHEN x.status = 'active' AND (has_next IS NULL OR closed IS NOT NULL) THEN at
	                        ELSE x.exited_at END,
	       exit_reason = CASE WHEN x.status <> 'active' THEN x.exit_reason
	                          WHEN has_next IS NULL THEN 'finished'
	                          ELSE closed END,
	       next_due_at = CASE WHEN x.status = 'active' AND has_next AND closed IS NULL THEN at + next_wait END
	 WHERE x.id = e.id;
	RETURN touch;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_sent(bigint, integer, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_sent(bigint, integer, timestamptz) IS
	'Record that step step_no of an enrolment was sent at "at": a nurture_touch activity (campaign = track, detail = content) and the enrolment advanced (completed after the last step); the same step again changes nothing; returns the activity id';

-- Newcombe's hybrid score interval (Newcombe 1998, method 10) for the
-- difference of two proportions, from Wilson score intervals of each.
CREATE FUNCTION leadmgmt.wilson_interval(successes bigint, trials bigint, z float8 DEFAULT 1.959963984540054,
                                         OUT low float8, OUT high float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT CASE WHEN trials > 0 AND successes BETWEEN 0 AND trials THEN
	            (p + z * z / (2 * n) - z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n) END,
	       CASE WHEN trials > 0 AND successes BETWEEN 0 AND trials THEN
	            (p + z * z / (2 * n) + z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n) END
	  FROM (SELECT successes::float8 / nullif(trials, 0)::float8 AS p, trials::float8 AS n) x;
END;
COMMENT ON FUNCTION leadmgmt.wilson_interval(bigint, bigint, float8) IS
	'Wilson score interval of a proportion successes/trials (z = 1.96 for 95 %); NULL when trials is 0';

CREATE FUNCTION leadmgmt.uplift_interval(treated_converted bigint, treated_total bigint,
                                         control_converted bigint, control_total bigint,
                                         z float8 DEFAULT 1.959963984540054,
                                         OUT uplift_pp float8, OUT low_pp float8, OUT high_pp float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT 100 * (p1 - p2),
	       100 * (p1 - p2 - sqrt((p1 - w1.low) ^ 2 + (w2.high - p2) ^ 2)),
	       100 * (p1 - p2 + sqrt((w1.high - p1) ^ 2 + (p2 - w2.low) ^ 2))
	  FROM (SELECT treated_converted::float8 / nullif(treated_total, 0)::float8 AS p1,
	               control_converted::float8 / nullif(control_total, 0)::float8 AS p2) p,
	       leadmgmt.wilson_interval(treated_converted, treated_total, z) w1,
	       leadmgmt.wilson_interval(control_converted, control_total, z) w2;
END;
COMMENT ON FUNCTION leadmgmt.uplift_interval(bigint, bigint, bigint, bigint, float8) IS
	'Difference of two conversion rates in percentage points (treated minus control) with Newcombe''s hybrid score interval (method 10, from Wilson intervals; z = 1.96 for 95 %)';

CREATE VIEW leadmgmt.nurture_performance WITH (security_invoker = true) AS
	WITH cfg AS (
		SELECT leadmgmt.get_setting('nurture_horizon')::interval AS horizon,
		       (SELECT s.rank FROM leadmgmt.stage s
		         WHERE s.name = leadmgmt.get_setting('nurture_convert_stage')) AS convert_rank,
		       (SELECT s.rank FROM leadmgmt.stage s WHERE s.name = 'mql') AS mql_rank,
		       (SELECT s.rank FROM leadmgmt.stage s WHERE s.name = 'sql') AS sql_rank,
		       pg_catalog.now() AS now
	), en AS (
		SELECT e.id, e.track, e.status, e.step_no AS last_step, e.exit_reason, e.exited_at, e.enrolled_at,
		       e.status = 'holdout' AS holdout,
		       e.enrolled_at + cfg.horizon > cfg.now AS too_recent,
		       c.converted_at, coalesce(c.to_mql, false) AS to_mql,
		       coalesce(c.to_sql, false) AS to_sql, coalesce(c.to_won, false) AS to_won
		  FROM leadmgmt.nurture_enrollment e
		  JOIN leadmgmt.lead l ON l.id = e.lead_id
		  CROSS JOIN cfg
		  -- stages entered within the horizon, by the lead or by the lead
		  -- it was merged into (merged_into always names the survivor)
		  LEFT JOIN LATERAL (
			SELECT min(h.changed_at) FILTER (WHERE s.rank >= cfg.convert_rank AND s.category <> 'lost') AS converted_at,
			       bool_or(s.rank >= cfg.mql_rank AND s.category <> 'lost') AS to_mql,
			       bool_or(s.rank >= cfg.sql_rank AND s.category <> 'lost') AS to_sql,
			       bool_or(s.category = 'won') AS to_won
			  FROM leadmgmt.stage_history h
			  JOIN leadmgmt.stage s ON s.name = h.to_stage
			 WHERE h.lead_id IN (e.lead_id, l.merged_into)
			   AND h.from_stage IS DISTINCT FROM h.to_stage
			   AND h.changed_at > e.enrolled_at AND h.changed_at <= e.enrolled_at + cfg.horizon) c ON true
	), steps AS (
		-- each step with the earliest time it falls due after enrolment
		SELECT s.track, s.step_no, s.channel,
		       sum(s.wait) OVER (PARTITION BY s.track ORDER BY s.step_no) AS due_after
		  FROM leadmgmt.nurture_step s
	), rows AS (
		-- the whole track: every enrolment
		SELECT t.name AS track, NULL::integer AS step_no, NULL::text AS channel,
		       en.id IS NOT NULL AS reached, en.id IS NOT NULL AS here,
		       en.status, en.exit_reason, en.holdout, en.too_recent,
		       en.converted_at, en.to_mql, en.to_sql, en.to_won
		  FROM leadmgmt.nurture_track t
		  LEFT JOIN en ON en.track = t.name
		UNION ALL
		-- a step: reached by the treated enrolments it was sent to, and by
		-- the holdout enrolments that had neither converted nor left when
		-- it fell due at the earliest; "here" are the enrolments whose last
		-- step it is
		SELECT st.track, st.step_no, st.channel,
		       CASE WHEN en.holdout
		            THEN coalesce(en.converted_at, 'infinity') > en.enrolled_at + st.due_after
		                 AND (en.exited_at IS NULL OR en.exit_reason = 'finished'
		                      OR en.exited_at > en.enrolled_at + st.due_after)
		            ELSE en.last_step >= st.step_no END,
		       NOT en.holdout AND en.last_step = st.step_no,
		       en.status, en.exit_reason, en.holdout, en.too_recent,
		       en.converted_at, en.to_mql, en.to_sql, en.to_won
		  FROM steps st
		  LEFT JOIN en ON en.track = st.track
	), agg AS (
		SELECT r.track, r.step_no, r.channel,
		       count(*) FILTER (WHERE r.reached AND (r.step_no IS NULL OR NOT r.holdout)) AS enrolled,
		       count(*) FILTER (WHERE r.here AND r.status = 'active') AS active,
		       count(*) FILTER (WHERE r.here AND r.status = 'completed') AS completed,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'converted') AS exited_converted,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'unsubscribed') AS exited_unsubscribed,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'bounced') AS exited_bounced,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'consent_withdrawn') AS exited_consent_withdrawn,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'merged') AS exited_merged,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'forgotten') AS exited_forgotten,
		       count(*) FILTER (WHERE r.here AND r.status = 'exited' AND r.exit_reason = 'disqualified') AS exited_disqualified,
		       count(*) FILTER (WHERE r.reached AND r.holdout) AS holdout,
		       count(*) FILTER (WHERE r.reached AND r.too_recent) AS too_recent,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND NOT r.holdout) AS treated_total,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND NOT r.holdout AND r.converted_at IS NOT NULL) AS treated_converted,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND NOT r.holdout AND r.to_mql) AS treated_mql,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND NOT r.holdout AND r.to_sql) AS treated_sql,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND NOT r.holdout AND r.to_won) AS treated_won,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND r.holdout) AS holdout_total,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND r.holdout AND r.converted_at IS NOT NULL) AS holdout_converted,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND r.holdout AND r.to_mql) AS holdout_mql,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND r.holdout AND r.to_sql) AS holdout_sql,
		       count(*) FILTER (WHERE r.reached AND NOT r.too_recent AND r.holdout AND r.to_won) AS holdout_won
		  FROM rows r
		 GROUP BY r.track, r.step_no, r.channel
	)
	SELECT a.track, a.step_no, a.channel, a.enrolled, a.active, a.completed,
	       a.exited_converted, a.exited_unsubscribed, a.exited_bounced, a.exited_consent_withdrawn,
	       a.exited_merged, a.exited_forgotten, a.exited_disqualified, a.holdout, a.too_recent,
	       a.treated_total, a.treated_converted, a.treated_mql, a.treated_sql, a.treated_won,
	       a.holdout_total, a.holdout_converted, a.holdout_mql, a.holdout_sql, a.holdout_won,
	       100 * a.treated_converted::float8 / nullif(a.treated_total, 0) AS treated_rate_pct,
	       100 * a.holdout_converted::float8 / nullif(a.holdout_total, 0) AS holdout_rate_pct,
	       u.uplift_pp, u.low_pp AS uplift_low_pp, u.high_pp AS uplift_high_pp
	  FROM agg a
	  CROSS JOIN LATERAL leadmgmt.uplift_interval(a.treated_converted, a.treated_total,
	                                              a.holdout_converted, a.holdout_total) u;
COMMENT ON VIEW leadmgmt.nurture_performance IS
	'Per nurture track (step_no NULL) and per step: where the enrolments are, and conversion within the nurture_horizon setting of treated vs holdout leads with the uplift and its 95 % Newcombe interval (doc/nurture.md)';
COMMENT ON COLUMN leadmgmt.nurture_performance.track IS 'the track';
COMMENT ON COLUMN leadmgmt.nurture_performance.step_no IS 'the step (NULL: the whole track)';
COMMENT ON COLUMN leadmgmt.nurture_performance.channel IS 'the step''s channel (NULL for the whole track)';
COMMENT ON COLUMN leadmgmt.nurture_performance.enrolled IS 'whole track: enrolments, holdout included; step: treated enrolments sent this step';
COMMENT ON COLUMN leadmgmt.nurture_performance.active IS 'active enrolments (step: whose last step sent is this one)';
COMMENT ON COLUMN leadmgmt.nurture_performance.completed IS 'enrolments that were sent every step (step: the last one)';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_converted IS 'enrolments that ended because the lead converted (step: after this step)';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_unsubscribed IS 'ended because the lead unsubscribed from e-mail';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_bounced IS 'ended because the lead''s e-mail bounced';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_consent_withdrawn IS 'ended because the lead withdrew consent for the next step''s channel';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_merged IS 'ended because the lead was merged into another lead';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_forgotten IS 'ended because the lead was forgotten (erased)';
COMMENT ON COLUMN leadmgmt.nurture_performance.exited_disqualified IS 'ended because the lead moved to a stage of category lost';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout IS 'holdout (control group) enrolments (step: those still in when the step fell due at the earliest)';
COMMENT ON COLUMN leadmgmt.nurture_performance.too_recent IS 'enrolments younger than the nurture_horizon setting: left out of the conversion counts';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_total IS 'treated (not holdout) enrolments old enough for the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_converted IS 'of those, converted (entered the nurture_convert_stage stage or higher) within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_mql IS 'of those, reached mql or higher within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_sql IS 'of those, reached sql or higher within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_won IS 'of those, won within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_total IS 'holdout enrolments old enough for the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_converted IS 'of those, converted within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_mql IS 'of those, reached mql or higher within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_sql IS 'of those, reached sql or higher within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_won IS 'of those, won within the horizon';
COMMENT ON COLUMN leadmgmt.nurture_performance.treated_rate_pct IS '100 * treated_converted / treated_total';
COMMENT ON COLUMN leadmgmt.nurture_performance.holdout_rate_pct IS '100 * holdout_converted / holdout_total';
COMMENT ON COLUMN leadmgmt.nurture_performance.uplift_pp IS 'treated_rate_pct minus holdout_rate_pct, in percentage points';
COMMENT ON COLUMN leadmgmt.nurture_performance.uplift_low_pp IS 'lower end of the 95 % interval of the uplift (Newcombe hybrid score), percentage points';
COMMENT ON COLUMN leadmgmt.nurture_performance.uplift_high_pp IS 'upper end of the 95 % interval of the uplift, percentage points';

-------------------------------------------------------------------------------
-- Roles: grant_access() and row-level security by owner (doc/roles.md)
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
	                           'lead_external_id', 'lead_merge', 'model', 'purged_score',
	                           'nurture_channel', 'nurture_track', 'nurture_step', 'nurture_enrollment'];
	-- marketing runs the nurture programs (doc/nurture.md)
	mkt_nurture text[] := ARRAY['nurture_track', 'nurture_step'];
	mkt_fn text[] := ARRAY['leadmgmt.nurture_enroll(timestamptz)',
	                       'leadmgmt.nurture_sent(bigint,integer,timestamptz)'];
	mkt_write text[] := ARRAY['lead', 'activity', 'lead_import', 'lead_external_id', 'consent'];
	mkt_seq text[] := ARRAY['lead_id_seq', 'activity_id_seq', 'lead_import_id_seq',
	                        'consent_id_seq', 'lead_merge_id_seq'];
	admin_write text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule',
	                            'fit_rule', 'setting', 'model', 'nurture_channel'];
	admin_seq text[] := ARRAY['scoring_rule_id_seq', 'fit_rule_id_seq'];
	admin_fn text[] := ARRAY['leadmgmt.rescore()', 'leadmgmt.forget_lead(bigint)',
	                         'leadmgmt.rebuild_keys()', 'leadmgmt.purge_activity(timestamptz,integer)',
	                         'leadmgmt.shard_table(text,text[],regclass)',
	                         'leadmgmt.rebuild_funnel_summary()'];
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
		FOREACH obj IN ARRAY mkt_nurture LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY mkt_fn LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', obj, r);
		END LOOP;
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
-- Privileges of the sales loop (85_sales.sql): grant_access() records its roles in
-- access_role last, so this trigger adds this capability's grants to the
-- matrix (doc/roles.md) without changing grant_access() itself.
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.grant_sales_loop()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT n.kind, n.role::text AS r FROM new_roles n
	          WHERE EXISTS (SELECT 1 FROM pg_roles p WHERE p.oid = n.role::oid) LOOP
		CONTINUE WHEN a.kind = 'reader';		-- the views are granted by grant_access()
		-- sales and up: read deals, campaigns and the feed, report deals, follow the feed
		EXECUTE format('GRANT SELECT ON leadmgmt.opportunity, leadmgmt.campaign, leadmgmt.change, '
		               'leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT INSERT, UPDATE ON leadmgmt.opportunity TO %s', a.r);
		EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.opportunity_id_seq TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.read_changes(text, integer), '
		               'leadmgmt.ack_changes(text, bigint) TO %s', a.r);
		CONTINUE WHEN a.kind = 'sales';
		-- marketing and admin: campaigns
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.campaign TO %s', a.r);
		CONTINUE WHEN a.kind = 'marketing';
		-- admin: consumers and purging
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.purge_changes() TO %s', a.r);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.grant_sales_loop() IS
	'Trigger: when grant_access() records its roles, grants the sales loop''s privileges (deals, campaigns, change feed) to them';
REVOKE ALL ON FUNCTION leadmgmt.grant_sales_loop() FROM PUBLIC;
CREATE TRIGGER grant_sales_loop
	AFTER INSERT ON leadmgmt.access_role
	REFERENCING NEW TABLE AS new_roles
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.grant_sales_loop();

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
