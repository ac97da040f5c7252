-- covers: the sales loop: record_opportunity (upsert, replay, stale, identity, merges, refused moves, repeat purchase, bad input), the change feed (read_changes, ack_changes, redelivery, purge, retention, lag), campaigns and campaign_roi (hand-computed), campaign_attribution and funnel_revenue per currency, won deals as learned label, privileges
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

-------------------------------------------------------------------------------
-- The change feed: what each kind of change writes
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.change_consumer (name) VALUES ('crm');
INSERT INTO leadmgmt.lead (id, email, name, source, created_at) VALUES
	(1, 'aki@example.jp', 'Aki', 'web_form', '2026-01-01'),
	(2, 'ben@example.jp', 'Ben', 'seminar', '2026-01-01'),
	(3, 'cho@example.jp', 'Cho', 'seminar', '2026-01-01');
UPDATE leadmgmt.lead SET email = 'aki@example.com', owner = 'rep1' WHERE id = 1;
UPDATE leadmgmt.lead SET source = 'ads' WHERE id = 1;	-- not a contact field: no change row
SELECT (leadmgmt.set_stage(1, 'mql', 'score 120', '2026-01-05')).stage;
SELECT (leadmgmt.set_stage(1, 'sal', NULL, '2026-01-06')).stage;
SELECT leadmgmt.merge_leads(2, 3);
SELECT leadmgmt.forget_lead(2);
SELECT position, at <= now() AS at_is_past, kind, lead_id, payload FROM leadmgmt.read_changes('crm', 4);
-- not acknowledged: handed out again (at-least-once)
SELECT position, kind, lead_id FROM leadmgmt.read_changes('crm', 4);
SELECT leadmgmt.ack_changes('crm', 4);
-- the two forgets of one statement (lead 2 and lead 3 merged into it) take
-- their positions in either order: both shown at the first of the two
SELECT min(position) OVER (PARTITION BY kind) AS position, kind, lead_id, payload - 'forgotten_at' AS payload
  FROM leadmgmt.read_changes('crm') ORDER BY 1, lead_id;
SELECT leadmgmt.ack_changes('crm', 4) AS repeated_ack_is_harmless;

-- bad calls change nothing
SELECT acked_position, read_position FROM leadmgmt.change_consumer;
SELECT leadmgmt.ack_changes('crm', 10);
SELECT * FROM leadmgmt.read_changes('nobody');
SELECT leadmgmt.ack_changes('nobody', 1);
SELECT * FROM leadmgmt.read_changes('crm', 0);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM leadmgmt.read_changes('crm');
ROLLBACK;
INSERT INTO leadmgmt.change_consumer (name, created_at) VALUES ('Not A Name', '2026-01-01');
SELECT acked_position, read_position FROM leadmgmt.change_consumer;

-- acknowledged by the only consumer: purged
SELECT count(*) AS kept_before_ack FROM leadmgmt.change;
SELECT leadmgmt.ack_changes('crm', 9);
SELECT count(*) AS kept_after_ack FROM leadmgmt.change;
SELECT * FROM leadmgmt.read_changes('crm');

-- two consumers: rows stay until both acknowledged them
INSERT INTO leadmgmt.change_consumer (name) VALUES ('bi');
UPDATE leadmgmt.lead SET phone = '03-1234-5678' WHERE id = 1;
UPDATE leadmgmt.lead SET phone = '03-1234-0000' WHERE id = 1;
SELECT position, kind, payload FROM leadmgmt.read_changes('crm');
SELECT position, kind, payload FROM leadmgmt.read_changes('bi');
SELECT leadmgmt.ack_changes('crm', 10);
SELECT count(*) AS kept_for_bi FROM leadmgmt.change;
SELECT leadmgmt.ack_changes('bi', 9);
SELECT count(*) AS kept_for_bi FROM leadmgmt.change;
SELECT consumer, acked_position, read_position, pending, lagging FROM leadmgmt.change_lag ORDER BY consumer;

