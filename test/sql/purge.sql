-- covers: purge_activity(): batches, rows deleted, scores / caps / rescore() / score(at) / score_explain unchanged through purged_score, LM040 before purged points, back-fills after a purge, merge_leads carries purged points, stage history and funnel untouched, errors, privileges, the BRIN index; a seeded random case against the scores before the purge
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';
SET extra_float_digits = 0;

-- two rules of our own on kinds of our own (no built-in rule applies):
-- webinar 10 points halving every 10 days, awarded twice per lead at most;
-- ping 8 points, no decay, no cap; note earns nothing
INSERT INTO leadmgmt.activity_kind (name) VALUES ('webinar'), ('ping'), ('note');
INSERT INTO leadmgmt.scoring_rule (name, kind, points, half_life, max_times) VALUES
	('webinar', 'webinar', 10, '10 days', 2), ('ping', 'ping', 8, NULL, NULL);
INSERT INTO leadmgmt.lead (id, created_at) VALUES
	(1, '2025-12-01'), (2, '2025-12-01'), (3, '2025-12-01'), (4, '2025-12-01');
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at) VALUES
	(1, 'webinar', '2026-01-01'), (1, 'webinar', '2026-01-02'), (1, 'note', '2026-01-03'),
	(1, 'ping', '2026-01-05'), (1, 'webinar', '2026-01-20'), (1, 'ping', '2026-01-25'),
	(2, 'ping', '2026-01-10'), (2, 'webinar', '2026-02-01'),
	(3, 'webinar', '2026-02-02'),
	(4, 'note', '2026-01-04');
SELECT (leadmgmt.set_stage(1, 'mql', 'test', '2026-01-06')).stage AS lead1,
       (leadmgmt.set_stage(2, 'sgl', 'test', '2026-01-11')).stage AS lead2;

-- by hand, on 4 Feb: lead 1 = 10 * 2^-3.4 + 10 * 2^-3.3 (webinars of 1 and 2
-- Jan; the one of 20 Jan is over the cap) + 8 + 8 = 17.963; lead 2 = 8 +
-- 10 * 2^-0.3 = 16.123; lead 3 = 10 * 2^-0.2 = 8.706; lead 4 = 0
CREATE TABLE before AS
SELECT l.id, l.score, l.score_at, leadmgmt.score(l.id, '2026-02-04') AS feb4
  FROM leadmgmt.lead l;
SELECT id, round(score::numeric, 3) AS score, score_at, round(feb4::numeric, 3) AS feb4 FROM before ORDER BY id;
CREATE TABLE history_before AS SELECT * FROM leadmgmt.stage_history;
CREATE TABLE funnel_before AS SELECT * FROM leadmgmt.funnel;

-- purge everything before 15 January, one lead per batch: lead 1 loses four
-- rows (1, 2, 3, 5 Jan), lead 2 one (10 Jan), lead 4 one (4 Jan)
SELECT leadmgmt.purge_activity('2026-01-15', 1) AS deleted;
SELECT lead_id, kind, occurred_at, points FROM leadmgmt.activity ORDER BY lead_id, occurred_at;
-- what they had earned: lead 1's webinars as one 10-day component at 2 Jan
-- (10 * 2^-0.1 + 10 = 19.330), its ping as a no-decay one (8 at 5 Jan), and
-- the cap counters (webinar twice, ping once); lead 4's note earned nothing
SELECT p.lead_id, p.purged_before, p.activities,
       (SELECT string_agg(format('%s us: %s at %s', c.half_life_us, round(c.value::numeric, 3), c.ref_at), '; ')
          FROM leadmgmt.score_state_components(p.state) c) AS components,
       (SELECT string_agg(format('%s x%s, last %s', r.name, w.times, w.last_awarded_at), '; ' ORDER BY r.name)
          FROM leadmgmt.score_state_awards(p.state) w JOIN leadmgmt.scoring_rule r ON r.id = w.rule_id) AS awards
  FROM leadmgmt.purged_score p ORDER BY p.lead_id;

