#!/bin/sh
# make bench: build, then run every bench/*.sh (or those named in BENCH="a b")
# against a throwaway cluster.  Each benchmark prints its ratio against the
# plain-SQL way of doing the same job, measured in the same run.
set -eu
. "$(dirname "$0")/../scripts/env.sh"
"$TOP/scripts/bootstrap.sh"
"$TOP/scripts/build.sh"
for b in ${BENCH:-$(cd "$TOP/bench" && ls *.sh | grep -v '^run\.sh$' | sed 's/\.sh$//')}; do
	echo "== bench $b"
	venv sh "$TOP/bench/$b.sh"
done
