-- covers: nurture tracks/steps validation, nurture_enroll rules, priority, single enrolment, every exit reason, nurture_due (consent, cap, holdout, wait), idempotent nurture_sent, holdout stability
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

-- the built-in kind and channels
SELECT name, builtin FROM leadmgmt.activity_kind WHERE name = 'nurture_touch';
SELECT name, consent_channel FROM leadmgmt.nurture_channel ORDER BY name;

-------------------------------------------------------------------------------
-- tracks and steps: validation, each mistake with its SQLSTATE, rows unchanged
-------------------------------------------------------------------------------
\set VERBOSITY default
INSERT INTO leadmgmt.nurture_track (name, description, priority, holdout_pct, entry_stages, interest_kind, interest_pattern, interest_within)
VALUES ('dx_interest', 'downloaded something about DX lately', 10, 0, '{inquiry,recycled}', 'download', '%DX%', '90 days');
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_stages) VALUES ('general', 1, 0, '{inquiry}');
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, entry_grades, min_score) VALUES ('high_fit', 5, 0, '{A}', 10);
INSERT INTO leadmgmt.nurture_track (name, priority, active) VALUES ('paused', 100, false);
\set VERBOSITY sqlstate
INSERT INTO leadmgmt.nurture_track (name, holdout_pct) VALUES ('too_many_out', 60);
INSERT INTO leadmgmt.nurture_track (name, holdout_pct) VALUES ('negative_out', -1);
INSERT INTO leadmgmt.nurture_track (name, entry_stages) VALUES ('bad_stage', '{inquiry,prospect}');
INSERT INTO leadmgmt.nurture_track (name, entry_grades) VALUES ('bad_grade', '{A,E}');
INSERT INTO leadmgmt.nurture_track (name, min_score, max_score) VALUES ('bad_range', 50, 10);
INSERT INTO leadmgmt.nurture_track (name, interest_kind) VALUES ('bad_kind', 'webinar');
INSERT INTO leadmgmt.nurture_track (name, interest_pattern) VALUES ('no_kind', '%DX%');
INSERT INTO leadmgmt.nurture_track (name, interest_kind, interest_within) VALUES ('bad_within', 'download', '-1 day');
INSERT INTO leadmgmt.nurture_track (name) VALUES ('Bad Name');
UPDATE leadmgmt.nurture_track SET holdout_pct = 51 WHERE name = 'general';
\set VERBOSITY default
-- the hint says what to do
INSERT INTO leadmgmt.nurture_track (name, holdout_pct) VALUES ('too_many_out', 60);
SELECT name, priority, active, holdout_pct FROM leadmgmt.nurture_track ORDER BY priority DESC;

INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES
	('dx_interest', 1, 'email', 'asset:dx-guide', '0'),
	('dx_interest', 2, 'email', 'https://example.jp/dx-case', '7 days'),
	('dx_interest', 3, 'call', 'script:dx-followup', '7 days');
-- steps may arrive in any order within a transaction: numbering is checked at commit
BEGIN;
INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES ('general', 2, 'email', 'news-2', '14 days');
INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES ('general', 1, 'email', 'news-1', '0');
COMMIT;
INSERT INTO leadmgmt.nurture_step (track, step_no, channel, content, wait) VALUES
	('high_fit', 1, 'call', 'script:intro', '1 day'),
	('high_fit', 2, 'direct_mail', 'catalogue', '10 days'),
	('paused', 1, 'email', 'x', '0');
-- a channel nobody knows, a gap, a step 0, a negative wait
INSERT INTO leadmgmt.nurture_step VALUES ('general', 3, 'fax', 'news-3', '7 days');
INSERT INTO leadmgmt.nurture_step VALUES ('general', 4, 'email', 'news-4', '7 days');
INSERT INTO leadmgmt.nurture_step VALUES ('general', 0, 'email', 'news-0', '7 days');
INSERT INTO leadmgmt.nurture_step VALUES ('general', 3, 'email', 'news-3', '-7 days');
\set VERBOSITY sqlstate
-- removing a middle step leaves a gap; renumbering in the same transaction is fine
DELETE FROM leadmgmt.nurture_step WHERE track = 'dx_interest' AND step_no = 2;
BEGIN;
DELETE FROM leadmgmt.nurture_step WHERE track = 'general' AND step_no = 1;
UPDATE leadmgmt.nurture_step SET step_no = 1 WHERE track = 'general' AND step_no = 2;
ROLLBACK;
\set VERBOSITY default
SELECT track, step_no, channel, content, wait FROM leadmgmt.nurture_step ORDER BY track, step_no;

