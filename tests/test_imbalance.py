import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.data.imbalance import balanced_index_dataset, index_dataset, oversample
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError
from medjax.train import losses
from medjax.train.loop import train_and_evaluate
from medjax.train.validate import validate

from .conftest import tiny_config

LABELS = np.array([0] * 30 + [1] * 6 + [2] * 4)  # 40 images, 75% / 15% / 10%


def test_effective_number_weights_follow_cui_et_al():
    beta = 0.99
    w = losses.class_weights("effective", LABELS, 3, beta)
    n = np.array([30, 6, 4])
    ref = (1 - beta) / (1 - beta**n)
    np.testing.assert_allclose(w, ref / ref.mean(), rtol=1e-6)
    assert w[2] > w[1] > w[0] and np.isclose(w.mean(), 1)
    np.testing.assert_allclose(losses.class_weights("effective", LABELS, 3, 0.0), 1)
    # beta -> 1: inverse frequency, up to scale
    near = losses.class_weights("effective", LABELS, 3, 1 - 1e-7)
    balanced = losses.class_weights("balanced", LABELS, 3)
    np.testing.assert_allclose(near / near.sum(), balanced / balanced.sum(), rtol=1e-4)
    with pytest.raises(ConfigError, match="none, balanced, effective"):
        losses.class_weights("inverse", LABELS, 3)


def _focal_reference(logits, targets, weights, gamma):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    per = -np.sum(targets * (1 - p) ** gamma * np.log(p), axis=1)
    w = targets @ weights
    return np.sum(w * per) / np.sum(w)


def test_focal_loss_matches_numpy_and_is_cross_entropy_at_gamma_0():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 3)).astype(np.float32) * 3
    labels = rng.integers(0, 3, 16)
    weights = np.array([0.5, 1.0, 2.0], np.float32)
    soft = rng.dirichlet(np.ones(3), 16).astype(np.float32)  # MixUp-like targets
    for gamma in (0.5, 2.0):
        got = losses.focal(jnp.asarray(logits), jnp.asarray(labels), weights, 0.0, gamma)
        ref = _focal_reference(logits, np.eye(3)[labels], weights, gamma)
        np.testing.assert_allclose(got, ref, rtol=1e-5)
        got = losses.focal(jnp.asarray(logits), jnp.asarray(soft), weights, 0.0, gamma)
        np.testing.assert_allclose(got, _focal_reference(logits, soft, weights, gamma), rtol=1e-5)
    for targets in (jnp.asarray(labels), jnp.asarray(soft)):
        ce = losses.softmax_xent(jnp.asarray(logits), targets, weights, 0.1)
        np.testing.assert_allclose(
            losses.focal(jnp.asarray(logits), targets, weights, 0.1, 0.0), ce, rtol=1e-6
        )
    # gamma < 1 at a saturated softmax: the clipped modulator keeps the gradient finite
    grad = jax.grad(lambda x: losses.focal(x, jnp.array([0]), np.ones(2), 0.0, 0.5))
    assert np.isfinite(grad(jnp.array([[60.0, -60.0]]))).all()


def test_build_loss_passes_gamma_to_focal_only():
    c = tiny_config(**{"loss.label_smoothing": 0.1, "loss.focal_gamma": 0.0})
    logits, labels, w = jnp.ones((4, 2)) * jnp.arange(2), jnp.array([0, 1, 1, 0]), np.ones(2)
    xent = losses.build_loss(c.loss, w)(logits, labels)
    c = tiny_config(**{"loss.label_smoothing": 0.1, "loss.focal_gamma": 0.0, "loss.name": "focal"})
    np.testing.assert_allclose(losses.build_loss(c.loss, w)(logits, labels), xent, rtol=1e-6)


def _take(it, n):
    return [next(it).tolist() for _ in range(n)]


def test_balanced_sampler_epochs_are_balanced_seeded_and_as_long_as_the_split():
    it = iter(balanced_index_dataset(LABELS, 8, seed=3))
    epochs = np.array(_take(it, 15)).reshape(3, 40)  # 3 epochs of 40 = 5 batches each
    for e in epochs:
        counts = np.bincount(LABELS[e], minlength=3)
        assert counts.max() - counts.min() <= 1 and counts.sum() == 40
        assert len(set(e[LABELS[e] == 2].tolist())) == 4  # every minority image is used
    assert not np.array_equal(epochs[0], epochs[1])  # redrawn every epoch
    assert (
        _take(iter(balanced_index_dataset(LABELS, 8, seed=3)), 15) == epochs.reshape(15, 8).tolist()
    )
    assert (
        _take(iter(balanced_index_dataset(LABELS, 8, seed=4)), 5)
        != epochs[0].reshape(5, 8).tolist()
    )


