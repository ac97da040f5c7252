-- covers: hostile inputs of issue 14: infinite created_at / stage_entered_at / occurred_at refused (22008 with a hint, or the CHECK's 23514), rule and activity points bounded so no score overflows to infinity, bad stored data reported as 22P03 (score state) and LM050 (a circle of merged_into) instead of XX001, every view still answers
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';
CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

INSERT INTO leadmgmt.lead (id, email, created_at) VALUES (1, 'a@example.jp', '2026-01-01'), (2, 'b@example.jp', '2026-01-01');
SELECT leadmgmt.track(1, 'visit', '2026-01-02') > 0 AS tracked;

-- infinite times: the messages, then every way in
INSERT INTO leadmgmt.lead (created_at) VALUES ('infinity');
SELECT leadmgmt.track(1, 'visit', '-infinity');
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$INSERT INTO leadmgmt.lead (created_at) VALUES ('-infinity')$$),
	($$UPDATE leadmgmt.lead SET created_at = 'infinity' WHERE id = 1$$),
	($$UPDATE leadmgmt.lead SET stage_entered_at = '-infinity' WHERE id = 1$$),
	($$SELECT leadmgmt.track(1, 'visit', 'infinity')$$),
	($$INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at) VALUES (1, 'visit', 'infinity')$$),
	($$INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, points) VALUES (1, 'visit', '-infinity', 5)$$),
	($$UPDATE leadmgmt.activity SET occurred_at = 'infinity' WHERE lead_id = 1$$),
	($$SELECT leadmgmt.set_stage(1, 'mql', NULL, 'infinity')$$),
	($$SELECT leadmgmt.set_stage(1, 'mql', NULL, '-infinity')$$)) v(q);
-- the extreme finite times are fine, and a move after them still works
INSERT INTO leadmgmt.lead (id, created_at) VALUES (3, '294276-12-31 23:59:59.999990+00');
SELECT stage, stage_entered_at FROM leadmgmt.set_stage(3, 'sgl');
SELECT stage, stage_entered_at FROM leadmgmt.set_stage(3, 'sql', NULL, '294276-12-31 23:59:59.999999+00');
-- past the last representable microsecond: a clear error, not a wrap-around
SELECT leadmgmt.set_stage(3, 'won');

-- points are bounded: no sum over any number of rows can reach infinity
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$INSERT INTO leadmgmt.scoring_rule (name, kind, points) VALUES ('huge', 'call', 1e10)$$),
	($$INSERT INTO leadmgmt.scoring_rule (name, kind, points) VALUES ('inf', 'call', 'Infinity')$$),
	($$INSERT INTO leadmgmt.scoring_rule (name, kind, points) VALUES ('nan', 'call', 'NaN')$$),
	($$INSERT INTO leadmgmt.fit_rule (name, attribute, op, value, points) VALUES ('huge', 'x', 'eq', '1', -1e10)$$),
	($$INSERT INTO leadmgmt.activity (lead_id, kind, points) VALUES (1, 'call', 1e300)$$),
	($$INSERT INTO leadmgmt.activity (lead_id, kind, points) VALUES (1, 'call', 'NaN')$$)) v(q);
SELECT conrelid::regclass AS "table", conname FROM pg_constraint
 WHERE conname IN ('lead_created_at_finite', 'lead_stage_entered_at_finite', 'activity_occurred_at_finite',
                   'activity_points_bounded', 'scoring_rule_points_bounded', 'fit_rule_points_bounded')
 ORDER BY conrelid::regclass::text, conname;
-- the largest rules, many times over: a large, finite score
INSERT INTO leadmgmt.scoring_rule (name, kind, points) VALUES ('big1', 'call', 1e9), ('big2', 'call', 1e9), ('big3', 'call', -1e9);
SELECT count(leadmgmt.track(2, 'call', '2026-01-02'::timestamptz + g * interval '1 second')) AS tracked
  FROM generate_series(1, 50) g;
SELECT id, round((score / 1e9)::numeric, 6) AS score_in_billions, score < 'Infinity' AS finite FROM leadmgmt.lead WHERE id = 2;
SELECT leadmgmt.rescore() AS changed_by_rescore;

-- bad stored data: a damaged score state is 22P03 with a hint, not XX001
UPDATE leadmgmt.score_state SET state = '\x0102' WHERE lead_id = 1;
SELECT leadmgmt.track(1, 'call', '2026-01-03');
SELECT pg_temp.sqlstate_of($$SELECT leadmgmt.score_state_components('\x01')$$) AS components_of_damaged;
SELECT leadmgmt.rescore() AS changed_by_rescore;   -- rebuilds the state; the score was right
SELECT leadmgmt.track(1, 'call', '2026-01-03') > 0 AS tracked_again;

-- a circle of merged_into written by hand: LM050 from every path that follows it
UPDATE leadmgmt.lead SET merged_into = 2 WHERE id = 1;
UPDATE leadmgmt.lead SET merged_into = 1 WHERE id = 2;
SELECT leadmgmt.lead_resolve(1);
SELECT q, pg_temp.sqlstate_of(q) AS sqlstate FROM (VALUES
	($$SELECT leadmgmt.lead_resolve(2)$$),
	($$SELECT leadmgmt.lead_lock(1)$$),
	($$SELECT leadmgmt.set_stage(1, 'mql')$$),
	($$SELECT leadmgmt.track(1, 'call')$$),
	($$INSERT INTO leadmgmt.activity (lead_id, kind) VALUES (2, 'call')$$),
	($$SELECT leadmgmt.link_external_id(1, 'crm', 'c-1')$$),
	($$SELECT leadmgmt.consent(2, 'email', true)$$),
	($$SELECT leadmgmt.forget_lead(1)$$)) v(q);
UPDATE leadmgmt.lead SET merged_into = NULL WHERE id IN (1, 2);

-- nothing stored above breaks a view
DO $$
DECLARE
	v text;
	failed text[] := '{}';
BEGIN
	FOR v IN SELECT c.oid::regclass::text FROM pg_class c
	          WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'v' ORDER BY 1 LOOP
		BEGIN
			EXECUTE format('SELECT count(*) FROM %s', v);
		EXCEPTION WHEN OTHERS THEN
			failed := failed || (v || ': ' || SQLSTATE);
		END;
	END LOOP;
	RAISE NOTICE 'views failing: %', failed;
END $$;
DROP EXTENSION leadmgmt CASCADE;
