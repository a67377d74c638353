"""Multi-label metrics (several findings per image, ChestMNIST-style): each finding scored as
its own binary task with scikit-learn's definitions, then macro-averaged, with 95% bootstrap
intervals over images.

The headline "auc" is the macro mean of the per-finding ROC AUCs (over the findings present
in the split with both outcomes; a finding with only positives or only negatives has no AUC
and is left out of the mean, as MedMNIST's evaluator does). "accuracy" is the share of
(image, finding) decisions that are right at each finding's threshold (0.5, or the ones fitted
on validation by `fit_thresholds`); "exact_match" the share of images with every finding right.
"""

import warnings

import numpy as np
from sklearn import metrics as skm

from medjax.eval import resample
from medjax.eval.metrics import resample_indices
from medjax.eval.operating_point import choose_threshold


def per_finding_auc(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(L,) ROC AUC of each finding; NaN where the split has only one outcome for it."""
    out = np.full(labels.shape[1], np.nan)
    for k in range(labels.shape[1]):
        if 0 < labels[:, k].sum() < len(labels):
            out[k] = skm.roc_auc_score(labels[:, k], probs[:, k])
    return out


def multilabel_metrics(labels, probs, thresholds=None, bootstrap: int = 0, seed: int = 0) -> dict:
    """Metrics of multi-hot `labels` (N, L) and per-finding probabilities `probs` (N, L) at
    `thresholds` (L,) (default 0.5 each)."""
    labels = np.asarray(labels).astype(bool)
    probs = np.asarray(probs, np.float64)
    thresholds = np.full(labels.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
    preds = probs >= thresholds
    auc = per_finding_auc(labels, probs)
    ap = [
        skm.average_precision_score(labels[:, k], probs[:, k]) if labels[:, k].any() else np.nan
        for k in range(labels.shape[1])
    ]
    tp = (labels & preds).sum(0)
    fp, fn = (~labels & preds).sum(0), (labels & ~preds).sum(0)
    tn = len(labels) - tp - fp - fn
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    nll = -(labels * np.log(clipped) + ~labels * np.log1p(-clipped)).mean()
    out = {
        "num_examples": int(len(labels)),
        "auc": _nanmean(auc),
        "micro_auc": float(skm.roc_auc_score(labels.ravel(), probs.ravel()))
        if 0 < labels.sum() < labels.size
        else float("nan"),
        "pr_auc": _nanmean(ap),
        "accuracy": float((preds == labels).mean()),
        "exact_match": float((preds == labels).all(1).mean()),
        "sensitivity": float(sensitivity.mean()),
        "specificity": float(specificity.mean()),
        "balanced_accuracy": float(((sensitivity + specificity) / 2).mean()),
        "f1": float(f1.mean()),
        "nll": float(nll),
        "per_class_auc": [None if np.isnan(a) else float(a) for a in auc],
        "per_class_sensitivity": sensitivity.tolist(),
        "per_class_specificity": specificity.tolist(),
        "per_class_f1": f1.tolist(),
        "per_class_prevalence": labels.mean(0).tolist(),
        "thresholds": thresholds.tolist(),
    }
    if bootstrap:
        out["ci95"] = _bootstrap(labels, probs, preds, bootstrap, seed)
    return out


def _ratio(a, b):
    return a / np.maximum(b, 1)  # scikit-learn's zero_division=0


def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _bootstrap(labels, probs, preds, samples: int, seed: int) -> dict:
    """Percentile intervals of the macro AUC, each finding's AUC, accuracy and macro F1 over
    resamples of the images (the same resamples for every finding)."""
    idx = resample_indices(len(labels), samples, seed)
    per = np.asarray(
        [resample.binary_auc_rows(labels[idx, k], probs[idx, k]) for k in range(labels.shape[1])]
    )  # (L, S)
    with warnings.catch_warnings():  # a resample may lack a finding's positives: NaN, skipped
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = np.nanmean(per, axis=0)
    right = preds[idx] == labels[idx]  # (S, N, L)
    tp = (labels[idx] & preds[idx]).sum(1)
    wrong = (~right).sum(1)
    f1 = _ratio(2 * tp, 2 * tp + wrong).mean(1)
    return {
        "auc": resample.interval(macro),
        "per_class_auc": [resample.interval(a) for a in per],
        "accuracy": resample.interval(right.mean((1, 2))),
        "f1": resample.interval(f1),
        "samples": samples,
    }


def fit_thresholds(labels, probs) -> np.ndarray:
    """(L,) each finding's Youden threshold on these (validation) predictions; 0.5 for a
    finding with one outcome only."""
    labels, probs = np.asarray(labels).astype(bool), np.asarray(probs, np.float64)
    out = np.full(labels.shape[1], 0.5)
    for k in range(labels.shape[1]):
        if 0 < labels[:, k].sum() < len(labels):
            scores = np.stack([1 - probs[:, k], probs[:, k]], axis=-1)
            out[k] = choose_threshold(labels[:, k].astype(int), scores, 1, "youden")
    return out


def threshold_report(labels: dict, probs: dict, bootstrap: int, seed: int) -> dict:
    """Per-finding thresholds fitted on validation only, and the metrics they give on val and
    test (results.json "operating_point")."""
    thresholds = fit_thresholds(labels["val"], probs["val"])
    out = {"method": "youden per finding", "thresholds": thresholds.tolist()}
    for split in ("val", "test"):
        m = multilabel_metrics(labels[split], probs[split], thresholds, bootstrap, seed)
        out[split] = {
            k: m[k]
            for k in (
                "accuracy",
                "exact_match",
                "sensitivity",
                "specificity",
                "balanced_accuracy",
                "f1",
                "per_class_sensitivity",
                "per_class_specificity",
            )
        }
        if "ci95" in m:
            out[split]["ci95"] = {k: m["ci95"][k] for k in ("accuracy", "f1")}
    return out