-- retention: a lagging consumer is reported, its changes kept
UPDATE leadmgmt.change SET at = '2026-01-01';
SELECT leadmgmt.purge_changes() AS purged;
SELECT consumer, pending, lagging FROM leadmgmt.change_lag ORDER BY consumer;
SELECT count(*) AS kept FROM leadmgmt.change;
-- without consumers, changes older than change_retention go
DELETE FROM leadmgmt.change_consumer;
UPDATE leadmgmt.lead SET phone = NULL WHERE id = 1;
SELECT leadmgmt.purge_changes() AS purged;
SELECT kind, payload FROM leadmgmt.change;
SELECT leadmgmt.set_setting('change_retention', '-1 day');
SELECT leadmgmt.set_setting('change_retention', '1 day');
SELECT leadmgmt.get_setting('change_retention');
SELECT leadmgmt.set_setting('change_channel', 'Bad Channel');
SELECT leadmgmt.set_setting('change_retention', NULL);
DELETE FROM leadmgmt.change;

-------------------------------------------------------------------------------
-- record_opportunity
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.change_consumer (name) VALUES ('crm');
INSERT INTO leadmgmt.lead (id, email, external_id, created_at) VALUES
	(10, 'dai@example.jp', 'C-10', '2026-01-01'),
	(11, 'eri@example.jp', NULL, '2026-01-01'),
	(12, 'fumi@example.jp', NULL, '2026-01-01');
SELECT (leadmgmt.set_stage(10, 'mql', NULL, '2026-01-05')).stage, (leadmgmt.set_stage(10, 'sal', NULL, '2026-01-06')).stage;

-- a new open deal moves the lead to sql at the deal's creation
SELECT * FROM leadmgmt.record_opportunity('OPP-1', external_id => 'C-10', amount => 1000000, currency => 'JPY',
	name => 'Dai: 10 seats', created_at => '2026-01-10', crm_updated_at => '2026-01-10 09:00');
-- the same message again changes nothing
SELECT * FROM leadmgmt.record_opportunity('OPP-1', external_id => 'C-10', amount => 1000000, currency => 'JPY',
	name => 'Dai: 10 seats', created_at => '2026-01-10', crm_updated_at => '2026-01-10 09:00');
-- won, closed on 01-20; the lead follows, back-dated
SELECT * FROM leadmgmt.record_opportunity('OPP-1', amount => 1200000, currency => 'JPY', status => 'won',
	closed_at => '2026-01-20', crm_updated_at => '2026-01-20 18:00');
-- an older message arriving late is ignored and reported
SELECT * FROM leadmgmt.record_opportunity('OPP-1', amount => 900000, currency => 'JPY', status => 'open',
	crm_updated_at => '2026-01-15');
SELECT id, lead_id, crm_id, name, amount, currency, status, created_at, closed_at, crm_updated_at
  FROM leadmgmt.opportunity ORDER BY id;
SELECT from_stage, to_stage, changed_at, reason FROM leadmgmt.stage_history WHERE lead_id = 10 ORDER BY id;

-- a lead in inquiry cannot become sql: the move is refused and reported, the deal is stored
SELECT * FROM leadmgmt.record_opportunity('OPP-2', email => ' ERI@Example.JP ', amount => 1000, currency => 'USD',
	status => 'won', created_at => '2026-01-12', closed_at => '2026-01-15');
SELECT crm_id, lead_id, status, amount, currency FROM leadmgmt.opportunity WHERE crm_id = 'OPP-2';
SELECT stage FROM leadmgmt.lead WHERE id = 11;

