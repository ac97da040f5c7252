
-------------------------------------------------------------------------------
-- Roles: grant_access() and row-level security by owner (doc/roles.md)
-------------------------------------------------------------------------------
-- The extension creates no roles: roles are cluster-wide, outlive DROP
-- EXTENSION, and a name we pre-created could be squatted.  The DBA creates
-- four NOLOGIN roles and hands them to grant_access(), which records them
-- here; the row-level security helper reads the sales role from this table.
CREATE TABLE leadmgmt.access_role (
	kind text PRIMARY KEY
	     CONSTRAINT access_role_kind_known CHECK (kind IN ('admin', 'marketing', 'sales', 'reader')),
	role regrole NOT NULL
);
COMMENT ON TABLE leadmgmt.access_role IS
	'The roles leadmgmt.grant_access() last granted to, one per kind; written by grant_access() only';
COMMENT ON COLUMN leadmgmt.access_role.kind IS 'admin, marketing, sales or reader';
COMMENT ON COLUMN leadmgmt.access_role.role IS 'the role that holds the privileges of this kind';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.access_role', '');

-- Whether row-level security restricts the role "who" to its own leads: the
-- rls_by_owner setting is on and "who" is a member of the sales role.  The
-- policies below call it once per query (an InitPlan), passing CURRENT_USER:
-- inside this SECURITY DEFINER function CURRENT_USER is the extension owner.
-- SECURITY DEFINER so that nobody needs a privilege on leadmgmt.setting or
-- leadmgmt.access_role.  It is the one definer function PUBLIC may execute
-- (test/sql/hardening.sql lists it): every role that may read lead runs it,
-- including roles a DBA granted privileges to by hand, and it only tells
-- whether a role is restricted.
CREATE FUNCTION leadmgmt.rls_restricted(who name)
RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT COALESCE(leadmgmt.get_setting('rls_by_owner') = 'on', false)
	       AND EXISTS (SELECT 1
	                     FROM leadmgmt.access_role a
	                     JOIN pg_catalog.pg_roles r ON r.oid = a.role::oid
	                    WHERE a.kind = 'sales'
	                      AND pg_catalog.pg_has_role(rls_restricted.who, a.role::oid, 'MEMBER'));
END;
COMMENT ON FUNCTION leadmgmt.rls_restricted(name) IS
	'Row-level security helper: true when the rls_by_owner setting is on and the role is a member of the sales role recorded by grant_access()';
GRANT EXECUTE ON FUNCTION leadmgmt.rls_restricted(name) TO PUBLIC;

-- RLS is always enabled (not forced: the table owner, and so the extension's
-- own triggers running as the owner, bypass it); the setting switches the
-- policy's effect, so nothing runs ALTER TABLE at runtime and pg_dump keeps
-- the policy with the extension.  One permissive policy for every command:
-- unrestricted roles see every row, restricted ones the rows they own.
ALTER TABLE leadmgmt.lead ENABLE ROW LEVEL SECURITY;
CREATE POLICY lead_by_owner ON leadmgmt.lead
	USING ((SELECT NOT leadmgmt.rls_restricted(CURRENT_USER))
	       OR owner OPERATOR(pg_catalog.=) CURRENT_USER::pg_catalog.text)
	WITH CHECK ((SELECT NOT leadmgmt.rls_restricted(CURRENT_USER))
	            OR owner OPERATOR(pg_catalog.=) CURRENT_USER::pg_catalog.text);
COMMENT ON POLICY lead_by_owner ON leadmgmt.lead IS
	'With rls_by_owner on, members of the sales role see and change only the leads whose owner is their role name (CURRENT_USER); everybody else is unaffected';

