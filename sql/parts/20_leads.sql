
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

-- What writers use instead of lead_resolve(): follows merged_into taking
-- FOR KEY SHARE row locks, so a writer blocked behind merge_leads() ends on
-- the surviving lead, which cannot be merged away until it commits
-- (doc/operations.md, "Concurrent use").
CREATE FUNCTION leadmgmt.lead_lock(lead bigint)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_lead_lock';
COMMENT ON FUNCTION leadmgmt.lead_lock(bigint) IS
	'The live lead a lead id stands for, locked FOR KEY SHARE until the transaction ends (waits for a merge in progress, then follows merged_into); error LM005 when it does not exist, LM050 for a circle of merged_into';
