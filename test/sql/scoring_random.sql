-- covers: incremental scores on random data equal a slow independent formulation and rescore()
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET TimeZone = 'UTC';
SELECT setseed(0.1234);

-- rules of every shape: capped, decaying, negative, patterns, campaign, duration
INSERT INTO leadmgmt.scoring_rule (name, kind, detail_pattern, campaign, min_duration_s, points, half_life, max_times) VALUES
	('r_camp',  'email_click', NULL,     'spring', NULL, 7,  '5 days',  3),
	('r_long',  'page_view',   '/docs%', NULL,     60,   3,  '12 hours', NULL),
	('r_neg',   'call',        NULL,     NULL,     NULL, -4, NULL,      2);

INSERT INTO leadmgmt.lead (id, created_at)
SELECT g, '2025-12-01' FROM generate_series(1, 60) g;

-- activities arrive in random order, in batches of random size, some back-filled
CREATE TEMP TABLE incoming AS
SELECT (1 + floor(random() * 60))::bigint AS lead_id,
       (ARRAY['page_view','email_click','email_open','call','download','form_submit','visit'])[1 + floor(random() * 7)::int] AS kind,
       timestamptz '2026-01-01' + random() * interval '60 days' AS occurred_at,
       (ARRAY['/docs/a','/pricing','/blog','/docs/b', NULL])[1 + floor(random() * 5)::int] AS detail,
       (ARRAY['spring','autumn', NULL])[1 + floor(random() * 3)::int] AS campaign,
       (floor(random() * 200))::int AS duration_s,
       g AS seq
  FROM generate_series(1, 2000) g;
DO $$
DECLARE
	lo int := 1;
	n int;
BEGIN
	WHILE lo <= 2000 LOOP
		n := 1 + floor(random() * 150)::int;
		INSERT INTO leadmgmt.activity (lead_id, kind, occurred_at, detail, campaign, duration_s)
		SELECT lead_id, kind, occurred_at, detail, campaign, duration_s FROM incoming
		 WHERE seq BETWEEN lo AND lo + n - 1 ORDER BY random();
		lo := lo + n;
	END LOOP;
END $$;

-- the slow, obvious way: match every rule, cap by row_number, decay with power()
CREATE TEMP VIEW slow_score AS
WITH rules AS (
	SELECT r.* FROM leadmgmt.scoring_rule r
	 WHERE r.active AND NOT EXISTS (SELECT 1 FROM leadmgmt.scoring_rule o WHERE o.overrides = r.name)
), hits AS (
	SELECT a.lead_id, a.occurred_at, r.points, r.half_life,
	       row_number() OVER (PARTITION BY a.lead_id, r.id ORDER BY a.occurred_at, a.id) AS n, r.max_times
	  FROM leadmgmt.activity a JOIN rules r ON r.kind = a.kind
	 WHERE (r.detail_pattern IS NULL OR a.detail LIKE r.detail_pattern)
	   AND (r.campaign IS NULL OR a.campaign = r.campaign)
	   AND (r.min_duration_s IS NULL OR a.duration_s >= r.min_duration_s)
), last AS (
	SELECT lead_id, max(occurred_at) AS at FROM hits WHERE max_times IS NULL OR n <= max_times GROUP BY lead_id
)
SELECT h.lead_id, l.at,
       sum(h.points * CASE WHEN h.half_life IS NULL THEN 1
                          ELSE power(0.5, extract(epoch FROM l.at - h.occurred_at) / extract(epoch FROM h.half_life)) END) AS score
  FROM hits h JOIN last l USING (lead_id)
 WHERE h.max_times IS NULL OR h.n <= h.max_times
 GROUP BY h.lead_id, l.at;

SELECT count(*) AS leads_compared,
       count(*) FILTER (WHERE abs(l.score - s.score) > 1e-9 * greatest(1, abs(s.score)) OR l.score_at <> s.at) AS mismatches
  FROM leadmgmt.lead l JOIN slow_score s ON s.lead_id = l.id;
-- activity points equal the sum of awarded rule points
SELECT count(*) AS point_mismatches
  FROM leadmgmt.activity a
  LEFT JOIN (SELECT activity_id, sum(points) AS p FROM leadmgmt.score_matches(NULL, NULL) GROUP BY 1) m
    ON m.activity_id = a.id
 WHERE a.points <> coalesce(m.p, 0);
-- score(lead, at) at a random earlier time equals the slow formula at that time
SELECT count(*) AS time_travel_mismatches
  FROM (SELECT id, timestamptz '2026-01-01' + random() * interval '60 days' AS at FROM leadmgmt.lead) t
 WHERE abs(leadmgmt.score(t.id, t.at) - coalesce((
	SELECT sum(m.points * CASE WHEN m.half_life_us = 0 THEN 1
	                           ELSE power(0.5, extract(epoch FROM t.at - m.occurred_at) * 1e6 / m.half_life_us) END)
	  FROM leadmgmt.score_matches(t.id, t.at) m), 0)) > 1e-9;
SELECT leadmgmt.rescore() AS changed_by_rescore;
