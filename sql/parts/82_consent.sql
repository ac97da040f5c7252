
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
