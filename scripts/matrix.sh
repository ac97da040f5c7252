#!/bin/sh
# make test-matrix: the whole of `make test` on every supported PostgreSQL
# major version, each in a Debian root of the release that ships it.
#
#   scripts/matrix.sh [test]   make test in each root (default)
#   scripts/matrix.sh deb      build the Debian packages in each root and
#                              test them installed (scripts/deb.sh)
#   scripts/matrix.sh shell S  a shell in the root of suite S (debugging)
#
# LM_MATRIX     "suite:major ..." (default: bookworm:15 trixie:17 forky:18)
# LM_MATRIX_CACHE  where the roots live, outside the checkout
#               (default /var/cache/leadmgmt-matrix); a root is built once
#               with debootstrap from the Debian mirror this machine's apt
#               uses (LM_MIRROR to override) and reused; delete it to start
#               over.
# LM_SUITES, REGRESS, ISOLATION, TAP_TESTS_GLOB and FUZZ_* are passed on.
#
# Each run copies the working tree (tracked and untracked, not ignored
# files) to /srv/leadmgmt in the root and runs there as root: first
# scripts/bootstrap.sh with the network (it installs that root's
# postgresql-NN, server-dev, clang, ... the first time), then the tests in
# private mount, PID and network namespaces (their own /proc, /dev/shm and
# loopback: no port or shared-memory clash with servers outside, and no
# process outlives the run).  Prints one line per version and a total
# "N passed, N failed"; logs in build/matrix/.  Needs root, debootstrap and
# unshare (util-linux).
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${LM_MATRIX_CACHE:-/var/cache/leadmgmt-matrix}
MATRIX=${LM_MATRIX:-bookworm:15 trixie:17 forky:18}
LOGDIR=$TOP/build/matrix
PASSON="LM_SUITES REGRESS ISOLATION TAP_TESTS_GLOB FUZZ_SECONDS FUZZ_QUERIES FUZZ_LEADS FUZZ_SEED FUZZ_PARALLEL FUZZ_RUNS LM_DIST_ZIP"

DIST_ZIP=""       # the PGXN archive handed to each root (mode test)
LM_DIST_ZIP=""

die() { echo "matrix: $*" >&2; exit 1; }

# the Debian archive this machine's apt uses (deb822 URIs: or one-line deb)
mirror() {
	if [ -n "${LM_MIRROR:-}" ]; then echo "$LM_MIRROR"; return; fi
	m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -n -e 's|^URIs:[[:space:]]*\(https\{0,1\}://[^[:space:]]*/debian\)/\{0,1\}\([[:space:]].*\)\{0,1\}$|\1|p' \
			-e 's|^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\(https\{0,1\}://[^[:space:]]*/debian\)/\{0,1\}[[:space:]].*|\2|p' |
		head -1)
	echo "${m:-http://deb.debian.org/debian}"
}

# root SUITE: build the root of SUITE once (debootstrap, minimal base)
root() {
	suite=$1
	r=$CACHE/$suite
	[ -f "$r/.leadmgmt-root" ] && return 0
	if ! command -v debootstrap >/dev/null 2>&1; then
		echo "matrix: installing debootstrap"
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap; } >"$CACHE/debootstrap-install.log" 2>&1 ||
			{ tail -5 "$CACHE/debootstrap-install.log" >&2; die "cannot install debootstrap (apt-get install debootstrap)"; }
	fi
	m=$(mirror)
	mkdir -p "$CACHE"
	# say so plainly when the mirror cannot be reached, rather than after
	# a page of debootstrap output
	if ! /usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "$m/dists/$suite/Release" "$CACHE/$suite.Release" >"$CACHE/$suite.probe.log" 2>&1; then
		cat "$CACHE/$suite.probe.log" >&2
		die "cannot reach the Debian mirror $m for $suite (set LM_MIRROR to another)"
	fi
	rm -f "$CACHE/$suite.Release"
	# a suite this debootstrap does not know yet (testing) is built like sid
	script=""
	[ -f "/usr/share/debootstrap/scripts/$suite" ] || script=/usr/share/debootstrap/scripts/sid
	echo "matrix: building the $suite root in $r (debootstrap from $m)"
	rm -rf "$r.tmp"
	if ! debootstrap --variant=minbase "$suite" "$r.tmp" "$m" $script >"$CACHE/$suite.debootstrap.log" 2>&1; then
		tail -20 "$CACHE/$suite.debootstrap.log" >&2
		die "debootstrap of $suite failed (log: $CACHE/$suite.debootstrap.log)"
	fi
	# testing's Release has a short Valid-Until that a cached root outlives
	printf '%s\n' 'Acquire::Check-Valid-Until "false";' 'Acquire::Check-Date "false";' \
		> "$r.tmp/etc/apt/apt.conf.d/90leadmgmt-matrix"
	# packages start no service, and postgresql-NN creates no main cluster
	printf '#!/bin/sh\nexit 101\n' > "$r.tmp/usr/sbin/policy-rc.d"
	chmod 755 "$r.tmp/usr/sbin/policy-rc.d"
	mkdir -p "$r.tmp/etc/postgresql-common/createcluster.d"
	echo 'create_main_cluster = false' > "$r.tmp/etc/postgresql-common/createcluster.d/leadmgmt-matrix.conf"
	mv "$r.tmp" "$r"
	touch "$r/.leadmgmt-root"
}

