
-------------------------------------------------------------------------------
-- Learned scoring: logistic regression, AUC, models, rule suggestions
-- (doc/learned.md; C in src/learned.c, src/auc.c, src/core/logreg.c, src/core/auc.c)
-------------------------------------------------------------------------------
-- Aggregates are pure and parallel safe; their support functions are named
-- after the aggregate.  The in-memory logreg keeps every row (8 bytes per
-- feature); leadmgmt.logreg_train() runs one O(p^2)-state Newton-step
-- aggregate per iteration for data that does not fit.

CREATE TYPE leadmgmt.logreg_result AS (
	coef           float8[],
	std_err        float8[],
	z_stats        float8[],
	p_values       float8[],
	odds_ratios    float8[],
	log_likelihood float8,
	condition_no   float8,
	num_rows       bigint,
	num_positive   bigint,
	iterations     integer,
	l2             float8
);
COMMENT ON TYPE leadmgmt.logreg_result IS
	'A fitted logistic regression with Wald statistics (as MADlib''s logregr_train reports them); arrays are intercept first';
COMMENT ON COLUMN leadmgmt.logreg_result.coef IS 'coefficients, intercept first';
COMMENT ON COLUMN leadmgmt.logreg_result.std_err IS 'standard errors: square roots of the diagonal of the inverse Hessian of the (penalised) objective';
COMMENT ON COLUMN leadmgmt.logreg_result.z_stats IS 'Wald z statistics, coef / std_err';
COMMENT ON COLUMN leadmgmt.logreg_result.p_values IS 'two-sided p-values of the z statistics under the standard normal';
COMMENT ON COLUMN leadmgmt.logreg_result.odds_ratios IS 'exp(coef)';
COMMENT ON COLUMN leadmgmt.logreg_result.log_likelihood IS 'log-likelihood at the solution (without the penalty)';
COMMENT ON COLUMN leadmgmt.logreg_result.condition_no IS 'condition number estimate of the Hessian (squared ratio of the largest to the smallest Cholesky pivot)';
COMMENT ON COLUMN leadmgmt.logreg_result.num_rows IS 'rows used (rows with a NULL label or features are skipped)';
COMMENT ON COLUMN leadmgmt.logreg_result.num_positive IS 'rows with label true';
COMMENT ON COLUMN leadmgmt.logreg_result.iterations IS 'Newton steps (passes over the data for logreg_train)';
COMMENT ON COLUMN leadmgmt.logreg_result.l2 IS 'ridge penalty used';

-- logreg and logreg_summary: in-memory state (every row kept)
CREATE FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[])
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_trans';
COMMENT ON FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[]) IS
	'Transition function of leadmgmt.logreg(label, features): stores the row';

CREATE FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[], float8)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_trans_l2';
COMMENT ON FUNCTION leadmgmt.logreg_trans(internal, boolean, float8[], float8) IS
	'Transition function of leadmgmt.logreg(label, features, l2): stores the row, l2 fixed by the first row';

CREATE FUNCTION leadmgmt.logreg_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_combine';
COMMENT ON FUNCTION leadmgmt.logreg_combine(internal, internal) IS
	'Combine function of leadmgmt.logreg: concatenates two partial states';

CREATE FUNCTION leadmgmt.logreg_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_serialize';
COMMENT ON FUNCTION leadmgmt.logreg_serialize(internal) IS
	'Serialise function of leadmgmt.logreg (partial states up to 1 GB)';

CREATE FUNCTION leadmgmt.logreg_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_deserialize';
COMMENT ON FUNCTION leadmgmt.logreg_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.logreg; validates its input';

CREATE FUNCTION leadmgmt.logreg_final(internal)
RETURNS float8[]
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_final';
COMMENT ON FUNCTION leadmgmt.logreg_final(internal) IS
	'Final function of leadmgmt.logreg: Newton fit, coefficients intercept first';

CREATE FUNCTION leadmgmt.logreg_summary_final(internal)
RETURNS leadmgmt.logreg_result
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_summary_final';
COMMENT ON FUNCTION leadmgmt.logreg_summary_final(internal) IS
	'Final function of leadmgmt.logreg_summary: Newton fit plus standard errors, z and p-values';

-- The four aggregates differ only in their arguments and final function, so
-- one template declares them (the same objects as literal CREATE AGGREGATE
-- statements; test/expected/install.out lists them).  SSPACE: state bytes
-- per group measured by bench/aggregates.sh (doc/scaling.md).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('logreg',         'label boolean, features float8[]',            'logreg_final'),
		('logreg',         'label boolean, features float8[], l2 float8', 'logreg_final'),
		('logreg_summary', 'label boolean, features float8[]',            'logreg_summary_final'),
		('logreg_summary', 'label boolean, features float8[], l2 float8', 'logreg_summary_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.logreg_trans,
			STYPE = internal,
			SSPACE = 1024,
			FINALFUNC = leadmgmt.%I,
			COMBINEFUNC = leadmgmt.logreg_combine,
			SERIALFUNC = leadmgmt.logreg_serialize,
			DESERIALFUNC = leadmgmt.logreg_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[]) IS
	'Logistic regression by maximum likelihood (Newton/IRLS): coefficients, intercept first; rows with a NULL label or features are skipped';

