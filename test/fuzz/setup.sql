-- test/fuzz/setup.sql: the database that sqlsmith fuzzes (scripts/fuzz.sh).
--
-- The extension with the demo data set (demo/generate.sql: a year of leads,
-- activity and stage moves), a trained model, row-level security on, and
-- the login role :role (password :password) that sqlsmith connects as: an
-- ordinary role holding the four access roles of leadmgmt.grant_access(),
-- so it can do what admin, marketing, sales and reader may do, and no more.
--
-- Two things steer sqlsmith to the extension:
--   * sqlsmith takes the tables it queries from information_schema.tables,
--     which lists only what the role may use, and --exclude-catalog drops
--     pg_catalog and information_schema: so it queries leadmgmt's tables
--     and views;
--   * it takes the functions it calls from an unqualified "pg_proc", which
--     the role's search_path (sqlsmith, pg_catalog) resolves to the view
--     sqlsmith.pg_proc below: leadmgmt's functions and aggregates, the value
--     generators of schema sqlsmith, and a few dozen plain pg_catalog
--     functions, instead of all 3000 of pg_catalog.
-- sqlsmith's only non-NULL constants are integers 1..100 and booleans; the
-- generators turn such an integer into the values that break code: NaN and
-- infinities, the ends of the timestamp range, huge and negative intervals,
-- empty, NULL-holding, multi-dimensional and 33-element arrays, every funnel
-- mode and attribution model, real score states and damaged ones.
--
-- psql variables: leads (demo size), role, password, parallel (boolean).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
CREATE EXTENSION leadmgmt;

\o /dev/null
\ir ../../demo/generate.sql
SELECT name FROM leadmgmt.train_model('fuzz', attributes => '{industry,country}', min_level_leads => 1);
\o

CREATE ROLE fuzz_admin NOLOGIN;
CREATE ROLE fuzz_marketing NOLOGIN;
CREATE ROLE fuzz_sales NOLOGIN;
CREATE ROLE fuzz_reader NOLOGIN;
SELECT leadmgmt.grant_access('fuzz_admin', 'fuzz_marketing', 'fuzz_sales', 'fuzz_reader') \gset
CREATE ROLE :"role" LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE
	IN ROLE fuzz_admin, fuzz_marketing, fuzz_sales, fuzz_reader;
-- the role is in the sales role: with rls_by_owner on it sees its own leads
UPDATE leadmgmt.lead SET owner = :'role' WHERE id % 2 = 0;
SELECT leadmgmt.set_setting('rls_by_owner', 'on') \gset

CREATE SCHEMA sqlsmith;
GRANT USAGE ON SCHEMA sqlsmith TO :"role";
ALTER ROLE :"role" SET search_path = sqlsmith, pg_catalog;
-- with :parallel, parallel plans even for small tables, so that the
-- aggregates' combine, serialise and deserialise functions run too (about
-- three times slower: a query starts its workers)
\if :parallel
ALTER ROLE :"role" SET parallel_setup_cost = 0;
ALTER ROLE :"role" SET parallel_tuple_cost = 0;
ALTER ROLE :"role" SET min_parallel_table_scan_size = 0;
\endif

-- What sqlsmith reads of pg_proc, for the functions it may call.  Left out:
-- leadmgmt's functions without arguments (nothing to fuzz, and rescore(),
-- rebuild_keys() and snapshot_funnel() rewrite every lead on each call, so
-- that most calls would hit the 1 s statement timeout), and the generators'
-- helper pick().  sqlsmith never
-- writes the VARIADIC keyword, so a variadic function (window_funnel,
-- funnel_step_times) is listed instead with its array spread into 1, 2, 3,
-- 4 and 33 (one more than the most steps allowed) plain arguments, each
-- spelling under an oid of its own that only sqlsmith sees.
CREATE VIEW sqlsmith.pg_proc AS
SELECT p.oid, p.proname, p.pronamespace, p.prorettype, p.proretset, p.prokind,
       p.proargtypes::oid[] AS proargtypes
  FROM pg_catalog.pg_proc p
 WHERE p.provariadic = 0
   AND ((p.pronamespace = 'leadmgmt'::regnamespace
         AND p.pronargs > 0)
        OR (p.pronamespace = 'sqlsmith'::regnamespace AND p.proname <> 'pick')
        OR (p.pronamespace = 'pg_catalog'::regnamespace
            AND p.proname IN ('now', 'clock_timestamp', 'random', 'make_interval', 'justify_interval',
                              'date_trunc', 'to_timestamp', 'age', 'length', 'lower', 'upper',
                              'repeat', 'substr', 'replace', 'md5', 'left', 'chr', 'string_to_array',
                              'array_to_string', 'array_length', 'cardinality', 'to_char',
                              'jsonb_set', 'jsonb_object', 'jsonb_typeof', 'int8', 'int4', 'float8',
                              'abs', 'round', 'sqrt', 'power', 'decode', 'encode', 'sha256',
                              'count', 'sum', 'max', 'min', 'avg', 'bool_or', 'string_agg')))
