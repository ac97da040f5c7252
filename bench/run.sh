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
# every benchmark prints its rows of the final table as
#   table: AREA|WHAT|MS|BASELINE|BASELINE_MS|GOAL     (ratio = MS / BASELINE_MS)
#   check: AREA|WHAT|RESULT|DETAIL
# and the table is printed once at the end, from this one run
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for b in ${BENCH:-$(cd "$TOP/bench" && ls *.sh | grep -v '^run\.sh$' | sed 's/\.sh$//')}; do
	echo "== bench $b"
	venv sh "$TOP/bench/$b.sh" 2>&1 | tee -a "$log"
done
echo
echo "== bench table: one run, $(date -u '+%Y-%m-%d %H:%M UTC'), BENCH_SCALE=${BENCH_SCALE:-1}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
grep '^table: ' "$log" | sed 's/^table: //' | awk -F'|' '
	BEGIN { printf "%-8s | %-92s | %10s | %-62s | %10s | %7s | %s\n", "area", "measured", "ms", "against (same run)", "ms", "ratio", "goal" }
	{ r = ($3 != "" && $5 != "" && $5 > 0) ? sprintf("%.2fx", $3 / $5) : ""
	  printf "%-8s | %-92s | %10s | %-62s | %10s | %7s | %s\n", $1, $2, $3, $4, $5, r, $6 }'
echo
grep '^check: ' "$log" | sed 's/^check: //' | awk -F'|' '
	BEGIN { printf "%-10s | %-26s | %-70s | %s\n", "area", "check", "result", "detail" }
	{ printf "%-10s | %-26s | %-70s | %s\n", $1, $2, $3, $4 }'
