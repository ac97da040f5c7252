
-------------------------------------------------------------------------------
-- Sequences and retention (doc/sequences.md)
-------------------------------------------------------------------------------
-- sequence_match and sequence_count are C aggregates with ClickHouse's
-- sequenceMatch / sequenceCount semantics, retention with ClickHouse's
-- retention.  As for the funnel, the support functions are C and resolve no
-- names.  sequence_match and sequence_count share their transition, combine,
-- serialise and deserialise functions (and their state, over the same
-- arguments); the final functions leave the state untouched (READ_ONLY).
CREATE FUNCTION leadmgmt.sequence_trans(internal, text, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_trans';
COMMENT ON FUNCTION leadmgmt.sequence_trans(internal, text, timestamptz, boolean[]) IS
	'Transition function of sequence_match and sequence_count: checks the pattern once per group, keeps the rows that match a condition';

CREATE FUNCTION leadmgmt.sequence_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_combine';
COMMENT ON FUNCTION leadmgmt.sequence_combine(internal, internal) IS
	'Combine function of sequence_match and sequence_count: merges two partial states with the same pattern and conditions';

CREATE FUNCTION leadmgmt.sequence_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_serialize';
COMMENT ON FUNCTION leadmgmt.sequence_serialize(internal) IS
	'Serialisation function of sequence_match and sequence_count (parallel workers)';

CREATE FUNCTION leadmgmt.sequence_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_deserialize';
COMMENT ON FUNCTION leadmgmt.sequence_deserialize(bytea, internal) IS
	'Deserialisation function of sequence_match and sequence_count; rejects malformed states';

CREATE FUNCTION leadmgmt.sequence_match_final(internal)
RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_match_final';
COMMENT ON FUNCTION leadmgmt.sequence_match_final(internal) IS
	'Final function of sequence_match: whether the events match the pattern';

CREATE FUNCTION leadmgmt.sequence_count_final(internal)
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_sequence_count_final';
COMMENT ON FUNCTION leadmgmt.sequence_count_final(internal) IS
	'Final function of sequence_count: the number of non-overlapping matches of the pattern';

-- SSPACE: a state is a 32-byte header and the pattern (one chunk), and an
-- event array of 16 bytes an event that starts at 4 events (another chunk):
-- about 160 bytes for the few events of a typical lead.
-- Both aggregates differ only in their final function, so one template
-- declares them (the same objects as literal CREATE AGGREGATE statements;
-- test/expected/install.out lists them).
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('sequence_match', 'pattern text, ts timestamptz, VARIADIC conds boolean[]', 'sequence_match_final'),
		('sequence_count', 'pattern text, ts timestamptz, VARIADIC conds boolean[]', 'sequence_count_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.sequence_trans,
			STYPE = internal,
			SSPACE = 160,
			FINALFUNC = leadmgmt.%I,
			FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.sequence_combine,
			SERIALFUNC = leadmgmt.sequence_serialize,
			DESERIALFUNC = leadmgmt.sequence_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.sequence_match(text, timestamptz, VARIADIC boolean[]) IS
	'Whether the group''s events, in time order, match the pattern: (?N) an event matching condition N, . any event, .* any events, (?t<=S) etc. seconds since the previous event (ClickHouse sequenceMatch)';

COMMENT ON AGGREGATE leadmgmt.sequence_count(text, timestamptz, VARIADIC boolean[]) IS
	'Number of non-overlapping matches of the pattern in the group''s events (ClickHouse sequenceCount)';

CREATE FUNCTION leadmgmt.retention_trans(bigint, boolean[])
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_trans';
COMMENT ON FUNCTION leadmgmt.retention_trans(bigint, boolean[]) IS
	'Transition function of retention: the conditions that held for some row (bits 0..31) and their number (bits 32..39)';

CREATE FUNCTION leadmgmt.retention_combine(bigint, bigint)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_combine';
COMMENT ON FUNCTION leadmgmt.retention_combine(bigint, bigint) IS
	'Combine function of retention: the union of the conditions seen';

CREATE FUNCTION leadmgmt.retention_final(bigint)
RETURNS boolean[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_retention_final';
COMMENT ON FUNCTION leadmgmt.retention_final(bigint) IS
	'Final function of retention: element 1 is condition 1, element k is condition 1 and condition k';

CREATE AGGREGATE leadmgmt.retention(VARIADIC conds boolean[]) (
	SFUNC = leadmgmt.retention_trans,
	STYPE = bigint,
	FINALFUNC = leadmgmt.retention_final,
	COMBINEFUNC = leadmgmt.retention_combine,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.retention(VARIADIC boolean[]) IS
	'Element 1: condition 1 held for some row of the group; element k: condition 1 and condition k each held for some row (ClickHouse retention)';
