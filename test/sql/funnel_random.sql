-- covers: window_funnel and funnel_step_times on random event sets (fixed seed) against a slow recursive-SQL + PL/pgSQL formulation of ClickHouse's windowFunnel (doc/funnel.md), 11 modes
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET timezone = 'UTC';

-- 600 leads, 0..7 events each within 15 seconds, kinds a, b, c, x (no
-- step), ab (steps 1 and 2) and bc (steps 2 and 3); some NULL timestamps.
-- The window depends on the lead only: 0..5 seconds.
SELECT setseed(0.4242);
CREATE TABLE rnd_ev (id serial, lead int, ts timestamptz, kind text);
INSERT INTO rnd_ev (lead, ts, kind)
SELECT l,
	CASE WHEN random() < 0.03 THEN NULL
	     ELSE timestamptz '2024-01-01 00:00:00+00' + floor(random() * 16) * interval '1 second' END,
	(ARRAY['a', 'b', 'c', 'x', 'a', 'b', 'c', 'ab', 'bc'])[1 + floor(random() * 9)::int]
FROM generate_series(1, 600) l, generate_series(1, 7) i
WHERE random() < 0.6;
CREATE FUNCTION win(lead int) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$ SELECT (lead % 6) * interval '1 second' $$;

-- The reference works on entries: one per (event, step matched), plus one
-- with step 0 per event matching no step, in (time, step, row) order, as
-- ClickHouse scans them (rows in arrival order: the aggregates below read
-- them ORDER BY id).  A chain is entries of steps 1..k at increasing positions, every one
-- within the window of the first; strict_increase: strictly later times;
-- strict_once: distinct rows.  minpos = the earliest position at which a
-- chain of each level is complete.
CREATE TABLE entries AS
SELECT lead, id AS row_id, ts, step, mask,
	row_number() OVER (PARTITION BY lead ORDER BY ts, step, id) AS pos
FROM (
	SELECT e.lead, e.id, e.ts, s.step,
		(CASE WHEN e.kind IN ('a', 'ab') THEN 1 ELSE 0 END
		 + CASE WHEN e.kind IN ('b', 'ab', 'bc') THEN 2 ELSE 0 END
		 + CASE WHEN e.kind IN ('c', 'bc') THEN 4 ELSE 0 END) AS mask
	FROM rnd_ev e
	CROSS JOIN LATERAL (
		SELECT 1 AS step WHERE e.kind IN ('a', 'ab')
		UNION ALL SELECT 2 WHERE e.kind IN ('b', 'ab', 'bc')
		UNION ALL SELECT 3 WHERE e.kind IN ('c', 'bc')
		UNION ALL SELECT 0 WHERE e.kind = 'x') s
	WHERE e.ts IS NOT NULL) x;

CREATE TABLE minpos (lead int, inc boolean, once boolean, level int, minpos bigint);
DO $$
DECLARE
	inc boolean;
	once boolean;
BEGIN
	FOREACH inc IN ARRAY ARRAY[false, true] LOOP
		FOREACH once IN ARRAY ARRAY[false, true] LOOP
			INSERT INTO minpos
			WITH RECURSIVE chain (lead, level, first_ts, last_ts, last_pos, rows_used) AS (
				SELECT lead, 1, ts, ts, pos, ARRAY[row_id] FROM entries WHERE step = 1
				UNION
				SELECT c.lead, c.level + 1, c.first_ts, e.ts, e.pos,
					CASE WHEN once THEN c.rows_used || e.row_id ELSE '{}'::int[] END
				FROM chain c
				JOIN entries e ON e.lead = c.lead AND e.step = c.level + 1 AND e.pos > c.last_pos
				WHERE e.ts - c.first_ts <= win(c.lead)
				  AND (NOT inc OR e.ts > c.last_ts)
				  AND (NOT once OR e.row_id <> ALL (c.rows_used)))
			SELECT lead, inc, once, level, min(last_pos) FROM chain GROUP BY lead, level;
		END LOOP;
	END LOOP;
END
$$;

