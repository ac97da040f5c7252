#!/bin/sh
# Nurture benchmark: nurture_enroll() over 1 M leads (two tracks, one by
# interest), against the plain-SQL floor of the same job (one INSERT ...
# SELECT DISTINCT ON that picks each lead's highest-priority track, without
# exits, consent or the once-per-track rule), in one run; the rerun that finds
# nothing new; and nurture_due over 1 M enrolments with about 1 % due,
# served through the partial index nurture_enrollment_due, against the same
# query with index scans off (a full scan).  Runs inside a throwaway cluster
# (bench/run.sh).  Goal: nurture_enroll() in a few seconds.
#
#   NURTURE_LEADS (default 1000000), ROUNDS (2)
set -eu
leads=${NURTURE_LEADS:-1000000}
rounds=${ROUNDS:-2}

psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DO \$\$ BEGIN PERFORM setseed(0.25); END \$\$;
INSERT INTO leadmgmt.lead (id, created_at, grade, score)
SELECT g, now() - interval '2 years', (ARRAY['A','B','C','D'])[1 + g % 4], (g % 100)::float8
  FROM generate_series(1, $leads) g;
-- one lead in ten downloaded something about DX lately
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, points)
SELECT g, 'download', now() - random() * interval '60 days', 'DX whitepaper', 0
  FROM generate_series(1, $leads, 10) g;
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages, interest_kind, interest_pattern, interest_within)
VALUES ('dx_interest', 10, 10, '{inquiry}', 'download', '%DX%', '90 days');
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages, min_score)
VALUES ('general', 1, 10, '{inquiry}', 0);
INSERT INTO leadmgmt.nurture_step VALUES
	('dx_interest', 1, 'email', 'dx-guide', '0'), ('dx_interest', 2, 'email', 'dx-case', '7 days'),
	('general', 1, 'email', 'news-1', '1 day'), ('general', 2, 'email', 'news-2', '14 days');
VACUUM ANALYZE leadmgmt.lead;
VACUUM ANALYZE leadmgmt.activity;
SQL

# the plain-SQL floor: each lead's highest-priority matching track, holdout
# by the same bucket, one INSERT
plain="INSERT INTO leadmgmt.nurture_enrollment (lead_id, track, enrolled_at, status, next_due_at)
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
reset_sql="TRUNCATE leadmgmt.nurture_enrollment; CHECKPOINT;"

timed() { # timed SQL -> milliseconds of the last statement
	psql -X -q -v ON_ERROR_STOP=1 -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1
}
min() { printf '%s\n%s\n' "$1" "${2:-$1}" | sort -n | head -1; }

best_fn=""; best_plain=""; best_rerun=""
i=0
while [ $i -lt "$rounds" ]; do
	psql -X -q -c "$reset_sql" >/dev/null
	p=$(timed "$plain")
	psql -X -q -c "$reset_sql" >/dev/null
	f=$(timed "SELECT * FROM leadmgmt.nurture_enroll();")
	r=$(timed "SELECT * FROM leadmgmt.nurture_enroll();")
	echo "round $((i + 1)): $leads leads: nurture_enroll() ${f} ms, plain INSERT ... SELECT ${p} ms, rerun (nothing new) ${r} ms"
	best_fn=$(min "$f" "$best_fn"); best_plain=$(min "$p" "$best_plain"); best_rerun=$(min "$r" "$best_rerun")
	i=$((i + 1))
done
psql -X -q -At -c "SELECT 'enrolments: ' || count(*) || ', holdout ' || count(*) FILTER (WHERE status = 'holdout')
                          || ', dx_interest ' || count(*) FILTER (WHERE track = 'dx_interest')
                     FROM leadmgmt.nurture_enrollment"
awk -v f="$best_fn" -v p="$best_plain" -v r="$best_rerun" 'BEGIN {
	printf "nurture_enroll(): best %.0f ms, plain-SQL floor %.0f ms, ratio %.2f; rerun %.0f ms\n", f, p, f / p, r }'

# nurture_due: spread the due times over 100 days, about 1 % due now
psql -X -q -v ON_ERROR_STOP=1 <<SQL
UPDATE leadmgmt.nurture_enrollment SET next_due_at = now() - interval '1 day' + random() * interval '100 days'
 WHERE status = 'active';
VACUUM ANALYZE leadmgmt.nurture_enrollment;
SQL
psql -X -q -At -c "SELECT 'active enrolments: ' || count(*) || ', due now: ' || count(*) FILTER (WHERE next_due_at <= now())
                     FROM leadmgmt.nurture_enrollment WHERE status = 'active'"
echo "plan of SELECT * FROM leadmgmt.nurture_due:"
psql -X -q -c "EXPLAIN (COSTS OFF) SELECT * FROM leadmgmt.nurture_due" | sed 's/^/  /'
# one untimed pass of each, so that neither is measured on a cold cache
psql -X -q -c "SELECT count(*) FROM leadmgmt.nurture_due" >/dev/null
psql -X -q -c 'SET enable_indexscan = off' -c 'SET enable_bitmapscan = off' \
	-c "SELECT count(*) FROM leadmgmt.nurture_due" >/dev/null
best_idx=""; best_seq=""
i=0
while [ $i -lt "$rounds" ]; do
	x=$(timed "SELECT count(*) FROM leadmgmt.nurture_due;")
	s=$(psql -X -q -c 'SET enable_indexscan = off' -c 'SET enable_bitmapscan = off' -c '\timing on' \
		-c "SELECT count(*) FROM leadmgmt.nurture_due;" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1)
	echo "round $((i + 1)): nurture_due through the index ${x} ms, full scan ${s} ms"
	best_idx=$(min "$x" "$best_idx"); best_seq=$(min "$s" "$best_seq")
	i=$((i + 1))
done
psql -X -q -At -c "SELECT 'rows due: ' || count(*) FROM leadmgmt.nurture_due"
awk -v x="$best_idx" -v s="$best_seq" 'BEGIN {
	printf "nurture_due: best %.0f ms through the index, %.0f ms by full scan, %.1fx faster\n", x, s, s / x }'
