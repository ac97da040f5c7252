#!/bin/sh
# make fuzz: coverage-guided fuzzing of src/core and random SQL against the
# extension.  scripts/test.sh's suite "fuzz" runs the same, short.
#
#   scripts/fuzz.sh [libfuzzer] [sqlsmith]        (default: both)
#
# libfuzzer  every src/core/testing/fuzz_X.c built with clang
#            -fsanitize=fuzzer,address,undefined, each run FUZZ_SECONDS
#            (default 60) from its seed corpus; inputs that crash are left in
#            src/core/testing/build/libfuzzer-artifacts/.
# sqlsmith   a throwaway cluster with the extension, FUZZ_LEADS demo leads
#            (default 1000) and an unprivileged login role holding the four
#            access roles (test/fuzz/setup.sql); sqlsmith sends FUZZ_QUERIES
#            random queries (default 10000) as that role, with FUZZ_SEED
#            (default: the process id; printed); FUZZ_PARALLEL=0 turns off
#            the forced parallel plans (about three times as many queries per
#            second, but no combine/serialise paths).  Fails on a crash or
#            on an internal error (SQLSTATE XX000) raised in leadmgmt's C
#            code; lists XX000 raised in PostgreSQL's own code.  The server
#            log and sqlsmith's output are kept in build/fuzz/.
#
# Prints one "ok N - ..." or "not ok N - ..." line per libFuzzer target and
# one for sqlsmith, with details on "#" lines; exits non-zero on a failure.
# Assumes the extension is built and staged (scripts/build.sh).
set -u
. "$(dirname "$0")/env.sh"
cd "$TOP"
OUT=$TOP/build/fuzz
mkdir -p "$TOP/build"
ROLE=lm_fuzz
PASSWORD=fuzz

# inside the throwaway cluster (pg_virtualenv sets PGHOST, PGPORT, ...)
if [ "${1:-}" = --in-cluster ]; then
	set -e
	serverlog=$(pg_lsclusters -h | awk 'NR == 1 { print $7 }')
	# every error with its SQLSTATE and, on the next line, where it was raised
	psql -X -q -c "ALTER SYSTEM SET log_error_verbosity = verbose" \
		-c "ALTER SYSTEM SET log_line_prefix = '%m [%p] %e '" -c "SELECT pg_reload_conf()" >/dev/null
	createdb leadfuzz
	psql -X -q -d leadfuzz -v leads="$FUZZ_LEADS" -v role=$ROLE -v password=$PASSWORD -v parallel="$FUZZ_PARALLEL" \
		-f "$TOP/test/fuzz/setup.sql" > "$OUT/setup.log" 2>&1
	start=$(wc -c < "$serverlog")
	set +e
	sqlsmith --target="host=$PGHOST port=$PGPORT dbname=leadfuzz user=$ROLE password=$PASSWORD" \
		--exclude-catalog --verbose --seed="$FUZZ_SEED" --max-queries="$FUZZ_QUERIES" \
		> "$OUT/sqlsmith.out" 2> "$OUT/sqlsmith.err"
	echo $? > "$OUT/sqlsmith.status"
	# still answering, and has not restarted (a crash resets every backend)
	psql -X -q -At -d leadfuzz -c "SELECT 'server up'" > "$OUT/alive" 2>&1
	tail -c +$((start + 1)) "$serverlog" > "$OUT/server.log"
	exit 0
fi

what=${*:-libfuzzer sqlsmith}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_QUERIES=${FUZZ_QUERIES:-10000}
FUZZ_LEADS=${FUZZ_LEADS:-1000}
FUZZ_SEED=${FUZZ_SEED:-$$}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
export FUZZ_QUERIES FUZZ_LEADS FUZZ_SEED FUZZ_PARALLEL
failed=0
n=0

for w in $what; do
	case $w in
	libfuzzer)
		# libFuzzer numbers its lines from 1: renumber after the previous part
		make -s -C src/core/testing libfuzzer LIBFUZZER_SECONDS="$FUZZ_SECONDS" \
			${FUZZ_RUNS:+LIBFUZZER_RUNS="$FUZZ_RUNS"} > "$OUT.libfuzzer.log" 2>&1 || failed=1
		if ! grep -qE '^(not )?ok ' "$OUT.libfuzzer.log"; then
			tail -n 20 "$OUT.libfuzzer.log"
			n=$((n + 1)); echo "not ok $n - libfuzzer: build failed"
			continue
		fi
		while IFS= read -r line; do
			case $line in
			"ok "*) n=$((n + 1)); echo "ok $n - ${line#ok * - }" ;;
			"not ok "*) n=$((n + 1)); echo "not ok $n - ${line#not ok * - }" ;;
			"#"*) echo "$line" ;;
			esac
		done < "$OUT.libfuzzer.log"
		;;
	sqlsmith)
		rm -rf "$OUT"
		mkdir -p "$OUT"
		n=$((n + 1))
		started=$(date +%s)
		# pg_virtualenv picks a free port, but another cluster starting at the
		# same moment can take it first: try again then
		for try in 1 2 3; do
			venv "$TOP/scripts/fuzz.sh" --in-cluster > "$OUT/cluster.log" 2>&1 && break
			grep -q 'Port conflict' "$OUT/cluster.log" || break
			sleep $try
		done
		if [ "$(cat "$OUT/sqlsmith.status" 2>/dev/null)" != 0 ]; then
			tail -n 20 "$OUT/cluster.log" "$OUT/setup.log" "$OUT/sqlsmith.err" 2>/dev/null | sed 's/^/# /'
			failed=1; echo "not ok $n - sqlsmith: the run did not complete (logs in $OUT)"
			continue
		fi
		secs=$(($(date +%s) - started))
		if perl "$TOP/scripts/fuzzlog.pl" "$TOP/src" "$OUT/server.log" "$OUT/sqlsmith.err" \
			> "$OUT/report" && [ "$(cat "$OUT/alive")" = "server up" ]; then
			cat "$OUT/report"
			echo "ok $n - sqlsmith: $FUZZ_QUERIES queries (seed $FUZZ_SEED, $FUZZ_LEADS leads, parallel $FUZZ_PARALLEL, ${secs}s), no crash, no XX000 in leadmgmt code"
		else
			cat "$OUT/report" "$OUT/alive"
			failed=1; echo "not ok $n - sqlsmith (seed $FUZZ_SEED; server log in $OUT/server.log)"
		fi
		;;
	*)
		echo "usage: $0 [libfuzzer] [sqlsmith]" >&2; exit 2 ;;
	esac
done
echo "1..$n"
exit $failed
