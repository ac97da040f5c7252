-- weight mixed=25 busy=15
-- upsert_lead(): three identities per lead, five spellings of each e-mail
\set k random(1, 3 * :leads)
\set spelling random(0, 4)
SELECT torture.upsert(:k, :spelling);
