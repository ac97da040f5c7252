-- covers: the stage machine: every built-in move allowed or refused, errors, no-ops, back-dated replay, user stages, actor and reason
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- Drive a fresh lead to each stage along a shortest built-in path, then try
-- every target.  The outcome matrix must equal leadmgmt.stage_transition.
CREATE TEMP TABLE outcome (from_stage text, to_stage text, sqlstate text);
DO $$
DECLARE
	src record;
	dst record;
	lead_id bigint;
	step text;
BEGIN
	FOR src IN
		WITH RECURSIVE walk(stage, path) AS (
			SELECT name, ARRAY[name] FROM leadmgmt.stage WHERE is_entry
			UNION ALL
			SELECT t.to_stage, w.path || t.to_stage
			  FROM walk w JOIN leadmgmt.stage_transition t ON t.from_stage = w.stage
			 WHERE NOT t.to_stage = ANY (w.path)
		)
		SELECT DISTINCT ON (stage) stage, path FROM walk ORDER BY stage, cardinality(path), path
	LOOP
		FOR dst IN SELECT name FROM leadmgmt.stage WHERE name <> src.stage ORDER BY name LOOP
			INSERT INTO leadmgmt.lead (stage) VALUES (src.path[1]) RETURNING id INTO lead_id;
			FOREACH step IN ARRAY src.path[2:] LOOP
				PERFORM leadmgmt.set_stage(lead_id, step);
			END LOOP;
			BEGIN
				PERFORM leadmgmt.set_stage(lead_id, dst.name);
				INSERT INTO outcome VALUES (src.stage, dst.name, '00000');
			EXCEPTION WHEN OTHERS THEN
				INSERT INTO outcome VALUES (src.stage, dst.name, SQLSTATE);
			END;
		END LOOP;
	END LOOP;
END
$$;

SELECT count(*) AS pairs_tried,
       count(*) FILTER (WHERE sqlstate = '00000') AS allowed,
       count(*) FILTER (WHERE sqlstate = 'LM001') AS refused_lm001,
       count(*) FILTER (WHERE sqlstate NOT IN ('00000', 'LM001')) AS other_errors
  FROM outcome;

-- allowed moves are exactly the transition table, both ways
(SELECT from_stage, to_stage FROM outcome WHERE sqlstate = '00000'
 EXCEPT SELECT from_stage, to_stage FROM leadmgmt.stage_transition)
UNION ALL
(SELECT from_stage, to_stage FROM leadmgmt.stage_transition
 EXCEPT SELECT from_stage, to_stage FROM outcome WHERE sqlstate = '00000');

-- the matrix, for the eye: + allowed, . refused
SELECT from_stage,
       string_agg(CASE WHEN sqlstate = '00000' THEN '+' ELSE '.' END || ' ' || to_stage, '  ' ORDER BY to_stage) AS moves
  FROM outcome GROUP BY from_stage ORDER BY from_stage;

-- each move left exactly one history row per stage entered, in order
SELECT count(*) AS leads_with_gaps
  FROM leadmgmt.lead l
 WHERE (SELECT h.to_stage FROM leadmgmt.stage_history h WHERE h.lead_id = l.id
         ORDER BY h.changed_at DESC, h.id DESC LIMIT 1) <> l.stage
    OR EXISTS (SELECT 1 FROM (
           SELECT h.from_stage, lag(h.to_stage) OVER (ORDER BY h.changed_at, h.id) AS prev
             FROM leadmgmt.stage_history h WHERE h.lead_id = l.id) x
         WHERE x.from_stage IS DISTINCT FROM x.prev);

TRUNCATE outcome;
SET client_min_messages = warning;
DROP EXTENSION leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- error messages, SQLSTATEs and hints
\set SHOW_CONTEXT never
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;
INSERT INTO leadmgmt.lead (id, email, created_at) VALUES (1, 'taro@example.jp', '2026-01-05 09:00+09');
SELECT leadmgmt.set_stage(1, 'won');                     -- LM001, hint lists targets
SELECT leadmgmt.set_stage(1, 'customer');                -- LM002, hint lists stages
SELECT leadmgmt.set_stage(1, NULL);
SELECT leadmgmt.set_stage(NULL, 'mql');
SELECT leadmgmt.set_stage(999, 'mql');                   -- LM005
SELECT leadmgmt.set_stage(1, '');
INSERT INTO leadmgmt.lead (stage) VALUES ('sql');         -- not an entry stage
INSERT INTO leadmgmt.lead (stage) VALUES ('nonsense');
UPDATE leadmgmt.lead SET stage = 'sal' WHERE id = 1;      -- a plain UPDATE is validated too
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$SELECT leadmgmt.set_stage(1, 'won')$$),
	($$SELECT leadmgmt.set_stage(1, 'customer')$$),
	($$SELECT leadmgmt.set_stage(1, NULL)$$),
	($$SELECT leadmgmt.set_stage(NULL, 'mql')$$),
	($$SELECT leadmgmt.set_stage(999, 'mql')$$),
	($$SELECT leadmgmt.set_stage(1, 'mql', NULL, 'infinity')$$),
	($$INSERT INTO leadmgmt.lead (stage) VALUES ('sql')$$),
	($$INSERT INTO leadmgmt.lead (stage) VALUES (NULL)$$),
	($$UPDATE leadmgmt.lead SET stage = NULL WHERE id = 1$$),
	($$UPDATE leadmgmt.lead SET stage = 'sal' WHERE id = 1$$)) v(q);

