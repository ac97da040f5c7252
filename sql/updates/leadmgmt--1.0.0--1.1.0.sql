-- leadmgmt 1.0.0 -> 1.1.0: what changed in the SQL surface since 1.0.0.
-- The upgrade test (test/t/003_upgrade.pl) checks that installing 1.0.0 and
-- running ALTER EXTENSION leadmgmt UPDATE gives exactly the objects and
-- built-in rows of a fresh 1.1.0 install.
--
-- One section per capability, in the order of sql/parts/; each section says
-- which part files it mirrors.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.1.0'" to load this file. \quit

-- BEGIN reliability (issue: concurrent load and merges)


-- END reliability



-- BEGIN versions (PostgreSQL 15, 17, 18)
-- No SQL change: running on 15, 17 and 18 took C (varatt.h), test, build and
-- packaging changes only; the objects are the same on every version.

-- END versions



-- BEGIN ingest (COPY speed, SSPACE)


-- END ingest



-- BEGIN behavioural (ClickHouse parity, sequences, retention)


-- END behavioural



-- BEGIN structure (one shape for every capability)


-- END structure



-- BEGIN sales loop (change feed, opportunities, campaigns)
-- Mirrors sql/parts/00_schema.sql (settings change_retention, change_channel),
-- 57_opportunity.sql, 60_analytics_attribution.sql (campaign_attribution
-- per currency from leadmgmt.deal), 70_learned.sql (won deals as a label),
-- 85_sales.sql and 92_sales_access.sql.

CREATE OR REPLACE FUNCTION leadmgmt.setting_defaults(
	OUT key text, OUT default_value text, OUT value_type text, OUT description text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	VALUES
	('mql_threshold',      '100',             'float8',   'score at which an inquiry becomes a marketing-qualified lead'),
	('fit_grade_a',        '60',              'float8',   'lowest fit score graded A'),
	('fit_grade_b',        '40',              'float8',   'lowest fit score graded B'),
	('fit_grade_c',        '20',              'float8',   'lowest fit score graded C (below: D)'),
	('notify_channel',     'leadmgmt_sales',  'channel',  'NOTIFY channel for sales hand-offs'),
	('handoff_window',     '7 days',          'interval', 'how long a hand-off waits in the sales queue before it counts as late'),
	('dormant_after',      '90 days',         'interval', 'a lead without activity for this long is dormant'),
	('reengaged_within',   '14 days',         'interval', 'a dormant lead with activity this recent is re-engaged'),
	('stale_after',        '30 days',         'interval', 'an open lead without activity this long is stale'),
	('queue_min_score',    '50',              'float8',   're-engaged leads scoring at least this join the sales queue'),
	('reporting_timezone', 'UTC',             'timezone', 'time zone in which funnel cohorts and months are computed'),
	('rls_by_owner',       'off',             'boolean',  'row-level security: sales roles see only the leads they own'),
	('change_retention',   '30 days',         'interval', 'changes older than this are purged from the change feed when no consumer still needs them'),
	('change_channel',     'leadmgmt_changes', 'channel', 'NOTIFY channel that wakes change feed consumers when a transaction wrote changes')
$$;


-------------------------------------------------------------------------------
-- Opportunities from the CRM: the deals sales reports back (doc/integration.md)
-------------------------------------------------------------------------------
-- One row per CRM deal, written by leadmgmt.record_opportunity() (an
-- idempotent upsert keyed by crm_id).  A customer who buys again has one row
-- per deal; nothing is overwritten but the deal's own fields.  The part sits
-- before the analytics views because campaign_attribution and the deal view
-- read it; the change feed, campaigns and ROI follow in 85_sales.sql.
CREATE SEQUENCE leadmgmt.opportunity_id_seq AS bigint;
CREATE TABLE leadmgmt.opportunity (
	id             bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.opportunity_id_seq'),
	lead_id        bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	crm_id         text NOT NULL CONSTRAINT opportunity_crm_id_key UNIQUE
	               CONSTRAINT opportunity_crm_id_not_empty CHECK (crm_id <> ''),
	name           text,
	amount         numeric CONSTRAINT opportunity_amount_not_negative CHECK (amount >= 0),
	currency       text CONSTRAINT opportunity_currency_iso4217 CHECK (currency ~ '^[A-Z]{3}$'),
	status         text NOT NULL DEFAULT 'open'
	               CONSTRAINT opportunity_status_known CHECK (status IN ('open', 'won', 'lost')),
	created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	closed_at      timestamptz,
	crm_updated_at timestamptz,
	props          jsonb NOT NULL DEFAULT '{}',
	CONSTRAINT opportunity_amount_has_currency CHECK (amount IS NULL OR currency IS NOT NULL),
	CONSTRAINT opportunity_closed_after_created CHECK (closed_at >= created_at)
);
ALTER SEQUENCE leadmgmt.opportunity_id_seq OWNED BY leadmgmt.opportunity.id;
CREATE INDEX opportunity_lead_idx ON leadmgmt.opportunity (lead_id);
COMMENT ON TABLE leadmgmt.opportunity IS
	'Deals reported back by the CRM, one row per CRM deal; write through leadmgmt.record_opportunity()';
COMMENT ON COLUMN leadmgmt.opportunity.id IS 'opportunity id';
COMMENT ON COLUMN leadmgmt.opportunity.lead_id IS 'the lead (a merge moves the deal to the kept lead)';
COMMENT ON COLUMN leadmgmt.opportunity.crm_id IS 'id of the deal in the CRM: the key of record_opportunity()';
COMMENT ON COLUMN leadmgmt.opportunity.name IS 'deal name as the CRM gives it';
COMMENT ON COLUMN leadmgmt.opportunity.amount IS 'deal value (>= 0) in currency';
COMMENT ON COLUMN leadmgmt.opportunity.currency IS 'ISO 4217 currency of amount; required with an amount';
COMMENT ON COLUMN leadmgmt.opportunity.status IS 'open, won or lost';
COMMENT ON COLUMN leadmgmt.opportunity.created_at IS 'when the deal was opened in the CRM';
COMMENT ON COLUMN leadmgmt.opportunity.closed_at IS 'when the deal was won or lost';
COMMENT ON COLUMN leadmgmt.opportunity.crm_updated_at IS 'the CRM''s last-modified time of the deal: older messages are ignored';
COMMENT ON COLUMN leadmgmt.opportunity.props IS 'anything else worth keeping from the CRM (free-form)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.opportunity', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.opportunity_id_seq', '');

-- Deals as the analytics count them: every opportunity of a live lead, and,
-- for a live lead without any opportunity, its own amount as 1.0.0 counted
-- it (won from its first entry into won, open while it stays in sql).
-- credited_at is the time before which a campaign touch earns credit: the
-- close of a won or lost deal, the opening of an open one.
CREATE VIEW leadmgmt.deal WITH (security_invoker = true) AS
	SELECT o.lead_id, o.id AS opportunity_id, o.status, o.amount, o.currency,
	       o.created_at AS opened_at, o.closed_at,
	       CASE WHEN o.status = 'open' THEN o.created_at ELSE o.closed_at END AS credited_at
	  FROM leadmgmt.opportunity o
	  JOIN leadmgmt.lead l ON l.id = o.lead_id
	 WHERE l.merged_into IS NULL
	UNION ALL
	SELECT l.id, NULL, 'won', l.amount, l.currency, NULL, min(h.changed_at), min(h.changed_at)
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'won'
	 WHERE l.merged_into IS NULL
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.opportunity o WHERE o.lead_id = l.id)
	 GROUP BY l.id, l.amount, l.currency
	UNION ALL
	SELECT l.id, NULL, 'open', l.amount, l.currency, max(h.changed_at), NULL, max(h.changed_at)
	  FROM leadmgmt.lead l
	  JOIN leadmgmt.stage_history h ON h.lead_id = l.id AND h.to_stage = 'sql'
	 WHERE l.merged_into IS NULL AND l.stage = 'sql'
	   AND NOT EXISTS (SELECT 1 FROM leadmgmt.opportunity o WHERE o.lead_id = l.id)
	 GROUP BY l.id, l.amount, l.currency;
