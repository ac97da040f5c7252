#!/bin/sh
# List import benchmark: 100 k staged rows of a campaign list (IMPORT_ROWS to
# change) against 20 k existing leads, imported by the set-based
# leadmgmt.import_leads() and by the row-by-row way it replaced (find_lead()
# or upsert_lead() per row in id order, then link_external_id(), activity
# and staging-row updates), measured in the same run on the same data.  Both
# must give every row the same lead.  Runs inside a throwaway cluster
# (bench/run.sh).
#
# The row-by-row loop commits every 500 rows: it holds an advisory lock per
# key until commit, and 100 k rows in one transaction do not fit in the lock
# table of a default server (out of shared memory, max_locks_per_transaction).
set -eu
rows=${IMPORT_ROWS:-100000}
persons=$((rows * 6 / 10))

# $1: setup of one run: fresh extension, existing leads, the list staged
setup_sql="SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
-- every third person is a lead already, some fields missing
INSERT INTO leadmgmt.lead (email, name, company, phone, created_at)
SELECT CASE WHEN p % 4 <> 0 THEN email END, CASE WHEN p % 7 <> 0 THEN name END,
       company, CASE WHEN p % 2 = 0 THEN phone END, '2024-06-01'
  FROM bench_person WHERE p % 3 = 1 ORDER BY p;
INSERT INTO leadmgmt.lead_import (id, batch, email, name, company, phone, source, origin, external_id,
                                  system, system_id, attributes, kind, occurred_at, campaign, detail)
SELECT id, batch, email, name, company, phone, source, origin, external_id,
       system, system_id, attributes, kind, occurred_at, campaign, detail
  FROM bench_list ORDER BY id;
SELECT setval('leadmgmt.lead_import_id_seq', $rows);
ANALYZE leadmgmt.lead, leadmgmt.lead_import;
CHECKPOINT;"

psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP TABLE IF EXISTS bench_person, bench_list, bench_result;
DO \$\$ BEGIN PERFORM setseed(0.77); END \$\$;
-- persons: Japanese and Western names, 500 companies (Japanese with legal
-- forms, Western with Inc./Co., Ltd.), e-mail, direct line, mobile, the
-- company's main line
CREATE TABLE bench_person AS
SELECT p, c,
       CASE WHEN p % 5 = 0 THEN (ARRAY['John','Anna','Maria','David'])[1 + (p / 4) % 4] || ' ' || (ARRAY['Smith','Müller','García','Brown'])[1 + p % 4]
            ELSE (ARRAY['山田','田中','佐藤','鈴木','高橋','伊藤','渡辺','中村'])[1 + p % 8] || ' ' || (ARRAY['太郎','花子','一郎','美咲','翔太','陽菜','健','さくら'])[1 + (p / 8) % 8] END AS name,
       (ARRAY['taro','hanako','ichiro','misaki','shota','hina','ken','sakura'])[1 + (p / 8) % 8] || '.' ||
       (ARRAY['yamada','tanaka','sato','suzuki','takahashi','ito','watanabe','nakamura'])[1 + p % 8] || p || '@c' || c || '.example.jp' AS email,
       CASE WHEN c % 4 = 0 THEN 'Acme ' || c || ' Inc.'
            ELSE '株式会社' || (ARRAY['トヨタ','ソニー','日立','パナソニック','富士通','キヤノン','任天堂','三菱'])[1 + c % 8] || c END AS company,
       '03-' || substr((20000000 + p)::text, 1, 4) || '-' || substr((20000000 + p)::text, 5, 4) AS phone,
       '090-' || substr((30000000 + p)::text, 1, 4) || '-' || substr((30000000 + p)::text, 5, 4) AS mobile,
       '03-' || substr((50000000 + c)::text, 1, 4) || '-' || substr((50000000 + c)::text, 5, 4) AS main_line
  FROM (SELECT p, 1 + (p * 7) % 500 AS c FROM generate_series(0, $persons - 1) p) x;
CREATE UNIQUE INDEX ON bench_person (p);
-- the list: skewed towards some persons, written many ways, some rows
-- unusable, some with a business-card app id
CREATE TABLE bench_list AS
SELECT r.g AS id, 'expo'::text AS batch,
       CASE WHEN r.e < 0.03 THEN 'n/a'
            WHEN r.e < 0.7 THEN (ARRAY[x.email, upper(x.email), ' ' || x.email, 'mailto:' || x.email,
                                       translate(x.email, 'abcdefghijklmnopqrstuvwxyz.@', 'ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ．＠')])[1 + r.ev] END AS email,
       CASE WHEN r.n < 0.85 THEN (ARRAY[x.name, replace(x.name, ' ', ''), x.name || ' 様', upper(x.name)])[1 + r.nv] END AS name,
       CASE WHEN r.c < 0.8 THEN (ARRAY[x.company, replace(x.company, '株式会社', '(株)'), replace(x.company, '株式会社', '') || '株式会社',
                                      replace(x.company, ' Inc.', ' Co., Ltd.'), upper(x.company)])[1 + r.cv] END AS company,
       CASE WHEN r.ph < 0.5 THEN (ARRAY[x.phone, x.phone, x.mobile, x.main_line])[1 + r.pv] END AS phone,
       (ARRAY[NULL, 'exhibition', 'seminar'])[1 + r.s] AS source, NULL::text AS origin,
       NULL::text AS external_id,
       CASE WHEN r.sy < 0.1 THEN 'eight' END AS system, 'E' || x.p AS system_id,
       CASE WHEN r.a < 0.2 THEN jsonb_build_object('industry', (ARRAY['it','retail','auto'])[1 + r.s]) END AS attributes,
       'exhibition_card'::text AS kind, timestamptz '2025-03-01' + r.s * interval '1 day' AS occurred_at,
       'expo-2025'::text AS campaign, 'Japan IT Week'::text AS detail
  FROM (SELECT g, floor(power(random(), 1.5) * $persons)::int AS p, random() AS e, floor(random() * 5)::int AS ev,
               random() AS n, floor(random() * 4)::int AS nv, random() AS c, floor(random() * 5)::int AS cv,
               random() AS ph, floor(random() * 4)::int AS pv, floor(random() * 3)::int AS s,
               random() AS sy, random() AS a
          FROM generate_series(1, $rows) g) r
  JOIN bench_person x ON x.p = r.p;
