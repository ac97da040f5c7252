-- torture.nurture for scripts/nurture_sent.sql (issue 20 signatures): sends
-- one due touch; the nurture capability's own setup (a track with steps)
-- belongs here once it exists
\set ON_ERROR_STOP 1
CREATE FUNCTION torture.nurture(k integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	due record;
BEGIN
	IF k % 50 = 0 THEN
		PERFORM leadmgmt.nurture_enroll();
	END IF;
	EXECUTE 'SELECT d.enrolment, d.step_no FROM leadmgmt.nurture_due d OFFSET $1 LIMIT 1'
	   INTO due USING k % 20;
	IF due.enrolment IS NOT NULL THEN
		PERFORM leadmgmt.nurture_sent(due.enrolment, due.step_no);
	END IF;
EXCEPTION WHEN OTHERS THEN
	PERFORM torture.failed('nurture_sent', SQLSTATE, SQLERRM);
END $$;
