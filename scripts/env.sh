# Sourced by the scripts: where things are.  POSIX sh.
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
# scripts run as scripts/x.sh; sourced interactively, $0 is the shell, so
# fall back to the current directory (the top of the checkout)
if [ -f "$(dirname "$0")/../leadmgmt.control" ]; then
	TOP=$(cd "$(dirname "$0")/.." && pwd)
else
	TOP=$(pwd)
fi
# `make install` goes to a staging directory, and throwaway clusters load the
# extension from there through Debian's extension_destdir: nothing is written
# to the system's PostgreSQL directories, and no root is needed for it.
STAGE=$TOP/build/stage
export PG_CONFIG PGBIN TOP STAGE

# venv CMD...: run CMD against a throwaway UTF-8 cluster (-t: never the fixed
# 15/regress name, so a run killed half-way does not block the next one)
venv() {
	pg_virtualenv -t -i '--encoding=UTF8 --locale=C.UTF-8' \
		-o "extension_destdir=$STAGE" "$@"
}