-- the repeat purchase: a won customer goes back to mql for the next cycle,
-- sales accepts, the new deal opens and is won; both deals are kept
SELECT (leadmgmt.set_stage(10, 'mql', 'next purchase cycle', '2026-03-01')).stage;
SELECT (leadmgmt.set_stage(10, 'sal', NULL, '2026-03-02')).stage;
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('OPP-3', lead_id => 10, amount => 300000,
	currency => 'JPY', created_at => '2026-03-05', crm_updated_at => '2026-03-05');
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('OPP-3', lead_id => 10, amount => 300000,
	currency => 'JPY', status => 'won', closed_at => '2026-03-20', crm_updated_at => '2026-03-20');
SELECT crm_id, status, amount, closed_at FROM leadmgmt.opportunity WHERE lead_id = 10 ORDER BY id;
SELECT to_stage, changed_at, entry_number FROM leadmgmt.stage_history WHERE lead_id = 10 AND to_stage IN ('sql', 'won') ORDER BY id;
-- a new deal while the lead is won (no new cycle started): stored, move refused
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('OPP-4', lead_id => 10, created_at => '2026-04-01');

-- a CRM clock slightly behind ours: the move is made at the lead's last change
SELECT (leadmgmt.set_stage(12, 'mql', NULL, '2026-02-01 10:00')).stage, (leadmgmt.set_stage(12, 'sal', NULL, '2026-02-01 10:05')).stage;
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('OPP-5', lead_id => 12, created_at => '2026-02-01 10:04');
SELECT to_stage, changed_at FROM leadmgmt.stage_history WHERE lead_id = 12 ORDER BY id;
-- a close date in the future is taken as now: the lead's next moves still work
SELECT outcome, lead_stage FROM leadmgmt.record_opportunity('OPP-5', status => 'lost', closed_at => now() + interval '3 days');
SELECT changed_at <= now() AS not_in_the_future FROM leadmgmt.stage_history WHERE lead_id = 12 AND to_stage = 'lost';
SELECT (leadmgmt.set_stage(12, 'recycled')).stage;

-- merged leads: a deal for the duplicate lands on the kept lead, and the
-- duplicate's deals follow it at the merge
INSERT INTO leadmgmt.lead (id, email, created_at) VALUES (13, 'gen@example.jp', '2026-01-01'), (14, 'gen2@example.jp', '2026-01-01');
SELECT opportunity_id, lead, outcome FROM leadmgmt.record_opportunity('OPP-6', lead_id => 14, created_at => '2026-02-01');
SELECT leadmgmt.merge_leads(13, 14);
SELECT crm_id, lead_id FROM leadmgmt.opportunity WHERE crm_id = 'OPP-6';
SELECT opportunity_id, lead, outcome FROM leadmgmt.record_opportunity('OPP-7', lead_id => 14, created_at => '2026-02-02');
SELECT opportunity_id, lead, outcome FROM leadmgmt.record_opportunity('OPP-8', email => 'gen2@example.jp', created_at => '2026-02-02');

-- bad input: a SQLSTATE and a hint, and the stored rows unchanged
SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) AS before FROM leadmgmt.opportunity o \gset
SELECT md5(string_agg(l::text, '|' ORDER BY l.id)) AS leads_before FROM leadmgmt.lead l \gset
-- default verbosity (LOCATION lines differ between versions); the SQLSTATE is echoed
\set VERBOSITY default
SELECT * FROM leadmgmt.record_opportunity('OPP-1', amount => -5, currency => 'JPY');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-1', amount => 'NaN', currency => 'JPY');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-1', status => 'closed won');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9', lead_id => 999);
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9', email => 'nobody@example.jp', external_id => 'X-1');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-1', currency => 'USD', status => 'won');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9', lead_id => 11, amount => 10);
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9', lead_id => 11, amount => 10, currency => 'yen');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity('OPP-9', lead_id => 11, status => 'lost', created_at => '2026-02-01', closed_at => '2026-01-01');
\echo :SQLSTATE
SELECT * FROM leadmgmt.record_opportunity(NULL, lead_id => 11);
\echo :SQLSTATE
SELECT md5(string_agg(o::text, '|' ORDER BY o.id)) = :'before' AS opportunities_unchanged FROM leadmgmt.opportunity o;
SELECT md5(string_agg(l::text, '|' ORDER BY l.id)) = :'leads_before' AS leads_unchanged FROM leadmgmt.lead l;
-- the table's own constraints hold for direct writes too
INSERT INTO leadmgmt.opportunity (lead_id, crm_id, amount, created_at) VALUES (11, 'X', 5, '2026-01-01');

