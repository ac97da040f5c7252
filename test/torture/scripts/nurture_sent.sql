-- weight mixed=5 busy=5
-- requires: leadmgmt.nurture_sent
-- requires: leadmgmt.nurture_enroll
-- nurture_sent(): a due touch sent (and, one call in fifty, enrolment run again)
\set k random(0, 1000000)
SELECT torture.nurture(:k);
