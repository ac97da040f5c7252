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
	pass integer;
BEGIN
	IF keep IS NULL OR duplicate IS NULL THEN
		RAISE EXCEPTION 'lead ids must not be null' USING ERRCODE = '22004';
	END IF;
	IF keep = duplicate THEN
		RAISE EXCEPTION 'cannot merge lead % into itself', keep
			USING ERRCODE = 'LM031';
	END IF;
	-- Checked twice: first without a lock, so that a lead merged away
	-- meanwhile is refused without being locked (FOR UPDATE on a merged lead
	-- would make a writer passing through it along merged_into wait for us
	-- while we wait for the live lead that writer holds: a deadlock), then
	-- with both leads locked, in id order, FOR UPDATE (not NO KEY) so that
	-- activity inserts for them (FOR KEY SHARE in activity_lead_resolve)
	-- wait for us.
	FOR pass IN 1 .. 2 LOOP
		IF pass = 2 THEN
			PERFORM 1 FROM leadmgmt.lead l WHERE l.id IN (keep, duplicate) ORDER BY l.id FOR UPDATE;
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

CREATE OR REPLACE FUNCTION leadmgmt.import_leads(batch text DEFAULT NULL,
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
	-- before we got the locks).  merge_leads() takes no key locks: the
	-- leads are locked FOR KEY SHARE (lead_lock, and in id order below), so
	-- a lead merged while we waited is passed over for its survivor, and
	-- none can be merged away before we commit.
	SELECT array_agg(x.external_id), array_agg(leadmgmt.lead_lock(x.id))
	  INTO x_id, x_lead
	  FROM leadmgmt.lead x
	 WHERE x.external_id = ANY (r_xid);
	SELECT array_agg(ARRAY[s.system, s.external_id]), array_agg(leadmgmt.lead_lock(s.lead_id))
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
	           AND c.merged_into IS NULL
	         ORDER BY c.id
	           FOR KEY SHARE OF c) l;

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
-- No SQL change: running on 15, 17 and 18 took C (varatt.h), test, build and
-- packaging changes only; the objects are the same on every version.

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
-- mirrors sql/parts/00_schema.sql (settings nurture_min_gap, nurture_horizon,
-- nurture_convert_stage; value type stage), sql/parts/86_nurture.sql and
-- the nurture grants in sql/parts/90_access.sql

