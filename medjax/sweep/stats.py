"""Statistics over seeds: mean, standard deviation, t-interval, paired tests, Holm adjustment.

Seeds of one setting are few (3-5), so intervals use Student's t, not the normal 1.96, and a
difference between two settings is tested on the same seeds (paired), which removes the
seed-to-seed variation the two settings share (same data order, same initial weights).
"""

import math
import warnings

import numpy as np
from scipy import stats

WILCOXON_MIN_N = 6  # below this the exact signed-rank test cannot reach p < 0.05 two-sided


def describe(values) -> dict:
    """n, mean, sd (ddof=1) and the 95% t-interval of the mean; nan where n is too small."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    out = {"n": n, "mean": math.nan, "sd": math.nan, "ci95": (math.nan, math.nan)}
    if n == 0:
        return out
    out["mean"] = float(x.mean())
    if n > 1:
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci95=(out["mean"] - half, out["mean"] + half))
    return out


def paired(a, b) -> dict:
    """Compare paired samples `a` (a setting) with `b` (the reference), both two-sided.

    Returns n, the mean difference a - b, the paired t-test p-value, and the Wilcoxon
    signed-rank p-value or None with the reason in `wilcoxon_note`.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    out = {"n": n, "mean_diff": math.nan, "t_p": math.nan, "wilcoxon_p": None, "wilcoxon_note": ""}
    if n == 0:
        out["wilcoxon_note"] = "no shared seeds"
        return out
    diff = a - b
    out["mean_diff"] = float(diff.mean())
    identical = np.all(diff == 0)
    if n >= 2 and not identical:
        with warnings.catch_warnings():  # zero variance of the differences: p is 0, say so
            warnings.simplefilter("ignore", RuntimeWarning)
            out["t_p"] = float(stats.ttest_rel(a, b).pvalue)
    elif identical:
        out["t_p"] = 1.0
    if n < WILCOXON_MIN_N:
        out["wilcoxon_note"] = f"n={n} too small (needs {WILCOXON_MIN_N})"
    elif identical:
        out["wilcoxon_p"] = 1.0
    else:
        out["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def holm(pvalues) -> list:
    """Holm-Bonferroni adjusted p-values (nan entries stay nan and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(np.isfinite(p))
    out = np.full(len(p), math.nan)
    m, running = len(valid), 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
