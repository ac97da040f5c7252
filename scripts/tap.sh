#!/bin/sh
# Run the TAP tests (test/t/*.pl) with prove.  initdb refuses to run as root,
# so as root the tests run as the unprivileged system user "leadmgmt_tap"
# (created on first use) in a copy of test/t it owns.
set -eu
. "$(dirname "$0")/env.sh"
PGXS_DIR=$("$PG_CONFIG" --pgxs | sed 's|/src/makefiles/pgxs.mk$||')
PERL_LIB=$PGXS_DIR/src/test/perl
glob=${TAP_TESTS_GLOB:-*.pl}

work=$(mktemp -d /tmp/leadmgmt-tap.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$TOP/test/t" "$work/t"
# what a test cluster's postgresql.conf needs to load the staged build
# (scripts/env.sh: extension_destdir, or on 18 extension_control_path and
# dynamic_library_path); each test appends $LEADMGMT_STAGE_CONF
stage_settings | sed "s/=\(.*\)/ = '\1'/" > "$work/stage.conf"
runenv="PATH=$PGBIN:/usr/bin:/bin PERL5LIB=$PERL_LIB LEADMGMT_STAGE_CONF=$work/stage.conf PG_CONFIG=$PG_CONFIG PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress"

if [ "$(id -u)" -eq 0 ]; then
	id leadmgmt_tap >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin leadmgmt_tap
	chown -R leadmgmt_tap "$work"
	chmod 755 "$work"
	exec_as() { su -s /bin/sh leadmgmt_tap -c "$*"; }
else
	exec_as() { sh -c "$*"; }
fi
status=0
exec_as "cd $work && env $runenv prove -v t/$glob" || status=$?
# a failing test's own log holds its errors (die messages, psql stderr)
if [ $status -ne 0 ]; then
	for f in "$work"/tmp_check/log/regress_log_*; do
		[ -f "$f" ] || continue
		echo "---- tail of $(basename "$f")"
		tail -40 "$f"
	done
fi
exit $status
