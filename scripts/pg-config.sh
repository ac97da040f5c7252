#!/bin/sh
# Print the pg_config to build and test with: $PG_CONFIG if set, else the
# newest Debian-packaged server whose development files are installed
# (/usr/lib/postgresql/NN with bin/postgres and the server headers), else
# pg_config from PATH.  The Makefile and scripts/env.sh both ask here, so a
# bare `make`, `make test` and `make installcheck` agree on the version.
if [ -n "${PG_CONFIG:-}" ]; then
	echo "$PG_CONFIG"
	exit 0
fi
for major in $(ls /usr/lib/postgresql 2>/dev/null | grep -E '^[0-9]+$' | sort -rn); do
	d=/usr/lib/postgresql/$major
	if [ -x "$d/bin/postgres" ] && [ -x "$d/bin/pg_config" ] &&
		[ -f "/usr/include/postgresql/$major/server/postgres.h" ]; then
		echo "$d/bin/pg_config"
		exit 0
	fi
done
echo pg_config