COMMENT ON AGGREGATE leadmgmt.logreg(boolean, float8[], float8) IS
	'L2-regularised logistic regression: minimises -loglik + (l2/2)*||beta_1..p||^2 (intercept not penalised; scikit-learn C = 1/l2); coefficients, intercept first';

COMMENT ON AGGREGATE leadmgmt.logreg_summary(boolean, float8[]) IS
	'Logistic regression with standard errors, z statistics, p-values and odds ratios (leadmgmt.logreg_result)';

COMMENT ON AGGREGATE leadmgmt.logreg_summary(boolean, float8[], float8) IS
	'L2-regularised logistic regression with standard errors from the penalised Hessian, z statistics, p-values and odds ratios';

CREATE FUNCTION leadmgmt.logreg_predict(coef float8[], features float8[])
RETURNS float8
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_predict';
COMMENT ON FUNCTION leadmgmt.logreg_predict(float8[], float8[]) IS
	'Probability 1 / (1 + exp(-(coef[1] + coef[2:] . features))) for coefficients from leadmgmt.logreg()';

-- logreg_step: one Newton step over data of any size (O(p^2) state)
CREATE FUNCTION leadmgmt.logreg_step_trans(internal, boolean, float8[], float8[])
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_trans';
COMMENT ON FUNCTION leadmgmt.logreg_step_trans(internal, boolean, float8[], float8[]) IS
	'Transition function of leadmgmt.logreg_step: adds the row''s gradient and Hessian at coef';

CREATE FUNCTION leadmgmt.logreg_step_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_combine';
COMMENT ON FUNCTION leadmgmt.logreg_step_combine(internal, internal) IS
	'Combine function of leadmgmt.logreg_step: adds two partial sums';

CREATE FUNCTION leadmgmt.logreg_step_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_serialize';
COMMENT ON FUNCTION leadmgmt.logreg_step_serialize(internal) IS
	'Serialise function of leadmgmt.logreg_step';

CREATE FUNCTION leadmgmt.logreg_step_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_deserialize';
COMMENT ON FUNCTION leadmgmt.logreg_step_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.logreg_step; validates its input';

