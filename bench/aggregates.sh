#!/bin/sh
# Aggregate state memory: for every aggregate of the extension with an
# internal state, GROUP BY over AGG_GROUPS groups (default 300 k x
# BENCH_SCALE) of about 10 rows each (3 funnel steps per group):
#   - bytes per group the hash table really used (EXPLAIN ANALYZE, work_mem
#     3GB so it never spills), minus what count(*) uses for the same groups:
#     the state's share, to compare with the SSPACE the aggregate declares;
#   - the plan at work_mem 256MB (EXPLAIN only): HashAggregate with no
#     planned partitions is the goal.
# logreg and logreg_summary need both labels and no separation in a group,
# so they are measured on groups of 100 rows (AGG_GROUPS / 10 groups) and
# their bytes scaled to 10 rows.
# Prints "check:" lines that bench/run.sh collects into its table.
set -eu
scale=${BENCH_SCALE:-1}
groups=${AGG_GROUPS:-$(awk -v s="$scale" 'BEGIN { printf "%d", 300000 * s }')}
rows=$((groups * 10))

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_q >/dev/null <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP TABLE IF EXISTS bench_agg;
SELECT setseed(0.3);
CREATE UNLOGGED TABLE bench_agg AS
SELECT (1 + floor(random() * $groups))::bigint AS g,
       timestamptz '2024-01-01 00:00:00+00' + random() * interval '365 days' AS ts,
       floor(random() * 10)::smallint AS kind,
       'campaign-' || floor(random() * 20)::int AS touch,
       random() < 0.3 AS label, random() AS score,
       ARRAY[random(), random(), random(), random()]::float8[] AS x,
       (ARRAY['inquiry','mql','sal','sql','won'])[1 + floor(random() * 5)::int] AS stage
  FROM generate_series(1, $rows);
VACUUM ANALYZE bench_agg;
SQL

# name | call | WHERE | GROUP BY | rows per group the bytes are scaled to
cat > "${TMPDIR:-/tmp}/leadmgmt-bench-agg-$$" <<'EOF'
window_funnel|leadmgmt.window_funnel('30 days', ts, kind = 1, kind = 2, kind = 3)|kind IN (1, 2, 3)|g|
window_funnel (mode)|leadmgmt.window_funnel('30 days', 'strict_order', ts, kind = 1, kind = 2, kind = 3)|kind IN (1, 2, 3)|g|
funnel_step_times|leadmgmt.funnel_step_times('30 days', ts, kind = 1, kind = 2, kind = 3)|kind IN (1, 2, 3)|g|
funnel_step_times (mode)|leadmgmt.funnel_step_times('30 days', 'strict_order', ts, kind = 1, kind = 2, kind = 3)|kind IN (1, 2, 3)|g|
attribution|leadmgmt.attribution('linear', touch, ts)|true|g|
attribution (milestone)|leadmgmt.attribution('linear', touch, ts, kind = 9)|true|g|
decayed_sum|leadmgmt.decayed_sum(score, ts, interval '30 days', timestamptz '2025-01-01')|true|g|
logreg|leadmgmt.logreg(label, x)|true|g % GROUPS10|10
logreg (l2)|leadmgmt.logreg(label, x, 1.0)|true|g % GROUPS10|10
logreg_summary|leadmgmt.logreg_summary(label, x)|true|g % GROUPS10|10
logreg_summary (l2)|leadmgmt.logreg_summary(label, x, 1.0)|true|g % GROUPS10|10
logreg_step|leadmgmt.logreg_step(label, x, ARRAY[0, 0, 0, 0, 0]::float8[])|true|g|
auc|leadmgmt.auc(score, label)|true|g|
interval_percentiles|leadmgmt.interval_percentiles(ts - timestamptz '2024-01-01', ARRAY[0.5, 0.9])|true|g|
stage_conversions|leadmgmt.stage_conversions(g, stage, ts, ARRAY['inquiry','mql','sal','sql'], ARRAY['mql','sal','sql','won'])|true|g|
EOF
list="${TMPDIR:-/tmp}/leadmgmt-bench-agg-$$"
trap 'rm -f "$list"' EXIT

settings="SET max_parallel_workers_per_gather = 0; SET jit = off; SET enable_sort = off;"
# memory of the hash table of a grouping, in kB, and its groups
memory() { # memory CALL WHERE GROUPBY -> "kB groups"
	psql_q -At -c "SET work_mem = '3GB'; $settings" \
		-c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT $3, $1 FROM bench_agg WHERE $2 GROUP BY 1" |
		awk '/HashAggregate \(actual rows=/ { sub(/.*rows=/, ""); sub(/ .*/, ""); g = $0 }
		     /Memory Usage:/ { sub(/.*Memory Usage: /, ""); sub(/kB.*/, ""); m = $0 }
		     END { print m, g }'
}
plan() { # plan CALL WHERE GROUPBY -> "HashAggregate, planned partitions N"
	psql_q -At -c "SET work_mem = '256MB'; SET max_parallel_workers_per_gather = 0; SET jit = off;" \
		-c "EXPLAIN (FORMAT JSON) SELECT $3, $1 FROM bench_agg WHERE $2 GROUP BY 1" |
		tr -d '\n' | sed 's/.*"Plan": {//' |
		awk '{ n = ""; p = 0
		       if (match($0, /"Node Type": "[^"]*"/)) n = substr($0, RSTART + 14, RLENGTH - 15)
		       if (match($0, /"Strategy": "[^"]*"/)) n = n " " substr($0, RSTART + 13, RLENGTH - 14)
		       if (match($0, /"Planned Partitions": [0-9]+/)) p = substr($0, RSTART + 22, RLENGTH - 22)
		       print n ", planned partitions " p }'
}

echo "aggregate state memory: $groups groups, $rows rows; bytes per group measured (hash table with the aggregate minus with count(*)), SSPACE declared, plan at work_mem 256MB"
groups10=$((groups / 10))
while IFS='|' read -r name call where groupby per; do
	groupby=$(echo "$groupby" | sed "s/GROUPS10/$groups10/")
	set -- $(memory "count(*)" "$where" "$groupby")
	base_kb=$1
	set -- $(memory "$call" "$where" "$groupby")
	kb=$1; n=$2
	fn=$(echo "$call" | sed 's/(.*//')
	args=$(echo "$name" | grep -q '(mode)\|(milestone)\|(l2)' && echo more || echo fewer)
	sspace=$(psql_q -At -c "SELECT max(a.aggtransspace) FROM pg_aggregate a WHERE a.aggfnoid::regproc::text = '$fn'")
	bytes=$(awk -v k="$kb" -v b="$base_kb" -v n="$n" -v per="${per:-0}" 'BEGIN {
		x = (k - b) * 1024 / n; if (per > 0) x = x * per / (per * 10); printf "%.0f", x }')
	p=$(plan "$call" "$where" "$groupby")
	echo "check: aggregates|$name|$bytes bytes/group measured${per:+ (scaled to 10 rows from groups of 100)}, SSPACE $sspace|$p"
done < "$list"
psql_q -c "DROP TABLE bench_agg" >/dev/null
