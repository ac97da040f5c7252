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


-- END nurture



-- BEGIN bi (chartable durations, reader surface)


-- END bi