CREATE FUNCTION leadmgmt.logreg_step_final(internal)
RETURNS float8[]
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_final';
COMMENT ON FUNCTION leadmgmt.logreg_step_final(internal) IS
	'Final function of leadmgmt.logreg_step: the accumulated sums as an array';

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.logreg_step(label boolean, features float8[], coef float8[]) (
	SFUNC = leadmgmt.logreg_step_trans,
	STYPE = internal,
	SSPACE = 672,
	FINALFUNC = leadmgmt.logreg_step_final,
	COMBINEFUNC = leadmgmt.logreg_step_combine,
	SERIALFUNC = leadmgmt.logreg_step_serialize,
	DESERIALFUNC = leadmgmt.logreg_step_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.logreg_step(boolean, float8[], float8[]) IS
	'Sums for one Newton step at coef: {rows, positives, -loglik, misclassified rows, gradient (p+1), X''WX (p+1)^2 upper triangle}; feed to logreg_step_solve()';

CREATE FUNCTION leadmgmt.logreg_step_solve(coef float8[], step float8[], l2 float8,
	OUT new_coef float8[], OUT max_step float8, OUT objective float8)
RETURNS record
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_solve';
COMMENT ON FUNCTION leadmgmt.logreg_step_solve(float8[], float8[], float8) IS
	'Newton update from logreg_step sums: next coefficients, largest relative step, penalised objective at coef';

CREATE FUNCTION leadmgmt.logreg_step_result(coef float8[], step float8[], l2 float8, iterations integer)
RETURNS leadmgmt.logreg_result
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_logreg_step_result';
COMMENT ON FUNCTION leadmgmt.logreg_step_result(float8[], float8[], float8, integer) IS
	'A leadmgmt.logreg_result (standard errors, z, p) from coefficients and the logreg_step sums at them';

CREATE FUNCTION leadmgmt.logreg_train(source regclass, label text, features text,
                                      l2 float8 DEFAULT 0, max_iterations integer DEFAULT 100)
RETURNS leadmgmt.logreg_result
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	step_query text;
	p integer;
	coef float8[];
	prev float8[];
	prev_objective float8 := 'Infinity';
	sums float8[];
	s record;
	iteration integer := 0;
	halvings integer := 0;
BEGIN
	IF source IS NULL OR label IS NULL OR features IS NULL THEN
		RAISE EXCEPTION 'source, label and features must not be null' USING ERRCODE = '22004';
	END IF;
	IF l2 IS NULL OR l2 < 0 OR l2 IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', l2
			USING ERRCODE = '22023',
			      HINT = 'l2 is the ridge penalty (scikit-learn''s 1/C); 0 means plain maximum likelihood.';
	END IF;
	IF max_iterations IS NULL OR max_iterations < 1 THEN
		RAISE EXCEPTION 'max_iterations must be at least 1, got %', max_iterations USING ERRCODE = '22023';
	END IF;

	EXECUTE format('SELECT pg_catalog.cardinality((%s)::float8[]) FROM %s WHERE (%s) IS NOT NULL AND (%s) IS NOT NULL LIMIT 1',
	               features, source, label, features)
	   INTO p;
	IF p IS NULL THEN
		RETURN NULL;		-- no rows: like the aggregates
	END IF;
	step_query := format('SELECT leadmgmt.logreg_step((%s)::boolean, (%s)::float8[], $1) FROM %s',
	                     label, features, source);
	coef := array_fill(0::float8, ARRAY[p + 1]);
	LOOP
		iteration := iteration + 1;
		EXECUTE step_query INTO sums USING coef;
		s := leadmgmt.logreg_step_solve(coef, sums, l2);
		IF s.objective > prev_objective + 1e-12 * (1 + abs(prev_objective)) AND halvings < 30 THEN
			-- the full step overshot: go back halfway towards the previous point
			coef := ARRAY(SELECT (a + b) / 2 FROM unnest(prev, coef) AS u(a, b));
			halvings := halvings + 1;
		ELSIF s.max_step <= 1e-10 THEN
			RETURN leadmgmt.logreg_step_result(s.new_coef, sums, l2, iteration);
		ELSE
			prev := coef;
			prev_objective := s.objective;
			coef := s.new_coef;
			halvings := 0;
		END IF;
		IF iteration >= max_iterations THEN
			RAISE EXCEPTION 'logistic regression did not converge in % passes', iteration
				USING ERRCODE = 'LM021',
				      DETAIL = format('Last relative step %s, objective %s.', s.max_step, s.objective),
				      HINT = 'The classes may be quasi-separated: pass l2 > 0, rescale the features, or raise max_iterations.';
		END IF;
	END LOOP;
END
$$;
COMMENT ON FUNCTION leadmgmt.logreg_train(regclass, text, text, float8, integer) IS
	'Logistic regression over a table or view of any size: one leadmgmt.logreg_step pass per Newton iteration (O(p^2) memory); label and features are SQL expressions over source, evaluated with search_path = pg_catalog';

-- auc
CREATE FUNCTION leadmgmt.auc_trans(internal, float8, boolean)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_trans';
COMMENT ON FUNCTION leadmgmt.auc_trans(internal, float8, boolean) IS
	'Transition function of leadmgmt.auc: stores the score by class';

CREATE FUNCTION leadmgmt.auc_combine(internal, internal)
RETURNS internal
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_combine';
COMMENT ON FUNCTION leadmgmt.auc_combine(internal, internal) IS
	'Combine function of leadmgmt.auc: concatenates two partial states';

CREATE FUNCTION leadmgmt.auc_serialize(internal)
RETURNS bytea
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_serialize';
COMMENT ON FUNCTION leadmgmt.auc_serialize(internal) IS
	'Serialise function of leadmgmt.auc';

CREATE FUNCTION leadmgmt.auc_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c STRICT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_deserialize';
COMMENT ON FUNCTION leadmgmt.auc_deserialize(bytea, internal) IS
	'Deserialise function of leadmgmt.auc; validates its input';

CREATE FUNCTION leadmgmt.auc_final(internal)
RETURNS float8
LANGUAGE c CALLED ON NULL INPUT IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_auc_final';
COMMENT ON FUNCTION leadmgmt.auc_final(internal) IS
	'Final function of leadmgmt.auc: sorts the scores in place and counts pairs';

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.auc(score float8, label boolean) (
	SFUNC = leadmgmt.auc_trans,
	STYPE = internal,
	SSPACE = 280,
	FINALFUNC = leadmgmt.auc_final,
	FINALFUNC_MODIFY = READ_WRITE,
	COMBINEFUNC = leadmgmt.auc_combine,
	SERIALFUNC = leadmgmt.auc_serialize,
	DESERIALFUNC = leadmgmt.auc_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.auc(float8, boolean) IS
	'Exact ROC AUC: share of (positive, negative) pairs ranked correctly, ties one half; NULL without both classes; rows with a NULL score or label are skipped';

-------------------------------------------------------------------------------
-- Managed models: features from the activity log, train, store, apply
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.model (
	name           text PRIMARY KEY,
	target_stage   text NOT NULL REFERENCES leadmgmt.stage (name),
	horizon        interval NOT NULL,
	observe        interval NOT NULL,
	l2             float8 NOT NULL,
	features       text[] NOT NULL,
	spec           jsonb NOT NULL,
	coef           float8[] NOT NULL,
	holdout        float8 NOT NULL,
	seed           integer NOT NULL,
	as_of          timestamptz NOT NULL,
	train_rows     bigint NOT NULL,
	train_positive bigint NOT NULL,
	test_rows      bigint NOT NULL,
	test_positive  bigint NOT NULL,
	auc_train      float8,
	auc_test       float8,
	trained_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	trained_by     text NOT NULL DEFAULT SESSION_USER,
	CONSTRAINT model_coef_matches_features
		CHECK (pg_catalog.cardinality(coef) = pg_catalog.cardinality(features) + 1)
);
COMMENT ON TABLE leadmgmt.model IS
	'Learned scoring models trained by leadmgmt.train_model() and applied by leadmgmt.predicted_score()';
COMMENT ON COLUMN leadmgmt.model.name IS 'model name; training again under the same name replaces the model';
COMMENT ON COLUMN leadmgmt.model.target_stage IS 'the label: the lead reached this stage within horizon after the snapshot';
COMMENT ON COLUMN leadmgmt.model.horizon IS 'how long after the snapshot the target stage counts';
COMMENT ON COLUMN leadmgmt.model.observe IS 'behaviour window: activity in the observe period before the snapshot makes the counts; training snapshots are at created_at + observe';
COMMENT ON COLUMN leadmgmt.model.l2 IS 'ridge penalty of the fit';
COMMENT ON COLUMN leadmgmt.model.features IS 'feature names in coefficient order (after the intercept)';
COMMENT ON COLUMN leadmgmt.model.spec IS 'how leadmgmt.lead_features() computes the features (activity kinds, attribute levels, windows)';
COMMENT ON COLUMN leadmgmt.model.coef IS 'coefficients, intercept first, for leadmgmt.logreg_predict()';
COMMENT ON COLUMN leadmgmt.model.holdout IS 'share of leads held out for testing, chosen by a seeded hash of the lead id';
COMMENT ON COLUMN leadmgmt.model.seed IS 'seed of the hold-out hash';
COMMENT ON COLUMN leadmgmt.model.as_of IS 'training time point: only leads whose snapshot + horizon lies before it were used';
COMMENT ON COLUMN leadmgmt.model.train_rows IS 'leads in the training split';
COMMENT ON COLUMN leadmgmt.model.train_positive IS 'training leads that reached the target stage';
COMMENT ON COLUMN leadmgmt.model.test_rows IS 'leads in the held-out split';
COMMENT ON COLUMN leadmgmt.model.test_positive IS 'held-out leads that reached the target stage';
COMMENT ON COLUMN leadmgmt.model.auc_train IS 'ROC AUC on the training split';
COMMENT ON COLUMN leadmgmt.model.auc_test IS 'ROC AUC on the held-out split (NULL when it lacks a class)';
COMMENT ON COLUMN leadmgmt.model.trained_at IS 'when the model was trained';
COMMENT ON COLUMN leadmgmt.model.trained_by IS 'session user who trained it';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.model', '');

CREATE FUNCTION leadmgmt.lead_features(spec jsonb, lead bigint, at timestamptz)
RETURNS float8[]
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	WITH act AS (
		SELECT a.kind, a.occurred_at, a.detail, a.campaign, a.duration_s
		  FROM leadmgmt.activity a
		 WHERE a.lead_id = lead_features.lead AND a.occurred_at <= lead_features.at
	), f(ord, v) AS (
		-- ln(1 + count) of each activity kind within the observe window
		SELECT k.ord, ln(1 + (SELECT count(*) FROM act
		                       WHERE act.kind = k.kind
		                         AND act.occurred_at > lead_features.at - (spec ->> 'observe')::interval))::float8
		  FROM jsonb_array_elements_text(spec -> 'kinds') WITH ORDINALITY AS k(kind, ord)
		UNION ALL
		-- ln(1 + count) of the activities matching each scoring rule of the spec
		SELECT 500000 + r.ord, ln(1 + (SELECT count(*) FROM act
		                       WHERE act.occurred_at > lead_features.at - (spec ->> 'observe')::interval
		                         AND act.kind = r.rule ->> 'kind'
		                         AND (r.rule ->> 'detail_pattern' IS NULL OR act.detail LIKE r.rule ->> 'detail_pattern')
		                         AND (r.rule ->> 'campaign' IS NULL OR act.campaign = r.rule ->> 'campaign')
		                         AND (r.rule ->> 'min_duration_s' IS NULL
		                              OR act.duration_s >= (r.rule ->> 'min_duration_s')::integer)))::float8
		  FROM jsonb_array_elements(COALESCE(spec -> 'rules', '[]')) WITH ORDINALITY AS r(rule, ord)
		UNION ALL
		-- recency: 2^-(time since the last activity / half-life), 0 without activity
		SELECT 1000000, COALESCE(power(2::float8,
		           -(extract(epoch FROM lead_features.at - max(act.occurred_at))
		             / extract(epoch FROM (spec ->> 'recency_half_life')::interval))::float8), 0)
		  FROM act
		UNION ALL
		-- one-hot firmographic attribute levels
		SELECT 2000000 + x.ord, (COALESCE(l.attributes ->> (x.level ->> 'key') = x.level ->> 'value', false))::integer::float8
		  FROM jsonb_array_elements(spec -> 'attributes') WITH ORDINALITY AS x(level, ord)
		  LEFT JOIN leadmgmt.lead l ON l.id = lead_features.lead
	)
	SELECT array_agg(f.v ORDER BY f.ord) FROM f;
END;
COMMENT ON FUNCTION leadmgmt.lead_features(jsonb, bigint, timestamptz) IS
	'Feature vector of a lead at a time point as described by a model spec (leadmgmt.model.spec): per-kind and per-rule ln(1 + count) in the observe window, recency, one-hot attributes';

CREATE FUNCTION leadmgmt.train_model(name text, target_stage text DEFAULT 'won',
                                     horizon interval DEFAULT '180 days',
                                     observe interval DEFAULT '90 days',
                                     l2 float8 DEFAULT 1,
                                     attributes text[] DEFAULT '{}',
                                     holdout float8 DEFAULT 0.3,
                                     seed integer DEFAULT 0,
                                     as_of timestamptz DEFAULT pg_catalog.now(),
                                     min_level_leads integer DEFAULT 5)
RETURNS leadmgmt.model
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	spec jsonb;
	names text[];
	fit float8[];
	m leadmgmt.model;
	kinds text[];
	rules jsonb;
	levels jsonb;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'model name must not be null' USING ERRCODE = '22004';
	END IF;
	IF NOT (EXISTS (SELECT 1 FROM leadmgmt.stage s WHERE s.name = target_stage)) THEN
		RAISE EXCEPTION 'unknown stage "%"', target_stage
			USING ERRCODE = 'LM002',
			      HINT = 'Stages: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.rank DESC, s.name) FROM leadmgmt.stage s) || '.';
	END IF;
	IF horizon IS NULL OR horizon <= interval '0' OR observe IS NULL OR observe <= interval '0' THEN
		RAISE EXCEPTION 'horizon and observe must be positive intervals' USING ERRCODE = '22023';
	END IF;
	IF holdout IS NULL OR NOT (holdout >= 0 AND holdout < 1) THEN
		RAISE EXCEPTION 'holdout must be in [0, 1), got %', holdout USING ERRCODE = '22023';
	END IF;
	IF l2 IS NULL OR l2 < 0 OR l2 IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'l2 must be a finite number >= 0, got %', l2 USING ERRCODE = '22023';
	END IF;
	IF seed IS NULL OR as_of IS NULL OR attributes IS NULL OR min_level_leads IS NULL THEN
		RAISE EXCEPTION 'seed, as_of, attributes and min_level_leads must not be null' USING ERRCODE = '22004';
	END IF;

	-- one training example per lead: snapshot at created_at + observe, the
	-- label decided within horizon after it, leads already at the target
	-- stage by the snapshot left out.  For target_stage 'won' a deal the CRM
	-- reported won (leadmgmt.opportunity, closed_at) counts as reaching it,
	-- also when the stage machine refused to move the lead.
	CREATE TEMPORARY TABLE pg_temp.lm_train_leads ON COMMIT DROP AS
	SELECT l.id, l.created_at + observe AS snapshot,
	       EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                  AND h.changed_at > l.created_at + observe
	                  AND h.changed_at <= l.created_at + observe + horizon)
	       OR (target_stage = 'won'
	           AND EXISTS (SELECT 1 FROM leadmgmt.opportunity o
	                        WHERE o.lead_id = l.id AND o.status = 'won'
	                          AND o.closed_at > l.created_at + observe
	                          AND o.closed_at <= l.created_at + observe + horizon)) AS label,
	       (abs(hashint8extended(l.id, seed) % 1000) < holdout * 1000) AS is_test
	  FROM leadmgmt.lead l
	 WHERE l.merged_into IS NULL
	   AND l.created_at + observe + horizon <= as_of
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.stage_history h
	                    WHERE h.lead_id = l.id AND h.to_stage = target_stage
	                      AND h.changed_at <= l.created_at + observe)
	   AND NOT (target_stage = 'won'
	            AND EXISTS (SELECT 1 FROM leadmgmt.opportunity o
	                         WHERE o.lead_id = l.id AND o.status = 'won'
	                           AND o.closed_at <= l.created_at + observe));

	SELECT COALESCE(array_agg(DISTINCT a.kind ORDER BY a.kind), '{}') INTO kinds
	  FROM pg_temp.lm_train_leads t
	  JOIN leadmgmt.activity a ON a.lead_id = t.id
	 WHERE NOT t.is_test AND a.occurred_at <= t.snapshot AND a.occurred_at > t.snapshot - observe;

	-- active scoring rules narrower than their kind (a pattern, campaign or
	-- minimum duration) that match some training activity; their
	-- definitions are copied into the spec, so editing a rule later does not
	-- change what the model computes
	SELECT COALESCE(jsonb_agg(jsonb_build_object('name', r.name, 'kind', r.kind,
	                                             'detail_pattern', r.detail_pattern,
	                                             'campaign', r.campaign,
	                                             'min_duration_s', r.min_duration_s) ORDER BY r.name), '[]')
	  INTO rules
	  FROM leadmgmt.scoring_rule r
	 WHERE r.active
	   AND (r.detail_pattern IS NOT NULL OR r.campaign IS NOT NULL OR r.min_duration_s IS NOT NULL)
	   AND EXISTS (SELECT 1 FROM pg_temp.lm_train_leads t
	                 JOIN leadmgmt.activity a ON a.lead_id = t.id
	                WHERE NOT t.is_test AND a.occurred_at <= t.snapshot AND a.occurred_at > t.snapshot - observe
	                  AND a.kind = r.kind
	                  AND (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
	                  AND (r.campaign IS NULL OR a.campaign = r.campaign)
	                  AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s));

	-- attribute levels seen on at least min_level_leads training leads; the
	-- most frequent level of each key is the reference (no column)
	SELECT COALESCE(jsonb_agg(jsonb_build_object('key', c.key, 'value', c.value) ORDER BY c.key_ord, c.value), '[]')
	  INTO levels
	  FROM (SELECT k.key, k.ord AS key_ord, l.attributes ->> k.key AS value, count(*) AS n,
	               rank() OVER (PARTITION BY k.key ORDER BY count(*) DESC, l.attributes ->> k.key) AS r
	          FROM unnest(attributes) WITH ORDINALITY AS k(key, ord)
	          CROSS JOIN pg_temp.lm_train_leads t
	          JOIN leadmgmt.lead l ON l.id = t.id
	         WHERE NOT t.is_test AND l.attributes ->> k.key IS NOT NULL
	         GROUP BY k.key, k.ord, l.attributes ->> k.key) c
	 WHERE c.n >= min_level_leads AND c.r > 1;

	spec := jsonb_build_object('version', 1, 'observe', observe::text,
	                           'recency_half_life', '30 days',
	                           'kinds', to_jsonb(kinds), 'rules', rules, 'attributes', levels);
	names := ARRAY(SELECT 'count:' || k FROM unnest(kinds) AS k)
	      || ARRAY(SELECT 'rule:' || (r ->> 'name') FROM jsonb_array_elements(rules) AS r)
	      || ARRAY['recency']
	      || ARRAY(SELECT 'attr:' || (x ->> 'key') || '=' || (x ->> 'value') FROM jsonb_array_elements(levels) AS x);

	CREATE TEMPORARY TABLE pg_temp.lm_train_rows ON COMMIT DROP AS
	SELECT t.id, t.label, t.is_test, leadmgmt.lead_features(spec, t.id, t.snapshot) AS x
	  FROM pg_temp.lm_train_leads t;

	IF NOT (EXISTS (SELECT 1 FROM pg_temp.lm_train_rows r WHERE NOT r.is_test AND r.label))
	   AND EXISTS (SELECT 1 FROM pg_temp.lm_train_rows r WHERE NOT r.is_test) THEN
		RAISE EXCEPTION 'no training lead reached stage "%" within % after its snapshot', target_stage, horizon
			USING ERRCODE = 'LM020',
			      DETAIL = format('%s training leads, all negative.', (SELECT count(*) FROM pg_temp.lm_train_rows r WHERE NOT r.is_test)),
			      HINT = 'Pick an earlier stage such as sql, a longer horizon, or wait for more history.';
	END IF;
	SELECT leadmgmt.logreg(r.label, r.x, train_model.l2 ORDER BY r.id) INTO fit
	  FROM pg_temp.lm_train_rows r WHERE NOT r.is_test;
	IF fit IS NULL THEN
		RAISE EXCEPTION 'no lead is old enough to train model "%"', name
			USING ERRCODE = '22023',
			      DETAIL = format('Training needs leads created before %s (as_of - horizon - observe) outside the hold-out split.',
			                      as_of - horizon - observe),
			      HINT = 'Shorten observe or horizon, or wait for more history.';
	END IF;

	INSERT INTO leadmgmt.model AS mm (name, target_stage, horizon, observe, l2, features, spec, coef,
	                                  holdout, seed, as_of, train_rows, train_positive, test_rows,
	                                  test_positive, auc_train, auc_test)
	SELECT train_model.name, train_model.target_stage, train_model.horizon, train_model.observe,
	       train_model.l2, names, spec, fit, train_model.holdout, train_model.seed, train_model.as_of,
	       count(*) FILTER (WHERE NOT r.is_test), count(*) FILTER (WHERE NOT r.is_test AND r.label),
	       count(*) FILTER (WHERE r.is_test), count(*) FILTER (WHERE r.is_test AND r.label),
	       leadmgmt.auc(leadmgmt.logreg_predict(fit, r.x), r.label) FILTER (WHERE NOT r.is_test),
	       leadmgmt.auc(leadmgmt.logreg_predict(fit, r.x), r.label) FILTER (WHERE r.is_test)
	  FROM pg_temp.lm_train_rows r
	ON CONFLICT ON CONSTRAINT model_pkey DO UPDATE
	   SET target_stage = EXCLUDED.target_stage, horizon = EXCLUDED.horizon, observe = EXCLUDED.observe,
	       l2 = EXCLUDED.l2, features = EXCLUDED.features, spec = EXCLUDED.spec, coef = EXCLUDED.coef,
	       holdout = EXCLUDED.holdout, seed = EXCLUDED.seed, as_of = EXCLUDED.as_of,
	       train_rows = EXCLUDED.train_rows, train_positive = EXCLUDED.train_positive,
	       test_rows = EXCLUDED.test_rows, test_positive = EXCLUDED.test_positive,
	       auc_train = EXCLUDED.auc_train, auc_test = EXCLUDED.auc_test,
	       trained_at = EXCLUDED.trained_at, trained_by = EXCLUDED.trained_by
	RETURNING mm.* INTO m;

	DROP TABLE pg_temp.lm_train_rows;
	DROP TABLE pg_temp.lm_train_leads;
	RETURN m;
