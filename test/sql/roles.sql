-- covers: grant_access() (who may call it, the privilege matrix of the admin, marketing, sales and reader roles, idempotence, re-granting), row-level security by owner switched by rls_by_owner
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- roles are cluster-wide: unique names, left-overs of an aborted run removed
SET client_min_messages = warning;
DROP ROLE IF EXISTS lm_test_rep1, lm_test_rep2, lm_test_anna, lm_test_alice, lm_test_rita,
	lm_test_nobody, lm_test_admin, lm_test_marketing, lm_test_sales, lm_test_reader, lm_test_reader2;
RESET client_min_messages;
CREATE ROLE lm_test_admin NOLOGIN;
CREATE ROLE lm_test_marketing NOLOGIN;
CREATE ROLE lm_test_sales NOLOGIN;
CREATE ROLE lm_test_reader NOLOGIN;
CREATE ROLE lm_test_reader2 NOLOGIN;
CREATE ROLE lm_test_alice IN ROLE lm_test_admin;
CREATE ROLE lm_test_anna IN ROLE lm_test_marketing;
CREATE ROLE lm_test_rep1 IN ROLE lm_test_sales;
CREATE ROLE lm_test_rep2 IN ROLE lm_test_sales;
CREATE ROLE lm_test_rita IN ROLE lm_test_reader;
CREATE ROLE lm_test_nobody;

-- only the owner or a superuser may grant; arguments are checked
SET ROLE lm_test_alice;
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader');
RESET ROLE;
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', NULL, 'lm_test_reader');
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', '-', 'lm_test_reader');
-- the owner of the extension may not be the admin role; the message names
-- the owner, whose name depends on the installation: shown as SUPERUSER
DO $$
DECLARE
	state text;
	msg text;
	hint text;
BEGIN
	PERFORM leadmgmt.grant_access(CURRENT_USER::regrole, 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RAISE EXCEPTION USING ERRCODE = state, HINT = hint,
		MESSAGE = replace(msg, format('role "%s"', current_user), 'role "SUPERUSER"');
END
$$;
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader');
SELECT kind, role FROM leadmgmt.access_role ORDER BY kind;

-- the whole grant set, to show that a second call changes nothing
CREATE TEMP TABLE grants_before AS
	SELECT c.relname::text AS object, g.grantee::regrole::text AS grantee, g.privilege_type
	  FROM pg_class c, aclexplode(c.relacl) g
	 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND g.grantee <> c.relowner
	UNION ALL
	SELECT c.relname || '.' || a.attname, g.grantee::regrole::text, g.privilege_type
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) g
	 WHERE c.relnamespace = 'leadmgmt'::regnamespace
	UNION ALL
	SELECT p.oid::regprocedure::text, g.grantee::regrole::text, g.privilege_type
	  FROM pg_proc p, aclexplode(p.proacl) g
	 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND g.grantee <> p.proowner;
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader');
CREATE TEMP TABLE grants_after AS
	SELECT c.relname::text AS object, g.grantee::regrole::text AS grantee, g.privilege_type
	  FROM pg_class c, aclexplode(c.relacl) g
	 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND g.grantee <> c.relowner
	UNION ALL
	SELECT c.relname || '.' || a.attname, g.grantee::regrole::text, g.privilege_type
	  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid, aclexplode(a.attacl) g
	 WHERE c.relnamespace = 'leadmgmt'::regnamespace
	UNION ALL
	SELECT p.oid::regprocedure::text, g.grantee::regrole::text, g.privilege_type
	  FROM pg_proc p, aclexplode(p.proacl) g
	 WHERE p.pronamespace = 'leadmgmt'::regnamespace AND g.grantee <> p.proowner;
SELECT count(*) AS grants,
       (SELECT count(*) FROM (TABLE grants_before EXCEPT ALL TABLE grants_after) x) AS lost,
       (SELECT count(*) FROM (TABLE grants_after EXCEPT ALL TABLE grants_before) x) AS added
  FROM grants_after;