-- same stage again is a no-op: no history row, stage_entered_at unchanged
SELECT stage, stage_entered_at FROM leadmgmt.set_stage(1, 'inquiry');
UPDATE leadmgmt.lead SET stage = 'inquiry' WHERE id = 1;
SELECT count(*) AS history_rows FROM leadmgmt.stage_history WHERE lead_id = 1;

-- back-dated import: created_at is the entry time, moves replayed with at
SET TimeZone = 'Asia/Tokyo';
SELECT stage, stage_entered_at FROM leadmgmt.set_stage(1, 'mql', 'score 120', '2026-02-01 10:00+09');
SELECT stage, stage_entered_at FROM leadmgmt.set_stage(1, 'sal', 'accepted by Sato', '2026-02-03 11:30+09');
SELECT leadmgmt.set_stage(1, 'sql', NULL, '2026-02-02 00:00+09');   -- earlier than the last change: LM003
SELECT stage FROM leadmgmt.set_stage(1, 'sql', NULL, '2026-02-03 11:30+09');  -- equal: one microsecond later, history stays strictly ordered
SELECT from_stage, to_stage, changed_at, reason FROM leadmgmt.stage_history WHERE lead_id = 1 ORDER BY id;

-- a move without an explicit time is recorded now, never at or before the last change
BEGIN;
INSERT INTO leadmgmt.lead (id, created_at) VALUES (2, now() + interval '1 hour');
SELECT stage_entered_at = now() + interval '1 hour 0.000001 seconds' AS raised_past_last_change
  FROM leadmgmt.set_stage(2, 'sgl');
COMMIT;
SELECT (SELECT stage FROM leadmgmt.set_stage(2, 'sql'))
     , (SELECT count(*) FROM leadmgmt.stage_history WHERE lead_id = 2) AS history_rows;
RESET TimeZone;

-- actor: leadmgmt.actor if set, else the session user; reason from set_stage
CREATE ROLE leadmgmt_rep;
GRANT USAGE ON SCHEMA leadmgmt TO leadmgmt_rep;
GRANT SELECT, INSERT, UPDATE (stage) ON leadmgmt.lead TO leadmgmt_rep;
INSERT INTO leadmgmt.lead (id) VALUES (3);
SET SESSION AUTHORIZATION leadmgmt_rep;
SELECT stage FROM leadmgmt.set_stage(3, 'mql', 'web score');
SET leadmgmt.actor = 'crm-sync:suzuki@example.jp';
UPDATE leadmgmt.lead SET stage = 'sal' WHERE id = 3;
RESET leadmgmt.actor;
-- the rep may not touch history directly (no privilege, and the guard)
SELECT count(*) FROM leadmgmt.stage_history;
RESET SESSION AUTHORIZATION;
-- (the session user shown as SESSION_USER: its name depends on the installation)
SELECT from_stage, to_stage,
       CASE WHEN changed_by = session_user THEN 'SESSION_USER' ELSE changed_by END AS changed_by, reason
  FROM leadmgmt.stage_history WHERE lead_id = 3 ORDER BY id;
SET leadmgmt.unknown_thing = 1;

-- user-added stage and transitions take effect at once (cache invalidation)
INSERT INTO leadmgmt.stage (name, rank, category, next_stage, description)
VALUES ('nurture_webinar', 8, 'nurture', 'mql', 'long-term webinar nurture track');
SELECT leadmgmt.set_stage(1, 'nurture_webinar');          -- not allowed yet
INSERT INTO leadmgmt.stage_transition (from_stage, to_stage) VALUES ('sql', 'nurture_webinar'),
                                                                    ('nurture_webinar', 'mql');
SELECT stage FROM leadmgmt.set_stage(1, 'nurture_webinar', 'budget next year');
SELECT stage FROM leadmgmt.set_stage(1, 'mql');
BEGIN;
DELETE FROM leadmgmt.stage_transition WHERE to_stage = 'nurture_webinar';
SELECT stage FROM leadmgmt.set_stage(2, 'nurture_webinar');   -- refused inside the transaction
ROLLBACK;
-- rolled back: allowed again in this session
INSERT INTO leadmgmt.lead (id) VALUES (4);
SELECT stage FROM leadmgmt.set_stage(4, 'sgl');
SELECT stage FROM leadmgmt.set_stage(4, 'sql');
SELECT stage FROM leadmgmt.set_stage(4, 'nurture_webinar');
-- a stage in use cannot be deleted
DELETE FROM leadmgmt.stage WHERE name = 'nurture_webinar';
-- a user entry stage
INSERT INTO leadmgmt.stage (name, rank, category, is_entry, next_stage)
VALUES ('partner_referral', 12, 'open', true, 'mql');
INSERT INTO leadmgmt.lead (id, stage) VALUES (5, 'partner_referral') RETURNING stage;

-- built-in rows are read-only, user rows are not
UPDATE leadmgmt.stage SET rank = 99 WHERE name = 'mql';
DELETE FROM leadmgmt.stage_transition WHERE from_stage = 'inquiry' AND to_stage = 'mql';
UPDATE leadmgmt.activity_kind SET description = 'x' WHERE name = 'call';
INSERT INTO leadmgmt.activity_kind (name, builtin) VALUES ('webinar', true);
UPDATE leadmgmt.stage SET builtin = true WHERE name = 'partner_referral';
UPDATE leadmgmt.stage SET description = 'referred by a reseller' WHERE name = 'partner_referral';
INSERT INTO leadmgmt.stage_transition (from_stage, to_stage) VALUES ('inquiry', 'inquiry');
INSERT INTO leadmgmt.stage (name, rank, category) VALUES ('Bad Name', 1, 'open');
INSERT INTO leadmgmt.stage (name, rank, category) VALUES ('odd', 1, 'pending');
