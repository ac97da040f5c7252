#!/bin/sh
# Scale-out benchmark (make bench-scale; doc/scaling.md): the same activity
# on one node and split over two shards behind a postgres_fdw coordinator.
#
# Three throwaway clusters (nested pg_virtualenv): the main one is both the
# single node (leadmgmt.activity holds every event) and the coordinator
# (public.lead_activity from leadmgmt.shard_table() over the two shards).
# Each shard generates its own leads' events with generate_series, nothing
# is shipped through the fdw; every node loads the same rows (a formula of
# the lead id, no random()) as a restore would: session_replication_role =
# replica, points given, no scoring.
#
# SCALE_LEADS leads (default 1 M) with 1 to 19 events each (about
# SCALE_LEADS * 10 events, so 10 M by default) over 2024, in time order.
# Times, best of SCALE_RUNS (default 2), of three per-lead queries over every
# event (GROUP BY lead_id):
#   funnel       window_funnel('30 days', occurred_at, page_view, download, visit)
#   decayed_sum  decayed_sum(points, occurred_at, '30 days', '2025-01-01')
#   attribution  attribution('linear', campaign, occurred_at), campaign rows
# on the single node with no worker, with 2 parallel workers, and on the two
# shards through the coordinator (partitionwise aggregate, async foreign
# scans); checks that the sharded answers equal the single node's for every
# lead; then times purge_activity() of January on the single node.
set -eu
. "$(dirname "$0")/../scripts/env.sh"
LEADS=${SCALE_LEADS:-1000000}
RUNS=${SCALE_RUNS:-2}
WORK_MEM=${SCALE_WORK_MEM:-1GB}

case ${1:-} in
'')
	if [ -z "${PGPORT:-}" ]; then
		# make bench-scale: build, then the three clusters
		"$TOP/scripts/bootstrap.sh"
		"$TOP/scripts/build.sh"
		exec sh -c ". '$TOP/scripts/env.sh'; venv sh '$TOP/bench/scale.sh' main"
	fi
	# inside bench/run.sh's cluster: that one is the main node
	exec sh "$0" main
	;;
main)
	export MAIN_CONN="host=$PGHOST port=$PGPORT user=$PGUSER password=$PGPASSWORD dbname=postgres"
	exec env -u PGPORT sh -c ". '$TOP/scripts/env.sh'; venv sh '$TOP/bench/scale.sh' shard0"
	;;
shard0)
	export SHARD0_HOST=$PGHOST SHARD0_PORT=$PGPORT SHARD0_USER=$PGUSER SHARD0_PASSWORD=$PGPASSWORD
	exec env -u PGPORT sh -c ". '$TOP/scripts/env.sh'; venv sh '$TOP/bench/scale.sh' shard1"
	;;
shard1)
	export SHARD1_HOST=$PGHOST SHARD1_PORT=$PGPORT SHARD1_USER=$PGUSER SHARD1_PASSWORD=$PGPASSWORD
	;;
*)
	echo "usage: $0" >&2; exit 2 ;;
esac

conn() { # conn 0|1: conninfo of a shard
	eval "echo host=\$SHARD$1_HOST port=\$SHARD$1_PORT user=\$SHARD$1_USER password=\$SHARD$1_PASSWORD dbname=postgres"
}
psql_on() { # psql_on CONNINFO: run stdin there
	c=$1; shift
	psql -X -q -v ON_ERROR_STOP=1 "$c" "$@"
}

# load SQL for a node; $1 is the condition on lead id l
load_sql() {
	cat <<EOF
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SET session_replication_role = replica;
SET work_mem = '256MB';
INSERT INTO leadmgmt.lead (id, created_at, stage_entered_at)
SELECT l, timestamptz '2023-12-01 00:00+00', timestamptz '2023-12-01 00:00+00'
  FROM generate_series(1, $LEADS) l WHERE $1;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, points)
