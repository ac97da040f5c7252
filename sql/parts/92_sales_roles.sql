
-------------------------------------------------------------------------------
-- Privileges of the sales loop (85_sales.sql): grant_access() records its roles in
-- access_role last, so this trigger adds this capability's grants to the
-- matrix (doc/roles.md) without changing grant_access() itself.
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.grant_sales_loop()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT n.kind, n.role::text AS r FROM new_roles n
	          WHERE EXISTS (SELECT 1 FROM pg_roles p WHERE p.oid = n.role::oid) LOOP
		CONTINUE WHEN a.kind = 'reader';		-- the views are granted by grant_access()
		-- sales and up: read deals, campaigns and the feed, report deals, follow the feed
		EXECUTE format('GRANT SELECT ON leadmgmt.opportunity, leadmgmt.campaign, leadmgmt.change, '
		               'leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT INSERT, UPDATE ON leadmgmt.opportunity TO %s', a.r);
		EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.opportunity_id_seq TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.read_changes(text, integer), '
		               'leadmgmt.ack_changes(text, bigint) TO %s', a.r);
		CONTINUE WHEN a.kind = 'sales';
		-- marketing and admin: campaigns
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.campaign TO %s', a.r);
		CONTINUE WHEN a.kind = 'marketing';
		-- admin: consumers and purging
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.purge_changes() TO %s', a.r);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.grant_sales_loop() IS
	'Trigger: when grant_access() records its roles, grants the sales loop''s privileges (deals, campaigns, change feed) to them';
REVOKE ALL ON FUNCTION leadmgmt.grant_sales_loop() FROM PUBLIC;
CREATE TRIGGER grant_sales_loop
	AFTER INSERT ON leadmgmt.access_role
	REFERENCING NEW TABLE AS new_roles
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.grant_sales_loop();
