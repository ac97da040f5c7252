-- leadmgmt 0.1.0 -> 1.0.0: what changed in the SQL surface since the 0.1.0
-- pre-release.  The upgrade test (test/t/003_upgrade.pl) checks that
-- installing 0.1.0 and running ALTER EXTENSION leadmgmt UPDATE gives exactly
-- the objects and built-in rows of a fresh 1.0.0 install.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.0.0'" to load this file. \quit

-- BEGIN analytics (from sql/parts/20_leads.sql and 60_analytics.sql)
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

-- BEGIN identity (from sql/parts/80_identity.sql)
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

-- BEGIN scoring (from sql/parts/40_scoring.sql)
-- A half-life that scoring cannot use is refused when the rule is written
-- (found by fuzzing: such a rule made every later track() fail).
ALTER TABLE leadmgmt.scoring_rule ADD CONSTRAINT scoring_rule_half_life_representable
	CHECK (half_life IS NULL OR half_life <= interval '0' OR leadmgmt.half_life_us(half_life) > 0);
-- END scoring

-- BEGIN scaling (from sql/parts/30_activity, 40_scoring, 80_identity, 90_access, 95_scaling)
-- time-range scans of a large log (retention, recent activity): activity
-- arrives roughly in time order, so a BRIN index of a few pages covers it;
-- autosummarize keeps new block ranges indexed without a manual VACUUM
CREATE INDEX activity_occurred_at_brin ON leadmgmt.activity USING brin (occurred_at)
	WITH (autosummarize = on);

-- What purged activity leaves behind (leadmgmt.purge_activity, doc/scaling.md):
-- per lead, the points its purged activities had earned, as decay components,
-- and how often each rule had awarded them, in the score_state format.
-- rescore() and score() add it to what the remaining activity earns, so
-- deleting old activity changes no score; it is frozen at the rules in force
-- when the activity was purged.
CREATE TABLE leadmgmt.purged_score (
	lead_id       bigint PRIMARY KEY REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	state         bytea NOT NULL,
	purged_before timestamptz NOT NULL,
	activities    bigint NOT NULL,
	purged_at     timestamptz NOT NULL
);
COMMENT ON TABLE leadmgmt.purged_score IS
	'Score points and cap counters of purged activity, per lead (written by leadmgmt.purge_activity); rescore() and score() count them';
COMMENT ON COLUMN leadmgmt.purged_score.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.purged_score.state IS 'decay components and award counters of the purged activity, packed like score_state.state';
COMMENT ON COLUMN leadmgmt.purged_score.purged_before IS 'latest cutoff: activity of this lead before it is gone';
COMMENT ON COLUMN leadmgmt.purged_score.activities IS 'activity rows of this lead purged so far';
COMMENT ON COLUMN leadmgmt.purged_score.purged_at IS 'when activity of this lead was last purged';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.purged_score', '');

-- Two states in one: components of a half-life fold exactly (score_state_pack
-- decays the older to the newer reference time), award counters add up.
CREATE FUNCTION leadmgmt.score_state_merge(a bytea, b bytea)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.score_state_pack(coalesce(c.half_life_us, '{}'), coalesce(c.value, '{}'),
	                                 coalesce(c.ref_at, '{}'), coalesce(w.rule_id, '{}'),
	                                 coalesce(w.times, '{}'), coalesce(w.last_at, '{}'))
	  FROM (SELECT array_agg(x.half_life_us ORDER BY x.ref_at) AS half_life_us,
	               array_agg(x.value ORDER BY x.ref_at) AS value,
	               array_agg(x.ref_at ORDER BY x.ref_at) AS ref_at
	          FROM (SELECT ca.half_life_us, ca.value, ca.ref_at FROM leadmgmt.score_state_components(a) ca
	                UNION ALL
	                SELECT cb.half_life_us, cb.value, cb.ref_at FROM leadmgmt.score_state_components(b) cb) x) c,
	       (SELECT array_agg(y.rule_id ORDER BY y.rule_id) AS rule_id,
	               array_agg(y.times ORDER BY y.rule_id) AS times,
	               array_agg(y.last_at ORDER BY y.rule_id) AS last_at
	          FROM (SELECT z.rule_id, sum(z.times)::integer AS times, max(z.last_awarded_at) AS last_at
	                  FROM (SELECT wa.rule_id, wa.times, wa.last_awarded_at FROM leadmgmt.score_state_awards(a) wa
	                        UNION ALL
	                        SELECT wb.rule_id, wb.times, wb.last_awarded_at FROM leadmgmt.score_state_awards(b) wb) z
	                 GROUP BY z.rule_id) y) w;
