
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