-- nothing moved: stored scores, scores at a time, a full rescore
SELECT count(*) AS leads,
       count(*) FILTER (WHERE l.score IS DISTINCT FROM b.score OR l.score_at IS DISTINCT FROM b.score_at) AS stored_changed,
       count(*) FILTER (WHERE abs(leadmgmt.score(l.id, '2026-02-04') - b.feb4) > 1e-12) AS feb4_changed
  FROM leadmgmt.lead l JOIN before b USING (id);
SELECT leadmgmt.rescore() AS rescored_changed;
SELECT count(*) FILTER (WHERE abs(l.score - b.score) > 1e-12 OR l.score_at IS DISTINCT FROM b.score_at) AS changed_by_rescore
  FROM leadmgmt.lead l JOIN before b USING (id);
-- the explanation adds up to the same score; purged activity is one line per half-life
SELECT activity_id, occurred_at, kind, detail, rule, round(points::numeric, 3) AS points, half_life,
       round(decayed_points::numeric, 3) AS decayed
  FROM leadmgmt.score_explain(1, '2026-02-04');
-- on 6 Jan, after the last purged point: 19.330 * 2^-0.4 + 8 = 22.650; on
-- 4 Jan the purged ping of 5 Jan is unknown: LM040
SELECT round(leadmgmt.score(1, '2026-01-06')::numeric, 3) AS jan6;
SELECT leadmgmt.score(1, '2026-01-04');

-- caps go on counting the purged awards: a third webinar earns nothing, and
-- a back-filled one before the purged ones (scored again from the log and
-- purged_score) neither; the score stays
SELECT leadmgmt.track(1, 'webinar', '2026-02-03') > 0 AS tracked,
       leadmgmt.track(1, 'webinar', '2026-01-01 12:00') > 0 AS backfilled;
SELECT occurred_at, points FROM leadmgmt.activity WHERE lead_id = 1 AND kind = 'webinar' ORDER BY occurred_at;
SELECT round(leadmgmt.score(1, '2026-02-04')::numeric, 3) AS feb4;

-- stage history and the funnel do not read activity: untouched
SELECT (SELECT count(*) FROM history_before) AS history_rows,
       (SELECT count(*) FROM (TABLE history_before EXCEPT ALL TABLE leadmgmt.stage_history) d)
     + (SELECT count(*) FROM (TABLE leadmgmt.stage_history EXCEPT ALL TABLE history_before) d) AS history_changed,
       (SELECT count(*) FROM (TABLE funnel_before EXCEPT ALL TABLE leadmgmt.funnel) d)
     + (SELECT count(*) FROM (TABLE leadmgmt.funnel EXCEPT ALL TABLE funnel_before) d) AS funnel_changed;

-- a second purge folds into the first: lead 1 loses 1 Jan 12:00 (the
-- back-fill), 20 Jan and 25 Jan; lead 2 its webinar of 1 Feb
SELECT leadmgmt.purge_activity('2026-02-02') AS deleted;
SELECT lead_id, purged_before, activities FROM leadmgmt.purged_score ORDER BY lead_id;
SELECT count(*) FILTER (WHERE abs(leadmgmt.score(l.id, '2026-02-04') - b.feb4) > 1e-12) AS feb4_changed
  FROM leadmgmt.lead l JOIN before b USING (id);
SELECT leadmgmt.rescore() AS rescored_changed;
-- nothing before the cutoff is left; purging again deletes nothing
SELECT count(*) AS old_rows FROM leadmgmt.activity WHERE occurred_at < '2026-02-02';
SELECT leadmgmt.purge_activity('2026-02-02') AS deleted_again;