COMMENT ON VIEW leadmgmt.deal IS
	'Deals of live leads: every opportunity, and for a lead without opportunities its own amount (won at its first entry into won, open while in sql)';
COMMENT ON COLUMN leadmgmt.deal.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.deal.opportunity_id IS 'the opportunity (NULL: the lead''s own amount)';
COMMENT ON COLUMN leadmgmt.deal.status IS 'open, won or lost';
COMMENT ON COLUMN leadmgmt.deal.amount IS 'deal value';
COMMENT ON COLUMN leadmgmt.deal.currency IS 'ISO 4217 currency of amount';
COMMENT ON COLUMN leadmgmt.deal.opened_at IS 'when the deal was opened (for a lead''s own open amount: its entry into sql)';
COMMENT ON COLUMN leadmgmt.deal.closed_at IS 'when it was won or lost';
COMMENT ON COLUMN leadmgmt.deal.credited_at IS 'campaign touches strictly before this time earn credit: closed_at for won and lost deals, opened_at for open ones';

-- The upsert.  Runs as the caller (the connector's role needs the sales
-- privileges of grant_access()); the stage moves go through set_stage, so
-- the stage machine, history and hand-off rules apply as for any move.
CREATE FUNCTION leadmgmt.record_opportunity(crm_id text, lead_id bigint DEFAULT NULL,
                                            email text DEFAULT NULL, external_id text DEFAULT NULL,
                                            amount numeric DEFAULT NULL, currency text DEFAULT NULL,
                                            status text DEFAULT 'open', name text DEFAULT NULL,
                                            created_at timestamptz DEFAULT NULL,
                                            closed_at timestamptz DEFAULT NULL,
                                            crm_updated_at timestamptz DEFAULT NULL)
