-- leadmgmt 1.0.0 -> 1.1.0: what changed in the SQL surface since 1.0.0.
-- The upgrade test (test/t/003_upgrade.pl) checks that installing 1.0.0 and
-- running ALTER EXTENSION leadmgmt UPDATE gives exactly the objects and
-- built-in rows of a fresh 1.1.0 install.
--
-- One section per capability, in the order of sql/parts/; each section says
-- which part files it mirrors.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.1.0'" to load this file. \quit

-- BEGIN reliability (issue: concurrent load and merges)

-- Mirrors sql/parts/20_leads.sql, 30_activity.sql, 40_scoring.sql,
-- 80_identity.sql and 82_consent.sql (doc/operations.md, "Concurrent use").

-- Finite times: every stage change is recorded after created_at, scores
-- decay from occurred_at.  Validating scans the tables; a database holding
-- infinite times stops the update here (doc/operations.md lists the query
-- that finds them).
ALTER TABLE leadmgmt.lead
	ADD CONSTRAINT lead_created_at_finite CHECK (pg_catalog.isfinite(created_at)),
	ADD CONSTRAINT lead_stage_entered_at_finite CHECK (pg_catalog.isfinite(stage_entered_at));
ALTER TABLE leadmgmt.activity
	ADD CONSTRAINT activity_occurred_at_finite CHECK (pg_catalog.isfinite(occurred_at)),
	ADD CONSTRAINT activity_points_bounded CHECK (points BETWEEN -1e15 AND 1e15);
-- Bounded points: no sum of scores can overflow to infinity
ALTER TABLE leadmgmt.scoring_rule
	DROP CONSTRAINT scoring_rule_points_finite,
	ADD CONSTRAINT scoring_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9);
ALTER TABLE leadmgmt.fit_rule
	DROP CONSTRAINT fit_rule_points_finite,
	ADD CONSTRAINT fit_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9);
COMMENT ON COLUMN leadmgmt.scoring_rule.points IS 'points awarded, may be negative; between -1e9 and 1e9';
COMMENT ON COLUMN leadmgmt.fit_rule.points IS 'fit points when the rule matches; between -1e9 and 1e9';

-- Writers lock the lead they resolve to (lead_lock), merges rescore
CREATE FUNCTION leadmgmt.lead_lock(lead bigint)
RETURNS bigint
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_lead_lock';
COMMENT ON FUNCTION leadmgmt.lead_lock(bigint) IS
	'The live lead a lead id stands for, locked FOR KEY SHARE until the transaction ends (waits for a merge in progress, then follows merged_into); error LM005 when it does not exist, LM050 for a circle of merged_into';

CREATE FUNCTION leadmgmt.merge_score(keep bigint, duplicate bigint)
RETURNS float8
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_merge_score';
COMMENT ON FUNCTION leadmgmt.merge_score(bigint, bigint) IS
	'Step of merge_leads(): once duplicate is merged into keep, rescores both from their activity and hands keep to sales (stage mql, NOTIFY) when the merge took it over the threshold; refuses pairs that are not merged; returns keep''s score';

CREATE OR REPLACE FUNCTION leadmgmt.track(lead bigint, kind text, at timestamptz DEFAULT pg_catalog.now(),
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

CREATE OR REPLACE FUNCTION leadmgmt.link_external_id(lead bigint, system text, external_id text)
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

CREATE OR REPLACE FUNCTION leadmgmt.upsert_lead(email text DEFAULT NULL, name text DEFAULT NULL,
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

CREATE OR REPLACE FUNCTION leadmgmt.merge_leads(keep bigint, duplicate bigint)
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

	-- scores follow the activities: both leads rescored from their log, and
	-- keep handed to sales if the merge took it over the threshold
	PERFORM leadmgmt.merge_score(keep, duplicate);
	RETURN keep;
END
$$;
COMMENT ON FUNCTION leadmgmt.merge_leads(bigint, bigint) IS
	'Merge lead duplicate into lead keep: activities and external ids move, keep takes the more advanced stage (history reason ''merge''), empty fields are filled from the duplicate, duplicate.merged_into = keep; idempotent; returns keep';

CREATE OR REPLACE FUNCTION leadmgmt.consent(lead_id bigint, channel text, granted boolean,
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

CREATE OR REPLACE FUNCTION leadmgmt.forget_lead(lead bigint)
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


-- END reliability



-- BEGIN versions (PostgreSQL 15, 17, 18)


-- END versions



-- BEGIN ingest (COPY speed, SSPACE)


-- END ingest



-- BEGIN behavioural (ClickHouse parity, sequences, retention)


-- END behavioural



-- BEGIN structure (one shape for every capability)


-- END structure



-- BEGIN sales loop (change feed, opportunities, campaigns)


-- END sales loop



-- BEGIN nurture


-- END nurture



-- BEGIN bi (chartable durations, reader surface)


-- END bi
