"""Metrics of many bootstrap resamples at once: each function takes rows (S, N) of labels,
predictions or scores, one row per resample, and returns (S,) values with scikit-learn's
definition of the metric (tests/test_eval_metrics.py compares them row by row).

One scikit-learn call per resample took ~1.6 ms (AUC): 1000 resamples of a dozen metrics cost
more than a small model's evaluation; these take a fraction of a second together.
"""

import numpy as np


def interval(x):
    """The 95% percentile interval of the finite values in `x`; None when there are none."""
    x = x[np.isfinite(x)]
    return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if len(x) else None


def ranking_rows(is_positive, scores):
    """(ROC AUC, average precision) of each row from one sort of its scores.

    AUC: the Mann-Whitney U statistic with average ranks for ties (what roc_auc_score computes
    from the ROC curve); NaN for a row without both classes. Average precision
    (average_precision_score): the sum over the distinct score thresholds of the recall gained
    there times the precision there; NaN for a row without positives."""
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, 1)
    pos = np.take_along_axis(is_positive, order, 1)
    n = s.shape[1]
    j = np.broadcast_to(np.arange(n), s.shape)
    new_run = np.ones(s.shape, bool)
    new_run[:, 1:] = s[:, 1:] != s[:, :-1]
    run_end = np.ones(s.shape, bool)
    run_end[:, :-1] = new_run[:, 1:]
    first = np.maximum.accumulate(np.where(new_run, j, 0), axis=1)
    last = np.minimum.accumulate(np.where(run_end, j, n - 1)[:, ::-1], axis=1)[:, ::-1]
    n_pos = pos.sum(1)
    n_neg = n - n_pos
    u = (((first + last) / 2 + 1) * pos).sum(1) - n_pos * (n_pos + 1) / 2
    # Average precision walks the scores downwards: a tied run counts once, at its lowest
    # position (`first` ascending); tp there is the positives at or above it.
    above = n_pos[:, None] - np.cumsum(pos, axis=1) + pos  # positives in positions >= j
    tp_run = np.take_along_axis(above, first, 1)  # positives scoring >= this run's score
    tp_next = np.where(run_end, np.roll(above, -1, axis=1), 0)
    tp_next[:, -1] = 0
    gain = np.where(run_end, tp_run - tp_next, 0)
    precision = tp_run / (n - first)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
        ap = np.where(n_pos > 0, (gain * precision).sum(1) / n_pos, np.nan)
    return auc, ap


def binary_auc_rows(is_positive, scores):
    return ranking_rows(is_positive, scores)[0]


def binary_ap_rows(is_positive, scores):
    return ranking_rows(is_positive, scores)[1]


def one_vs_rest_rows(labels, probs, num_classes, positive):
    """(ROC AUC, PR AUC) rows of the positive class for two classes, else their macro
    averages over classes one-vs-rest (NaN where a class is absent, as the point values)."""
    if num_classes == 2:
        return ranking_rows(labels == positive, probs[..., positive])
    both = [ranking_rows(labels == c, probs[..., c]) for c in range(num_classes)]
    return tuple(np.mean([b[i] for b in both], axis=0) for i in (0, 1))


def auc_rows(labels, probs, num_classes, positive):
    return one_vs_rest_rows(labels, probs, num_classes, positive)[0]


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
