
-------------------------------------------------------------------------------
-- Attribution: multi-touch attribution of a lead's touches (doc/attribution.md)
-------------------------------------------------------------------------------
-- attribution(model, touch, ts [, milestone]) is a C aggregate returning
-- {touch: weight} per group.  The support functions are C and resolve no
-- names, so they need no pinned search_path.  Both forms share the combine,
-- serialise, deserialise and final functions; the final function sorts a
-- copy of the touches, so it is READ_ONLY.
CREATE FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz)
RETURNS internal
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_trans';
COMMENT ON FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz) IS
	'Transition function of attribution: checks the model and keeps (ts, touch) of rows with both non-NULL';

CREATE FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz, boolean)
RETURNS internal
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_trans_milestone';
COMMENT ON FUNCTION leadmgmt.attribution_trans(internal, text, text, timestamptz, boolean) IS
	'Transition function of attribution with a milestone flag: keeps (ts, touch, milestone) of rows with touch and ts non-NULL';

CREATE FUNCTION leadmgmt.attribution_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_combine';
COMMENT ON FUNCTION leadmgmt.attribution_combine(internal, internal) IS
	'Combine function of attribution: concatenates the touches of two partial states of the same model';

CREATE FUNCTION leadmgmt.attribution_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_serialize';
COMMENT ON FUNCTION leadmgmt.attribution_serialize(internal) IS
	'Serialisation function of attribution (parallel workers)';

CREATE FUNCTION leadmgmt.attribution_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_deserialize';
COMMENT ON FUNCTION leadmgmt.attribution_deserialize(bytea, internal) IS
	'Deserialisation function of attribution: validates lengths, counts and the model before use';

CREATE FUNCTION leadmgmt.attribution_final(internal)
RETURNS jsonb
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_attribution_final';
COMMENT ON FUNCTION leadmgmt.attribution_final(internal) IS
	'Final function of attribution: sorts a copy of the touches and returns {touch: weight}, weights summing to exactly 1';

-- Both forms differ only in their arguments, so one template declares them
-- (the same objects as literal CREATE AGGREGATE statements;
-- test/expected/install.out lists them).  SSPACE: state bytes per group
-- measured by bench/aggregates.sh (doc/scaling.md).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('attribution', 'model text, touch text, ts timestamptz',                    'attribution_final'),
		('attribution', 'model text, touch text, ts timestamptz, milestone boolean', 'attribution_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.attribution_trans,
			STYPE = internal,
			SSPACE = 984,
			FINALFUNC = leadmgmt.%I,
			FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.attribution_combine,
			SERIALFUNC = leadmgmt.attribution_serialize,
			DESERIALFUNC = leadmgmt.attribution_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz) IS
	'Per group {touch: weight} under model first_touch, last_touch, linear, u_shaped or ''time_decay:<half-life>''; weights sum to exactly 1, repeated touches summed; NULL touch or ts rows skipped; NULL for no touches';

COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz, boolean) IS
	'attribution with a milestone flag, needed by w_shaped (30 % first, 30 % first milestone, 30 % last, 10 % the others); other models ignore it';

-- campaign_attribution: won deals and open pipeline credited to campaigns
-- with the linear model over each deal's campaign touches (activity rows
-- with a campaign) strictly before the deal's credited_at (leadmgmt.deal:
-- the close of a won deal, the opening of an open one; for a lead without
-- opportunities its first entry into 'won', or the entry that started its
-- current stay in 'sql').  Merged leads are excluded.  A deal with no
-- campaign touch before that time credits no campaign.  One row per campaign
-- and currency: amounts in different currencies are never added up.
CREATE VIEW leadmgmt.campaign_attribution WITH (security_invoker = true) AS
	WITH credit AS (
		SELECT d.status = 'won' AS won, d.amount, d.currency,
		       leadmgmt.attribution('linear', a.campaign, a.occurred_at) AS weights
		  FROM leadmgmt.deal d
		  JOIN leadmgmt.activity a
		    ON a.lead_id = d.lead_id AND a.campaign IS NOT NULL AND a.occurred_at < d.credited_at
		 WHERE d.status IN ('won', 'open')
		 GROUP BY d.status, d.lead_id, d.opportunity_id, d.amount, d.currency
	)
	SELECT e.key AS campaign, 'linear'::text AS model,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE c.won), 0)::float8 AS won_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE c.won), 0)) AS won_amount,
	       COALESCE(sum(e.value::numeric) FILTER (WHERE NOT c.won), 0)::float8 AS pipeline_deals,
	       trim_scale(COALESCE(sum(c.amount * e.value::numeric) FILTER (WHERE NOT c.won), 0)) AS pipeline_amount,
	       c.currency
	  FROM credit c, jsonb_each(c.weights) e
	 GROUP BY e.key, c.currency;
COMMENT ON VIEW leadmgmt.campaign_attribution IS
	'Won deals and open pipeline credited to campaigns (linear model) over each deal''s campaign touches before it closed won or opened (leadmgmt.deal); one row per campaign and currency; merged leads excluded';
COMMENT ON COLUMN leadmgmt.campaign_attribution.campaign IS 'activity.campaign of the touches';
COMMENT ON COLUMN leadmgmt.campaign_attribution.model IS 'attribution model used: linear';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_deals IS 'fractional count of won deals in this currency credited to the campaign (sum of its weights)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.won_amount IS 'sum of deal amount x weight over won deals (NULL amounts add nothing)';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_deals IS 'fractional count of open deals in this currency credited to the campaign';
COMMENT ON COLUMN leadmgmt.campaign_attribution.pipeline_amount IS 'sum of deal amount x weight over open deals';
COMMENT ON COLUMN leadmgmt.campaign_attribution.currency IS 'ISO 4217 currency of the deals of this row (NULL: deals without an amount or currency)';