-- what the connector saw of all this
SELECT kind, lead_id, payload - 'changed_at' - 'score' AS payload
  FROM leadmgmt.read_changes('crm', 100) WHERE kind IN ('opportunity_changed', 'stage_changed', 'lead_merged');

-------------------------------------------------------------------------------
-- Campaigns and ROI, computed by hand
-------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP EXTENSION leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
INSERT INTO leadmgmt.campaign (name, channel, starts_on, ends_on, cost, currency) VALUES
	('seminar', 'seminar', '2026-01-02', '2026-01-02', 300000, 'JPY'),
	('ads', 'ads', '2026-01-01', '2026-01-31', 100000, 'JPY'),
	('webinar', 'webinar', '2026-01-04', '2026-01-04', 0, 'JPY');
-- bad campaigns
INSERT INTO leadmgmt.campaign (name, cost, currency) VALUES ('x', -1, 'JPY');
INSERT INTO leadmgmt.campaign (name, cost) VALUES ('x', 1);
INSERT INTO leadmgmt.campaign (name, cost, currency) VALUES ('x', 1, 'jpy');
INSERT INTO leadmgmt.campaign (name, starts_on, ends_on, currency) VALUES ('x', '2026-02-01', '2026-01-01', 'JPY');
UPDATE leadmgmt.campaign SET cost = -1 WHERE name = 'ads';
SELECT name, cost FROM leadmgmt.campaign ORDER BY name;

INSERT INTO leadmgmt.lead (id, email, source, created_at) VALUES
	(1, 'l1@example.jp', 'seminar', '2026-01-01'), (2, 'l2@example.jp', 'ads', '2026-01-01'),
	(3, 'l3@example.jp', 'seminar', '2026-01-01'), (4, 'l4@example.jp', 'ads', '2026-01-01');
SELECT count(*) AS tracked FROM (
	SELECT leadmgmt.track(1, 'seminar_attend', '2026-01-02', campaign => 'seminar')
	UNION ALL SELECT leadmgmt.track(1, 'page_view', '2026-01-03', campaign => 'ads')
	UNION ALL SELECT leadmgmt.track(2, 'page_view', '2026-01-02', campaign => 'ads')
	UNION ALL SELECT leadmgmt.track(2, 'seminar_attend', '2026-01-04', campaign => 'webinar')
	UNION ALL SELECT leadmgmt.track(3, 'seminar_attend', '2026-01-02', campaign => 'seminar')
	UNION ALL SELECT leadmgmt.track(4, 'page_view', '2026-01-02', campaign => 'ads')) t;
SELECT (leadmgmt.set_stage(1, 'mql', NULL, '2026-01-05')).stage, (leadmgmt.set_stage(1, 'sal', NULL, '2026-01-06')).stage;
SELECT (leadmgmt.set_stage(2, 'mql', NULL, '2026-01-03')).stage, (leadmgmt.set_stage(2, 'sal', NULL, '2026-01-05')).stage;
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('O1', lead_id => 1, amount => 1000000, currency => 'JPY', created_at => '2026-01-10');
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('O1', status => 'won', closed_at => '2026-01-20');
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('O2', lead_id => 2, amount => 200000, currency => 'JPY', created_at => '2026-01-08');
SELECT outcome, lead_stage, refused_move FROM leadmgmt.record_opportunity('O3', lead_id => 3, amount => 1000, currency => 'USD', status => 'won',
	created_at => '2026-01-10', closed_at => '2026-01-15');
