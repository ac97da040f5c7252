-- covers: train_model / model table / lead_features / predicted_score / suggest_rules on a generated lead history; the worked example of doc/learned.md
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET extra_float_digits = 0;
SET TimeZone = 'UTC';

CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- 300 leads created in the first 60 days of 2024, each with a behaviour
-- pattern decided by its number i, and "won" decided by a known model
-- plus deterministic noise:
--   whitepaper B download (i % 3 = 0)  +2.0
--   seminar attendance     (i % 5 = 0)  +1.5
--   pricing page           (i % 7 = 0)  +1.0
--   e-mail bounce          (i % 11 = 0) -2.0
--   blog views, 0..3 of them             0
CREATE TEMP TABLE gen AS
SELECT i, timestamptz '2024-01-01' + (i % 60) * interval '1 day' AS created_at,
       (ARRAY['it', 'retail', 'manufacturing', 'finance'])[i % 4 + 1] AS industry,
       ((i * 7919) % 1000 + 0.5) / 1000.0 < 1 / (1 + exp(-(-1.5 + 2.0 * (i % 3 = 0)::int + 1.5 * (i % 5 = 0)::int
                                                          + 1.0 * (i % 7 = 0)::int - 2.0 * (i % 11 = 0)::int))) AS wins
  FROM generate_series(1, 300) AS i;
INSERT INTO leadmgmt.lead (id, external_id, source, origin, created_at, attributes)
SELECT i, 'L' || i, 'web_form', 'inbound', created_at, jsonb_build_object('industry', industry) FROM gen;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, campaign, duration_s)
SELECT i, 'download', created_at + interval '3 days', 'Whitepaper B', 'wp-b', NULL::integer FROM gen WHERE i % 3 = 0
UNION ALL
SELECT i, 'seminar_attend', created_at + interval '20 days', 'DX seminar', 'seminar-2024', NULL FROM gen WHERE i % 5 = 0
UNION ALL
SELECT i, 'page_view', created_at + interval '40 days', '/pricing', NULL, 45 FROM gen WHERE i % 7 = 0
UNION ALL
SELECT i, 'email_bounce', created_at + interval '10 days', 'newsletter', 'nl-2024', NULL FROM gen WHERE i % 11 = 0
UNION ALL
SELECT i, 'page_view', created_at + k * interval '5 days', '/blog', NULL, 20 FROM gen, generate_series(1, 3) k WHERE k <= i % 4
UNION ALL
SELECT i, 'download', created_at + interval '1 day', 'report_2024%', NULL, NULL FROM gen WHERE i % 13 = 0;
-- winners go inquiry -> mql -> sal -> sql -> won 100 to 130 days after creation
DO $$
DECLARE
	g record;
BEGIN
	FOR g IN SELECT * FROM gen WHERE wins ORDER BY i LOOP
		PERFORM leadmgmt.set_stage(g.i, 'mql', NULL, g.created_at + interval '100 days');
		PERFORM leadmgmt.set_stage(g.i, 'sal', NULL, g.created_at + interval '110 days');
		PERFORM leadmgmt.set_stage(g.i, 'sql', NULL, g.created_at + interval '120 days');
		PERFORM leadmgmt.set_stage(g.i, 'won', NULL, g.created_at + interval '130 days');
	END LOOP;
END
$$;
SELECT count(*) FILTER (WHERE wins) AS won_leads, count(*) AS leads FROM gen;

-- lift analysis: which behaviours come before a win?
SELECT name, kind, detail_pattern, campaign, points, max_times, leads_with, converted_with,
       round(converted_share::numeric, 3) AS converted_share,
       round(overall_share::numeric, 3) AS overall_share,
       round(lift::numeric, 2) AS lift
  FROM leadmgmt.suggest_rules('won');
-- one row by hand: of the won leads, how many downloaded whitepaper B?
SELECT count(*) FILTER (WHERE i % 3 = 0) AS won_with_download, count(*) AS won,
       round(count(*) FILTER (WHERE i % 3 = 0)::numeric / count(*), 3) AS share,
       round((count(*) FILTER (WHERE i % 3 = 0)::numeric / count(*)) / (100 / 300.0), 2) AS lift
  FROM gen WHERE wins;
