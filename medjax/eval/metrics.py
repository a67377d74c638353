"""Classification metrics with scikit-learn's definitions and 95% bootstrap intervals.

Binary tasks report sensitivity, specificity and F1 for `positive_class` (the disease class);
multi-class tasks report their macro averages over classes, one-vs-rest, and the macro
one-vs-rest ROC AUC.
"""

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def _auc(labels, probs, num_classes, positive):
    if len(np.unique(labels)) < num_classes:
        return float("nan")  # undefined when a class is absent from the sample
    if num_classes == 2:
        return float(skm.roc_auc_score(labels == positive, probs[:, positive]))
    return float(
        skm.roc_auc_score(
            labels, probs, multi_class="ovr", average="macro", labels=np.arange(num_classes)
        )
    )


def _per_class_specificity(cm):
    fp = cm.sum(0) - np.diag(cm)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    return tn / np.maximum(tn + fp, 1)


def classification_metrics(
    labels, probs, num_classes: int, positive_class: int = 1, bootstrap: int = 1000, seed: int = 0
) -> dict:
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    preds = probs.argmax(-1)
    classes = np.arange(num_classes)
    cm = skm.confusion_matrix(labels, preds, labels=classes)
    recall = skm.recall_score(labels, preds, labels=classes, average=None, zero_division=0)
    spec = _per_class_specificity(cm)
    binary = num_classes == 2
    out = {
        "num_examples": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
        "auc": _auc(labels, probs, num_classes, positive_class),
        "sensitivity": float(recall[positive_class] if binary else recall.mean()),
        "specificity": float(spec[positive_class] if binary else spec.mean()),
        "f1": float(
            skm.f1_score(labels, preds, pos_label=positive_class, average="binary", zero_division=0)
            if binary
            else skm.f1_score(labels, preds, labels=classes, average="macro", zero_division=0)
        ),
        "confusion_matrix": cm.tolist(),
        "per_class_sensitivity": recall.tolist(),
        "per_class_specificity": spec.tolist(),
    }
    if bootstrap:
        out["ci95"] = _bootstrap(labels, probs, preds, num_classes, positive_class, bootstrap, seed)
    return out


def _binary_auc_rows(is_positive, scores):
    """ROC AUC of each row, as the Mann-Whitney U statistic with average ranks for ties (what
    roc_auc_score computes from the ROC curve); NaN for a row without both classes."""
    ranks = stats.rankdata(scores, axis=1)
    n_pos = is_positive.sum(1)
    n_neg = is_positive.shape[1] - n_pos
    u = (ranks * is_positive).sum(1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _auc_rows(labels, probs, num_classes, positive):
    """_auc of every resample at once: labels (S, N), probs (S, N, K) -> (S,). One call to
    roc_auc_score per resample took 1.6 ms: 1000 resamples cost more than a small model's
    evaluation; these take 0.1 s."""
    if num_classes == 2:
        return _binary_auc_rows(labels == positive, probs[..., positive])
    per_class = [_binary_auc_rows(labels == c, probs[..., c]) for c in range(num_classes)]
    return np.mean(per_class, axis=0)  # NaN where a class is absent, as _auc


def _bootstrap(labels, probs, preds, num_classes, positive, samples, seed):
    """Percentile intervals over resamples of the evaluation set (with replacement)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(labels), (samples, len(labels)))
    acc = (preds[idx] == labels[idx]).mean(1)
    aucs = _auc_rows(labels[idx], probs[idx], num_classes, positive)
    return {"accuracy": _interval(acc), "auc": _interval(aucs), "samples": samples}


def _interval(x):
    """The 95% percentile interval of the finite values in `x`; None when there are none."""
    x = x[np.isfinite(x)]
    return [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if len(x) else None


def _balanced_accuracy_rows(labels, preds, num_classes):
    """Balanced accuracy of each row (S, N): the mean recall over the classes present."""
    recalls = []
    for c in range(num_classes):
        of_class = labels == c
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append((of_class & (preds == c)).sum(1) / of_class.sum(1))
    return np.nanmean(recalls, axis=0)


def paired_difference_ci(
    labels, probs_a, probs_b, num_classes: int, positive_class: int = 1, samples=1000, seed=0
) -> dict:
    """95% percentile intervals of metric(b) - metric(a) for two predictions of the same images,
    each resample drawing the same images for both (a paired bootstrap: the images both get
    right or wrong cancel out, so it is far tighter than comparing two separate intervals)."""
    labels = np.asarray(labels)
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    idx = np.random.default_rng(seed).integers(0, len(labels), (samples, len(labels)))
    rows = labels[idx]

    def per_metric(probs):
        preds = probs.argmax(-1)[idx]
        return {
            "accuracy": (preds == rows).mean(1),
            "balanced_accuracy": _balanced_accuracy_rows(rows, preds, num_classes),
            "auc": _auc_rows(rows, probs[idx], num_classes, positive_class),
        }

    ma, mb = per_metric(a), per_metric(b)
    return {k: _interval(mb[k] - ma[k]) for k in ma}
