#!/bin/sh
# make conformance: leadmgmt's window_funnel, funnel_step_times,
# sequence_match, sequence_count and retention against the real ClickHouse
# engine (chdb, which embeds ClickHouse 26.7.2), on random groups with a fixed
# seed.  Prints the differences per mode and pattern and fails unless there
# are none.  See conformance/README.
set -eu
. "$(dirname "$0")/../scripts/env.sh"
cd "$TOP"
CHDB_VERSION=3.4.0
CHDB_DIR=${LEADMGMT_CHDB_DIR:-/var/cache/leadmgmt-chdb}

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "conformance: node and npm are needed (apt-get install nodejs npm)" >&2
	exit 1
fi
have=$(node -p "try { require('$CHDB_DIR/node_modules/chdb/package.json').version } catch (e) { '' }" 2>/dev/null || true)
if [ "$have" != "$CHDB_VERSION" ]; then
	echo "conformance: installing chdb@$CHDB_VERSION (the ClickHouse engine, about 540 MB) into $CHDB_DIR"
	mkdir -p "$CHDB_DIR"
	if ! (cd "$CHDB_DIR" && npm install --no-audit --no-fund --loglevel=error "chdb@$CHDB_VERSION"); then
		echo "conformance: npm could not install chdb@$CHDB_VERSION: is the npm registry reachable?" >&2
		echo "conformance: FAILED (no reference engine)" >&2
		exit 1
	fi
fi

scripts/build.sh
work=$(mktemp -d /tmp/leadmgmt-conformance.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
PGOPTIONS="-c client_min_messages=warning" venv sh -c "psql -X -q -c 'CREATE EXTENSION leadmgmt' >/dev/null && node conformance/conformance.mjs '$CHDB_DIR' '$work'"