-- nobody but the owner may write the history, or create in the schema
SELECT object, grantee, privilege_type FROM grants_after
 WHERE object LIKE 'stage_history%' AND privilege_type <> 'SELECT'
    OR object = 'score_state' AND privilege_type <> 'SELECT';
SELECT r.rolname FROM pg_roles r
 WHERE r.rolname LIKE 'lm_test_%' AND has_schema_privilege(r.oid, 'leadmgmt', 'CREATE');
-- the reader reads the views, and (security_invoker) the columns they read
SELECT object, privilege_type FROM grants_after
 WHERE grantee = 'lm_test_reader' AND object NOT LIKE '%.%' AND object NOT LIKE '%(%'
 ORDER BY object;
SELECT split_part(object, '.', 1) AS "table", string_agg(split_part(object, '.', 2), ', ' ORDER BY object) AS columns
  FROM grants_after
 WHERE grantee = 'lm_test_reader' AND object LIKE '%.%' AND object NOT LIKE '%(%'
 GROUP BY 1 ORDER BY 1;

-- data: lead 1 owned by rep1, lead 2 by rep2, lead 3 by nobody
SELECT lead_id FROM leadmgmt.upsert_lead(email => 'taro@example.com', name => 'Taro', company => 'Acme');
SELECT lead_id FROM leadmgmt.upsert_lead(email => 'hana@example.com', name => 'Hana', company => 'Beta');
SELECT lead_id FROM leadmgmt.upsert_lead(email => 'jiro@example.org', name => 'Jiro', company => 'Gamma');
UPDATE leadmgmt.lead SET owner = CASE id WHEN 1 THEN 'lm_test_rep1' WHEN 2 THEN 'lm_test_rep2' END;
SELECT leadmgmt.track(1, 'page_view', '2026-01-05 10:00+00', '/pricing');
SELECT leadmgmt.track(2, 'download', '2026-01-06 10:00+00', 'whitepaper');

-- Each action runs in a subtransaction that is always rolled back, so every
-- role starts from the same data: "ok" or the SQLSTATE it failed with.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RAISE SQLSTATE 'LMZZZ';
EXCEPTION
	WHEN SQLSTATE 'LMZZZ' THEN RETURN 'ok';
	WHEN OTHERS THEN RETURN SQLSTATE;
