#!/bin/sh
# make demo: bootstrap, build, throwaway cluster, demo data, the funnel.
set -eu
. "$(dirname "$0")/env.sh"
"$TOP/scripts/bootstrap.sh"
"$TOP/scripts/build.sh"
venv sh -c "psql -X -q -d postgres -v leads=${DEMO_LEADS:-3000} -f '$TOP/demo/demo.sql'"
