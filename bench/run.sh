#!/bin/sh
# make bench: build, then run every bench/*.sh (or those named in BENCH="a b")
# against a throwaway cluster.  Each benchmark prints its ratio against the
# plain-SQL way of doing the same job, measured in the same run.
set -eu
. "$(dirname "$0")/../scripts/env.sh"
"$TOP/scripts/bootstrap.sh"
# the learned-scoring benchmark compares with scikit-learn in the same run
if ! /usr/bin/python3 -c 'import sklearn, pandas' 2>/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			python3-sklearn python3-pandas >/dev/null
	else
		echo "bench: for the scikit-learn comparison run:" \
			"sudo apt-get install -y python3-sklearn python3-pandas"
	fi
fi
"$TOP/scripts/build.sh"
for b in ${BENCH:-$(cd "$TOP/bench" && ls *.sh | grep -v '^run\.sh$' | sed 's/\.sh$//')}; do
	echo "== bench $b"
	venv sh "$TOP/bench/$b.sh"
done
