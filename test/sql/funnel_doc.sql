-- covers: the examples of doc/funnel.md, verbatim, so the documented output is checked
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SET intervalstyle = 'postgres';

CREATE TABLE web (lead int, ts timestamptz, kind text);
INSERT INTO web VALUES
  (1, '2024-05-01 09:00+00', 'visit'),   (1, '2024-05-03 10:00+00', 'download'),
  (1, '2024-05-20 15:00+00', 'seminar'),
  (2, '2024-05-01 09:00+00', 'visit'),   (2, '2024-06-15 09:00+00', 'download'),
  (3, '2024-05-02 09:00+00', 'download'), (3, '2024-05-04 09:00+00', 'visit');

SELECT lead,
       leadmgmt.window_funnel('30 days', ts, kind = 'visit', kind = 'download', kind = 'seminar') AS level,
       leadmgmt.funnel_step_times('30 days', ts, kind = 'visit', kind = 'download', kind = 'seminar') AS times
  FROM web GROUP BY lead ORDER BY lead;

CREATE VIEW web_funnel AS
WITH per_lead AS (
  SELECT lead, leadmgmt.window_funnel('30 days', ts, kind = 'visit', kind = 'download', kind = 'seminar') AS level
    FROM web WHERE kind IN ('visit', 'download', 'seminar')
   GROUP BY lead
), steps AS (
  SELECT s.step, s.name, count(p.lead) AS leads_reaching
    FROM unnest(ARRAY['visit', 'download', 'seminar']) WITH ORDINALITY AS s(name, step)
    LEFT JOIN per_lead p ON p.level >= s.step
   GROUP BY s.step, s.name
)
SELECT step, name, leads_reaching,
       round(leads_reaching::numeric / NULLIF(lag(leads_reaching) OVER (ORDER BY step), 0), 3) AS conversion_from_previous,
       round(leads_reaching::numeric / NULLIF(first_value(leads_reaching) OVER (ORDER BY step), 0), 3) AS conversion_from_first
  FROM steps;

SELECT * FROM web_funnel ORDER BY step;

SELECT lead, t[2] - t[1] AS visit_to_download, t[3] - t[2] AS download_to_seminar
  FROM (SELECT lead, leadmgmt.funnel_step_times('30 days', ts, kind = 'visit', kind = 'download', kind = 'seminar') AS t
          FROM web GROUP BY lead) s
 WHERE cardinality(t) = 3;

-- rule 3: a day is 24 hours; rule 5: strict_increase finds A@0, B@1, C@2
SELECT leadmgmt.window_funnel('1 day', ts, kind = 'a', kind = 'b') = leadmgmt.window_funnel('24 hours', ts, kind = 'a', kind = 'b') AS same
  FROM (VALUES (timestamptz '2024-03-30 12:00+00', 'a'), (timestamptz '2024-03-31 12:00+00', 'b')) v(ts, kind);
SELECT leadmgmt.window_funnel('10 seconds', 'strict_increase', ts, kind = 'A', kind = 'B', kind = 'C') AS level
  FROM (VALUES (timestamptz '2024-01-01 00:00:00+00', 'A'), ('2024-01-01 00:00:01+00', 'B'),
               ('2024-01-01 00:00:02+00', 'B'), ('2024-01-01 00:00:02+00', 'C')) v(ts, kind);
