"""The evaluation metrics against independent references: scikit-learn for every metric and for
each bootstrap resample's value, a direct loop over the ECE formula and
sklearn.calibration.calibration_curve for the calibration error."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from medjax.eval import calibration, classification_metrics, resample
from medjax.eval.metrics import decision_metrics


def _probs(rng, labels, num_classes, ties=True):
    """Informative probabilities; rounded to 2 decimals so that scores tie."""
    logits = rng.normal(size=(len(labels), num_classes)) + 1.5 * np.eye(num_classes)[labels]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    if ties:
        p[:, :-1] = np.round(p[:, :-1], 2)
        p[:, -1] = 1 - p[:, :-1].sum(1)
    return p


@pytest.mark.parametrize("positive", [0, 1])
def test_binary_metrics_are_sklearns(positive):
    rng = np.random.default_rng(positive)
    labels = rng.integers(0, 2, 300)
    probs = _probs(rng, labels, 2)
    m = classification_metrics(labels, probs, 2, positive, bootstrap=0)
    preds, is_pos = probs.argmax(1), labels == positive
    assert m["ppv"] == pytest.approx(skm.precision_score(labels, preds, pos_label=positive))
    assert m["npv"] == pytest.approx(skm.precision_score(labels, preds, pos_label=1 - positive))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(labels, preds, pos_label=positive))
    p, r, f, _ = skm.precision_recall_fscore_support(labels, preds)
    np.testing.assert_allclose(m["per_class_precision"], p)
    np.testing.assert_allclose(m["per_class_recall"], r)
    np.testing.assert_allclose(m["per_class_f1"], f)
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(is_pos, probs[:, positive]))
    assert m["brier"] == pytest.approx(
        skm.brier_score_loss(labels, probs[:, positive], pos_label=positive)
    )
    assert m["nll"] == pytest.approx(skm.log_loss(labels, probs))


def test_multiclass_metrics_are_sklearns_macro_one_vs_rest():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 400)
    probs = _probs(rng, labels, 4)
    m = classification_metrics(labels, probs, 4, bootstrap=0)
    preds, onehot = probs.argmax(1), np.eye(4)[labels]
    assert m["ppv"] == pytest.approx(skm.precision_score(labels, preds, average="macro"))
    npv = [tn / (tn + fn) for (tn, _), (fn, _) in skm.multilabel_confusion_matrix(labels, preds)]
    assert m["npv"] == pytest.approx(np.mean(npv))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro"))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(onehot, probs))
    # Brier for several classes: the mean squared distance to the one-hot, summed over classes.
    assert m["brier"] == pytest.approx(skm.brier_score_loss(labels, probs, labels=range(4)))
    assert m["nll"] == pytest.approx(skm.log_loss(labels, probs))
    assert m["pr_auc"] != pytest.approx(m["auc"])


@pytest.mark.parametrize("num_classes, n", [(2, 60), (3, 90), (5, 30)])
def test_bootstrap_values_are_sklearns_on_every_resample(num_classes, n):
    """Each vectorised resample value equals scikit-learn's on that resample; ties and
    resamples missing a class (NaN) included."""
    rng = np.random.default_rng(num_classes)
    labels = rng.integers(0, num_classes, n)
    probs = _probs(rng, labels, num_classes)
    idx = rng.integers(0, n, (100, n))
    rows, preds = labels[idx], probs.argmax(1)[idx]
    ap = resample.one_vs_rest_rows(rows, probs[idx], num_classes, 1)[1]
    decided = resample.decision_rows(rows, preds, num_classes, 1)
    for i, take in enumerate(idx):
        y, p = labels[take], probs[take]
        if len(np.unique(y)) < num_classes:
            assert np.isnan(ap[i])
        elif num_classes == 2:
            assert ap[i] == pytest.approx(skm.average_precision_score(y == 1, p[:, 1]), abs=1e-12)
        else:
            onehot = np.eye(num_classes)[y]
            assert ap[i] == pytest.approx(skm.average_precision_score(onehot, p), abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn: a class absent from this resample
            one = decision_metrics(y, p.argmax(1), num_classes, 1)
        for key, values in decided.items():
            assert values[i] == pytest.approx(one[key], abs=1e-12), key


def _ece_loop(confidence, correct, bins):
    """ECE straight from the formula: bins ((m-1)/M, m/M], the first closed at 0."""
    total, n = 0.0, len(confidence)
    for m in range(1, bins + 1):
        lo, hi = (m - 1) / bins, m / bins
        inside = [(c, a) for c, a in zip(confidence, correct, strict=True) if lo < c <= hi]
        if m == 1:
            inside += [(c, a) for c, a in zip(confidence, correct, strict=True) if c == 0]
        if inside:
            conf = sum(c for c, _ in inside) / len(inside)
            acc = sum(a for _, a in inside) / len(inside)
            total += len(inside) / n * abs(acc - conf)
    return total


@pytest.mark.parametrize("num_classes, bins", [(2, 10), (3, 15), (5, 15)])
def test_ece_is_the_formula(num_classes, bins):
    rng = np.random.default_rng(bins + num_classes)
    labels = rng.integers(0, num_classes, 250)
    probs = _probs(rng, labels, num_classes)
    if num_classes == 2:
        probs[:5] = 0.5  # confidence on the edge between bins 5 and 6: (0.4, 0.5] takes it
    conf, correct = probs.max(1), (probs.argmax(1) == labels)
    m = classification_metrics(labels, probs, num_classes, bootstrap=0, ece_bins=bins)
    assert m["ece"] == pytest.approx(_ece_loop(conf, correct, bins), abs=1e-12)
    rel = m["reliability"]
    assert sum(rel["count"]) == 250 and len(rel["count"]) == bins
    # The bootstrap's vectorised ECE of each resample is the formula's too.
    idx = rng.integers(0, 250, (20, 250))
    rows = resample.ece_rows(calibration.bin_index(conf, bins), conf, correct, idx, bins)
    loop = [_ece_loop(conf[i], correct[i], bins) for i in idx]
    np.testing.assert_allclose(rows, loop, atol=1e-12)


def test_positive_class_ece_and_reliability_are_calibration_curves():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 500)
    p1 = np.clip(rng.beta(2, 2, 500) * 0.6 + 0.4 * labels, 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    rel = calibration.reliability(p1, labels == 1, 15)
    prob_true, prob_pred = calibration_curve(labels, p1, n_bins=15, strategy="uniform")
    count = np.histogram(p1, bins=np.linspace(0, 1, 16))[0]  # no score sits on an edge
    nonempty = count > 0
    np.testing.assert_allclose([a for a in rel["accuracy"] if a is not None], prob_true)
    np.testing.assert_allclose([c for c in rel["confidence"] if c is not None], prob_pred)
    ece = (count[nonempty] / 500 * np.abs(prob_true - prob_pred)).sum()
    m = classification_metrics(labels, probs, 2, bootstrap=0)
    assert m["positive_class_ece"] == pytest.approx(ece, abs=1e-12)
    assert rel["ece"] == pytest.approx(ece, abs=1e-12)


def test_intervals_cover_every_metric_and_keep_the_old_ones():
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 2, 200)
    probs = _probs(rng, labels, 2, ties=False)
    m = classification_metrics(labels, probs, 2, bootstrap=300, seed=5)
    ci = m["ci95"]
    for key in (
        "accuracy",
        "balanced_accuracy",
        "auc",
        "pr_auc",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "f1",
        "brier",
        "nll",
        "ece",
    ):
        lo, hi = ci[key]
        assert lo <= m[key] <= hi or key == "ece", key  # ECE's resamples are biased upward
    # The accuracy and AUC intervals are those of the resamples drawn before PR AUC and the
    # rest existed (same seed, same indices): results of older runs stay comparable.
    idx = np.random.default_rng(5).integers(0, 200, (300, 200))
    acc = (probs.argmax(1)[idx] == labels[idx]).mean(1)
    assert ci["accuracy"] == [np.percentile(acc, 2.5), np.percentile(acc, 97.5)]
