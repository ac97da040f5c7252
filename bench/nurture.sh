#!/bin/sh
# Nurture benchmark, in one run (bench/run.sh gives the throwaway cluster):
#  1. nurture_enroll() over 1 M leads (two tracks, one by interest) against
#     the plain-SQL floor: an INSERT ... SELECT DISTINCT ON of the same rows
#     (each lead's highest-priority track, holdout by the same bucket) into
#     a table of the same shape (LIKE nurture_enrollment INCLUDING ALL: same
#     columns, constraints and indexes), without exits, consent, the
#     once-per-track rule or the concurrency guard; then the rerun that
#     finds nothing new (the pg_cron steady state).  Both with jit off
#     (nurture_enroll() pins it off).
#  2. the cost of the exit triggers: 10,000 enrolled leads become MQL in
#     one UPDATE, with the trigger lead_nurture_changed and without it
#     (rolled back each time).
#  3. the cost the foreign keys would have: the floor's INSERT into the
#     same-shape table with FOREIGN KEY (lead_id) and (track) added.
#  4. nurture_due at 1 M enrolments with 1 % and 0.1 % due, through the
#     partial index nurture_enrollment_due, against the same query with index
#     scans off (a full scan); the plan is printed.
# Data is written with triggers off (session_replication_role), as a restore
# would, to build it quickly; the stage history rows the triggers would write
# are written too.  Goal: nurture_enroll() on 1 M leads in a few seconds.
#
#   NURTURE_LEADS (default 1000000 * BENCH_SCALE), ROUNDS (2)
set -eu
leads=${NURTURE_LEADS:-$(awk -v s="${BENCH_SCALE:-1}" 'BEGIN { printf "%d", 1000000 * s }')}
rounds=${ROUNDS:-2}

psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
SET session_replication_role = replica;
DO \$\$ BEGIN PERFORM setseed(0.25); END \$\$;
INSERT INTO leadmgmt.lead (id, created_at, stage_entered_at, grade, score)
SELECT g, now() - interval '2 years', now() - interval '2 years', (ARRAY['A','B','C','D'])[1 + g % 4], (g % 100)::float8
  FROM generate_series(1, $leads) g;
INSERT INTO leadmgmt.stage_history (lead_id, from_stage, to_stage, changed_at, changed_by, entry_number)
SELECT g, NULL, 'inquiry', now() - interval '2 years', 'bench', 1 FROM generate_series(1, $leads) g;
-- one lead in ten downloaded something about DX lately
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, points)
SELECT g, 'download', now() - random() * interval '60 days', 'DX whitepaper', 0
  FROM generate_series(1, $leads, 10) g;
RESET session_replication_role;
SELECT pg_catalog.setval('leadmgmt.lead_id_seq', $leads);
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages, interest_kind, interest_pattern, interest_within)
VALUES ('dx_interest', 10, 10, '{inquiry}', 'download', '%DX%', '90 days');
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages, min_score)
VALUES ('general', 1, 10, '{inquiry}', 0);
INSERT INTO leadmgmt.nurture_step VALUES
	('dx_interest', 1, 'email', 'dx-guide', '0'), ('dx_interest', 2, 'email', 'dx-case', '7 days'),
	('general', 1, 'email', 'news-1', '1 day'), ('general', 2, 'email', 'news-2', '14 days');
CREATE TABLE public.floor_enrollment (LIKE leadmgmt.nurture_enrollment INCLUDING ALL);
VACUUM ANALYZE leadmgmt.lead;
VACUUM ANALYZE leadmgmt.activity;
VACUUM ANALYZE leadmgmt.stage_history;
SQL

# the plain-SQL floor: each lead's highest-priority matching track, holdout
# by the same bucket, one INSERT into a table of the same shape
plain="INSERT INTO public.floor_enrollment (lead_id, track, enrolled_at, status, next_due_at)
SELECT DISTINCT ON (l.id) l.id, t.name, now(),
       CASE WHEN leadmgmt.nurture_bucket(l.id, t.name) < t.holdout_pct THEN 'holdout' ELSE 'active' END,
       CASE WHEN leadmgmt.nurture_bucket(l.id, t.name) < t.holdout_pct THEN NULL ELSE now() + s.wait END
  FROM leadmgmt.lead l
  JOIN leadmgmt.nurture_track t ON l.stage = ANY (t.entry_stages)
  JOIN leadmgmt.nurture_step s ON s.track = t.name AND s.step_no = 1
 WHERE l.merged_into IS NULL
   AND (t.min_score IS NULL OR l.score >= t.min_score)
   AND (t.interest_kind IS NULL OR EXISTS (SELECT 1 FROM leadmgmt.activity a
        WHERE a.lead_id = l.id AND a.kind = t.interest_kind AND a.detail ILIKE t.interest_pattern
          AND a.occurred_at >= now() - t.interest_within))
 ORDER BY l.id, t.priority DESC;"
