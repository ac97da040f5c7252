#!/bin/sh
# The Debian package of one PostgreSQL version, built and tested installed.
# `make deb` runs this in each root of the version matrix (scripts/matrix.sh);
# on any Debian machine, as root:
#
#   scripts/deb.sh deps   install the build dependencies (needs the mirror)
#   scripts/deb.sh        build postgresql-NN-leadmgmt for PG_CONFIG's
#                         version (debian/, pg_buildext) into build/deb/,
#                         then test the package as Debian's autopkgtest does
#
# The test: no source-built leadmgmt files in the system directories (removed
# if a `make install` left some), dpkg -i of the built package, CREATE
# EXTENSION from the packaged files in a throwaway cluster with nothing
# staged, debian/tests/installcheck (pg_buildext installcheck: the
# regression and isolation suites against the installed package), and
# dpkg --purge leaving no file behind.  Prints "ok N - ..." / "not ok N - ..."
# lines; exits non-zero on a failure.
set -u
. "$(dirname "$0")/env.sh"
cd "$TOP"
[ "$(id -u)" -eq 0 ] || { echo "deb: needs root (dpkg -i)" >&2; exit 1; }

if [ "${1:-}" = deps ]; then
	missing=""
	for p in build-essential debhelper dpkg-dev postgresql-server-dev-all libicu-dev pkg-config make; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	[ -z "$missing" ] && exit 0
	echo "deb: installing$missing"
	apt-get update -q >/dev/null &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
	exit $?
fi

OUT=$TOP/build/deb
version=$(sed -n '1s/^leadmgmt (\([^)]*\)).*/\1/p' debian/changelog)
pkg=postgresql-$PG_MAJOR-leadmgmt
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
finish() { echo "1..$n"; exit $failed; }

rm -rf "$OUT"
mkdir -p "$OUT/src"
# build from a clean copy of the tree (dpkg-buildpackage writes beside it)
src=$OUT/src/leadmgmt-${version%-*}
mkdir -p "$src"
tar -C "$TOP" --exclude=./build --exclude=./.git --exclude=./test/out \
	--exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - . | tar -C "$src" -xf -
# build for exactly this root's version, whatever else is installed
export PG_SUPPORTED_VERSIONS=$PG_MAJOR
if (cd "$src" && pg_buildext updatecontrol && dpkg-buildpackage -us -uc -b) > "$OUT/build.log" 2>&1 &&
	cp "$OUT/src/${pkg}_${version}"_*.deb "$OUT/" 2>/dev/null; then
	deb=$(ls "$OUT/${pkg}_${version}"_*.deb)
	ok "build $(basename "$deb") (dpkg-buildpackage, pg_buildext, PostgreSQL $PG_MAJOR)"
else
	tail -30 "$OUT/build.log" | sed 's/^/# /'
	notok "build $pkg $version"
	finish
fi

# the package's own files only: none left by a source build
sharedir=$("$PG_CONFIG" --sharedir)
pkglibdir=$("$PG_CONFIG" --pkglibdir)
dpkg --purge "$pkg" >/dev/null 2>&1
if ls "$sharedir"/extension/leadmgmt* "$pkglibdir"/leadmgmt.so >/dev/null 2>&1; then
	echo "# removing a source-built leadmgmt from $sharedir and $pkglibdir"
	rm -f "$sharedir"/extension/leadmgmt* "$pkglibdir"/leadmgmt.so
	rm -rf "$pkglibdir"/bitcode/leadmgmt "$pkglibdir"/bitcode/leadmgmt.index.bc
fi

if dpkg -i "$deb" > "$OUT/install.log" 2>&1 &&
	dpkg -L "$pkg" | grep -q "^$sharedir/extension/leadmgmt.control$" &&
	dpkg -L "$pkg" | grep -q "^$pkglibdir/leadmgmt.so$"; then
	ok "dpkg -i $(basename "$deb"): control file, scripts and module in the system directories"
else
	sed 's/^/# /' "$OUT/install.log"
	notok "dpkg -i $(basename "$deb")"
	finish
fi

# CREATE EXTENSION from the packaged files, nothing staged
cat > "$OUT/create.sql" <<'SQL'
SELECT name || ' ' || default_version FROM pg_available_extensions WHERE name = 'leadmgmt';
CREATE EXTENSION leadmgmt;
SELECT extversion FROM pg_extension WHERE extname = 'leadmgmt';
SELECT leadmgmt.normalize_company('Acme, Inc.');
SQL
if pg_virtualenv -t -v "$PG_MAJOR" -i '--encoding=UTF8 --locale=C.UTF-8' \
	sh -c "psql -X -q -At -v ON_ERROR_STOP=1 -f $OUT/create.sql > $OUT/create.out" > "$OUT/create.log" 2>&1 &&
	[ "$(sed -n 1p "$OUT/create.out")" = "leadmgmt ${version%-*}" ] &&
	[ "$(sed -n 2p "$OUT/create.out")" = "${version%-*}" ] &&
	[ "$(sed -n 3p "$OUT/create.out")" = acme ]; then
	ok "CREATE EXTENSION leadmgmt ${version%-*} from the package (listed in pg_available_extensions, C functions load)"
else
	cat "$OUT/create.log" "$OUT/create.out" | sed 's/^/# /'
	notok "CREATE EXTENSION from the package"
fi

# the installcheck suite against the package, as autopkgtest runs it
if (cd "$src" && debian/tests/installcheck) > "$OUT/installcheck.log" 2>&1; then
	tests=$(grep -cE '\.\.\. ok|^ok [0-9]+ +[-+] ' "$OUT/installcheck.log")
	ok "debian/tests/installcheck (pg_buildext installcheck): $tests regress and isolation tests passed"
else
	grep -E '\.\.\. (FAILED|failed)|^not ok ' "$OUT/installcheck.log" | sed 's/^/# /'
	tail -40 "$OUT/installcheck.log" | sed 's/^/# /'
	notok "debian/tests/installcheck"
fi

if dpkg --purge "$pkg" > "$OUT/purge.log" 2>&1 &&
	! ls "$sharedir"/extension/leadmgmt* "$pkglibdir"/leadmgmt.so >/dev/null 2>&1; then
	ok "dpkg --purge $pkg leaves no leadmgmt file"
else
	sed 's/^/# /' "$OUT/purge.log"
	notok "dpkg --purge $pkg"
fi
finish
