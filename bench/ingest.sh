#!/bin/sh
# Activity ingest benchmark: COPY of INGEST_ROWS activity rows (default
# 1 M x BENCH_SCALE) for INGEST_LEADS leads (default 100 k x BENCH_SCALE)
# into leadmgmt.activity with every feature on (identity resolution through
# merged_into, scoring, hygiene, consent), against the same COPY into a plain
# table of the same shape (same columns, defaults, checks, indexes and
# foreign keys, no triggers), measured in the same run, best of ROUNDS
# (default 2), alternating which goes first.  Then TRACK_ROWS (default 20 k x
# BENCH_SCALE) rows one statement at a time: leadmgmt.track() against a
# plain single-row INSERT.  Goal: COPY ratio <= 1.3.
#
# The floor: the same COPY into bench_floor, the plain table plus what any
# implementation of ingest inside PostgreSQL pays before doing any work of
# its own: a BEFORE ROW trigger written in C that fills one column of the row
# (contrib's insert_username, on campaign; a BEFORE ROW trigger makes COPY
# insert row by row instead of in batches) and an AFTER STATEMENT trigger
# with a transition table (PostgreSQL keeps every new row for it) that does
# nothing.  Every feature on the floor is leadmgmt's own cost.
#
# The data: 2 % of the leads are merged into another one (so 2 % of the rows
# name a merged lead and must land on the kept one), kinds as in real data
# with bounces and unsubscribes, a year of activity ending a month ago (no
# hand-offs).  After the last COPY, rescore() must change nothing.
#
# Prints "ingest:" result lines that bench/run.sh collects into its table.
# Runs inside a throwaway cluster (bench/run.sh).
set -eu
scale=${BENCH_SCALE:-1}
rows=${INGEST_ROWS:-$(awk -v s="$scale" 'BEGIN { printf "%d", 1000000 * s }')}
leads=${INGEST_LEADS:-$(awk -v s="$scale" 'BEGIN { printf "%d", 100000 * s }')}
track_rows=${TRACK_ROWS:-$(awk -v s="$scale" 'BEGIN { printf "%d", 20000 * s }')}
rounds=${ROUNDS:-2}
# written and read by the server (COPY TO/FROM a file), so let it create it
data=/tmp/leadmgmt-bench-ingest-$$.csv
trap 'rm -f "$data"' EXIT

psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

psql_q >/dev/null <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
DROP TABLE IF EXISTS bench_plain, bench_floor;
CREATE EXTENSION leadmgmt;
CREATE EXTENSION IF NOT EXISTS insert_username;
INSERT INTO leadmgmt.lead (id, email, created_at)
SELECT g, 'lead' || g || '@example.com', now() - interval '2 years' FROM generate_series(1, $leads) g;
SELECT setval('leadmgmt.lead_id_seq', $leads);
-- 2 % of the leads were merged into another lead
DO \$\$ BEGIN PERFORM setseed(0.16); END \$\$;
-- (a transaction every 100 merges: each merge's rescore takes temporary
-- tables, whose locks would fill the lock table in one transaction)
DO \$\$
DECLARE
	r record;
	n int := 0;
BEGIN
	FOR r IN SELECT k, d
	           FROM (SELECT g AS d, 1 + ((g * 7919) % $leads) AS k
	                   FROM generate_series(1, $leads) g WHERE g % 50 = 25) m
	          WHERE k % 50 <> 25 AND k <> d LOOP
		PERFORM leadmgmt.merge_leads(r.k, r.d);
		n := n + 1;
		IF n % 100 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END
\$\$;
-- activity of the year before last month (no hand-offs), kinds as in real data
COPY (
	SELECT 1 + floor(random() * $leads)::bigint,
	       (ARRAY['page_view','page_view','page_view','page_view','email_open','email_open','email_click',
	              'download','form_submit','seminar_attend','call','visit'])[1 + floor(random() * 12)::int],
	       now() - interval '30 days' - random() * interval '365 days',
	       (ARRAY['/','/pricing','/product','/blog/dx','whitepaper-a.pdf','newsletter'])[1 + floor(random() * 6)::int],
	       floor(random() * 300)::int,
	       (ARRAY['web','web','email','event'])[1 + floor(random() * 4)::int]
	  FROM generate_series(1, $rows - $rows / 250)
	UNION ALL
	SELECT 1 + floor(random() * $leads)::bigint,
	       (ARRAY['email_bounce','unsubscribe'])[1 + floor(random() * 2)::int],
	       now() - interval '30 days' - random() * interval '365 days', NULL, NULL, 'email'
	  FROM generate_series(1, $rows / 250)
) TO '$data' WITH (FORMAT csv);
-- the plain table: the shape of leadmgmt.activity without its triggers
CREATE TABLE bench_plain (LIKE leadmgmt.activity INCLUDING ALL);
ALTER TABLE bench_plain
	ADD FOREIGN KEY (lead_id) REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	ADD FOREIGN KEY (kind) REFERENCES leadmgmt.activity_kind (name);