@pytest.mark.parametrize("sampler", ["balanced", "shuffle"])
def test_a_restored_sampler_continues_identically(sampler):
    it = iter(index_dataset(sampler, LABELS, 6, seed=1))
    _take(it, 9)  # into the second epoch, mid-way
    state = it.get_state()
    expected = _take(it, 20)
    resumed = iter(index_dataset(sampler, LABELS, 6, seed=1))
    resumed.set_state(state)
    assert _take(resumed, 20) == expected


def _train_split(groups=True):
    rng = np.random.default_rng(0)
    # each image constant, its value 10 * class + index: blends stay inside their class's range
    values = np.array([10.0 * c + i % 5 for i, c in enumerate(LABELS)], np.float32)
    images = np.broadcast_to(values[:, None, None, None], (40, 4, 4, 1)).copy()
    images += rng.normal(0, 0.01, images.shape).astype(np.float32)
    ids = np.array([f"p{i // 2}" for i in range(40)]) if groups else None
    return Split(images, LABELS.astype(np.int32), ids)


def test_smote_balances_the_classes_with_blends_of_the_same_class():
    split = _train_split()
    out, made = oversample(split, "smote(k=3)", seed=0)
    assert made == {1: 24, 2: 26}
    assert np.bincount(out.labels).tolist() == [30, 30, 30]
    np.testing.assert_array_equal(out.images[:40], split.images)  # the real images come first
    synth, synth_labels = out.images[40:].mean((1, 2, 3)), out.labels[40:]
    for c in (1, 2):
        real = split.images[split.labels == c].mean((1, 2, 3))
        assert real.min() - 0.05 <= synth[synth_labels == c].min()
        assert synth[synth_labels == c].max() <= real.max() + 0.05
    new_ids = out.groups[40:]
    assert len(set(new_ids)) == 50 and not set(new_ids) & set(split.groups)
    assert all(g.startswith("smote:") for g in new_ids)
    again, _ = oversample(split, "smote(k=3)", seed=0)
    np.testing.assert_array_equal(again.images, out.images)
    other, _ = oversample(split, "smote(k=3)", seed=1)
    assert not np.array_equal(other.images, out.images)
    assert oversample(_train_split(groups=False), "smote()", 0)[0].groups is None
    assert oversample(split, "", 0) == (split, {})


def test_bad_imbalance_config_is_one_clear_error():
    for key, value, match in [
        ("data.sampler", "balance", "config.data.sampler must be one of shuffle, balanced"),
        ("data.oversample", "smote(k=0)", "k \\(neighbours\\) must be a positive integer"),
        ("data.oversample", "smoth()", "Did you mean 'smote'"),
        ("loss.class_weights", "effectve", "none, balanced, effective"),
        ("loss.effective_beta", 1.0, "effective_beta=1.0 must be in \\[0, 1\\) \\(0.99-0.9999"),
        ("loss.focal_gamma", -1.0, "focal_gamma=-1.0 must be at least 0"),
        ("data.fold", 3, "fold=3 is out of range"),
    ]:
        changes = {key: value, **({"data.num_folds": 3} if key == "data.fold" else {})}
        with pytest.raises(ConfigError, match=match):
            validate(tiny_config(**changes))
    single = Split(np.zeros((3, 2, 2, 1), np.float32), np.array([0, 0, 1], np.int32))
    with pytest.raises(DataError, match="class 1 has 1 training image"):
        oversample(single, "smote()", 0)


def test_balanced_sampler_smote_focal_and_effective_weights_end_to_end(tmp_path):
    # 128 phantom images in 3 near-equal classes: SMOTE tops the smaller ones up by an image
    config = tiny_config(
        **{
            "data.sampler": "balanced",
            "data.oversample": "smote(k=3)",
            "data.num_classes": 3,
            "loss.name": "focal",
            "loss.class_weights": "effective",
        }
    )
    results = train_and_evaluate(config, str(tmp_path))
    assert results["val"]["num_examples"] == 64 and results["test"]["num_examples"] == 64
    summary = json.loads((tmp_path / "data_summary.json").read_text())
    assert summary["split_method"] == "official"
    assert sum(summary["oversample"]["synthetic_train_images"].values()) > 0
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "split" not in x]
    assert train[-1]["step"] == 12 and np.isfinite(train[-1]["loss"])
