
-------------------------------------------------------------------------------
-- Scoring: rules, time decay, fit grade, hand-off (doc/scoring.md)
-------------------------------------------------------------------------------
CREATE SEQUENCE leadmgmt.scoring_rule_id_seq AS bigint;
CREATE TABLE leadmgmt.scoring_rule (
	id             bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.scoring_rule_id_seq'),
	name           text NOT NULL UNIQUE,
	kind           text NOT NULL REFERENCES leadmgmt.activity_kind (name),
	detail_pattern text
	               -- the one malformed LIKE pattern: a trailing lone escape character
	               CONSTRAINT scoring_rule_pattern_valid CHECK (detail_pattern !~ '(^|[^\\])(\\\\)*\\$'),
	campaign       text,
	min_duration_s integer CONSTRAINT scoring_rule_min_duration_not_negative CHECK (min_duration_s >= 0),
	points         float8 NOT NULL
	               CONSTRAINT scoring_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9),
	half_life      interval
	               CONSTRAINT scoring_rule_half_life_positive CHECK (half_life > interval '0'),
	max_times      integer CONSTRAINT scoring_rule_max_times_positive CHECK (max_times > 0),
	active         boolean NOT NULL DEFAULT true,
	overrides      text REFERENCES leadmgmt.scoring_rule (name),
	description    text,
	builtin        boolean NOT NULL DEFAULT false,
	CONSTRAINT scoring_rule_overrides_builtin_only CHECK (overrides IS NULL OR NOT builtin)
);
ALTER SEQUENCE leadmgmt.scoring_rule_id_seq OWNED BY leadmgmt.scoring_rule.id;
COMMENT ON TABLE leadmgmt.scoring_rule IS
	'Behaviour scoring rules: points for matching activities, with optional decay and cap';
COMMENT ON COLUMN leadmgmt.scoring_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt.scoring_rule.name IS 'unique rule name';
COMMENT ON COLUMN leadmgmt.scoring_rule.kind IS 'activity kind the rule applies to';
COMMENT ON COLUMN leadmgmt.scoring_rule.detail_pattern IS 'LIKE pattern on activity.detail (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.campaign IS 'activity.campaign must equal this (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.min_duration_s IS 'activity.duration_s must be at least this (NULL: any)';
COMMENT ON COLUMN leadmgmt.scoring_rule.points IS 'points awarded, may be negative; between -1e9 and 1e9';
COMMENT ON COLUMN leadmgmt.scoring_rule.half_life IS 'points halve every half_life (NULL: no decay); positive';
COMMENT ON COLUMN leadmgmt.scoring_rule.max_times IS 'award only the first max_times matches per lead, in occurred_at order (NULL: unlimited)';
COMMENT ON COLUMN leadmgmt.scoring_rule.active IS 'inactive rules award nothing';
COMMENT ON COLUMN leadmgmt.scoring_rule.overrides IS 'name of a built-in rule this user rule replaces (the built-in one then no longer applies)';
COMMENT ON COLUMN leadmgmt.scoring_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt.scoring_rule.builtin IS 'shipped with the extension: read-only, not dumped';

-- The default rule set (doc/scoring.md explains the choice of values)
INSERT INTO leadmgmt.scoring_rule
	(name, kind, detail_pattern, min_duration_s, points, half_life, max_times, description, builtin) VALUES
	('form_submit',        'form_submit',     NULL,           NULL,  30, '90 days',  5,    'submitted a web form', true),
	('whitepaper',         'download',        '%whitepaper%', NULL,  20, '90 days',  5,    'downloaded a whitepaper', true),
	('download',           'download',        NULL,           NULL,   5, '90 days',  10,   'downloaded any asset', true),
	('seminar_signup',     'seminar_signup',  NULL,           NULL,  10, '90 days',  NULL, 'signed up for a seminar', true),
	('seminar_attend',     'seminar_attend',  NULL,           NULL,  25, '180 days', NULL, 'attended a seminar', true),
	('exhibition_card',    'exhibition_card', NULL,           NULL,  15, '180 days', NULL, 'left a business card at an exhibition', true),
	('pricing_page',       'page_view',       '%/pricing%',   30,    15, '30 days',  5,    'spent at least 30 s on the pricing page', true),
	('page_view',          'page_view',       NULL,           NULL,   1, '30 days',  20,   'viewed any page', true),
	('email_click',        'email_click',     NULL,           NULL,   5, '30 days',  10,   'clicked a link in an e-mail', true),
	('email_open',         'email_open',      NULL,           NULL,   1, '30 days',  10,   'opened an e-mail', true),
	('call',               'call',            NULL,           NULL,  10, '90 days',  NULL, 'talked to us on the phone', true),
	('visit',              'visit',           NULL,           NULL,  30, '180 days', NULL, 'met sales', true),
	('email_bounce',       'email_bounce',    NULL,           NULL, -20, NULL,       1,    'e-mail address bounced', true),
	('unsubscribe',        'unsubscribe',     NULL,           NULL, -50, NULL,       1,    'unsubscribed from e-mail', true);

CREATE TRIGGER scoring_rule_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.scoring_rule
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER scoring_rule_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.scoring_rule
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.scoring_rule', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.scoring_rule_id_seq', '');

