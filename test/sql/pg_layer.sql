-- covers: the shared PostgreSQL layer (src/pg): a lookup cache (the fit cache, the stage vocabulary) is built in a transient context and kept (under CacheMemoryContext) only when the build succeeded, dropped when a watched table changes, and built again
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
DROP ROLE IF EXISTS lm_test_cache_probe;
CREATE ROLE lm_test_cache_probe NOLOGIN;
RESET client_min_messages;
GRANT USAGE ON SCHEMA leadmgmt TO lm_test_cache_probe;
-- the backend's long-lived memory contexts of leadmgmt (name and ident
-- only: the parent and level columns differ between PostgreSQL versions)
CREATE VIEW lm_caches AS
SELECT name, ident FROM pg_backend_memory_contexts
 WHERE name LIKE 'leadmgmt%' ORDER BY name, ident;

-- the fit cache's build fails half-way (the role may not read the
-- settings): nothing of it may stay behind in this backend
SET ROLE lm_test_cache_probe;
\set VERBOSITY terse
SELECT leadmgmt.fit_score('{"size": 10}');
\set VERBOSITY default
RESET ROLE;
SELECT * FROM lm_caches;

-- a build that succeeds outlives its statement
SELECT leadmgmt.fit_score('{"size": 10}') AS no_rules_no_score;
SELECT * FROM lm_caches;

-- a change of a watched table drops it; the next call builds it again
INSERT INTO leadmgmt.fit_rule (name, attribute, op, value, points) VALUES ('big', 'size', 'eq', '10', 7);
SELECT * FROM lm_caches;
SELECT leadmgmt.fit_score('{"size": 10}') AS new_rule_counts;
SELECT * FROM lm_caches;
SELECT leadmgmt.set_setting('fit_grade_a', '5');
SELECT * FROM lm_caches;
SELECT leadmgmt.fit_grade(leadmgmt.fit_score('{"size": 10}')) AS new_threshold_counts;

-- the stage machine's vocabulary (src/stage_vocabulary.c) is a lookup cache
-- of the same kind: built by the first move, dropped by a new transition,
-- which the next move then obeys
INSERT INTO leadmgmt.lead (email, stage) VALUES ('cache@example.com', 'inquiry');
SELECT * FROM lm_caches;
\set VERBOSITY terse
SELECT (leadmgmt.set_stage(id, 'sal')).stage FROM leadmgmt.lead WHERE email = 'cache@example.com';
\set VERBOSITY default
INSERT INTO leadmgmt.stage_transition (from_stage, to_stage) VALUES ('inquiry', 'sal');
SELECT * FROM lm_caches;
SELECT (leadmgmt.set_stage(id, 'sal')).stage AS new_transition_counts FROM leadmgmt.lead WHERE email = 'cache@example.com';
SELECT * FROM lm_caches;

DROP VIEW lm_caches;
SET client_min_messages = warning;
DROP OWNED BY lm_test_cache_probe;
DROP ROLE lm_test_cache_probe;
