-- weight mixed=5 busy=15
-- merge_leads(): two leads, busy ones half the time
\set a (case when random(1, 100) <= 50 then random(1, :busy) else random(1, :leads) end)
\set b (case when random(1, 100) <= 50 then random(1, :busy) else random(1, :leads) end)
SELECT torture.merge(:a, :b);
