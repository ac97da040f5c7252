
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
