#!/bin/sh
# Funnel benchmark (run by bench/run.sh inside a throwaway cluster: PGHOST,
# PGPORT, ... are set and the extension is loadable).
#
# Generates FUNNEL_EVENTS events (default 10 M) over FUNNEL_LEADS leads
# (default 1 M) of 10 kinds, seeded, spread over one year, in random order.
# Then times, best of FUNNEL_RUNS (default 2), single worker:
#   count      SELECT count(*)
#   group      SELECT lead_id, count(*) ... GROUP BY lead_id
#   floor      SELECT lead_id, array_agg(ts) FILTER (WHERE <any step>) ... GROUP BY lead_id
#   funnel     SELECT lead_id, window_funnel('30 days', ts, k=1, k=2, k=3)
#              ... WHERE k IN (1, 2, 3) GROUP BY lead_id (funnel_all_rows: no WHERE)
#   plain_sql  the same 3-step 30-day funnel with window functions (latest
#              step-1 time before each step-2 event, latest such start before
#              each step-3 event)
#   group_steps  SELECT lead_id, count(*) ... WHERE k IN (1, 2, 3) GROUP BY
#              lead_id: grouping the rows the funnel sees, with nothing kept;
#              no aggregate over the same hash table can be faster
#   funnel_sorted  the funnel with enable_hashagg = off (Sort + GroupAggregate;
#              with workers, sorted partial aggregates merged by Gather Merge)
#   *_indexed  group_steps, funnel and plain_sql again, last, after an index
#              on (lead_id, ts) and CLUSTER on it, with enable_hashagg = off:
#              the indexed formulation of doc/funnel.md (GroupAggregate over
#              the index, no hash table, no sort)
# and group_steps, the floor, both funnel plans and plain_sql again with 2
# parallel workers;
# checks that funnel and plain_sql agree for every lead, and the 2-worker
# sorted plan with one worker; prints the ratios.  Also:
#   sequence_match   the path '(?1)(?t<=2592000)(?2).*(?3)' per lead over the
#              same step rows (doc/sequences.md), and seq_plain_sql, the same
#              pattern in plain SQL (window functions); they must agree
#   strict_once_ties window_funnel 'strict_once' over one group of 100,000
#              rows at one instant (each row matching one or all 3 steps),
#              and ties_group, the same rows grouped with count(*)
#   clickhouse_*     when chdb is installed (make conformance installs it in
#              /var/cache/leadmgmt-chdb, LEADMGMT_CHDB_DIR): ClickHouse's
#              windowFunnel, sequenceMatch and GROUP BY over the same events,
#              one thread (bench/chdb_funnel.mjs), with the leads per level
# The last block prints the rows for bench/run.sh's table, one per line:
#   table: <section>|<query>, <workers> workers|<ms>|<against>, 0 workers|<ms>|
set -eu
EVENTS=${FUNNEL_EVENTS:-10000000}
LEADS=${FUNNEL_LEADS:-1000000}
RUNS=${FUNNEL_RUNS:-2}
WORK_MEM=${FUNNEL_WORK_MEM:-2GB}
CHDB_DIR=${LEADMGMT_CHDB_DIR:-/var/cache/leadmgmt-chdb}
TMPD=$(mktemp -d /tmp/leadmgmt-bench-funnel.XXXXXX)
chmod 755 "$TMPD"
trap 'rm -rf "$TMPD"' EXIT
HAVE_CHDB=0
if command -v node >/dev/null 2>&1 && [ -f "$CHDB_DIR/node_modules/chdb/package.json" ]; then
	HAVE_CHDB=1
fi

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "funnel benchmark: $EVENTS events, $LEADS leads, 10 kinds, best of $RUNS, work_mem $WORK_MEM"
psql_q <<EOF
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP TABLE IF EXISTS bench_funnel_ev, bench_funnel_times;
\echo generating:
\timing on
SELECT setseed(0.2024);
CREATE UNLOGGED TABLE bench_funnel_ev AS
SELECT (1 + floor(random() * $LEADS))::bigint AS lead_id,
       timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days' AS ts,
       floor(random() * 10)::smallint AS kind
  FROM generate_series(1, $EVENTS);