END
$$;
COMMENT ON FUNCTION leadmgmt.train_model(text, text, interval, interval, float8, text[], float8, integer, timestamptz, integer) IS
	'Train (or retrain) a learned scoring model: per-lead activity and scoring-rule features at created_at + observe, label "reached target_stage within horizon" (for won also: a deal the CRM reported won), L2 logistic regression, AUC on a seeded hold-out split; stored in leadmgmt.model';

CREATE FUNCTION leadmgmt.predicted_score(lead bigint, model text DEFAULT NULL,
                                         at timestamptz DEFAULT pg_catalog.now())
RETURNS float8
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m leadmgmt.model;
	target bigint;
BEGIN
	IF lead IS NULL OR at IS NULL THEN
		RETURN NULL;
	END IF;
	IF model IS NULL THEN
		SELECT * INTO m FROM leadmgmt.model mm ORDER BY mm.trained_at DESC, mm.name LIMIT 1;
	ELSE
		SELECT * INTO m FROM leadmgmt.model mm WHERE mm.name = predicted_score.model;
	END IF;
	IF m.name IS NULL THEN
		RAISE EXCEPTION '%', CASE WHEN model IS NULL THEN 'no model has been trained'
		                          ELSE format('model "%s" does not exist', model) END
			USING ERRCODE = '42704',
			      HINT = 'Train one with leadmgmt.train_model(); leadmgmt.model lists the models.';
	END IF;
	target := leadmgmt.lead_resolve(lead);
	RETURN leadmgmt.logreg_predict(m.coef, leadmgmt.lead_features(m.spec, target, at));