CREATE TABLE bench_result (method text, id bigint, lead_id bigint, matched_on text);
-- the row-by-row import (leadmgmt.import_leads() before it was set-based)
DROP PROCEDURE IF EXISTS bench_import_rowwise();
CREATE PROCEDURE bench_import_rowwise()
LANGUAGE plpgsql AS \$\$
DECLARE
	r record;
	u record;
	target bigint;
	n integer := 0;
BEGIN
	FOR r IN SELECT * FROM leadmgmt.lead_import i WHERE i.imported_at IS NULL ORDER BY i.id LOOP
		target := NULL;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			target := leadmgmt.find_lead(r.system, r.system_id);
		END IF;
		IF target IS NOT NULL THEN
			SELECT target AS lead_id, true AS matched, 'system_id' AS matched_on INTO u;
		ELSIF leadmgmt.normalize_email(r.email) IS NULL AND leadmgmt.normalize_phone(r.phone, 'JP') IS NULL
		      AND (leadmgmt.normalize_company(r.company) IS NULL OR leadmgmt.normalize_name(r.name) IS NULL)
		      AND r.external_id IS NULL THEN
			UPDATE leadmgmt.lead_import i SET imported_at = now(),
			       error = 'nothing to match on: no usable e-mail, phone, company and name, or external id'
			 WHERE i.id = r.id;
			CONTINUE;
		ELSE
			SELECT * INTO u FROM leadmgmt.upsert_lead(r.email, r.name, r.company, r.phone, r.source,
			                                           r.origin, r.external_id, r.attributes);
		END IF;
		IF r.system IS NOT NULL AND r.system_id IS NOT NULL THEN
			PERFORM leadmgmt.link_external_id(u.lead_id, r.system, r.system_id);
		END IF;
		IF r.kind IS NOT NULL THEN
			INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, campaign, detail, channel)
			VALUES (u.lead_id, r.kind, COALESCE(r.occurred_at, now()), r.campaign, r.detail, 'import');
		END IF;
		UPDATE leadmgmt.lead_import i
		   SET lead_id = u.lead_id, matched = u.matched, matched_on = u.matched_on, imported_at = now()
		 WHERE i.id = r.id;
		n := n + 1;
		IF n % 500 = 0 THEN
			COMMIT;
		END IF;
	END LOOP;
END
\$\$;
SQL

# run <method> <statement> -> milliseconds
run() {
	psql -X -q -v ON_ERROR_STOP=1 -c "$setup_sql" >/dev/null
	ms=$(psql -X -q -v ON_ERROR_STOP=1 -c '\timing on' -c "$2" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
	psql -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO bench_result SELECT '$1', id, lead_id, matched_on FROM leadmgmt.lead_import" >/dev/null
	echo "$ms"
}
rowwise=$(run rowwise "CALL bench_import_rowwise()")
setbased=$(run setbased "SELECT * FROM leadmgmt.import_leads()")

psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
\echo what the set-based import did (the last run)
SELECT * FROM (SELECT count(*) AS rows, count(*) FILTER (WHERE error IS NOT NULL) AS rejected,
                      count(*) FILTER (WHERE NOT matched) AS created,
                      count(*) FILTER (WHERE matched) AS matched
                 FROM leadmgmt.lead_import) i,
              (SELECT count(*) AS leads_now FROM leadmgmt.lead) l;
\echo check: rows whose lead or match differs between the two ways (must be 0)
SELECT count(*) AS rows_compared,
       count(*) FILTER (WHERE a.lead_id IS DISTINCT FROM b.lead_id OR a.matched_on IS DISTINCT FROM b.matched_on) AS different
  FROM (SELECT * FROM bench_result WHERE method = 'rowwise') a
  FULL JOIN (SELECT * FROM bench_result WHERE method = 'setbased') b USING (id);
DROP TABLE bench_person, bench_list, bench_result;
DROP PROCEDURE bench_import_rowwise();
SQL
awk -v r="$rowwise" -v s="$setbased" -v n="$rows" 'BEGIN {
	printf "import of %d staged rows: row by row (upsert_lead per row) %.0f ms, set-based import_leads() %.0f ms, %.1fx faster, %.0f rows/s\n",
		n, r, s, r / s, n / (s / 1000) }'
