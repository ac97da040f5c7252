-- demo/nurture.sql: two nurture tracks run on a cohort of new leads, and
-- their measured uplift against the holdout (doc/nurture.md).
--
-- 2,000 newsletter sign-ups arrive 190 days ago; a third of them also
-- downloaded the DX whitepaper.  150 days ago nurture_enroll() puts the
-- downloaders into dx_whitepaper and the rest into welcome, holding out 20 %
-- of each by the hash of lead id and track.  The generator then plays the
-- program: treated leads get their touches on time (nurture_sent), and in
-- this world nurturing helps: a treated lead becomes an MQL with probability
-- 24 % (dx_whitepaper) or 15 % (welcome), a holdout lead with 11 % or 8 %.
-- setseed() makes every run draw the same leads.  Run after generate.sql
-- (or alone, on an empty extension).
SELECT setseed(0.7);
SELECT leadmgmt.set_setting('mql_threshold', '1e12');

INSERT INTO leadmgmt.nurture_track
       (name, description, priority, holdout_pct, entry_stages, interest_kind, interest_pattern, interest_within)
VALUES ('dx_whitepaper', 'downloaded the DX whitepaper: case study, webinar, call', 10, 20,
        '{inquiry}', 'download', '%DX whitepaper%', '90 days'),
       ('welcome', 'newsletter sign-ups: welcome and best-of', 1, 20,
        '{inquiry}', 'form_submit', 'newsletter sign-up%', '60 days');
INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES
	('dx_whitepaper', 1, 'email', 'https://example.jp/cases/dx-factory', '1 day'),
	('dx_whitepaper', 2, 'email', 'webinar:dx-for-manufacturers', '10 days'),
	('dx_whitepaper', 3, 'call',  'script:dx-follow-up', '7 days'),
	('welcome',       1, 'email', 'asset:welcome', '1 day'),
	('welcome',       2, 'email', 'asset:best-of-the-blog', '14 days');

CREATE TEMP TABLE demo_cohort AS
SELECT g AS n, now() - interval '190 days' + random() * interval '20 days' AS signed_up, random() < 0.33 AS dx
  FROM generate_series(1, 2000) g;
WITH l AS (
	INSERT INTO leadmgmt.lead (email, source, origin, created_at, attributes)
	SELECT 'nurture' || c.n || '@example.jp', 'web_form', 'inbound', c.signed_up, '{"cohort": "nurture demo"}'
	  FROM demo_cohort c ORDER BY c.n
	RETURNING id, email)
SELECT count(leadmgmt.track(l.id, 'form_submit', c.signed_up, 'newsletter sign-up', 'newsletter'))
     + count(CASE WHEN c.dx THEN leadmgmt.track(l.id, 'download', c.signed_up + interval '10 days', 'DX whitepaper 2026', 'dx-campaign') END)
       AS tracked
  FROM l JOIN demo_cohort c ON l.email = 'nurture' || c.n || '@example.jp';

SELECT * FROM leadmgmt.nurture_enroll(now() - interval '150 days');

-- play the program: touches on time for the treated, conversions drawn with
-- the rates above (in enrolment order, so the draw is reproducible)
DO $$
DECLARE
	e record;
	s record;
	converts boolean;
	conv_at timestamptz;
	due timestamptz;
	r float8;
BEGIN
	FOR e IN SELECT * FROM leadmgmt.nurture_enrollment x
	          WHERE x.enrolled_at < now() - interval '140 days' ORDER BY x.id LOOP
		converts := random() < CASE WHEN e.track = 'dx_whitepaper'
		                            THEN CASE WHEN e.status = 'holdout' THEN 0.11 ELSE 0.24 END
		                            ELSE CASE WHEN e.status = 'holdout' THEN 0.08 ELSE 0.15 END END;
		conv_at := e.enrolled_at + interval '5 days' + random() * interval '75 days';
		IF e.status = 'active' THEN
			due := e.enrolled_at;
			FOR s IN SELECT * FROM leadmgmt.nurture_step x WHERE x.track = e.track ORDER BY x.step_no LOOP
				due := due + s.wait + random() * interval '6 hours';
				EXIT WHEN converts AND due > conv_at;
				PERFORM leadmgmt.nurture_sent(e.id, s.step_no, due);
			END LOOP;
		END IF;
		CONTINUE WHEN NOT converts;
		PERFORM leadmgmt.set_stage(e.lead_id, 'mql', 'nurtured lead qualified', conv_at);
		r := random();
		CONTINUE WHEN r < 0.5;
		PERFORM leadmgmt.set_stage(e.lead_id, 'sal', 'accepted', conv_at + interval '3 days');
		PERFORM leadmgmt.set_stage(e.lead_id, 'sql', 'opportunity opened', conv_at + interval '10 days');
		CONTINUE WHEN r < 0.8;
		PERFORM leadmgmt.set_stage(e.lead_id, 'won', 'contract signed', conv_at + interval '40 days');
	END LOOP;
END
$$;

-- conversions ended their enrolments when they happened (the stage
-- trigger); today's run releases the holdouts whose horizon has passed
SELECT * FROM leadmgmt.nurture_enroll();
SELECT leadmgmt.set_setting('mql_threshold', NULL);
