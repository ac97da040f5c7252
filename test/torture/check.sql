-- Torture test invariants (test/torture/run.sh), checked after the last
-- restart.  Prints "ok - ..." or "not ok - ..." per invariant, and the
-- outcome of the run as "# ..." lines.  :expected is the list of SQLSTATEs
-- the run provokes on purpose.
\set ON_ERROR_STOP 1
\pset format unaligned
\pset tuples_only on
SET client_min_messages = warning;

-- the operations refused, by SQLSTATE
SELECT format('# %s %s: %s', o.op, o.sqlstate, count(*)) FROM torture.outcome o
 GROUP BY o.op, o.sqlstate ORDER BY o.op, o.sqlstate;
-- an unexpected one with its detail and where it was raised (a deadlock's
-- detail names the locks and the other process's statement)
SELECT format('#   e.g. %s %s: %s', x.op, x.sqlstate, x.message)
       || coalesce(E'\n#     detail: ' || replace(nullif(x.detail, ''), E'\n', E'\n#     '), '')
       || coalesce(E'\n#     context: ' || replace(nullif(x.context, ''), E'\n', E'\n#     '), '')
  FROM (SELECT DISTINCT ON (o.sqlstate) o.* FROM torture.outcome o
         WHERE o.sqlstate <> ALL (string_to_array(:'expected', ' ')) ORDER BY o.sqlstate, o.at) x;
SELECT format('%s - no unexpected SQLSTATE (expected: %s; unexpected: %s)',
              CASE WHEN count(*) = 0 THEN 'ok' ELSE 'not ok' END, :'expected',
              coalesce(string_agg(DISTINCT o.sqlstate, ' '), 'none'))
  FROM torture.outcome o WHERE o.sqlstate <> ALL (string_to_array(:'expected', ' '));

-- every acknowledged write of the witness sessions survived the crashes
SELECT format('%s - every acknowledged write exists (%s acknowledged: %s track, %s upsert_lead; %s missing)',
              CASE WHEN count(*) > 0 AND count(*) FILTER (WHERE NOT found) = 0 THEN 'ok' ELSE 'not ok' END,
              count(*), count(*) FILTER (WHERE kind = 'track'), count(*) FILTER (WHERE kind = 'lead'),
              count(*) FILTER (WHERE NOT found))
  FROM (SELECT a.kind, CASE a.kind
                 WHEN 'track' THEN EXISTS (SELECT 1 FROM leadmgmt.activity x WHERE x.id = a.id)
                 ELSE EXISTS (SELECT 1 FROM leadmgmt.lead x WHERE x.id = a.id) END AS found
          FROM torture.ack a) t;

-- history: strictly time-ordered per lead in the order it was written,
-- ending in the live lead's stage, at its stage_entered_at
SELECT format('%s - history strictly time-ordered per lead (%s rows, %s leads; %s out of order)',
              CASE WHEN count(*) FILTER (WHERE NOT later) = 0 THEN 'ok' ELSE 'not ok' END,
              (SELECT count(*) FROM leadmgmt.stage_history), (SELECT count(DISTINCT lead_id) FROM leadmgmt.stage_history),
              count(*) FILTER (WHERE NOT later))
  FROM (SELECT h.changed_at > lag(h.changed_at) OVER (PARTITION BY h.lead_id ORDER BY h.id) AS later
          FROM leadmgmt.stage_history h) x WHERE later IS NOT NULL;
SELECT format('%s - each live lead''s last history row is its stage, at stage_entered_at (%s live leads; %s disagree)',
              CASE WHEN count(*) FILTER (WHERE NOT agrees) = 0 THEN 'ok' ELSE 'not ok' END,
              count(*), count(*) FILTER (WHERE NOT agrees))
  FROM (SELECT coalesce(h.to_stage = l.stage AND e.at = l.stage_entered_at, false) AS agrees
          FROM leadmgmt.lead l
          LEFT JOIN LATERAL (SELECT y.to_stage FROM leadmgmt.stage_history y WHERE y.lead_id = l.id
                              ORDER BY y.changed_at DESC, y.id DESC LIMIT 1) h ON true
          LEFT JOIN LATERAL (SELECT max(y.changed_at) AS at FROM leadmgmt.stage_history y
                              WHERE y.lead_id = l.id AND y.from_stage IS DISTINCT FROM y.to_stage) e ON true
         WHERE l.merged_into IS NULL) x;

-- identity: no two live leads share an e-mail key; merged leads keep nothing
SELECT format('%s - no live lead has a live twin by e-mail key (%s keys shared)',
              CASE WHEN count(*) = 0 THEN 'ok' ELSE 'not ok' END, count(*))
  FROM (SELECT l.email_key FROM leadmgmt.lead l WHERE l.merged_into IS NULL AND l.email_key IS NOT NULL
         GROUP BY l.email_key HAVING count(*) > 1) d;
SELECT format('%s - merged leads hold no activity and every merged_into chain ends (%s merged leads, %s activities left on them)',
              CASE WHEN count(a.id) = 0 THEN 'ok' ELSE 'not ok' END,
              (SELECT count(*) FROM leadmgmt.lead x WHERE leadmgmt.lead_resolve(x.id) <> x.id), count(a.id))
  FROM leadmgmt.activity a JOIN leadmgmt.lead l ON l.id = a.lead_id WHERE l.merged_into IS NOT NULL;

-- amcheck on every B-tree of the extension, with heapallindexed
CREATE TEMP TABLE amcheck_result (index text, problem text);
DO $$
DECLARE
	i regclass;
BEGIN
	FOR i IN SELECT c.oid FROM pg_class c JOIN pg_am am ON am.oid = c.relam
	          WHERE c.relkind = 'i' AND am.amname = 'btree'
	            AND c.relnamespace IN ('leadmgmt'::regnamespace, 'torture'::regnamespace) LOOP
		BEGIN
			PERFORM bt_index_check(i, true);
			INSERT INTO amcheck_result VALUES (i::text, NULL);
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO amcheck_result VALUES (i::text, SQLSTATE || ' ' || SQLERRM);
		END;
	END LOOP;
END $$;
SELECT format('%s - amcheck clean (bt_index_check with heapallindexed on %s indexes%s)',
              CASE WHEN count(*) > 0 AND count(problem) = 0 THEN 'ok' ELSE 'not ok' END, count(*),
              coalesce(': ' || string_agg(index || ' ' || problem, '; '), ''))
  FROM amcheck_result;

-- scores: the incremental state equals a full recompute (last: rescore writes)
SELECT format('%s - rescore() returns 0 (it returned %s)', CASE WHEN r = 0 THEN 'ok' ELSE 'not ok' END, r)
  FROM (SELECT leadmgmt.rescore() AS r) x;
SELECT format('# leads %s (live %s, merged %s), activity %s, stage changes %s, hand-offs %s, merges %s',
              (SELECT count(*) FROM leadmgmt.lead), (SELECT count(*) FROM leadmgmt.lead WHERE merged_into IS NULL),
              (SELECT count(*) FROM leadmgmt.lead WHERE merged_into IS NOT NULL),
              (SELECT count(*) FROM leadmgmt.activity), (SELECT count(*) FROM leadmgmt.stage_history WHERE from_stage IS NOT NULL),
              (SELECT count(*) FROM leadmgmt.stage_history WHERE reason = 'score >= threshold'),
              (SELECT count(*) FROM leadmgmt.lead_merge));
