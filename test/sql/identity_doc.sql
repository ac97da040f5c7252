-- covers: the examples of doc/identity.md, in the same order (keep them in sync)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

SELECT leadmgmt.normalize_company('ﾄﾖﾀ自動車㈱') AS a,
       leadmgmt.normalize_company('トヨタ自動車 株式会社') AS b,
       leadmgmt.normalize_company('Toyota Motor Co., Ltd.') AS c,
       leadmgmt.normalize_company('株式会社') AS d;
SELECT leadmgmt.normalize_email(' Taro.Yamada@Example.JP ') AS a,
       leadmgmt.normalize_email('taro+news@gmail.com') AS b,
       leadmgmt.normalize_email('n/a') AS c;
SELECT leadmgmt.normalize_phone('０３－１２３４－５６７８') AS a,
       leadmgmt.normalize_phone('+81 (0)90-1234-5678') AS b,
       leadmgmt.normalize_phone('(415) 555-2671', 'US') AS c,
       leadmgmt.normalize_phone('03-1234-567') AS d;
SELECT * FROM leadmgmt.upsert_lead(email => 'taro.yamada@example.jp', name => '山田 太郎',
                                   company => 'トヨタ自動車株式会社', source => 'web_form');
SELECT * FROM leadmgmt.upsert_lead(name => '山田太郎 様', company => '(株)トヨタ自動車',
                                   phone => '03-1234-5678');
INSERT INTO leadmgmt.lead_import (batch, name, company, email, kind, detail)
VALUES ('expo', '山田 太郎', 'ﾄﾖﾀ自動車', 'TARO.YAMADA@example.jp', 'exhibition_card', 'Japan IT Week'),
       ('expo', '佐藤 花子', 'Acme, Inc.', 'hanako@acme.example', 'exhibition_card', 'Japan IT Week');
SELECT * FROM leadmgmt.import_leads('expo');
INSERT INTO leadmgmt.lead (name, company) VALUES ('佐藤 花子', 'ACME INC');
SELECT * FROM leadmgmt.duplicate_candidates;
SELECT leadmgmt.merge_leads(2, 3);
SELECT id, merged_into, stage FROM leadmgmt.lead ORDER BY id;
