-- covers: hardening audit of the installed extension (pinned search_path, SECURITY DEFINER, PUBLIC EXECUTE, CREATE on the schema, RLS) and of the install script text (no CREATE OR REPLACE / IF NOT EXISTS)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- every query below lists offenders: an empty result is a pass

-- functions: search_path pinned, unless C / internal (they resolve no names
-- through search_path); aggregates are checked through their support functions
SELECT p.oid::regprocedure AS unpinned
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND p.prokind IN ('f', 'p', 'w')
   AND l.lanname NOT IN ('c', 'internal')
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                    WHERE c = 'search_path=pg_catalog, pg_temp')
 ORDER BY p.oid::regprocedure::text;

-- SECURITY DEFINER: pinned and not executable by PUBLIC; the one exception
-- is the read-only row-level security helper, which every role that reads
-- leadmgmt.lead runs through the policy
SELECT p.oid::regprocedure AS definer,
       p.proconfig, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND p.prosecdef
   AND (has_function_privilege('public', p.oid, 'EXECUTE')
        AND p.oid <> 'leadmgmt.rls_restricted(name)'::regprocedure
        OR NOT 'search_path=pg_catalog, pg_temp' = ANY (coalesce(p.proconfig, '{}')));
-- the definer functions there are, so a new one gets looked at
SELECT p.oid::regprocedure AS definer, p.provolatile,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND p.prosecdef ORDER BY p.oid::regprocedure::text;

-- admin functions are not executable by PUBLIC
SELECT p.oid::regprocedure AS public_admin_function FROM pg_proc p
 WHERE p.pronamespace = 'leadmgmt'::regnamespace
   AND p.proname IN ('grant_access', 'rescore', 'rescore_leads', 'forget_lead', 'rebuild_keys')
   AND has_function_privilege('public', p.oid, 'EXECUTE');

-- nobody but the owner may create in the schema; PUBLIC has no table privilege
SELECT r.rolname AS may_create
  FROM pg_roles r, pg_namespace n
 WHERE n.nspname = 'leadmgmt' AND r.oid <> n.nspowner AND NOT r.rolsuper
   AND has_schema_privilege(r.oid, n.oid, 'CREATE');
SELECT g.privilege_type AS public_schema_privilege
  FROM pg_namespace n, aclexplode(n.nspacl) g WHERE n.nspname = 'leadmgmt' AND g.grantee = 0;
SELECT c.relname AS public_table_privilege, g.privilege_type
  FROM pg_class c, aclexplode(c.relacl) g
 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND g.grantee = 0;

-- every object belongs to the extension and has its owner
SELECT c.oid::regclass AS foreign_owner
  FROM pg_class c, pg_namespace n
 WHERE c.relnamespace = n.oid AND n.nspname = 'leadmgmt' AND c.relowner <> n.nspowner;

-- row-level security on lead: enabled, not forced (the owner's bookkeeping
-- bypasses it), with the owner policy
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
       (SELECT string_agg(p.polname, ', ') FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
  FROM pg_class c
 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND (c.relrowsecurity OR c.oid = 'leadmgmt.lead'::regclass);

-- the views are security_invoker
SELECT c.relname AS not_security_invoker
  FROM pg_class c
 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'v'
   AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false);

-- the install script text: no CREATE OR REPLACE, no IF NOT EXISTS
-- (CVE-2022-2625), comments included; read from where the server loads it:
-- the first of Debian's extension_destdir (before 18) and the directories of
-- extension_control_path (18; $system, the only one before) that holds the
-- control file
CREATE TEMP TABLE install_script AS
	WITH share AS (SELECT c.setting AS dir FROM pg_config c WHERE c.name = 'SHAREDIR'),
	candidate AS (
		SELECT 0::bigint AS pos, current_setting('extension_destdir', true) || share.dir AS dir
		  FROM share
		 WHERE coalesce(current_setting('extension_destdir', true), '') <> ''
		UNION ALL
		SELECT p.pos, replace(p.dir, '$system', share.dir)
		  FROM share, regexp_split_to_table(coalesce(current_setting('extension_control_path', true), '$system'), ':')
		       WITH ORDINALITY AS p(dir, pos)),
	found AS (
		SELECT c.dir || '/extension/' AS dir
		  FROM candidate c
		 WHERE (pg_stat_file(c.dir || '/extension/leadmgmt.control', true)).size IS NOT NULL
		 ORDER BY c.pos LIMIT 1)
	SELECT l.n, l.text
	  FROM found, regexp_split_to_table(pg_read_file(
	           found.dir || 'leadmgmt--'
	           || (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'leadmgmt')
	           || '.sql'), E'\n') WITH ORDINALITY AS l(text, n);
SELECT count(*) > 1000 AS script_read,
       bool_or(text LIKE '\\echo Use "CREATE EXTENSION leadmgmt"%') AS has_guard
  FROM install_script;
SELECT n AS line, text AS unsafe
  FROM install_script
 WHERE text ~* 'create\s+or\s+replace|\mif\s+not\s+exists\M';
