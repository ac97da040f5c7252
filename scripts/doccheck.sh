#!/bin/sh
# Run inside a throwaway cluster (PGHOST etc. set): check every doc page's
# examples.  Prints "ok - doc/<page>.md" or "not ok - ..." plus a diff.
set -u
dir=${1:?usage: doccheck.sh DIR}
status=0
for sql in "$dir"/*.sql; do
	[ -e "$sql" ] || continue
	page=$(basename "$sql" .sql)
	psql -X -q -d postgres < "$sql" > "$dir/$page.out" 2>&1
	if diff -u "$dir/$page.expected" "$dir/$page.out" > "$dir/$page.diff"; then
		echo "ok - doc/$page.md"
	else
		echo "not ok - doc/$page.md"
		cat "$dir/$page.diff"
		status=1
	fi
done
exit $status
