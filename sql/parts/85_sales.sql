
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