CREATE SEQUENCE leadmgmt.fit_rule_id_seq AS bigint;
CREATE TABLE leadmgmt.fit_rule (
	id          bigint PRIMARY KEY DEFAULT pg_catalog.nextval('leadmgmt.fit_rule_id_seq'),
	name        text NOT NULL UNIQUE,
	attribute   text NOT NULL,
	op          text NOT NULL CONSTRAINT fit_rule_op_known CHECK (op IN ('eq', 'in', 'between')),
	value       jsonb,
	min_value   numeric,
	max_value   numeric,
	points      float8 NOT NULL
	            CONSTRAINT fit_rule_points_bounded CHECK (points BETWEEN -1e9 AND 1e9),
	active      boolean NOT NULL DEFAULT true,
	description text,
	builtin     boolean NOT NULL DEFAULT false,
	CONSTRAINT fit_rule_operands CHECK (CASE op
		WHEN 'eq' THEN pg_catalog.jsonb_typeof(value) IN ('string', 'number', 'boolean')
		WHEN 'in' THEN pg_catalog.jsonb_typeof(value) = 'array'
		ELSE value IS NULL AND (min_value IS NOT NULL OR max_value IS NOT NULL)
		     AND (min_value IS NULL OR max_value IS NULL OR min_value <= max_value) END)
);
ALTER SEQUENCE leadmgmt.fit_rule_id_seq OWNED BY leadmgmt.fit_rule.id;
COMMENT ON TABLE leadmgmt.fit_rule IS 'Firmographic fit rules on lead.attributes, giving fit_score and grade';
COMMENT ON COLUMN leadmgmt.fit_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt.fit_rule.name IS 'unique rule name';
COMMENT ON COLUMN leadmgmt.fit_rule.attribute IS 'top-level key of lead.attributes';
COMMENT ON COLUMN leadmgmt.fit_rule.op IS 'eq (equals value), in (one of the array value), between (numeric min_value..max_value, inclusive, either bound optional)';
COMMENT ON COLUMN leadmgmt.fit_rule.value IS 'JSON scalar for eq, JSON array for in';
COMMENT ON COLUMN leadmgmt.fit_rule.min_value IS 'lower bound for between (NULL: none)';
COMMENT ON COLUMN leadmgmt.fit_rule.max_value IS 'upper bound for between (NULL: none)';
COMMENT ON COLUMN leadmgmt.fit_rule.points IS 'fit points when the rule matches; between -1e9 and 1e9';
COMMENT ON COLUMN leadmgmt.fit_rule.active IS 'inactive rules give nothing';
COMMENT ON COLUMN leadmgmt.fit_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt.fit_rule.builtin IS 'shipped with the extension: read-only, not dumped (none are shipped)';
CREATE TRIGGER fit_rule_protect_builtin
	BEFORE INSERT OR UPDATE OR DELETE ON leadmgmt.fit_rule
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.protect_builtin();
CREATE TRIGGER fit_rule_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.fit_rule
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
-- grade thresholds are settings: reload the fit cache when they change
CREATE TRIGGER setting_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON leadmgmt.setting
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.vocabulary_changed();
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.fit_rule', 'WHERE NOT builtin');
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.fit_rule_id_seq', '');

-- Score state, maintained by the triggers: one row per lead holding one
-- decay component per distinct half-life, (value, ref_at) = that half-life's
-- points decayed to the latest activity folded in, and one counter per capped
-- rule.  One compact row per lead keeps scoring a COPY at one read and one
-- write per lead; the views below show the contents.
CREATE TABLE leadmgmt.score_state (
	lead_id bigint PRIMARY KEY REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	state   bytea NOT NULL
);
COMMENT ON TABLE leadmgmt.score_state IS
	'Scoring state per lead (maintained by the extension); read it through leadmgmt.score_component and leadmgmt.score_award';
COMMENT ON COLUMN leadmgmt.score_state.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_state.state IS 'decay components and cap counters, packed (leadmgmt.score_state_pack)';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.score_state', '');

