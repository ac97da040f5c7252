
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
ALTER TABLE leadmgmt.lead ADD COLUMN key_version integer;
COMMENT ON COLUMN leadmgmt.lead.key_version IS
	'leadmgmt.key_version() the match keys were built with (maintained by the extension)';

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
	target := leadmgmt.lead_resolve(lead);
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
	lock_key text;
BEGIN
	IF ek IS NULL AND pk IS NULL AND (ck IS NULL OR nk IS NULL) AND upsert_lead.external_id IS NULL THEN
		RAISE EXCEPTION 'lead has nothing to match on'
			USING ERRCODE = '22023',
			      DETAIL = 'A lead needs a usable e-mail address, phone number, company and name, or external id.',
			      HINT = 'Check the input: placeholders such as "n/a" or "なし" give no key (see leadmgmt.normalize_email()).';
	END IF;

	-- Serialise upserts that could match each other: one transaction-level
	-- advisory lock per key, taken in a fixed order (no deadlocks).  Under
	-- READ COMMITTED the lookups below then see what the other committed.
	FOR lock_key IN
		SELECT k FROM unnest(ARRAY['e:' || ek, 'p:' || pk, 'c:' || ck || ':' || nk,
		                           'x:' || upsert_lead.external_id]) AS k
		 WHERE k IS NOT NULL ORDER BY k
	LOOP
		PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('leadmgmt.lead:' || lock_key, 0));
	END LOOP;

	IF upsert_lead.external_id IS NOT NULL THEN
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.external_id = upsert_lead.external_id;
		IF FOUND THEN
			target := leadmgmt.lead_resolve(target);
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

	-- scores follow the activities (when the scoring capability is installed)
	IF pg_catalog.to_regprocedure('leadmgmt.score(bigint,timestamp with time zone)') IS NOT NULL THEN
		EXECUTE 'SELECT leadmgmt.score($1)' USING keep;
	END IF;
	RETURN keep;
END
$$;
COMMENT ON FUNCTION leadmgmt.merge_leads(bigint, bigint) IS
	'Merge lead duplicate into lead keep: activities and external ids move, keep takes the more advanced stage (history reason ''merge''), empty fields are filled from the duplicate, duplicate.merged_into = keep; idempotent; returns keep';

-- Activities for a merged lead land on the lead it was merged into, also
-- when they race the merge (see src/identity.c).
CREATE FUNCTION leadmgmt.activity_lead_resolve()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_lead_resolve';
COMMENT ON FUNCTION leadmgmt.activity_lead_resolve() IS
	'Trigger: an activity of a merged lead goes to the lead it was merged into; waits for a merge in progress';
CREATE TRIGGER activity_lead_resolve
	BEFORE INSERT OR UPDATE OF lead_id ON leadmgmt.activity
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

CREATE FUNCTION leadmgmt.import_leads(batch text DEFAULT NULL,
	OUT imported bigint, OUT matched bigint, OUT created bigint,
	OUT activities bigint, OUT rejected bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r leadmgmt.lead_import;
	u record;
	target bigint;
BEGIN
	imported := 0; matched := 0; created := 0; activities := 0; rejected := 0;
	FOR r IN
		SELECT * FROM leadmgmt.lead_import i
		 WHERE i.imported_at IS NULL AND (import_leads.batch IS NULL OR i.batch = import_leads.batch)
		 ORDER BY i.id
		   FOR UPDATE
	LOOP
		target := NULL;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			target := leadmgmt.find_lead(r.system, r.system_id);
		END IF;
		IF target IS NOT NULL THEN
			SELECT target AS lead_id, true AS matched, 'system_id' AS matched_on INTO u;
		ELSIF leadmgmt.normalize_email(r.email) IS NULL AND leadmgmt.normalize_phone(r.phone, 'JP') IS NULL
		      AND (leadmgmt.normalize_company(r.company) IS NULL OR leadmgmt.normalize_name(r.name) IS NULL)
		      AND r.external_id IS NULL THEN
			UPDATE leadmgmt.lead_import i SET imported_at = pg_catalog.now(),
			       error = 'nothing to match on: no usable e-mail, phone, company and name, or external id'
			 WHERE i.id = r.id;
			rejected := rejected + 1;
			CONTINUE;
		ELSE
			SELECT * INTO u FROM leadmgmt.upsert_lead(r.email, r.name, r.company, r.phone, r.source,
			                                           r.origin, r.external_id, r.attributes);
		END IF;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			PERFORM leadmgmt.link_external_id(u.lead_id, r.system, r.system_id);
		END IF;
		IF r.kind IS NOT NULL THEN
			INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, channel)
			VALUES (u.lead_id, r.kind, COALESCE(r.occurred_at, pg_catalog.now()), r.campaign, r.detail, 'import');
			activities := activities + 1;
		END IF;
		UPDATE leadmgmt.lead_import i
		   SET lead_id = u.lead_id, matched = u.matched, matched_on = u.matched_on,
		       imported_at = pg_catalog.now()
		 WHERE i.id = r.id;
		imported := imported + 1;
		IF u.matched THEN matched := matched + 1; ELSE created := created + 1; END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION leadmgmt.import_leads(text) IS
	'Import the pending rows of leadmgmt.lead_import (one batch, or all): match or create each lead as upsert_lead() does, link system ids, record the row''s activity on the lead; rows without anything to match on are marked with an error';

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
