-- covers: merge_leads() moves the duplicate's score (issue 14 bug 1): the issue's reproduction, caps counted together, chains of merges, rescore() = 0 after every merge, a kept lead taken over the MQL threshold by a merge is handed off like a tracked one, merge_score() refuses pairs that are not merged
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';

-- the issue's reproduction, at fixed times so the scores print exactly
INSERT INTO leadmgmt.lead (id, email, created_at) VALUES
	(1, 'one@example.jp', '2026-03-01'), (2, 'two@example.jp', '2026-03-01');
SELECT leadmgmt.track(1, 'visit', '2026-03-02 10:00+00') > 0 AS tracked;
SELECT leadmgmt.track(2, 'form_submit', '2026-03-02 10:00+00') > 0 AS tracked;
SELECT leadmgmt.track(2, 'visit', '2026-03-02 10:00+00') > 0 AS tracked;
SELECT id, score FROM leadmgmt.lead WHERE id IN (1, 2) ORDER BY id;
SELECT leadmgmt.merge_leads(1, 2);
-- 30 (visit) + 30 (form_submit) + 30 (visit) on the kept lead, nothing left on the duplicate
SELECT id, score, score_at, merged_into FROM leadmgmt.lead WHERE id IN (1, 2) ORDER BY id;
SELECT lead_id, count(*) AS components FROM leadmgmt.score_component WHERE lead_id IN (1, 2) GROUP BY lead_id ORDER BY lead_id;
SELECT leadmgmt.score(1, '2026-03-02 10:00+00') AS score_at_latest, leadmgmt.score(2, '2026-03-02 10:00+00') AS via_duplicate;
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- caps count the activities of both leads together: form_submit pays 5 times at most
INSERT INTO leadmgmt.lead (id, created_at) VALUES (3, '2026-03-01'), (4, '2026-03-01');
SELECT count(leadmgmt.track(l, 'form_submit', t)) AS tracked
  FROM (VALUES (3, timestamptz '2026-03-02 10:00+00'), (3, '2026-03-02 11:00+00'), (3, '2026-03-02 12:00+00'),
               (4, '2026-03-02 09:00+00'), (4, '2026-03-02 10:30+00'), (4, '2026-03-02 13:00+00')) v(l, t);
SELECT leadmgmt.merge_leads(3, 4);
SELECT id, round(score::numeric, 6) AS score, score_at FROM leadmgmt.lead WHERE id = 3;
-- the sixth form_submit in time order (13:00) earns nothing
SELECT occurred_at, points FROM leadmgmt.activity WHERE lead_id = 3 ORDER BY occurred_at;
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- a chain: 6 into 5, then 5 (holding 6) into 7; the leads keep their ids
INSERT INTO leadmgmt.lead (id, created_at) VALUES (5, '2026-03-01'), (6, '2026-03-01'), (7, '2026-03-01');
SELECT count(leadmgmt.track(l, k, '2026-03-03 10:00+00')) AS tracked
  FROM (VALUES (5, 'call'), (6, 'seminar_attend'), (6, 'download'), (7, 'email_click')) v(l, k);
SELECT leadmgmt.merge_leads(5, 6), leadmgmt.merge_leads(7, 5);
SELECT id, round(score::numeric, 6) AS score, merged_into FROM leadmgmt.lead WHERE id IN (5, 6, 7) ORDER BY id;
SELECT leadmgmt.rescore() AS changed_by_rescore;
-- merging again is a no-op and changes no score
SELECT leadmgmt.merge_leads(7, 6);
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- the hand-off: two leads below the threshold of 50, each with recent activity
SELECT leadmgmt.set_setting('mql_threshold', '50');
INSERT INTO leadmgmt.lead (id, created_at) VALUES (8, now() - interval '1 day'), (9, now() - interval '1 day');
SELECT leadmgmt.track(8, 'visit') > 0 AS tracked, leadmgmt.track(9, 'form_submit') > 0 AS tracked;
SELECT id, stage FROM leadmgmt.lead WHERE id IN (8, 9) ORDER BY id;
SELECT leadmgmt.merge_leads(8, 9);
-- 60 >= 50: the kept lead went to mql through the same path as track(),
-- after the merge note, and the duplicate's history stays its own
SELECT id, stage, score >= 50 AS over_threshold FROM leadmgmt.lead WHERE id IN (8, 9) ORDER BY id;
SELECT lead_id, from_stage, to_stage, reason FROM leadmgmt.stage_history WHERE lead_id IN (8, 9) ORDER BY lead_id, changed_at;
SELECT count(*) AS rows_after_previous
  FROM (SELECT changed_at > lag(changed_at) OVER (ORDER BY changed_at, id) AS later
          FROM leadmgmt.stage_history WHERE lead_id = 8) h WHERE later;
SELECT l.stage_entered_at = (SELECT max(changed_at) FROM leadmgmt.stage_history h
                              WHERE h.lead_id = l.id AND h.from_stage IS DISTINCT FROM h.to_stage) AS entered_at_agrees
  FROM leadmgmt.lead l WHERE l.id = 8;
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- old activity takes nobody over the threshold: no hand-off, as with track()
INSERT INTO leadmgmt.lead (id, created_at) VALUES (10, '2025-01-01'), (11, '2025-01-01');
SELECT leadmgmt.track(10, 'visit', '2025-02-01') > 0 AS tracked, leadmgmt.track(11, 'visit', '2025-02-01') > 0 AS tracked;
SELECT leadmgmt.merge_leads(10, 11);
SELECT id, stage FROM leadmgmt.lead WHERE id = 10;

-- merge_score is a step of merge_leads only
SELECT leadmgmt.merge_score(10, 8);
SELECT leadmgmt.merge_score(1, 2) AS idempotent;
SELECT leadmgmt.rescore() AS changed_by_rescore;
DROP EXTENSION leadmgmt CASCADE;