reset_sql="TRUNCATE leadmgmt.nurture_enrollment, public.floor_enrollment; CHECKPOINT;"

timed() { # timed SQL... -> milliseconds of the last statement
	psql -X -q -v ON_ERROR_STOP=1 -c 'SET jit = off' -c '\timing on' "$@" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
timed_update() { # BEGIN; [ALTER ...;] UPDATE; ROLLBACK -> milliseconds of the UPDATE
	psql -X -q -v ON_ERROR_STOP=1 -c 'SET jit = off' -c '\timing on' "$@" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -2 | head -1
}
# time_sql SQL -> "wall_ms cpu_ms": wall time, and the CPU time of the
# server process that ran it (/proc, when the server runs on this machine;
# "-" otherwise): on a loaded machine the CPU time is the steadier figure
ticks=$(getconf CLK_TCK)
time_sql() {
	psql -X -q -v ON_ERROR_STOP=1 -At <<EOF | awk -v t="$ticks" '
		/^cpu0 / { c0 = $2 } /^cpu1 / { c1 = $2 }
		/^Time: / { w = $2 }
		END { printf "%s %s\n", w, (c0 != "" && c1 != "") ? sprintf("%.0f", (c1 - c0) * 1000 / t) : "-" }'
SET jit = off;
SELECT pg_backend_pid() AS pid \gset
\setenv LM_BENCH_PID :pid
\! awk '{ print "cpu0", \$14 + \$15 }' /proc/\$LM_BENCH_PID/stat 2>/dev/null
\timing on
$1
\timing off
\! awk '{ print "cpu1", \$14 + \$15 }' /proc/\$LM_BENCH_PID/stat 2>/dev/null
EOF
}
wall() { echo "${1%% *}"; }
cpu() { echo "${1##* }"; }
min() { printf "%s\n%s\n" "$1" "${2:-$1}" | sort -g | head -1; }

best_fn=""; best_plain=""; best_rerun=""; cpu_fn=""; cpu_plain=""
i=0
while [ $i -lt "$rounds" ]; do
	psql -X -q -c "$reset_sql" >/dev/null
	p=$(time_sql "$plain")
	psql -X -q -c "$reset_sql" >/dev/null
	f=$(time_sql "SELECT * FROM leadmgmt.nurture_enroll();")
	r=$(timed -c "SELECT * FROM leadmgmt.nurture_enroll();")
	echo "round $((i + 1)): $leads leads: nurture_enroll() $(wall "$f") ms (server CPU $(cpu "$f") ms), plain INSERT ... SELECT $(wall "$p") ms (server CPU $(cpu "$p") ms), rerun (nothing new) ${r} ms"
	best_fn=$(min "$(wall "$f")" "$best_fn"); best_plain=$(min "$(wall "$p")" "$best_plain"); best_rerun=$(min "$r" "$best_rerun")
	cpu_fn=$(min "$(cpu "$f")" "$cpu_fn"); cpu_plain=$(min "$(cpu "$p")" "$cpu_plain")
	i=$((i + 1))
done
psql -X -q -At -c "SELECT 'enrolments: ' || count(*) || ', holdout ' || count(*) FILTER (WHERE status = 'holdout')
                          || ', dx_interest ' || count(*) FILTER (WHERE track = 'dx_interest')
                          || '; floor rows: ' || (SELECT count(*) FROM public.floor_enrollment)
                     FROM leadmgmt.nurture_enrollment"
awk -v f="$best_fn" -v p="$best_plain" -v r="$best_rerun" -v cf="$cpu_fn" -v cp="$cpu_plain" -v n="$leads" 'BEGIN {
	printf "nurture_enroll(): best %.0f ms (server CPU %s ms), plain-SQL floor %.0f ms (server CPU %s ms), ratio %.2f; rerun %.0f ms\n", f, cf, p, cp, f / p, r
	printf "table: nurture|nurture_enroll(), %d leads, first run|%.0f|INSERT ... SELECT into a same-shape table|%.0f|a few seconds\n", n, f, p
	if (cf != "-" && cp != "-")
		printf "table: nurture|nurture_enroll(), %d leads, first run: server CPU time|%.0f|the same INSERT ... SELECT: server CPU time|%.0f|\n", n, cf, cp
	printf "table: nurture|nurture_enroll(), %d leads, nothing new (pg_cron steady state)|%.0f|||\n", n, r }'

# the exit triggers: 10,000 enrolled leads convert in one statement
conv="BEGIN; UPDATE leadmgmt.lead SET stage = 'mql' WHERE id % 100 = 5; ROLLBACK;"
psql -X -q -c "$conv" >/dev/null
best_on=""; best_off=""
i=0
while [ $i -lt "$rounds" ]; do
	on=$(timed_update -c "BEGIN" -c "UPDATE leadmgmt.lead SET stage = 'mql' WHERE id % 100 = 5" -c "ROLLBACK")
	off=$(timed_update -c "BEGIN" -c "ALTER TABLE leadmgmt.lead DISABLE TRIGGER lead_nurture_changed" \
		-c "UPDATE leadmgmt.lead SET stage = 'mql' WHERE id % 100 = 5" -c "ROLLBACK")
	echo "round $((i + 1)): $((leads / 100)) leads to mql in one UPDATE: ${on} ms with the exit trigger, ${off} ms without"
	best_on=$(min "$on" "$best_on"); best_off=$(min "$off" "$best_off")
	i=$((i + 1))