-- By hand (linear credit over the campaign touches before each milestone):
--   lead 1: seminar 01-02, ads 01-03; mql 01-05 and sql 01-10: 1/2 each;
--           O1 won 01-20 (1 000 000 JPY): 1/2 each = 500 000 each
--   lead 2: ads 01-02, webinar 01-04; mql 01-03: ads 1; sql 01-08: 1/2 each;
--           O2 open since 01-08 (200 000 JPY): 100 000 pipeline each
--   lead 3: seminar 01-02; O3 won 01-15 (1 000 USD), its stage move refused: seminar 1
--   lead 4: ads 01-02 only
-- seminar JPY: cost 300 000, touched 1 and 3 (first touch of both), mqls 0.5,
--   sqls 0.5, won 0.5 (+ 1 in USD), revenue 500 000, per lead 150 000,
--   per MQL 600 000, per won deal 300 000 / 1.5 = 200 000,
--   ROI (500 000 - 300 000) / 300 000 = 0.666...
-- seminar USD: won 1, revenue 1 000; no cost, counts or ratios on that row
-- ads JPY: cost 100 000, touched 1, 2 and 4 (first touch of 2 and 4), mqls
--   0.5 + 1 = 1.5, sqls 0.5 + 0.5 = 1, won 0.5, revenue 500 000, pipeline
--   100 000, per lead 33 333.33, per MQL 66 666.67, per won 200 000, ROI 4
-- webinar JPY: cost 0, touched 2, mqls 0, sqls 0.5, pipeline 100 000, per lead 0, ROI NULL
SELECT * FROM leadmgmt.campaign_roi ORDER BY campaign, currency;
SELECT campaign, currency, won_deals, won_amount, pipeline_deals, pipeline_amount
  FROM leadmgmt.campaign_attribution ORDER BY campaign, currency;
SELECT * FROM leadmgmt.funnel_revenue ORDER BY source, currency;
SELECT lead_id, opportunity_id, status, amount, currency, opened_at, closed_at, credited_at
  FROM leadmgmt.deal ORDER BY lead_id, opportunity_id;
-- a lost deal: counted in funnel_revenue, credits nothing
SELECT outcome, lead_stage FROM leadmgmt.record_opportunity('O2', status => 'lost', closed_at => '2026-01-25');
SELECT campaign, currency, pipeline FROM leadmgmt.campaign_roi WHERE pipeline > 0;
SELECT source, currency, open_deals, lost_deals, win_rate FROM leadmgmt.funnel_revenue ORDER BY source, currency;

-------------------------------------------------------------------------------
-- Learned scoring: won deals are a label even when the stage move was refused
-------------------------------------------------------------------------------
INSERT INTO leadmgmt.lead (id, email, created_at)
SELECT g, 'm' || g || '@example.jp', '2025-01-01' FROM generate_series(100, 111) g;
SELECT count(*) AS tracked FROM (
	SELECT leadmgmt.track(g, 'download', '2025-01-02') FROM generate_series(100, 111) g WHERE g % 2 = 0
	UNION ALL SELECT leadmgmt.track(g, 'page_view', '2025-01-03') FROM generate_series(100, 111) g) t;
-- four of the leads bought according to the CRM; they are still inquiries here
SELECT count(*) FILTER (WHERE refused_move IS NOT NULL) AS refused
  FROM generate_series(100, 106, 2) g,
       leadmgmt.record_opportunity('W' || g, lead_id => g, status => 'won', created_at => '2025-03-01', closed_at => '2025-03-10');
SELECT count(*) AS won_in_history FROM leadmgmt.stage_history WHERE to_stage = 'won' AND lead_id >= 100;
SELECT train_rows, train_positive
  FROM leadmgmt.train_model('crm_won', observe => '30 days', horizon => '180 days', holdout => 0, as_of => '2026-01-01');