-------------------------------------------------------------------------------
-- enrolment rules and priority
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.lead (id, email, stage, grade, score, created_at) VALUES
	(1, 'a@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- recent DX download: dx_interest
	(2, 'b@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- old DX download only: general
	(3, 'c@example.jp', 'inquiry', 'A', 20, now() - interval '400 days'),   -- grade A, score 20: high_fit beats general
	(4, 'd@example.jp', 'inquiry', 'A', 5, now() - interval '400 days'),    -- grade A but score 5: general
	(5, 'e@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- unsubscribed: no e-mail track
	(6, 'f@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- disqualified: nothing
	(7, 'g@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- merged into 2: nothing
	(8, 'h@example.jp', 'inquiry', NULL, 0, now() - interval '1 day'),      -- created after the enrolment time
	(9, 'i@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),   -- withdrew phone consent: not high_fit (step 1 is a call)
	(10, 'j@example.jp', 'inquiry', 'A', 30, now() - interval '400 days'),  -- like 3, later sent everything
	(11, 'k@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),  -- general, for the exits
	(12, 'l@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),
	(13, 'm@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),
	(14, 'n@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),
	(15, 'o@example.jp', 'inquiry', NULL, 0, now() - interval '400 days'),
	(16, 'p@example.jp', 'inquiry', NULL, 0, now() - interval '400 days');
UPDATE leadmgmt.lead SET score = 20, grade = 'A' WHERE id = 9;
SELECT leadmgmt.track(1, 'download', now() - interval '40 days', 'DX whitepaper 2026') > 0 AS tracked;
SELECT leadmgmt.track(2, 'download', now() - interval '200 days', 'DX whitepaper 2025') > 0 AS tracked;
SELECT leadmgmt.track(5, 'unsubscribe', now() - interval '50 days') > 0 AS tracked;
SELECT (leadmgmt.set_stage(6, 'disqualified', 'competitor', now() - interval '50 days')).stage AS moved;
SELECT leadmgmt.merge_leads(2, 7);
SELECT leadmgmt.consent(9, 'phone', false, 'call', now() - interval '50 days') > 0 AS recorded;

SELECT * FROM leadmgmt.nurture_enroll(now() - interval '30 days');
SELECT e.lead_id, e.track, e.status, e.step_no, e.next_due_at - e.enrolled_at AS first_wait
  FROM leadmgmt.nurture_enrollment e ORDER BY e.lead_id;
-- idempotent: nothing new on the next run
SELECT * FROM leadmgmt.nurture_enroll(now() - interval '30 days');
SELECT count(*) AS enrolments FROM leadmgmt.nurture_enrollment;

-- one current enrolment per lead, whatever writes it
\set VERBOSITY sqlstate
INSERT INTO leadmgmt.nurture_enrollment (lead_id, track, enrolled_at, status) VALUES (1, 'general', now(), 'active');
INSERT INTO leadmgmt.nurture_enrollment (lead_id, track, enrolled_at, status, exited_at, exit_reason)
VALUES (1, 'dx_interest', now(), 'exited', now(), 'finished');
\set VERBOSITY default

-------------------------------------------------------------------------------
-- nurture_sent: records the touch, advances, idempotent for the same step
-------------------------------------------------------------------------------
SELECT id AS e1 FROM leadmgmt.nurture_enrollment WHERE lead_id = 1 \gset
SELECT leadmgmt.nurture_sent(:e1, 1, now() - interval '29 days') AS touch1 \gset
SELECT leadmgmt.nurture_sent(:e1, 1, now() - interval '29 days') = :touch1 AS same_touch_again;
SELECT leadmgmt.nurture_sent(:e1, 1) = :touch1 AS same_touch_later;
SELECT kind, campaign, channel, detail, props->>'step_no' AS step, occurred_at = (SELECT last_sent_at FROM leadmgmt.nurture_enrollment WHERE id = :e1) AS at_sent
  FROM leadmgmt.activity WHERE kind = 'nurture_touch';
SELECT step_no, status, next_due_at - last_sent_at AS next_wait FROM leadmgmt.nurture_enrollment WHERE id = :e1;
-- wrong calls: a SQLSTATE each, and nothing changes
\set VERBOSITY sqlstate
SELECT leadmgmt.nurture_sent(:e1, 3);
SELECT leadmgmt.nurture_sent(:e1, 0);
SELECT leadmgmt.nurture_sent(999, 1);
SELECT leadmgmt.nurture_sent(:e1, 2, now() - interval '40 days');
SELECT leadmgmt.nurture_sent(NULL, 1);
\set VERBOSITY default
SELECT leadmgmt.nurture_sent(:e1, 3);
SELECT count(*) AS touches, (SELECT step_no FROM leadmgmt.nurture_enrollment WHERE id = :e1) AS step_no
  FROM leadmgmt.activity WHERE kind = 'nurture_touch';

-------------------------------------------------------------------------------
-- nurture_due: wait, cap, consent, email_status
-------------------------------------------------------------------------------
-- lead 1: step 2 (wait 7 days) due 22 days ago; the others' step 1 since enrolment
SELECT lead_id, track, step_no, channel, content FROM leadmgmt.nurture_due ORDER BY lead_id;
-- a touch within nurture_min_gap (3 days) holds back the next one, across tracks
SELECT leadmgmt.nurture_sent(:e1, 2, now() - interval '1 day') > 0 AS sent;
SELECT id AS e11 FROM leadmgmt.nurture_enrollment WHERE lead_id = 11 \gset
SELECT leadmgmt.nurture_sent(:e11, 1, now() - interval '2 days') > 0 AS sent;
UPDATE leadmgmt.nurture_step SET wait = '0' WHERE track = 'general' AND step_no = 2;
SELECT e.lead_id, e.step_no, e.next_due_at <= now() AS wait_over,
       e.lead_id IN (SELECT d.lead_id FROM leadmgmt.nurture_due d) AS due
  FROM leadmgmt.nurture_enrollment e WHERE e.lead_id IN (1, 11) ORDER BY 1;
SELECT leadmgmt.set_setting('nurture_min_gap', '1 day');
SELECT lead_id, step_no FROM leadmgmt.nurture_due WHERE lead_id IN (1, 11) ORDER BY 1;
SELECT leadmgmt.set_setting('nurture_min_gap', NULL);
\set VERBOSITY sqlstate
SELECT leadmgmt.set_setting('nurture_min_gap', '-1 day');
SELECT leadmgmt.set_setting('nurture_convert_stage', 'prospect');
\set VERBOSITY default
-- the wait: a step whose wait has not passed is not due
UPDATE leadmgmt.nurture_step SET wait = '14 days' WHERE track = 'general' AND step_no = 2;
SELECT lead_id FROM leadmgmt.nurture_due WHERE lead_id = 11;
-- consent: an unsubscribe or a bounce stops e-mail at once; a withdrawn
-- phone consent stops calls but not e-mail
SELECT leadmgmt.track(12, 'unsubscribe', now() - interval '1 hour') > 0 AS tracked;
SELECT leadmgmt.track(13, 'email_bounce', now() - interval '1 hour') > 0 AS tracked;
SELECT leadmgmt.consent(3, 'phone', false, 'call', now() - interval '1 hour') > 0 AS recorded;
SELECT leadmgmt.consent(14, 'phone', false, 'call', now() - interval '1 hour') > 0 AS recorded;
SELECT lead_id, track, step_no, channel FROM leadmgmt.nurture_due ORDER BY lead_id;

-------------------------------------------------------------------------------
-- exits, each with its reason; history is kept
-------------------------------------------------------------------------------
-- finished: lead 10 is sent both steps of high_fit
SELECT id AS e10 FROM leadmgmt.nurture_enrollment WHERE lead_id = 10 \gset
SELECT leadmgmt.nurture_sent(:e10, 1, now() - interval '20 days') > 0 AS sent;
SELECT leadmgmt.nurture_sent(:e10, 2, now() - interval '10 days') > 0 AS sent;
SELECT status, step_no, exit_reason, exited_at = last_sent_at AS at_last_touch, next_due_at
  FROM leadmgmt.nurture_enrollment WHERE id = :e10;
-- converted: lead 15 becomes an MQL
SELECT (leadmgmt.set_stage(15, 'mql', NULL, now() - interval '5 days')).stage AS moved;
SELECT lead_id FROM leadmgmt.nurture_due WHERE lead_id = 15;
-- disqualified
SELECT (leadmgmt.set_stage(16, 'disqualified', 'spam', now() - interval '5 days')).stage AS moved;
-- merged: lead 4 (general) into lead 1 (dx_interest): lead 1 keeps its own
-- enrolment, lead 4's ends at once
SELECT leadmgmt.merge_leads(1, 4);
SELECT lead_id, track, status, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id IN (1, 4) ORDER BY 1;
-- forgotten: lead 2 (and lead 7, merged into it earlier)
SELECT leadmgmt.forget_lead(2);
SELECT lead_id, status, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id = 2;
-- every exit above was recorded when its cause happened, before any
-- nurture_enroll(): 3 (phone consent, next step a call), 12 (unsubscribed),
-- 13 (bounced), 15 (converted), 16 (disqualified); 14 withdrew phone consent
-- but its next step is an e-mail: it stays
SELECT lead_id, status, exit_reason, exited_at IS NOT NULL AS ended, next_due_at IS NULL AS no_due
  FROM leadmgmt.nurture_enrollment WHERE lead_id IN (3, 12, 13, 14, 15, 16) ORDER BY lead_id;

SELECT * FROM leadmgmt.nurture_enroll();
SELECT lead_id, track, status, step_no, exit_reason, exited_at IS NOT NULL AS ended
  FROM leadmgmt.nurture_enrollment ORDER BY lead_id, id;
-- an ended enrolment takes no more touches but still records one that was on its way
SELECT leadmgmt.nurture_sent(id, 1) > 0 AS recorded FROM leadmgmt.nurture_enrollment WHERE lead_id = 12;
SELECT status, step_no, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id = 12;
-- a lead that left one track can enter another it has not been in: lead 15
-- went back to nurturing (recycled) and qualifies for dx_interest
SELECT (leadmgmt.set_stage(15, 'recycled', NULL, now() - interval '2 days')).stage AS moved;
SELECT leadmgmt.track(15, 'download', now() - interval '1 day', 'DX checklist') > 0 AS tracked;
SELECT * FROM leadmgmt.nurture_enroll();
SELECT lead_id, track, status, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id = 15 ORDER BY id;
-- history stays in timeline()
SELECT kind, campaign, detail FROM leadmgmt.timeline(10) WHERE kind = 'nurture_touch';

-------------------------------------------------------------------------------
-- holdout: deterministic by lead id and track name, never due
-------------------------------------------------------------------------------
-- the bucket, computed by hand from the definition in doc/nurture.md
-- (python: fnv1a64(b'welcome') ^ lead_id, splitmix64, mod 100):
--   lead 1 -> 16, lead 2 -> 50, lead 1000 -> 42; track '' and lead 0 -> 8
SELECT leadmgmt.nurture_bucket(1, 'welcome') AS b1, leadmgmt.nurture_bucket(2, 'welcome') AS b2,
       leadmgmt.nurture_bucket(1000, 'welcome') AS b1000, leadmgmt.nurture_bucket(0, '') AS b0;
INSERT INTO leadmgmt.lead (id, created_at) SELECT g, now() - interval '400 days' FROM generate_series(101, 400) g;
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, min_score, max_score) VALUES ('welcome', 50, 30, 0, 0);
INSERT INTO leadmgmt.nurture_step VALUES ('welcome', 1, 'email', 'hello', '0');
SELECT enrolled, held_out FROM leadmgmt.nurture_enroll(now() - interval '1 hour');
CREATE TEMP TABLE first_holdout AS
	SELECT lead_id FROM leadmgmt.nurture_enrollment WHERE track = 'welcome' AND status = 'holdout';
-- exactly the leads whose bucket is below 30
SELECT count(*) AS held_out,
       count(*) FILTER (WHERE leadmgmt.nurture_bucket(lead_id, 'welcome') < 30) AS below_30,
       (SELECT count(*) FROM leadmgmt.nurture_enrollment e
         WHERE e.track = 'welcome' AND e.status <> 'holdout'
           AND leadmgmt.nurture_bucket(e.lead_id, 'welcome') < 30) AS treated_below_30
  FROM first_holdout;
-- never due
SELECT count(*) AS holdout_due FROM leadmgmt.nurture_due d JOIN first_holdout h USING (lead_id);
SELECT count(*) AS treated_due FROM leadmgmt.nurture_due WHERE track = 'welcome';
-- delete and enrol again: the same leads are held out
DELETE FROM leadmgmt.nurture_enrollment WHERE track = 'welcome';
SELECT enrolled, held_out FROM leadmgmt.nurture_enroll(now());
SELECT (SELECT count(*) FROM (SELECT lead_id FROM first_holdout
                              EXCEPT SELECT lead_id FROM leadmgmt.nurture_enrollment WHERE track = 'welcome' AND status = 'holdout') x) AS lost,
       (SELECT count(*) FROM (SELECT lead_id FROM leadmgmt.nurture_enrollment WHERE track = 'welcome' AND status = 'holdout'
                              EXCEPT SELECT lead_id FROM first_holdout) y) AS gained;

-------------------------------------------------------------------------------
-- exits when they happen: the next channel closed while waiting, a
-- back-dated withdrawal, a removed step, and the safety net for changes
-- made with triggers off
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.nurture_track (name, priority, holdout_pct, min_score, max_score) VALUES ('mixed', 60, 0, 0, 0);
INSERT INTO leadmgmt.nurture_step VALUES ('mixed', 1, 'email', 'm1', '0'), ('mixed', 2, 'call', 'm2', '1 day'),
	('mixed', 3, 'email', 'm3', '1 day');
INSERT INTO leadmgmt.lead (id, created_at) SELECT g, now() - interval '400 days' FROM generate_series(501, 506) g;
SELECT enrolled FROM leadmgmt.nurture_enroll(now() - interval '10 days');
SELECT count(leadmgmt.nurture_sent(e.id, 1, now() - interval '9 days')) AS sent
  FROM leadmgmt.nurture_enrollment e WHERE e.track = 'mixed';
-- 501 withdrew phone consent while waiting for the call: it leaves at once
SELECT leadmgmt.consent(501, 'phone', false, 'form', now() - interval '1 hour') > 0 AS recorded;
-- 502 withdrew long ago but granted again later: the back-dated withdrawal
-- is not the latest word, nothing happens
SELECT leadmgmt.consent(502, 'phone', true, 'form', now() - interval '1 hour') > 0 AS recorded;
SELECT leadmgmt.consent(502, 'phone', false, 'form', now() - interval '300 days') > 0 AS recorded;
-- 503 unsubscribes while waiting for the call (the next step): it stays;
-- when the call is sent, step 3 is an e-mail: it leaves then
SELECT leadmgmt.track(503, 'unsubscribe', now() - interval '2 hours') > 0 AS tracked;
SELECT e.lead_id, e.status, e.step_no, e.exit_reason FROM leadmgmt.nurture_enrollment e
 WHERE e.lead_id IN (501, 502, 503) ORDER BY 1;
SELECT leadmgmt.nurture_sent(e.id, 2, now() - interval '1 hour') > 0 AS sent FROM leadmgmt.nurture_enrollment e WHERE e.lead_id = 503;
SELECT status, step_no, exit_reason, exited_at = last_sent_at AS at_touch, next_due_at
  FROM leadmgmt.nurture_enrollment WHERE lead_id = 503;
-- changes written with triggers off (a restore, a replica) exit no one at
-- once; nurture_due hides the lead, and the next nurture_enroll() records
-- the exit of the due enrolment
SET session_replication_role = replica;
UPDATE leadmgmt.lead SET stage = 'disqualified', stage_entered_at = now() WHERE id = 504;
RESET session_replication_role;
SELECT (SELECT status FROM leadmgmt.nurture_enrollment WHERE lead_id = 504) AS before_sweep,
       (SELECT count(*) FROM leadmgmt.nurture_due WHERE lead_id = 504) AS due;
SELECT exited FROM leadmgmt.nurture_enroll();
SELECT status, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id = 504;
-- a removed last step: the enrolments waiting for it have no due time, and
-- the next nurture_enroll() records them finished if it is still gone
DELETE FROM leadmgmt.nurture_step WHERE track = 'mixed' AND step_no = 3;
SELECT leadmgmt.nurture_sent(e.id, 2, now() - interval '30 minutes') > 0 AS sent FROM leadmgmt.nurture_enrollment e WHERE e.lead_id = 505;
SELECT lead_id, status, step_no, exit_reason FROM leadmgmt.nurture_enrollment WHERE lead_id IN (505, 506) ORDER BY 1;
DELETE FROM leadmgmt.nurture_step WHERE track = 'mixed' AND step_no = 2;
SELECT lead_id, status, next_due_at IS NULL AS no_due FROM leadmgmt.nurture_enrollment WHERE lead_id = 506;
SELECT exited FROM leadmgmt.nurture_enroll();
SELECT lead_id, status, step_no, exit_reason FROM leadmgmt.nurture_enrollment WHERE track = 'mixed' ORDER BY lead_id;