-- The stop rules, checked before each entry p with reached(k) = a level-k
-- chain is complete before p; the result is the highest level complete
-- before the stop.  strict_increase without strict_once is ClickHouse's one
-- chain per level, overwritten by each later entry that extends the chain
-- below (ClickHouse issue #93789): followed entry by entry.
CREATE FUNCTION ref_level(p_lead int, p_mode text) RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_inc boolean := p_mode LIKE '%strict_increase%';
	v_once boolean := p_mode LIKE '%strict_once%';
	ord boolean := p_mode LIKE '%strict_order%';
	ded boolean := p_mode LIKE '%strict_deduplication%';
	re boolean := p_mode LIKE '%allow_reentry%';
	mp bigint[] := ARRAY[NULL, NULL, NULL, NULL]::bigint[];
	f timestamptz[] := ARRAY[NULL, NULL, NULL]::timestamptz[];
	l timestamptz[] := ARRAY[NULL, NULL, NULL]::timestamptz[];
	r record;
	stop_pos bigint := 9223372036854775807;
BEGIN
	IF v_inc AND NOT v_once THEN
		FOR r IN SELECT pos, step, ts FROM entries e WHERE e.lead = p_lead ORDER BY pos LOOP
			IF r.step = 0 THEN
				EXIT WHEN ord AND f[1] IS NOT NULL;
			ELSIF r.step = 1 THEN
				f[1] := r.ts;
				l[1] := r.ts;
			ELSIF ded AND f[r.step] IS NOT NULL THEN
				EXIT;
			ELSIF ord AND f[1] IS NOT NULL AND f[r.step - 1] IS NULL THEN
				CONTINUE WHEN re;
				EXIT;
			ELSIF f[r.step - 1] IS NOT NULL AND r.ts - f[r.step - 1] <= win(p_lead)
			      AND l[r.step - 1] < r.ts THEN
				f[r.step] := f[r.step - 1];
				l[r.step] := r.ts;
			END IF;
		END LOOP;
		RETURN CASE WHEN f[3] IS NOT NULL THEN 3 WHEN f[2] IS NOT NULL THEN 2
		            WHEN f[1] IS NOT NULL THEN 1 ELSE 0 END;
	END IF;
	FOR r IN SELECT level, m.minpos FROM minpos m
	          WHERE m.lead = p_lead AND m.inc = v_inc AND m.once = v_once LOOP
		mp[r.level] := r.minpos;
	END LOOP;
	FOR r IN SELECT pos, step FROM entries e WHERE e.lead = p_lead ORDER BY pos LOOP
		IF (r.step = 0 AND ord AND coalesce(mp[1] < r.pos, false))
		   OR (r.step >= 2 AND ded AND coalesce(mp[r.step] < r.pos, false))
		   OR (r.step >= 2 AND ord AND NOT re AND coalesce(mp[1] < r.pos, false)
		       AND NOT coalesce(mp[r.step - 1] < r.pos, false)) THEN
			stop_pos := r.pos;
			EXIT;
		END IF;
	END LOOP;
	FOR k IN REVERSE 3..1 LOOP
		IF coalesce(mp[k] < stop_pos, false) THEN
			RETURN k;
		END IF;
	END LOOP;
	RETURN 0;
END
$$;

CREATE TABLE modes (mode text);
INSERT INTO modes VALUES (''), ('strict_increase'), ('strict_once'), ('strict_once,strict_increase'),
	('strict_order'), ('strict_deduplication'), ('strict_order,allow_reentry'),
	('strict_order,strict_deduplication'), ('strict_once,strict_order'),
	('strict_increase,strict_deduplication'),
	('strict_order,allow_reentry,strict_deduplication,strict_once');

CREATE TABLE got AS
SELECT m.mode, e.lead,
	leadmgmt.window_funnel(win(e.lead), m.mode, e.ts, e.kind IN ('a', 'ab'), e.kind IN ('b', 'ab', 'bc'), e.kind IN ('c', 'bc') ORDER BY e.id) AS level,
	leadmgmt.funnel_step_times(win(e.lead), m.mode, e.ts, e.kind IN ('a', 'ab'), e.kind IN ('b', 'ab', 'bc'), e.kind IN ('c', 'bc') ORDER BY e.id) AS times
FROM rnd_ev e CROSS JOIN modes m
GROUP BY m.mode, e.lead;

-- every (mode, lead) agrees with the reference
SELECT count(*) AS compared, count(*) FILTER (WHERE level <> ref_level(lead, mode)) AS mismatches
FROM got;
-- the comparison is not vacuous: levels differ by mode and cover 0..3
SELECT mode, count(*) FILTER (WHERE level = 0) AS l0, count(*) FILTER (WHERE level = 1) AS l1,
	count(*) FILTER (WHERE level = 2) AS l2, count(*) FILTER (WHERE level = 3) AS l3
FROM got GROUP BY mode ORDER BY mode;
-- step times: one per level reached, non-decreasing (strictly with
-- strict_increase), inside the window, each the time of an event of that
-- step; without stop rules (and without strict_increase's overwriting) the
-- last one is the earliest completion
SELECT count(*) FILTER (WHERE cardinality(times) <> level) AS wrong_length,
	count(*) FILTER (WHERE level > 0 AND times[level] - times[1] > win(lead)) AS outside_window,
	count(*) FILTER (WHERE EXISTS (
		SELECT 1 FROM generate_series(2, level) i
		 WHERE times[i] < times[i - 1] OR (mode LIKE '%strict_increase%' AND times[i] = times[i - 1])))
		AS out_of_order,
	count(*) FILTER (WHERE EXISTS (
		SELECT 1 FROM generate_series(1, level) i
		 WHERE NOT EXISTS (SELECT 1 FROM entries x WHERE x.lead = got.lead AND x.step = i AND x.ts = times[i])))
		AS not_an_event,
	count(*) FILTER (WHERE mode IN ('', 'strict_once', 'strict_once,strict_increase') AND level > 0
		AND times[level] <> (SELECT x.ts FROM entries x JOIN minpos m ON m.lead = x.lead AND m.minpos = x.pos
		                      WHERE x.lead = got.lead AND m.level = got.level
		                        AND m.inc = (mode LIKE '%strict_increase%') AND m.once = (mode LIKE '%strict_once%')))
		AS not_earliest
FROM got;