done
psql -X -q -At -c "BEGIN" -c "UPDATE leadmgmt.lead SET stage = 'mql' WHERE id % 100 = 5" \
	-c "SELECT 'exits recorded by the trigger: ' || count(*) FROM leadmgmt.nurture_enrollment WHERE exit_reason = 'converted'" -c "ROLLBACK" | grep exits
awk -v a="$best_on" -v b="$best_off" -v n="$((leads / 100))" 'BEGIN {
	printf "exit trigger: %.0f ms with, %.0f ms without, ratio %.2f\n", a, b, a / b
	printf "table: nurture|%d enrolled leads to mql in one UPDATE, exits recorded by trigger|%.0f|the same UPDATE without the trigger|%.0f|\n", n, a, b }'

# the foreign keys nurture_enrollment does without
psql -X -q -c "$reset_sql" >/dev/null
nofk=$(timed -c "$plain")
psql -X -q -v ON_ERROR_STOP=1 -c "$reset_sql" \
	-c "ALTER TABLE public.floor_enrollment ADD FOREIGN KEY (lead_id) REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	    ADD FOREIGN KEY (track) REFERENCES leadmgmt.nurture_track (name)" >/dev/null
fk=$(timed -c "$plain")
awk -v a="$fk" -v b="$nofk" -v n="$leads" 'BEGIN {
	printf "foreign keys: the floor INSERT %.0f ms with FOREIGN KEY (lead_id) and (track), %.0f ms without, ratio %.2f\n", a, b, a / b
	printf "table: nurture|%d enrolments INSERTed with the two foreign keys|%.0f|the same without them|%.0f|\n", n, a, b }'
psql -X -q -c "DROP TABLE public.floor_enrollment" >/dev/null

# nurture_due: enrol again, then spread the due times of the active
# enrolments over 100 days (about 1 % due now), then over 1,000 (0.1 %)
psql -X -q -c "TRUNCATE leadmgmt.nurture_enrollment" -c "SELECT * FROM leadmgmt.nurture_enroll()" >/dev/null
for days in 100 1000; do
	psql -X -q -v ON_ERROR_STOP=1 <<SQL
UPDATE leadmgmt.nurture_enrollment SET next_due_at = now() - interval '1 day' + random() * interval '$days days'
 WHERE status = 'active';
VACUUM ANALYZE leadmgmt.nurture_enrollment;
SQL
	due=$(psql -X -q -At -c "SELECT count(*) FROM leadmgmt.nurture_enrollment WHERE status = 'active' AND next_due_at <= now()")
	total=$(psql -X -q -At -c "SELECT count(*) FROM leadmgmt.nurture_enrollment")
	echo "enrolments: $total, due now: $due"
	echo "plan of SELECT count(*) FROM leadmgmt.nurture_due:"
	psql -X -q -c "SET jit = off" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT count(*) FROM leadmgmt.nurture_due" | sed 's/^/  /'
	# one untimed pass of each, so that neither is measured on a cold cache
	psql -X -q -c "SELECT count(*) FROM leadmgmt.nurture_due" >/dev/null
	psql -X -q -c 'SET enable_indexscan = off' -c 'SET enable_bitmapscan = off' \
		-c "SELECT count(*) FROM leadmgmt.nurture_due" >/dev/null
	best_idx=""; best_seq=""
	i=0
	while [ $i -lt "$rounds" ]; do
		x=$(timed -c "SELECT count(*) FROM leadmgmt.nurture_due;")
		s=$(timed -c 'SET enable_indexscan = off' -c 'SET enable_bitmapscan = off' -c "SELECT count(*) FROM leadmgmt.nurture_due;")
		echo "round $((i + 1)): nurture_due through the index ${x} ms, full scan ${s} ms"
		best_idx=$(min "$x" "$best_idx"); best_seq=$(min "$s" "$best_seq")
		i=$((i + 1))
	done
	psql -X -q -At -c "SELECT 'rows due: ' || count(*) FROM leadmgmt.nurture_due"
	awk -v x="$best_idx" -v s="$best_seq" -v d="$due" -v t="$total" 'BEGIN {
		printf "nurture_due: best %.1f ms through the index, %.1f ms by full scan, %.1fx faster\n", x, s, s / x
		printf "table: nurture|nurture_due, %d of %d enrolments due, through nurture_enrollment_due|%.1f|the same query by full scan|%.1f|in proportion to the due rows\n", d, t, x, s }'
done
