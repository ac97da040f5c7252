
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
