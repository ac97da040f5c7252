#!/bin/sh
# Scoring ingest benchmark: COPY of activity rows with scoring on, against the
# same COPY with the scoring triggers disabled (foreign keys still on), in one
# run.  Goal: ratio <= 1.3.  Runs inside a throwaway cluster (bench/run.sh).
#
#   SCORING_ROWS (default 1000000), SCORING_LEADS (default 100000), ROUNDS (2)
set -eu
rows=${SCORING_ROWS:-1000000}
leads=${SCORING_LEADS:-100000}
rounds=${ROUNDS:-2}
# written and read by the server (COPY TO/FROM a file), so let it create it
data=/tmp/leadmgmt-bench-scoring-$$.csv
trap 'rm -f "$data"' EXIT

psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
INSERT INTO leadmgmt.lead (id, created_at)
SELECT g, now() - interval '2 years' FROM generate_series(1, $leads) g;
DO \$\$ BEGIN PERFORM setseed(0.5); END \$\$;
-- activity of the year before last month (no hand-offs), kinds as in real data
COPY (
	SELECT 1 + floor(random() * $leads)::bigint,
	       (ARRAY['page_view','page_view','page_view','email_open','email_open','email_click',
	              'download','form_submit','seminar_attend','call','visit'])[1 + floor(random() * 11)::int],
	       now() - interval '30 days' - random() * interval '365 days',
	       (ARRAY['/','/pricing','/product','/blog/dx','whitepaper-a.pdf','newsletter'])[1 + floor(random() * 6)::int],
	       (floor(random() * 300))::int
	  FROM generate_series(1, $rows)
) TO '$data' WITH (FORMAT csv);
ANALYZE leadmgmt.lead;
SQL

reset_sql="TRUNCATE leadmgmt.activity, leadmgmt.score_state;
UPDATE leadmgmt.lead SET score = 0, score_at = NULL WHERE score_at IS NOT NULL;
CHECKPOINT;"
copy_sql="COPY leadmgmt.activity (lead_id, kind, occurred_at, detail, duration_s) FROM '$data' WITH (FORMAT csv);"

time_copy() { # time_copy on|off -> milliseconds
	if [ "$1" = off ]; then
		pre="ALTER TABLE leadmgmt.activity DISABLE TRIGGER activity_score_row, DISABLE TRIGGER activity_score_statement;"
		post="ALTER TABLE leadmgmt.activity ENABLE TRIGGER activity_score_row, ENABLE TRIGGER activity_score_statement;"
	else
		pre=""; post=""
	fi
	psql -X -q -v ON_ERROR_STOP=1 -c "$reset_sql" -c "$pre SELECT 1" >/dev/null
	ms=$(psql -X -q -v ON_ERROR_STOP=1 -c '\timing on' -c "$copy_sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
	psql -X -q -v ON_ERROR_STOP=1 -c "$post SELECT 1" >/dev/null
	echo "$ms"
}

best_on=""; best_off=""
i=0
while [ $i -lt "$rounds" ]; do
	off=$(time_copy off); on=$(time_copy on)
	echo "round $((i + 1)): COPY $rows rows, scoring off ${off} ms, scoring on ${on} ms"
	best_off=$(printf '%s\n%s\n' "$off" "${best_off:-$off}" | sort -n | head -1)
	best_on=$(printf '%s\n%s\n' "$on" "${best_on:-$on}" | sort -n | head -1)
	i=$((i + 1))
done

# the data scored by the last run must equal a full recompute
rescore_start=$(date +%s.%N)
changed=$(psql -X -q -t -A -c "SELECT leadmgmt.rescore()")
rescore_s=$(echo "$(date +%s.%N) $rescore_start" | awk '{printf "%.1f", $1 - $2}')
scored=$(psql -X -q -t -A -c "SELECT count(*) FROM leadmgmt.lead WHERE score_at IS NOT NULL")
echo "check: $scored leads scored, rescore() changed $changed (full rescore took ${rescore_s} s)"
awk -v on="$best_on" -v off="$best_off" -v rows="$rows" 'BEGIN {
	printf "scoring ingest: best of rounds, with scoring %.0f ms, triggers disabled %.0f ms, ratio %.2fx (goal <= 1.3x), %.0f rows/s\n",
		on, off, on / off, rows / (on / 1000) }'

# score(id) is O(1) in the number of a lead's activities: time 2000 calls
# on a lead with 10 activities and on one with 10,000
psql -X -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
INSERT INTO leadmgmt.lead (id, created_at) VALUES (-1, now() - interval '2 years'), (-2, now() - interval '2 years');
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail)
SELECT -1, 'page_view', now() - interval '40 days' + g * interval '1 second', '/' FROM generate_series(1, 10) g;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail)
SELECT -2, 'page_view', now() - interval '40 days' + g * interval '1 second', '/' FROM generate_series(1, 10000) g;
SQL
time_calls() {
	psql -X -q -c '\timing on' -c "SELECT sum(leadmgmt.score($1)) FROM generate_series(1, 2000)" |
		sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p'
}
small=$(time_calls -1); big=$(time_calls -2)
awk -v s="$small" -v b="$big" 'BEGIN {
	printf "score(id), 2000 calls: lead with 10 activities %.0f ms, with 10000 activities %.0f ms, ratio %.2fx (O(1): about 1)\n", s, b, b / s }'
