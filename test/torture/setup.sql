-- Torture test setup (test/torture/run.sh): the extension, the leads of the
-- profile, and the operations the pgbench scripts call.  Each operation
-- catches its own error and records the SQLSTATE in torture.outcome, so a
-- refused operation (as a real client would see it) does not abort the
-- pgbench client; only a lost connection does.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE EXTENSION leadmgmt;
CREATE EXTENSION amcheck;
CREATE SCHEMA torture;

CREATE TABLE torture.outcome (
	op       text NOT NULL,
	sqlstate text NOT NULL,
	message  text,
	detail   text,
	context  text,
	at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE torture.ack (kind text NOT NULL, id bigint NOT NULL, round integer NOT NULL);

CREATE FUNCTION torture.failed(op text, state text, message text, detail text, context text) RETURNS void
LANGUAGE sql AS $$
	INSERT INTO torture.outcome (op, sqlstate, message, detail, context) VALUES (op, state, message, detail, context)
$$;

-- The lead an operation acts on: the id drawn (which may have been merged
-- away: the write then follows merged_into) or, for odd k, the first live
-- lead from that id on, so that merges keep finding live pairs and the new
-- leads of upsert_lead() get traffic too once the drawn ones are merged.
CREATE FUNCTION torture.pick(lead bigint, k integer) RETURNS bigint LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN k % 2 = 0 THEN lead ELSE coalesce(
		(SELECT l.id FROM leadmgmt.lead l WHERE l.merged_into IS NULL AND l.id >= lead
		  ORDER BY l.id LIMIT 1),
		(SELECT min(l.id) FROM leadmgmt.lead l WHERE l.merged_into IS NULL)) END
$$;

-- track: a kind from a mix that takes busy leads over the MQL threshold
CREATE FUNCTION torture.track(lead bigint, k integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
BEGIN
	PERFORM leadmgmt.track(torture.pick(lead, k / 8), (ARRAY['page_view', 'email_open', 'email_click', 'form_submit',
	                                    'visit', 'call', 'download', 'page_view'])[1 + k % 8],
	                       detail => CASE WHEN k % 8 = 6 THEN 'whitepaper-' || k % 3
	                                      WHEN k % 8 = 0 THEN '/pricing' END,
	                       duration_s => k % 90);
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('track', SQLSTATE, SQLERRM, why, place);
END $$;

-- set_stage: a move the lead's current stage allows (read without a lock,
-- so it may be stale by the time the move runs: LM001), and one in twenty
-- a target that is never allowed from anywhere it can be (LM001 on purpose)
CREATE FUNCTION torture.move(lead bigint, k integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
	current text;
	target text;
BEGIN
	lead := torture.pick(lead, k / 20);
	SELECT l.stage INTO current FROM leadmgmt.lead l WHERE l.id = leadmgmt.lead_resolve(lead);
	IF k % 20 = 0 THEN
		target := 'inquiry';
	ELSE
		SELECT t.to_stage INTO target FROM leadmgmt.stage_transition t
		 WHERE t.from_stage = current AND t.to_stage <> 'disqualified'
		 ORDER BY t.to_stage OFFSET (k % 3) LIMIT 1;
		IF target IS NULL THEN
			SELECT t.to_stage INTO target FROM leadmgmt.stage_transition t
			 WHERE t.from_stage = current ORDER BY t.to_stage LIMIT 1;
		END IF;
	END IF;
	IF target IS NOT NULL THEN
		PERFORM leadmgmt.set_stage(lead, target, 'torture ' || k);
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('set_stage', SQLSTATE, SQLERRM, why, place);
END $$;

-- upsert_lead: identity k spelled one of five ways that share one e-mail key
CREATE FUNCTION torture.upsert(k integer, spelling integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
	local text := 'person' || k;
BEGIN
	PERFORM leadmgmt.upsert_lead(
		email => CASE spelling % 5
		         WHEN 0 THEN local || '@example.jp'
		         WHEN 1 THEN upper(local) || '@EXAMPLE.JP'
		         WHEN 2 THEN '  ' || local || '@Example.jp '
		         WHEN 3 THEN translate(local, 'abcdefghijklmnopqrstuvwxyz0123456789',
		                               'ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ０１２３４５６７８９') || '@example.jp'
		         ELSE initcap(local) || '@example.JP' END,
		name => CASE WHEN spelling % 2 = 0 THEN 'Person ' || k END,
		attributes => jsonb_build_object('seen', spelling));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('upsert_lead', SQLSTATE, SQLERRM, why, place);
END $$;

-- merge_leads: the leads two ids stand for, unless they are one already
-- (racing merges may still meet: LM032)
CREATE FUNCTION torture.merge(a bigint, b bigint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	why text;
	place text;
	keep bigint := leadmgmt.lead_resolve(a);
	dup bigint := leadmgmt.lead_resolve(torture.pick(b, b::integer));
BEGIN
	IF keep <> dup THEN
		PERFORM leadmgmt.merge_leads(keep, dup);
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS why = PG_EXCEPTION_DETAIL, place = PG_EXCEPTION_CONTEXT;
	PERFORM torture.failed('merge_leads', SQLSTATE, SQLERRM, why, place);
END $$;

-- the leads: identities 1 .. :leads, each with an entry a while ago
SELECT setseed(0.14);
INSERT INTO leadmgmt.lead (email, name, created_at)
SELECT 'person' || g || '@example.jp', 'Person ' || g, now() - interval '30 days' * random()
  FROM generate_series(1, :leads) g;
INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at)
SELECT l.id, 'email_open', l.created_at + interval '1 hour' FROM leadmgmt.lead l;
