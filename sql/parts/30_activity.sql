
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
