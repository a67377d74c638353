"""A decision threshold on the positive class's probability, chosen on validation only.

Binary tasks predict the positive class when its probability is >= the threshold, besides the
argmax (a threshold of 0.5). `eval.operating_point` chooses it on the validation split:
- "youden": the threshold maximising Youden's J = sensitivity + specificity - 1;
- "sensitivity": the highest threshold whose validation sensitivity reaches
  `eval.target_sensitivity` (the most specific one that does).
The candidates are the validation scores themselves (sklearn.metrics.roc_curve's thresholds).
The threshold applies to the probabilities as results.json's "val" and "test" report them,
i.e. before temperature scaling; "threshold_calibrated" is the same cut on the calibrated
probability (temperature scaling keeps the order of a binary task's scores).
"""

import numpy as np
from sklearn import metrics as skm

from medjax.eval import calibration
from medjax.eval.metrics import decision_intervals, decision_metrics

METHODS = ("youden", "sensitivity")


def choose_threshold(labels, probs, positive: int, method: str, target: float = 0.9) -> float:
    """The threshold `method` picks on (labels, probs): see the module docstring."""
    scores = np.asarray(probs, np.float64)[:, positive]
    fpr, tpr, thresholds = skm.roc_curve(
        np.asarray(labels) == positive, scores, drop_intermediate=False
    )
    # thresholds[0] is +inf (nothing predicted positive): never a useful operating point.
    fpr, tpr, thresholds = fpr[1:], tpr[1:], thresholds[1:]
    if method == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])  # ties: the highest threshold
    if method == "sensitivity":
        return float(thresholds[np.argmax(tpr >= target)])  # tpr rises as the cut falls
    raise ValueError(f"unknown operating point method {method!r}; valid: {', '.join(METHODS)}")


def predictions_at(probs, threshold: float, positive: int) -> np.ndarray:
    """Binary predictions: the positive class where its probability is >= threshold."""
    above = np.asarray(probs)[:, positive] >= threshold
    return np.where(above, positive, 1 - positive)


def metrics_at(labels, probs, threshold, positive, bootstrap: int, seed: int) -> dict:
    """decision_metrics of the thresholded predictions, with bootstrap intervals."""
    preds = predictions_at(probs, threshold, positive)
    out = decision_metrics(labels, preds, 2, positive)
    if bootstrap:
        out["ci95"] = decision_intervals(labels, preds, 2, positive, bootstrap, seed)
    return out


def calibrated_threshold(threshold: float, temperature: float, positive: int) -> float:
    """The calibrated positive-class probability of an uncalibrated one equal to `threshold`."""
    p = np.zeros((1, 2))
    p[0, positive], p[0, 1 - positive] = threshold, 1 - threshold
    return float(calibration.apply_temperature(p, temperature)[0, positive])


def skipped(num_classes: int) -> dict:
    return {
        "skipped": f"{num_classes} classes: a threshold on one class's probability decides "
        f"between two classes only; multi-class predictions stay the argmax"
    }


def report(labels: dict, probs: dict, eval_cfg, num_classes, bootstrap, seed) -> dict:
    """results["operating_point"]: the threshold chosen on labels/probs["val"] and the
    metrics at it on every split, or why there is none."""
    if num_classes != 2:
        return skipped(num_classes)
    positive, method = eval_cfg.positive_class, eval_cfg.operating_point
    if len(np.unique(labels["val"])) < 2:
        return {"skipped": "the validation split lacks one of the two classes"}
    t = choose_threshold(labels["val"], probs["val"], positive, method, eval_cfg.target_sensitivity)
    out = {"method": method, "chosen_on": "val"}
    if method == "sensitivity":
        out["target_sensitivity"] = eval_cfg.target_sensitivity
    out["threshold"] = t
    out["applies_to"] = (
        f"the uncalibrated probability of class {positive}: predicted positive when >= threshold"
    )
    for split in probs:
        out[split] = metrics_at(labels[split], probs[split], t, positive, bootstrap, seed)
    return out
