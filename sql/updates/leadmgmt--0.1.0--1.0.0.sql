-- leadmgmt 0.1.0 -> 1.0.0: what changed in the SQL surface since the 0.1.0
-- pre-release.  The upgrade test (test/t/003_upgrade.pl) checks that
-- installing 0.1.0 and running ALTER EXTENSION leadmgmt UPDATE gives exactly
-- the objects and built-in rows of a fresh 1.0.0 install.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.0.0'" to load this file. \quit

-- BEGIN analytics (generated from sql/parts by the release engineer; keep in sync)
-------------------------------------------------------------------------------
-- Stage history records two facts per row; the funnel views read them
-------------------------------------------------------------------------------
ALTER TABLE leadmgmt.stage_history
	ADD COLUMN entry_number integer,
	ADD COLUMN time_in_from_stage interval;
COMMENT ON COLUMN leadmgmt.stage_history.entry_number IS
	'1 for the lead''s first entry into to_stage, 2 for the next (after recycling), ...; NULL for notes (from_stage = to_stage, such as merges)';
COMMENT ON COLUMN leadmgmt.stage_history.time_in_from_stage IS
	'time the lead spent in from_stage: changed_at minus its previous entry; NULL for the first row and for notes';

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
	RETURN filled;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.fill_history_facts() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.fill_history_facts() IS
	'Superuser: fills stage_history.entry_number and time_in_from_stage where they are missing or wrong (history from before 1.0.0); returns the rows changed';

-- the history written by 0.1.0 gets its facts now
SELECT leadmgmt.fill_history_facts();

-- Exact percentiles without percentile_cont's sort (src/percentile.c): an
-- ordinary, hashable, parallel aggregate that the views below use for times
-- in stage.
CREATE FUNCTION leadmgmt.interval_percentiles_trans(internal, interval, float8[])
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_trans';
CREATE FUNCTION leadmgmt.interval_percentiles_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_combine';
CREATE FUNCTION leadmgmt.interval_percentiles_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_serialize';
CREATE FUNCTION leadmgmt.interval_percentiles_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_deserialize';
CREATE FUNCTION leadmgmt.interval_percentiles_final(internal)
RETURNS interval[] LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_interval_percentiles_final';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_trans(internal, interval, float8[]) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_combine(internal, internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_serialize(internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_deserialize(bytea, internal) IS
	'Support function of the interval_percentiles aggregate';
COMMENT ON FUNCTION leadmgmt.interval_percentiles_final(internal) IS
	'Support function of the interval_percentiles aggregate';
