-- weight mixed=50 busy=55
-- track(): a busy lead half the time
\set lead (case when random(1, 100) <= 50 then random(1, :busy) else random(1, :leads) end)
\set k random(0, 1000000)
SELECT torture.track(:lead, :k);