UNION ALL
SELECT (p.oid::bigint + k::bigint * 100000000)::text::oid, p.proname, p.pronamespace, p.prorettype,
       p.proretset, p.prokind,
       (p.proargtypes::oid[])[0:p.pronargs - 2] || array_fill(p.provariadic, ARRAY[k])
  FROM pg_catalog.pg_proc p, unnest(ARRAY[1, 2, 3, 4, 33]) k
 WHERE p.provariadic <> 0 AND p.pronamespace = 'leadmgmt'::regnamespace;
GRANT SELECT ON sqlsmith.pg_proc TO :"role";

-- value generators: g(i) picks the (i mod n)-th interesting value
CREATE FUNCTION sqlsmith.pick(n integer, i integer) RETURNS integer
LANGUAGE sql IMMUTABLE RETURN 1 + ((i % n) + n) % n;

CREATE FUNCTION sqlsmith.ts(i integer) RETURNS timestamptz
LANGUAGE sql STABLE RETURN (ARRAY[
	'-infinity', 'infinity', '4714-11-24 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00',
	'1970-01-01 00:00:00+00', '2000-01-01 00:00:00+00', now()::text,
	(now() - interval '1 year')::text, (now() - interval '100 days')::text,
	(now() + interval '1 day')::text, (now() - interval '1 microsecond')::text,
	'2025-03-30 01:30:00+01', '1899-12-31 23:59:59+09'
	]::timestamptz[])[sqlsmith.pick(13, i)];

CREATE FUNCTION sqlsmith.tsa(i integer) RETURNS timestamptz[]
LANGUAGE sql STABLE RETURN (ARRAY[
	'{}', '{NULL}', ARRAY[sqlsmith.ts(i)]::text, ARRAY[sqlsmith.ts(i), sqlsmith.ts(i + 1)]::text,
	ARRAY[now(), now() - interval '1 day', now() - interval '30 days']::text,
	'{infinity,-infinity}', '{{2025-01-01,2025-01-02},{2025-01-03,2025-01-04}}'
	])[sqlsmith.pick(7, i)]::timestamptz[];

CREATE FUNCTION sqlsmith.iv(i integer) RETURNS interval
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'0', '1 microsecond', '-1 microsecond', '1 hour', '1 day', '7 days', '-7 days', '30 days',
	'1 mon', '1 year', '1 mon -30 days', '178000000 years', '-178000000 years',
	'2147483647 days 2562047788:00:54.775807', '-2147483648 days -2562047788:00:54.775807',
	'2147483647 mons', '0.5 seconds'
	]::interval[])[sqlsmith.pick(17, i)];

CREATE FUNCTION sqlsmith.f8(i integer) RETURNS float8
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'NaN', 'Infinity', '-Infinity', '0', '-0', '1', '-1', '0.5', '4', '100', '1e-300',
	'5e-324', '1e308', '-1e308', '1e15', '-3.5'
	]::float8[])[sqlsmith.pick(16, i)];

CREATE FUNCTION sqlsmith.f8a(i integer) RETURNS float8[]
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'{}', '{1}', '{NaN}', '{Infinity,-Infinity}', '{1,2,3}', '{NULL}', '{1,NULL,3}',
	'{{1,2},{3,4}}', '[0:2]={1,2,3}', array_fill(1.5::float8, ARRAY[200])::text,
	array_fill(1e308::float8, ARRAY[3])::text, '{0,0,0,0}', '{-1e308,1e-300}',
	array_fill(0.25::float8, ARRAY[1000])::text
	])[sqlsmith.pick(14, i)]::float8[];

CREATE FUNCTION sqlsmith.ba(i integer) RETURNS boolean[]
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'{}', '{t}', '{f}', '{t,f,t}', '{f,t,t}', '{NULL,t}', '{t,t,t,t,t}',
	array_fill(true, ARRAY[32])::text, array_fill(true, ARRAY[33])::text,
	array_fill(false, ARRAY[100])::text, '{{t,f},{f,t}}', '[5:6]={t,t}', '{NULL,NULL,NULL}'
	])[sqlsmith.pick(13, i)]::boolean[];

