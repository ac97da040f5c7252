
-------------------------------------------------------------------------------
-- The BI surface: schema leadmgmt_bi (doc/bi.md)
-------------------------------------------------------------------------------
-- A BI tool (Metabase, Superset, Grafana, Tableau) lists the relations of a
-- schema and samples each with SELECT *.  In schema leadmgmt that fails for
-- the reader: tables carry column grants (lead, activity, stage_history) or
-- none.  Schema leadmgmt_bi holds only views every role of grant_access()
-- may read whole: one per view of schema leadmgmt, and views of the tables
-- with the columns that are no personal data.  They are security_invoker,
-- so row-level security by owner applies as in schema leadmgmt, and
-- grant_access() grants their readers the table columns they read.
-- Created last (after every other part): the views of leadmgmt are copied
-- from the catalog below, so a view added in an earlier part gets its copy.
CREATE SCHEMA leadmgmt_bi;
COMMENT ON SCHEMA leadmgmt_bi IS
	'leadmgmt for BI tools: every relation here can be read whole (SELECT *) by the roles of leadmgmt.grant_access(); point the BI tool at this schema (doc/bi.md)';

CREATE VIEW leadmgmt_bi.lead WITH (security_invoker = true) AS
	SELECT l.id, l.source, l.origin, l.owner, l.stage, l.stage_entered_at, l.score, l.score_at,
	       l.fit_score, l.grade, l.amount, l.currency, l.email_status, l.created_at, l.updated_at,
	       l.merged_into, l.forgotten_at
	  FROM leadmgmt.lead l;
COMMENT ON VIEW leadmgmt_bi.lead IS
	'Leads without personal data (no e-mail, name, company, phone, attributes, external id or match keys); merged leads included (merged_into set)';
COMMENT ON COLUMN leadmgmt_bi.lead.id IS 'lead id';
COMMENT ON COLUMN leadmgmt_bi.lead.source IS 'where the lead came from: web_form, exhibition, seminar, purchased_list, outbound_call, ...';
COMMENT ON COLUMN leadmgmt_bi.lead.origin IS 'inbound (the lead came to us) or outbound (we reached it)';
COMMENT ON COLUMN leadmgmt_bi.lead.owner IS 'sales rep who owns the lead';
COMMENT ON COLUMN leadmgmt_bi.lead.stage IS 'current stage';
COMMENT ON COLUMN leadmgmt_bi.lead.stage_entered_at IS 'when the lead entered its current stage';
COMMENT ON COLUMN leadmgmt_bi.lead.score IS 'engagement score as of score_at';
COMMENT ON COLUMN leadmgmt_bi.lead.score_at IS 'time the score was last brought up to date';
COMMENT ON COLUMN leadmgmt_bi.lead.fit_score IS 'firmographic fit score';
COMMENT ON COLUMN leadmgmt_bi.lead.grade IS 'fit grade A to D';
COMMENT ON COLUMN leadmgmt_bi.lead.amount IS 'deal value';
COMMENT ON COLUMN leadmgmt_bi.lead.currency IS 'ISO 4217 currency of amount';
COMMENT ON COLUMN leadmgmt_bi.lead.email_status IS 'ok, bounced or unsubscribed';
COMMENT ON COLUMN leadmgmt_bi.lead.created_at IS 'when the lead was created';
COMMENT ON COLUMN leadmgmt_bi.lead.updated_at IS 'last change of the row';
COMMENT ON COLUMN leadmgmt_bi.lead.merged_into IS 'set when this lead was merged into another one (leave such leads out of counts)';
COMMENT ON COLUMN leadmgmt_bi.lead.forgotten_at IS 'when forget_lead() erased the personal data of this lead';

CREATE VIEW leadmgmt_bi.activity WITH (security_invoker = true) AS
	SELECT a.id, a.lead_id, a.kind, a.occurred_at, a.campaign, a.channel, a.duration_s
	  FROM leadmgmt.activity a;
COMMENT ON VIEW leadmgmt_bi.activity IS
	'Every activity of every lead, without detail and props (page URLs, asset names and free-form properties may name the person) and without points (the reader level sees scores, not the points of single activities)';
COMMENT ON COLUMN leadmgmt_bi.activity.id IS 'activity id';
COMMENT ON COLUMN leadmgmt_bi.activity.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt_bi.activity.kind IS 'kind of activity (activity_kind)';
COMMENT ON COLUMN leadmgmt_bi.activity.occurred_at IS 'when it happened';
COMMENT ON COLUMN leadmgmt_bi.activity.campaign IS 'campaign it belongs to';
COMMENT ON COLUMN leadmgmt_bi.activity.channel IS 'channel (email, web, event, ...)';
COMMENT ON COLUMN leadmgmt_bi.activity.duration_s IS 'duration in seconds (page views, calls, visits)';