RETURNS TABLE (opportunity_id bigint, lead bigint, outcome text, lead_stage text, refused_move text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint;
	merged bigint;
	given text;
	old leadmgmt.opportunity;
	have_old boolean;
	v_amount numeric;
	v_currency text;
	v_created timestamptz;
	v_closed timestamptz;
	v_updated timestamptz;
	v_id bigint;
	v_outcome text;
	refused text;
	steps text[];
	step_at timestamptz[];
	current_stage text;
	last_change timestamptz;
	move_at timestamptz;
	i integer;
	tries integer := 0;
BEGIN
	-- validation first: bad input changes nothing
	IF crm_id IS NULL OR crm_id = '' THEN
		RAISE EXCEPTION 'crm_id must not be null or empty' USING ERRCODE = '22004',
			HINT = 'Pass the CRM''s id of the deal: it is the key that makes replays harmless.';
	END IF;
	IF status IS NULL OR status NOT IN ('open', 'won', 'lost') THEN
		RAISE EXCEPTION 'unknown opportunity status "%"', coalesce(status, 'NULL')
			USING ERRCODE = 'LM081',
			      HINT = 'Use open, won or lost; map the CRM''s own stage names onto these three.';
	END IF;
	IF amount < 0 OR amount IN ('NaN', 'Infinity') THEN
		RAISE EXCEPTION 'opportunity amount must be a finite number >= 0, got %', amount
			USING ERRCODE = 'LM080',
			      HINT = 'Give the deal value; a refund or credit note is a deal of its own, not a negative amount.';
	END IF;
	IF currency IS NOT NULL AND currency !~ '^[A-Z]{3}$' THEN
		RAISE EXCEPTION 'currency "%" is not an ISO 4217 code', currency
			USING ERRCODE = 'LM082',
			      HINT = 'Give three capital letters such as JPY, USD or EUR.';
	END IF;

	-- the lead: the strongest identifier given, else the stored deal's lead
	IF record_opportunity.lead_id IS NOT NULL THEN
		given := format('lead id %s', record_opportunity.lead_id);
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.id = record_opportunity.lead_id;
	END IF;
	IF target IS NULL AND record_opportunity.external_id IS NOT NULL THEN
		given := concat_ws(', ', given, format('external id "%s"', record_opportunity.external_id));
		SELECT l.id INTO target FROM leadmgmt.lead l WHERE l.external_id = record_opportunity.external_id;
		IF target IS NULL THEN
			SELECT x.lead_id INTO target FROM leadmgmt.lead_external_id x
			 WHERE x.system = 'crm' AND x.external_id = record_opportunity.external_id;
		END IF;
	END IF;
	IF target IS NULL AND record_opportunity.email IS NOT NULL THEN
		given := concat_ws(', ', given, 'e-mail');
		SELECT l.id INTO target FROM leadmgmt.lead l
		 WHERE l.email_key = leadmgmt.normalize_email(record_opportunity.email) AND l.merged_into IS NULL
		 ORDER BY l.id LIMIT 1;
		IF target IS NULL THEN
			-- the address of a merged duplicate resolves to the lead it was merged into
			SELECT l.id INTO target FROM leadmgmt.lead l
			 WHERE l.email_key = leadmgmt.normalize_email(record_opportunity.email)
			 ORDER BY l.id LIMIT 1;
		END IF;
	END IF;
	IF target IS NULL AND given IS NULL THEN
		SELECT o.lead_id INTO target FROM leadmgmt.opportunity o WHERE o.crm_id = record_opportunity.crm_id;
		IF target IS NULL THEN
			RAISE EXCEPTION 'opportunity "%" names no lead', crm_id
				USING ERRCODE = 'LM087',
				      HINT = 'A new deal needs lead_id, external_id or email of a lead leadmgmt knows.';
		END IF;
	END IF;
	IF target IS NULL THEN
		-- an unknown person is never created here: the CRM and marketing would
		-- disagree about who it is
		RAISE EXCEPTION 'no lead matches opportunity "%" (%)', crm_id, given
			USING ERRCODE = 'LM005',
			      HINT = 'Create or import the lead first (leadmgmt.upsert_lead), or link the CRM''s contact id with leadmgmt.link_external_id(lead, ''crm'', id).';
	END IF;

	-- lock the lead it resolves to; a merge that committed while we waited
	-- moved it on, so resolve again after taking the lock
	LOOP
		target := leadmgmt.lead_resolve(target);
		SELECT l.merged_into INTO merged FROM leadmgmt.lead l WHERE l.id = target FOR NO KEY UPDATE;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'lead % does not exist', target USING ERRCODE = 'LM005',
				HINT = 'The lead was deleted while the deal was being recorded; record the deal again.';
		END IF;
		EXIT WHEN merged IS NULL;
		target := merged;
	END LOOP;

	LOOP
		tries := tries + 1;
		SELECT * INTO old FROM leadmgmt.opportunity o WHERE o.crm_id = record_opportunity.crm_id FOR UPDATE;
		have_old := FOUND;

		IF have_old AND record_opportunity.crm_updated_at < old.crm_updated_at THEN
			-- an older message arriving late: the stored deal is newer
			SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
			RETURN QUERY SELECT old.id, old.lead_id, 'stale'::text, current_stage, NULL::text;
			RETURN;
		END IF;

		v_amount := coalesce(record_opportunity.amount, old.amount);
		v_currency := coalesce(record_opportunity.currency, old.currency);
		IF record_opportunity.currency IS DISTINCT FROM old.currency AND record_opportunity.currency IS NOT NULL
		   AND old.currency IS NOT NULL AND record_opportunity.amount IS NULL AND old.amount IS NOT NULL THEN
			RAISE EXCEPTION 'opportunity "%" has its amount in %, the message gives currency % without an amount',
				crm_id, old.currency, record_opportunity.currency
				USING ERRCODE = 'LM082',
				      HINT = 'Send the amount together with its currency; amounts in different currencies are never mixed.';
		END IF;
		IF v_amount IS NOT NULL AND v_currency IS NULL THEN
			RAISE EXCEPTION 'opportunity "%" has an amount but no currency', crm_id
				USING ERRCODE = 'LM082',
				      HINT = 'Give the ISO 4217 currency of the amount, such as JPY.';
		END IF;
		v_updated := coalesce(record_opportunity.crm_updated_at, old.crm_updated_at);
		v_created := coalesce(record_opportunity.created_at, old.created_at, record_opportunity.closed_at,
		                      record_opportunity.crm_updated_at, pg_catalog.now());
		v_closed := CASE WHEN status = 'open' THEN record_opportunity.closed_at
		                 ELSE coalesce(record_opportunity.closed_at,
		                               CASE WHEN old.status = status THEN old.closed_at END,
		                               record_opportunity.crm_updated_at, greatest(pg_catalog.now(), v_created)) END;
		IF v_closed < v_created THEN
			RAISE EXCEPTION 'opportunity "%" closes at % before it was created at %', crm_id, v_closed, v_created
				USING ERRCODE = 'LM083',
				      HINT = 'closed_at must not be earlier than created_at; check the CRM''s dates and time zones.';
		END IF;

		IF have_old THEN
			IF old.lead_id = target AND old.status = status
			   AND old.name IS NOT DISTINCT FROM coalesce(record_opportunity.name, old.name)
			   AND old.amount IS NOT DISTINCT FROM v_amount AND old.currency IS NOT DISTINCT FROM v_currency
			   AND old.created_at = v_created AND old.closed_at IS NOT DISTINCT FROM v_closed
			   AND old.crm_updated_at IS NOT DISTINCT FROM v_updated THEN
				-- a replay: nothing changes, not even the lead's stage
				SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
				RETURN QUERY SELECT old.id, target, 'unchanged'::text, current_stage, NULL::text;
				RETURN;
			END IF;
			UPDATE leadmgmt.opportunity o
			   SET lead_id = target, name = coalesce(record_opportunity.name, o.name), amount = v_amount,
			       currency = v_currency, status = record_opportunity.status, created_at = v_created,
			       closed_at = v_closed, crm_updated_at = v_updated
			 WHERE o.id = old.id;
			v_id := old.id;
			v_outcome := 'updated';
			EXIT;
		END IF;
		INSERT INTO leadmgmt.opportunity AS o (lead_id, crm_id, name, amount, currency, status,
		                                      created_at, closed_at, crm_updated_at)
		VALUES (target, record_opportunity.crm_id, record_opportunity.name, v_amount, v_currency,
		        record_opportunity.status, v_created, v_closed, v_updated)
		ON CONFLICT ON CONSTRAINT opportunity_crm_id_key DO NOTHING
		RETURNING o.id INTO v_id;
		IF v_id IS NOT NULL THEN
			v_outcome := 'inserted';
			EXIT;
		END IF;
		-- a concurrent message inserted the deal first: take its row lock and
		-- compare with what it stored
		IF tries > 3 THEN
			RAISE EXCEPTION 'opportunity "%" keeps changing under record_opportunity()', crm_id
				USING ERRCODE = '40001', HINT = 'Retry the message.';
		END IF;
	END LOOP;

	-- the lead's stage follows the deal, back-dated to the CRM's times: the
	-- deal opened (sql), then closed (won or lost)
	steps := CASE status WHEN 'open' THEN ARRAY['sql'] ELSE ARRAY['sql', status] END;
	step_at := CASE status WHEN 'open' THEN ARRAY[v_created] ELSE ARRAY[v_created, v_closed] END;
	SELECT l.stage INTO current_stage FROM leadmgmt.lead l WHERE l.id = target;
	IF current_stage <> steps[cardinality(steps)] THEN
		FOR i IN 1 .. cardinality(steps) LOOP
			CONTINUE WHEN current_stage = steps[i];
			-- a CRM clock slightly behind ours must not make a legal move fail,
			-- and a date in the future must not block the lead's next moves
			SELECT max(h.changed_at) INTO last_change FROM leadmgmt.stage_history h WHERE h.lead_id = target;
			move_at := greatest(least(step_at[i], pg_catalog.now()), last_change);
			BEGIN
				PERFORM leadmgmt.set_stage(target, steps[i], format('crm opportunity %s %s', crm_id, status), move_at);
				current_stage := steps[i];
			EXCEPTION WHEN SQLSTATE 'LM001' OR SQLSTATE 'LM003' OR unique_violation THEN
				refused := format('%s -> %s: %s', current_stage, steps[i], SQLERRM);
				EXIT;
			END;
		END LOOP;
	END IF;
	RETURN QUERY SELECT v_id, target, v_outcome, current_stage, refused;
END
$$;
COMMENT ON FUNCTION leadmgmt.record_opportunity(text, bigint, text, text, numeric, text, text, text, timestamptz, timestamptz, timestamptz) IS
	'Idempotent upsert of a CRM deal keyed by crm_id: finds the lead (lead id, external id, e-mail; follows merges; never creates one), ignores messages older than the stored crm_updated_at, and moves the lead to sql, won or lost back-dated to the CRM times; a move the stage machine refuses is reported in refused_move and the deal is stored anyway';


CREATE OR REPLACE VIEW leadmgmt.campaign_attribution WITH (security_invoker = true) AS
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


CREATE OR REPLACE FUNCTION leadmgmt.train_model(name text, target_stage text DEFAULT 'won',
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


-------------------------------------------------------------------------------
-- The sales loop: change feed for CRM connectors, campaigns and their ROI
-- (doc/integration.md, doc/analytics.md)
-------------------------------------------------------------------------------
-- A transactional outbox.  Triggers append a row to leadmgmt.change in the
-- transaction that made the change; connectors page through it with
-- read_changes()/ack_changes().
--
-- No lost change: a writer's row becomes readable only once every
-- transaction that was running when it could have been written has ended.
-- Each row records the top-level xid8 of its writer; read_changes() gives
-- a position (from change_position_seq, under one lock) to the rows whose
-- xid is below the xmin of its snapshot, in (xid, id) order, and hands out
-- rows by position.  Rows below the xmin are final (no transaction that
-- could still add or remove one is running), and positions are only ever
-- given after every smaller one is visible, so a reader that acknowledged
-- position p can never later find an unread row below p.
CREATE SEQUENCE leadmgmt.change_id_seq AS bigint;
CREATE SEQUENCE leadmgmt.change_position_seq AS bigint;
CREATE TABLE leadmgmt.change (
	position bigint CONSTRAINT change_position_key UNIQUE,
	at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
	kind     text NOT NULL
	         CONSTRAINT change_kind_known CHECK (kind IN ('lead_created', 'lead_updated', 'stage_changed', 'handoff',
	                                                      'lead_merged', 'lead_forgotten', 'opportunity_changed')),
	lead_id  bigint,
	payload  jsonb NOT NULL DEFAULT '{}',
	id       bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.change_id_seq'),
	xid      xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
ALTER SEQUENCE leadmgmt.change_id_seq OWNED BY leadmgmt.change.id;
ALTER SEQUENCE leadmgmt.change_position_seq OWNED BY leadmgmt.change.position;
CREATE INDEX change_unsequenced_idx ON leadmgmt.change (xid, id) WHERE position IS NULL;
COMMENT ON TABLE leadmgmt.change IS
	'Change feed (transactional outbox) for CRM connectors: one row per change, written by triggers in the changing transaction; read with leadmgmt.read_changes()';
COMMENT ON COLUMN leadmgmt.change.position IS
	'place in the feed, given by read_changes() once no older transaction can still commit (NULL until then); increases in the order the rows are handed out';
COMMENT ON COLUMN leadmgmt.change.at IS 'time of the changing transaction';
COMMENT ON COLUMN leadmgmt.change.kind IS
	'lead_created, lead_updated, stage_changed, handoff (entry into mql), lead_merged, lead_forgotten or opportunity_changed';
COMMENT ON COLUMN leadmgmt.change.lead_id IS 'the lead (no foreign key: changes outlive deleted leads)';
COMMENT ON COLUMN leadmgmt.change.payload IS
	'ids, stages, score and reason; never contact data (a connector reads those from leadmgmt.lead with its own privileges)';
COMMENT ON COLUMN leadmgmt.change.id IS 'row id, in the order the rows were written';
COMMENT ON COLUMN leadmgmt.change.xid IS 'top-level transaction id (xid8) of the writer';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_position_seq', '');

CREATE TABLE leadmgmt.change_consumer (
	name           text PRIMARY KEY
	               CONSTRAINT change_consumer_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	acked_position bigint NOT NULL DEFAULT 0,
	read_position  bigint NOT NULL DEFAULT 0,
	created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
	read_at        timestamptz,
	acked_at       timestamptz,
	CONSTRAINT change_consumer_ack_read CHECK (acked_position <= read_position)
);
COMMENT ON TABLE leadmgmt.change_consumer IS
	'Cursors of the change feed''s consumers; an admin adds a row per connector (INSERT ... (name)); deleting it releases the changes kept for it';
COMMENT ON COLUMN leadmgmt.change_consumer.name IS 'consumer name, a lower-case identifier';
COMMENT ON COLUMN leadmgmt.change_consumer.acked_position IS 'every change up to this position is acknowledged (ack_changes)';
COMMENT ON COLUMN leadmgmt.change_consumer.read_position IS 'highest position read_changes() handed out to the consumer';
COMMENT ON COLUMN leadmgmt.change_consumer.created_at IS 'when the consumer was added';
COMMENT ON COLUMN leadmgmt.change_consumer.read_at IS 'last read_changes() call';
COMMENT ON COLUMN leadmgmt.change_consumer.acked_at IS 'last ack_changes() call that moved the cursor';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.change_consumer', '');

-- Trigger functions: SECURITY DEFINER (writers need no privilege on the
-- feed) with a pinned search_path; the per-statement ones (new leads, stage
-- entries) add one INSERT per statement, whatever the number of rows.
CREATE FUNCTION leadmgmt.change_lead_created()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	SELECT 'lead_created', n.id,
	       pg_catalog.jsonb_build_object('stage', n.stage, 'score', n.score, 'source', n.source, 'origin', n.origin)
	  FROM new_leads n ORDER BY n.id;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_created() IS
	'Trigger: a lead_created change per new lead';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_created() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_lead_updated()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_updated', NEW.id, pg_catalog.jsonb_build_object('fields', pg_catalog.array_remove(ARRAY[
		CASE WHEN NEW.email IS DISTINCT FROM OLD.email THEN 'email' END,
		CASE WHEN NEW.name IS DISTINCT FROM OLD.name THEN 'name' END,
		CASE WHEN NEW.company IS DISTINCT FROM OLD.company THEN 'company' END,
		CASE WHEN NEW.phone IS DISTINCT FROM OLD.phone THEN 'phone' END,
		CASE WHEN NEW.external_id IS DISTINCT FROM OLD.external_id THEN 'external_id' END,
		CASE WHEN NEW.owner IS DISTINCT FROM OLD.owner THEN 'owner' END,
		CASE WHEN NEW.email_status IS DISTINCT FROM OLD.email_status THEN 'email_status' END], NULL::text)));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_updated() IS
	'Trigger: a lead_updated change naming the contact fields that changed (not their values)';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_updated() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_stage_entered()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- a row trigger: the stage machine writes history one row per statement,
	-- and the trigger's WHEN leaves out the entry stage of a new lead (in
	-- lead_created) and notes such as merges (from_stage = to_stage)
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES (CASE WHEN NEW.to_stage = 'mql' THEN 'handoff' ELSE 'stage_changed' END, NEW.lead_id,
	        jsonb_build_object('from_stage', NEW.from_stage, 'to_stage', NEW.to_stage,
	                           'changed_at', NEW.changed_at, 'reason', NEW.reason,
	                           'score', (SELECT l.score FROM leadmgmt.lead l WHERE l.id = NEW.lead_id)));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_stage_entered() IS
	'Trigger: a stage_changed change per stage move (handoff for entries into mql), with stages, time, reason and score';
