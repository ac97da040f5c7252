#!/bin/sh
# Install what `make demo` and `make test` need on Debian (12, 13 or testing),
# or say how.
#
# The PostgreSQL major version is the one PG_CONFIG names
# (/usr/lib/postgresql/NN/bin/pg_config, installed or not); without
# PG_CONFIG, the newest server installed here (scripts/pg-config.sh), and on
# a machine with none, the distribution's default (the version the
# `postgresql` package depends on).  Checks by file, not by package name, so
# a machine that got PostgreSQL some other way is left alone.  As root it
# installs the missing packages with apt; otherwise it prints the exact
# command and fails.
set -eu

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
apt_updated=""
apt_update() {
	[ -n "$apt_updated" ] && return 0
	apt-get update -q >/dev/null
	apt_updated=yes
}
asroot() { [ "$(id -u)" -eq 0 ]; }

# the major version: from PG_CONFIG's path or --version, else the newest
# server installed, else the distribution's default
major=""
if [ -n "${PG_CONFIG:-}" ]; then
	major=$(printf '%s\n' "$PG_CONFIG" | sed -n 's|^/usr/lib/postgresql/\([0-9][0-9]*\)/bin/pg_config$|\1|p')
	if [ -z "$major" ]; then
		major=$("$PG_CONFIG" --version 2>/dev/null | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
	fi
else
	major=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null |
		sed -n 's|^/usr/lib/postgresql/\([0-9][0-9]*\)/bin/postgres$|\1|p' | sort -n | tail -1)
fi
if [ -z "$major" ]; then
	if asroot; then
		apt_update
		major=$(apt-cache depends postgresql 2>/dev/null |
			sed -n 's/^ *Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -1)
	fi
	if [ -z "$major" ]; then
		echo "leadmgmt: no PostgreSQL found; install postgresql-NN and postgresql-server-dev-NN" >&2
		echo "leadmgmt: (NN = 15 or newer), or name one with PG_CONFIG=/path/to/pg_config" >&2
		exit 1
	fi
fi
PGBIN=/usr/lib/postgresql/$major/bin

missing=""
need() { # need <package> <test...>
	pkg=$1; shift
	if ! "$@" >/dev/null 2>&1; then
		missing="$missing $pkg"
	fi
}
fuzz_runtime() { # the libFuzzer runtime of the default clang
	clang=$(readlink -f "$(command -v clang)")
	ls "${clang%/bin/*}"/lib/clang/*/lib/*/libclang_rt.fuzzer*.a
}
check() {
	missing=""
	need postgresql-$major            test -x $PGBIN/postgres
	need postgresql-server-dev-$major test -f /usr/include/postgresql/$major/server/postgres.h
	need postgresql-common            command -v pg_virtualenv
	need libicu-dev                   test -f /usr/include/unicode/uchar.h
	need pkg-config                   command -v pkg-config
	need libipc-run-perl              perl -MIPC::Run -e 1
	need gcc                          command -v gcc
	need make                         command -v make
	need libc6-dev                    test -f /usr/include/stdio.h
	need zip                          command -v zip
	need unzip                        command -v unzip
	# fuzzing (scripts/fuzz.sh): the distribution's default clang, and its
	# libFuzzer runtime (only a Recommends of clang)
	need clang                        command -v clang
	need sqlsmith                     command -v sqlsmith
}
# what goes with the clang this distribution installs as `clang`, version NN:
# libFuzzer's runtime (libclang-rt-NN-dev) and llvm-NN (llvm-symbolizer, for
# readable sanitizer reports)
llvm_missing() {
	llvm=$(readlink -f "$(command -v clang)" | sed -n 's|^/usr/lib/llvm-\([0-9][0-9]*\)/bin/.*|\1|p')
	fuzz_runtime >/dev/null 2>&1 || echo "libclang-rt-${llvm:-NN}-dev"
	[ -x "/usr/lib/llvm-${llvm:-NN}/bin/llvm-symbolizer" ] || echo "llvm-${llvm:-NN}"
}
check
if command -v clang >/dev/null 2>&1; then
	missing="$missing $(llvm_missing | tr '\n' ' ')"
	missing=$(echo $missing)
	[ -n "$missing" ] && missing=" $missing"
fi

if [ -z "$missing" ]; then
	exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if ! asroot; then
	echo "leadmgmt: missing packages for PostgreSQL $major:$missing" >&2
	echo "leadmgmt: run as root, then try again:" >&2
	echo "    sudo sh -c '$cmd'" >&2
	exit 1
fi

echo "leadmgmt: installing for PostgreSQL $major:$missing"
apt_update
apt_install $missing
# clang came with this run: now its version says which runtime to add
more=$(llvm_missing)
[ -n "$more" ] && apt_install $more
check
missing="$missing$(llvm_missing | sed 's/^/ /' | tr -d '\n')"
if [ -n "$missing" ]; then
	echo "leadmgmt: still missing after apt-get install:$missing" >&2
	exit 1
fi
echo "leadmgmt: dependencies installed"
