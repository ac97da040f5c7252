
-------------------------------------------------------------------------------
-- Funnels: windowed conversion funnels per lead (doc/funnel.md)
-------------------------------------------------------------------------------
-- window_funnel and funnel_step_times are C aggregates with ClickHouse
-- windowFunnel semantics.  The support functions are C and resolve no names,
-- so they need no pinned search_path (a SET clause would route every row
-- through fmgr_security_definer).  One transition, combine, serialise and
-- deserialise function serves all four aggregates; aggregates over the same
-- arguments share one state.  The final functions leave the state untouched
-- (they sort a copy when needed), so they are READ_ONLY and the aggregates
-- also work as window functions.
CREATE FUNCTION leadmgmt.window_funnel_trans(internal, interval, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_trans';
COMMENT ON FUNCTION leadmgmt.window_funnel_trans(internal, interval, timestamptz, boolean[]) IS
	'Transition function of window_funnel and funnel_step_times: keeps the events that match a step';

CREATE FUNCTION leadmgmt.window_funnel_trans(internal, interval, text, timestamptz, boolean[])
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_trans_mode';
COMMENT ON FUNCTION leadmgmt.window_funnel_trans(internal, interval, text, timestamptz, boolean[]) IS
	'Transition function of window_funnel and funnel_step_times with a mode: keeps the events that match a step';

CREATE FUNCTION leadmgmt.window_funnel_combine(internal, internal)
RETURNS internal
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_combine';
COMMENT ON FUNCTION leadmgmt.window_funnel_combine(internal, internal) IS
	'Combine function of the funnel aggregates: merges two partial states with the same window, mode and steps';

CREATE FUNCTION leadmgmt.window_funnel_serialize(internal)
RETURNS bytea
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_serialize';
COMMENT ON FUNCTION leadmgmt.window_funnel_serialize(internal) IS
	'Serialisation function of the funnel aggregates (parallel workers)';

CREATE FUNCTION leadmgmt.window_funnel_deserialize(bytea, internal)
RETURNS internal
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_deserialize';
COMMENT ON FUNCTION leadmgmt.window_funnel_deserialize(bytea, internal) IS
	'Deserialisation function of the funnel aggregates; rejects malformed states';

CREATE FUNCTION leadmgmt.window_funnel_final(internal)
RETURNS integer
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_window_funnel_final';
COMMENT ON FUNCTION leadmgmt.window_funnel_final(internal) IS
	'Final function of window_funnel: the highest step reached (0 when none)';

CREATE FUNCTION leadmgmt.funnel_step_times_final(internal)
RETURNS timestamptz[]
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_funnel_step_times_final';
COMMENT ON FUNCTION leadmgmt.funnel_step_times_final(internal) IS
	'Final function of funnel_step_times: the step times of the chain that reached the highest step first';

-- The four aggregates differ only in their arguments and final function, so
-- one template declares them (the objects are the same as four literal
-- CREATE AGGREGATE statements; test/expected/install.out lists them):
--	SFUNC window_funnel_trans, STYPE internal, SSPACE 120 (state bytes per
--	group measured by bench/aggregates.sh, doc/scaling.md), FINALFUNC the
--	one named, READ_ONLY, COMBINEFUNC window_funnel_combine, SERIALFUNC
--	window_funnel_serialize, DESERIALFUNC window_funnel_deserialize,
--	PARALLEL SAFE.
DO $aggregates$
DECLARE
	a record;
BEGIN
	FOR a IN SELECT * FROM (VALUES
		('window_funnel',     'window_size interval, ts timestamptz, VARIADIC steps boolean[]',            'window_funnel_final'),
		('window_funnel',     'window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]', 'window_funnel_final'),
		('funnel_step_times', 'window_size interval, ts timestamptz, VARIADIC steps boolean[]',            'funnel_step_times_final'),
		('funnel_step_times', 'window_size interval, mode text, ts timestamptz, VARIADIC steps boolean[]', 'funnel_step_times_final'))
		AS v(name, args, final)
	LOOP
		EXECUTE pg_catalog.format('CREATE AGGREGATE leadmgmt.%I(%s) (
			SFUNC = leadmgmt.window_funnel_trans, STYPE = internal, SSPACE = 120,
			FINALFUNC = leadmgmt.%I, FINALFUNC_MODIFY = READ_ONLY,
			COMBINEFUNC = leadmgmt.window_funnel_combine,
			SERIALFUNC = leadmgmt.window_funnel_serialize,
			DESERIALFUNC = leadmgmt.window_funnel_deserialize,
			PARALLEL = SAFE)', a.name, a.args, a.final);
	END LOOP;
END
$aggregates$;
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, timestamptz, VARIADIC boolean[]) IS
	'Highest step (0..number of steps) of a chain step 1, step 2, ... in time order with every step within window_size of step 1 (ClickHouse windowFunnel)';
COMMENT ON AGGREGATE leadmgmt.window_funnel(interval, text, timestamptz, VARIADIC boolean[]) IS
	'window_funnel with a mode: comma-separated strict_deduplication, strict_order, strict_increase, strict_once, allow_reentry ('''' = default)';
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, timestamptz, VARIADIC boolean[]) IS
	'Times of steps 1..window_funnel of the chain that reached the highest step first (its latest possible step 1); empty when no step was reached';
COMMENT ON AGGREGATE leadmgmt.funnel_step_times(interval, text, timestamptz, VARIADIC boolean[]) IS
	'funnel_step_times with a mode (see window_funnel)';