REVOKE ALL ON FUNCTION leadmgmt.change_stage_entered() FROM PUBLIC;

-- Merges and forgets are seen on the lead row (merged_into, forgotten_at),
-- whatever function made them.
CREATE FUNCTION leadmgmt.change_lead_merged()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- the duplicate's deals follow it to the lead it was merged into
	UPDATE leadmgmt.opportunity o SET lead_id = NEW.merged_into
	 WHERE o.lead_id OPERATOR(pg_catalog.=) NEW.id;
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_merged', NEW.id, pg_catalog.jsonb_build_object('merged_into', NEW.merged_into,
	                                                             'previously_merged_into', OLD.merged_into));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_merged() IS
	'Trigger: when a lead is merged into another, its opportunities move along and a lead_merged change names the kept lead';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_merged() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_lead_forgotten()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- deal names and CRM extras may name the person
	UPDATE leadmgmt.opportunity o SET name = NULL, props = '{}'
	 WHERE o.lead_id OPERATOR(pg_catalog.=) NEW.id
	   AND (o.name IS NOT NULL OR o.props OPERATOR(pg_catalog.<>) '{}'::jsonb);
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('lead_forgotten', NEW.id, pg_catalog.jsonb_build_object('forgotten_at', NEW.forgotten_at));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_lead_forgotten() IS
	'Trigger: when forget_lead() erases a lead, its deals lose their names and CRM extras and a lead_forgotten change tells connectors to erase it too';
