
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

CREATE AGGREGATE leadmgmt.attribution(model text, touch text, ts timestamptz) (
	SFUNC = leadmgmt.attribution_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.attribution_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.attribution_combine,
	SERIALFUNC = leadmgmt.attribution_serialize,
	DESERIALFUNC = leadmgmt.attribution_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz) IS
	'Per group {touch: weight} under model first_touch, last_touch, linear, u_shaped or ''time_decay:<half-life>''; weights sum to exactly 1, repeated touches summed; NULL touch or ts rows skipped; NULL for no touches';

CREATE AGGREGATE leadmgmt.attribution(model text, touch text, ts timestamptz, milestone boolean) (
	SFUNC = leadmgmt.attribution_trans,
	STYPE = internal,
	FINALFUNC = leadmgmt.attribution_final,
	FINALFUNC_MODIFY = READ_ONLY,
	COMBINEFUNC = leadmgmt.attribution_combine,
	SERIALFUNC = leadmgmt.attribution_serialize,
	DESERIALFUNC = leadmgmt.attribution_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.attribution(text, text, timestamptz, boolean) IS
	'attribution with a milestone flag, needed by w_shaped (30 % first, 30 % first milestone, 30 % last, 10 % the others); other models ignore it';
