-- torture.opportunity for scripts/record_opportunity.sql (issue 19 signature):
-- three deals per lead, any status, replayed with a newer crm_updated_at
\set ON_ERROR_STOP 1
CREATE FUNCTION torture.opportunity(lead bigint, k integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
BEGIN
	PERFORM leadmgmt.record_opportunity('torture-' || lead || '-' || k % 3, lead_id => lead,
		amount => 1000 + k % 5000, currency => 'JPY',
		status => (ARRAY['open', 'open', 'won', 'lost'])[1 + k % 4],
		crm_updated_at => clock_timestamp());
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('record_opportunity', SQLSTATE, SQLERRM, why, place);
END $$;
