
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
