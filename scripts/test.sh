#!/bin/sh
# make test: bootstrap, build with -Werror, run every suite, count.
#
# Suites: core (src/core unit tests + bounded fuzz under ASan/UBSan),
# dist (the PGXN archive builds, installs and loads outside the checkout),
# fuzz (a short scripts/fuzz.sh: libFuzzer on src/core, sqlsmith on the
# extension), hardening (SPI strings), release (make check-release),
# regress (pg_regress), isolation (isolation specs), tap (prove, as an
# unprivileged OS user because initdb refuses root), torture (a short
# test/torture/run.sh: TORTURE_SECONDS, default 30).  LM_SUITES selects a
# subset; REGRESS=..., ISOLATION=... and TAP_TESTS_GLOB=... narrow a suite.
# The last line is "N passed, N failed"; the exit status is non-zero on any
# failure.
set -u
# bootstrap first: it installs the PostgreSQL that env.sh then picks (the one
# PG_CONFIG names, else the newest installed, else the distribution's)
"$(dirname "$0")/bootstrap.sh" || exit 1
. "$(dirname "$0")/env.sh"
cd "$TOP"
echo "== PostgreSQL $PG_MAJOR ($PG_CONFIG)"

suites=${LM_SUITES:-core fuzz hardening release dist regress isolation doc tap torture}
LOG=$TOP/build/test-logs
rm -rf "$LOG"
mkdir -p "$LOG"
passed=0
failed=0

# one passed / failed test in pg_regress's output, either format
PGR_OK='\.\.\. ok|^ok [0-9]+ +[-+] '
PGR_FAIL='\.\.\. (FAILED|failed)|^not ok [0-9]+ +[-+] '

count() { # count <suite> <passed> <failed>
	echo "== $1: $2 passed, $3 failed"
	passed=$((passed + $2))
	failed=$((failed + $3))
}

echo "== build (-Werror)"
if ! "$TOP/scripts/build.sh" -Werror; then
	count build 0 1
	echo "$passed passed, $failed failed"
	exit 1
fi

