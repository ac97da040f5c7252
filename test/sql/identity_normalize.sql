-- covers: normalize_company/email/name/phone through ICU: Japanese and Western variants, NULL/empty, legal-form-only, long input, invalid input, regions, key_version, volatility
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS leadmgmt CASCADE;
CREATE EXTENSION leadmgmt;
RESET client_min_messages;

-- Each row: input, the key we expect, and whether the function agrees.
-- A failing row shows ok = f, so the expected file states the contract.
CREATE TEMP TABLE company_case (input text, expected text);
INSERT INTO company_case VALUES
	('株式会社トヨタ', 'とよた'),
	('トヨタ株式会社', 'とよた'),
	('トヨタ自動車株式会社', 'とよた自動車'),
	('トヨタ自動車（株）', 'とよた自動車'),
	('(株)トヨタ自動車', 'とよた自動車'),
	('㈱トヨタ自動車', 'とよた自動車'),
	('トヨタ自動車㈱', 'とよた自動車'),
	('ﾄﾖﾀ自動車(ｶﾌﾞ)', 'とよた自動車かぶ'),
	('ｶ)ﾄﾖﾀｼﾞﾄﾞｳｼｬ', 'とよたじどうしゃ'),
	('トヨタ　自動車　株式会社', 'とよた自動車'),
	('㍿ソニー', 'そにー'),
	('ソニーグループ株式会社', 'そにーぐるーぷ'),
	('ｿﾆｰｸﾞﾙｰﾌﾟ㈱', 'そにーぐるーぷ'),
	('そにーぐるーぷ', 'そにーぐるーぷ'),
	('ソニ－グループ', 'そにーぐるーぷ'),
	('有限会社 山田商店', '山田商店'),
	('(有)山田商店', '山田商店'),
	('㈲山田商店', '山田商店'),
	('山田商店（有）', '山田商店'),
	('合同会社ＤＭＭ．ｃｏｍ', 'dmmcom'),
	('合資会社鈴木製作所', '鈴木製作所'),
	('合名会社 鈴木製作所', '鈴木製作所'),
	('一般社団法人 日本経済団体連合会', '日本経済団体連合会'),
	('一般財団法人日本品質保証機構', '日本品質保証機構'),
	('公益社団法人 日本医師会', '日本医師会'),
	('特定非営利活動法人フローレンス', 'ふろーれんす'),
	('ＮＰＯ法人 フローレンス', 'ふろーれんす'),
	('医療法人社団 こころ会', 'こころ会'),
	('学校法人早稲田大学', '早稲田大学'),
	('日本生命保険相互会社', '日本生命保険'),
	('髙島屋株式会社', '高島屋'),
	('株式会社 髙島屋', '高島屋'),
	('ジョンソン・エンド・ジョンソン株式会社', 'じょんそんえんどじょんそん'),
	('NTTデータ株式会社', 'nttでーた'),
	('ＮＴＴデータ', 'nttでーた'),
	('Toyota Motor Corporation', 'toyotamotor'),
	('TOYOTA MOTOR CORP.', 'toyotamotor'),
	('Toyota Motor Co., Ltd.', 'toyotamotor'),
	('Toyota Motor Co.,Ltd.', 'toyotamotor'),
	('ＴＯＹＯＴＡ ＭＯＴＯＲ ＣＯ．，ＬＴＤ．', 'toyotamotor'),
	('Sony Group Corporation', 'sonygroup'),
	('Acme, Inc.', 'acme'),
	('ACME INC', 'acme'),
	('Acme Incorporated', 'acme'),
	('Acme™ Inc.', 'acme'),
	('Example LLC', 'example'),
	('Example, L.L.C.', 'example'),
	('Siemens AG', 'siemens'),
	('Robert Bosch GmbH', 'robertbosch'),
	('Nestlé S.A.', 'nestlé'),
	('NESTLÉ SA', 'nestlé'),
	('BP p.l.c.', 'bp'),
	('Rakuten Group, Inc.', 'rakutengroup'),
	('Sony K.K.', 'sony'),
	('Kabushiki Kaisha Toshiba', 'toshiba'),
	('Acme Pte. Ltd.', 'acme'),
	('The Boeing Company', 'boeing'),
	('Coca-Cola', 'cocacola'),
	('Coca Cola Company', 'cocacola'),
	('Straße GmbH', 'strasse'),
	('Ｓｔｒａｓｓｅ ＧｍｂＨ', 'strasse'),
	('Acme 🚀 Inc', 'acme'),
	(U&'Ac\200Bme Inc', 'acme'),
	('Co-op Mart', 'coopmart'),
	('X Corp.', 'x');
