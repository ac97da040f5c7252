#!/bin/sh
# The sales loop (doc/integration.md), in one run:
#
#  1. record_opportunity() for SALES_MESSAGES CRM messages (default 100 000:
#     60 % new open deals, found half by lead id and half by e-mail, 40 %
#     of them won later), each moving the lead's stage, sent as a connector
#     does, in transactions of SALES_BATCH messages (default 100), against
#     the plain-SQL
#     way of storing the same messages: an INSERT ... ON CONFLICT (crm_id)
#     DO UPDATE per message (no identity resolution, no stage move, no feed)
#     and the same upsert set-based in one statement.
#  2. read_changes() throughput: batches of 1 000 read and acknowledged, each
#     in its own transaction, while 4 pgbench sessions write leads and
#     contact changes, from a backlog of SALES_BACKLOG changes (default
#     200 000); against the naive outbox reader (by id, which can skip late
#     commits) under the same load.
#
# Runs inside a throwaway cluster (bench/run.sh).  ROUNDS (default 2);
# SALES_PARTS (default "record feed") picks the parts.
set -eu
messages=${SALES_MESSAGES:-100000}
backlog=${SALES_BACKLOG:-200000}
rounds=${ROUNDS:-2}
batch=${SALES_BATCH:-100}
parts=${SALES_PARTS:-record feed}
PGBENCH=${PGBIN:+$PGBIN/}pgbench
work=$(mktemp -d /tmp/leadmgmt-bench-sales.XXXXXX)
trap 'rm -rf "$work"' EXIT
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
ms() { q -c '\timing on' "$@" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
# ms_script DB SQL: run a script (DO blocks may COMMIT), time of its last statement
ms_script() { printf '\\timing on\n%s\n' "$2" | q -d "$1" -f - | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }

deals=$((messages * 6 / 10))
won=$((messages - deals))

setup_sql="
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
DROP TABLE IF EXISTS public.msg, public.plain_opportunity;
CREATE EXTENSION leadmgmt;
INSERT INTO leadmgmt.lead (id, email, created_at)
SELECT g, 'lead' || g || '@example.jp', timestamptz '2025-01-01' FROM generate_series(1, $deals) g;
SELECT setval('leadmgmt.lead_id_seq', $deals);
-- every lead accepted by sales, so that a deal can move it to sql
ALTER TABLE leadmgmt.stage_history DISABLE TRIGGER change_stage_entered;
DO \$\$ BEGIN
	PERFORM leadmgmt.set_stage(g, 'mql', NULL, '2025-01-02') FROM generate_series(1, $deals) g;
	PERFORM leadmgmt.set_stage(g, 'sal', NULL, '2025-01-03') FROM generate_series(1, $deals) g;
END \$\$;
ALTER TABLE leadmgmt.stage_history ENABLE TRIGGER change_stage_entered;
TRUNCATE leadmgmt.change;
-- the messages: new deals, then some of them won
CREATE TABLE public.msg AS
SELECT n, 'D' || g AS crm_id, CASE WHEN g % 2 = 0 THEN g END AS lead_id,
       CASE WHEN g % 2 = 1 THEN 'LEAD' || g || '@Example.jp' END AS email,
       1000 + g % 5000 AS amount, 'JPY' AS currency, 'open' AS status,
       timestamptz '2025-02-01' + g * interval '1 second' AS created_at, NULL::timestamptz AS closed_at,
       timestamptz '2025-02-01' + g * interval '1 second' AS crm_updated_at
  FROM generate_series(1, $deals) g, LATERAL (SELECT g AS n) x
UNION ALL
SELECT $deals + g, 'D' || g, NULL, NULL, 1000 + g % 5000, 'JPY', 'won', NULL,
       timestamptz '2025-03-01' + g * interval '1 second', timestamptz '2025-03-01' + g * interval '1 second'
  FROM generate_series(1, $won) g;
CREATE TABLE public.plain_opportunity (LIKE leadmgmt.opportunity INCLUDING DEFAULTS);
ALTER TABLE public.plain_opportunity ALTER COLUMN id SET DEFAULT nextval('leadmgmt.opportunity_id_seq');
ALTER TABLE public.plain_opportunity ADD UNIQUE (crm_id);
ANALYZE;
CHECKPOINT;"


echo "setup: $deals leads in sal, $messages messages ($deals new open deals, $won won later)"
q -c "$setup_sql" >/dev/null

if echo "$parts" | grep -qw record; then
# The stage moves of a round cannot be undone (history is append-only), so
# each round of record_opportunity runs on a fresh copy of the database.
q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS sales_round" >/dev/null
db=$(q -At -c "SELECT current_database()")

record_sql="DO \$\$
DECLARE m record; i integer := 0;
BEGIN
	FOR m IN SELECT * FROM public.msg ORDER BY n LOOP
		PERFORM leadmgmt.record_opportunity(m.crm_id, lead_id => m.lead_id, email => m.email, amount => m.amount,
		        currency => m.currency, status => m.status, created_at => m.created_at, closed_at => m.closed_at,
		        crm_updated_at => m.crm_updated_at);
		i := i + 1;
		IF i % $batch = 0 THEN COMMIT; END IF;
	END LOOP;
END \$\$;"
plain_each_sql="CREATE FUNCTION pg_temp.upsert(m public.msg) RETURNS void LANGUAGE sql AS \$\$
	INSERT INTO public.plain_opportunity AS o (lead_id, crm_id, amount, currency, status, created_at, closed_at, crm_updated_at)
	VALUES (coalesce(m.lead_id, (SELECT l.id FROM leadmgmt.lead l WHERE l.email_key = leadmgmt.normalize_email(m.email) AND l.merged_into IS NULL),
	                 (SELECT p.lead_id FROM public.plain_opportunity p WHERE p.crm_id = m.crm_id)), m.crm_id, m.amount, m.currency,
	        m.status, coalesce(m.created_at, now()), m.closed_at, m.crm_updated_at)
	ON CONFLICT (crm_id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status,
	       closed_at = EXCLUDED.closed_at, crm_updated_at = EXCLUDED.crm_updated_at
	 WHERE o.crm_updated_at IS NULL OR o.crm_updated_at <= EXCLUDED.crm_updated_at \$\$;
DO \$\$
DECLARE m public.msg; i integer := 0;
BEGIN
	FOR m IN SELECT * FROM public.msg ORDER BY n LOOP
		PERFORM pg_temp.upsert(m);
		i := i + 1;
		IF i % $batch = 0 THEN COMMIT; END IF;
	END LOOP;
END \$\$;"
plain_set_sql="INSERT INTO public.plain_opportunity AS o (lead_id, crm_id, amount, currency, status, created_at, closed_at, crm_updated_at)
SELECT DISTINCT ON (m.crm_id) coalesce(f.lead_id, (SELECT l.id FROM leadmgmt.lead l WHERE l.email_key = leadmgmt.normalize_email(f.email) AND l.merged_into IS NULL)),
       m.crm_id, m.amount, m.currency, m.status, f.created_at, m.closed_at, m.crm_updated_at
  FROM public.msg m JOIN public.msg f ON f.crm_id = m.crm_id AND f.status = 'open'
 ORDER BY m.crm_id, m.crm_updated_at DESC
ON CONFLICT (crm_id) DO UPDATE SET amount = EXCLUDED.amount, status = EXCLUDED.status,
       closed_at = EXCLUDED.closed_at, crm_updated_at = EXCLUDED.crm_updated_at;"

i=0
best_rec=""; best_each=""; best_set=""
while [ $i -lt "$rounds" ]; do
	q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS sales_round" \
	  -c "CREATE DATABASE sales_round TEMPLATE \"$db\"" >/dev/null
	rec=$(ms_script sales_round "$record_sql")
	check=$(q -At -d sales_round -c "SELECT count(*) || ' deals, ' || count(*) FILTER (WHERE status = 'won') || ' won, '
		|| (SELECT count(*) FROM leadmgmt.lead WHERE stage = 'won') || ' leads won, '
		|| (SELECT count(*) FROM leadmgmt.change) || ' changes' FROM leadmgmt.opportunity")
	q -d sales_round -c "TRUNCATE public.plain_opportunity" >/dev/null
	each=$(ms_script sales_round "$plain_each_sql")
	q -d sales_round -c "TRUNCATE public.plain_opportunity" >/dev/null
	set=$(ms -d sales_round -c "$plain_set_sql")
	echo "round $((i + 1)): record_opportunity ${rec} ms ($check); plain upsert per message ${each} ms; plain set-based upsert ${set} ms"
	best_rec=$(printf '%s\n%s\n' "$rec" "${best_rec:-$rec}" | sort -n | head -1)
	best_each=$(printf '%s\n%s\n' "$each" "${best_each:-$each}" | sort -n | head -1)
	best_set=$(printf '%s\n%s\n' "$set" "${best_set:-$set}" | sort -n | head -1)
	i=$((i + 1))
done
q -c "DROP DATABASE sales_round" >/dev/null
awk -v r="$best_rec" -v e="$best_each" -v s="$best_set" -v n="$messages" -v b="$batch" 'BEGIN {
	printf "record_opportunity: %d messages in %.1f s (%.0f messages/s, transactions of %d); %.2fx the plain per-message upsert (%.1f s), %.2fx the set-based upsert (%.1f s)\n",
	       n, r / 1000, n / (r / 1000), b, r / e, e / 1000, r / s, s / 1000 }'

fi

# --- 2. read_changes under write load -----------------------------------------
cat > "$work/writer.sql" <<'SQL'
\set id random(1, 1000000000)
INSERT INTO leadmgmt.lead (email) SELECT 'w' || :id || '-' || g || '@example.jp' FROM generate_series(1, 5) g;
UPDATE leadmgmt.lead SET phone = :id::text WHERE id = (SELECT max(id) FROM leadmgmt.lead) - 7;
SQL

prefill_sql="
SET client_min_messages = warning;
DELETE FROM leadmgmt.change_consumer;
TRUNCATE leadmgmt.change;
INSERT INTO leadmgmt.change_consumer (name) VALUES ('bench');
DO \$\$ BEGIN
	FOR i IN 1 .. 20 LOOP
		INSERT INTO leadmgmt.lead (email) SELECT 'p' || i || '-' || g || '@example.jp' FROM generate_series(1, $backlog / 20) g;
		COMMIT;
	END LOOP;
END \$\$;
VACUUM ANALYZE leadmgmt.change;"

# feed: read_changes + ack_changes per batch, each its own transaction
feed_reader="
DO \$\$
DECLARE
	got bigint := 0; n bigint; last bigint; t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		SELECT count(*), max(position) INTO n, last FROM leadmgmt.read_changes('bench', 1000);
		EXIT WHEN n = 0;
		PERFORM leadmgmt.ack_changes('bench', last);
		COMMIT;
		got := got + n;
		EXIT WHEN got >= $backlog;
	END LOOP;
	RAISE NOTICE 'read % changes in % ms', got, round(extract(epoch FROM clock_timestamp() - t0) * 1000);
END \$\$;"
# naive: by id, cursor in a table, delete what was read (can skip late commits)
naive_reader="
CREATE TABLE IF NOT EXISTS public.naive_cursor (last bigint);
TRUNCATE public.naive_cursor; INSERT INTO public.naive_cursor VALUES (0);
DO \$\$
DECLARE
	got bigint := 0; n bigint; v_last bigint; t0 timestamptz := clock_timestamp();
BEGIN
	LOOP
		SELECT count(*), max(c.id) INTO n, v_last
		  FROM (SELECT c.id, c.kind, c.lead_id, c.payload FROM leadmgmt.change c
		         WHERE c.id > (SELECT k.last FROM public.naive_cursor k) ORDER BY c.id LIMIT 1000) c;
		EXIT WHEN n = 0;
		UPDATE public.naive_cursor SET last = v_last;
		DELETE FROM leadmgmt.change c WHERE c.id <= v_last;
		COMMIT;
		got := got + n;
		EXIT WHEN got >= $backlog;
	END LOOP;
	RAISE NOTICE 'read % changes in % ms', got, round(extract(epoch FROM clock_timestamp() - t0) * 1000);
END \$\$;"

read_under_load() { # read_under_load "<reader sql>" -> "<changes> <ms>"
	printf '%s\n' "$prefill_sql" | q -f - >/dev/null
	"$PGBENCH" -n -c 4 -j 4 -T 600 -f "$work/writer.sql" > "$work/pgbench.log" 2>&1 &
	wpid=$!
	sleep 1
	out=$(printf '%s\n' "$1" | q -f - 2>&1 | sed -n 's/.*read \([0-9]*\) changes in \([0-9]*\) ms.*/\1 \2/p')
	kill "$wpid" 2>/dev/null || true
	wait "$wpid" 2>/dev/null || true
	echo "$out"
}

if echo "$parts" | grep -qw feed; then
i=0
best_feed=""; best_naive=""
while [ $i -lt "$rounds" ]; do
	set -- $(read_under_load "$feed_reader"); feed_n=$1; feed_ms=$2
	set -- $(read_under_load "$naive_reader"); naive_n=$1; naive_ms=$2
	feed_rate=$(awk -v n="$feed_n" -v t="$feed_ms" 'BEGIN { printf "%.0f", n / (t / 1000) }')
	naive_rate=$(awk -v n="$naive_n" -v t="$naive_ms" 'BEGIN { printf "%.0f", n / (t / 1000) }')
	echo "round $((i + 1)): read_changes ${feed_n} changes in ${feed_ms} ms (${feed_rate}/s); naive by-id reader ${naive_n} in ${naive_ms} ms (${naive_rate}/s); 4 writers"
	best_feed=$(printf '%s\n%s\n' "$feed_rate" "${best_feed:-$feed_rate}" | sort -n | tail -1)
	best_naive=$(printf '%s\n%s\n' "$naive_rate" "${best_naive:-$naive_rate}" | sort -n | tail -1)
	i=$((i + 1))
done
awk -v f="$best_feed" -v n="$best_naive" 'BEGIN {
	printf "read_changes: %d changes/s in batches of 1000 while 4 sessions write; %.2fx the naive by-id reader (%d/s)\n", f, f / n, n }'
fi
