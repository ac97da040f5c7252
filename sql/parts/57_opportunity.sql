
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
		EXECUTE 'SELECT o.lead_id FROM leadmgmt.opportunity o WHERE o.crm_id OPERATOR(pg_catalog.=) $1'
		   INTO target USING record_opportunity.crm_id;
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
		-- the statements on opportunity are planned at each call (EXECUTE):
		-- a plan kept from the session's first calls, made while the table
		-- was nearly empty, scans it whole for the rest of the session,
		-- which made a connector's long session slow down with every deal
		EXECUTE 'SELECT * FROM leadmgmt.opportunity o WHERE o.crm_id OPERATOR(pg_catalog.=) $1 FOR UPDATE'
		   INTO old USING record_opportunity.crm_id;
		have_old := old.id IS NOT NULL;

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
			EXECUTE 'UPDATE leadmgmt.opportunity o
			            SET lead_id = $2, name = coalesce($3, o.name), amount = $4, currency = $5, status = $6,
			                created_at = $7, closed_at = $8, crm_updated_at = $9
			          WHERE o.id OPERATOR(pg_catalog.=) $1'
			  USING old.id, target, record_opportunity.name, v_amount, v_currency, record_opportunity.status,
			        v_created, v_closed, v_updated;
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