REVOKE ALL ON FUNCTION leadmgmt.change_lead_forgotten() FROM PUBLIC;

CREATE FUNCTION leadmgmt.change_opportunity()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO leadmgmt.change (kind, lead_id, payload)
	VALUES ('opportunity_changed', NEW.lead_id,
	        pg_catalog.jsonb_build_object('opportunity_id', NEW.id, 'crm_id', NEW.crm_id, 'status', NEW.status,
	                                      'amount', NEW.amount, 'currency', NEW.currency,
	                                      'previous_lead_id', CASE WHEN TG_OP OPERATOR(pg_catalog.=) 'UPDATE'
	                                                                AND OLD.lead_id OPERATOR(pg_catalog.<>) NEW.lead_id
	                                                               THEN OLD.lead_id END));
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_opportunity() IS
	'Trigger: an opportunity_changed change with the deal''s ids, status and amount';
REVOKE ALL ON FUNCTION leadmgmt.change_opportunity() FROM PUBLIC;

-- NOTIFY is delivered by PostgreSQL at commit, once per transaction and
-- channel (equal payloads fold), and never carries data: it only wakes.
CREATE FUNCTION leadmgmt.change_notify()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	-- once per transaction: PostgreSQL folds equal notifications anyway, so
	-- the later statements of a transaction skip the work.  The marker is a
	-- transaction-local setting holding the transaction id (it is undone
	-- with a rolled-back subtransaction, as the notification is).
	IF current_setting('leadmgmt_change.notified', true) IS DISTINCT FROM pg_current_xact_id()::text THEN
		PERFORM set_config('leadmgmt_change.notified', pg_current_xact_id()::text, true);
		-- the setting read directly (get_setting() costs more): the
		-- override, else the default from setting_defaults()
		PERFORM pg_notify(coalesce((SELECT s.value FROM leadmgmt.setting s WHERE s.key = 'change_channel'),
		                           (SELECT d.default_value FROM leadmgmt.setting_defaults() d
		                             WHERE d.key = 'change_channel')), '');
	END IF;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.change_notify() IS
	'Trigger: NOTIFY on the change_channel setting when a transaction wrote changes (delivered at commit)';

CREATE TRIGGER change_lead_created
	AFTER INSERT ON leadmgmt.lead
	REFERENCING NEW TABLE AS new_leads
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.change_lead_created();
CREATE TRIGGER change_lead_updated
	AFTER UPDATE OF email, name, company, phone, external_id, owner, email_status ON leadmgmt.lead
	FOR EACH ROW
	WHEN ((OLD.email, OLD.name, OLD.company, OLD.phone, OLD.external_id, OLD.owner, OLD.email_status)
	      IS DISTINCT FROM (NEW.email, NEW.name, NEW.company, NEW.phone, NEW.external_id, NEW.owner, NEW.email_status)
	      AND OLD.forgotten_at IS NOT DISTINCT FROM NEW.forgotten_at)
	EXECUTE FUNCTION leadmgmt.change_lead_updated();
CREATE TRIGGER change_lead_merged
	AFTER UPDATE OF merged_into ON leadmgmt.lead
	FOR EACH ROW WHEN (NEW.merged_into IS NOT NULL AND OLD.merged_into IS DISTINCT FROM NEW.merged_into)
	EXECUTE FUNCTION leadmgmt.change_lead_merged();
CREATE TRIGGER change_lead_forgotten
	AFTER UPDATE OF forgotten_at ON leadmgmt.lead
	FOR EACH ROW WHEN (NEW.forgotten_at IS NOT NULL AND OLD.forgotten_at IS DISTINCT FROM NEW.forgotten_at)
	EXECUTE FUNCTION leadmgmt.change_lead_forgotten();
CREATE TRIGGER change_stage_entered
	AFTER INSERT ON leadmgmt.stage_history
	FOR EACH ROW WHEN (NEW.from_stage IS NOT NULL AND NEW.from_stage <> NEW.to_stage)
	EXECUTE FUNCTION leadmgmt.change_stage_entered();
CREATE TRIGGER change_opportunity
	AFTER INSERT OR UPDATE ON leadmgmt.opportunity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.change_opportunity();
CREATE TRIGGER change_notify
	AFTER INSERT ON leadmgmt.change
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.change_notify();