# copy SUITE: the working tree to /srv/leadmgmt in the root, afresh
copy() {
	dst=$CACHE/$1/srv/leadmgmt
	rm -rf "$dst"
	mkdir -p "$dst"
	if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
		(cd "$TOP" && git ls-files -z --cached --others --exclude-standard |
			tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$dst" -xf -
	else
		(cd "$TOP" && tar --exclude=./build -cf - .) | tar -C "$dst" -xf -
	fi
	chmod 755 "$dst"
	# the PGXN archive (make dist needs git, which the roots lack): the
	# suite dist of make test takes it from LM_DIST_ZIP
	if [ -n "$DIST_ZIP" ]; then
		cp "$DIST_ZIP" "$dst/build-dist.zip"
	fi
}

# inroot SUITE net|nonet COMMAND: run COMMAND (sh -c) as root in the root
inroot() {
	r=$CACHE/$1 net=$2 cmd=$3
	cp /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
	envs="PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 CI=${CI:-}"
	for v in $PASSON; do
		eval "val=\${$v:-}"
		[ -n "$val" ] && envs="$envs $v='$val'"
	done
	nsopt="--mount --pid --fork --mount-proc=$r/proc"
	lo=":"
	if [ "$net" = nonet ]; then nsopt="$nsopt --net"; lo="ip link set lo up"; fi
	unshare $nsopt sh -c "
		set -e
		$lo
		mount --bind /dev '$r/dev'
		mount --bind /dev/pts '$r/dev/pts'
		mount -t tmpfs -o mode=1777 shm '$r/dev/shm'
		exec chroot '$r' env -i $envs sh -c '$cmd'"
}

# the major version SUITE's root runs, from LM_MATRIX
major_of() {
	for e in $MATRIX; do [ "${e%%:*}" = "$1" ] && echo "${e#*:}"; done
}

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, namespaces)"
command -v unshare >/dev/null 2>&1 || die "unshare (util-linux) is missing"
mode=${1:-test}
mkdir -p "$CACHE" "$LOGDIR"
# one matrix run at a time on this machine: the roots are shared
exec 9>"$CACHE/.lock"
flock 9

case $mode in
shell)
	suite=${2:?usage: $0 shell SUITE}
	root "$suite" && copy "$suite" || exit 1
	inroot "$suite" net "cd /srv/leadmgmt && exec bash -i"
	exit $?
	;;
test|deb) ;;
*) die "usage: $0 [test|deb|shell SUITE]" ;;
esac

if [ "$mode" = test ] && git -C "$TOP" rev-parse --verify -q HEAD >/dev/null 2>&1; then
	rm -rf "$LOGDIR/dist"
	if DIST_ZIP=$("$TOP/scripts/dist.sh" "$LOGDIR/dist" 2>"$LOGDIR/dist.log"); then
		LM_DIST_ZIP=/srv/leadmgmt/build-dist.zip
	else
		cat "$LOGDIR/dist.log" >&2
		DIST_ZIP=""
	fi
fi

passed=0
failed=0
summary=""
for e in $MATRIX; do
	suite=${e%%:*} major=${e#*:}
	log=$LOGDIR/$suite-$mode.log
	start=$(date +%s)
	p=0 f=0
	pgc=/usr/lib/postgresql/$major/bin/pg_config
	# (a subshell: root's die ends this version, not the run)
	if ! (root "$suite") >"$log" 2>&1; then
		sed 's/^/   /' "$log"
		f=1
	else
		copy "$suite"
		# with the network: the root's packages (once), then the tests without
		deps="scripts/bootstrap.sh"
		[ "$mode" = deb ] && deps="$deps && scripts/deb.sh deps"
		if ! inroot "$suite" net "cd /srv/leadmgmt && export PG_CONFIG=$pgc && $deps" >>"$log" 2>&1; then
			tail -20 "$log"
			f=1
		elif [ "$mode" = test ]; then
			inroot "$suite" nonet "cd /srv/leadmgmt && PG_CONFIG=$pgc make test" >>"$log" 2>&1
			status=$?
			last=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
			if [ -n "$last" ]; then
				p=${last%% passed*}
				f=${last#*passed, }; f=${f%% failed}
			fi
			[ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
		else
			inroot "$suite" nonet "cd /srv/leadmgmt && PG_CONFIG=$pgc scripts/deb.sh" >>"$log" 2>&1
			status=$?
			p=$(grep -cE '^ok [0-9]+ ' "$log")
			f=$(grep -cE '^not ok [0-9]+ ' "$log")
			[ "$status" -ne 0 ] && [ "$f" -eq 0 ] && f=1
			mkdir -p "$TOP/build/deb/$suite"
			cp "$CACHE/$suite"/srv/leadmgmt/build/deb/*.deb "$TOP/build/deb/$suite/" 2>/dev/null || true
		fi
	fi
	secs=$(($(date +%s) - start))
	line="$suite/PostgreSQL $major: $p passed, $f failed (${secs}s)"
	echo "$line"
	if [ "$f" -ne 0 ]; then
		# which suites failed, and the log
		grep -E '^== [a-z]+: [0-9]+ passed, [1-9][0-9]* failed|^not ok ' "$log" | sed 's/^/   /'
		echo "   log: $log"
	fi
	summary="$summary$line
"
	passed=$((passed + p))
	failed=$((failed + f))
done

echo "matrix ($mode):"
printf '%s' "$summary" | sed 's/^/  /'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