-- the point value is 100 * ln(smoothed lift) / ln(16), smoothed with 10
-- pseudo-leads at the base rate; with mql_threshold = 50 every value halves
-- (download: Whitepaper B: 66 of the 100 leads that did it won; 113 of 300 won)
SELECT round(100 * ln(((66 + 10 * 113 / 300.0) / (100 + 10)) / (113 / 300.0)) / ln(16)) AS download_by_hand;
SELECT leadmgmt.set_setting('mql_threshold', '50');
SELECT name, points FROM leadmgmt.suggest_rules('won', min_leads => 20) ORDER BY points DESC, name LIMIT 3;
SELECT leadmgmt.set_setting('mql_threshold', NULL);
-- only leads created since a date, and a smaller minimum support
SELECT count(*) AS rows, max(leads_with) AS most_leads
  FROM leadmgmt.suggest_rules('won', since => '2024-02-01', min_leads => 1);
-- rows are shaped for a scoring-rule table
CREATE TEMP TABLE my_rules AS
SELECT name, kind, detail_pattern, campaign, points, max_times FROM leadmgmt.suggest_rules() WHERE abs(points) >= 10;
SELECT * FROM my_rules ORDER BY name;
-- review, then keep what the built-in rules miss: whitepaper B in particular
-- (the built-in '%whitepaper%' pattern is case-sensitive)
INSERT INTO leadmgmt.scoring_rule (name, kind, detail_pattern, campaign, points, max_times)
SELECT name, kind, detail_pattern, campaign, points, max_times FROM my_rules
 WHERE detail_pattern IS NOT NULL AND points >= 15;
SELECT name, points FROM leadmgmt.scoring_rule WHERE name LIKE 'suggested %' ORDER BY name;
-- the LIKE pattern matches exactly the detail it came from
SELECT 'report_2024%' LIKE detail_pattern AS own_detail, 'reportX2024abc' LIKE detail_pattern AS other_detail
  FROM leadmgmt.suggest_rules(min_leads => 1) WHERE name = 'suggested download: report_2024%';
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT * FROM leadmgmt.suggest_rules('champion')$$),
	($$SELECT * FROM leadmgmt.suggest_rules('lost')$$),
	($$SELECT * FROM leadmgmt.suggest_rules(min_leads => 0)$$),
	($$SELECT * FROM leadmgmt.suggest_rules(lift_at_threshold => 1)$$),
	($$SELECT * FROM leadmgmt.suggest_rules(prior_leads => -1)$$)
	) v(q);

-- train a model: behaviour in the first 90 days, "won within 180 days after"
SELECT name, target_stage, horizon, observe, l2, features, train_rows, train_positive,
       test_rows, test_positive, round(auc_train::numeric, 4) AS auc_train,
       round(auc_test::numeric, 4) AS auc_test
  FROM leadmgmt.train_model('default', attributes => '{industry}', as_of => '2025-06-01');
SELECT features[g] AS feature, round(coef[g + 1]::numeric, 3) AS coef
  FROM leadmgmt.model, generate_series(0, cardinality(features)) g
 WHERE name = 'default' ORDER BY g;
-- the features of lead 15 (created 2024-01-16, industry finance: one
-- download of whitepaper B, three blog views, a seminar 20 days in) at its
-- snapshot, 90 days after creation: ln(1 + count) per kind and per rule
-- (pricing_page: none; the whitepaper B rule: one), recency
-- 2^-(70 days / 30 days), the industry one-hot
SELECT (SELECT array_agg(round(v::numeric, 6)) FROM unnest(leadmgmt.lead_features(spec, 15, timestamptz '2024-01-16' + interval '90 days')) v) AS x,
       (SELECT max(abs(a - b)) FROM unnest(leadmgmt.lead_features(spec, 15, timestamptz '2024-01-16' + interval '90 days'),
                                           ARRAY[ln(2), 0, ln(4), ln(2), 0, ln(2), power(2, -70 / 30.0), 1, 0, 0]::float8[]) u(a, b)) < 1e-12
       AS features_exact
  FROM leadmgmt.model WHERE name = 'default';
-- the observe window: a year later, counts are 0 and recency has decayed
SELECT leadmgmt.lead_features(spec, 15, timestamptz '2025-01-16') AS a_year_later
  FROM leadmgmt.model WHERE name = 'default';