VACUUM ANALYZE bench_funnel_ev;
\timing off
CREATE TABLE bench_funnel_times (name text, workers int, run int, ms float8);

-- wall time of one query: its rows are counted, not sent to the client;
-- count(q.*) keeps every output column (an unreferenced aggregate would be
-- optimised away by the planner)
CREATE FUNCTION pg_temp.bench(name text, workers int, runs int, q text, hashagg boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz;
	n bigint;
BEGIN
	PERFORM set_config('max_parallel_workers_per_gather', workers::text, false);
	PERFORM set_config('enable_hashagg', CASE WHEN hashagg THEN 'on' ELSE 'off' END, false);
	-- with workers, make the parallel plan the planner's choice
	PERFORM set_config('parallel_setup_cost', CASE WHEN workers > 0 THEN '0' ELSE '1000' END, false);
	PERFORM set_config('parallel_tuple_cost', CASE WHEN workers > 0 THEN '0' ELSE '0.1' END, false);
	FOR r IN 1..runs LOOP
		t0 := clock_timestamp();
		EXECUTE 'SELECT count(q.*) FROM (' || q || ') q' INTO n;
		INSERT INTO bench_funnel_times
		VALUES (name, workers, r, extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END
\$\$;

SET work_mem = '$WORK_MEM';
SET jit = off;

-- rows matching no step never count outside strict_order, so the WHERE is
-- part of the best formulation (doc/funnel.md); funnel_all_rows shows the cost
-- of calling the aggregate on every row
CREATE VIEW pg_temp.funnel_q AS
SELECT lead_id, leadmgmt.window_funnel('30 days', ts, kind = 1, kind = 2, kind = 3) AS level
  FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id;
CREATE VIEW pg_temp.funnel_all_q AS
SELECT lead_id, leadmgmt.window_funnel('30 days', ts, kind = 1, kind = 2, kind = 3) AS level
  FROM bench_funnel_ev GROUP BY lead_id;
CREATE VIEW pg_temp.plain_q AS
WITH s AS (
	SELECT lead_id, ts, kind,
	       max(ts) FILTER (WHERE kind = 1) OVER w AS last1
	  FROM bench_funnel_ev WHERE kind IN (1, 2, 3)
	WINDOW w AS (PARTITION BY lead_id ORDER BY ts, kind ROWS UNBOUNDED PRECEDING)
), s2 AS (
	SELECT lead_id, ts, kind,
	       CASE WHEN kind = 2 AND ts - last1 <= interval '30 days' THEN last1 END AS start2
	  FROM s
), s3 AS (
	SELECT lead_id, ts, kind, start2,
	       max(start2) OVER (PARTITION BY lead_id ORDER BY ts, kind ROWS UNBOUNDED PRECEDING) AS best2
	  FROM s2
)
SELECT lead_id,
       CASE WHEN bool_or(kind = 3 AND ts - best2 <= interval '30 days') THEN 3
            WHEN bool_or(start2 IS NOT NULL) THEN 2
            WHEN bool_or(kind = 1) THEN 1 ELSE 0 END AS level
  FROM s3 GROUP BY lead_id;

\echo plans of the funnel query, 1 worker then 2 workers:
SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.funnel_q;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.funnel_q;
\echo the same with enable_hashagg = off (funnel_sorted):
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.funnel_q;
RESET enable_hashagg;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;

SELECT pg_temp.bench('count', 0, $RUNS, 'SELECT count(*) FROM bench_funnel_ev');
SELECT pg_temp.bench('group', 0, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ev GROUP BY lead_id');
SELECT pg_temp.bench('floor', 0, $RUNS, 'SELECT lead_id, array_agg(ts) FILTER (WHERE kind IN (1, 2, 3)) FROM bench_funnel_ev GROUP BY lead_id');
SELECT pg_temp.bench('group_steps', 0, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id');
SELECT pg_temp.bench('funnel', 0, $RUNS, 'SELECT * FROM pg_temp.funnel_q');
SELECT pg_temp.bench('funnel_sorted', 0, $RUNS, 'SELECT * FROM pg_temp.funnel_q', false);
SELECT pg_temp.bench('funnel_all_rows', 0, $RUNS, 'SELECT * FROM pg_temp.funnel_all_q');
SELECT pg_temp.bench('plain_sql', 0, $RUNS, 'SELECT * FROM pg_temp.plain_q');
SELECT pg_temp.bench('group_steps', 2, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id');
SELECT pg_temp.bench('floor', 2, $RUNS, 'SELECT lead_id, array_agg(ts) FILTER (WHERE kind IN (1, 2, 3)) FROM bench_funnel_ev GROUP BY lead_id');
SELECT pg_temp.bench('funnel', 2, $RUNS, 'SELECT * FROM pg_temp.funnel_q');
SELECT pg_temp.bench('funnel_sorted', 2, $RUNS, 'SELECT * FROM pg_temp.funnel_q', false);
SELECT pg_temp.bench('plain_sql', 2, $RUNS, 'SELECT * FROM pg_temp.plain_q');
RESET enable_hashagg;

\echo agreement of window_funnel and the plain-SQL funnel (leads_that_differ must be 0):
SET max_parallel_workers_per_gather = 0;
SELECT count(*) AS leads_compared,
       count(*) FILTER (WHERE coalesce(f.level, 0) <> coalesce(p.level, 0)) AS leads_that_differ
  FROM pg_temp.funnel_all_q f FULL JOIN pg_temp.plain_q p USING (lead_id);
SELECT level, count(*) AS leads FROM pg_temp.funnel_all_q GROUP BY level ORDER BY level;
\echo agreement of the 2-worker sorted plan (serialise, combine) with one worker (leads_that_differ must be 0):
CREATE TEMP TABLE funnel_serial AS SELECT * FROM pg_temp.funnel_q;
SET max_parallel_workers_per_gather = 2;
SET enable_hashagg = off;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SELECT count(*) AS leads_compared,
       count(*) FILTER (WHERE s.level IS DISTINCT FROM p.level) AS leads_that_differ
  FROM funnel_serial s FULL JOIN pg_temp.funnel_q p USING (lead_id);
RESET max_parallel_workers_per_gather;
RESET enable_hashagg;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;

-- sequence_match next to the same pattern in plain SQL.  Events are the
-- step rows; at one instant they are ordered by condition set, here by kind.
CREATE VIEW pg_temp.seq_q AS
SELECT lead_id, leadmgmt.sequence_match('(?1)(?t<=2592000)(?2).*(?3)', ts, kind = 1, kind = 2, kind = 3) AS m
  FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id;
CREATE VIEW pg_temp.seq_plain_q AS
WITH s AS (
	SELECT lead_id, ts, kind,
	       max(ts) FILTER (WHERE kind = 1) OVER (PARTITION BY lead_id ORDER BY ts, kind
	                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS last1,
	       max(ts) FILTER (WHERE kind = 3) OVER (PARTITION BY lead_id) AS last3
	  FROM bench_funnel_ev WHERE kind IN (1, 2, 3)
)
SELECT lead_id, coalesce(bool_or(kind = 2 AND ts - last1 <= interval '30 days' AND last3 >= ts), false) AS m
  FROM s GROUP BY lead_id;
SELECT pg_temp.bench('sequence_match', 0, $RUNS, 'SELECT * FROM pg_temp.seq_q');
SELECT pg_temp.bench('seq_plain_sql', 0, $RUNS, 'SELECT * FROM pg_temp.seq_plain_q');
\echo agreement of sequence_match and the plain-SQL pattern (leads_that_differ must be 0):
SELECT count(*) AS leads_compared, count(*) FILTER (WHERE s.m) AS leads_matching,
       count(*) FILTER (WHERE s.m IS DISTINCT FROM p.m) AS leads_that_differ
  FROM pg_temp.seq_q s FULL JOIN pg_temp.seq_plain_q p USING (lead_id);

-- strict_once over 100,000 rows at one instant (1.0.0: 5 s at 4,000 rows)
CREATE TABLE bench_funnel_ties AS
SELECT 1 AS lead_id, timestamptz '2024-06-01 00:00:00+00' AS ts, 1 + (i % 4) AS k
  FROM generate_series(1, 100000) i;
SELECT pg_temp.bench('strict_once_ties', 0, $RUNS, 'SELECT lead_id, leadmgmt.window_funnel(''1 hour'', ''strict_once'', ts, k IN (1, 4), k IN (2, 4), k IN (3, 4)) FROM bench_funnel_ties GROUP BY lead_id');
SELECT pg_temp.bench('ties_group', 0, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ties GROUP BY lead_id');
SELECT leadmgmt.window_funnel('1 hour', 'strict_once', ts, k IN (1, 4), k IN (2, 4), k IN (3, 4)) AS strict_once_ties_level
  FROM bench_funnel_ties;
DROP TABLE bench_funnel_ties;
RESET max_parallel_workers_per_gather;
RESET enable_hashagg;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;

-- the indexed formulation (doc/funnel.md): an index on (lead_id, ts), the
-- table clustered on it as an activity log loaded lead by lead would be,
-- and enable_hashagg = off: GroupAggregate over an index scan, one state at
-- a time, no hash table and no sort.  Last, because clustering also speeds
-- up every HashAggregate above (a lead's rows arrive together).
\echo indexed formulation: index on (lead_id, ts), table clustered on it:
\timing on
CREATE INDEX bench_funnel_ev_lead_ts ON bench_funnel_ev (lead_id, ts);
CLUSTER bench_funnel_ev USING bench_funnel_ev_lead_ts;
ANALYZE bench_funnel_ev;
\timing off
SET max_parallel_workers_per_gather = 0;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.funnel_q;
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
EXPLAIN (COSTS OFF) SELECT * FROM pg_temp.funnel_q;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
SELECT pg_temp.bench('group_steps_indexed', 0, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id', false);
SELECT pg_temp.bench('funnel_indexed', 0, $RUNS, 'SELECT * FROM pg_temp.funnel_q', false);
SELECT pg_temp.bench('plain_sql_indexed', 0, $RUNS, 'SELECT * FROM pg_temp.plain_q', false);
SELECT pg_temp.bench('group_steps_indexed', 2, $RUNS, 'SELECT lead_id, count(*) FROM bench_funnel_ev WHERE kind IN (1, 2, 3) GROUP BY lead_id', false);
SELECT pg_temp.bench('funnel_indexed', 2, $RUNS, 'SELECT * FROM pg_temp.funnel_q', false);
SELECT pg_temp.bench('plain_sql_indexed', 2, $RUNS, 'SELECT * FROM pg_temp.plain_q', false);
RESET max_parallel_workers_per_gather;
RESET enable_hashagg;

\echo leadmgmt leads per level and sequence matches (compare with ClickHouse below):
SELECT level, count(*) AS leads FROM pg_temp.funnel_q GROUP BY level ORDER BY level;
SELECT count(*) FILTER (WHERE m) AS sequence_matches FROM pg_temp.seq_q;
\if $HAVE_CHDB
\copy (SELECT lead_id, (extract(epoch FROM ts) * 1000000)::bigint, kind FROM bench_funnel_ev WHERE kind IN (1, 2, 3)) TO '$TMPD/events.csv' CSV
\endif
EOF

if [ "$HAVE_CHDB" = 1 ]; then
	echo "ClickHouse (chdb, $CHDB_DIR), max_threads = 1, best of $RUNS:"
	node "$(dirname "$0")/chdb_funnel.mjs" "$CHDB_DIR" "$TMPD/events.csv" "$RUNS" > "$TMPD/chdb.out"
	cat "$TMPD/chdb.out"
	awk '$1 ~ /^clickhouse_(funnel|group_steps|sequence_match)$/ && $2 ~ /^[0-9.]+$/ { printf "INSERT INTO bench_funnel_times VALUES (%c%s%c, 0, 1, %s);\n", 39, $1, 39, $2 }' \
		"$TMPD/chdb.out" | psql_q
else
	echo "ClickHouse peer skipped: no chdb in $CHDB_DIR (make conformance installs it)"
fi

psql_q <<EOF
\echo times, best of $RUNS runs:
SELECT name, workers, round(min(ms)::numeric, 0) AS ms
  FROM bench_funnel_times GROUP BY name, workers ORDER BY workers, min(ms);
\echo ratios:
WITH best AS (
	SELECT name, workers, min(ms) AS ms FROM bench_funnel_times GROUP BY name, workers
)
SELECT round((f.ms / fl.ms)::numeric, 2) AS "funnel / floor (goal <= 1.5)",
       round((p.ms / f.ms)::numeric, 2) AS "plain_sql / funnel (goal >= 3)",
       round((p.ms / g.ms)::numeric, 2) AS "plain_sql / group_steps",
       round((f.ms / g.ms)::numeric, 2) AS "funnel / group_steps"
  FROM best f, best fl, best p, best g
 WHERE f.name = 'funnel' AND f.workers = 0 AND fl.name = 'floor' AND fl.workers = 0
   AND p.name = 'plain_sql' AND p.workers = 0 AND g.name = 'group_steps' AND g.workers = 0;
WITH best AS (
	SELECT name, workers, min(ms) AS ms FROM bench_funnel_times GROUP BY name, workers
)
SELECT round((f.ms / f2.ms)::numeric, 2) AS "funnel 1 worker / 2 workers",
       round((fl.ms / fl2.ms)::numeric, 2) AS "floor 1 worker / 2 workers",
       round((f.ms / s2.ms)::numeric, 2) AS "funnel 1 worker / funnel_sorted 2 workers",
       round((p2.ms / s2.ms)::numeric, 2) AS "plain_sql / funnel_sorted, both 2 workers"
  FROM best f, best fl, best p2, best f2, best fl2, best s2
 WHERE f.name = 'funnel' AND f.workers = 0 AND fl.name = 'floor' AND fl.workers = 0
   AND p2.name = 'plain_sql' AND p2.workers = 2 AND f2.name = 'funnel' AND f2.workers = 2
   AND fl2.name = 'floor' AND fl2.workers = 2
   AND s2.name = 'funnel_sorted' AND s2.workers = 2;
\echo rows for the bench table (bench/run.sh):
\pset format unaligned
\pset tuples_only on
WITH best AS (
	SELECT name, workers, min(ms) AS ms FROM bench_funnel_times GROUP BY name, workers
), base AS (
	SELECT name, workers, ms,
	       CASE WHEN name IN ('sequence_match', 'seq_plain_sql', 'clickhouse_sequence_match') THEN 'seq_plain_sql'
	            WHEN name IN ('strict_once_ties', 'ties_group') THEN 'ties_group'
	            ELSE 'group_steps' END AS against,
	       CASE WHEN name IN ('sequence_match', 'seq_plain_sql', 'clickhouse_sequence_match') THEN 'sequence'
	            WHEN name IN ('strict_once_ties', 'ties_group') THEN 'strict_once_ties'
	            ELSE 'funnel' END AS section
	  FROM best
)
SELECT 'table: ' || b.section || '|' || b.name || ', ' || b.workers || ' workers|' || round(b.ms::numeric, 0) || '|' ||
       b.against || ', ' || a.workers || ' workers|' || round(a.ms::numeric, 0) || '|'
  FROM base b JOIN best a ON a.name = b.against
   AND a.workers = 0
 ORDER BY b.section, b.workers, b.ms;
\pset tuples_only off
\pset format aligned
DROP TABLE bench_funnel_ev, bench_funnel_times CASCADE;
EOF