END
$$;
COMMENT ON FUNCTION leadmgmt.predicted_score(bigint, text, timestamptz) IS
	'Probability that the lead reaches the model''s target stage within its horizon, from its activity up to "at" (NULL model: the most recently trained one)';

-------------------------------------------------------------------------------
-- Rule suggestions: lift of each behaviour among converted leads
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.suggest_rules_leads(target_stage text, since timestamptz)
RETURNS TABLE (id bigint, converted_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT l.id,
	       (SELECT min(h.changed_at) FROM leadmgmt.stage_history h
	         WHERE h.lead_id = l.id AND h.to_stage = suggest_rules_leads.target_stage)
	  FROM leadmgmt.lead l
	 WHERE l.merged_into IS NULL
	   AND (suggest_rules_leads.since IS NULL OR l.created_at >= suggest_rules_leads.since);
END;
COMMENT ON FUNCTION leadmgmt.suggest_rules_leads(text, timestamptz) IS
	'Leads analysed by leadmgmt.suggest_rules(): not merged, created since "since", with the first time they reached target_stage (NULL: never)';

CREATE FUNCTION leadmgmt.suggest_rules(target_stage text DEFAULT 'won',
                                       since timestamptz DEFAULT NULL,
                                       min_leads integer DEFAULT 5,
                                       lift_at_threshold float8 DEFAULT 16,
                                       prior_leads float8 DEFAULT 10)
RETURNS TABLE (name text, kind text, detail_pattern text, campaign text, points float8,
               max_times integer, leads_with bigint, converted_with bigint,
               converted_share float8, overall_share float8, conversion_rate float8, lift float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	threshold float8 := leadmgmt.get_setting('mql_threshold')::float8;
	total bigint;
	converted bigint;
BEGIN
	IF NOT (EXISTS (SELECT 1 FROM leadmgmt.stage s WHERE s.name = target_stage)) THEN
		RAISE EXCEPTION 'unknown stage "%"', target_stage
			USING ERRCODE = 'LM002',
			      HINT = 'Stages: ' || (SELECT string_agg(s.name, ', ' ORDER BY s.rank DESC, s.name) FROM leadmgmt.stage s) || '.';
	END IF;
	IF min_leads IS NULL OR min_leads < 1 THEN
		RAISE EXCEPTION 'min_leads must be at least 1, got %', min_leads USING ERRCODE = '22023';
	END IF;
	IF lift_at_threshold IS NULL OR NOT (lift_at_threshold > 1) OR lift_at_threshold = 'Infinity' THEN
		RAISE EXCEPTION 'lift_at_threshold must be a finite number > 1, got %', lift_at_threshold
			USING ERRCODE = '22023',
			      HINT = 'It is the conversion lift a lead needs to reach mql_threshold points: 16 means each doubling of the conversion rate is worth a quarter of the threshold.';
	END IF;
	IF prior_leads IS NULL OR NOT (prior_leads >= 0) OR prior_leads = 'Infinity' THEN
		RAISE EXCEPTION 'prior_leads must be a finite number >= 0, got %', prior_leads USING ERRCODE = '22023';
	END IF;

	SELECT count(*), count(t.converted_at) INTO total, converted
	  FROM leadmgmt.suggest_rules_leads(target_stage, since) t;
	IF converted = 0 THEN
		RAISE EXCEPTION 'no lead reached stage "%"%', target_stage,
			CASE WHEN since IS NULL THEN '' ELSE format(' among the leads created since %s', since) END
			USING ERRCODE = 'LM020',
			      DETAIL = format('%s leads analysed.', total),
			      HINT = 'Lift needs converted leads: pick an earlier stage such as sql, or a longer period.';
	END IF;

	RETURN QUERY
	WITH touched AS (
		-- what each lead did before it converted (everything for the others)
		SELECT DISTINCT a.lead_id, a.kind, a.detail, a.campaign, t.converted_at IS NOT NULL AS conv
		  FROM leadmgmt.suggest_rules_leads(suggest_rules.target_stage, suggest_rules.since) t
		  JOIN leadmgmt.activity a ON a.lead_id = t.id
		 WHERE t.converted_at IS NULL OR a.occurred_at < t.converted_at
	), grouped AS (
		SELECT g.kind, g.detail, g.campaign, GROUPING(g.detail, g.campaign) AS level,
		       count(DISTINCT g.lead_id) AS leads_with,
		       count(DISTINCT g.lead_id) FILTER (WHERE g.conv) AS converted_with
		  FROM touched g
		 GROUP BY GROUPING SETS ((g.kind), (g.kind, g.detail), (g.kind, g.campaign))
	), rated AS (
		SELECT gr.*,
		       ((gr.converted_with + prior_leads * converted::float8 / total)
		        / (gr.leads_with + prior_leads)) / (converted::float8 / total) AS smoothed_lift
		  FROM grouped gr
		 -- a detail (campaign) row needs the detail (campaign) to be set
		 WHERE (gr.level = 3)
		    OR (gr.level = 1 AND gr.detail IS NOT NULL)
		    OR (gr.level = 2 AND gr.campaign IS NOT NULL)
	)
	SELECT 'suggested ' || r.kind || CASE r.level WHEN 1 THEN ': ' || r.detail WHEN 2 THEN ' @ ' || r.campaign ELSE '' END,
	       r.kind,
	       CASE WHEN r.level = 1
	            THEN replace(replace(replace(r.detail, '\', '\\'), '%', '\%'), '_', '\_') END,
	       CASE WHEN r.level = 2 THEN r.campaign END,
	       round(threshold * ln(r.smoothed_lift) / ln(lift_at_threshold))::float8 + 0,  -- no -0
	       1,
	       r.leads_with,
	       r.converted_with,
	       r.converted_with::float8 / converted,
	       r.leads_with::float8 / total,
	       r.converted_with::float8 / r.leads_with,
	       (r.converted_with::float8 / r.leads_with) / (converted::float8 / total)
	  FROM rated r
	 WHERE r.leads_with >= min_leads
	 ORDER BY 5 DESC, 1;
END
$$;
COMMENT ON FUNCTION leadmgmt.suggest_rules(text, timestamptz, integer, float8, float8) IS
	'Lift analysis of converted leads per activity kind, kind + detail and kind + campaign, with suggested rule points on the mql_threshold scale (rows shaped for leadmgmt.scoring_rule)';