-- (a zero-width space shown escaped: psql counts its width differently by version)
SELECT replace(input, U&'\200B', '<U+200B>') AS input, expected, leadmgmt.normalize_company(input) AS key,
       leadmgmt.normalize_company(input) IS NOT DISTINCT FROM expected AS ok
  FROM company_case ORDER BY ok, input COLLATE "C";
SELECT count(*) AS company_cases, count(*) FILTER (WHERE leadmgmt.normalize_company(input) IS NOT DISTINCT FROM expected) AS company_ok
  FROM company_case;

-- no key: NULL, empty, only a legal form, placeholders, only symbols
SELECT quote_nullable(input) AS input, quote_nullable(leadmgmt.normalize_company(input)) AS key
  FROM unnest(ARRAY[NULL, '', '   ', '株式会社', '(株)', '㈱', 'Inc.', 'Co., Ltd.', 'N/A', 'なし', '個人',
                    'ー', 'テスト', '---', '🚀🚀']) AS t(input);

CREATE TEMP TABLE email_case (input text, expected text);
INSERT INTO email_case VALUES
	('Taro.Yamada@Example.CO.JP', 'taro.yamada@example.co.jp'),
	('  taro@example.jp  ', 'taro@example.jp'),
	('ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ', 'taro@example.jp'),
	('mailto:Taro@Example.jp', 'taro@example.jp'),
	('山田太郎 <taro@example.jp>', 'taro@example.jp'),
	('taro@example.jp.', 'taro@example.jp'),
	('taro@example。jp', 'taro@example.jp'),
	('taro+news@gmail.com', 'taro+news@gmail.com'),
	('t.a.r.o@gmail.com', 't.a.r.o@gmail.com'),
	('taro@googlemail.com', 'taro@googlemail.com'),
	('taro..yamada.@docomo.ne.jp', 'taro..yamada.@docomo.ne.jp'),
	('STRASSE@BEISPIEL.DE', 'strasse@beispiel.de'),
	('straße@beispiel.de', 'strasse@beispiel.de'),
	('太郎@例え.jp', '太郎@例え.jp'),
	('taro@xn--r8jz45g.jp', 'taro@xn--r8jz45g.jp');
SELECT input, expected, leadmgmt.normalize_email(input) AS key,
       leadmgmt.normalize_email(input) IS NOT DISTINCT FROM expected AS ok
  FROM email_case ORDER BY ok, input COLLATE "C";

-- not an address: no key
SELECT quote_nullable(input) AS input, quote_nullable(leadmgmt.normalize_email(input)) AS key
  FROM unnest(ARRAY[NULL, '', '  ', 'taro', 'taro@', '@example.jp', 'taro@localhost',
                    'taro@@example.jp', 'a@b@example.jp', 'taro yamada@example.jp',
                    'taro@example..jp', 'taro@example.jp; hanako@example.jp', 'n/a', '-']) AS t(input);

CREATE TEMP TABLE phone_case (input text, region text, expected text);
INSERT INTO phone_case VALUES
	('03-1234-5678', 'JP', '+81312345678'),
	('03(1234)5678', 'JP', '+81312345678'),
	('(03)1234-5678', 'JP', '+81312345678'),
	('０３－１２３４－５６７８', 'JP', '+81312345678'),
	('０３ー１２３４ー５６７８', 'JP', '+81312345678'),
	('0312345678', 'JP', '+81312345678'),
	('090-1234-5678', 'JP', '+819012345678'),
	('080 1234 5678', 'JP', '+818012345678'),
	('050-1234-5678', 'JP', '+815012345678'),
	('0120-123-456', 'JP', '+81120123456'),
	('0800-123-4567', 'JP', '+818001234567'),
	('0570-000-123', 'JP', '+81570000123'),
	('0466-12-3456', 'JP', '+81466123456'),
	('TEL: 03-1234-5678', 'JP', '+81312345678'),
	('電話 03-1234-5678', 'JP', '+81312345678'),
	('03-1234-5678（代表）', 'JP', '+81312345678'),
	('03-1234-5678 内線 123', 'JP', '+81312345678'),
	('03-1234-5678 ext. 12', 'JP', '+81312345678'),
	('+81-3-1234-5678', 'JP', '+81312345678'),
	('+81 (0)3 1234 5678', 'JP', '+81312345678'),
	('+81 03-1234-5678', 'JP', '+81312345678'),
	('＋８１９０１２３４５６７８', 'JP', '+819012345678'),
	('010-81-3-1234-5678', 'JP', '+81312345678'),
	('+81 3-1234-5678', 'US', '+81312345678'),
	('(415) 555-2671', 'US', '+14155552671'),
	('1 (415) 555-2671', 'us', '+14155552671'),
	('+1 415 555 2671', 'JP', '+14155552671'),
	('020 7946 0000', 'GB', '+442079460000'),
	('+44 (0)20 7946 0000', 'JP', '+442079460000'),
	('01 23 45 67 89', 'FR', '+33123456789'),
	('6123 4567', 'SG', '+6561234567'),
	('+39 06 1234 5678', 'JP', '+390612345678');
