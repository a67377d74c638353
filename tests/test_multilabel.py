"""Multi-label classification (ChestMNIST-style (N, L) findings): the loss against optax, the
metrics and thresholds against scikit-learn, the config checks, and a run end to end on a
generated 14-finding set in the ChestMNIST file layout."""

import json

import numpy as np
import optax
import pytest
from sklearn import metrics as skm

from medjax.configs import load_config
from medjax.configs.loader import apply_overrides
from medjax.data.splits import strata
from medjax.errors import ConfigError
from medjax.eval.multilabel import fit_thresholds, multilabel_metrics
from medjax.train import predictions
from medjax.train.loop import train_and_evaluate
from medjax.train.losses import class_weights, sigmoid_bce

CONFIG = "experiments/review/chestmnist_multilabel.py"


def test_sigmoid_bce_is_optax_binary_cross_entropy_and_weighs_positives():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    labels = (rng.random((6, 4)) < 0.4).astype(np.int32)
    plain = sigmoid_bce(logits, labels, np.ones(4), 0.0)
    reference = optax.sigmoid_binary_cross_entropy(logits, labels.astype(np.float32)).mean()
    np.testing.assert_allclose(plain, reference, rtol=1e-6)
    w = np.array([1.0, 2.0, 3.0, 0.5], np.float32)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    by_hand = -(w * labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean()
    np.testing.assert_allclose(sigmoid_bce(logits, labels, w, 0.0), by_hand, rtol=1e-5)


def test_balanced_multi_label_weights_are_negatives_over_positives():
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(class_weights("balanced", labels, 2), [1.0, 3.0])
    with pytest.raises(ConfigError, match="no multi-label form"):
        class_weights("effective", labels, 2)


def test_metrics_match_scikit_learn_per_finding_and_macro():
    rng = np.random.default_rng(1)
    labels = (rng.random((300, 5)) < [0.1, 0.3, 0.5, 0.2, 0.05]).astype(int)
    probs = np.clip(labels * 0.3 + rng.random((300, 5)) * 0.7, 0, 1)
    m = multilabel_metrics(labels, probs, bootstrap=200, seed=0)
    per = skm.roc_auc_score(labels, probs, average=None)
    np.testing.assert_allclose(m["per_class_auc"], per, rtol=1e-12)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(labels, probs, average="macro"))
    assert m["micro_auc"] == pytest.approx(skm.roc_auc_score(labels, probs, average="micro"))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(labels, probs))
    preds = probs >= 0.5
    assert m["accuracy"] == pytest.approx(1 - skm.hamming_loss(labels, preds))
    assert m["exact_match"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert m["f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro", zero_division=0))
    low, high = m["ci95"]["auc"]
    assert low < m["auc"] < high
    assert len(m["ci95"]["per_class_auc"]) == 5


def test_a_finding_without_both_outcomes_has_no_auc_and_leaves_the_mean():
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    probs = np.array([[0.9, 0.1], [0.2, 0.3], [0.8, 0.2], [0.1, 0.4]])
    m = multilabel_metrics(labels, probs)
    assert m["per_class_auc"][1] is None
    assert m["auc"] == 1.0


def test_thresholds_are_each_findings_youden_point():
    rng = np.random.default_rng(2)
    labels = (rng.random((200, 3)) < 0.3).astype(int)
    probs = np.clip(labels * 0.25 + rng.random((200, 3)) * 0.75, 0, 1)
    got = fit_thresholds(labels, probs)
    for k in range(3):
        j = [
            ((probs[:, k] >= t) & (labels[:, k] == 1)).sum() / labels[:, k].sum()
            - ((probs[:, k] >= t) & (labels[:, k] == 0)).sum() / (labels[:, k] == 0).sum()
            for t in probs[:, k]
        ]
        best = probs[:, k][np.flatnonzero(np.isclose(j, max(j)))].max()
        assert got[k] == pytest.approx(best)


def test_strata_put_each_image_under_its_rarest_finding():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    # frequencies: finding 0: 3, finding 1: 3, finding 2: 1 -> rarest first: 2, 0, 1
    np.testing.assert_array_equal(strata(labels), [0, 0, 3, 2, 1])


def _findings_npz(path, n=(384, 96, 96), findings=14, seed=0):
    """A ChestMNIST-shaped file: finding k is a bright 4x4 square at grid cell k."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        labels = (rng.random((count, findings)) < 0.3).astype(np.uint8)
        images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
        for k in range(findings):
            y, x = divmod(k, 4)
            images[labels[:, k] == 1, 2 + 6 * y : 6 + 6 * y, 2 + 6 * x : 6 + 6 * x] += 150
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    np.savez(path, **arrays)
    return str(path)


def _config(path, **overrides):
    c = load_config(f"{CONFIG}:runlocal")
    changes = {
        "data.path": str(path),
        "data.cache": "False",
        "train.num_steps": "100",
        "data.augment": "()",
        "train.eval_every_epochs": "2.0",
        "eval.bootstrap_samples": "50",
        **{k.replace("__", "."): v for k, v in overrides.items()},
    }
    apply_overrides(c, list(changes.items()))
    return c


@pytest.mark.slow
def test_multi_label_run_learns_every_finding_and_records_thresholds(tmp_path):
    path = _findings_npz(tmp_path / "chestmnist.npz")
    results = train_and_evaluate(_config(path), str(tmp_path / "run"))
    test = results["test"]
    assert len(test["per_class_auc"]) == 14
    assert test["auc"] > 0.9, test["per_class_auc"]
    assert test["ci95"]["auc"][0] < test["auc"]
    point = results["operating_point"]
    assert len(point["thresholds"]) == 14 and "f1" in point["test"]
    probs, labels = predictions.load_split(str(tmp_path / "run"), "val")
    assert probs.shape == labels.shape == (96, 14)
    assert ((probs >= 0) & (probs <= 1)).all() and not np.allclose(probs.sum(1), 1)
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["train"]["class_counts"]["atelectasis"] > 0
    assert (tmp_path / "run" / "plots" / "roc_pr.png").exists()


def test_multi_label_data_needs_the_multi_label_loss(tmp_path):
    path = _findings_npz(tmp_path / "chestmnist.npz", n=(64, 32, 32))
    with pytest.raises(ConfigError, match="sigmoid_bce"):
        train_and_evaluate(_config(path, loss__name="softmax_xent"), str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="no single class per image"):
        train_and_evaluate(_config(path, data__sampler="balanced"), str(tmp_path / "b"))
    with pytest.raises(ConfigError, match="no single class per image"):
        train_and_evaluate(_config(path, data__oversample="smote(k=3)"), str(tmp_path / "c"))


def test_the_multi_label_loss_on_single_label_data_is_refused(tmp_path):
    c = load_config("experiments/review/plain_cnn.py:runlocal,data=phantom")
    apply_overrides(c, [("loss.name", "sigmoid_bce")])
    with pytest.raises(ConfigError, match="one class per image"):
        train_and_evaluate(c, str(tmp_path / "run"))
