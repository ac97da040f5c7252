#!/bin/sh
# Build and stage-install the extension.  Usage: scripts/build.sh [-Werror]
set -eu
. "$(dirname "$0")/env.sh"
cd "$TOP"
copt=""
if [ "${1:-}" = "-Werror" ]; then
	copt="-Werror"
	# objects built without -Werror would hide their warnings
	make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null
fi
make -s PG_CONFIG="$PG_CONFIG" COPT="$copt" all
rm -rf "$STAGE"
make -s PG_CONFIG="$PG_CONFIG" install DESTDIR="$STAGE" >/dev/null
# the cluster's server runs as another user (postgres, or the TAP user)
chmod -R a+rX "$STAGE"
