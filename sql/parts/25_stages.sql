
-------------------------------------------------------------------------------
-- Stages: the demand waterfall (doc/stages.md)
-------------------------------------------------------------------------------
-- Built-in vocabulary rows are flagged `builtin`; a C trigger keeps them
-- read-only (users extend by adding rows) and pg_dump saves user rows only.
CREATE FUNCTION leadmgmt.protect_builtin()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_protect_builtin';
COMMENT ON FUNCTION leadmgmt.protect_builtin() IS
	'Trigger: refuses to change or delete built-in vocabulary rows, or to add rows flagged builtin';

CREATE FUNCTION leadmgmt.vocabulary_changed()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_vocabulary_changed';
COMMENT ON FUNCTION leadmgmt.vocabulary_changed() IS
	'Trigger: invalidates the cached stage machine in every session when stages or transitions change';

CREATE TABLE leadmgmt.stage (
	name        text PRIMARY KEY
	            CONSTRAINT stage_name_format CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
	rank        integer NOT NULL,
	category    text NOT NULL
	            CONSTRAINT stage_category_known CHECK (category IN ('open', 'nurture', 'won', 'lost')),
	is_entry    boolean NOT NULL DEFAULT false,
	next_stage  text,
	description text,
	builtin     boolean NOT NULL DEFAULT false
);
ALTER TABLE leadmgmt.stage ADD CONSTRAINT stage_next_stage_fkey
	FOREIGN KEY (next_stage) REFERENCES leadmgmt.stage (name);
COMMENT ON TABLE leadmgmt.stage IS 'Stages of the demand waterfall; add rows for your own stages';
COMMENT ON COLUMN leadmgmt.stage.name IS 'stage name (lower-case identifier)';
COMMENT ON COLUMN leadmgmt.stage.rank IS 'progress along the waterfall: a higher rank is more advanced';
COMMENT ON COLUMN leadmgmt.stage.category IS 'open, nurture, won or lost';
COMMENT ON COLUMN leadmgmt.stage.is_entry IS 'new leads may start in this stage';
COMMENT ON COLUMN leadmgmt.stage.next_stage IS 'main-path successor, used for conversion_to_next';
COMMENT ON COLUMN leadmgmt.stage.description IS 'what the stage means';
COMMENT ON COLUMN leadmgmt.stage.builtin IS 'shipped with the extension: read-only, not dumped';

CREATE TABLE leadmgmt.stage_transition (
	from_stage  text NOT NULL REFERENCES leadmgmt.stage (name),
	to_stage    text NOT NULL REFERENCES leadmgmt.stage (name),
	description text,
	builtin     boolean NOT NULL DEFAULT false,
	PRIMARY KEY (from_stage, to_stage),
	CONSTRAINT stage_transition_not_self CHECK (from_stage <> to_stage)
);
CREATE INDEX stage_transition_to_stage_idx ON leadmgmt.stage_transition (to_stage);
COMMENT ON TABLE leadmgmt.stage_transition IS 'Allowed stage moves; a move not listed here fails with SQLSTATE LM001';
COMMENT ON COLUMN leadmgmt.stage_transition.from_stage IS 'stage the lead is in';
COMMENT ON COLUMN leadmgmt.stage_transition.to_stage IS 'stage it may move to';
COMMENT ON COLUMN leadmgmt.stage_transition.description IS 'when this move happens';
COMMENT ON COLUMN leadmgmt.stage_transition.builtin IS 'shipped with the extension: read-only, not dumped';

INSERT INTO leadmgmt.stage (name, rank, category, is_entry, next_stage, description, builtin) VALUES
	('won',          60, 'won',     false, NULL,  'closed won: the customer bought', true),
	('lost',         60, 'lost',    false, NULL,  'closed lost: the opportunity ended without a purchase', true),
	('sql',          40, 'open',    false, 'won', 'sales-qualified lead: an opportunity with a deal in progress', true),
	('sal',          30, 'open',    false, 'sql', 'sales-accepted lead: sales took the hand-off', true),
	('sgl',          30, 'open',    true,  'sql', 'sales-generated lead: created by sales from an outbound inquiry, skipping MQL', true),
	('mql',          20, 'open',    false, 'sal', 'marketing-qualified lead: the score passed the threshold', true),
	('inquiry',      10, 'open',    true,  'mql', 'inquiry: a new lead, inbound or outbound', true),
	('recycled',      5, 'nurture', false, 'mql', 'back to nurturing after sales returned it or a deal was lost', true),
	('disqualified',  0, 'lost',    false, NULL,  'disqualified: bad data, competitor, spam', true);