-- the floor: the plain table, a C BEFORE ROW trigger that fills one column,
-- and an empty AFTER STATEMENT trigger with a transition table
CREATE TABLE bench_floor (LIKE leadmgmt.activity INCLUDING ALL);
ALTER TABLE bench_floor
	ADD FOREIGN KEY (lead_id) REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	ADD FOREIGN KEY (kind) REFERENCES leadmgmt.activity_kind (name);
CREATE FUNCTION bench_nothing() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN RETURN NULL; END \$\$;
CREATE TRIGGER bench_floor_row BEFORE INSERT ON bench_floor
	FOR EACH ROW EXECUTE FUNCTION insert_username(campaign);
CREATE TRIGGER bench_floor_statement AFTER INSERT ON bench_floor
	REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_nothing();
ANALYZE leadmgmt.lead;
SQL

reset_sql="TRUNCATE leadmgmt.activity, leadmgmt.score_state, leadmgmt.consent, bench_plain, bench_floor;
UPDATE leadmgmt.lead SET score = 0, score_at = NULL WHERE score_at IS NOT NULL;
UPDATE leadmgmt.lead SET email_status = 'ok' WHERE email_status <> 'ok';"
reset() { psql_q -c "$reset_sql" -c "VACUUM leadmgmt.lead" -c "CHECKPOINT" >/dev/null; }
cols="lead_id, kind, occurred_at, detail, duration_s, channel"

# time_sql SQL -> "wall_ms cpu_ms": wall time, and the CPU time of the
# server process that ran it (/proc, when the server runs on this machine;
# "-" otherwise): on a loaded machine the CPU time is the steadier figure
ticks=$(getconf CLK_TCK)
time_sql() {
	psql_q -At <<EOF | awk -v t="$ticks" '
		/^cpu0 / { c0 = $2 } /^cpu1 / { c1 = $2 }
		/^Time: / { w = $2 }
		END { printf "%s %s\n", w, (c0 != "" && c1 != "") ? sprintf("%.0f", (c1 - c0) * 1000 / t) : "-" }'
SELECT pg_backend_pid() AS pid \gset
\setenv LM_BENCH_PID :pid
\! awk '{ print "cpu0", \$14 + \$15 }' /proc/\$LM_BENCH_PID/stat 2>/dev/null
\timing on
$1;
\timing off
\! awk '{ print "cpu1", \$14 + \$15 }' /proc/\$LM_BENCH_PID/stat 2>/dev/null
EOF
}
wall() { echo "${1%% *}"; }
cpu() { echo "${1##* }"; }
min() { printf '%s\n%s\n' "$1" "${2:-$1}" | sort -g | head -1; }

copy_into() { time_sql "COPY $1 ($cols) FROM '$data' WITH (FORMAT csv)"; }
best_plain=""; best_lm=""; best_floor=""; cpu_plain=""; cpu_lm=""; cpu_floor=""
i=0
while [ $i -lt "$rounds" ]; do
	reset
	# alternate the order, so that neither always meets a warmer cache
	if [ $((i % 2)) -eq 0 ]; then
		plain=$(copy_into bench_plain); psql_q -c "CHECKPOINT" >/dev/null
		floor=$(copy_into bench_floor); psql_q -c "CHECKPOINT" >/dev/null
		lm=$(copy_into leadmgmt.activity)
	else
		lm=$(copy_into leadmgmt.activity); psql_q -c "CHECKPOINT" >/dev/null
		floor=$(copy_into bench_floor); psql_q -c "CHECKPOINT" >/dev/null
		plain=$(copy_into bench_plain)
	fi
	echo "round $((i + 1)): COPY $rows rows: plain table $(wall "$plain") ms (server CPU $(cpu "$plain") ms), floor $(wall "$floor") ms (server CPU $(cpu "$floor") ms), leadmgmt.activity $(wall "$lm") ms (server CPU $(cpu "$lm") ms)"
	best_plain=$(min "$(wall "$plain")" "$best_plain")
	best_floor=$(min "$(wall "$floor")" "$best_floor")
	best_lm=$(min "$(wall "$lm")" "$best_lm")
	cpu_plain=$(min "$(cpu "$plain")" "$cpu_plain")
	cpu_floor=$(min "$(cpu "$floor")" "$cpu_floor")
	cpu_lm=$(min "$(cpu "$lm")" "$cpu_lm")
	i=$((i + 1))
done

# what the last COPY did, and that it equals a full recompute
psql_q <<'SQL'
\echo what the leadmgmt COPY did:
SELECT (SELECT count(*) FROM leadmgmt.activity) AS activity_rows,
       (SELECT count(*) FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id
         WHERE l.merged_into IS NOT NULL) AS rows_on_merged_leads,
       (SELECT count(*) FROM leadmgmt.lead WHERE score_at IS NOT NULL) AS leads_scored,
       (SELECT count(*) FROM leadmgmt.lead WHERE email_status = 'bounced') AS bounced,
       (SELECT count(*) FROM leadmgmt.lead WHERE email_status = 'unsubscribed') AS unsubscribed,
       (SELECT count(*) FROM leadmgmt.consent) AS consent_rows;
