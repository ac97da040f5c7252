#!/bin/sh
# The suite "dist" of make test: the PGXN archive builds and installs
# outside the checkout with plain PGXS `make && make install`, and the
# installed files give a working CREATE EXTENSION.
#
# The archive is $LM_DIST_ZIP if set (scripts/matrix.sh builds it outside
# the roots, which have no git), else `make dist` of this checkout.  Prints
# "ok N - ..." / "not ok N - ..." lines; "# skip" and nothing else where
# there is neither.  Assumes scripts/bootstrap.sh ran (zip, unzip).
set -u
. "$(dirname "$0")/env.sh"
cd "$TOP"
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=1; echo "not ok $n - $*"; }
finish() { echo "1..$n"; exit $failed; }

work=$(mktemp -d /tmp/leadmgmt-dist.XXXXXX)
trap 'rm -rf "$work"' EXIT
# the cluster's server (another user) reads the installed files
chmod 755 "$work"

zip=${LM_DIST_ZIP:-}
if [ -z "$zip" ]; then
	if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
		echo "# skip: not a git checkout and no LM_DIST_ZIP"
		finish
	fi
	if zip=$(scripts/dist.sh "$work" 2> "$work/dist.err"); then
		ok "make dist: $(basename "$zip") from git archive HEAD"
	else
		sed 's/^/# /' "$work/dist.err"
		notok "make dist"
		finish
	fi
fi
if perl scripts/metacheck.pl > "$work/meta.log" 2>&1; then
	ok "$(cat "$work/meta.log")"
else
	sed 's/^/# /' "$work/meta.log"
	notok "META.json"
fi

# the archive's top directory, leadmgmt-<version>
name=$(unzip -Z1 "$zip" 2>/dev/null | head -1 | cut -d/ -f1)
(cd "$work" && unzip -q "$zip") || { notok "unzip $zip"; finish; }
src=$work/$name
if [ ! -f "$src/META.json" ] || [ -e "$src/.git" ] || [ -e "$src/.ci" ]; then
	notok "$name/ holds META.json and no .git or .ci"
else
	ok "$name/: $(find "$src" -type f | wc -l) files, META.json, no .git or .ci"
fi
if (cd "$src" && make PG_CONFIG="$PG_CONFIG" && make install PG_CONFIG="$PG_CONFIG" DESTDIR="$work/root") > "$work/build.log" 2>&1; then
	ok "make && make install in $name outside the checkout (PostgreSQL $PG_MAJOR, DESTDIR)"
else
	tail -20 "$work/build.log" | sed 's/^/# /'
	notok "make && make install in $name"
	finish
fi
chmod -R a+rX "$work/root"

# a throwaway cluster loading exactly those installed files
STAGE=$work/root
if venv sh -c "psql -X -q -At -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION leadmgmt' \
	-c \"SELECT extversion FROM pg_extension WHERE extname = 'leadmgmt'\" \
	-c \"SELECT leadmgmt.normalize_company('Acme, Inc.')\" > $work/create.out" > "$work/create.log" 2>&1 &&
	[ "$(sed -n 1p "$work/create.out")" = "${name#leadmgmt-}" ] &&
	[ "$(sed -n 2p "$work/create.out")" = acme ]; then
	ok "CREATE EXTENSION leadmgmt ${name#leadmgmt-} from the installed archive build (C functions load)"
else
	tail -20 "$work/create.log" "$work/create.out" | sed 's/^/# /'
	notok "CREATE EXTENSION from the installed archive build"
fi
finish