END;
COMMENT ON FUNCTION leadmgmt.score_state_merge(bytea, bytea) IS
	'Merge two score_state values: decay components of a half-life folded together, award counters added (NULL counts as empty)';

CREATE FUNCTION leadmgmt.score_matches_batch(leads bigint[], upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET max_parallel_workers_per_gather = 0
SET jit = off
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM (
		SELECT a.id AS activity_id, a.lead_id, a.occurred_at, r.id AS rule_id, r.points,
		       leadmgmt.half_life_us(r.half_life) AS half_life_us, r.max_times,
		       row_number() OVER (PARTITION BY a.lead_id, r.id ORDER BY a.occurred_at, a.id) AS nth
		  FROM (SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE score_matches_batch.leads IS NULL
		        UNION ALL
		        SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE x.lead_id = ANY (score_matches_batch.leads)
		           AND x.occurred_at <= coalesce(score_matches_batch.upto, 'infinity')) a
		  JOIN leadmgmt.scoring_rule r ON r.kind = a.kind
		 WHERE (score_matches_batch.upto IS NULL OR a.occurred_at <= score_matches_batch.upto)
		   AND r.active
		   AND NOT EXISTS (SELECT 1 FROM leadmgmt.scoring_rule o WHERE o.overrides = r.name)
		   AND (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
		   AND (r.campaign IS NULL OR a.campaign = r.campaign)
		   AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s)
	  ) m
	  LEFT JOIN (SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE score_matches_batch.leads IS NULL
	             UNION ALL
	             SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE p.lead_id = ANY (score_matches_batch.leads)) pw
	    ON pw.lead_id = m.lead_id AND pw.rule_id = m.rule_id
	 WHERE m.max_times IS NULL OR m.nth + coalesce(pw.times, 0) <= m.max_times;
END;
COMMENT ON FUNCTION leadmgmt.score_matches_batch(bigint[], timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for the given leads (or all when NULL) up to a time (or all when NULL)';

CREATE OR REPLACE FUNCTION leadmgmt.score_matches(lead bigint, upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM leadmgmt.score_matches_batch(CASE WHEN score_matches.lead IS NOT NULL
	                                         THEN ARRAY[score_matches.lead] END, score_matches.upto) m;
END;
COMMENT ON FUNCTION leadmgmt.score_matches(bigint, timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for one lead (or all when NULL) up to a time (or all when NULL)';

CREATE OR REPLACE FUNCTION leadmgmt.rescore_leads(leads bigint[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed bigint;
BEGIN
	-- a full rescore makes new activity wait until it is committed; the
	-- per-lead path runs inside the scoring trigger, which holds the leads'
	-- row locks already
	IF leads IS NULL THEN
		LOCK TABLE leadmgmt.activity IN SHARE MODE;
	END IF;
	CREATE TEMP TABLE leadmgmt_rescore_match ON COMMIT DROP AS
		SELECT * FROM leadmgmt.score_matches_batch(leads, NULL) m;
	-- what purged activity earned stays (doc/scaling.md)
	CREATE TEMP TABLE leadmgmt_rescore_purged ON COMMIT DROP AS
		SELECT p.lead_id, p.state FROM leadmgmt.purged_score p
		 WHERE leads IS NULL OR p.lead_id = ANY (leads);

	UPDATE leadmgmt.activity a SET points = coalesce(x.points, 0)
	  FROM (SELECT a2.id, s.points
	          FROM leadmgmt.activity a2
	          LEFT JOIN (SELECT activity_id, sum(points) AS points FROM leadmgmt_rescore_match
	                      GROUP BY activity_id) s ON s.activity_id = a2.id
	         WHERE leads IS NULL OR a2.lead_id = ANY (leads)) x
	 WHERE a.id = x.id AND a.points IS DISTINCT FROM coalesce(x.points, 0);

	DELETE FROM leadmgmt.score_state st WHERE leads IS NULL OR st.lead_id = ANY (leads);
	INSERT INTO leadmgmt.score_state (lead_id, state)
	WITH point AS (
		SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at FROM leadmgmt_rescore_match m
		UNION ALL
		SELECT p.lead_id, c.half_life_us, c.value, c.ref_at
		  FROM leadmgmt_rescore_purged p, leadmgmt.score_state_components(p.state) c
	), component AS (
		SELECT x.lead_id, x.half_life_us, x.ref_at,
		       sum(leadmgmt.decay(x.points, x.occurred_at, x.half_life_us, x.ref_at)) AS value
		  FROM (SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at,
		               max(m.occurred_at) OVER (PARTITION BY m.lead_id, m.half_life_us) AS ref_at
		          FROM point m) x
		 GROUP BY x.lead_id, x.half_life_us, x.ref_at
	), components AS (
		SELECT c.lead_id,
		       array_agg(c.half_life_us ORDER BY c.half_life_us) AS half_life_us,
		       array_agg(c.value ORDER BY c.half_life_us) AS value,
		       array_agg(c.ref_at ORDER BY c.half_life_us) AS ref_at
		  FROM component c GROUP BY c.lead_id
	), award AS (
		SELECT m.lead_id, m.rule_id, sum(m.times)::integer AS times, max(m.last_at) AS last_at
		  FROM (SELECT m1.lead_id, m1.rule_id, 1 AS times, m1.occurred_at AS last_at
		          FROM leadmgmt_rescore_match m1
		        UNION ALL
		        SELECT p.lead_id, w.rule_id, w.times, w.last_awarded_at
		          FROM leadmgmt_rescore_purged p, leadmgmt.score_state_awards(p.state) w) m
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		 WHERE r.max_times IS NOT NULL
		 GROUP BY m.lead_id, m.rule_id
	), awards AS (
		SELECT a.lead_id,
		       array_agg(a.rule_id ORDER BY a.rule_id) AS rule_id,
		       array_agg(a.times ORDER BY a.rule_id) AS times,
		       array_agg(a.last_at ORDER BY a.rule_id) AS last_at
		  FROM award a GROUP BY a.lead_id
	)
	SELECT c.lead_id,
	       leadmgmt.score_state_pack(c.half_life_us, c.value, c.ref_at, w.rule_id, w.times, w.last_at)
	  FROM components c LEFT JOIN awards w ON w.lead_id = c.lead_id
	 ORDER BY c.lead_id;

	WITH fresh AS (
		SELECT l.id, l.score AS old_score, l.score_at AS old_score_at,
		       coalesce(leadmgmt.score_state_value(st.state, leadmgmt.score_state_latest(st.state)), 0) AS score,
		       leadmgmt.score_state_latest(st.state) AS score_at
		  FROM leadmgmt.lead l
		  LEFT JOIN leadmgmt.score_state st ON st.lead_id = l.id
		 WHERE leads IS NULL OR l.id = ANY (leads)
	), upd AS (
		UPDATE leadmgmt.lead l SET score = f.score, score_at = f.score_at
		  FROM fresh f
		 WHERE l.id = f.id AND (f.old_score IS DISTINCT FROM f.score OR f.old_score_at IS DISTINCT FROM f.score_at)
		RETURNING f.old_score_at IS DISTINCT FROM f.score_at
		          -- summing in another order moves the last bits: not a change
		          OR abs(f.score - f.old_score) > 1e-9 * greatest(1, abs(f.score)) AS really
	)
	SELECT count(*) FILTER (WHERE really) INTO changed FROM upd;

	UPDATE leadmgmt.lead l SET fit_score = f.fit_score, grade = f.grade
	  FROM (SELECT l2.id, leadmgmt.fit_score(l2.attributes) AS fit_score,
	               leadmgmt.fit_grade(leadmgmt.fit_score(l2.attributes)) AS grade
	          FROM leadmgmt.lead l2 WHERE leads IS NULL OR l2.id = ANY (leads)) f
	 WHERE l.id = f.id AND (l.fit_score IS DISTINCT FROM f.fit_score OR l.grade IS DISTINCT FROM f.grade);

	DROP TABLE leadmgmt_rescore_match, leadmgmt_rescore_purged;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION leadmgmt.rescore_leads(bigint[]) IS
	'Recompute points, caps, decay components, scores and fit of the given leads (all when NULL) from the current rules and what purged activity earned; returns the number of leads whose score changed';

CREATE OR REPLACE FUNCTION leadmgmt.score(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS float8
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint := leadmgmt.lead_resolve(lead);
	state bytea;
	latest timestamptz;
	purged bytea;
	purged_latest timestamptz;
	result float8;
BEGIN
	SELECT st.state INTO state FROM leadmgmt.score_state st WHERE st.lead_id = target;
	latest := leadmgmt.score_state_latest(state);
	IF latest IS NULL THEN
		RETURN 0;
	END IF;
	IF at >= latest THEN
		-- O(number of distinct half-lives)
		RETURN leadmgmt.score_state_value(state, score.at);
	ELSE
		-- a time before the lead's latest activity: from the activity log,
		-- plus what purged activity earned, known only as of its latest point
		SELECT p.state INTO purged FROM leadmgmt.purged_score p WHERE p.lead_id = target;
		purged_latest := leadmgmt.score_state_latest(purged);
		IF at < purged_latest THEN
			RAISE EXCEPTION 'score of lead % at % is unknown: activity it depends on was purged', target, at
				USING ERRCODE = 'LM040',
				      DETAIL = format('Purged activity of the lead earned points until %s.', purged_latest),
				      HINT = 'Ask for a time at or after that.';
		END IF;
		SELECT coalesce(sum(leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score.at)), 0)
		       + coalesce((SELECT sum(leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score.at))
		                     FROM leadmgmt.score_state_components(purged) c), 0) INTO result
		  FROM leadmgmt.score_matches_batch(ARRAY[target], score.at) m;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION leadmgmt.score(bigint, timestamptz) IS
	'Engagement score of a lead at a time, counting activities with occurred_at <= at; O(1) when at is at or after the lead''s latest scored activity; LM040 before the latest point of purged activity';

CREATE OR REPLACE FUNCTION leadmgmt.score_explain(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (activity_id bigint, occurred_at timestamptz, kind text, detail text, rule text,
               points float8, half_life interval, decayed_points float8)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT e.activity_id, e.occurred_at, e.kind, e.detail, e.rule, e.points, e.half_life, e.decayed_points
	  FROM (
		SELECT m.activity_id, m.occurred_at, a.kind, a.detail, r.name AS rule, m.points, r.half_life,
		       leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score_explain.at) AS decayed_points
		  FROM leadmgmt.score_matches_batch(ARRAY[leadmgmt.lead_resolve(score_explain.lead)], score_explain.at) m
		  JOIN leadmgmt.activity a ON a.id = m.activity_id
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		UNION ALL
		-- purged activity: one line per half-life, its points as of ref_at
		SELECT NULL, c.ref_at, NULL, '(purged activity)', NULL, c.value,
		       CASE WHEN c.half_life_us > 0 THEN justify_hours(c.half_life_us * interval '1 microsecond') END,
		       leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score_explain.at)
		  FROM leadmgmt.purged_score p, leadmgmt.score_state_components(p.state) c
		 WHERE p.lead_id = leadmgmt.lead_resolve(score_explain.lead)
		   AND leadmgmt.score_state_latest(p.state) <= score_explain.at
	  ) e
	 ORDER BY e.occurred_at, e.activity_id, e.rule;
END;
COMMENT ON FUNCTION leadmgmt.score_explain(bigint, timestamptz) IS
	'Each activity and rule that contributes to a lead''s score at a time, with its points decayed to that time; purged activity as one line per half-life (detail "(purged activity)")';

-------------------------------------------------------------------------------
-- Scaling: retention and sharding over postgres_fdw (doc/scaling.md)
-------------------------------------------------------------------------------
-- Retention.  Deleting activity fires no trigger: lead.score and score_state
-- stay as they are.  What purge_activity() must keep is what rescore() and
-- score() rebuild from the log: it records the points and cap counters the
-- purged rows had earned in leadmgmt.purged_score (40_scoring.sql), which
-- both count.  One batch is a set of whole leads with about batch_size old
-- rows, locked like the scoring trigger locks them (FOR NO KEY UPDATE, id
-- order), matched and deleted in one statement: the matches are read with
-- the statement's snapshot, before its DELETE.  Cost: one scan of the old
-- rows (the BRIN index on occurred_at) to list the leads, then per batch one
-- scan of the (lead_id, occurred_at) index for the matches and one for the
-- DELETE, touching only the old rows of the batch's leads.
CREATE FUNCTION leadmgmt.purge_activity(before timestamptz, batch_size integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
	deleted bigint := 0;
	n bigint;
BEGIN
	IF before IS NULL OR batch_size IS NULL THEN
		RAISE EXCEPTION 'before and batch_size must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT isfinite(before) THEN
		RAISE EXCEPTION 'cannot purge activity before %', before
			USING ERRCODE = '22008',
			      HINT = 'Give a finite time; activity older than it is deleted.';
	END IF;
	IF batch_size < 1 THEN
		RAISE EXCEPTION 'batch_size must be positive, got %', batch_size USING ERRCODE = '22023';
	END IF;

	FOR b IN
		SELECT array_agg(c.lead_id ORDER BY c.lead_id) AS leads
		  FROM (SELECT o.lead_id,
		               div(sum(o.n) OVER (ORDER BY o.lead_id) - o.n, purge_activity.batch_size) AS batch
		          FROM (SELECT a.lead_id, count(*) AS n FROM leadmgmt.activity a
		                 WHERE a.occurred_at < purge_activity.before GROUP BY a.lead_id) o) c
		 GROUP BY c.batch ORDER BY c.batch
	LOOP
		-- no activity of these leads is scored meanwhile (src/scoring.c)
		PERFORM 1 FROM leadmgmt.lead l WHERE l.id = ANY (b.leads) ORDER BY l.id FOR NO KEY UPDATE;
		WITH match AS (
			-- caps count the lead's earlier purged awards first (score_matches)
			SELECT m.* FROM leadmgmt.score_matches_batch(b.leads, purge_activity.before - interval '1 microsecond') m
		), gone AS (
			DELETE FROM leadmgmt.activity a
			 WHERE a.lead_id = ANY (b.leads) AND a.occurred_at < purge_activity.before
			RETURNING a.lead_id
		), per_lead AS (
			SELECT g.lead_id, count(*) AS n FROM gone g GROUP BY g.lead_id
		), component AS (
			SELECT m.lead_id,
			       array_agg(m.half_life_us ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS half_life_us,
			       array_agg(m.points ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS points,
			       array_agg(m.occurred_at ORDER BY m.occurred_at, m.activity_id, m.rule_id) AS occurred_at
			  FROM match m GROUP BY m.lead_id
		), award AS (
			SELECT x.lead_id, array_agg(x.rule_id ORDER BY x.rule_id) AS rule_id,
			       array_agg(x.times ORDER BY x.rule_id) AS times,
			       array_agg(x.last_at ORDER BY x.rule_id) AS last_at
			  FROM (SELECT m.lead_id, m.rule_id, count(*)::integer AS times, max(m.occurred_at) AS last_at
			          FROM match m GROUP BY m.lead_id, m.rule_id) x
			 GROUP BY x.lead_id
		), recorded AS (
			INSERT INTO leadmgmt.purged_score AS p (lead_id, state, purged_before, activities, purged_at)
			SELECT g.lead_id,
			       leadmgmt.score_state_pack(coalesce(c.half_life_us, '{}'), coalesce(c.points, '{}'),
			                                 coalesce(c.occurred_at, '{}'), coalesce(w.rule_id, '{}'),
			                                 coalesce(w.times, '{}'), coalesce(w.last_at, '{}')),
			       purge_activity.before, g.n, pg_catalog.now()
			  FROM per_lead g
			  LEFT JOIN component c ON c.lead_id = g.lead_id
			  LEFT JOIN award w ON w.lead_id = g.lead_id
			ON CONFLICT (lead_id) DO UPDATE
			   SET state = leadmgmt.score_state_merge(p.state, excluded.state),
			       purged_before = greatest(p.purged_before, excluded.purged_before),
			       activities = p.activities + excluded.activities,
			       purged_at = excluded.purged_at
		)
		SELECT coalesce(sum(g.n), 0) INTO n FROM per_lead g;
		deleted := deleted + n;
	END LOOP;
	RETURN deleted;
END
$$;
COMMENT ON FUNCTION leadmgmt.purge_activity(timestamptz, integer) IS
	'Delete activity that occurred before a time, in batches of about batch_size rows (whole leads), recording in leadmgmt.purged_score what it had earned so that scores, caps and rescore() stay as they were; returns the number of rows deleted';
REVOKE ALL ON FUNCTION leadmgmt.purge_activity(timestamptz, integer) FROM PUBLIC;

-- merge_leads() moves a duplicate's activity; this moves what its purged
-- activity earned along.  It acts only on a lead that is merged, so calling
-- it does nothing a merge has not done already.
CREATE FUNCTION leadmgmt.purged_score_follow(duplicate bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
BEGIN
	SELECT leadmgmt.lead_resolve(l.id) INTO target
	  FROM leadmgmt.lead l WHERE l.id = duplicate AND l.merged_into IS NOT NULL;
	IF target IS NULL THEN
		RETURN;
	END IF;
	WITH moved AS (
		DELETE FROM leadmgmt.purged_score p WHERE p.lead_id = duplicate RETURNING p.*
	)
	INSERT INTO leadmgmt.purged_score AS p (lead_id, state, purged_before, activities, purged_at)
	SELECT target, m.state, m.purged_before, m.activities, m.purged_at FROM moved m
	ON CONFLICT (lead_id) DO UPDATE
	   SET state = leadmgmt.score_state_merge(p.state, excluded.state),
	       purged_before = greatest(p.purged_before, excluded.purged_before),
	       activities = p.activities + excluded.activities,
	       purged_at = greatest(p.purged_at, excluded.purged_at);
END
$$;
COMMENT ON FUNCTION leadmgmt.purged_score_follow(bigint) IS
	'Step of merge_leads(): what purged activity of a merged lead earned moves to the lead it is merged into (no-op for a lead that is not merged)';
REVOKE ALL ON FUNCTION leadmgmt.purged_score_follow(bigint) FROM PUBLIC;

-- Sharding.  A lead lives on shard shard_of(id, n): PostgreSQL's own hash
-- partitioning of a bigint key (hashint8extended with the partition seed,
-- combined as compute_partition_hash_value does, modulo n), so a coordinator
-- table hash-partitioned by lead_id into MODULUS n, REMAINDER r finds lead
-- id on partition shard_of(id, n).  Unsigned 64-bit arithmetic in numeric.
CREATE FUNCTION leadmgmt.shard_of(lead_id bigint, shards integer)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF shards < 1 THEN
		RAISE EXCEPTION 'number of shards must be positive, got %', shards USING ERRCODE = '22023';
	END IF;
	-- HASH_PARTITION_SEED 0x7A5B22367996DCFD; hash_combine64(0, h) = h + 0x49a0f4dd15e5a8e3
	RETURN ((hashint8extended(lead_id, 8816678312871386365)::numeric
	         + 18446744073709551616 + 5305509591434766563) % 18446744073709551616 % shards)::integer;
END
$$;
COMMENT ON FUNCTION leadmgmt.shard_of(bigint, integer) IS
	'The shard (0 .. shards - 1) of a lead id: the REMAINDER of the hash partition, MODULUS shards, that PostgreSQL routes the id to';

-- The coordinator's view of the shards: a table hash-partitioned by the
-- lead, one postgres_fdw foreign table per server (servers[1] holds
-- REMAINDER 0), each reading the same table in schema leadmgmt on its shard.
-- Runs as the caller, who needs CREATE on the schema and USAGE on the servers.
CREATE FUNCTION leadmgmt.shard_table(target text, servers text[],
                                     source regclass DEFAULT 'leadmgmt.activity')
RETURNS regclass
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	parts text[];
	key name;
	remote name;
	srv record;
	i integer;
	n integer;
	created regclass;
BEGIN
	IF target IS NULL OR servers IS NULL OR source IS NULL THEN
		RAISE EXCEPTION 'target, servers and source must not be null' USING ERRCODE = '22004';
	END IF;
	parts := parse_ident(target);
	IF cardinality(parts) <> 2 THEN
		RAISE EXCEPTION 'target table "%" must be schema-qualified', target
			USING ERRCODE = '22023', HINT = 'Write it as schema.table, for example public.lead_activity.';
	END IF;
	n := cardinality(servers);
	IF n = 0 OR array_position(servers, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'servers must list at least one foreign server and no NULL' USING ERRCODE = '22023';
	END IF;
	IF (SELECT count(DISTINCT s) FROM unnest(servers) s) <> n THEN
		RAISE EXCEPTION 'a server is listed twice in %', servers
			USING ERRCODE = '22023', HINT = 'Each shard is one server, listed once, in remainder order.';
	END IF;

	SELECT c.relname INTO remote FROM pg_class c
	 WHERE c.oid = source AND c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'r';
	IF remote IS NULL THEN
		RAISE EXCEPTION '% is not a table of extension leadmgmt', source USING ERRCODE = '22023';
	END IF;
	key := CASE WHEN source = 'leadmgmt.lead'::regclass THEN 'id'
	            WHEN EXISTS (SELECT 1 FROM pg_attribute a
	                          WHERE a.attrelid = source AND a.attname = 'lead_id' AND NOT a.attisdropped)
	            THEN 'lead_id' END;
	IF key IS NULL THEN
		RAISE EXCEPTION 'table % has no lead_id column to shard by', source USING ERRCODE = '22023';
	END IF;

	FOR i IN 1 .. n LOOP
		SELECT s.srvname, w.fdwname,
		       EXISTS (SELECT 1 FROM pg_options_to_table(s.srvoptions) o
		                WHERE o.option_name = 'extensions'
		                  AND 'leadmgmt' = ANY (string_to_array(replace(o.option_value, ' ', ''), ','))) AS ships
		  INTO srv
		  FROM pg_foreign_server s JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
		 WHERE s.srvname = servers[i];
		IF NOT FOUND THEN
			RAISE EXCEPTION 'foreign server "%" does not exist', servers[i]
				USING ERRCODE = '42704',
				      HINT = 'CREATE SERVER ... FOREIGN DATA WRAPPER postgres_fdw OPTIONS (..., extensions ''leadmgmt'') first.';
		END IF;
		IF srv.fdwname <> 'postgres_fdw' THEN
			RAISE EXCEPTION 'foreign server "%" uses foreign-data wrapper "%", not postgres_fdw', servers[i], srv.fdwname
				USING ERRCODE = '22023';
		END IF;
		IF NOT srv.ships THEN
			RAISE EXCEPTION 'foreign server "%" does not ship leadmgmt functions', servers[i]
				USING ERRCODE = '22023',
				      DETAIL = 'Without the server option extensions ''leadmgmt'', postgres_fdw evaluates leadmgmt aggregates on the coordinator, over every row.',
				      HINT = format('ALTER SERVER %I OPTIONS (ADD extensions ''leadmgmt'');', servers[i]);
		END IF;
	END LOOP;

	EXECUTE format('CREATE TABLE %I.%I (LIKE %s) PARTITION BY HASH (%I)', parts[1], parts[2], source, key);
	created := format('%I.%I', parts[1], parts[2])::regclass;
	EXECUTE format('COMMENT ON TABLE %s IS %L', created,
	               format('%s of %s shards, partitioned like leadmgmt.shard_of(%s, %s)', source, n, key, n));
	FOR i IN 1 .. n LOOP
		EXECUTE format('CREATE FOREIGN TABLE %I.%I PARTITION OF %s FOR VALUES WITH (MODULUS %s, REMAINDER %s) '
		               'SERVER %I OPTIONS (schema_name %L, table_name %L)',
		               parts[1], parts[2] || '_' || (i - 1), created, n, i - 1, servers[i], 'leadmgmt', remote);
	END LOOP;
	RETURN created;
END
$$;
COMMENT ON FUNCTION leadmgmt.shard_table(text, text[], regclass) IS
	'On a coordinator: create schema.table, hash-partitioned by lead like leadmgmt.shard_of(), with one postgres_fdw foreign partition per server (servers[1] holds remainder 0) reading the source leadmgmt table of that shard; returns the new table';
REVOKE ALL ON FUNCTION leadmgmt.shard_table(text, text[], regclass) FROM PUBLIC;

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

	-- scores follow the activities (when the scoring capability is installed)
	IF pg_catalog.to_regprocedure('leadmgmt.score(bigint,timestamp with time zone)') IS NOT NULL THEN
		EXECUTE 'SELECT leadmgmt.score($1)' USING keep;
	END IF;
	RETURN keep;
END
$$;
COMMENT ON FUNCTION leadmgmt.merge_leads(bigint, bigint) IS
	'Merge lead duplicate into lead keep: activities and external ids move, keep takes the more advanced stage (history reason ''merge''), empty fields are filled from the duplicate, duplicate.merged_into = keep; idempotent; returns keep';

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
	                           'lead_external_id', 'lead_merge', 'model', 'purged_score'];
	mkt_write text[] := ARRAY['lead', 'activity', 'lead_import', 'lead_external_id', 'consent'];
	mkt_seq text[] := ARRAY['lead_id_seq', 'activity_id_seq', 'lead_import_id_seq',
	                        'consent_id_seq', 'lead_merge_id_seq'];
	admin_write text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule',
	                            'fit_rule', 'setting', 'model'];
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
-- END scaling

-- Roles registered with grant_access() need its grants of 1.0.0 (the funnel
-- views read the new history columns), but grants made inside an extension
-- script are recorded as the extension's initial privileges, which pg_dump
-- leaves out: the DBA calls grant_access() again after the update
-- (doc/operations.md, "Upgrades").