SQL
rescore_start=$(date +%s.%N)
changed=$(psql_q -t -A -c "SELECT leadmgmt.rescore()")
rescore_s=$(echo "$(date +%s.%N) $rescore_start" | awk '{printf "%.1f", $1 - $2}')
echo "check: ingest|rescore() after the COPY|changed $changed leads (must be 0)|full rescore took ${rescore_s} s"

# row by row: one statement per row, in one transaction each way
reset
psql_q <<SQL >/dev/null
CREATE TABLE bench_track AS
SELECT * FROM (SELECT (1 + floor(random() * $leads))::bigint AS lead_id,
                      (ARRAY['page_view','page_view','email_open','email_click','download','form_submit'])[1 + floor(random() * 6)::int] AS kind,
                      now() - interval '30 days' - random() * interval '365 days' AS occurred_at,
                      (ARRAY['/','/pricing','/product','whitepaper-a.pdf'])[1 + floor(random() * 4)::int] AS detail,
                      floor(random() * 300)::int AS duration_s
                 FROM generate_series(1, $track_rows)) t;
SQL
track_plain_t=$(time_sql "DO \$\$ DECLARE r record; BEGIN
	FOR r IN SELECT * FROM bench_track LOOP
		INSERT INTO bench_plain (lead_id, kind, occurred_at, detail, duration_s)
		VALUES (r.lead_id, r.kind, r.occurred_at, r.detail, r.duration_s);
	END LOOP; END \$\$")
track_lm_t=$(time_sql "DO \$\$ DECLARE r record; BEGIN
	FOR r IN SELECT * FROM bench_track LOOP
		PERFORM leadmgmt.track(r.lead_id, r.kind, r.occurred_at, r.detail, NULL, r.duration_s);
	END LOOP; END \$\$")
track_plain=$(wall "$track_plain_t"); track_lm=$(wall "$track_lm_t")
changed_track=$(psql_q -t -A -c "SELECT leadmgmt.rescore()")
echo "check: ingest|rescore() after the track() calls|changed $changed_track leads (must be 0)|"
psql_q -c "DROP TABLE bench_track, bench_plain, bench_floor" >/dev/null

awk -v p="$best_plain" -v l="$best_lm" -v cp="$cpu_plain" -v cl="$cpu_lm" -v n="$rows" -v k="$leads" \
    -v f="$best_floor" -v cf="$cpu_floor" \
    -v tp="$track_plain" -v tl="$track_lm" -v ctp="$(cpu "$track_plain_t")" -v ctl="$(cpu "$track_lm_t")" -v tn="$track_rows" 'BEGIN {
	printf "ingest: COPY %d rows into a plain table of the same shape: %.0f ms (%.0f rows/s)\n", n, p, n / (p / 1000)
	printf "ingest: COPY %d rows into leadmgmt.activity, every feature on: %.0f ms (%.0f rows/s), ratio %.2fx (goal <= 1.3x)\n", n, l, n / (l / 1000), l / p
	printf "ingest: COPY %d rows into the floor table (plain + C row trigger + empty transition-table trigger): %.0f ms, ratio %.2fx\n", n, f, f / p
	printf "ingest: %d single-row INSERTs into the plain table: %.0f ms (%.1f us/row)\n", tn, tp, tp * 1000 / tn
	printf "ingest: %d track() calls: %.0f ms (%.1f us/row), ratio %.2fx\n", tn, tl, tl * 1000 / tn, tl / tp
	printf "table: ingest|COPY %d rows for %d leads into leadmgmt.activity, every feature on: wall|%.0f|COPY into a plain table of the same shape: wall|%.0f|<= 1.3x\n", n, k, l, p
	if (cp != "-" && cl != "-")
		printf "table: ingest|the same COPY into leadmgmt.activity: server CPU time|%.0f|the same COPY into the plain table: server CPU time|%.0f|<= 1.3x\n", cl, cp
	printf "table: ingest|the same COPY into the floor table (plain + C row trigger + empty transition-table trigger): wall|%.0f|COPY into the plain table: wall|%.0f|floor\n", f, p
	if (cp != "-" && cf != "-")
		printf "table: ingest|the same COPY into the floor table: server CPU time|%.0f|the same COPY into the plain table: server CPU time|%.0f|floor\n", cf, cp
	if (cf != "-" && cl != "-")
		printf "table: ingest|the same COPY into leadmgmt.activity: server CPU time|%.0f|the same COPY into the floor table: server CPU time|%.0f|\n", cl, cf
	printf "table: ingest|%d track() calls, one statement each: wall|%.0f|single-row INSERTs into the plain table: wall|%.0f|\n", tn, tl, tp
	if (ctp != "-" && ctl != "-")
		printf "table: ingest|%d track() calls: server CPU time|%.0f|single-row INSERTs into the plain table: server CPU time|%.0f|\n", tn, ctl, ctp
}'