CREATE FUNCTION sqlsmith.tx(i integer) RETURNS text
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'', ' ', 'first_touch', 'last_touch', 'linear', 'u_shaped', 'w_shaped',
	'time_decay:7 days', 'time_decay:0', 'time_decay:-1 day', 'time_decay:1 microsecond',
	'time_decay:178000000 years', 'time_decay:', 'time_decay:nonsense',
	'strict_order', 'strict_deduplication,strict_increase', 'strict_once, allow_reentry',
	'strict_order,,bogus', 'strict_deduplication,strict_order,strict_increase,strict_once,allow_reentry',
	'inquiry', 'mql', 'sal', 'sgl', 'sql', 'won', 'lost', 'recycled', 'disqualified',
	'page_view', 'download', 'seminar_attend', 'purchase', 'email_bounce', 'unsubscribe',
	'mql_threshold', 'rls_by_owner', 'handoff_window', 'reporting_timezone', 'dormant_after',
	'1e308', 'NaN', '-Infinity', 'on', 'off', '7 days', 'Asia/Tokyo', 'Mars/Olympus',
	'taro@example.com', 'Taro.Yamada+x@Example.CO.JP', '@', 'a@b@c', '+81 3-1234-5678',
	'０３－１２３４－５６７８', 'JP', 'US', 'XX', 'jp', '株式会社サクラ精機', '(株)ミドリ商事',
	'ｶﾌﾞｼｷｶﾞｲｼｬ ｻｸﾗ', 'Acme Corp.', repeat('x', 100000), repeat('ア', 5000), repeat('a@', 1000),
	'e' || chr(769), chr(128512), E'\t\n', 'leadmgmt.lead', 'leadmgmt.activity', 'industry',
	'employees', 'web_form', 'inbound', 'outbound', 'email', 'phone', 'company', 'consent'
	])[sqlsmith.pick(75, i)];

CREATE FUNCTION sqlsmith.txa(i integer) RETURNS text[]
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'{}', '{industry}', '{industry,employees,country}', '{NULL}', '{""}', '{industry,industry}',
	'{nonexistent}', '{{industry},{country}}'
	])[sqlsmith.pick(8, i)]::text[];

CREATE FUNCTION sqlsmith.js(i integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'null', '{}', '[]', '1', '"x"', '{"industry": "it", "employees": 300, "country": "JP"}',
	'{"industry": "manufacturing", "employees": 5000, "country": "US"}', '{"employees": "many"}',
	'{"employees": 1e1000}', '{"employees": -1e-1000}', '{"industry": null}',
	'{"industry": ["manufacturing"]}', '{"a": {"b": {"c": [1, 2, {"d": true}]}}}',
	repeat('[', 500) || repeat(']', 500)
	])[sqlsmith.pick(14, i)]::jsonb;

-- lead ids: existing leads (also merged or hidden by RLS), and the edges
CREATE FUNCTION sqlsmith.id(i integer) RETURNS bigint
LANGUAGE sql STABLE RETURN CASE sqlsmith.pick(10, i)
	WHEN 1 THEN 0 WHEN 2 THEN -1 WHEN 3 THEN 9223372036854775807 WHEN 4 THEN -9223372036854775808
	ELSE (SELECT max(id) FROM leadmgmt.lead) * sqlsmith.pick(100, i) / 100 + 1 END;

CREATE FUNCTION sqlsmith.ida(i integer) RETURNS bigint[]
LANGUAGE sql STABLE RETURN (ARRAY[
	'{}', '{NULL}', ARRAY[sqlsmith.id(i)]::text, ARRAY[sqlsmith.id(i), sqlsmith.id(i + 7), sqlsmith.id(i)]::text,
	'{0,-1}', '{{1,2},{3,4}}'
	])[sqlsmith.pick(6, i)]::bigint[];

CREATE FUNCTION sqlsmith.ia(i integer) RETURNS integer[]
LANGUAGE sql IMMUTABLE RETURN (ARRAY[
	'{}', '{1}', '{NULL}', '{0,-1,2147483647}', '{-2147483648}', '{{1,2},{3,4}}'
	])[sqlsmith.pick(6, i)]::integer[];

-- score states: real ones, cut short, with a byte changed, and junk
CREATE FUNCTION sqlsmith.by(i integer) RETURNS bytea
LANGUAGE sql STABLE RETURN CASE sqlsmith.pick(6, i)
	WHEN 1 THEN ''::bytea
	WHEN 2 THEN decode(md5(i::text), 'hex')
	WHEN 3 THEN (SELECT state FROM leadmgmt.score_state ORDER BY lead_id OFFSET i LIMIT 1)
	WHEN 4 THEN (SELECT substr(state, 1, 8 + i % 24) FROM leadmgmt.score_state ORDER BY lead_id OFFSET i LIMIT 1)
	WHEN 5 THEN (SELECT set_byte(state, i % length(state), i) FROM leadmgmt.score_state ORDER BY lead_id OFFSET i LIMIT 1)
	ELSE decode('0100ffffffff0000', 'hex') END;

CREATE FUNCTION sqlsmith.rel(i integer) RETURNS regclass
LANGUAGE sql STABLE RETURN (ARRAY[
	'leadmgmt.lead', 'leadmgmt.activity', 'leadmgmt.stage_history', 'leadmgmt.funnel', 'pg_catalog.pg_class'
	]::regclass[])[sqlsmith.pick(5, i)];

GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sqlsmith TO :"role";
ANALYZE;
