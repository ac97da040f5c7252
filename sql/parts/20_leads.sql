
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