-- merging carries the duplicate's purged points to the kept lead: lead 3
-- then scores 8 + 10 * 2^-0.3 (lead 2's) + 10 * 2^-0.2 = 24.828 on 4 Feb
SELECT leadmgmt.merge_leads(3, 2) AS kept;
SELECT lead_id, activities FROM leadmgmt.purged_score ORDER BY lead_id;
-- the merge rescored both leads itself: a full rescore changes nothing
SELECT leadmgmt.rescore() AS rescored_changed;
SELECT id, round(score::numeric, 3) AS score, round(leadmgmt.score(id, '2026-02-04')::numeric, 3) AS feb4
  FROM leadmgmt.lead WHERE id IN (2, 3) ORDER BY id;

-- errors and privileges
\set VERBOSITY terse
SELECT leadmgmt.purge_activity(NULL);
SELECT leadmgmt.purge_activity('infinity');
SELECT leadmgmt.purge_activity('2026-01-01', 0);
\set VERBOSITY default
SELECT has_function_privilege('public', 'leadmgmt.purge_activity(timestamptz, integer)', 'EXECUTE') AS public_may_purge,
       has_function_privilege('public', 'leadmgmt.purged_score_follow(bigint)', 'EXECUTE') AS public_may_follow;

DROP TABLE before, history_before, funnel_before;

-- Random: 300 leads, 6000 activities of the built-in kinds over 2025 scored
-- by the built-in rules (decay, caps, patterns); purge the first half year
-- in batches of 37 rows, then up to October at once.  Every score at a time
-- after the purged points, every stored score and a rescore() must equal
-- what the full log gave before.
SELECT setseed(0.2025);
INSERT INTO leadmgmt.lead (id, created_at) SELECT 100 + g, '2024-12-01' FROM generate_series(1, 300) g;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, duration_s)
SELECT 101 + floor(random() * 300)::int,
       (ARRAY['page_view', 'download', 'email_open', 'email_click', 'seminar_attend', 'visit', 'form_submit', 'email_bounce'])[1 + floor(random() * 8)::int],
       timestamptz '2025-01-01' + random() * interval '365 days',
       (ARRAY['/pricing', '/blog', 'whitepaper-a.pdf', NULL])[1 + floor(random() * 4)::int],
       floor(random() * 90)::int
  FROM generate_series(1, 6000);
-- time-range queries on the log can use the BRIN index
SELECT indexdef FROM pg_indexes WHERE indexname = 'activity_occurred_at_brin';
ANALYZE leadmgmt.activity;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM leadmgmt.activity WHERE occurred_at < '2025-02-01';
RESET enable_seqscan;
CREATE TABLE before AS
SELECT l.id, l.score, l.score_at, leadmgmt.score(l.id, '2025-10-15') AS oct15, leadmgmt.score(l.id, '2026-01-01') AS jan1
  FROM leadmgmt.lead l WHERE l.id > 100;
SELECT leadmgmt.purge_activity('2025-07-01', 37) AS deleted_first_half;
SELECT leadmgmt.purge_activity('2025-10-01') AS deleted_to_october;
SELECT count(*) AS kept, min(occurred_at) >= '2025-10-01' AS only_recent
  FROM leadmgmt.activity WHERE lead_id > 100;
SELECT count(*) AS leads,
       count(*) FILTER (WHERE abs(leadmgmt.score(b.id, '2025-10-15') - b.oct15) > 1e-9 * greatest(1, abs(b.oct15))) AS oct15_changed,
       count(*) FILTER (WHERE abs(leadmgmt.score(b.id, '2026-01-01') - b.jan1) > 1e-9 * greatest(1, abs(b.jan1))) AS jan1_changed,
       count(*) FILTER (WHERE l.score_at IS DISTINCT FROM b.score_at OR l.score <> b.score) AS stored_changed
  FROM before b JOIN leadmgmt.lead l USING (id);
SELECT leadmgmt.rescore() AS rescored_changed;
SELECT count(*) FILTER (WHERE abs(l.score - b.score) > 1e-9 * greatest(1, abs(b.score))
                           OR l.score_at IS DISTINCT FROM b.score_at) AS changed_by_rescore
  FROM before b JOIN leadmgmt.lead l USING (id);
DROP TABLE before;
