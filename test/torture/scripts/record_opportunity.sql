-- weight mixed=5 busy=5
-- requires: leadmgmt.record_opportunity
-- record_opportunity(): CRM deals for busy leads, replays and updates of three deals per lead
\set lead (case when random(1, 100) <= 50 then random(1, :busy) else random(1, :leads) end)
\set k random(0, 1000000)
SELECT torture.opportunity(:lead, :k);
