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
-- Mirrors the SSPACE of every aggregate with an internal state
-- (sql/parts/40_scoring.sql, 50_funnel.sql, 60_analytics.sql,
-- 60_analytics_attribution.sql, 70_learned.sql).
--
-- SSPACE is the planner's estimate of a state's bytes per group; without it
-- the planner assumes 8 kB and partitions hash aggregation (doc/scaling.md).
-- ALTER AGGREGATE cannot change it, and dropping the aggregates would drop
-- the views and functions built on them (funnel, stage_velocity,
-- campaign_attribution, funnel_chart, funnel_svg, snapshot_funnel) together
-- with the privileges grant_access() gave on them.  The update therefore
-- sets the one planner figure in the catalog, which leaves every object as
-- CREATE AGGREGATE ... SSPACE makes it (the update runs as a superuser: the
-- extension is not trusted).
UPDATE pg_catalog.pg_aggregate a SET aggtransspace = v.sspace
  FROM (VALUES
	('leadmgmt.decayed_sum(float8, timestamptz, interval, timestamptz)'::pg_catalog.regprocedure, 88),
	('leadmgmt.window_funnel(interval, timestamptz, boolean[])'::pg_catalog.regprocedure, 120),
	('leadmgmt.window_funnel(interval, text, timestamptz, boolean[])'::pg_catalog.regprocedure, 120),
	('leadmgmt.funnel_step_times(interval, timestamptz, boolean[])'::pg_catalog.regprocedure, 120),
	('leadmgmt.funnel_step_times(interval, text, timestamptz, boolean[])'::pg_catalog.regprocedure, 120),
	('leadmgmt.interval_percentiles(interval, float8[])'::pg_catalog.regprocedure, 1456),
	('leadmgmt.stage_conversions(bigint, text, timestamptz, text[], text[])'::pg_catalog.regprocedure, 1008),
	('leadmgmt.attribution(text, text, timestamptz)'::pg_catalog.regprocedure, 984),
	('leadmgmt.attribution(text, text, timestamptz, boolean)'::pg_catalog.regprocedure, 984),
	('leadmgmt.logreg(boolean, float8[])'::pg_catalog.regprocedure, 1024),
	('leadmgmt.logreg(boolean, float8[], float8)'::pg_catalog.regprocedure, 1024),
	('leadmgmt.logreg_summary(boolean, float8[])'::pg_catalog.regprocedure, 1024),
	('leadmgmt.logreg_summary(boolean, float8[], float8)'::pg_catalog.regprocedure, 1024),
	('leadmgmt.logreg_step(boolean, float8[], float8[])'::pg_catalog.regprocedure, 672),
	('leadmgmt.auc(float8, boolean)'::pg_catalog.regprocedure, 280)) AS v(agg, sspace)
 WHERE a.aggfnoid OPERATOR(pg_catalog.=) v.agg;

-- Mirrors sql/parts/40_scoring.sql (activity triggers) and
-- sql/parts/80_identity.sql (activity_lead_resolve).

-- New activity rows are resolved through merged_into by activity_score_row
-- (once per lead and statement, no query per row) and checked again once per
-- statement by activity_score_statement (src/scoring.c): activity_lead_resolve
-- now covers UPDATEs of lead_id only, so COPY runs no query per row.
DROP TRIGGER activity_score_row ON leadmgmt.activity;
CREATE TRIGGER activity_score_row
	BEFORE INSERT ON leadmgmt.activity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.activity_score_row();
COMMENT ON FUNCTION leadmgmt.activity_score_row() IS
	'Trigger: a new activity row of a merged lead goes to the lead it was merged into (looked up once per lead and statement, no query per row), and gets the points of matching scoring rules unless it arrives with points';
DROP TRIGGER activity_lead_resolve ON leadmgmt.activity;
CREATE TRIGGER activity_lead_resolve
	BEFORE UPDATE OF lead_id ON leadmgmt.activity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.activity_lead_resolve();
COMMENT ON FUNCTION leadmgmt.activity_lead_resolve() IS
	'Trigger: an activity whose lead_id is updated to a merged lead goes to the lead it was merged into; waits for a merge in progress';
COMMENT ON FUNCTION leadmgmt.activity_score_statement() IS
	'Trigger: for the rows of one statement, moves rows of merged leads to the lead they resolve to, then applies caps, decay components, lead scores and e-mail hygiene in lead order, one write per lead, and hands hot leads to sales';

-- END ingest



-- BEGIN behavioural (ClickHouse parity, sequences, retention)


-- END behavioural



-- BEGIN structure (one shape for every capability)


-- END structure



-- BEGIN sales loop (change feed, opportunities, campaigns)


-- END sales loop



-- BEGIN nurture


-- END nurture



-- BEGIN bi (chartable durations, reader surface)


-- END bi
