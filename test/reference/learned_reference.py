#!/usr/bin/python3
"""Reference fits for test/sql/learned_accuracy.sql.

Independent implementations: scikit-learn's LogisticRegression (newton-cg,
tol 1e-12) for the penalised and unpenalised fits, scipy's trust-exact
minimiser on the penalised objective (sklearn's newton-cg stops at a
gradient of about 1e-6 for l2 = 10; scipy goes to 1e-13), statsmodels'
Logit for the unpenalised fit with standard errors, and
sklearn.metrics.roc_auc_score for the held-out AUC.  Debian 12 packages: apt-get install python3-sklearn
python3-statsmodels; run with /usr/bin/python3.

The data set is computed from the row number i with integer arithmetic and
one comparison, exactly as the SQL test computes it:

    x1 = ((i * 37) % 101) / 10 - 5
    x2 = ((i * 61) % 89) / 8 - 5.5
    x3 = (i % 7) - 3
    x4 = 1 if i % 5 == 0 else 0
    u  = ((i * 7919) % 1000 + 0.5) / 1000
    y  = ln(u / (1 - u)) < 0.3 + 0.8 x1 - 0.5 x2 + 0.2 x3 + 0.7 x4
    for i in 1 .. 400; rows with i % 10 < 3 are the held-out split.

Output: the SQL constants pasted into the test.
"""
import math
import sys
import warnings

import numpy as np
import scipy
import sklearn
import statsmodels
import statsmodels.api as sm
from sklearn.linear_model import LogisticRegression
from scipy.optimize import minimize
from sklearn.metrics import roc_auc_score


def scipy_fit(X, y, l2):
    """Penalised fit by scipy's trust-region Newton (exact Hessian)."""
    Z = np.hstack([np.ones((X.shape[0], 1)), X])
    pen = np.full(Z.shape[1], l2)
    pen[0] = 0

    def f(b):
        eta = Z @ b
        return np.sum(np.logaddexp(0, eta) - y * eta) + 0.5 * np.sum(pen * b * b)

    def g(b):
        mu = 1 / (1 + np.exp(-(Z @ b)))
        return Z.T @ (mu - y) + pen * b

    def h(b):
        mu = 1 / (1 + np.exp(-(Z @ b)))
        return (Z.T * (mu * (1 - mu))) @ Z + np.diag(pen)

    r = minimize(f, np.zeros(Z.shape[1]), jac=g, hess=h, method="trust-exact",
                 options={"gtol": 1e-13, "maxiter": 1000})
    return r.x, np.abs(g(r.x)).max()


def data():
    rows = []
    for i in range(1, 401):
        x1 = ((i * 37) % 101) / 10 - 5
        x2 = ((i * 61) % 89) / 8 - 5.5
        x3 = (i % 7) - 3
        x4 = 1.0 if i % 5 == 0 else 0.0
        u = ((i * 7919) % 1000 + 0.5) / 1000
        eta = 0.3 + 0.8 * x1 - 0.5 * x2 + 0.2 * x3 + 0.7 * x4
        y = 1 if math.log(u / (1 - u)) < eta else 0
        rows.append((i, x1, x2, x3, x4, y))
    return rows


def fmt(v):
    return "{" + ",".join(repr(float(x)) for x in v) + "}"


def main():
    rows = data()
    i = np.array([r[0] for r in rows])
    X = np.array([r[1:5] for r in rows])
    y = np.array([r[5] for r in rows])
    train = i % 10 >= 3
    test = ~train
    print(f"-- sklearn {sklearn.__version__}, statsmodels {statsmodels.__version__}, "
          f"scipy {scipy.__version__}, numpy {np.__version__}")
    print(f"-- rows {len(rows)}, positives {y.sum()}, sum of positive i {i[y == 1].sum()}, "
          f"train rows {train.sum()}, test rows {test.sum()}")

    for l2 in (0.0, 1.0, 10.0):
        if l2 == 0:
            m = LogisticRegression(penalty=None, tol=1e-12, solver="newton-cg", max_iter=10000)
        else:
            m = LogisticRegression(C=1.0 / l2, tol=1e-12, solver="newton-cg", max_iter=10000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.fit(X[train], y[train])
        coef = np.concatenate([m.intercept_, m.coef_[0]])
        auc = roc_auc_score(y[test], m.predict_proba(X[test])[:, 1])
        # first-order optimality of the penalised objective, checked with numpy
        Z = np.hstack([np.ones((train.sum(), 1)), X[train]])
        mu = 1 / (1 + np.exp(-Z @ coef))
        grad = Z.T @ (mu - y[train]) + l2 * np.concatenate([[0.0], coef[1:]])
        print(f"-- sklearn l2 = {l2}: coef {fmt(coef)}")
        print(f"--   held-out AUC {auc!r}; max |gradient| {np.abs(grad).max():.2e}"
              + (f"; sklearn warned: {caught[0].message}" if caught else ""))
        sc, sg = scipy_fit(X[train], y[train], l2)
        sauc = roc_auc_score(y[test], 1 / (1 + np.exp(-(sc[0] + X[test] @ sc[1:]))))
        print(f"-- scipy trust-exact l2 = {l2}: coef {fmt(sc)}")
        print(f"--   held-out AUC {sauc!r}; max |gradient| {sg:.2e}; "
              f"max |sklearn - scipy| {np.abs(sc - coef).max():.2e}")

    res = sm.Logit(y[train], sm.add_constant(X[train])).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    print(f"-- statsmodels Logit: coef {fmt(res.params)}")
    print(f"--   std_err {fmt(res.bse)}")
    print(f"--   p_values {fmt(res.pvalues)}")
    print(f"--   log_likelihood {res.llf!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