CREATE VIEW leadmgmt_bi.stage_history WITH (security_invoker = true) AS
	SELECT h.id, h.lead_id, h.from_stage, h.to_stage, h.changed_at, h.entry_number,
	       h.time_in_from_stage,
	       pg_catalog.date_part('epoch', h.time_in_from_stage) / 86400 AS time_in_from_stage_days
	  FROM leadmgmt.stage_history h;
COMMENT ON VIEW leadmgmt_bi.stage_history IS
	'Every stage a lead entered, without who made the change and why';
COMMENT ON COLUMN leadmgmt_bi.stage_history.id IS 'row id, in the order the changes were recorded';
COMMENT ON COLUMN leadmgmt_bi.stage_history.lead_id IS 'the lead';
COMMENT ON COLUMN leadmgmt_bi.stage_history.from_stage IS 'stage left (NULL when the lead was created)';
COMMENT ON COLUMN leadmgmt_bi.stage_history.to_stage IS 'stage entered';
COMMENT ON COLUMN leadmgmt_bi.stage_history.changed_at IS 'when the lead entered to_stage';
COMMENT ON COLUMN leadmgmt_bi.stage_history.entry_number IS '1 for the lead''s first entry into to_stage, 2 for the next, ...; NULL for notes';
COMMENT ON COLUMN leadmgmt_bi.stage_history.time_in_from_stage IS 'time the lead spent in from_stage';
COMMENT ON COLUMN leadmgmt_bi.stage_history.time_in_from_stage_days IS 'time_in_from_stage in days (fractional), for charting';

CREATE VIEW leadmgmt_bi.funnel_snapshot WITH (security_invoker = true) AS
	SELECT f.snapshot_date, f.stage, f.position, f.leads_entered, f.leads_current,
	       f.conversion_to_next, f.median_time_in_stage,
	       pg_catalog.date_part('epoch', f.median_time_in_stage) / 86400 AS median_time_in_stage_days,
	       f.taken_at
	  FROM leadmgmt.funnel_snapshot f;
COMMENT ON VIEW leadmgmt_bi.funnel_snapshot IS 'Daily copies of the funnel (snapshot_funnel()), for charting the funnel over time';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.snapshot_date IS 'day of the snapshot, in reporting_timezone';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.stage IS 'stage';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.position IS 'position along the waterfall';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.leads_entered IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.leads_current IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.conversion_to_next IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.median_time_in_stage IS 'as in leadmgmt.funnel that day';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.median_time_in_stage_days IS 'median_time_in_stage in days (fractional), for charting';
COMMENT ON COLUMN leadmgmt_bi.funnel_snapshot.taken_at IS 'when the snapshot was (last) taken';

-- The vocabularies, whole
CREATE VIEW leadmgmt_bi.stage WITH (security_invoker = true) AS
	SELECT s.name, s.rank, s.category, s.is_entry, s.next_stage, s.description, s.builtin
	  FROM leadmgmt.stage s;
COMMENT ON VIEW leadmgmt_bi.stage IS 'The stages of the waterfall';
COMMENT ON COLUMN leadmgmt_bi.stage.name IS 'stage name';
COMMENT ON COLUMN leadmgmt_bi.stage.rank IS 'progress along the waterfall (higher is further)';
COMMENT ON COLUMN leadmgmt_bi.stage.category IS 'open, nurture, won or lost';
COMMENT ON COLUMN leadmgmt_bi.stage.is_entry IS 'a lead may start in this stage';
COMMENT ON COLUMN leadmgmt_bi.stage.next_stage IS 'main-path successor (for conversion_to_next)';
COMMENT ON COLUMN leadmgmt_bi.stage.description IS 'what the stage means';
COMMENT ON COLUMN leadmgmt_bi.stage.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.stage_transition WITH (security_invoker = true) AS
	SELECT t.from_stage, t.to_stage, t.description, t.builtin
	  FROM leadmgmt.stage_transition t;
COMMENT ON VIEW leadmgmt_bi.stage_transition IS 'The allowed stage moves';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.from_stage IS 'stage the lead is in';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.to_stage IS 'stage it may move to';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.description IS 'when this move happens';
COMMENT ON COLUMN leadmgmt_bi.stage_transition.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.activity_kind WITH (security_invoker = true) AS
	SELECT k.name, k.description, k.builtin
	  FROM leadmgmt.activity_kind k;