-- the stored coefficients are leadmgmt.logreg over the training split, and
-- the held-out AUC is leadmgmt.auc over the other leads
WITH m AS (SELECT * FROM leadmgmt.model WHERE name = 'default'),
rows AS (
	SELECT l.id, abs(hashint8extended(l.id, m.seed) % 1000) < m.holdout * 1000 AS is_test,
	       EXISTS (SELECT 1 FROM leadmgmt.stage_history h WHERE h.lead_id = l.id AND h.to_stage = 'won'
	                  AND h.changed_at > l.created_at + m.observe AND h.changed_at <= l.created_at + m.observe + m.horizon) AS label,
	       leadmgmt.lead_features(m.spec, l.id, l.created_at + m.observe) AS x
	  FROM leadmgmt.lead l, m)
SELECT (SELECT max(abs(a - b)) FROM unnest(m.coef, (SELECT leadmgmt.logreg(label, x, 1 ORDER BY id) FROM rows WHERE NOT is_test)) u(a, b)) < 1e-12 AS coef_reproduced,
       (SELECT leadmgmt.auc(leadmgmt.logreg_predict(m.coef, x), label) FROM rows WHERE is_test) = m.auc_test AS auc_test_reproduced,
       (SELECT count(*) FROM rows WHERE is_test) = m.test_rows AS split_reproduced
  FROM m;

-- apply it: the probability that a lead wins within 180 days
SELECT id, round(leadmgmt.predicted_score(id, 'default', timestamptz '2024-01-16' + interval '90 days')::numeric, 4) AS p
  FROM leadmgmt.lead WHERE id IN (15, 16) ORDER BY id;
SELECT abs(leadmgmt.predicted_score(15, at => '2024-04-15 12:00+00')
           - leadmgmt.logreg_predict(coef, leadmgmt.lead_features(spec, 15, '2024-04-15 12:00+00'))) < 1e-15 AS default_model_is_latest
  FROM leadmgmt.model WHERE name = 'default';
-- a merged lead is scored as the lead it was merged into
UPDATE leadmgmt.lead SET merged_into = 15 WHERE id = 299;
SELECT leadmgmt.predicted_score(299, 'default', '2024-04-15') = leadmgmt.predicted_score(15, 'default', '2024-04-15') AS merged_resolves;
SELECT leadmgmt.predicted_score(NULL) IS NULL AS null_lead;

-- retraining under the same name replaces the model; other names add one
SELECT (leadmgmt.train_model('default', l2 => 0, attributes => '{industry}', as_of => '2025-06-01')).l2 AS retrained_l2;
SELECT (leadmgmt.train_model('sql_in_90', target_stage => 'sql', horizon => '90 days', holdout => 0, as_of => '2025-06-01')).auc_test IS NULL AS no_test_split;
SELECT name, l2, target_stage, cardinality(features) AS n_features, test_rows FROM leadmgmt.model ORDER BY name;
SELECT leadmgmt.predicted_score(15) = leadmgmt.predicted_score(15, 'sql_in_90') AS latest_is_default;
SELECT q, pg_temp.err(q) AS result FROM (VALUES
	($$SELECT leadmgmt.predicted_score(1, 'nope')$$),
	($$SELECT leadmgmt.predicted_score(1000, 'default')$$),
	($$SELECT leadmgmt.train_model('x', target_stage => 'champion')$$),
	($$SELECT leadmgmt.train_model('x', holdout => 1)$$),
	($$SELECT leadmgmt.train_model('x', l2 => -1)$$),
	($$SELECT leadmgmt.train_model('x', horizon => '0 days')$$),
	($$SELECT leadmgmt.train_model(NULL)$$),
	($$SELECT leadmgmt.train_model('x', as_of => '2024-03-01')$$),
	($$SELECT leadmgmt.train_model('x', target_stage => 'lost', as_of => '2025-06-01')$$)
	) v(q);
SELECT count(*) AS models_after_errors FROM leadmgmt.model;

-- models are user data: pg_dump saves the table
SELECT 'leadmgmt.model'::regclass = ANY (extconfig::regclass[]) AS dumped
  FROM pg_extension WHERE extname = 'leadmgmt';
TRUNCATE leadmgmt.model;
SELECT pg_temp.err($$SELECT leadmgmt.predicted_score(1)$$) AS no_models;