CREATE AGGREGATE leadmgmt.interval_percentiles(value interval, fractions float8[]) (
	SFUNC = leadmgmt.interval_percentiles_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.interval_percentiles_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.interval_percentiles_combine,
	SERIALFUNC = leadmgmt.interval_percentiles_serialize,
	DESERIALFUNC = leadmgmt.interval_percentiles_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.interval_percentiles(interval, float8[]) IS
	'For each fraction, exactly what percentile_cont(fraction) WITHIN GROUP (ORDER BY value) returns, by selection instead of a sort; NULL values skipped; NULL for no values';

-- Conversion along next_stage without joining the history to itself
-- (src/conversion.c): one scan collects the entries, a radix sort by lead
-- puts each lead's entries together.
CREATE FUNCTION leadmgmt.stage_conversions_trans(internal, bigint, text, timestamptz, text[], text[])
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_trans';
CREATE FUNCTION leadmgmt.stage_conversions_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_combine';
CREATE FUNCTION leadmgmt.stage_conversions_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_serialize';
CREATE FUNCTION leadmgmt.stage_conversions_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_deserialize';
CREATE FUNCTION leadmgmt.stage_conversions_final(internal)
RETURNS bigint[] LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_stage_conversions_final';
COMMENT ON FUNCTION leadmgmt.stage_conversions_trans(internal, bigint, text, timestamptz, text[], text[]) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_combine(internal, internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_serialize(internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_deserialize(bytea, internal) IS
	'Support function of the stage_conversions aggregate';
COMMENT ON FUNCTION leadmgmt.stage_conversions_final(internal) IS
	'Support function of the stage_conversions aggregate';
CREATE AGGREGATE leadmgmt.stage_conversions(lead_id bigint, stage text, changed_at timestamptz,
                                            stages text[], next_stages text[]) (
	SFUNC = leadmgmt.stage_conversions_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.stage_conversions_final,
	FINALFUNC_MODIFY = SHAREABLE,
	COMBINEFUNC = leadmgmt.stage_conversions_combine,
	SERIALFUNC = leadmgmt.stage_conversions_serialize,
	DESERIALFUNC = leadmgmt.stage_conversions_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.stage_conversions(bigint, text, timestamptz, text[], text[]) IS
	'For each stages[i], the number of leads that entered next_stages[i] at or after their first entry into stages[i] (rows are stage entries); rows with a NULL or unlisted stage skipped';

COMMENT ON VIEW leadmgmt.stage_entry IS
	'Per live lead and stage: when it first and last entered the stage and how often';

CREATE OR REPLACE VIEW leadmgmt.funnel WITH (security_invoker = true) AS
	SELECT s.name AS stage,
	       row_number() OVER (ORDER BY s.rank, s.name)::integer AS position,
	       coalesce(en.leads, 0) AS leads_entered,
	       coalesce(cur.leads, 0) AS leads_current,
	       CASE WHEN s.next_stage IS NOT NULL AND coalesce(en.leads, 0) > 0
	            THEN coalesce(nx.leads, 0)::float8 / en.leads END AS conversion_to_next,
	       md.median AS median_time_in_stage
	  FROM leadmgmt.stage s
	  LEFT JOIN (SELECT h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h
	              WHERE h.entry_number = 1
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.to_stage) en ON en.stage = s.name
	  LEFT JOIN (SELECT l.stage, count(*) AS leads FROM leadmgmt.lead l
	              WHERE l.merged_into IS NULL GROUP BY l.stage) cur ON cur.stage = s.name
	  -- converted: the first entry into the stage is followed by an entry
	  -- into its next stage
	  LEFT JOIN (SELECT u.stage, u.leads
	               FROM (SELECT leadmgmt.stage_conversions(
	                                h.lead_id, h.to_stage, h.changed_at,
	                                (SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st),
	                                (SELECT array_agg(st.next_stage ORDER BY st.name) FROM leadmgmt.stage st)) AS leads
	                       FROM leadmgmt.stage_history h
	                      WHERE h.from_stage IS DISTINCT FROM h.to_stage
	                        AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                         WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)) c,
	                    unnest((SELECT array_agg(st.name ORDER BY st.name) FROM leadmgmt.stage st), c.leads)
	                      AS u(stage, leads)) nx ON nx.stage = s.name
	  -- a stay in a stage ends with the next entry, which records its length
	  LEFT JOIN (SELECT h.from_stage AS stage,
	                    justify_hours((leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5}'))[1]) AS median
	               FROM leadmgmt.stage_history h
	              WHERE h.time_in_from_stage IS NOT NULL
	                AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                                 WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	              GROUP BY h.from_stage) md ON md.stage = s.name;

CREATE OR REPLACE VIEW leadmgmt.funnel_by_source WITH (security_invoker = true) AS
	WITH src AS (
		SELECT coalesce(l.source, '(none)') AS source, count(*) AS leads
		  FROM leadmgmt.lead l WHERE l.merged_into IS NULL GROUP BY 1
	)
	SELECT src.source, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / src.leads AS conversion_from_first
	  FROM src CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT coalesce(l.source, '(none)') AS source, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN leadmgmt.lead l ON l.id = h.lead_id
	              WHERE h.entry_number = 1 AND l.merged_into IS NULL
	              GROUP BY 1, 2) x ON x.source = src.source AND x.stage = s.name;

CREATE OR REPLACE VIEW leadmgmt.funnel_cohort WITH (security_invoker = true) AS
	WITH tz AS (SELECT leadmgmt.get_setting('reporting_timezone') AS zone),
	cohort AS (
		-- the first stage entry is recorded at created_at (the stage machine
		-- does so), so the lead row gives the cohort without aggregating history
		SELECT l.id AS lead_id,
		       date_trunc('month', l.created_at AT TIME ZONE (SELECT zone FROM tz))::date AS cohort_month
		  FROM leadmgmt.lead l WHERE l.merged_into IS NULL
	), size AS (SELECT cohort_month, count(*) AS leads FROM cohort GROUP BY 1)
	SELECT size.cohort_month, s.name AS stage, coalesce(x.leads, 0) AS leads_entered,
	       coalesce(x.leads, 0)::float8 / size.leads AS conversion_from_first
	  FROM size CROSS JOIN leadmgmt.stage s
	  LEFT JOIN (SELECT c.cohort_month, h.to_stage AS stage, count(*) AS leads
	               FROM leadmgmt.stage_history h JOIN cohort c USING (lead_id)
	              WHERE h.entry_number = 1
	              GROUP BY 1, 2) x ON x.cohort_month = size.cohort_month AND x.stage = s.name;

CREATE OR REPLACE VIEW leadmgmt.stage_velocity WITH (security_invoker = true) AS
	SELECT t.from_stage, t.to_stage, t.transitions, t.avg_time,
	       justify_hours(t.p[1]) AS median_time, justify_hours(t.p[2]) AS p90_time
	  FROM (SELECT h.from_stage, h.to_stage, count(*) AS transitions,
	               justify_hours(avg(h.time_in_from_stage)) AS avg_time,
	               leadmgmt.interval_percentiles(h.time_in_from_stage, '{0.5,0.9}') AS p
	          FROM leadmgmt.stage_history h
	         WHERE h.time_in_from_stage IS NOT NULL AND h.from_stage IS NOT NULL
	           AND NOT EXISTS (SELECT 1 FROM leadmgmt.lead m
	                            WHERE m.id = h.lead_id AND m.merged_into IS NOT NULL)
	         GROUP BY h.from_stage, h.to_stage) t;
-- END analytics

-- BEGIN identity (from sql/parts/80_identity.sql; keep in sync)
-- import_leads() resolves a list set-based through import_resolve();
-- upsert_lead() takes the key-bucket advisory locks it shares with it.
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

CREATE FUNCTION leadmgmt.import_resolve(
	row_id bigint[], row_present integer[], row_keys text[], row_attributes jsonb[],
	lead_id bigint[], lead_present integer[], lead_keys text[], lead_attributes jsonb[],
	external_id text[], external_lead bigint[], system_ids text[], system_lead bigint[],
	OUT row_lead bigint[], OUT row_matched_on text[], OUT row_fills integer[],
	OUT lead_ref bigint[], OUT lead_attributes_after jsonb[])
RETURNS record
LANGUAGE c IMMUTABLE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_import_resolve';
COMMENT ON FUNCTION leadmgmt.import_resolve(bigint[], integer[], text[], jsonb[], bigint[], integer[], text[], jsonb[], text[], bigint[], text[], bigint[]) IS
	'Internal step of import_leads(): replays the rows of a list in id order against the leads they can reach, in memory, as upsert_lead() row by row would; returns each row''s lead (negative: the k-th new lead), match and filled fields, and the attributes of every lead created or updated';

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
	-- before we got the locks)
	SELECT array_agg(x.external_id), array_agg(leadmgmt.lead_resolve(x.id))
	  INTO x_id, x_lead
	  FROM leadmgmt.lead x
	 WHERE x.external_id = ANY (r_xid);
	SELECT array_agg(ARRAY[s.system, s.external_id]), array_agg(leadmgmt.lead_resolve(s.lead_id))
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
	         ORDER BY c.id) l;

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
-- END identity

-- BEGIN scoring (from sql/parts/40_scoring.sql; keep in sync)
-- A half-life that scoring cannot use is refused when the rule is written
-- (found by fuzzing: such a rule made every later track() fail).
ALTER TABLE leadmgmt.scoring_rule ADD CONSTRAINT scoring_rule_half_life_representable
	CHECK (half_life IS NULL OR half_life <= interval '0' OR leadmgmt.half_life_us(half_life) > 0);
-- END scoring

-- Roles registered with grant_access() need its grants of 1.0.0 (the funnel
-- views read the new history columns), but grants made inside an extension
-- script are recorded as the extension's initial privileges, which pg_dump
-- leaves out: the DBA calls grant_access() again after the update
-- (doc/operations.md, "Upgrades").