-------------------------------------------------------------------------------
-- Privileges: sales reports deals and reads the feed, admins manage consumers
-------------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS lm_sl_admin, lm_sl_marketing, lm_sl_sales, lm_sl_reader;
RESET client_min_messages;
CREATE ROLE lm_sl_admin NOLOGIN;
CREATE ROLE lm_sl_marketing NOLOGIN;
CREATE ROLE lm_sl_sales NOLOGIN;
CREATE ROLE lm_sl_reader NOLOGIN;
SELECT leadmgmt.grant_access('lm_sl_admin', 'lm_sl_marketing', 'lm_sl_sales', 'lm_sl_reader');
SET ROLE lm_sl_admin;
INSERT INTO leadmgmt.change_consumer (name) VALUES ('connector');
SET ROLE lm_sl_marketing;
INSERT INTO leadmgmt.change_consumer (name) VALUES ('rogue');
INSERT INTO leadmgmt.campaign (name, currency) VALUES ('newsletter', 'JPY');
SET ROLE lm_sl_sales;
SELECT outcome, lead_stage FROM leadmgmt.record_opportunity('S1', lead_id => 4, amount => 5000, currency => 'JPY', created_at => '2026-02-01');
SELECT count(*) > 0 AS sales_reads_the_feed FROM leadmgmt.read_changes('connector', 10);
SELECT leadmgmt.purge_changes();
DELETE FROM leadmgmt.change_consumer;
INSERT INTO leadmgmt.campaign (name, currency) VALUES ('rogue', 'JPY');
SET ROLE lm_sl_reader;
SELECT campaign, currency, won_deals FROM leadmgmt.campaign_roi WHERE campaign = 'seminar' ORDER BY currency;
SELECT payload FROM leadmgmt.change LIMIT 1;
SELECT * FROM leadmgmt.read_changes('connector');
SELECT crm_id FROM leadmgmt.opportunity LIMIT 1;
SET ROLE lm_sl_admin;
SELECT leadmgmt.purge_changes() >= 0 AS admin_purges;
RESET ROLE;
-- clean up: roles are cluster-wide
SET client_min_messages = warning;
DROP OWNED BY lm_sl_admin, lm_sl_marketing, lm_sl_sales, lm_sl_reader;
DROP ROLE lm_sl_admin, lm_sl_marketing, lm_sl_sales, lm_sl_reader;
DROP EXTENSION leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- a connector's long session: the deal lookups stay index probes after the
-- table grew from nearly empty (plans kept from the session's first calls
-- scanned it whole at every message, slower with every deal)
INSERT INTO leadmgmt.lead (email) SELECT 'plan' || g || '@example.jp' FROM generate_series(1, 3000) g;
SELECT count(*) AS first_calls
  FROM (SELECT leadmgmt.record_opportunity('P' || l.id, lead_id => l.id, crm_updated_at => '2026-03-01')
          FROM (SELECT id FROM leadmgmt.lead ORDER BY id LIMIT 12) l) s;
SELECT count(*) AS replays
  FROM (SELECT leadmgmt.record_opportunity('P' || l.id, lead_id => l.id, status => 'lost', crm_updated_at => '2026-03-02')
          FROM (SELECT id FROM leadmgmt.lead ORDER BY id LIMIT 12) l) s;
INSERT INTO leadmgmt.opportunity (lead_id, crm_id, created_at) SELECT id, 'Q' || id, '2026-01-01' FROM leadmgmt.lead;
BEGIN;
SELECT outcome FROM leadmgmt.record_opportunity('Q100', lead_id => 100, status => 'lost', crm_updated_at => '2026-03-03');
SELECT outcome FROM leadmgmt.record_opportunity('Q101', lead_id => 101, status => 'lost', crm_updated_at => '2026-03-03');
SELECT outcome FROM leadmgmt.record_opportunity('R1', lead_id => 102);
SELECT pg_stat_get_xact_numscans('leadmgmt.opportunity'::regclass) AS opportunity_seq_scans;
COMMIT;
