#!/bin/sh
# Install what `make demo` and `make test` need on Debian 12, or say how.
#
# Checks by file, not by package name, so a machine that got PostgreSQL some
# other way is left alone.  As root it installs the missing packages with apt;
# otherwise it prints the exact command and fails.
set -eu

PGBIN=/usr/lib/postgresql/15/bin
missing=""
need() { # need <package> <test...>
	pkg=$1; shift
	if ! "$@" >/dev/null 2>&1; then
		missing="$missing $pkg"
	fi
}

need postgresql-15            test -x $PGBIN/postgres
need postgresql-server-dev-15 test -f /usr/include/postgresql/15/server/postgres.h
need postgresql-common        command -v pg_virtualenv
need libicu-dev               test -f /usr/include/unicode/uchar.h
need pkg-config               command -v pkg-config
need libipc-run-perl          perl -MIPC::Run -e 1
need gcc                      command -v gcc
need make                     command -v make
# fuzzing (scripts/fuzz.sh): libFuzzer's runtime is only a Recommends of clang
need clang                    command -v clang
need libclang-rt-14-dev       sh -c 'ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a'
need sqlsmith                 command -v sqlsmith
# the BI-client test (test/t/004_bi_client.pl): PgJDBC, as BI tools connect
need default-jdk-headless     command -v javac
need libpostgresql-jdbc-java  test -f /usr/share/java/postgresql.jar

if [ -z "$missing" ]; then
	exit 0
fi

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "leadmgmt: missing packages:$missing" >&2
	echo "leadmgmt: run as root, then try again:" >&2
	echo "    sudo sh -c '$cmd'" >&2
	exit 1
fi

echo "leadmgmt: installing$missing"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
echo "leadmgmt: dependencies installed"