-- Reading: one sequencer at a time (a transaction-level advisory lock in
-- the two-key space, which upsert_lead's one-key locks never meet).
CREATE FUNCTION leadmgmt.read_changes(consumer text, max_rows integer DEFAULT 1000)
RETURNS TABLE ("position" bigint, at timestamptz, kind text, lead_id bigint, payload jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
	cur leadmgmt.change_consumer;
BEGIN
	IF consumer IS NULL OR max_rows IS NULL OR max_rows < 1 THEN
		RAISE EXCEPTION 'consumer must not be null and max_rows must be at least 1'
			USING ERRCODE = '22023', HINT = 'Call leadmgmt.read_changes(''my_connector'', 1000).';
	END IF;
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		-- an older snapshot could miss positions given after it was taken
		RAISE EXCEPTION 'read_changes() needs a READ COMMITTED transaction, this one is %',
			upper(current_setting('transaction_isolation'))
			USING ERRCODE = 'LM086',
			      HINT = 'Call it outside an explicit REPEATABLE READ or SERIALIZABLE transaction.';
	END IF;
	SELECT * INTO cur FROM leadmgmt.change_consumer c WHERE c.name = read_changes.consumer FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown change consumer "%"', consumer
			USING ERRCODE = 'LM084',
			      HINT = 'An admin adds it: INSERT INTO leadmgmt.change_consumer (name) VALUES (''' || consumer || ''').';
	END IF;

	PERFORM pg_advisory_xact_lock(hashtext('leadmgmt.change_position'), 0);
	-- positions for the rows no running transaction can add to any more
	UPDATE leadmgmt.change c SET position = s.pos
	  FROM (SELECT o.id, nextval('leadmgmt.change_position_seq') AS pos
	          FROM (SELECT u.id FROM leadmgmt.change u
	                 WHERE u.position IS NULL
	                   AND u.xid < pg_snapshot_xmin(pg_current_snapshot())
	                 ORDER BY u.xid, u.id
	                 LIMIT greatest(read_changes.max_rows, 10000)) o) s
	 WHERE c.id = s.id;

	RETURN QUERY
	WITH batch AS (
		SELECT c.position, c.at, c.kind, c.lead_id, c.payload
		  FROM leadmgmt.change c
		 WHERE c.position > cur.acked_position
		 ORDER BY c.position
		 LIMIT read_changes.max_rows
	), mark AS (
		UPDATE leadmgmt.change_consumer m
		   SET read_position = greatest(m.read_position, coalesce((SELECT max(b.position) FROM batch b), 0)),
		       read_at = now()
		 WHERE m.name = read_changes.consumer
	)
	SELECT b.position, b.at, b.kind, b.lead_id, b.payload FROM batch b ORDER BY b.position;
END
$$;
COMMENT ON FUNCTION leadmgmt.read_changes(text, integer) IS
	'The next changes after the consumer''s acknowledged position, at most max_rows, in position order; a batch not acknowledged is handed out again (at-least-once); never skips a change that commits late';
REVOKE ALL ON FUNCTION leadmgmt.read_changes(text, integer) FROM PUBLIC;

CREATE FUNCTION leadmgmt.ack_changes(consumer text, upto bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cur leadmgmt.change_consumer;
BEGIN
	IF consumer IS NULL OR upto IS NULL THEN
		RAISE EXCEPTION 'consumer and upto must not be null' USING ERRCODE = '22004',
			HINT = 'Pass the position of the last change of the batch you processed.';
	END IF;
	SELECT * INTO cur FROM leadmgmt.change_consumer c WHERE c.name = ack_changes.consumer FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown change consumer "%"', consumer
			USING ERRCODE = 'LM084',
			      HINT = 'An admin adds it: INSERT INTO leadmgmt.change_consumer (name) VALUES (''' || consumer || ''').';
	END IF;
	IF upto > cur.read_position THEN
		RAISE EXCEPTION 'cannot acknowledge position % for consumer "%": it has read up to position %',
			upto, consumer, cur.read_position
			USING ERRCODE = 'LM085',
			      HINT = 'Acknowledge only changes read_changes() returned: pass the position of the last change of the batch.';
	END IF;
	IF upto <= cur.acked_position THEN
		RETURN cur.acked_position;	-- acknowledged already: a repeated ack is harmless
	END IF;
	UPDATE leadmgmt.change_consumer c SET acked_position = upto, acked_at = now()
	 WHERE c.name = ack_changes.consumer;
	-- what every consumer has acknowledged is not needed any more
	DELETE FROM leadmgmt.change c
	 WHERE c.position <= (SELECT min(x.acked_position) FROM leadmgmt.change_consumer x);
	RETURN upto;
END
$$;
COMMENT ON FUNCTION leadmgmt.ack_changes(text, bigint) IS
	'Acknowledge every change up to position upto for the consumer; changes every consumer acknowledged are purged; returns the acknowledged position';
REVOKE ALL ON FUNCTION leadmgmt.ack_changes(text, bigint) FROM PUBLIC;

CREATE VIEW leadmgmt.change_lag WITH (security_invoker = true) AS
	SELECT k.name AS consumer, k.acked_position, k.read_position,
	       count(c.id) AS pending, min(c.at) AS oldest_pending_at,
	       COALESCE(min(c.at) < now() - leadmgmt.get_setting('change_retention')::interval, false) AS lagging
	  FROM leadmgmt.change_consumer k
	  LEFT JOIN leadmgmt.change c ON c.position > k.acked_position OR c.position IS NULL
	 GROUP BY k.name, k.acked_position, k.read_position;
COMMENT ON VIEW leadmgmt.change_lag IS
	'Per change feed consumer: what it has not acknowledged yet, and whether it lags behind the change_retention setting';
COMMENT ON COLUMN leadmgmt.change_lag.consumer IS 'consumer name';
COMMENT ON COLUMN leadmgmt.change_lag.acked_position IS 'acknowledged up to this position';
COMMENT ON COLUMN leadmgmt.change_lag.read_position IS 'handed out up to this position';
COMMENT ON COLUMN leadmgmt.change_lag.pending IS 'changes kept for it: not acknowledged, or not yet given a position';
COMMENT ON COLUMN leadmgmt.change_lag.oldest_pending_at IS 'time of the oldest of them';
COMMENT ON COLUMN leadmgmt.change_lag.lagging IS 'the oldest is older than change_retention: purge_changes() keeps them and warns';

CREATE FUNCTION leadmgmt.purge_changes()
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
	more bigint;
	lag record;
BEGIN
	IF EXISTS (SELECT 1 FROM leadmgmt.change_consumer) THEN
		-- acknowledged by everybody; older ones are still needed by someone
		DELETE FROM leadmgmt.change c
		 WHERE c.position <= (SELECT min(x.acked_position) FROM leadmgmt.change_consumer x);
		GET DIAGNOSTICS purged = ROW_COUNT;
		FOR lag IN SELECT l.consumer, l.pending, l.oldest_pending_at FROM leadmgmt.change_lag l
		            WHERE l.lagging ORDER BY l.consumer LOOP
			RAISE WARNING 'change consumer "%" lags: % changes kept for it, the oldest from %',
				lag.consumer, lag.pending, lag.oldest_pending_at
				USING DETAIL = 'Changes older than change_retention (' || leadmgmt.get_setting('change_retention')
				               || ') are kept while a consumer has not acknowledged them.',
				      HINT = 'Let the connector catch up, or delete its row from leadmgmt.change_consumer to release them.';
		END LOOP;
	ELSE
		-- nobody reads the feed: keep change_retention of it for the next consumer
		DELETE FROM leadmgmt.change c
		 WHERE c.at < now() - leadmgmt.get_setting('change_retention')::interval;
		GET DIAGNOSTICS purged = ROW_COUNT;
	END IF;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION leadmgmt.purge_changes() IS
	'Purge the change feed: changes every consumer acknowledged; without consumers, changes older than change_retention; warns about consumers lagging behind change_retention; returns the rows purged';
REVOKE ALL ON FUNCTION leadmgmt.purge_changes() FROM PUBLIC;

-------------------------------------------------------------------------------
-- Campaigns: cost, and what they brought (doc/analytics.md)
-------------------------------------------------------------------------------
CREATE TABLE leadmgmt.campaign (
	name      text PRIMARY KEY CONSTRAINT campaign_name_not_empty CHECK (name <> ''),
	channel   text,
	starts_on date,
	ends_on   date,
	cost      numeric NOT NULL DEFAULT 0 CONSTRAINT campaign_cost_not_negative CHECK (cost >= 0),
	currency  text NOT NULL CONSTRAINT campaign_currency_iso4217 CHECK (currency ~ '^[A-Z]{3}$'),
	CONSTRAINT campaign_dates_in_order CHECK (ends_on >= starts_on)
);
COMMENT ON TABLE leadmgmt.campaign IS 'Campaigns with their cost; name is the activity.campaign value of their touches';
COMMENT ON COLUMN leadmgmt.campaign.name IS 'the activity.campaign value of the campaign''s touches';
COMMENT ON COLUMN leadmgmt.campaign.channel IS 'email, seminar, exhibition, ads, ... (free text)';
COMMENT ON COLUMN leadmgmt.campaign.starts_on IS 'first day';
COMMENT ON COLUMN leadmgmt.campaign.ends_on IS 'last day';
COMMENT ON COLUMN leadmgmt.campaign.cost IS 'what the campaign cost (>= 0), in currency';
COMMENT ON COLUMN leadmgmt.campaign.currency IS 'ISO 4217 currency of cost';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.campaign', '');

-- Validation with a SQLSTATE and a hint (the CHECK constraints stay as the
-- backstop for restores that disable triggers).
CREATE FUNCTION leadmgmt.campaign_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.cost IS NULL OR NEW.cost OPERATOR(pg_catalog.<) 0 OR NEW.cost OPERATOR(pg_catalog.=) 'NaN'::numeric
	   OR NEW.cost OPERATOR(pg_catalog.=) 'Infinity'::numeric THEN
		RAISE EXCEPTION 'campaign "%": cost must be a finite number >= 0, got %', NEW.name, coalesce(NEW.cost::text, 'NULL')
			USING ERRCODE = 'LM080', HINT = 'Give what the campaign cost; 0 for a free one.';
	END IF;
	IF NEW.currency IS NULL OR NEW.currency OPERATOR(pg_catalog.!~) '^[A-Z]{3}$' THEN
		RAISE EXCEPTION 'campaign "%": currency "%" is not an ISO 4217 code', NEW.name, coalesce(NEW.currency, 'NULL')
			USING ERRCODE = 'LM082',
			      HINT = 'Give the currency of the cost as three capital letters such as JPY; also for a cost of 0.';
	END IF;
	IF NEW.ends_on OPERATOR(pg_catalog.<) NEW.starts_on THEN
		RAISE EXCEPTION 'campaign "%" ends on % before it starts on %', NEW.name, NEW.ends_on, NEW.starts_on
			USING ERRCODE = 'LM083', HINT = 'Swap the dates or leave ends_on NULL.';
	END IF;
	RETURN NEW;
END
$$;
COMMENT ON FUNCTION leadmgmt.campaign_check() IS
	'Trigger: validates a campaign''s cost, currency and dates with SQLSTATEs and hints';
CREATE TRIGGER campaign_check
	BEFORE INSERT OR UPDATE ON leadmgmt.campaign
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.campaign_check();

-- ROI per campaign and currency.  Credit is linear (the model column says
-- so) over a live lead's campaign touches strictly before the milestone:
-- its first entry into mql or sql, or a deal's credited_at (leadmgmt.deal).
-- The campaign's own row (currency = campaign.currency) carries cost, reach
-- and stage counts, plus the deals in that currency and those without an
-- amount; deals in another currency get a row of their own with only
-- won_deals, revenue and pipeline, so no sum ever mixes currencies.
CREATE VIEW leadmgmt.campaign_roi WITH (security_invoker = true) AS
	WITH touch AS (
		SELECT a.lead_id, a.campaign, a.occurred_at, a.id
		  FROM leadmgmt.activity a
		  JOIN leadmgmt.lead l ON l.id = a.lead_id
		 WHERE a.campaign IS NOT NULL AND l.merged_into IS NULL
	), reach AS (
		SELECT t.campaign, count(DISTINCT t.lead_id) AS leads_touched
		  FROM touch t GROUP BY t.campaign
	), first_touch AS (
		SELECT f.campaign, count(*) AS leads_first_touched
		  FROM (SELECT DISTINCT ON (t.lead_id) t.lead_id, t.campaign
		          FROM touch t ORDER BY t.lead_id, t.occurred_at, t.id) f
		 GROUP BY f.campaign
	), milestone AS (
		SELECT w.stage, e.key AS campaign, sum(e.value::numeric) AS credit
		  FROM (SELECT h.to_stage AS stage, h.lead_id,
		               leadmgmt.attribution('linear', t.campaign, t.occurred_at) AS weights
		          FROM leadmgmt.stage_history h
		          JOIN touch t ON t.lead_id = h.lead_id AND t.occurred_at < h.changed_at
		         WHERE h.to_stage IN ('mql', 'sql') AND h.entry_number = 1
		         GROUP BY h.to_stage, h.lead_id) w,
		       jsonb_each(w.weights) e
		 GROUP BY w.stage, e.key
	), deal_credit AS (
		SELECT e.key AS campaign, d.currency,
		       sum(e.value::numeric) FILTER (WHERE d.status = 'won') AS won_deals,
		       sum(d.amount * e.value::numeric) FILTER (WHERE d.status = 'won') AS revenue,
		       sum(d.amount * e.value::numeric) FILTER (WHERE d.status = 'open') AS pipeline
		  FROM (SELECT d.status, d.amount, d.currency,
		               leadmgmt.attribution('linear', t.campaign, t.occurred_at) AS weights
		          FROM leadmgmt.deal d
		          JOIN touch t ON t.lead_id = d.lead_id AND t.occurred_at < d.credited_at
		         WHERE d.status IN ('won', 'open')
		         GROUP BY d.lead_id, d.opportunity_id, d.status, d.amount, d.currency) d,
		       jsonb_each(d.weights) e
		 GROUP BY e.key, d.currency
	), per_currency AS (
		-- deals without a currency (no amount) count on the campaign's own row
		SELECT dc.campaign, coalesce(dc.currency, c.currency) AS currency,
		       sum(dc.won_deals) AS won_deals, sum(dc.revenue) AS revenue, sum(dc.pipeline) AS pipeline
		  FROM deal_credit dc JOIN leadmgmt.campaign c ON c.name = dc.campaign
		 GROUP BY 1, 2
	), total_won AS (
		SELECT dc.campaign, sum(dc.won_deals) AS won_deals FROM deal_credit dc GROUP BY 1
	), row_key AS (
		SELECT c.name AS campaign, c.currency FROM leadmgmt.campaign c
		UNION
		SELECT p.campaign, p.currency FROM per_currency p
	), base AS (
		SELECT k.campaign, k.currency, k.currency = c.currency AS own,
		       c.cost, r.leads_touched, f.leads_first_touched,
		       mq.credit AS mqls, sq.credit AS sqls, tw.won_deals AS all_won,
		       p.won_deals, p.revenue, p.pipeline
		  FROM row_key k
		  JOIN leadmgmt.campaign c ON c.name = k.campaign
		  LEFT JOIN reach r ON r.campaign = k.campaign
		  LEFT JOIN first_touch f ON f.campaign = k.campaign
		  LEFT JOIN milestone mq ON mq.campaign = k.campaign AND mq.stage = 'mql'
		  LEFT JOIN milestone sq ON sq.campaign = k.campaign AND sq.stage = 'sql'
		  LEFT JOIN total_won tw ON tw.campaign = k.campaign
		  LEFT JOIN per_currency p ON p.campaign = k.campaign AND p.currency = k.currency
	)
	SELECT b.campaign, b.currency, 'linear'::text AS model,
	       CASE WHEN b.own THEN b.cost END AS cost,
	       CASE WHEN b.own THEN coalesce(b.leads_touched, 0) END AS leads_touched,
	       CASE WHEN b.own THEN coalesce(b.leads_first_touched, 0) END AS leads_first_touched,
	       CASE WHEN b.own THEN coalesce(b.mqls, 0)::float8 END AS mqls,
	       CASE WHEN b.own THEN coalesce(b.sqls, 0)::float8 END AS sqls,
	       coalesce(b.won_deals, 0)::float8 AS won_deals,
	       trim_scale(coalesce(b.revenue, 0)) AS revenue,
	       trim_scale(coalesce(b.pipeline, 0)) AS pipeline,
	       CASE WHEN b.own THEN round(b.cost / nullif(b.leads_touched, 0), 2) END AS cost_per_lead,
	       CASE WHEN b.own THEN round(b.cost / nullif(round(b.mqls, 12), 0), 2) END AS cost_per_mql,
	       CASE WHEN b.own THEN round(b.cost / nullif(round(b.all_won, 12), 0), 2) END AS cost_per_won,
	       CASE WHEN b.own AND b.cost > 0
	            THEN ((coalesce(b.revenue, 0) - b.cost) / b.cost)::float8 END AS roi
	  FROM base b;
COMMENT ON VIEW leadmgmt.campaign_roi IS
	'Per campaign and currency: cost, reach, MQLs, SQLs and won deals credited by the linear model, revenue won, open pipeline, cost per lead/MQL/won deal and ROI; currencies never mixed';
COMMENT ON COLUMN leadmgmt.campaign_roi.campaign IS 'leadmgmt.campaign.name';
COMMENT ON COLUMN leadmgmt.campaign_roi.currency IS 'currency of the row: the campaign''s own (cost) or that of deals credited to it';
COMMENT ON COLUMN leadmgmt.campaign_roi.model IS 'attribution model of mqls, sqls, won_deals, revenue and pipeline: linear';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost IS 'campaign cost (NULL on rows of another currency)';
COMMENT ON COLUMN leadmgmt.campaign_roi.leads_touched IS 'live leads with a touch of the campaign (on the campaign''s own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.leads_first_touched IS 'live leads whose first campaign touch was this campaign (on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.mqls IS 'leads credited for their first entry into mql (fractional, linear model; on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.sqls IS 'leads credited for their first entry into sql (fractional, linear model; on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.won_deals IS 'won deals in this currency credited to the campaign (fractional; deals without an amount on the own row)';
COMMENT ON COLUMN leadmgmt.campaign_roi.revenue IS 'sum of won deal amount x credit, in this currency';
COMMENT ON COLUMN leadmgmt.campaign_roi.pipeline IS 'sum of open deal amount x credit, in this currency';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_lead IS 'cost / leads_touched (NULL without leads)';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_mql IS 'cost / mqls (NULL without MQLs)';
COMMENT ON COLUMN leadmgmt.campaign_roi.cost_per_won IS 'cost / won deals in every currency (NULL without won deals)';
COMMENT ON COLUMN leadmgmt.campaign_roi.roi IS '(revenue - cost) / cost in the campaign''s currency; NULL when cost is 0';

-- Deal value along the funnel, per lead source and currency
CREATE VIEW leadmgmt.funnel_revenue WITH (security_invoker = true) AS
	SELECT coalesce(l.source, '(none)') AS source, d.currency,
	       count(*) FILTER (WHERE d.status = 'open') AS open_deals,
	       trim_scale(coalesce(sum(d.amount) FILTER (WHERE d.status = 'open'), 0)) AS pipeline,
	       count(*) FILTER (WHERE d.status = 'won') AS won_deals,
	       trim_scale(coalesce(sum(d.amount) FILTER (WHERE d.status = 'won'), 0)) AS revenue,
	       count(*) FILTER (WHERE d.status = 'lost') AS lost_deals,
	       count(*) FILTER (WHERE d.status = 'won')::float8
	         / nullif(count(*) FILTER (WHERE d.status IN ('won', 'lost')), 0) AS win_rate
	  FROM leadmgmt.deal d
	  JOIN leadmgmt.lead l ON l.id = d.lead_id
	 GROUP BY 1, 2;
COMMENT ON VIEW leadmgmt.funnel_revenue IS
	'Deals per lead source and currency: open pipeline, won revenue, lost deals and win rate (leadmgmt.deal)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.source IS 'lead.source ((none) when NULL)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.currency IS 'ISO 4217 currency of the deals (NULL: deals without an amount)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.open_deals IS 'open deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.pipeline IS 'sum of the amounts of open deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.won_deals IS 'won deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.revenue IS 'sum of the amounts of won deals';
COMMENT ON COLUMN leadmgmt.funnel_revenue.lost_deals IS 'lost deals (opportunities only)';
COMMENT ON COLUMN leadmgmt.funnel_revenue.win_rate IS 'won / (won + lost) deals (NULL when none closed)';


-------------------------------------------------------------------------------
-- Privileges of the sales loop: grant_access() records its roles in
-- access_role last, so this trigger adds this capability's grants to the
-- matrix (doc/roles.md) without changing grant_access() itself.
-------------------------------------------------------------------------------
CREATE FUNCTION leadmgmt.grant_sales_loop()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT n.kind, n.role::text AS r FROM new_roles n
	          WHERE EXISTS (SELECT 1 FROM pg_roles p WHERE p.oid = n.role::oid) LOOP
		CONTINUE WHEN a.kind = 'reader';		-- the views are granted by grant_access()
		-- sales and up: read deals, campaigns and the feed, report deals, follow the feed
		EXECUTE format('GRANT SELECT ON leadmgmt.opportunity, leadmgmt.campaign, leadmgmt.change, '
		               'leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT INSERT, UPDATE ON leadmgmt.opportunity TO %s', a.r);
		EXECUTE format('GRANT USAGE ON SEQUENCE leadmgmt.opportunity_id_seq TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.read_changes(text, integer), '
		               'leadmgmt.ack_changes(text, bigint) TO %s', a.r);
		CONTINUE WHEN a.kind = 'sales';
		-- marketing and admin: campaigns
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.campaign TO %s', a.r);
		CONTINUE WHEN a.kind = 'marketing';
		-- admin: consumers and purging
		EXECUTE format('GRANT INSERT, UPDATE, DELETE ON leadmgmt.change_consumer TO %s', a.r);
		EXECUTE format('GRANT EXECUTE ON FUNCTION leadmgmt.purge_changes() TO %s', a.r);
	END LOOP;
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION leadmgmt.grant_sales_loop() IS
	'Trigger: when grant_access() records its roles, grants the sales loop''s privileges (deals, campaigns, change feed) to them';
REVOKE ALL ON FUNCTION leadmgmt.grant_sales_loop() FROM PUBLIC;
CREATE TRIGGER grant_sales_loop
	AFTER INSERT ON leadmgmt.access_role
	REFERENCING NEW TABLE AS new_roles
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.grant_sales_loop();

-- END sales loop



-- BEGIN nurture


-- END nurture



-- BEGIN bi (chartable durations, reader surface)


-- END bi
