-- leadmgmt 0.1.0 -> 1.0.0: what changed in the SQL surface since the 0.1.0
-- pre-release.  The upgrade test (test/t/003_upgrade.pl) checks that
-- installing 0.1.0 and running ALTER EXTENSION leadmgmt UPDATE gives exactly
-- the objects and built-in rows of a fresh 1.0.0 install.

\echo Use "ALTER EXTENSION leadmgmt UPDATE TO '1.0.0'" to load this file. \quit