COMMENT ON VIEW leadmgmt_bi.activity_kind IS 'The kinds of activity';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.name IS 'kind name';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.description IS 'what it records';
COMMENT ON COLUMN leadmgmt_bi.activity_kind.builtin IS 'shipped with the extension';

CREATE VIEW leadmgmt_bi.scoring_rule WITH (security_invoker = true) AS
	SELECT r.id, r.name, r.kind, r.detail_pattern, r.campaign, r.min_duration_s, r.points,
	       r.half_life, r.max_times, r.active, r.overrides, r.description, r.builtin,
	       pg_catalog.date_part('epoch', r.half_life) / 86400 AS half_life_days
	  FROM leadmgmt.scoring_rule r;
COMMENT ON VIEW leadmgmt_bi.scoring_rule IS 'The behaviour scoring rules';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.name IS 'rule name';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.kind IS 'activity kind it matches';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.detail_pattern IS 'LIKE pattern on activity.detail (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.campaign IS 'campaign it matches (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.min_duration_s IS 'least duration_s it needs (NULL: any)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.points IS 'points per matching activity';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.half_life IS 'time for the points to halve (NULL: no decay)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.max_times IS 'most awards per lead (NULL: unlimited)';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.active IS 'whether the rule scores';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.overrides IS 'name of a built-in rule this user rule replaces';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.builtin IS 'shipped with the extension';
COMMENT ON COLUMN leadmgmt_bi.scoring_rule.half_life_days IS 'half_life in days (fractional), for charting';

CREATE VIEW leadmgmt_bi.fit_rule WITH (security_invoker = true) AS
	SELECT r.id, r.name, r.attribute, r.op, r.value::text AS value, r.min_value, r.max_value,
	       r.points, r.active, r.description, r.builtin
	  FROM leadmgmt.fit_rule r;
COMMENT ON VIEW leadmgmt_bi.fit_rule IS 'The firmographic fit rules';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.id IS 'rule id';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.name IS 'rule name';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.attribute IS 'key of lead.attributes it tests';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.op IS 'eq (equals value), in (one of the array value), between (numeric min_value..max_value, inclusive, either bound optional)';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.value IS 'JSON scalar for eq, JSON array for in, as text';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.min_value IS 'lower bound of a range test';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.max_value IS 'upper bound of a range test';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.points IS 'points when it matches';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.active IS 'whether the rule scores';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.description IS 'what the rule rewards';
COMMENT ON COLUMN leadmgmt_bi.fit_rule.builtin IS 'shipped with the extension';

-- One view per view of schema leadmgmt, same name, same columns and
-- comments, JSON, XML and UUID columns as text (PgJDBC reports them as
-- Types.OTHER, which BI tools show as opaque text anyway).  Generated from
-- the catalog so that fresh install and update (which runs this same block
-- last) agree; an update that adds or changes a view of leadmgmt re-creates
-- its copy here.
DO $bi$
DECLARE
	v record;
	cols text;
BEGIN
	FOR v IN
		SELECT c.oid, c.relname FROM pg_catalog.pg_class c
		 WHERE c.relnamespace = 'leadmgmt'::regnamespace AND c.relkind = 'v'
		 ORDER BY c.relname
	LOOP
		SELECT pg_catalog.string_agg(
		           CASE WHEN a.atttypid IN ('json'::regtype, 'jsonb'::regtype, 'xml'::regtype, 'uuid'::regtype)
		                THEN format('v.%1$I::text AS %1$I', a.attname)
		                ELSE format('v.%I', a.attname) END, ', ' ORDER BY a.attnum)
		  INTO cols
		  FROM pg_catalog.pg_attribute a
		 WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped;
		EXECUTE format('CREATE VIEW leadmgmt_bi.%1$I WITH (security_invoker = true) AS SELECT %2$s FROM leadmgmt.%1$I v',
		               v.relname, cols);
		EXECUTE format('COMMENT ON VIEW leadmgmt_bi.%I IS %L', v.relname,
		               pg_catalog.obj_description(v.oid, 'pg_class'));
		FOR cols IN
			SELECT format('COMMENT ON COLUMN leadmgmt_bi.%I.%I IS %L', v.relname, a.attname,
			              pg_catalog.col_description(v.oid, a.attnum))
			  FROM pg_catalog.pg_attribute a
			 WHERE a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
			 ORDER BY a.attnum
		LOOP
			EXECUTE cols;
		END LOOP;
	END LOOP;
END
$bi$;