END
$$;
CREATE TEMP TABLE action (n int, what text, q text);
INSERT INTO action VALUES
	( 0, 'read lead',            'SELECT count(*) FROM leadmgmt.lead'),
	( 1, 'read lead contacts',   'SELECT count(email), count(phone) FROM leadmgmt.lead'),
	( 2, 'read activity',        'SELECT count(*) FROM leadmgmt.activity'),
	( 3, 'timeline, score',      'SELECT count(*), leadmgmt.score(1) FROM leadmgmt.timeline(1)'),
	( 4, 'read BI views',        'SELECT (SELECT count(*) FROM leadmgmt.settings), (SELECT count(*) FROM leadmgmt.stale_leads), (SELECT count(*) FROM leadmgmt.duplicate_candidates), (SELECT count(*) FROM leadmgmt.consent_current), (SELECT count(*) FROM leadmgmt.score_component), (SELECT count(*) FROM leadmgmt.score_award)'),
	( 5, 'read scoring rules',   'SELECT count(*) FROM leadmgmt.scoring_rule'),
	( 6, 'set_stage',            'SELECT leadmgmt.set_stage(1, ''sgl'')'),
	( 7, 'UPDATE lead stage',    'UPDATE leadmgmt.lead SET stage = ''sgl'' WHERE id = 1'),
	( 8, 'UPDATE lead owner',    'UPDATE leadmgmt.lead SET owner = ''x'' WHERE id = 1'),
	( 9, 'INSERT lead',          'INSERT INTO leadmgmt.lead (email) VALUES (''new@example.com'')'),
	(10, 'upsert_lead',          'SELECT leadmgmt.upsert_lead(email => ''new@example.com'')'),
	(11, 'track',                'SELECT leadmgmt.track(1, ''call'')'),
	(12, 'consent',              'SELECT leadmgmt.consent(1, ''email'', false)'),
	(13, 'import_leads',         'INSERT INTO leadmgmt.lead_import (email, kind) VALUES (''imp@example.com'', ''exhibition_card''); SELECT leadmgmt.import_leads()'),
	(14, 'merge_leads',          'SELECT leadmgmt.merge_leads(1, 3)'),
	(15, 'DELETE lead',          'DELETE FROM leadmgmt.lead WHERE id = 3'),
	(16, 'TRUNCATE activity',    'TRUNCATE leadmgmt.activity'),
	(17, 'write scoring_rule',   'INSERT INTO leadmgmt.scoring_rule (name, kind, points) VALUES (''r'', ''call'', 1)'),
	(18, 'write fit_rule',       'INSERT INTO leadmgmt.fit_rule (name, attribute, op, value, points) VALUES (''f'', ''country'', ''eq'', ''"JP"'', 1)'),
	(19, 'write stage',          'INSERT INTO leadmgmt.stage (name, rank, category) VALUES (''nurture2'', 5, ''nurture'')'),
	(20, 'write transition',     'INSERT INTO leadmgmt.stage_transition (from_stage, to_stage) VALUES (''recycled'', ''sgl'')'),
	(21, 'write activity_kind',  'INSERT INTO leadmgmt.activity_kind (name) VALUES (''webinar'')'),
	(22, 'set_setting',          'SELECT leadmgmt.set_setting(''mql_threshold'', ''50'')'),
	(23, 'rescore',              'SELECT leadmgmt.rescore()'),
	(24, 'forget_lead',          'SELECT leadmgmt.forget_lead(3)'),
	(25, 'rebuild_keys',         'SELECT leadmgmt.rebuild_keys()'),
	(26, 'INSERT stage_history', 'INSERT INTO leadmgmt.stage_history (lead_id, to_stage, changed_at, changed_by) VALUES (1, ''won'', now(), ''x'')'),
	(27, 'UPDATE stage_history', 'UPDATE leadmgmt.stage_history SET reason = ''x'''),
	(28, 'DELETE stage_history', 'DELETE FROM leadmgmt.stage_history'),
	(29, 'write score_state',    'DELETE FROM leadmgmt.score_state'),
	(30, 'write access_role',    'DELETE FROM leadmgmt.access_role'),
	(31, 'grant_access',         'SELECT leadmgmt.grant_access(''lm_test_admin'', ''lm_test_marketing'', ''lm_test_sales'', ''lm_test_reader'')'),
	(32, 'CREATE in schema',     'CREATE TABLE leadmgmt.mine (i int)');
CREATE TEMP TABLE outcome (who text, n int, result text);
GRANT SELECT ON action TO PUBLIC;
GRANT INSERT ON outcome TO PUBLIC;

SET ROLE lm_test_alice;
INSERT INTO outcome SELECT 'admin', n, pg_temp.try(q) FROM action;
SET ROLE lm_test_anna;
INSERT INTO outcome SELECT 'marketing', n, pg_temp.try(q) FROM action;
SET ROLE lm_test_rep1;
INSERT INTO outcome SELECT 'sales', n, pg_temp.try(q) FROM action;
SET ROLE lm_test_rita;
INSERT INTO outcome SELECT 'reader', n, pg_temp.try(q) FROM action;
SET ROLE lm_test_nobody;
INSERT INTO outcome SELECT 'none', n, pg_temp.try(q) FROM action;
RESET ROLE;
SELECT a.n, a.what,
       max(o.result) FILTER (WHERE o.who = 'admin') AS admin,
       max(o.result) FILTER (WHERE o.who = 'marketing') AS marketing,
       max(o.result) FILTER (WHERE o.who = 'sales') AS sales,
       max(o.result) FILTER (WHERE o.who = 'reader') AS reader,
       max(o.result) FILTER (WHERE o.who = 'none') AS "none"
  FROM action a JOIN outcome o USING (n)
 GROUP BY a.n, a.what ORDER BY a.n;