SELECT e.lead_id, e.kind, e.occurred_at, e.campaign, e.detail,
       CASE e.kind WHEN 'page_view' THEN 1 WHEN 'download' THEN 5 WHEN 'visit' THEN 30
                   WHEN 'seminar_attend' THEN 25 WHEN 'form_submit' THEN 30 ELSE 1 END
  FROM (SELECT l AS lead_id,
               (ARRAY['page_view', 'page_view', 'page_view', 'email_open', 'email_open', 'email_click',
                      'download', 'visit', 'seminar_attend', 'form_submit'])[1 + (abs(hashint8(l * 32 + i)) % 10)::int] AS kind,
               timestamptz '2024-01-01 00:00+00' + (abs(hashint8(l * 32 + i + 7)) % 31536000) * interval '1 second' AS occurred_at,
               CASE WHEN abs(hashint8(l * 32 + i + 11)) % 3 = 0 THEN 'c' || abs(hashint8(l * 32 + i + 13)) % 20 END AS campaign,
               CASE WHEN abs(hashint8(l * 32 + i + 17)) % 4 = 0 THEN '/pricing' END AS detail
          FROM generate_series(1, $LEADS) l, generate_series(1, 1 + (abs(hashint8(l)) % 19)::int) i
         WHERE $1) e
 ORDER BY e.occurred_at;
RESET session_replication_role;
VACUUM ANALYZE leadmgmt.lead, leadmgmt.activity;
-- the coordinator's sessions on a shard (doc/scaling.md): postgres_fdw reads
-- through a cursor, planned for the first 10 % of rows unless told otherwise
ALTER DATABASE postgres SET cursor_tuple_fraction = 1;
ALTER DATABASE postgres SET work_mem = '$WORK_MEM';
ALTER DATABASE postgres SET jit = off;
SELECT count(*) FROM leadmgmt.activity;
EOF
}

TMPDIR_SCALE=$(mktemp -d /tmp/leadmgmt-scale.XXXXXX)/load
trap 'rm -rf "$(dirname "$TMPDIR_SCALE")"' EXIT
echo "scale benchmark: $LEADS leads, about $((LEADS * 10)) events, best of $RUNS, work_mem $WORK_MEM, $(nproc) cores"
echo "loading (the single node and both shards at once):"
t0=$(date +%s)
load_sql "leadmgmt.shard_of(l, 2) = 0" | psql_on "$(conn 0)" -At > "$TMPDIR_SCALE.0" 2>&1 &
p0=$!
load_sql "leadmgmt.shard_of(l, 2) = 1" | psql_on "$(conn 1)" -At > "$TMPDIR_SCALE.1" 2>&1 &
p1=$!
load_sql "true" | psql_on "$MAIN_CONN" -At > "$TMPDIR_SCALE.m" 2>&1 || { cat "$TMPDIR_SCALE.m"; exit 1; }
wait $p0 || { cat "$TMPDIR_SCALE.0"; exit 1; }
wait $p1 || { cat "$TMPDIR_SCALE.1"; exit 1; }
echo "  single node $(tail -1 "$TMPDIR_SCALE.m") events, shard 0 $(tail -1 "$TMPDIR_SCALE.0"), shard 1 $(tail -1 "$TMPDIR_SCALE.1") ($(( $(date +%s) - t0 )) s)"
rm -f "$TMPDIR_SCALE".*

psql_on "$MAIN_CONN" <<EOF
CREATE EXTENSION postgres_fdw;
CREATE SERVER shard0 FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host '$SHARD0_HOST', port '$SHARD0_PORT', dbname 'postgres',
	         extensions 'leadmgmt', async_capable 'true', fetch_size '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard0 OPTIONS (user '$SHARD0_USER', password '$SHARD0_PASSWORD');