-- What purged activity leaves behind (leadmgmt.purge_activity, doc/scaling.md):
-- per lead, the points its purged activities had earned, as decay components,
-- and how often each rule had awarded them, in the score_state format.
-- rescore() and score() add it to what the remaining activity earns, so
-- deleting old activity changes no score; it is frozen at the rules in force
-- when the activity was purged.
CREATE TABLE leadmgmt.purged_score (
	lead_id       bigint PRIMARY KEY REFERENCES leadmgmt.lead (id) ON DELETE CASCADE,
	state         bytea NOT NULL,
	purged_before timestamptz NOT NULL,
	activities    bigint NOT NULL,
	purged_at     timestamptz NOT NULL
);
COMMENT ON TABLE leadmgmt.purged_score IS
	'Score points and cap counters of purged activity, per lead (written by leadmgmt.purge_activity); rescore() and score() count them';
COMMENT ON COLUMN leadmgmt.purged_score.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.purged_score.state IS 'decay components and award counters of the purged activity, packed like score_state.state';
COMMENT ON COLUMN leadmgmt.purged_score.purged_before IS 'latest cutoff: activity of this lead before it is gone';
COMMENT ON COLUMN leadmgmt.purged_score.activities IS 'activity rows of this lead purged so far';
COMMENT ON COLUMN leadmgmt.purged_score.purged_at IS 'when activity of this lead was last purged';
SELECT pg_catalog.pg_extension_config_dump('leadmgmt.purged_score', '');

CREATE FUNCTION leadmgmt.score_state_pack(half_life_us bigint[], value float8[], ref_at timestamptz[],
                                          award_rule bigint[], award_times integer[],
                                          award_last timestamptz[])
RETURNS bytea
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_pack';
COMMENT ON FUNCTION leadmgmt.score_state_pack(bigint[], float8[], timestamptz[], bigint[], integer[], timestamptz[]) IS
	'Pack decay components and cap counters into a score_state value (used by rescore)';

CREATE FUNCTION leadmgmt.score_state_components(state bytea,
	OUT half_life_us bigint, OUT value float8, OUT ref_at timestamptz)
RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_components';
COMMENT ON FUNCTION leadmgmt.score_state_components(bytea) IS 'The decay components of a score_state value';

CREATE FUNCTION leadmgmt.score_state_awards(state bytea,
	OUT rule_id bigint, OUT times integer, OUT last_awarded_at timestamptz)
RETURNS SETOF record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_awards';
COMMENT ON FUNCTION leadmgmt.score_state_awards(bytea) IS 'The cap counters of a score_state value';

CREATE FUNCTION leadmgmt.score_state_value(state bytea, at timestamptz)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_value';
COMMENT ON FUNCTION leadmgmt.score_state_value(bytea, timestamptz) IS
	'Score held by a score_state value at a time at or after its latest activity';

CREATE FUNCTION leadmgmt.score_state_latest(state bytea)
RETURNS timestamptz
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_score_state_latest';
COMMENT ON FUNCTION leadmgmt.score_state_latest(bytea) IS
	'Time of the latest activity folded into a score_state value (NULL when none)';

-- Two states in one: components of a half-life fold exactly (score_state_pack
-- decays the older to the newer reference time), award counters add up.
CREATE FUNCTION leadmgmt.score_state_merge(a bytea, b bytea)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.score_state_pack(coalesce(c.half_life_us, '{}'), coalesce(c.value, '{}'),
	                                 coalesce(c.ref_at, '{}'), coalesce(w.rule_id, '{}'),
	                                 coalesce(w.times, '{}'), coalesce(w.last_at, '{}'))
	  FROM (SELECT array_agg(x.half_life_us ORDER BY x.ref_at) AS half_life_us,
	               array_agg(x.value ORDER BY x.ref_at) AS value,
	               array_agg(x.ref_at ORDER BY x.ref_at) AS ref_at
	          FROM (SELECT ca.half_life_us, ca.value, ca.ref_at FROM leadmgmt.score_state_components(a) ca
	                UNION ALL
	                SELECT cb.half_life_us, cb.value, cb.ref_at FROM leadmgmt.score_state_components(b) cb) x) c,
	       (SELECT array_agg(y.rule_id ORDER BY y.rule_id) AS rule_id,
	               array_agg(y.times ORDER BY y.rule_id) AS times,
	               array_agg(y.last_at ORDER BY y.rule_id) AS last_at
	          FROM (SELECT z.rule_id, sum(z.times)::integer AS times, max(z.last_awarded_at) AS last_at
	                  FROM (SELECT wa.rule_id, wa.times, wa.last_awarded_at FROM leadmgmt.score_state_awards(a) wa
	                        UNION ALL
	                        SELECT wb.rule_id, wb.times, wb.last_awarded_at FROM leadmgmt.score_state_awards(b) wb) z
	                 GROUP BY z.rule_id) y) w;
