"""How far predicted probabilities are from observed frequencies, and temperature scaling.

Expected calibration error (Guo et al. 2017), with M equal-width bins B_m = ((m-1)/M, m/M]
(the first closed at 0, as sklearn.calibration.calibration_curve bins), over N examples:

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|

where conf(B_m) is the mean confidence and acc(B_m) the fraction correct of the examples whose
confidence falls in B_m. `ece` uses the top-class confidence (the largest probability; correct
= the argmax is the label), `positive_class_ece` the positive class's probability (correct =
the label is the positive class), the binary reliability diagram of calibration_curve.

Brier score, scikit-learn's brier_score_loss: for two classes the mean squared error of the
positive class's probability against 1[label == positive]; for more, the mean over examples of
the squared distance between the probability vector and the one-hot label (sum over classes).

Temperature scaling (Guo et al. 2017) divides the logits by one T > 0 fitted on validation to
minimise the negative log-likelihood. It starts from probabilities: log p serves as logits
(softmax is shift-invariant, so softmax(log p / T) = softmax(z / T) for p = softmax(z); with
flip TTA, p is an average of two softmaxes and T scales its log). T > 0 keeps every argmax and
(two classes) every ranking, so accuracy and binary AUC do not change.
"""

import numpy as np
from scipy import optimize, special

# The fitted log T is searched in [-LOG_T_BOUND, LOG_T_BOUND]: T from 0.02 to 50.
LOG_T_BOUND = np.log(50.0)
EPS = 1e-12


def bin_index(confidence, num_bins: int):
    """Bin of each confidence in ((m-1)/M, m/M], the first closed at 0."""
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    return np.searchsorted(edges[1:-1], confidence, side="left")


def reliability(confidence, correct, num_bins: int) -> dict:
    """ECE and the reliability diagram's data: per bin, its count, mean confidence and
    accuracy (None for an empty bin)."""
    confidence, correct = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    b = bin_index(confidence, num_bins)
    count = np.bincount(b, minlength=num_bins)
    conf_sum = np.bincount(b, confidence, num_bins)
    correct_sum = np.bincount(b, correct, num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, correct_sum / count
    return {
        "ece": float(np.abs(correct_sum - conf_sum).sum() / max(len(confidence), 1)),
        "bins": num_bins,
        "count": count.tolist(),
        "confidence": [None if n == 0 else float(v) for n, v in zip(count, mean_conf, strict=True)],
        "accuracy": [None if n == 0 else float(v) for n, v in zip(count, acc, strict=True)],
    }


def top_class(labels, probs):
    """(confidence, correct) of the top class."""
    probs = np.asarray(probs, np.float64)
    return probs.max(-1), (probs.argmax(-1) == np.asarray(labels)).astype(np.float64)


def ece(labels, probs, num_bins: int = 15) -> float:
    return reliability(*top_class(labels, probs), num_bins)["ece"]


def positive_class_ece(labels, probs, positive: int, num_bins: int = 15) -> float:
    p = np.asarray(probs, np.float64)[:, positive]
    return reliability(p, np.asarray(labels) == positive, num_bins)["ece"]


def brier_terms(labels, probs, positive: int):
    """Each example's Brier term (its mean is the Brier score; see the module docstring)."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    if probs.shape[-1] == 2:
        return (probs[:, positive] - (labels == positive)) ** 2
    onehot = np.eye(probs.shape[-1])[labels]
    return ((probs - onehot) ** 2).sum(-1)


def nll_terms(labels, probs):
    """Each example's negative log-likelihood (log loss), probabilities clipped at 1e-12."""
    probs = np.asarray(probs, np.float64)
    return -np.log(np.clip(probs[np.arange(len(probs)), np.asarray(labels)], EPS, 1.0))


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities as temperature scaling calibrates them."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0))
    return special.softmax(logp / temperature, axis=-1)


def _nll_at(log_t, labels, logp):
    z = special.log_softmax(logp / np.exp(log_t), axis=-1)
    return -z[np.arange(len(labels)), labels].mean()


def fit_temperature(labels, probs) -> float:
    """The T minimising the mean NLL of softmax(log p / T) on (`labels`, `probs`): a bounded
    1-D search over log T (the NLL is convex in 1/T)."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0))
    labels = np.asarray(labels)
    found = optimize.minimize_scalar(
        _nll_at,
        bounds=(-LOG_T_BOUND, LOG_T_BOUND),
        args=(labels, logp),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))


def calibration_metrics(labels, probs, num_bins: int, positive: int) -> dict:
    return {
        "nll": float(nll_terms(labels, probs).mean()),
        "ece": ece(labels, probs, num_bins),
        "brier": float(brier_terms(labels, probs, positive).mean()),
    }


def temperature_report(labels: dict, probs: dict, num_bins: int, positive: int) -> dict:
    """results["calibration"]: T fitted on labels/probs["val"], and NLL, ECE and Brier before
    and after it on every split (the test split only evaluated, never fitted)."""
    t = fit_temperature(labels["val"], probs["val"])
    out = {"method": "temperature scaling", "fitted_on": "val", "temperature": t}
    for split in probs:
        before = calibration_metrics(labels[split], probs[split], num_bins, positive)
        calibrated = apply_temperature(probs[split], t)
        after = calibration_metrics(labels[split], calibrated, num_bins, positive)
        for k in before:
            out[f"{split}_{k}_before"], out[f"{split}_{k}_after"] = before[k], after[k]
        out[f"{split}_reliability_after"] = reliability(
            *top_class(labels[split], calibrated), num_bins
        )
    return out