CREATE FUNCTION leadmgmt.grant_access(admin regrole, marketing regrole, sales regrole, reader regrole)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	ext_owner oid;
	kinds text[] := ARRAY['admin', 'marketing', 'sales', 'reader'];
	roles regrole[] := ARRAY[admin, marketing, sales, reader];
	r text;
	obj text;
	i integer;
	-- object lists per kind; names in leadmgmt
	vocab text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule', 'fit_rule'];
	sales_read text[] := ARRAY['lead', 'activity', 'stage_history', 'score_state', 'consent',
	                           'lead_external_id', 'lead_merge', 'model', 'purged_score',
	                           'nurture_channel', 'nurture_track', 'nurture_step', 'nurture_enrollment'];
	-- marketing runs the nurture programs (doc/nurture.md)
	mkt_nurture text[] := ARRAY['nurture_track', 'nurture_step'];
	mkt_fn text[] := ARRAY['leadmgmt.nurture_enroll(timestamptz)',
	                       'leadmgmt.nurture_sent(bigint,integer,timestamptz)'];
	mkt_write text[] := ARRAY['lead', 'activity', 'lead_import', 'lead_external_id', 'consent'];
	mkt_seq text[] := ARRAY['lead_id_seq', 'activity_id_seq', 'lead_import_id_seq',
	                        'consent_id_seq', 'lead_merge_id_seq'];
	admin_write text[] := ARRAY['stage', 'stage_transition', 'activity_kind', 'scoring_rule',
	                            'fit_rule', 'setting', 'model', 'nurture_channel'];
	admin_seq text[] := ARRAY['scoring_rule_id_seq', 'fit_rule_id_seq'];
	admin_fn text[] := ARRAY['leadmgmt.rescore()', 'leadmgmt.forget_lead(bigint)',
	                         'leadmgmt.rebuild_keys()', 'leadmgmt.purge_activity(timestamptz,integer)',
	                         'leadmgmt.shard_table(text,text[],regclass)',
	                         'leadmgmt.rebuild_funnel_summary()'];
	views text[];