END;
COMMENT ON FUNCTION leadmgmt.score_state_merge(bytea, bytea) IS
	'Merge two score_state values: decay components of a half-life folded together, award counters added (NULL counts as empty)';

CREATE VIEW leadmgmt.score_component WITH (security_invoker = true) AS
	SELECT s.lead_id, c.half_life_us, c.value, c.ref_at
	  FROM leadmgmt.score_state s, leadmgmt.score_state_components(s.state) c;
COMMENT ON VIEW leadmgmt.score_component IS
	'Decay components per lead and half-life: score(lead, at) = sum of value * 2^-((at - ref_at) / half_life)';
COMMENT ON COLUMN leadmgmt.score_component.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_component.half_life_us IS 'half-life in microseconds (EXTRACT(EPOCH) conventions); 0 = no decay';
COMMENT ON COLUMN leadmgmt.score_component.value IS 'points of this half-life, decayed to ref_at';
COMMENT ON COLUMN leadmgmt.score_component.ref_at IS 'time of the latest activity folded in';

CREATE VIEW leadmgmt.score_award WITH (security_invoker = true) AS
	SELECT s.lead_id, a.rule_id, a.times, a.last_awarded_at
	  FROM leadmgmt.score_state s, leadmgmt.score_state_awards(s.state) a;
COMMENT ON VIEW leadmgmt.score_award IS
	'How often a capped rule (max_times) has awarded points to a lead';
COMMENT ON COLUMN leadmgmt.score_award.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt.score_award.rule_id IS 'the capped rule';
COMMENT ON COLUMN leadmgmt.score_award.times IS 'awards so far (at most max_times)';
COMMENT ON COLUMN leadmgmt.score_award.last_awarded_at IS 'occurred_at of the latest awarded activity';

-- Decay arithmetic shared by the triggers, rescore() and score()
CREATE FUNCTION leadmgmt.half_life_us(half_life interval)
RETURNS bigint
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_half_life_us';
COMMENT ON FUNCTION leadmgmt.half_life_us(interval) IS
	'Half-life in microseconds as scoring uses it (1 month = 30 days, 1 year = 365.25 days); NULL gives 0, no decay';

-- A half-life that scoring cannot use is refused when the rule is written:
-- beyond 2^63 microseconds (292,271 years) it does not fit (22008), and one
-- like '-1 year 361 days' is positive to PostgreSQL (a year of 360 days)
-- but not to scoring (365.25 days, 22023).  Found while fuzzing (by hand,
-- with the intervals of test/fuzz/setup.sql): such a rule was accepted,
-- and then every track() and COPY into activity failed.
-- half_life_us() raises the error; values PostgreSQL already calls not
-- positive are left to scoring_rule_half_life_positive (23514), which is
-- checked first (CHECK constraints run in name order).
ALTER TABLE leadmgmt.scoring_rule ADD CONSTRAINT scoring_rule_half_life_representable
	CHECK (half_life IS NULL OR half_life <= interval '0' OR leadmgmt.half_life_us(half_life) > 0);

CREATE FUNCTION leadmgmt.decay(points float8, ts timestamptz, half_life_us bigint, at timestamptz)
RETURNS float8
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decay';
COMMENT ON FUNCTION leadmgmt.decay(float8, timestamptz, bigint, timestamptz) IS
	'points * 2^-((at - ts) / half_life) for at >= ts, else points; half_life_us 0 = no decay';

-- decayed_sum(points, ts, half_life, at): the aggregate of doc/design.md
CREATE FUNCTION leadmgmt.decayed_sum_trans(internal, float8, timestamptz, interval, timestamptz)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_trans';
COMMENT ON FUNCTION leadmgmt.decayed_sum_trans(internal, float8, timestamptz, interval, timestamptz) IS
	'decayed_sum transition function';
