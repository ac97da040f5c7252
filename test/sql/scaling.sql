-- covers: shard_of() routes like PostgreSQL hash partitioning; shard_table() builds the coordinator's partitioned table of postgres_fdw partitions, refuses bad servers and sources; which per-lead aggregates postgres_fdw ships (EXPLAIN VERBOSE, no shard contacted)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- shard_of(id, n) is the remainder PostgreSQL's hash partitioning gives id
CREATE TABLE hp (id bigint) PARTITION BY HASH (id);
CREATE TABLE hp0 PARTITION OF hp FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE hp1 PARTITION OF hp FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE hp2 PARTITION OF hp FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO hp SELECT g FROM generate_series(-2000, 20000) g;
INSERT INTO hp VALUES (9223372036854775807), (-9223372036854775808);
SELECT count(*) AS ids,
       count(*) FILTER (WHERE leadmgmt.shard_of(id, 3) <> right(tableoid::regclass::text, 1)::int) AS misrouted
  FROM hp;
-- and for other moduli (satisfies_hash_partition takes any modulus)
SELECT n, count(*) FILTER (WHERE NOT satisfies_hash_partition('hp'::regclass, n, leadmgmt.shard_of(id, n), id)) AS misrouted
  FROM hp, generate_series(1, 8) n GROUP BY n ORDER BY n;
-- leads spread evenly
SELECT leadmgmt.shard_of(id, 2) AS shard, count(*) FROM generate_series(1, 100000) id GROUP BY 1 ORDER BY 1;
SELECT leadmgmt.shard_of(NULL, 2) AS null_id, leadmgmt.shard_of(7, 1) AS one_shard;
\set VERBOSITY terse
SELECT leadmgmt.shard_of(7, 0);
\set VERBOSITY default
DROP TABLE hp;

-- shard_table(): servers must be postgres_fdw servers shipping leadmgmt
CREATE EXTENSION postgres_fdw;
CREATE SERVER shard_a FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host 'shard-a.invalid', dbname 'crm', extensions 'leadmgmt', async_capable 'true');
CREATE SERVER shard_b FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host 'shard-b.invalid', dbname 'crm', extensions 'postgres_fdw, leadmgmt', async_capable 'true');
CREATE SERVER plain FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'plain.invalid');
CREATE FOREIGN DATA WRAPPER other;
CREATE SERVER elsewhere FOREIGN DATA WRAPPER other;
\set VERBOSITY terse
SELECT leadmgmt.shard_table('lead_activity', ARRAY['shard_a', 'shard_b']);
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'nowhere']);
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'shard_a']);
SELECT leadmgmt.shard_table('public.lead_activity', '{}');
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', NULL]);
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'elsewhere']);
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'shard_b'], 'leadmgmt.scoring_rule');
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'shard_b'], 'pg_class');
SELECT leadmgmt.shard_table(NULL, ARRAY['shard_a']);
\set VERBOSITY default
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'plain']);
SELECT count(*) AS tables_left_behind FROM pg_class WHERE relname LIKE 'lead_activity%';

SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard_a', 'shard_b']) AS created;
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound, s.srvname AS server, f.ftoptions
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_foreign_table f ON f.ftrelid = c.oid JOIN pg_foreign_server s ON s.oid = f.ftserver
 WHERE i.inhparent = 'public.lead_activity'::regclass ORDER BY 1;
SELECT pg_get_partkeydef('public.lead_activity'::regclass) AS key,
       obj_description('public.lead_activity'::regclass, 'pg_class') AS comment;
-- the columns of leadmgmt.activity, in its order
SELECT (SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum)
          FROM pg_attribute WHERE attrelid = 'public.lead_activity'::regclass AND attnum > 0)
     = (SELECT array_agg(attname || ' ' || format_type(atttypid, atttypmod) ORDER BY attnum)
          FROM pg_attribute WHERE attrelid = 'leadmgmt.activity'::regclass AND attnum > 0 AND NOT attisdropped)
       AS same_columns;
-- the leads themselves, sharded by id the same way
SELECT leadmgmt.shard_table('public.leads', ARRAY['shard_a', 'shard_b'], 'leadmgmt.lead') AS created;
SELECT pg_get_partkeydef('public.leads'::regclass) AS key,
       (SELECT string_agg(c.relname || ': ' || array_to_string(f.ftoptions, ', '), '; ' ORDER BY c.relname)
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_foreign_table f ON f.ftrelid = c.oid
         WHERE i.inhparent = 'public.leads'::regclass) AS partitions;

-- one lead is on one shard: its partition is shard_of(id, 2)
EXPLAIN (COSTS OFF) SELECT * FROM public.lead_activity WHERE lead_id = 42;
SELECT leadmgmt.shard_of(42, 2) AS shard_of_42;

-- what is shipped (EXPLAIN without ANALYZE contacts no shard): per-lead
-- aggregates with immutable arguments, partitionwise, go whole to the shards
SET enable_partitionwise_aggregate = on;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT lead_id, leadmgmt.window_funnel('7 days', occurred_at, kind = 'page_view', kind = 'download', kind = 'visit')
  FROM public.lead_activity GROUP BY lead_id;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', '2026-03-01 00:00+00'),
       leadmgmt.attribution('linear', campaign, occurred_at)
  FROM public.lead_activity WHERE occurred_at >= '2026-01-01' GROUP BY lead_id;
-- now() is not immutable: the aggregate stays on the coordinator, every row travels
EXPLAIN (VERBOSE, COSTS OFF)
SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', now())
  FROM public.lead_activity GROUP BY lead_id;
-- a text constant as an aggregate's only collatable input (the funnel mode):
-- postgres_fdw ships collatable inputs only with a column's collation
EXPLAIN (VERBOSE, COSTS OFF)
SELECT lead_id, leadmgmt.window_funnel('7 days', 'strict_order', occurred_at, kind = 'page_view', kind = 'download')
  FROM public.lead_activity GROUP BY lead_id;
-- grouped by something other than the lead: no partitionwise pushdown
EXPLAIN (VERBOSE, COSTS OFF)
SELECT kind, leadmgmt.window_funnel('7 days', occurred_at, kind = 'page_view', kind = 'download')
  FROM public.lead_activity GROUP BY kind;
-- partitionwise aggregation off: nothing is pushed
SET enable_partitionwise_aggregate = off;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT lead_id, leadmgmt.window_funnel('7 days', occurred_at, kind = 'page_view', kind = 'download')
  FROM public.lead_activity GROUP BY lead_id;
RESET enable_partitionwise_aggregate;

DROP TABLE public.lead_activity, public.leads;
DROP SERVER shard_a, shard_b, plain, elsewhere;
DROP FOREIGN DATA WRAPPER other;
DROP EXTENSION postgres_fdw;
