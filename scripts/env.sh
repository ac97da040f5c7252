# Sourced by the scripts: where things are.  POSIX sh.
# scripts run as scripts/x.sh; sourced interactively, $0 is the shell, so
# fall back to the current directory (the top of the checkout)
if [ -f "$(dirname "$0")/../leadmgmt.control" ]; then
	TOP=$(cd "$(dirname "$0")/.." && pwd)
else
	TOP=$(pwd)
fi
# PG_CONFIG picks the PostgreSQL version; without it the newest installed
# server with its dev package (scripts/pg-config.sh, as the Makefile does).
# Every path below comes from it.
PG_CONFIG=$(sh "$TOP/scripts/pg-config.sh")
PGBIN=$("$PG_CONFIG" --bindir 2>/dev/null)
PG_MAJOR=$("$PG_CONFIG" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
# `make install` goes to a staging directory, and throwaway clusters load the
# extension from there: nothing is written to the system's PostgreSQL
# directories, and no root is needed for it.
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
# The server settings that make a cluster load the staged build: Debian's
# extension_destdir (its PostgreSQL 15 to 17), else PostgreSQL 18's
# extension_control_path and dynamic_library_path (the sharedir and pkglibdir
# below the stage; the module's "$libdir/" prefix is then searched for on
# dynamic_library_path).  One "name=value" a line, for pg_virtualenv -o and
# for the TAP tests' postgresql.conf.
stage_settings() {
	if "$PGBIN/postgres" --describe-config 2>/dev/null | grep -q '^extension_destdir[[:space:]]'; then
		echo "extension_destdir=$STAGE"
	else
		echo "extension_control_path=$STAGE$("$PG_CONFIG" --sharedir):\$system"
		echo "dynamic_library_path=$STAGE$("$PG_CONFIG" --pkglibdir):\$libdir"
	fi
}
export PG_CONFIG PGBIN PG_MAJOR TOP STAGE

# venv CMD...: run CMD against a throwaway UTF-8 cluster of PG_CONFIG's
# version (-v: pg_virtualenv would take the newest server installed) that
# loads the staged build (-t: never the fixed NN/regress name, so a run killed
# half-way does not block the next one)
venv() {
	set -- $(stage_settings | sed 's/^/-o /') "$@"
	# on a port drawn at random: pg_virtualenv would take the first free one
	# from 5432, and two clusters starting at the same moment on a shared
	# machine pick the same ("Port conflict").  Drawn below the kernel's
	# ephemeral range (ip_local_port_range, 32768 up by default), where any
	# outgoing connection may hold the port and the server cannot bind it.
	PGPORT=$(free_port) \
		pg_virtualenv -t -v "$PG_MAJOR" -i '--encoding=UTF8 --locale=C.UTF-8' "$@"
}

# free_port: a TCP port from 20000 to below the ephemeral range that nothing
# listens on (ss, when it is there, tells which are taken)
free_port() {
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
	[ "$low" -gt 21000 ] 2>/dev/null || low=32768
	while :; do
		port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % (low - 20000)))
		if ! command -v ss >/dev/null 2>&1 || ! ss -Htln "sport = :$port" | grep -q .; then
			echo "$port"
			return
		fi
	done
}