CREATE SERVER shard1 FOREIGN DATA WRAPPER postgres_fdw
	OPTIONS (host '$SHARD1_HOST', port '$SHARD1_PORT', dbname 'postgres',
	         extensions 'leadmgmt', async_capable 'true', fetch_size '10000');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard1 OPTIONS (user '$SHARD1_USER', password '$SHARD1_PASSWORD');
SELECT leadmgmt.shard_table('public.lead_activity', ARRAY['shard0', 'shard1']) IS NOT NULL AS coordinator_ready;

CREATE TABLE bench_scale_times (name text, setup text, run int, ms float8);
-- wall time of one query: its rows are counted, not sent to the client;
-- count(q.*) keeps every output column
CREATE FUNCTION pg_temp.bench(name text, setup text, runs int, q text) RETURNS void
LANGUAGE plpgsql AS \$\$
DECLARE
	t0 timestamptz;
	n bigint;
BEGIN
	PERFORM set_config('max_parallel_workers_per_gather', CASE WHEN setup = 'single, 2 workers' THEN '2' ELSE '0' END, false);
	PERFORM set_config('parallel_setup_cost', CASE WHEN setup = 'single, 2 workers' THEN '0' ELSE '1000' END, false);
	PERFORM set_config('parallel_tuple_cost', CASE WHEN setup = 'single, 2 workers' THEN '0' ELSE '0.1' END, false);
	FOR r IN 1..runs LOOP
		t0 := clock_timestamp();
		EXECUTE 'SELECT count(q.*) FROM (' || q || ') q' INTO n;
		INSERT INTO bench_scale_times VALUES (name, setup, r, extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END
\$\$;
SET work_mem = '$WORK_MEM';
SET jit = off;
SET enable_partitionwise_aggregate = on;

CREATE FUNCTION pg_temp.q(name text, tbl text) RETURNS text LANGUAGE sql AS \$\$
	SELECT CASE name
	WHEN 'funnel' THEN 'SELECT lead_id, leadmgmt.window_funnel(''30 days'', occurred_at, kind = ''page_view'', kind = ''download'', kind = ''visit'') AS v FROM '
	                   || tbl || ' WHERE kind IN (''page_view'', ''download'', ''visit'') GROUP BY lead_id'
	WHEN 'decayed_sum' THEN 'SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, ''30 days'', ''2025-01-01 00:00+00'') AS v FROM '
	                   || tbl || ' GROUP BY lead_id'
	WHEN 'attribution' THEN 'SELECT lead_id, leadmgmt.attribution(''linear'', campaign, occurred_at) AS v FROM '
	                   || tbl || ' WHERE campaign IS NOT NULL GROUP BY lead_id'
	END
\$\$;

\echo plans, funnel: single node with 2 workers, then the coordinator
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SELECT pg_temp.q('funnel', 'leadmgmt.activity') AS q \gset
EXPLAIN (COSTS OFF) :q;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
SET max_parallel_workers_per_gather = 0;
SELECT pg_temp.q('funnel', 'public.lead_activity') AS q \gset
EXPLAIN (VERBOSE, COSTS OFF) :q;

DO \$\$
DECLARE n text; s text;
BEGIN
	FOREACH n IN ARRAY ARRAY['funnel', 'decayed_sum', 'attribution'] LOOP
		FOREACH s IN ARRAY ARRAY['single, no worker', 'single, 2 workers', '2 shards'] LOOP
			PERFORM pg_temp.bench(n, s, $RUNS,
			        pg_temp.q(n, CASE WHEN s = '2 shards' THEN 'public.lead_activity' ELSE 'leadmgmt.activity' END));
		END LOOP;
	END LOOP;
END
\$\$;

\echo sharded answers against the single node (differ must be 0):
SET max_parallel_workers_per_gather = 0;
SELECT 'funnel' AS query, count(*) AS leads,
       count(*) FILTER (WHERE s.v IS DISTINCT FROM o.v) AS differ
  FROM (SELECT lead_id, leadmgmt.window_funnel('30 days', occurred_at, kind = 'page_view', kind = 'download', kind = 'visit') AS v
          FROM public.lead_activity WHERE kind IN ('page_view', 'download', 'visit') GROUP BY lead_id) s
  FULL JOIN (SELECT lead_id, leadmgmt.window_funnel('30 days', occurred_at, kind = 'page_view', kind = 'download', kind = 'visit') AS v
               FROM leadmgmt.activity WHERE kind IN ('page_view', 'download', 'visit') GROUP BY lead_id) o USING (lead_id)
UNION ALL
SELECT 'decayed_sum', count(*),
       count(*) FILTER (WHERE s.v IS NULL OR o.v IS NULL OR abs(s.v - o.v) > 1e-9 * greatest(1, abs(o.v)))
  FROM (SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', '2025-01-01 00:00+00') AS v
          FROM public.lead_activity GROUP BY lead_id) s
  FULL JOIN (SELECT lead_id, leadmgmt.decayed_sum(points, occurred_at, '30 days', '2025-01-01 00:00+00') AS v
               FROM leadmgmt.activity GROUP BY lead_id) o USING (lead_id)
UNION ALL
SELECT 'attribution', count(DISTINCT lead_id),
       count(*) FILTER (WHERE s.w IS NULL OR o.w IS NULL OR abs(s.w - o.w) > 1e-12)
  FROM (SELECT x.lead_id, e.key, e.value::float8 AS w
          FROM (SELECT lead_id, leadmgmt.attribution('linear', campaign, occurred_at) AS v
                  FROM public.lead_activity WHERE campaign IS NOT NULL GROUP BY lead_id) x, jsonb_each(x.v) e) s
  FULL JOIN (SELECT x.lead_id, e.key, e.value::float8 AS w
               FROM (SELECT lead_id, leadmgmt.attribution('linear', campaign, occurred_at) AS v
                       FROM leadmgmt.activity WHERE campaign IS NOT NULL GROUP BY lead_id) x, jsonb_each(x.v) e) o
    USING (lead_id, key);
SELECT v AS funnel_level, count(*) AS leads
  FROM (SELECT lead_id, leadmgmt.window_funnel('30 days', occurred_at, kind = 'page_view', kind = 'download', kind = 'visit') AS v
          FROM leadmgmt.activity WHERE kind IN ('page_view', 'download', 'visit') GROUP BY lead_id) f
 GROUP BY v ORDER BY v;

\echo times, best of $RUNS runs (ms):
SELECT name AS query,
       round(min(ms) FILTER (WHERE setup = 'single, no worker')::numeric) AS "single, no worker",
       round(min(ms) FILTER (WHERE setup = 'single, 2 workers')::numeric) AS "single, 2 workers",
       round(min(ms) FILTER (WHERE setup = '2 shards')::numeric) AS "2 shards",
       round((min(ms) FILTER (WHERE setup = 'single, no worker') / min(ms) FILTER (WHERE setup = 'single, 2 workers'))::numeric, 2) AS "no worker / 2 workers",
       round((min(ms) FILTER (WHERE setup = 'single, no worker') / min(ms) FILTER (WHERE setup = '2 shards'))::numeric, 2) AS "single / 2 shards"
  FROM bench_scale_times GROUP BY name ORDER BY min(ms) FILTER (WHERE setup = 'single, no worker') DESC;

\echo retention on the single node: purge_activity() of January 2024
SELECT count(*) AS january_rows FROM leadmgmt.activity WHERE occurred_at < '2024-02-01 00:00+00';
SELECT clock_timestamp() AS t0 \gset
SELECT leadmgmt.purge_activity('2024-02-01 00:00+00') AS purged;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 1) AS purge_s,
       count(*) AS leads_with_purged_score FROM leadmgmt.purged_score;
DROP TABLE public.lead_activity, bench_scale_times;
EOF