-- the messages of a few refusals
SET ROLE lm_test_rep1;
UPDATE leadmgmt.lead SET owner = 'lm_test_rep1' WHERE id = 2;
SELECT leadmgmt.track(1, 'call');
SET ROLE lm_test_rita;
SELECT email FROM leadmgmt.lead;
SET ROLE lm_test_alice;
INSERT INTO leadmgmt.stage_history (lead_id, to_stage, changed_at, changed_by) VALUES (1, 'won', now(), 'x');
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader');
RESET ROLE;

-------------------------------------------------------------------------------
-- Row-level security by owner
-------------------------------------------------------------------------------
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'leadmgmt.lead'::regclass;
-- off (the default): sales sees every lead
SET ROLE lm_test_rep1;
SELECT id, owner FROM leadmgmt.lead ORDER BY id;
RESET ROLE;
SELECT leadmgmt.set_setting('rls_by_owner', 'on');
SET ROLE lm_test_rep1;
SELECT id, owner FROM leadmgmt.lead ORDER BY id;
-- moves only its own leads; others' leads do not exist for it
SELECT id, stage FROM leadmgmt.set_stage(1, 'sgl', 'called back');
SELECT id, stage FROM leadmgmt.set_stage(2, 'sgl');
UPDATE leadmgmt.lead SET stage = 'sgl' WHERE id = 2;
-- the views it reads are filtered the same way (security_invoker)
SELECT lead_id, owner FROM leadmgmt.stale_leads ORDER BY lead_id;
SET ROLE lm_test_rep2;
SELECT id, owner FROM leadmgmt.lead ORDER BY id;
-- marketing, the reader and the admin are unaffected
SET ROLE lm_test_anna;
SELECT count(*) AS marketing_sees FROM leadmgmt.lead;
-- and the extension's bookkeeping (scoring, history) runs as the owner:
-- an activity on rep1's lead, recorded by marketing, still scores
SELECT leadmgmt.track(1, 'visit', '2026-01-08 10:00+00') > 0 AS tracked;
SET ROLE lm_test_rita;
SELECT count(*) AS reader_sees FROM leadmgmt.stale_leads;
SET ROLE lm_test_alice;
SELECT count(*) AS admin_sees FROM leadmgmt.lead;
RESET ROLE;
SELECT id, stage, owner, score > 30 AS scored FROM leadmgmt.lead ORDER BY id;
SELECT lead_id, from_stage, to_stage, reason FROM leadmgmt.stage_history ORDER BY id;
-- back off: everything visible again
SELECT leadmgmt.set_setting('rls_by_owner', 'off');
SET ROLE lm_test_rep1;
SELECT id, owner FROM leadmgmt.lead ORDER BY id;
RESET ROLE;

-- a new reader role: the old one loses everything, the new one gets it
SELECT leadmgmt.grant_access('lm_test_admin', 'lm_test_marketing', 'lm_test_sales', 'lm_test_reader2');
SELECT r.rolname,
       has_table_privilege(r.oid, 'leadmgmt.settings', 'SELECT') AS settings,
       has_any_column_privilege(r.oid, 'leadmgmt.lead', 'SELECT') AS lead_columns,
       has_table_privilege(r.oid, 'leadmgmt.stale_leads', 'SELECT') AS stale_leads
  FROM pg_roles r WHERE r.rolname IN ('lm_test_reader', 'lm_test_reader2') ORDER BY 1;
SELECT kind, role FROM leadmgmt.access_role ORDER BY kind;

-- clean up: roles are cluster-wide
DROP OWNED BY lm_test_admin, lm_test_marketing, lm_test_sales, lm_test_reader, lm_test_reader2;
DROP ROLE lm_test_rep1, lm_test_rep2, lm_test_anna, lm_test_alice, lm_test_rita,
	lm_test_nobody, lm_test_admin, lm_test_marketing, lm_test_sales, lm_test_reader, lm_test_reader2;