CREATE OR REPLACE FUNCTION leadmgmt.setting_defaults(
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
	('nurture_min_gap',    '3 days',          'interval', 'frequency cap: at most one nurture touch per lead within this interval, across tracks'),
	('nurture_horizon',    '90 days',         'interval', 'nurture conversions count within this interval after enrolment'),
	('nurture_convert_stage', 'mql',          'stage',    'a nurtured lead converts when it enters this stage or a higher-ranked one (not of category lost)')
$$;
COMMENT ON FUNCTION leadmgmt.setting_defaults() IS
	'Every leadmgmt setting with its built-in default, type and meaning';

CREATE OR REPLACE FUNCTION leadmgmt.set_setting(key text, value text)
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
	-- no foreign keys: their per-row checks doubled the cost of enrolling a
	-- million leads; nurture_enroll() is the only writer and enrols existing
	-- leads into existing tracks, the triggers below cascade deleted leads
	-- and keep tracks with enrolments from being deleted or renamed
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
CREATE INDEX nurture_enrollment_track_step ON leadmgmt.nurture_enrollment (track, step_no);
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

-- A changed step moves the due time of the enrolments waiting for it.
CREATE FUNCTION leadmgmt.nurture_step_changed()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	t text;
	n integer;
BEGIN
	FOR t, n IN SELECT DISTINCT x.track, x.step_no
	              FROM (SELECT NEW.track, NEW.step_no WHERE TG_OP <> 'DELETE'
	                    UNION ALL SELECT OLD.track, OLD.step_no WHERE TG_OP <> 'INSERT') x
	LOOP
		UPDATE leadmgmt.nurture_enrollment e
		   SET next_due_at = (SELECT coalesce(e.last_sent_at, e.enrolled_at) + s.wait
		                        FROM leadmgmt.nurture_step s
		                       WHERE s.track = e.track AND s.step_no = e.step_no + 1)
		 WHERE e.track = t AND e.step_no = n - 1 AND e.status = 'active';
	END LOOP;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.nurture_step_changed() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.nurture_step_changed() IS
	'Trigger: recomputes next_due_at of the active enrolments waiting for a step that was added, changed or removed';
CREATE TRIGGER nurture_step_changed
	AFTER INSERT OR UPDATE OR DELETE ON leadmgmt.nurture_step
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.nurture_step_changed();

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

	-- 1. exits, in this order of precedence (doc/nurture.md)
	WITH conv AS (
		SELECT h.lead_id, max(h.changed_at) AS last_converted_at
		  FROM leadmgmt.stage_history h
		  JOIN leadmgmt.stage s ON s.name = h.to_stage
		 WHERE s.rank >= convert_rank AND s.category <> 'lost'
		   AND h.from_stage IS DISTINCT FROM h.to_stage
		 GROUP BY h.lead_id
	), withdrawn AS (
		SELECT w.lead_id, w.channel
		  FROM (SELECT DISTINCT ON (c.lead_id, c.channel) c.lead_id, c.channel, c.granted
		          FROM leadmgmt.consent c
		         ORDER BY c.lead_id, c.channel, c.at DESC, c.id DESC) w
		 WHERE NOT w.granted
	), cur AS (
		SELECT e.id,
		       CASE
		       WHEN l.merged_into IS NOT NULL THEN 'merged'
		       WHEN l.forgotten_at IS NOT NULL THEN 'forgotten'
		       WHEN cv.last_converted_at > e.enrolled_at THEN 'converted'
		       WHEN st.category = 'lost' THEN 'disqualified'
		       WHEN e.status = 'holdout' THEN
		            CASE WHEN e.enrolled_at + horizon <= nurture_enroll.at THEN 'finished' END
		       WHEN s.step_no IS NULL THEN 'finished'
		       WHEN ch.consent_channel = 'email' AND l.email_status = 'unsubscribed' THEN 'unsubscribed'
		       WHEN ch.consent_channel = 'email' AND l.email_status = 'bounced' THEN 'bounced'
		       WHEN wd.lead_id IS NOT NULL THEN 'consent_withdrawn'
		       END AS reason
		  FROM leadmgmt.nurture_enrollment e
		  JOIN leadmgmt.lead l ON l.id = e.lead_id
		  JOIN leadmgmt.stage st ON st.name = l.stage
		  LEFT JOIN conv cv ON cv.lead_id = e.lead_id
		  LEFT JOIN leadmgmt.nurture_step s ON s.track = e.track AND s.step_no = e.step_no + 1
		  LEFT JOIN leadmgmt.nurture_channel ch ON ch.name = s.channel
		  LEFT JOIN withdrawn wd ON wd.lead_id = e.lead_id AND wd.channel = ch.consent_channel
		 WHERE e.exited_at IS NULL
	)
	SELECT array_agg(cur.id), array_agg(cur.reason) INTO exit_ids, exit_reasons
	  FROM cur WHERE cur.reason IS NOT NULL;
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

	-- 2. enrolment.  The candidates, found in one pass: leads that may be
	-- nurtured and have no current enrolment (in the steady state, only the
	-- new ones; none: no per-track work at all).  Then track by track in
	-- priority order, those that match and were never in the track; a lead
	-- a concurrent run enrolled meanwhile is skipped by ON CONFLICT on the
	-- one-current-enrolment index.  No lead row is locked, so merges and
	-- stage changes never wait for a run.
	SELECT array_agg(l.id ORDER BY l.id) INTO candidates
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage st ON st.name = l.stage
	 WHERE l.merged_into IS NULL AND l.forgotten_at IS NULL AND st.category <> 'lost'
	   AND l.created_at <= nurture_enroll.at
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.nurture_enrollment x
	                    WHERE x.lead_id = l.id AND x.exited_at IS NULL);
	FOR t IN SELECT * FROM leadmgmt.nurture_track tr WHERE tr.active AND candidates IS NOT NULL
	          ORDER BY tr.priority DESC, tr.name LOOP
		SELECT s.channel, c.consent_channel, s.wait INTO first_channel, first_consent, first_wait
		  FROM leadmgmt.nurture_step s JOIN leadmgmt.nurture_channel c ON c.name = s.channel
		 WHERE s.track = t.name AND s.step_no = 1;
		CONTINUE WHEN NOT FOUND;
		-- EXECUTE: a plan for this track's criteria, not a generic one.  A
		-- few candidates (the steady state) are looked up by id; many (a
		-- first run) are found by a scan of lead.  The arbiter is the
		-- one-current-enrolment index alone (one probe per row, not three);
		-- a lead that was in the track before is left out by the query.
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
				ON CONFLICT (lead_id) WHERE exited_at IS NULL DO NOTHING
				RETURNING ne.status)
			SELECT count(*), count(*) FILTER (WHERE ins.status = 'holdout') FROM ins
		$sql$, CASE WHEN cardinality(candidates) <= 10000 THEN 'l.id = ANY ($13)'
		            ELSE 'l.merged_into IS NULL AND l.forgotten_at IS NULL AND l.created_at <= $2
				   AND l.stage IN (SELECT st.name FROM leadmgmt.stage st WHERE st.category <> ''lost'')' END,
		       CASE WHEN cardinality(candidates) <= 10000 THEN 'AND x.lead_id = ANY ($13)' ELSE '' END)
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
	   -- converted since the enrolment (nurture_enroll() records the exit)
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
	has_next boolean;
	touch bigint;
BEGIN
	IF enrollment IS NULL OR step_no IS NULL OR at IS NULL OR NOT isfinite(at) THEN
		RAISE EXCEPTION 'enrollment, step_no and at must be given and finite' USING ERRCODE = '22004';
	END IF;
	-- the enrolment first, then (through the activity insert) the lead: a
	-- merge locks the lead and then skips enrolments locked here
	SELECT * INTO e FROM leadmgmt.nurture_enrollment x WHERE x.id = nurture_sent.enrollment FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'nurture enrolment % does not exist', enrollment USING ERRCODE = 'LM094',
			HINT = 'Pass the enrollment column of leadmgmt.nurture_due.';
	END IF;
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

	SELECT true, x.wait INTO has_next, next_wait FROM leadmgmt.nurture_step x
	 WHERE x.track = e.track AND x.step_no = s.step_no + 1;
	-- an enrolment that ended while this touch was on its way (a merge, an
	-- exit) records the step but stays ended
	UPDATE leadmgmt.nurture_enrollment x
	   SET step_no = s.step_no,
	       last_sent_at = at,
	       status = CASE WHEN x.status = 'active' AND has_next IS NULL THEN 'completed' ELSE x.status END,
	       exited_at = CASE WHEN x.status = 'active' AND has_next IS NULL THEN at ELSE x.exited_at END,
	       exit_reason = CASE WHEN x.status = 'active' AND has_next IS NULL THEN 'finished' ELSE x.exit_reason END,
	       next_due_at = CASE WHEN x.status = 'active' AND has_next THEN at + next_wait END
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

CREATE OR REPLACE FUNCTION leadmgmt.grant_access(admin regrole, marketing regrole, sales regrole, reader regrole)
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
-- END nurture



-- BEGIN bi (chartable durations, reader surface)


-- END bi