SELECT input, region, expected, leadmgmt.normalize_phone(input, region) AS key,
       leadmgmt.normalize_phone(input, region) IS NOT DISTINCT FROM expected AS ok
  FROM phone_case ORDER BY ok, region, input COLLATE "C";

-- the default region is JP
SELECT leadmgmt.normalize_phone('03-1234-5678') AS default_region;
-- not a number we can place: no key
SELECT quote_nullable(input) AS input, quote_nullable(leadmgmt.normalize_phone(input)) AS key
  FROM unnest(ARRAY[NULL, '', '---', '非公開', '03-1234-567', '090-1234-567', '03-1234-56789',
                    '3-1234-5678', '00-0000-0000', 'FAX 03-1234-5678', '03-1234-5678+1',
                    '+0 1234 5678', '+1234567890123456', '1-800-FLOWERS']) AS t(input);
-- a NULL region gives NULL (the function is strict); an unknown region is an error
SELECT leadmgmt.normalize_phone('03-1234-5678', NULL) AS null_region;
SELECT leadmgmt.normalize_phone('03-1234-5678', 'XX');
SELECT leadmgmt.normalize_phone('+81 3 1234 5678', 'Japan');
\set VERBOSITY sqlstate
SELECT leadmgmt.normalize_phone('03-1234-5678', 'XX');
\set VERBOSITY default

-- person names
SELECT input, quote_nullable(leadmgmt.normalize_name(input)) AS key
  FROM unnest(ARRAY['山田 太郎', '山田　太郎', '山田太郎 様', 'ヤマダ タロウ', 'ﾔﾏﾀﾞ ﾀﾛｳ', '髙橋 一郎',
                    'Mr. John Smith', 'JOHN SMITH', 'Dr', '', '不明']) AS t(input);

-- very long input: no key beyond 1000 characters, no error
SELECT leadmgmt.normalize_company(repeat('あ', 1000)) = repeat('あ', 1000) AS company_1000_kept,
       leadmgmt.normalize_company(repeat('あ', 1001)) IS NULL AS company_1001_no_key,
       leadmgmt.normalize_company(repeat('a', 1000000)) IS NULL AS company_1m_no_key,
       leadmgmt.normalize_email(repeat('a', 242) || '@example.com') IS NOT NULL AS email_254_kept,
       leadmgmt.normalize_email(repeat('a', 243) || '@example.com') IS NULL AS email_255_no_key,
       leadmgmt.normalize_phone(repeat('0', 1000000)) IS NULL AS phone_1m_no_key;
-- expansion by NFKC (U+FDFA is 18 characters after NFKC) stays within bounds
SELECT length(leadmgmt.normalize_company(repeat('ﷺ', 1000))) AS nfkc_expanded_length;

-- emoji, mixed scripts, combining marks, noncharacters
SELECT input, leadmgmt.normalize_company(input) AS key
  FROM unnest(ARRAY['🍣寿司🍣株式会社', 'Café Ｄｅｎｍａｒｋ', 'Cafe' || U&'\0301' || ' Denmark',
                    'Ｓａｍｓｕｎｇ 전자', 'บริษัท ABC', U&'Acme\FFFF Inc']) AS t(input);

-- the keys of keys: stable under a second pass for these
SELECT count(*) FILTER (WHERE leadmgmt.normalize_company(expected) IS DISTINCT FROM expected) AS unstable_company_keys
  FROM company_case;
SELECT count(*) FILTER (WHERE leadmgmt.normalize_email(expected) IS DISTINCT FROM expected) AS unstable_email_keys
  FROM email_case;

-- key version and volatility as declared
SELECT leadmgmt.key_version();
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
  FROM pg_proc p
 WHERE p.pronamespace = 'leadmgmt'::regnamespace
   AND p.proname IN ('normalize_company', 'normalize_email', 'normalize_name', 'normalize_phone',
                     'key_version', 'key_similarity')
 ORDER BY 1;
-- usable in an expression index
CREATE TEMP TABLE crm (company text);
CREATE INDEX ON crm (leadmgmt.normalize_company(company));
DROP TABLE crm;
