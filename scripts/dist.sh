#!/bin/sh
# make dist: leadmgmt-<version>.zip for PGXN, from `git archive` of HEAD
# (committed files only; .gitattributes export-ignore leaves out what a
# PGXN user does not need), with a leadmgmt-<version>/ prefix.
#   scripts/dist.sh [OUTDIR]     (default: the top of the checkout)
# META.json must be valid for the PGXN meta spec and agree with the
# Makefile's EXTVERSION and the control file (scripts/metacheck.pl).
set -eu
TOP=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$TOP}
cd "$TOP"
git rev-parse --verify -q HEAD >/dev/null || { echo "dist: not a git checkout" >&2; exit 1; }
perl scripts/metacheck.pl >&2
version=$(sed -n 's/^EXTVERSION *= *//p' Makefile)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
	echo "dist: note: uncommitted changes are not in the archive (git archive HEAD)" >&2
fi
mkdir -p "$out"
zip=$out/leadmgmt-$version.zip
rm -f "$zip"
git archive --format=zip --prefix="leadmgmt-$version/" -o "$zip" HEAD
echo "$zip"
