-- torture.nurture for scripts/nurture_sent.sql (doc/nurture.md): a welcome
-- track of three touches without waits for every inquiry and recycled lead,
-- enrolment at the start and again now and then, one due touch sent per call
\set ON_ERROR_STOP 1
INSERT INTO leadmgmt.nurture_track (name, description, priority, holdout_pct, entry_stages)
VALUES ('torture', 'every inquiry and recycled lead', 1, 10, '{inquiry,recycled}');
INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES
	('torture', 1, 'email', 'asset:one', '0'),
	('torture', 2, 'email', 'asset:two', '0'),
	('torture', 3, 'call', 'script:three', '0');
SELECT count(*) >= 0 AS enrolled FROM leadmgmt.nurture_enroll();
CREATE FUNCTION torture.nurture(k integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
	due record;
BEGIN
	IF k % 50 = 0 THEN
		PERFORM leadmgmt.nurture_enroll();
	END IF;
	SELECT d.enrollment, d.step_no INTO due FROM leadmgmt.nurture_due d OFFSET k % 20 LIMIT 1;
	IF due.enrollment IS NOT NULL THEN
		PERFORM leadmgmt.nurture_sent(due.enrollment, due.step_no);
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('nurture_sent', SQLSTATE, SQLERRM, why, place);
END $$;
