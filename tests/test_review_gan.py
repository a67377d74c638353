"""GAN over-sampling (config.data.oversample="gan(...)"): the conditional generator, its
determinism and cache, the two-sample tests, and the end-to-end run with synthetic images in
the training split only."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.configs.loader import load_config
from medjax.data.generative import gan as gan_lib
from medjax.data.generative import oversample as gan_oversample
from medjax.data.generative.quality import c2st, nn1_accuracy
from medjax.data.imbalance import oversample, oversample_recorded
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError
from medjax.train.loop import train_and_evaluate
from medjax.train.validate import validate

from .conftest import tiny_config

TINY = "gan(steps=3, batch_size=8, width=4, latent=8, min_images=4)"


def _split(counts=(24, 8), size=8, groups=True):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    images = rng.uniform(-1, 1, (len(labels), size, size, 1)).astype(np.float32)
    ids = np.array([f"p{i}" for i in range(len(labels))]) if groups else None
    return Split(images, labels, ids)


def test_generator_output_has_the_image_shape_and_range_and_follows_the_class():
    gen = gan_lib.Generator((28, 28, 1), num_classes=2, width=4)
    z = jax.random.normal(jax.random.key(0), (3, 8))
    params = gen.init(jax.random.key(1), z, jnp.zeros(3, jnp.int32))
    out0 = gen.apply(params, z, jnp.zeros(3, jnp.int32))
    out1 = gen.apply(params, z, jnp.ones(3, jnp.int32))
    assert out0.shape == (3, 28, 28, 1)
    assert float(jnp.abs(out0).max()) <= 1.0
    # the same z with another class gives another image
    assert float(jnp.abs(out0 - out1).mean()) > 1e-3
    disc = gan_lib.Discriminator(num_classes=2, width=4)
    dp = disc.init(jax.random.key(2), out0, jnp.zeros(3, jnp.int32))
    assert disc.apply(dp, out0, jnp.zeros(3, jnp.int32)).shape == (3,)


def test_training_and_sampling_are_pure_functions_of_the_seed():
    s = _split()
    spec = gan_lib.GanSpec(steps=3, batch_size=8, width=4, latent=8)
    a = gan_lib.train_gan(s.images, s.labels, 2, spec, seed=0)
    b = gan_lib.train_gan(s.images, s.labels, 2, spec, seed=0)
    c = gan_lib.train_gan(s.images, s.labels, 2, spec, seed=1)
    same = jax.tree.map(np.array_equal, a.params, b.params)
    assert all(jax.tree.leaves(same))
    np.testing.assert_array_equal(gan_lib.sample(a, 1, 5, 0), gan_lib.sample(b, 1, 5, 0))
    assert not np.array_equal(gan_lib.sample(a, 1, 5, 0), gan_lib.sample(c, 1, 5, 0))
    assert not np.array_equal(gan_lib.sample(a, 1, 5, 0), gan_lib.sample(a, 1, 5, 1))


def test_gan_fills_the_minority_class_after_the_real_images():
    split = _split()
    out, made, info = oversample_recorded(split, TINY, seed=0)
    assert made == {1: 16}
    assert np.bincount(out.labels).tolist() == [24, 24]
    np.testing.assert_array_equal(out.images[:32], split.images)
    assert out.images[32:].min() >= -1 and out.images[32:].max() <= 1  # the real range
    assert out.groups[32:].tolist() == [f"gan:1:{i}" for i in range(16)]
    assert set(info["quality"][1]) == {"c2st_accuracy", "nn1_accuracy"}
    assert info["generator"]["steps"] == 3
    assert oversample(_split(groups=False), TINY, 0)[0].groups is None
    assert oversample(_split((8, 8)), TINY, 0)[1] == {}  # balanced: nothing to make


def test_a_second_run_reads_the_cached_images_instead_of_training(tmp_path, monkeypatch):
    split = _split()
    first, _, _ = oversample_recorded(split, TINY, 0, str(tmp_path))
    assert len(list(tmp_path.glob("gan-*/samples.npz"))) == 1

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(gan_oversample, "train_gan", no_training)
    again, _, info = oversample_recorded(split, TINY, 0, str(tmp_path))
    np.testing.assert_array_equal(again.images, first.images)
    assert 1 in info["quality"]  # class keys are ints again after the JSON round trip
    with pytest.raises(AssertionError, match="trained again"):  # another seed: another entry
        oversample_recorded(split, TINY, 1, str(tmp_path))


def test_c2st_and_1nn_are_half_on_one_distribution_and_far_on_different_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 200, 16))
    assert abs(c2st(a, b) - 0.5) < 0.1
    assert abs(nn1_accuracy(a, b) - 0.5) < 0.1
    assert c2st(a, b + 1.5) > 0.95 and nn1_accuracy(a, b + 1.5) > 0.9
    # near-copies of the real images: 1-NN flags memorisation, well under chance
    assert nn1_accuracy(a, a + 1e-3) < 0.05


def test_end_to_end_synthetic_images_are_counted_and_train_only(tmp_path):
    config = tiny_config(
        **{"data.num_classes": 3, "data.oversample": TINY, "data.cache_dir": str(tmp_path / "c")}
    )
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert results["val"]["num_examples"] == 64 and results["test"]["num_examples"] == 64
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    record = summary["oversample"]
    real = summary["train"]["class_counts"]
    made = record["synthetic_train_images"]
    assert record["synthetic_from_index"] == summary["train"]["images"] == 128
    assert sum(made.values()) > 0
    assert {real[k] + made.get(k, 0) for k in real} == {max(real.values())}
    assert set(record["quality"]) == set(made)
    assert len(list((tmp_path / "c" / "oversample").glob("gan-*"))) == 1


def test_bad_gan_config_and_data_are_one_clear_error():
    for spec, match in [
        ("gan(stepz=5)", "no argument 'stepz'.* Did you mean 'steps'"),
        ("gan(steps=0)", "steps must be an integer of at least 1, not 0"),
        ("gan(loss='wgan')", "loss must be one of hinge, bce, not 'wgan'"),
        ("gan(lr=2)", "lr must be a number in \\(0, 1\\), not 2"),
        ("gann()", "Did you mean 'gan'"),
    ]:
        with pytest.raises(ConfigError, match=match):
            validate(tiny_config(**{"data.oversample": spec}))
    with pytest.raises(DataError, match="class 1 has 8 training images, too few"):
        oversample(_split(), "gan(min_images=9)", 0)
    with pytest.raises(DataError, match="multiples of 4.*not 6x6"):
        oversample(_split(size=6), TINY, 0)
    volume = Split(np.zeros((12, 4, 4, 4, 1), np.float32), np.repeat([0, 1], [8, 4]))
    with pytest.raises(DataError, match="generates 2-D images"):
        oversample(volume, TINY, 0)
    multi = Split(np.zeros((12, 8, 8, 1), np.float32), np.zeros((12, 3), np.int32))
    with pytest.raises(DataError, match="one class per image.*multi-label"):
        oversample(multi, TINY, 0)


def test_the_config_file_gives_each_method_of_the_comparison():
    path = "experiments/review/gan_oversample.py"
    assert load_config(f"{path}:runlocal,data=phantom").data.oversample.startswith("gan(steps=20")
    assert load_config(f"{path}:method=smote").data.oversample == "smote(k=5)"
    weights = load_config(f"{path}:method=weights")
    assert weights.loss.class_weights == "balanced" and weights.data.oversample == ""
    none = load_config(f"{path}:method=none")
    assert none.loss.class_weights == "none" and none.data.oversample == ""
    with pytest.raises(ConfigError, match="method='adasyn' is not one of gan, smote"):
        load_config(f"{path}:method=adasyn")
