"""Metrics of many bootstrap resamples at once: each function takes rows (S, N) of labels,
predictions or scores, one row per resample, and returns (S,) values with scikit-learn's
definition of the metric (tests/test_eval_metrics.py compares them row by row).

One scikit-learn call per resample took ~1.6 ms (AUC): 1000 resamples of a dozen metrics cost
more than a small model's evaluation; these take a fraction of a second together.
"""

import numpy as np
from scipy import stats


def interval(x):
    """The 95% percentile interval of the finite values in `x`; None when there are none."""
    x = x[np.isfinite(x)]
    return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if len(x) else None


def binary_auc_rows(is_positive, scores):
    """ROC AUC of each row, as the Mann-Whitney U statistic with average ranks for ties (what
    roc_auc_score computes from the ROC curve); NaN for a row without both classes."""
    ranks = stats.rankdata(scores, axis=1)
    n_pos = is_positive.sum(1)
    n_neg = is_positive.shape[1] - n_pos
    u = (ranks * is_positive).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def binary_ap_rows(is_positive, scores):
    """Average precision of each row (average_precision_score: sum over the distinct score
    thresholds of the recall gained there times the precision there); NaN without positives."""
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, 1)
    pos = np.take_along_axis(is_positive, order, 1)
    tp = np.cumsum(pos, axis=1)
    # Tied scores form one threshold: only the last position of each run of ties counts.
    end = np.ones_like(pos, dtype=bool)
    end[:, :-1] = s[:, :-1] != s[:, 1:]
    tp_at_ends = np.where(end, tp, 0)
    before = np.zeros_like(tp)
    before[:, 1:] = np.maximum.accumulate(tp_at_ends, axis=1)[:, :-1]
    precision = tp / np.arange(1, tp.shape[1] + 1)
    n_pos = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (end * (tp - before) * precision).sum(1) / n_pos
    return np.where(n_pos > 0, ap, np.nan)


def one_vs_rest_rows(fn, labels, probs, num_classes, positive):
    """fn (binary_auc_rows or binary_ap_rows) of the positive class for two classes, else its
    macro average over classes one-vs-rest (NaN where a class is absent, as the point value)."""
    if num_classes == 2:
        return fn(labels == positive, probs[..., positive])
    return np.mean([fn(labels == c, probs[..., c]) for c in range(num_classes)], axis=0)


def auc_rows(labels, probs, num_classes, positive):
    return one_vs_rest_rows(binary_auc_rows, labels, probs, num_classes, positive)


def balanced_accuracy_rows(labels, preds, num_classes):
    """Balanced accuracy of each row (S, N): the mean recall over the classes present."""
    recalls = []
    for c in range(num_classes):
        of_class = labels == c
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((of_class & (preds == c)).sum(1) / of_class.sum(1))
    return np.nanmean(recalls, axis=0)


def _ratio(a, b):
    return a / np.maximum(b, 1)  # scikit-learn's zero_division=0


def decision_rows(labels, preds, num_classes, positive) -> dict:
    """The metrics of hard predictions for each row: those of the positive class for two
    classes, else macro averages one-vs-rest (as medjax.eval.metrics reports them)."""
    per = {k: [] for k in ("sensitivity", "specificity", "ppv", "npv", "f1")}
    n = labels.shape[1]
    for c in range(num_classes):
        is_c, said_c = labels == c, preds == c
        tp = (is_c & said_c).sum(1)
        fp, fn = said_c.sum(1) - tp, is_c.sum(1) - tp
        tn = n - tp - fp - fn
        per["sensitivity"].append(_ratio(tp, tp + fn))
        per["specificity"].append(_ratio(tn, tn + fp))
        per["ppv"].append(_ratio(tp, tp + fp))
        per["npv"].append(_ratio(tn, tn + fn))
        per["f1"].append(_ratio(2 * tp, 2 * tp + fp + fn))
    pick = (lambda v: v[positive]) if num_classes == 2 else (lambda v: np.mean(v, axis=0))
    return {
        "accuracy": (preds == labels).mean(1),
        "balanced_accuracy": balanced_accuracy_rows(labels, preds, num_classes),
        **{k: pick(v) for k, v in per.items()},
    }


def mean_rows(values, idx):
    """The mean of a per-example quantity (a Brier term, a log loss) over each resample."""
    return values[idx].mean(1)


def ece_rows(bins, confidence, correct, idx, num_bins):
    """ECE of each resample: sum over bins of |correct - confidence| summed in the bin, / N
    (= sum_b n_b / N |accuracy_b - confidence_b|)."""
    s, n = idx.shape
    flat = (np.arange(s)[:, None] * num_bins + bins[idx]).ravel()
    gap = np.bincount(flat, (correct[idx] - confidence[idx]).ravel(), s * num_bins)
    return np.abs(gap.reshape(s, num_bins)).sum(1) / n