CREATE FUNCTION leadmgmt.decayed_sum_combine(internal, internal)
RETURNS internal LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_combine';
COMMENT ON FUNCTION leadmgmt.decayed_sum_combine(internal, internal) IS 'decayed_sum combine function';
CREATE FUNCTION leadmgmt.decayed_sum_serialize(internal)
RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_serialize';
COMMENT ON FUNCTION leadmgmt.decayed_sum_serialize(internal) IS 'decayed_sum serialisation function';
CREATE FUNCTION leadmgmt.decayed_sum_deserialize(bytea, internal)
RETURNS internal LANGUAGE c STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_deserialize';
COMMENT ON FUNCTION leadmgmt.decayed_sum_deserialize(bytea, internal) IS 'decayed_sum deserialisation function';
CREATE FUNCTION leadmgmt.decayed_sum_final(internal)
RETURNS float8 LANGUAGE c PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_decayed_sum_final';
COMMENT ON FUNCTION leadmgmt.decayed_sum_final(internal) IS 'decayed_sum final function';

-- SSPACE: state bytes per group measured by bench/aggregates.sh (doc/scaling.md)
CREATE AGGREGATE leadmgmt.decayed_sum(points float8, ts timestamptz, half_life interval, at timestamptz) (
	SFUNC = leadmgmt.decayed_sum_trans,
	STYPE = internal,
	SSPACE = 88,
	FINALFUNC = leadmgmt.decayed_sum_final,
	COMBINEFUNC = leadmgmt.decayed_sum_combine,
	SERIALFUNC = leadmgmt.decayed_sum_serialize,
	DESERIALFUNC = leadmgmt.decayed_sum_deserialize,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE leadmgmt.decayed_sum(float8, timestamptz, interval, timestamptz) IS
	'Sum of points * 2^-((at - ts) / half_life) over rows with ts <= at; NULL half_life = no decay; NULL when no row has points and ts';

-- Which activity earns which points under the current rules: the set-based
-- statement of what the triggers do row by row, for some leads (NULL: every
-- lead).  The activity comes from one of two branches, of which a plan runs
-- only one: a SQL function's plan is generic, and a generic plan cannot use
-- the (lead_id, occurred_at) index for "leads IS NULL OR lead_id = ANY
-- (leads)".  No parallel workers and no JIT: the generic plan's cost counts
-- the branch it does not run, and starting workers or compiling would cost a
-- per-lead call far more than its index scan.
-- Caps count the awards of purged activity (leadmgmt.purged_score) first.
CREATE FUNCTION leadmgmt.score_matches_batch(leads bigint[], upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
SET max_parallel_workers_per_gather = 0
SET jit = off
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM (
		SELECT a.id AS activity_id, a.lead_id, a.occurred_at, r.id AS rule_id, r.points,
		       leadmgmt.half_life_us(r.half_life) AS half_life_us, r.max_times,
		       row_number() OVER (PARTITION BY a.lead_id, r.id ORDER BY a.occurred_at, a.id) AS nth
		  FROM (SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE score_matches_batch.leads IS NULL
		        UNION ALL
		        SELECT x.id, x.lead_id, x.kind, x.occurred_at, x.detail, x.campaign, x.duration_s
		          FROM leadmgmt.activity x
		         WHERE x.lead_id = ANY (score_matches_batch.leads)
		           AND x.occurred_at <= coalesce(score_matches_batch.upto, 'infinity')) a
		  JOIN leadmgmt.scoring_rule r ON r.kind = a.kind
		 WHERE (score_matches_batch.upto IS NULL OR a.occurred_at <= score_matches_batch.upto)
		   AND r.active
		   AND NOT EXISTS (SELECT 1 FROM leadmgmt.scoring_rule o WHERE o.overrides = r.name)
		   AND (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
		   AND (r.campaign IS NULL OR a.campaign = r.campaign)
		   AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s)
	  ) m
	  LEFT JOIN (SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE score_matches_batch.leads IS NULL
	             UNION ALL
	             SELECT p.lead_id, w.rule_id, w.times
	               FROM leadmgmt.purged_score p, leadmgmt.score_state_awards(p.state) w
	              WHERE p.lead_id = ANY (score_matches_batch.leads)) pw
	    ON pw.lead_id = m.lead_id AND pw.rule_id = m.rule_id
	 WHERE m.max_times IS NULL OR m.nth + coalesce(pw.times, 0) <= m.max_times;
END;
COMMENT ON FUNCTION leadmgmt.score_matches_batch(bigint[], timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for the given leads (or all when NULL) up to a time (or all when NULL)';

CREATE FUNCTION leadmgmt.score_matches(lead bigint, upto timestamptz)
RETURNS TABLE (activity_id bigint, lead_id bigint, occurred_at timestamptz, rule_id bigint,
               points float8, half_life_us bigint)
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT m.activity_id, m.lead_id, m.occurred_at, m.rule_id, m.points, m.half_life_us
	  FROM leadmgmt.score_matches_batch(CASE WHEN score_matches.lead IS NOT NULL
	                                         THEN ARRAY[score_matches.lead] END, score_matches.upto) m;
END;
COMMENT ON FUNCTION leadmgmt.score_matches(bigint, timestamptz) IS
	'Awarded (activity, rule) pairs under the current rules, for one lead (or all when NULL) up to a time (or all when NULL)';

CREATE FUNCTION leadmgmt.rescore_leads(leads bigint[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	changed bigint;
BEGIN
	-- a full rescore makes new activity wait until it is committed; the
	-- per-lead path runs inside the scoring trigger, which holds the leads'
	-- row locks already
	IF leads IS NULL THEN
		LOCK TABLE leadmgmt.activity IN SHARE MODE;
	END IF;
	CREATE TEMP TABLE leadmgmt_rescore_match ON COMMIT DROP AS
		SELECT * FROM leadmgmt.score_matches_batch(leads, NULL) m;
	-- what purged activity earned stays (doc/scaling.md)
	CREATE TEMP TABLE leadmgmt_rescore_purged ON COMMIT DROP AS
		SELECT p.lead_id, p.state FROM leadmgmt.purged_score p
		 WHERE leads IS NULL OR p.lead_id = ANY (leads);

	UPDATE leadmgmt.activity a SET points = coalesce(x.points, 0)
	  FROM (SELECT a2.id, s.points
	          FROM leadmgmt.activity a2
	          LEFT JOIN (SELECT activity_id, sum(points) AS points FROM leadmgmt_rescore_match
	                      GROUP BY activity_id) s ON s.activity_id = a2.id
	         WHERE leads IS NULL OR a2.lead_id = ANY (leads)) x
	 WHERE a.id = x.id AND a.points IS DISTINCT FROM coalesce(x.points, 0);

	DELETE FROM leadmgmt.score_state st WHERE leads IS NULL OR st.lead_id = ANY (leads);
	INSERT INTO leadmgmt.score_state (lead_id, state)
	WITH point AS (
		SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at FROM leadmgmt_rescore_match m
		UNION ALL
		SELECT p.lead_id, c.half_life_us, c.value, c.ref_at
		  FROM leadmgmt_rescore_purged p, leadmgmt.score_state_components(p.state) c
	), component AS (
		SELECT x.lead_id, x.half_life_us, x.ref_at,
		       sum(leadmgmt.decay(x.points, x.occurred_at, x.half_life_us, x.ref_at)) AS value
		  FROM (SELECT m.lead_id, m.half_life_us, m.points, m.occurred_at,
		               max(m.occurred_at) OVER (PARTITION BY m.lead_id, m.half_life_us) AS ref_at
		          FROM point m) x
		 GROUP BY x.lead_id, x.half_life_us, x.ref_at
	), components AS (
		SELECT c.lead_id,
		       array_agg(c.half_life_us ORDER BY c.half_life_us) AS half_life_us,
		       array_agg(c.value ORDER BY c.half_life_us) AS value,
		       array_agg(c.ref_at ORDER BY c.half_life_us) AS ref_at
		  FROM component c GROUP BY c.lead_id
	), award AS (
		SELECT m.lead_id, m.rule_id, sum(m.times)::integer AS times, max(m.last_at) AS last_at
		  FROM (SELECT m1.lead_id, m1.rule_id, 1 AS times, m1.occurred_at AS last_at
		          FROM leadmgmt_rescore_match m1
		        UNION ALL
		        SELECT p.lead_id, w.rule_id, w.times, w.last_awarded_at
		          FROM leadmgmt_rescore_purged p, leadmgmt.score_state_awards(p.state) w) m
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		 WHERE r.max_times IS NOT NULL
		 GROUP BY m.lead_id, m.rule_id
	), awards AS (
		SELECT a.lead_id,
		       array_agg(a.rule_id ORDER BY a.rule_id) AS rule_id,
		       array_agg(a.times ORDER BY a.rule_id) AS times,
		       array_agg(a.last_at ORDER BY a.rule_id) AS last_at
		  FROM award a GROUP BY a.lead_id
	)
	SELECT c.lead_id,
	       leadmgmt.score_state_pack(c.half_life_us, c.value, c.ref_at, w.rule_id, w.times, w.last_at)
	  FROM components c LEFT JOIN awards w ON w.lead_id = c.lead_id
	 ORDER BY c.lead_id;

	WITH fresh AS (
		SELECT l.id, l.score AS old_score, l.score_at AS old_score_at,
		       coalesce(leadmgmt.score_state_value(st.state, leadmgmt.score_state_latest(st.state)), 0) AS score,
		       leadmgmt.score_state_latest(st.state) AS score_at
		  FROM leadmgmt.lead l
		  LEFT JOIN leadmgmt.score_state st ON st.lead_id = l.id
		 WHERE leads IS NULL OR l.id = ANY (leads)
	), upd AS (
		UPDATE leadmgmt.lead l SET score = f.score, score_at = f.score_at
		  FROM fresh f
		 WHERE l.id = f.id AND (f.old_score IS DISTINCT FROM f.score OR f.old_score_at IS DISTINCT FROM f.score_at)
		RETURNING f.old_score_at IS DISTINCT FROM f.score_at
		          -- summing in another order moves the last bits: not a change
		          OR abs(f.score - f.old_score) > 1e-9 * greatest(1, abs(f.score)) AS really
	)
	SELECT count(*) FILTER (WHERE really) INTO changed FROM upd;

	UPDATE leadmgmt.lead l SET fit_score = f.fit_score, grade = f.grade
	  FROM (SELECT l2.id, leadmgmt.fit_score(l2.attributes) AS fit_score,
	               leadmgmt.fit_grade(leadmgmt.fit_score(l2.attributes)) AS grade
	          FROM leadmgmt.lead l2 WHERE leads IS NULL OR l2.id = ANY (leads)) f
	 WHERE l.id = f.id AND (l.fit_score IS DISTINCT FROM f.fit_score OR l.grade IS DISTINCT FROM f.grade);

	DROP TABLE leadmgmt_rescore_match, leadmgmt_rescore_purged;
	RETURN changed;
END
$$;
COMMENT ON FUNCTION leadmgmt.rescore_leads(bigint[]) IS
	'Recompute points, caps, decay components, scores and fit of the given leads (all when NULL) from the current rules and what purged activity earned; returns the number of leads whose score changed';

CREATE FUNCTION leadmgmt.rescore()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT leadmgmt.rescore_leads(NULL);
END;
COMMENT ON FUNCTION leadmgmt.rescore() IS
	'Recompute every score from the current rules after rule edits; returns the number of leads whose score changed';
REVOKE ALL ON FUNCTION leadmgmt.rescore() FROM PUBLIC;
REVOKE ALL ON FUNCTION leadmgmt.rescore_leads(bigint[]) FROM PUBLIC;

-- merge_leads() moves activities by UPDATE, which the scoring triggers do
-- not see: this rebuilds both leads from their log and hands the kept one
-- off like a tracked activity would (src/scoring.c).
CREATE FUNCTION leadmgmt.merge_score(keep bigint, duplicate bigint)
RETURNS float8
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'leadmgmt_merge_score';
COMMENT ON FUNCTION leadmgmt.merge_score(bigint, bigint) IS
	'Step of merge_leads(): once duplicate is merged into keep, rescores both from their activity and hands keep to sales (stage mql, NOTIFY) when the merge took it over the threshold; refuses pairs that are not merged; returns keep''s score';

CREATE FUNCTION leadmgmt.score(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS float8
LANGUAGE plpgsql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	target bigint := leadmgmt.lead_resolve(lead);
	state bytea;
	latest timestamptz;
	purged bytea;
	purged_latest timestamptz;
	result float8;
BEGIN
	SELECT st.state INTO state FROM leadmgmt.score_state st WHERE st.lead_id = target;
	latest := leadmgmt.score_state_latest(state);
	IF latest IS NULL THEN
		RETURN 0;
	END IF;
	IF at >= latest THEN
		-- O(number of distinct half-lives)
		RETURN leadmgmt.score_state_value(state, score.at);
	ELSE
		-- a time before the lead's latest activity: from the activity log,
		-- plus what purged activity earned, known only as of its latest point
		SELECT p.state INTO purged FROM leadmgmt.purged_score p WHERE p.lead_id = target;
		purged_latest := leadmgmt.score_state_latest(purged);
		IF at < purged_latest THEN
			RAISE EXCEPTION 'score of lead % at % is unknown: activity it depends on was purged', target, at
				USING ERRCODE = 'LM040',
				      DETAIL = format('Purged activity of the lead earned points until %s.', purged_latest),
				      HINT = 'Ask for a time at or after that.';
		END IF;
		SELECT coalesce(sum(leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score.at)), 0)
		       + coalesce((SELECT sum(leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score.at))
		                     FROM leadmgmt.score_state_components(purged) c), 0) INTO result
		  FROM leadmgmt.score_matches_batch(ARRAY[target], score.at) m;
	END IF;
	RETURN result;
END
$$;
COMMENT ON FUNCTION leadmgmt.score(bigint, timestamptz) IS
	'Engagement score of a lead at a time, counting activities with occurred_at <= at; O(1) when at is at or after the lead''s latest scored activity; LM040 before the latest point of purged activity';

CREATE FUNCTION leadmgmt.score_explain(lead bigint, at timestamptz DEFAULT pg_catalog.now())
RETURNS TABLE (activity_id bigint, occurred_at timestamptz, kind text, detail text, rule text,
               points float8, half_life interval, decayed_points float8)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
	SELECT e.activity_id, e.occurred_at, e.kind, e.detail, e.rule, e.points, e.half_life, e.decayed_points
	  FROM (
		SELECT m.activity_id, m.occurred_at, a.kind, a.detail, r.name AS rule, m.points, r.half_life,
		       leadmgmt.decay(m.points, m.occurred_at, m.half_life_us, score_explain.at) AS decayed_points
		  FROM leadmgmt.score_matches_batch(ARRAY[leadmgmt.lead_resolve(score_explain.lead)], score_explain.at) m
		  JOIN leadmgmt.activity a ON a.id = m.activity_id
		  JOIN leadmgmt.scoring_rule r ON r.id = m.rule_id
		UNION ALL
		-- purged activity: one line per half-life, its points as of ref_at
		SELECT NULL, c.ref_at, NULL, '(purged activity)', NULL, c.value,
		       CASE WHEN c.half_life_us > 0 THEN justify_hours(c.half_life_us * interval '1 microsecond') END,
		       leadmgmt.decay(c.value, c.ref_at, c.half_life_us, score_explain.at)
		  FROM leadmgmt.purged_score p, leadmgmt.score_state_components(p.state) c
		 WHERE p.lead_id = leadmgmt.lead_resolve(score_explain.lead)
		   AND leadmgmt.score_state_latest(p.state) <= score_explain.at
	  ) e
	 ORDER BY e.occurred_at, e.activity_id, e.rule;
END;
COMMENT ON FUNCTION leadmgmt.score_explain(bigint, timestamptz) IS
	'Each activity and rule that contributes to a lead''s score at a time, with its points decayed to that time; purged activity as one line per half-life (detail "(purged activity)")';

CREATE FUNCTION leadmgmt.fit_score(attributes jsonb)
RETURNS float8
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_fit_score';
COMMENT ON FUNCTION leadmgmt.fit_score(jsonb) IS
	'Sum of the points of the active fit rules that the attributes match (0 when none)';

CREATE FUNCTION leadmgmt.fit_grade(fit_score float8)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'leadmgmt_fit_grade';
COMMENT ON FUNCTION leadmgmt.fit_grade(float8) IS
	'Grade A to D of a fit score, by the settings fit_grade_a, fit_grade_b and fit_grade_c';

-- Triggers: the resolved lead and the points on the row before it is
-- written (no query per row); lead locks, scores and the hand-off once per
-- statement from the transition table (src/ingest.c, doc/activity.md: bulk
-- load).  E-mail hygiene is the consent part's trigger (82_consent.sql).
CREATE FUNCTION leadmgmt.activity_score_row()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_row';
COMMENT ON FUNCTION leadmgmt.activity_score_row() IS
	'Trigger: a new activity row of a merged lead goes to the lead it was merged into (looked up once per lead and statement, no query per row), and gets the points of matching scoring rules unless it arrives with points';
CREATE FUNCTION leadmgmt.activity_score_statement()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_activity_score_statement';
COMMENT ON FUNCTION leadmgmt.activity_score_statement() IS
	'Trigger: for the rows of one statement, moves rows of merged leads to the lead they resolve to, locks every lead of the statement in id order, then applies caps, decay components and lead scores, one write per lead, and hands hot leads to sales';
CREATE FUNCTION leadmgmt.lead_fit()
RETURNS trigger LANGUAGE c
AS 'MODULE_PATHNAME', 'leadmgmt_lead_fit';
COMMENT ON FUNCTION leadmgmt.lead_fit() IS
	'Trigger: computes fit_score and grade from lead.attributes';

CREATE TRIGGER activity_score_row
	BEFORE INSERT ON leadmgmt.activity
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.activity_score_row();
CREATE TRIGGER activity_score_statement
	AFTER INSERT ON leadmgmt.activity
	REFERENCING NEW TABLE AS new_activity
	FOR EACH STATEMENT EXECUTE FUNCTION leadmgmt.activity_score_statement();
CREATE TRIGGER lead_fit
	BEFORE INSERT OR UPDATE OF attributes ON leadmgmt.lead
	FOR EACH ROW EXECUTE FUNCTION leadmgmt.lead_fit();