INSERT INTO leadmgmt.stage_transition (from_stage, to_stage, description, builtin) VALUES
	('inquiry',  'mql',      'score passed the MQL threshold', true),
	('inquiry',  'sgl',      'sales picked up the inquiry directly', true),
	('mql',      'sal',      'sales accepted the hand-off', true),
	('mql',      'recycled', 'sales returned the lead to nurturing', true),
	('sal',      'sql',      'sales qualified an opportunity', true),
	('sal',      'recycled', 'sales returned the lead to nurturing', true),
	('sgl',      'sql',      'sales qualified an opportunity', true),
	('sgl',      'recycled', 'sales returned the lead to nurturing', true),
	('sql',      'won',      'deal closed won', true),
	('sql',      'lost',     'deal closed lost', true),
	('lost',     'recycled', 'lost deal goes back to nurturing', true),
	('recycled', 'mql',      'nurtured lead qualified again', true),
	('won',      'mql',      'next purchase cycle', true),
	('inquiry',  'disqualified', 'bad data, competitor or spam', true),
	('mql',      'disqualified', 'bad data, competitor or spam', true),
	('sal',      'disqualified', 'bad data, competitor or spam', true),
	('sgl',      'disqualified', 'bad data, competitor or spam', true),
	('sql',      'disqualified', 'bad data, competitor or spam', true);

CREATE TRIGGER stage_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER stage_transition_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage_transition
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER stage_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.stage
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
CREATE TRIGGER stage_transition_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.stage_transition
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();

SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_transition', 'WHERE NOT builtin');

-------------------------------------------------------------------------------
-- The stage machine on leads: validated moves and their history
-- (doc/stages.md, doc/design.md "The life of a stage move")
-------------------------------------------------------------------------------
-- Here rather than on the lead table in 20_leads.sql: a lead's stage is a
-- name of this part's vocabulary.
ALTER TABLE leadmgmt.lead ADD CONSTRAINT lead_stage_fkey
	FOREIGN KEY (stage) REFERENCES leadmgmt.stage (name);

CREATE SEQUENCE leadmgmt.stage_history_id_seq AS bigint;
CREATE TABLE leadmgmt.stage_history (
	id         bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.stage_history_id_seq'),
	lead_id    bigint NOT NULL REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	from_stage text REFERENCES leadmgmt.stage (name),
	to_stage   text NOT NULL REFERENCES leadmgmt.stage (name),
	changed_at timestamptz NOT NULL,
	changed_by text NOT NULL,
	reason     text,
	CONSTRAINT stage_history_once UNIQUE (lead_id, to_stage, changed_at),
	-- Facts about the row that never change once it is written (history is
	-- append-only and in time order per lead), recorded with it so that the
	-- funnel views count and time stages in one scan instead of sorting the
	-- whole history by lead.
	entry_number       integer,
	time_in_from_stage interval
);
ALTER SEQUENCE leadmgmt.stage_history_id_seq OWNED BY leadmgmt.stage_history.id;
CREATE INDEX stage_history_to_stage_idx ON leadmgmt.stage_history (to_stage, changed_at);
COMMENT ON TABLE leadmgmt.stage_history IS
	'Append-only audit of every stage a lead entered; written only by the extension';
COMMENT ON COLUMN leadmgmt.stage_history.id IS 'row id, in the order the changes were recorded';
COMMENT ON COLUMN leadmgmt.stage_history.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.stage_history.from_stage IS 'stage left (NULL when the lead was created)';
COMMENT ON COLUMN leadmgmt.stage_history.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt.stage_history.changed_at IS 'when the lead entered to_stage';
COMMENT ON COLUMN leadmgmt.stage_history.changed_by IS 'leadmgmt.actor setting if set, else the session user';
COMMENT ON COLUMN leadmgmt.stage_history.reason IS 'reason given to set_stage()';
COMMENT ON COLUMN leadmgmt.stage_history.entry_number IS
	'1 for the lead''s first entry into to_stage, 2 for the next (after recycling), ...; NULL for notes (from_stage = to_stage, such as merges)';