for suite in $suites; do
	case $suite in
	core)
		echo "== core unit tests and fuzz (ASan + UBSan)"
		make -s -C src/core/testing check > "$LOG/core.log" 2>&1
		status=$?
		grep -E '^(not )?ok ' "$LOG/core.log" | grep '^not ok' || true
		p=$(grep -cE '^ok ' "$LOG/core.log")
		f=$(grep -cE '^not ok ' "$LOG/core.log")
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -20 "$LOG/core.log"
			f=1
		fi
		count core "$p" "$f"
		;;
	fuzz)
		echo "== fuzz (libFuzzer on src/core, sqlsmith on the extension; short)"
		# the two in parallel: the cluster's setup waits on initdb, not the CPU
		FUZZ_QUERIES=${FUZZ_QUERIES:-500} FUZZ_LEADS=${FUZZ_LEADS:-300} FUZZ_SEED=${FUZZ_SEED:-1} FUZZ_PARALLEL=${FUZZ_PARALLEL:-0} \
			"$TOP/scripts/fuzz.sh" sqlsmith > "$LOG/fuzz-sqlsmith.log" 2>&1 &
		smith=$!
		FUZZ_SECONDS=${FUZZ_SECONDS:-2} "$TOP/scripts/fuzz.sh" libfuzzer > "$LOG/fuzz-libfuzzer.log" 2>&1
		status=$?
		wait $smith || status=1
		cat "$LOG/fuzz-libfuzzer.log" "$LOG/fuzz-sqlsmith.log" | grep -vE '^1\.\.' | sed 's/^/   /'
		p=$(cat "$LOG/fuzz-libfuzzer.log" "$LOG/fuzz-sqlsmith.log" | grep -cE '^ok ')
		f=$(cat "$LOG/fuzz-libfuzzer.log" "$LOG/fuzz-sqlsmith.log" | grep -cE '^not ok ')
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			f=1
		fi
		count fuzz "$p" "$f"
		;;
	dist)
		echo "== dist (PGXN archive built, installed and loaded outside the checkout)"
		"$TOP/scripts/disttest.sh" > "$LOG/dist.log" 2>&1
		status=$?
		grep -E '^(not )?ok |^# skip' "$LOG/dist.log" | sed 's/^/   /'
		p=$(grep -cE '^ok ' "$LOG/dist.log")
		f=$(grep -cE '^not ok ' "$LOG/dist.log")
		[ "$f" -ne 0 ] && grep -E '^# ' "$LOG/dist.log" | head -40
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -20 "$LOG/dist.log"
			f=1
		fi
		count dist "$p" "$f"
		;;
	regress|isolation)
		echo "== $suite"
		mkdir -p "$TOP/test/out"
		if [ $suite = regress ]; then
			target=installcheck; vars="ISOLATION="
		else
			target=installcheck; vars="REGRESS="
		fi
		if [ $suite = isolation ] && [ -z "$(ls test/isolation/specs/*.spec 2>/dev/null)" ]; then
			count $suite 0 0; continue
		fi
		venv make -s PG_CONFIG="$PG_CONFIG" $target $vars ${REGRESS:+REGRESS="$REGRESS"} \
			${ISOLATION:+ISOLATION="$ISOLATION"} > "$LOG/$suite.log" 2>&1
		status=$?
		# pg_regress prints "test name ... ok" before 16, TAP-like
		# "ok 1 - name  12 ms" / "not ok 2 - name" (+ in a parallel group) since
		grep -E "$PGR_OK|$PGR_FAIL" "$LOG/$suite.log" | sed 's/^/   /'
		p=$(grep -cE "$PGR_OK" "$LOG/$suite.log")
		f=$(grep -cE "$PGR_FAIL" "$LOG/$suite.log")
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -30 "$LOG/$suite.log"
			f=1
		fi
		[ "$f" -ne 0 ] && [ -f test/out/regression.diffs ] && head -100 test/out/regression.diffs
		[ "$f" -ne 0 ] && [ -f test/out/isolation/regression.diffs ] && head -100 test/out/isolation/regression.diffs
		count $suite "$p" "$f"
		;;
	doc)
		echo "== doc examples"
		rm -rf "$TOP/build/doctest"
		perl "$TOP/scripts/doctest.pl" "$TOP/build/doctest" $(ls doc/*.md)
		venv sh "$TOP/scripts/doccheck.sh" "$TOP/build/doctest" > "$LOG/doc.log" 2>&1
		status=$?
		grep -E '^(not )?ok - ' "$LOG/doc.log" | sed 's/^/   /'
		p=$(grep -cE '^ok - ' "$LOG/doc.log")
		f=$(grep -cE '^not ok - ' "$LOG/doc.log")
		[ "$f" -ne 0 ] && grep -vE '^(ok|not ok) - ' "$LOG/doc.log" | head -80
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -30 "$LOG/doc.log"
			f=1
		fi
		count doc "$p" "$f"
		;;
	hardening)
		echo "== hardening (SPI strings in src/*.c)"
		if perl "$TOP/scripts/hardening.pl" > "$LOG/hardening.log" 2>&1; then
			count hardening 1 0
		else
			cat "$LOG/hardening.log"
			count hardening 0 1
		fi
		;;
	release)
		echo "== release (frozen scripts and update paths)"
		if make -s PG_CONFIG="$PG_CONFIG" check-release > "$LOG/release.log" 2>&1; then
			count release 1 0
		else
			cat "$LOG/release.log"
			count release 0 1
		fi
		;;
	tap)
		echo "== tap"
		"$TOP/scripts/tap.sh" > "$LOG/tap.log" 2>&1
		status=$?
		grep -E '^t/|^not ok|^# +Failed' "$LOG/tap.log" | sed 's/^/   /'
		p=$(grep -cE '^ *ok [0-9]' "$LOG/tap.log")
		f=$(grep -cE '^ *not ok [0-9]' "$LOG/tap.log")
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -30 "$LOG/tap.log"
			f=1
		fi
		count tap "$p" "$f"
		;;
	torture)
		echo "== torture (concurrent load, kills and restarts; ${TORTURE_SECONDS:-30} s)"
		TORTURE_SECONDS=${TORTURE_SECONDS:-30} TORTURE_ROUND=${TORTURE_ROUND:-10} \
			"$TOP/test/torture/run.sh" > "$LOG/torture.log" 2>&1
		status=$?
		grep -E '^(not )?ok - |^# (round|throughput|torture|server log errors)' "$LOG/torture.log" | sed 's/^/   /'
		p=$(grep -cE '^ok - ' "$LOG/torture.log")
		f=$(grep -cE '^not ok - ' "$LOG/torture.log")
		if [ $status -ne 0 ] && [ "$f" -eq 0 ]; then
			tail -30 "$LOG/torture.log"
			f=1
		fi
		count torture "$p" "$f"
		;;
	*)
		echo "unknown suite $suite" >&2; exit 2 ;;
	esac
done

echo "logs: $LOG"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
