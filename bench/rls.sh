#!/bin/sh
# Row-level security costs once per query: each view that calls per-row
# functions, read by the owner, by a login role of the reader level, and by
# a sales rep restricted by rls_by_owner, on the demo data (3,000 leads;
# RLS_LEADS to change).  The owner bypasses row-level security, so the
# owner's time is the floor; the reader's should be within 1.2x of it.
# Each figure is the median of RLS_RUNS runs (default 7), in ms.
set -eu
leads=${RLS_LEADS:-3000}
runs=${RLS_RUNS:-7}
TOP=$(cd "$(dirname "$0")/.." && pwd)
psql -X -q -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
DROP ROLE IF EXISTS rb_admin, rb_marketing, rb_sales, rb_reader, rb_tool, rb_rep;
CREATE EXTENSION leadmgmt;
\set leads $leads
\o /dev/null
\i $TOP/demo/generate.sql
\o
CREATE ROLE rb_admin NOLOGIN;
CREATE ROLE rb_marketing NOLOGIN;
CREATE ROLE rb_sales NOLOGIN;
CREATE ROLE rb_reader NOLOGIN;
SELECT leadmgmt.grant_access('rb_admin', 'rb_marketing', 'rb_sales', 'rb_reader') \g /dev/null
CREATE ROLE rb_tool LOGIN IN ROLE rb_reader;
CREATE ROLE rb_rep LOGIN IN ROLE rb_sales;
-- the rep owns a third of the leads
UPDATE leadmgmt.lead SET owner = 'rb_rep' WHERE id % 3 = 0;
VACUUM ANALYZE;
SELECT count(*) AS leads FROM leadmgmt.lead;
SET jit = off;
-- median wall time of q over $runs runs, as role who
CREATE FUNCTION pg_temp.timed(who text, q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz; n bigint; ms float8[] := '{}';
BEGIN
	IF who IS NOT NULL THEN EXECUTE format('SET ROLE %I', who); END IF;
	EXECUTE 'SELECT count(*) FROM (' || q || ') q' INTO n;	-- warm
	FOR i IN 1 .. $runs LOOP
		t0 := clock_timestamp();
		EXECUTE 'SELECT count(*) FROM (' || q || ') q' INTO n;
		ms := ms || extract(epoch FROM clock_timestamp() - t0)::float8 * 1000;
	END LOOP;
	RESET ROLE;
	RETURN (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(ms) x);
END \$\$;
CREATE TEMP TABLE v (name text);
INSERT INTO v VALUES ('sales_queue'), ('reengaged'), ('stale_leads'), ('duplicate_candidates'),
	('score_component'), ('score_award'), ('campaign_attribution'), ('funnel'), ('funnel_by_source'),
	('funnel_cohort'), ('stage_velocity'), ('consent_current');
SELECT leadmgmt.set_setting('rls_by_owner', 'off') \g /dev/null
CREATE TEMP TABLE off_times AS
SELECT name, pg_temp.timed(NULL, 'SELECT * FROM leadmgmt.' || name) AS owner_ms,
       pg_temp.timed('rb_tool', 'SELECT * FROM leadmgmt.' || name) AS reader_ms
  FROM v;
SELECT leadmgmt.set_setting('rls_by_owner', 'on') \g /dev/null
CREATE TEMP TABLE on_times AS
SELECT name, pg_temp.timed(NULL, 'SELECT * FROM leadmgmt.' || name) AS owner_ms,
       pg_temp.timed('rb_tool', 'SELECT * FROM leadmgmt.' || name) AS reader_ms,
       pg_temp.timed('rb_rep', 'SELECT * FROM leadmgmt.' || name) AS rep_ms
  FROM v;
SELECT leadmgmt.set_setting('rls_by_owner', 'off') \g /dev/null
\echo median ms over $runs runs; ratio = reader (or restricted rep) / owner
SELECT f.name AS view,
       round(f.owner_ms::numeric, 1) AS owner_off, round(f.reader_ms::numeric, 1) AS reader_off,
       round((f.reader_ms / f.owner_ms)::numeric, 2) AS "reader/owner off",
       round(o.owner_ms::numeric, 1) AS owner_on, round(o.reader_ms::numeric, 1) AS reader_on,
       round(o.rep_ms::numeric, 1) AS rep_on,
       round((o.reader_ms / o.owner_ms)::numeric, 2) AS "reader/owner on",
       round((o.rep_ms / o.owner_ms)::numeric, 2) AS "rep/owner on"
  FROM off_times f JOIN on_times o USING (name) ORDER BY 1;
SET client_min_messages = warning;
DROP OWNED BY rb_admin, rb_marketing, rb_sales, rb_reader, rb_tool, rb_rep;
DROP ROLE rb_admin, rb_marketing, rb_sales, rb_reader, rb_tool, rb_rep;
SQL
