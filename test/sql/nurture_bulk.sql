-- covers: nurture_enroll on more than 10,000 candidates (the scan path) against an independent formulation of the rules, then the lookup path on the rerun
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never

INSERT INTO leadmgmt.lead (id, created_at) SELECT g, now() - interval '400 days' FROM generate_series(1, 12000) g;
-- every third lead downloaded the DX paper lately, every 100th unsubscribed,
-- every 50th (from 1) was disqualified
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, points)
SELECT g, 'download', now() - interval '10 days', 'The DX paper', 0 FROM generate_series(3, 12000, 3) g;
UPDATE leadmgmt.lead SET email_status = 'unsubscribed' WHERE id % 100 = 0;
SELECT count((leadmgmt.set_stage(g, 'disqualified', NULL, now() - interval '5 days')).stage) AS disqualified
  FROM generate_series(1, 12000, 50) g;
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, interest_kind, interest_pattern)
VALUES ('dx', 10, 10, 'download', '%DX%'), ('general', 1, 10, NULL, NULL);
INSERT INTO leadmgmt.nurture_step VALUES ('dx', 1, 'email', 'a', '0'), ('general', 1, 'email', 'b', '0');
-- leads 1..300 went through general before
INSERT INTO leadmgmt.nurture_enrollment (lead_id, track, enrolled_at, step_no, status, exited_at, exit_reason)
SELECT g, 'general', now() - interval '200 days', 1, 'completed', now() - interval '190 days', 'finished'
  FROM generate_series(1, 300) g;

SELECT * FROM leadmgmt.nurture_enroll();

-- the rules, written out: reachable by e-mail, not disqualified; dx for the
-- downloaders, else general unless the lead was in it before
CREATE TEMP TABLE expected AS
SELECT g AS lead_id,
       CASE WHEN g % 3 = 0 THEN 'dx' WHEN g > 300 THEN 'general' END AS track
  FROM generate_series(1, 12000) g
 WHERE g % 100 <> 0 AND g % 50 <> 1;
DELETE FROM expected WHERE track IS NULL;
SELECT (SELECT count(*) FROM expected) AS expected,
       (SELECT count(*) FROM (SELECT lead_id, track FROM expected
                              EXCEPT SELECT lead_id, track FROM leadmgmt.nurture_enrollment WHERE exited_at IS NULL) x) AS missing,
       (SELECT count(*) FROM (SELECT lead_id, track FROM leadmgmt.nurture_enrollment WHERE exited_at IS NULL
                              EXCEPT SELECT lead_id, track FROM expected) y) AS unexpected,
       (SELECT count(*) FROM leadmgmt.nurture_enrollment
         WHERE exited_at IS NULL AND (status = 'holdout') <> (leadmgmt.nurture_bucket(lead_id, track) < 10)) AS wrong_holdout;
-- the rerun finds the few candidates by id and enrols nobody
SELECT * FROM leadmgmt.nurture_enroll();
SELECT count(*) AS enrolments, count(DISTINCT lead_id) FILTER (WHERE exited_at IS NULL) AS current_leads
  FROM leadmgmt.nurture_enrollment;
