/*
 * score_state.c
 *		SQL glue for the per-lead scoring state (src/core/score_state.c):
 *		bytea conversion for the scoring trigger, and score_state_pack,
 *		_components, _awards, _value and _latest for rescore(), score() and
 *		the inspection views.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "leadmgmt.h"
#include "score_state.h"

static void *
state_palloc(size_t size)
{
	return palloc0(size);
}

void
lm_state_from_bytea(bytea *raw, LmState *state)
{
	const char *error = NULL;

	if (raw == NULL)
	{
		memset(state, 0, sizeof(*state));
		return;
	}
	if (!lm_state_parse((const uint8_t *) VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw),
						state, state_palloc, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid leadmgmt score state: %s", error),
				 errhint("Run leadmgmt.rescore() to rebuild every score state.")));
}

bytea *
lm_state_to_bytea(const LmState *state)
{
	size_t		len = lm_state_serialized_size(state);
	bytea	   *result = palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	lm_state_serialize(state, (uint8_t *) VARDATA(result));
	return result;
}

/*
 * Fold points in.  Rule points and activity points are bounded (CHECK
 * constraints, doc/scoring.md) so that no sum can overflow; should one
 * overflow anyway (a state written around those bounds), say so rather
 * than store an infinite score.
 */
bool
lm_state_fold(LmState *state, int64 half_life_us, float8 points, TimestampTz ts)
{
	int			i;

	if (!lm_state_add_points(state, half_life_us, points, ts, state_palloc))
		return false;
	for (i = 0; i < state->ncomponents; i++)
		if (!isfinite(state->components[i].c.value))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("score overflows"),
					 errdetail("Adding %g points to a score component gives a value that is not finite.", points),
					 errhint("Scoring rule points lie between -1e9 and 1e9; run leadmgmt.rescore() to rebuild the score states.")));
	return true;
}

LmStateAward *
lm_state_counter(LmState *state, int64 rule_id)
{
	LmStateAward *award = lm_state_award(state, rule_id, state_palloc);

	if (award == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many capped scoring rules for one lead")));
	return award;
}

/* deconstruct a one-dimensional array argument; NULL means empty */
static int
array_arg(FunctionCallInfo fcinfo, int argno, Oid elemtype, int elemlen, bool byval,
		  char align, Datum **values)
{
	ArrayType  *array;
	bool	   *nulls;
	int			n;
	int			i;

	if (PG_ARGISNULL(argno))
	{
		*values = NULL;
		return 0;
	}
	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("score_state_pack takes one-dimensional arrays")));
	deconstruct_array(array, elemtype, elemlen, byval, align, values, &nulls, &n);
	for (i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("score_state_pack: array elements must not be null")));
	return n;
}

PG_FUNCTION_INFO_V1(leadmgmt_score_state_pack);
Datum
leadmgmt_score_state_pack(PG_FUNCTION_ARGS)
{
	Datum	   *hl,
			   *value,
			   *ref,
			   *rule,
			   *times,
			   *last;
	int			nc = array_arg(fcinfo, 0, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &hl);
	int			nv = array_arg(fcinfo, 1, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &value);
	int			nr = array_arg(fcinfo, 2, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ref);
	int			na = array_arg(fcinfo, 3, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &rule);
	int			nt = array_arg(fcinfo, 4, INT4OID, 4, true, TYPALIGN_INT, &times);
	int			nl = array_arg(fcinfo, 5, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &last);
	LmState		state;
	bytea	   *result;
	int			i;

	if (nc != nv || nc != nr || na != nt || na != nl)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("score_state_pack: component arrays and award arrays must each have equal lengths")));
	memset(&state, 0, sizeof(state));
	for (i = 0; i < nc; i++)
		if (!lm_state_fold(&state, DatumGetInt64(hl[i]), DatumGetFloat8(value[i]),
						   DatumGetTimestampTz(ref[i])))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("score_state_pack: too many components")));
	for (i = 0; i < na; i++)
	{
		LmStateAward *award = lm_state_counter(&state, DatumGetInt64(rule[i]));

		award->times = DatumGetInt32(times[i]);
		award->last = DatumGetTimestampTz(last[i]);
	}
	/* a valid state is what parsing accepts: check before storing it */
	result = lm_state_to_bytea(&state);
	lm_state_from_bytea(result, &state);
	PG_RETURN_BYTEA_P(result);
}

static Datum
state_rows(FunctionCallInfo fcinfo, bool components)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LmState		state;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	lm_state_from_bytea(PG_GETARG_BYTEA_PP(0), &state);
	for (i = 0; i < (components ? state.ncomponents : state.nawards); i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (components)
		{
			values[0] = Int64GetDatum(state.components[i].half_life_us);
			values[1] = Float8GetDatum(state.components[i].c.value);
			values[2] = TimestampTzGetDatum(state.components[i].c.ref);
		}
		else
		{
			values[0] = Int64GetDatum(state.awards[i].rule_id);
			values[1] = Int32GetDatum(state.awards[i].times);
			values[2] = TimestampTzGetDatum(state.awards[i].last);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(leadmgmt_score_state_components);
Datum
leadmgmt_score_state_components(PG_FUNCTION_ARGS)
{
	return state_rows(fcinfo, true);
}

PG_FUNCTION_INFO_V1(leadmgmt_score_state_awards);
Datum
leadmgmt_score_state_awards(PG_FUNCTION_ARGS)
{
	return state_rows(fcinfo, false);
}

PG_FUNCTION_INFO_V1(leadmgmt_score_state_value);
Datum
leadmgmt_score_state_value(PG_FUNCTION_ARGS)
{
	LmState		state;

	lm_state_from_bytea(PG_GETARG_BYTEA_PP(0), &state);
	PG_RETURN_FLOAT8(lm_state_value_at(&state, PG_GETARG_TIMESTAMPTZ(1)));
}

PG_FUNCTION_INFO_V1(leadmgmt_score_state_latest);
Datum
leadmgmt_score_state_latest(PG_FUNCTION_ARGS)
{
	LmState		state;

	lm_state_from_bytea(PG_GETARG_BYTEA_PP(0), &state);
	if (state.ncomponents == 0)
		PG_RETURN_NULL();
	PG_RETURN_TIMESTAMPTZ(lm_state_latest(&state));
}