BEGIN
	SELECT e.extowner INTO ext_owner FROM pg_catalog.pg_extension e WHERE e.extname = 'leadmgmt';
	IF NOT (SELECT me.rolsuper FROM pg_catalog.pg_roles me WHERE me.rolname = CURRENT_USER)
	   AND (SELECT me.oid FROM pg_catalog.pg_roles me WHERE me.rolname = CURRENT_USER) <> ext_owner THEN
		RAISE EXCEPTION 'only the owner of extension leadmgmt or a superuser may call grant_access()'
			USING ERRCODE = '42501';
	END IF;
	FOR i IN 1 .. 4 LOOP
		IF roles[i] IS NULL OR roles[i]::oid = 0 THEN
			RAISE EXCEPTION 'the % role must be a role, not %', kinds[i],
				CASE WHEN roles[i] IS NULL THEN 'NULL' ELSE 'PUBLIC' END
				USING ERRCODE = '22004',
				      HINT = 'Create the four roles with CREATE ROLE ... NOLOGIN first (doc/roles.md).';
		END IF;
		IF roles[i]::oid = ext_owner THEN
			RAISE EXCEPTION 'the % role must not be role "%", which owns extension leadmgmt', kinds[i], roles[i]
				USING ERRCODE = '22023',
				      HINT = 'Create a separate role and grant it to the users (doc/roles.md).';
		END IF;
	END LOOP;

	-- start from nothing, so that the result is exactly the matrix below
	-- (also when a role changes kind); roles replaced since the last call
	-- lose what they had
	FOR r IN
		SELECT x.role::text FROM (SELECT a.role FROM leadmgmt.access_role a
		                          UNION SELECT u FROM unnest(roles) u) x
		 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_roles p WHERE p.oid = x.role::oid)
	LOOP
		EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON SCHEMA leadmgmt FROM %s', r);
		EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA leadmgmt_bi FROM %s', r);
		EXECUTE format('REVOKE ALL ON SCHEMA leadmgmt_bi FROM %s', r);
	END LOOP;

	-- every view of the two schemas at call time (BI views added later:
	-- call again); leadmgmt_bi is the surface for BI tools (doc/bi.md)
	SELECT array_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text) INTO views
	  FROM pg_catalog.pg_class c
	 WHERE c.relnamespace IN ('leadmgmt'::regnamespace, 'leadmgmt_bi'::regnamespace)
	   AND c.relkind IN ('v', 'm');

	FOR i IN 1 .. 4 LOOP
		r := roles[i]::text;
		EXECUTE format('GRANT USAGE ON SCHEMA leadmgmt TO %s', r);
		EXECUTE format('GRANT USAGE ON SCHEMA leadmgmt_bi TO %s', r);
		-- the views are security_invoker: their readers need SELECT on the
		-- columns they read, so grant exactly those (from the views' rules)
		FOREACH obj IN ARRAY COALESCE(views, '{}') LOOP
			EXECUTE format('GRANT SELECT ON %s TO %s', obj, r);
		END LOOP;
		FOR obj IN
			SELECT format('GRANT SELECT (%s) ON %s TO %s',
			              string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum), t.oid::regclass, r)
			  FROM pg_catalog.pg_rewrite w
			  JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
			  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass
			                             AND d.objid = w.oid
			                             AND d.refclassid = 'pg_catalog.pg_class'::regclass
			  JOIN pg_catalog.pg_class t ON t.oid = d.refobjid AND t.relkind = 'r'
			  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
			 WHERE v.relnamespace IN ('leadmgmt'::regnamespace, 'leadmgmt_bi'::regnamespace)
			   AND v.relkind IN ('v', 'm')
			   AND d.refobjsubid > 0
			 GROUP BY t.oid
		LOOP
			EXECUTE obj;
		END LOOP;
		-- get_setting() runs as the caller; settings are no secret
		EXECUTE format('GRANT SELECT ON leadmgmt.setting TO %s', r);
		-- the vocabularies hold nothing personal: every role reads them whole
		FOREACH obj IN ARRAY vocab LOOP
			EXECUTE format('GRANT SELECT ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		CONTINUE WHEN kinds[i] = 'reader';

		-- sales and up: leads, activity and their history
		FOREACH obj IN ARRAY sales_read LOOP
			EXECUTE format('GRANT SELECT ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		IF kinds[i] = 'sales' THEN
			EXECUTE format('GRANT UPDATE (stage) ON leadmgmt.lead TO %s', r);
			CONTINUE;
		END IF;

		-- marketing and admin: leads, activity, consent, imports, merges
		FOREACH obj IN ARRAY mkt_write LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		EXECUTE format('GRANT SELECT, INSERT ON leadmgmt.lead_merge TO %s', r);
		FOREACH obj IN ARRAY mkt_seq LOOP
			EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.%I TO %s', obj, r);
		END LOOP;
		-- merge_leads() moves what purged activity earned along
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.purged_score_follow(bigint) TO %s', r);
		FOREACH obj IN ARRAY mkt_nurture LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY mkt_fn LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', obj, r);
		END LOOP;
		CONTINUE WHEN kinds[i] = 'marketing';

		-- admin: rules, stages, transitions, settings, models, maintenance
		FOREACH obj IN ARRAY admin_write LOOP
			EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY admin_seq LOOP
			EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.%I TO %s', obj, r);
		END LOOP;
		FOREACH obj IN ARRAY admin_fn LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', obj, r);
		END LOOP;
	END LOOP;

	DELETE FROM leadmgmt.access_role;
	INSERT INTO leadmgmt.access_role (kind, role)
	SELECT k, x FROM unnest(kinds, roles) AS u(k, x);
END
$$;
COMMENT ON FUNCTION leadmgmt.grant_access(regrole, regrole, regrole, regrole) IS
	'Grant the privileges of the four leadmgmt roles (admin, marketing, sales, reader; doc/roles.md) to roles the DBA created; extension owner or superuser only; idempotent';
REVOKE ALL ON FUNCTION leadmgmt.grant_access(regrole, regrole, regrole, regrole) FROM PUBLIC;
