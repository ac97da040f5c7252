-- weight mixed=20 busy=15
-- set_stage(): an allowed move from the stage read just before, sometimes a forbidden one
\set lead (case when random(1, 100) <= 50 then random(1, :busy) else random(1, :leads) end)
\set k random(0, 1000000)
SELECT torture.move(:lead, :k);
