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
# ... unless the checkout sits below a directory other users cannot enter
# (a CI clone in a mode-700 temporary directory): the server runs as another
# user (postgres, or the TAP user) and must read the staged files.
world_traversable() {
	d=$1
	while [ "$d" != "/" ] && [ -n "$d" ]; do
		case $(stat -c %A "$d") in
		????????x*) ;;
		*) return 1 ;;
		esac
		d=$(dirname "$d")
	done
}
if ! world_traversable "$TOP"; then
	STAGE=/tmp/leadmgmt-stage-$(id -u)-$(printf '%s' "$TOP" | cksum | cut -d' ' -f1)
fi
export PG_CONFIG PGBIN TOP STAGE

# venv CMD...: run CMD against a throwaway UTF-8 cluster (-t: never the fixed
# 15/regress name, so a run killed half-way does not block the next one)
venv() {
	pg_virtualenv -t -i '--encoding=UTF8 --locale=C.UTF-8' \
		-o "extension_destdir=$STAGE" "$@"
}
