-- covers: CREATE EXTENSION, the object list, schema ownership guard, non-UTF-8 refusal, DROP and CREATE again
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- control file properties
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'leadmgmt';

-- every object of the extension, so an accidental addition or loss shows up;
-- not the implicit row type of a table or view nor the array type of a type,
-- which are members too since PostgreSQL 17
SELECT pg_describe_object(d.classid, d.objid, 0) AS object
  FROM pg_depend d
  LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'leadmgmt')
   AND d.deptype = 'e'
   AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)
   AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
 ORDER BY 1;

-- every public table, view and function has a comment
SELECT c.oid::regclass::text AS missing_comment
  FROM pg_class c
 WHERE c.relnamespace = 'leadmgmt'::regnamespace
   AND c.relkind IN ('r', 'v', 'p')
   AND obj_description(c.oid, 'pg_class') IS NULL
UNION ALL
SELECT (c.oid::regclass)::text || '.' || a.attname
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relnamespace = 'leadmgmt'::regnamespace
   AND c.relkind IN ('r', 'v', 'p')
   AND col_description(c.oid, a.attnum) IS NULL
UNION ALL
SELECT p.oid::regprocedure::text
  FROM pg_proc p
 WHERE p.pronamespace = 'leadmgmt'::regnamespace
   AND obj_description(p.oid, 'pg_proc') IS NULL
 ORDER BY 1;

-- user data is dumped, built-in vocabulary is not
SELECT c.relname, x.cond
  FROM pg_extension e,
       unnest(e.extconfig, e.extcondition) AS x(relid, cond)
  JOIN pg_class c ON c.oid = x.relid
 WHERE e.extname = 'leadmgmt'
 ORDER BY 1;

-- nobody but the owner may create objects in the schema
SELECT has_schema_privilege('public', 'leadmgmt', 'CREATE') AS public_can_create,
       has_schema_privilege('public', 'leadmgmt', 'USAGE') AS public_has_usage;

-- the vocabulary as shipped
SELECT name, rank, category, is_entry, next_stage FROM leadmgmt.stage ORDER BY rank, name;
SELECT count(*) AS builtin_transitions FROM leadmgmt.stage_transition WHERE builtin;
SELECT string_agg(name, ', ' ORDER BY name) AS builtin_kinds FROM leadmgmt.activity_kind WHERE builtin;

-- DROP and CREATE again leave nothing behind and work from scratch
INSERT INTO leadmgmt.lead (email) VALUES ('again@example.com');
DROP EXTENSION leadmgmt;
-- PostgreSQL leaves a control-file schema behind, empty (doc/operations.md)
SELECT count(*) AS objects_left FROM pg_class WHERE relnamespace = 'leadmgmt'::regnamespace;
DROP SCHEMA leadmgmt;
CREATE EXTENSION leadmgmt;
SELECT count(*) AS leads_after_recreate FROM leadmgmt.lead;
INSERT INTO leadmgmt.lead (email) VALUES ('again@example.com') RETURNING id, stage;

-- the guards below raise in the install script, and what CONTEXT says of
-- that differs by version (18 adds the script line): messages only
\set SHOW_CONTEXT never

-- a pre-existing schema owned by another role is refused
DROP EXTENSION leadmgmt;
DROP SCHEMA leadmgmt;
CREATE ROLE leadmgmt_squatter;
CREATE SCHEMA leadmgmt AUTHORIZATION leadmgmt_squatter;
CREATE EXTENSION leadmgmt;
DROP SCHEMA leadmgmt;
DROP ROLE leadmgmt_squatter;

-- a pre-existing schema of our own is fine
CREATE SCHEMA leadmgmt;
CREATE EXTENSION leadmgmt;
SELECT count(*) AS stages FROM leadmgmt.stage;
DROP EXTENSION leadmgmt;
DROP SCHEMA leadmgmt;

-- a non-UTF-8 database is refused with a clear message
CREATE DATABASE leadmgmt_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
\c leadmgmt_latin1
CREATE EXTENSION leadmgmt;
\c contrib_regression
DROP DATABASE leadmgmt_latin1;
\set SHOW_CONTEXT errors

CREATE EXTENSION leadmgmt;