COMMENT ON COLUMN leadmgmt.stage_history.time_in_from_stage IS
	'time the lead spent in from_stage: changed_at minus its previous entry; NULL for the first row and for notes';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history', '');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.stage_history_id_seq', '');

-- Validation before the row is written, bookkeeping after (doc/design.md).
CREATE FUNCTION leadmgmt.lead_stage_check()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_stage_check';
COMMENT ON FUNCTION leadmgmt.lead_stage_check() IS
	'Trigger: validates a new lead''s entry stage or a stage move, and sets stage_entered_at';

CREATE FUNCTION leadmgmt.lead_stage_record()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_stage_record';
COMMENT ON FUNCTION leadmgmt.lead_stage_record() IS
	'Trigger: appends the stage a lead entered to leadmgmt.stage_history, as the extension owner';

CREATE FUNCTION leadmgmt.stage_history_guard()
RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_stage_history_guard';
COMMENT ON FUNCTION leadmgmt.stage_history_guard() IS
	'Trigger: keeps leadmgmt.stage_history append-only and written by the extension alone';

CREATE TRIGGER lead_stage_check
	BEFORE INSERT OR UPDATE OF stage ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_stage_check();
CREATE TRIGGER lead_stage_record_insert
	AFTER INSERT ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_stage_record();
CREATE TRIGGER lead_stage_record_update
	AFTER UPDATE OF stage ON leadmgmt.lead
	FOR EACH ROW WHEN (OLD.stage IS DISTINCT FROM NEW.stage)
	EXECUTE FUNCTION leadmgmt.lead_stage_record();
CREATE TRIGGER stage_history_guard
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.stage_history
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.stage_history_guard();
CREATE TRIGGER stage_history_no_truncate
	BEFORE TRUNCATE ON leadmgmt.stage_history
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.stage_history_guard();

-- History written before 1.0.0, or restored from a dump of such a version,
-- lacks entry_number and time_in_from_stage; this fills them from the rows
-- themselves.  It writes past the append-only guard, so it runs only for a
-- superuser (session_replication_role), and it changes no other column.
CREATE FUNCTION leadmgmt.fill_history_facts()
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET session_replication_role = replica
AS $$
DECLARE
	filled bigint;
BEGIN
	UPDATE leadmgmt.stage_history h
	   SET entry_number = f.entry_number, time_in_from_stage = f.time_in_from_stage
	  FROM (SELECT x.id,
	               CASE WHEN x.entry THEN pg_catalog.row_number() OVER (
	                        PARTITION BY x.lead_id, x.to_stage, x.entry ORDER BY x.changed_at, x.id) END AS entry_number,
	               CASE WHEN x.entry THEN x.changed_at OPERATOR(pg_catalog.-) pg_catalog.lag(x.changed_at) OVER (
	                        PARTITION BY x.lead_id, x.entry ORDER BY x.changed_at, x.id) END AS time_in_from_stage
	          FROM (SELECT y.*, y.from_stage IS DISTINCT FROM y.to_stage AS entry
	                  FROM leadmgmt.stage_history y) x) f
	 WHERE h.id OPERATOR(pg_catalog.=) f.id
	   AND (h.entry_number IS DISTINCT FROM f.entry_number::integer
	        OR h.time_in_from_stage IS DISTINCT FROM f.time_in_from_stage);
	GET DIAGNOSTICS filled = ROW_COUNT;
	-- the funnel summaries count these facts
	IF filled > 0 THEN
		PERFORM leadmgmt.rebuild_funnel_summary();
	END IF;
	RETURN filled;
END
$$;
REVOKE ALL ON FUNCTION leadmgmt.fill_history_facts() FROM PUBLIC;
COMMENT ON FUNCTION leadmgmt.fill_history_facts() IS
	'Superuser: fills stage_history.entry_number and time_in_from_stage where they are missing or wrong (history from before 1.0.0); returns the rows changed';

CREATE FUNCTION leadmgmt.set_stage(lead bigint, stage text, reason text DEFAULT NULL,
                                   at timestamptz DEFAULT pg_catalog.now())
RETURNS leadmgmt.lead
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'leadmgmt_set_stage';
COMMENT ON FUNCTION leadmgmt.set_stage(bigint, text, text, timestamptz) IS
	'Move a lead to another stage, validated against leadmgmt.stage_transition and recorded in leadmgmt.stage_history at "at" with "reason"; same stage again is a no-op';
