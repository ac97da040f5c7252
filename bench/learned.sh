#!/bin/sh
# bench/learned.sh: training time of the learned-scoring logistic regression
# (issue 7) on 1 M rows x 20 features, l2 = 1, against, in the same run:
#   - the plain-SQL way of one Newton step (gradient and Hessian as 231 + 21
#     sum() aggregates) vs. one leadmgmt.logreg_step pass;
#   - scikit-learn's LogisticRegression (C = 1) on the same rows, when
#     Debian's python3-sklearn is installed (fit time only; the CSV export
#     and load are not timed).
# Run by bench/run.sh inside a throwaway cluster (PGHOST etc. in the
# environment).  LEARNED_ROWS overrides the row count.  Prints absolute
# times and ratios; gates nothing.
set -eu
ROWS=${LEARNED_ROWS:-1000000}
P=20
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
sql() { psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
timed() { # timed <settings> <query>: seconds
	t0=$(now)
	sql -c "$1" -c "$2" > "$TMP/out"
	t1=$(now)
	elapsed "$t0" "$t1"
}

sql -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS leadmgmt CASCADE" -c "CREATE EXTENSION leadmgmt"
sql -c "DROP TABLE IF EXISTS bench_lr"
echo "generating $ROWS rows x $P features"
sql <<SQL
SELECT setseed(0.42);
CREATE TABLE bench_lr AS
SELECT i, x, random() < 1 / (1 + exp(-(0.2 + (SELECT sum(v * ((o % 5) - 2) * 0.5)
                                               FROM unnest(x) WITH ORDINALITY AS u(v, o))))) AS y
  FROM (SELECT i, ARRAY(SELECT random() * 2 - 1 FROM generate_series(1, $P) WHERE i > 0) AS x
          FROM generate_series(1, $ROWS) AS i) g;
VACUUM ANALYZE bench_lr;
SQL

serial="SET max_parallel_workers_per_gather = 0"
par="SET max_parallel_workers_per_gather = 2"

t_scan=$(timed "$serial" "SELECT count(*), sum(cardinality(x)) FROM bench_lr")
t_logreg=$(timed "$serial" "SELECT leadmgmt.logreg(y, x, 1) FROM bench_lr")
cp "$TMP/out" "$TMP/coef"
t_logreg_par=$(timed "$par" "SELECT leadmgmt.logreg(y, x, 1) FROM bench_lr")
t_train=$(timed "$par" "SELECT (leadmgmt.logreg_train('bench_lr', 'y', 'x', 1)).iterations")
passes=$(cat "$TMP/out")

# one Newton step at a fixed point: the C aggregate vs plain SQL sums
beta="{0.1,0.05,-0.05,0.1,0.05,-0.05,0.1,0.05,-0.05,0.1,0.05,-0.05,0.1,0.05,-0.05,0.1,0.05,-0.05,0.1,0.05,-0.05}"
t_step=$(timed "$serial" "SELECT leadmgmt.logreg_step(y, x, '$beta') FROM bench_lr")
# plain SQL: unpack the array once, compute mu, w, r once per row (OFFSET 0
# keeps the planner from repeating the expressions in every sum)
cols=$(awk -v p=$P 'BEGIN { for (j = 1; j <= p; j++) printf "%sx[%d] AS x%d", (j > 1 ? ", " : ""), j, j }')
eta=$(awk -v p=$P -v b="$beta" 'BEGIN { gsub(/[{}]/, "", b); split(b, c, ",");
	s = c[1]; for (j = 1; j <= p; j++) s = s " + x" j " * " c[j + 1]; print s }')
sums=$(awk -v p=$P 'BEGIN { s = "sum(r)"; for (j = 1; j <= p; j++) s = s ", sum(r * x" j ")";
	s = s ", sum(w)"; for (a = 1; a <= p; a++) s = s ", sum(w * x" a ")";
	for (a = 1; a <= p; a++) for (b = a; b <= p; b++) s = s ", sum(w * x" a " * x" b ")"; print s }')
t_sql_step=$(timed "$serial" "SELECT $sums FROM (SELECT *, mu * (1 - mu) AS w, mu - y::int AS r
	FROM (SELECT *, 1 / (1 + exp(-($eta))) AS mu
	        FROM (SELECT y, $cols FROM bench_lr OFFSET 0) u OFFSET 0) s OFFSET 0) t")

echo "rows $ROWS, features $P, l2 = 1"
echo "scan floor (count, sum(cardinality(x)))       ${t_scan} s"
echo "leadmgmt.logreg, serial                       ${t_logreg} s"
echo "leadmgmt.logreg, 2 workers                    ${t_logreg_par} s"
echo "leadmgmt.logreg_train (driver), 2 workers     ${t_train} s ($passes passes)"
echo "one Newton step: leadmgmt.logreg_step         ${t_step} s"
echo "one Newton step: plain SQL (252 sums)         ${t_sql_step} s"
echo "ratio plain SQL step / logreg_step            $(ratio "$t_sql_step" "$t_step")"

if /usr/bin/python3 -c 'import sklearn, pandas' 2>/dev/null; then
	sql -c "COPY (SELECT y::int, array_to_string(x, ',') FROM bench_lr ORDER BY i) TO STDOUT" \
		| tr '\t' ',' > "$TMP/data.csv"
	/usr/bin/python3 - "$TMP/data.csv" "$TMP/coef" "$t_logreg" <<'PY'
import sys, time, warnings
import numpy as np, pandas as pd, sklearn
from sklearn.linear_model import LogisticRegression
d = pd.read_csv(sys.argv[1], header=None).to_numpy()
y, X = d[:, 0], d[:, 1:]
t_ours = float(sys.argv[3])
ours = np.array([float(v) for v in open(sys.argv[2]).read().strip().strip("{}").split(",")])
warnings.simplefilter("ignore")
for solver, tol in (("newton-cg", 1e-10), ("lbfgs", 1e-4)):
    t0 = time.perf_counter()
    m = LogisticRegression(C=1.0, solver=solver, tol=tol, max_iter=1000).fit(X, y)
    t = time.perf_counter() - t0
    coef = np.concatenate([m.intercept_, m.coef_[0]])
    print(f"sklearn {sklearn.__version__} {solver} tol {tol:g}: {t:.2f} s, "
          f"max |coef - leadmgmt.logreg| {np.abs(coef - ours).max():.1e}, "
          f"ratio leadmgmt.logreg serial / sklearn {t_ours / t:.2f}")
PY
else
	echo "sklearn: not installed (apt-get install python3-sklearn python3-pandas) - skipped"
fi
sql -c "DROP TABLE bench_lr"
