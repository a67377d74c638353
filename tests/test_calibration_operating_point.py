"""Temperature scaling and the operating point against brute force and scipy/scikit-learn."""

import numpy as np
import pytest
from scipy import special
from sklearn import metrics as skm

from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.eval import calibration, operating_point
from medjax.train.validate import validate


def _overconfident(n=4000, scale=3.0, seed=0):
    """Labels drawn from softmax(z), probabilities reported as softmax(scale * z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)) * 1.5
    truth = special.softmax(z, -1)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    return labels, special.softmax(scale * z, -1)


def test_temperature_recovers_the_overconfidence_and_minimises_nll():
    labels, probs = _overconfident()
    t = calibration.fit_temperature(labels, probs)
    assert t == pytest.approx(3.0, rel=0.1)
    grid = np.linspace(0.5, 6, 221)
    nll = [skm.log_loss(labels, calibration.apply_temperature(probs, g)) for g in grid]
    assert abs(t - grid[np.argmin(nll)]) <= grid[1] - grid[0]
    after = calibration.apply_temperature(probs, t)
    assert calibration.ece(labels, after) < calibration.ece(labels, probs) / 2
    assert (after.argmax(1) == probs.argmax(1)).all()  # T > 0 keeps every decision


def test_temperature_of_probabilities_is_temperature_of_logits():
    z = np.random.default_rng(1).normal(size=(50, 4)) * 3
    np.testing.assert_allclose(
        calibration.apply_temperature(special.softmax(z, -1), 2.5), special.softmax(z / 2.5, -1)
    )


def test_temperature_report_fits_on_val_only():
    labels, probs = _overconfident(2000)
    other_labels, other_probs = _overconfident(2000, scale=0.5, seed=1)
    report = calibration.temperature_report(
        {"val": labels, "test": other_labels}, {"val": probs, "test": other_probs}, 15, 1
    )
    assert report["temperature"] == pytest.approx(calibration.fit_temperature(labels, probs))
    assert report["val_nll_after"] < report["val_nll_before"]
    assert report["test_nll_after"] > report["test_nll_before"]  # the test was not fitted
    assert report["test_nll_before"] == pytest.approx(skm.log_loss(other_labels, other_probs))


def _binary(n=300, seed=2):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    p1 = np.clip(np.round(rng.beta(2, 3, n) * 0.7 + 0.3 * labels, 2), 0, 1)
    return labels, np.stack([1 - p1, p1], 1)


def _rates(labels, probs, t, positive):
    preds = operating_point.predictions_at(probs, t, positive)
    cm = skm.confusion_matrix(labels == positive, preds == positive, labels=[False, True])
    (tn, fp), (fn, tp) = cm
    return tp / (tp + fn), tn / (tn + fp)


@pytest.mark.parametrize("positive", [0, 1])
def test_thresholds_are_the_brute_force_choices(positive):
    labels, probs = _binary(seed=positive)
    candidates = np.unique(probs[:, positive])
    rates = {t: _rates(labels, probs, t, positive) for t in candidates}
    youden = operating_point.choose_threshold(labels, probs, positive, "youden")
    best = max(sens + spec for sens, spec in rates.values())
    assert sum(rates[youden]) == pytest.approx(best)
    assert youden == max(t for t, r in rates.items() if sum(r) == pytest.approx(best))
    for target in (0.5, 0.9, 1.0):
        t = operating_point.choose_threshold(labels, probs, positive, "sensitivity", target)
        assert t == max(c for c, (sens, _) in rates.items() if sens >= target)


def test_report_metrics_at_the_threshold_and_its_calibrated_twin():
    labels, probs = _binary()
    cfg = get_base_config().eval
    cfg.operating_point, cfg.target_sensitivity = "sensitivity", 0.8
    report = operating_point.report(
        {"val": labels, "test": labels[:100]}, {"val": probs, "test": probs[:100]}, cfg, 2, 50, 0
    )
    t = report["threshold"]
    assert report["val"]["sensitivity"] >= 0.8 and report["target_sensitivity"] == 0.8
    preds = (probs[:100, 1] >= t).astype(int)
    assert report["test"]["confusion_matrix"] == skm.confusion_matrix(labels[:100], preds).tolist()
    assert report["test"]["npv"] == pytest.approx(
        skm.precision_score(labels[:100], preds, pos_label=0)
    )
    assert set(report["test"]["ci95"]) >= {"sensitivity", "specificity", "ppv", "npv", "f1"}
    calibrated = calibration.apply_temperature(probs, 0.6)
    tc = operating_point.calibrated_threshold(t, 0.6, 1)
    np.testing.assert_array_equal(
        operating_point.predictions_at(calibrated, tc - 1e-12, 1),
        operating_point.predictions_at(probs, t, 1),
    )
    multi = operating_point.report({"val": labels}, {"val": probs}, cfg, 3, 0, 0)
    assert "threshold" not in multi and "3 classes" in multi["skipped"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("operating_point", "max_f1", "must be one of youden, sensitivity"),
        ("target_sensitivity", 0.0, r"must be in \(0, 1\]"),
        ("target_sensitivity", 1.5, r"must be in \(0, 1\]"),
        ("ece_bins", 1, "must be at least 2"),
    ],
)
def test_bad_eval_keys_fail_with_the_key_named(key, value, message):
    c = get_base_config()
    c.eval[key] = value
    with pytest.raises(ConfigError, match=f"config.eval.{key}.*{message}"):
        validate(c)
