"""Classification metrics with scikit-learn's definitions and 95% bootstrap intervals.

Binary tasks report sensitivity (recall), specificity, PPV (precision), NPV and F1 of
`positive_class` (the disease class), ROC AUC and PR AUC (average precision) of its
probability; multi-class tasks report their macro averages over classes, one-vs-rest. Both
report the per-class precision, recall and F1, and the calibration metrics of
medjax.eval.calibration (NLL, Brier score, ECE and its reliability diagram's data).
"""

import numpy as np
from sklearn import metrics as skm

from medjax.eval import calibration, resample


def _absent_class(labels, num_classes) -> bool:
    return len(np.unique(labels)) < num_classes  # AUCs are undefined without every class


def _auc(labels, probs, num_classes, positive):
    if _absent_class(labels, num_classes):
        return float("nan")
    if num_classes == 2:
        return float(skm.roc_auc_score(labels == positive, probs[:, positive]))
    return float(
        skm.roc_auc_score(
            labels, probs, multi_class="ovr", average="macro", labels=np.arange(num_classes)
        )
    )


def _pr_auc(labels, probs, num_classes, positive):
    if _absent_class(labels, num_classes):
        return float("nan")
    if num_classes == 2:
        return float(skm.average_precision_score(labels == positive, probs[:, positive]))
    onehot = np.eye(num_classes)[labels]
    return float(skm.average_precision_score(onehot, probs, average="macro"))


def _per_class_specificity(cm):
    fp = cm.sum(0) - np.diag(cm)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    return tn / np.maximum(tn + fp, 1)


def _per_class_npv(cm):
    fn = cm.sum(1) - np.diag(cm)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + np.diag(cm)
    return tn / np.maximum(tn + fn, 1)


def decision_metrics(labels, preds, num_classes: int, positive_class: int = 1) -> dict:
    """The metrics of hard predictions `preds` (argmax, or a threshold's)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    classes = np.arange(num_classes)
    cm = skm.confusion_matrix(labels, preds, labels=classes)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        labels, preds, labels=classes, average=None, zero_division=0
    )
    spec, npv = _per_class_specificity(cm), _per_class_npv(cm)
    pick = (lambda v: v[positive_class]) if num_classes == 2 else np.mean
    return {
        "num_examples": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
        "sensitivity": float(pick(recall)),
        "specificity": float(pick(spec)),
        "ppv": float(pick(precision)),
        "npv": float(pick(npv)),
        "f1": float(pick(f1)),
        "confusion_matrix": cm.tolist(),
        "per_class_sensitivity": recall.tolist(),
        "per_class_specificity": spec.tolist(),
        "per_class_precision": precision.tolist(),
        "per_class_recall": recall.tolist(),
        "per_class_f1": f1.tolist(),
    }


def classification_metrics(
    labels,
    probs,
    num_classes: int,
    positive_class: int = 1,
    bootstrap: int = 1000,
    seed: int = 0,
    ece_bins: int = 15,
) -> dict:
    labels = np.asarray(labels)
    probs = np.asarray(probs, np.float64)
    preds = probs.argmax(-1)
    out = decision_metrics(labels, preds, num_classes, positive_class)
    out["auc"] = _auc(labels, probs, num_classes, positive_class)
    out["pr_auc"] = _pr_auc(labels, probs, num_classes, positive_class)
    out["nll"] = float(calibration.nll_terms(labels, probs).mean())
    out["brier"] = float(calibration.brier_terms(labels, probs, positive_class).mean())
    top = calibration.reliability(*calibration.top_class(labels, probs), ece_bins)
    out["ece"] = top.pop("ece")
    if num_classes == 2:
        out["positive_class_ece"] = calibration.positive_class_ece(
            labels, probs, positive_class, ece_bins
        )
    out["reliability"] = top
    if bootstrap:
        out["ci95"] = _bootstrap(
            labels, probs, num_classes, positive_class, bootstrap, seed, ece_bins
        )
    return out


def resample_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) indices of the bootstrap resamples (with replacement) of n examples."""
    return np.random.default_rng(seed).integers(0, n, (samples, n))


def _bootstrap(labels, probs, num_classes, positive, samples, seed, ece_bins):
    """Percentile intervals over resamples of the evaluation set (with replacement)."""
    idx = resample_indices(len(labels), samples, seed)
    rows = labels[idx]
    conf, correct = calibration.top_class(labels, probs)
    auc, pr_auc = resample.one_vs_rest_rows(rows, probs[idx], num_classes, positive)
    values = {
        **resample.decision_rows(rows, probs.argmax(-1)[idx], num_classes, positive),
        "auc": auc,
        "pr_auc": pr_auc,
        "nll": resample.mean_rows(calibration.nll_terms(labels, probs), idx),
        "brier": resample.mean_rows(calibration.brier_terms(labels, probs, positive), idx),
        "ece": resample.ece_rows(
            calibration.bin_index(conf, ece_bins), conf, correct, idx, ece_bins
        ),
    }
    return {**{k: resample.interval(v) for k, v in values.items()}, "samples": samples}


def decision_intervals(labels, preds, num_classes, positive, samples, seed) -> dict:
    """Bootstrap intervals of decision_metrics' scalar metrics for hard predictions."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    idx = resample_indices(len(labels), samples, seed)
    values = resample.decision_rows(labels[idx], preds[idx], num_classes, positive)
    return {**{k: resample.interval(v) for k, v in values.items()}, "samples": samples}


def paired_difference_ci(
    labels, probs_a, probs_b, num_classes: int, positive_class: int = 1, samples=1000, seed=0
) -> dict:
    """95% percentile intervals of metric(b) - metric(a) for two predictions of the same images,
    each resample drawing the same images for both (a paired bootstrap: the images both get
    right or wrong cancel out, so it is far tighter than comparing two separate intervals)."""
    labels = np.asarray(labels)
    a, b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    idx = resample_indices(len(labels), samples, seed)
    rows = labels[idx]

    def per_metric(probs):
        preds = probs.argmax(-1)[idx]
        return {
            "accuracy": (preds == rows).mean(1),
            "balanced_accuracy": resample.balanced_accuracy_rows(rows, preds, num_classes),
            "auc": resample.auc_rows(rows, probs[idx], num_classes, positive_class),
        }

    ma, mb = per_metric(a), per_metric(b)
    return {k: resample.interval(mb[k] - ma[k]) for k in ma}
