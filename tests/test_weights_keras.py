"""Keras weight import (medjax.weights.keras_file, keras_apps) against Keras' own outputs.

tools/keras_reference.py (run once per module, in a subprocess with Keras' numpy backend: it
builds models ~50x faster than the jax backend) builds keras.applications models with random
weights and batch-norm statistics, saves each as `.keras` and legacy `.h5`, and writes an input
and Keras' logits for it; medjax imports both files and must give the same logits.
Max |logit diff| / max |logit| measured on CPU (jax 0.12, keras 3.15.1), the same for both
files: resnet50 3.5e-5 (gray stem 6.2e-5), vgg16 5.3e-7, densenet121 4.9e-6, mobilenet_v2
(224 px) 5.5e-6, efficientnet_b0 (72 px: odd and even maps meet stride-2 convs) 4.0e-6.
Checked once outside the suite: resnet101 3.6e-5, vgg19 4.2e-7, densenet169 3.3e-6,
densenet201 1.1e-5, efficientnet_b1..b3 1.8e-5, 2.2e-5, 7.3e-6 (32 px), b4..b7 5.6e-6,
1.6e-5, 1.8e-5, 7.7e-6 (96 px; at 32 px their 1x1 maps make the random networks too
ill-conditioned to compare).
"""

import functools
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tracemalloc
import zipfile

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.errors import ConfigError, DataError
from medjax.models import build_model
from medjax.weights import load_pretrained, read_keras_file

ROOT = pathlib.Path(__file__).resolve().parents[1]
# (medjax model, image size, activation); keras.applications' own activations.
CASES = [
    ("resnet50", 64, "relu"),
    ("vgg16", 32, "relu"),
    ("densenet121", 64, "relu"),
    ("mobilenet_v2", 224, "relu6"),
    ("efficientnet_b0", 72, "silu"),
]
CLASSES = 7  # tools/keras_reference.py's default
# Max |logit diff| / max |logit|. Random networks are ill-conditioned: Keras' own float32 logits
# for ResNet50 are 5.7e-5 from its float64 ones (medjax's 5.3e-5); a wrong mapping gives O(1).
TOLERANCE = 2e-4


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("keras")
    models = [f"{name}:{size}" for name, size, _ in CASES] + ["mobilenet_v2:64:0.35"]
    command = [sys.executable, str(ROOT / "tools" / "keras_reference.py"), "--out", str(out)]
    command += [*models, "--gray", "resnet50", "--weights-h5", "mobilenet_v2"]
    env = os.environ | {"KERAS_BACKEND": "numpy"}
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    if run.returncode:
        pytest.fail(f"tools/keras_reference.py failed:\n{run.stderr[-4000:]}")
    return out


def build(name, size, channels=3, activation="relu", classes=CLASSES, layout="keras"):
    cfg = get_base_config().model
    cfg.name, cfg.stem, cfg.activation, cfg.layout = name, "imagenet", activation, layout
    return build_model(cfg, classes, size), jnp.zeros((1, size, size, channels))


def abstract(model, x):
    return jax.eval_shape(functools.partial(model.init, jax.random.key(0), x, train=False))


def load(path, name, like):
    return load_pretrained(str(path), name, like, source="keras", layout="keras")


def relative_error(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name,size,activation", CASES, ids=[c[0] for c in CASES])
def test_logits_match_keras(ref, name, size, activation):
    model, x = build(name, size, activation=activation)
    like = abstract(model, x)
    image = np.load(ref / f"{name}_input.npy")
    want = np.load(ref / f"{name}_logits.npy")
    # The logits must depend on the input, not only on the biases, to test anything.
    assert np.abs(want[0] - want[1]).max() > 0.03 * np.abs(want).max()
    if name.startswith("efficientnet"):  # Keras' in-model Rescaling(1/255) and Normalization
        mean, var = np.load(ref / f"{name}_norm.npy")
        image = (image / 255 - mean) / np.sqrt(var)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    for suffix in (".keras", ".h5"):
        variables, notes = load(ref / f"{name}{suffix}", name, like)
        assert not any("head" in n for n in notes)
        with jax.default_matmul_precision("highest"):
            got = np.asarray(apply(variables, jnp.asarray(image)))
        error = relative_error(got, want)
        print(f"{name}{suffix}: max |logit diff| / max |logit| = {error:.2g}")
        assert error < TOLERANCE, (suffix, error)
    if name.startswith("efficientnet"):
        (note,) = [n for n in notes if "normalises its input" in n]
        said = re.search(r"mean \(([^)]*)\), std \(([^)]*)\)", note)
        for text, value in zip(said.groups(), (255 * mean, 255 * np.sqrt(var)), strict=True):
            np.testing.assert_allclose([float(v) for v in text.split(",")], value, rtol=1e-5)


def test_grayscale_stem_sums_rgb_kernel(ref):
    model, x = build("resnet50", 64, channels=1)
    variables, notes = load(ref / "resnet50.keras", "resnet50", abstract(model, x))
    assert any("summed over its input channels" in n for n in notes)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(model.apply(variables, np.load(ref / "resnet50_gray_input.npy")))
    error = relative_error(got, np.load(ref / "resnet50_gray_logits.npy"))
    print(f"resnet50 gray: {error:.2g}")
    assert error < TOLERANCE


def with_head(like, classes, width):
    head = {"kernel": np.full((width, classes), 0.25, np.float32), "bias": np.zeros(classes)}
    like["params"]["head"] = head
    return like


def test_other_class_count_and_headless_files_keep_a_fresh_head(ref, tmp_path):
    model, x = build("mobilenet_v2", 64, classes=3)
    with pytest.raises(ValueError, match="initialised values"):
        load(ref / "mobilenet_v2.keras", "mobilenet_v2", abstract(model, x))
    like = with_head(abstract(model, x), 3, 1280)
    variables, notes = load(ref / "mobilenet_v2.keras", "mobilenet_v2", like)
    assert any("head re-initialised" in n and "7 classes, the model 3" in n for n in notes)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], 0.25)
    # A model saved with include_top=False has no "predictions" layer.
    headless = tmp_path / "notop.weights.h5"
    shutil.copy(ref / "mobilenet_v2.weights.h5", headless)
    with h5py.File(headless, "a") as f:
        (path,) = [k for k in f["layers"] if f[f"layers/{k}/vars"].attrs["name"] == "predictions"]
        del f[f"layers/{path}"]
    variables, notes = load(headless, "mobilenet_v2", like)
    assert any("head freshly initialised: the file has none" in n for n in notes)


def test_mismatches_name_the_parameter_both_shapes_and_the_fix(ref):
    model, x = build("mobilenet_v2", 64)
    with pytest.raises(
        ConfigError,
        match=r"params/stem_conv/kernel has shape \(3, 3, 3, 32\) in the model but "
        r"\(3, 3, 3, 16\) in the file.*layout = 'keras'.*width_multiplier",
    ):
        load(ref / "mobilenet_v2_a0.35.keras", "mobilenet_v2", abstract(model, x))
    model, x = build("resnet101", 64)
    with pytest.raises(ConfigError, match=r"stage3_block\d+/.*not in the file.*'resnet50'"):
        load(ref / "resnet50.h5", "resnet101", abstract(model, x))
    model, x = build("efficientnet_b0", 64)
    with pytest.raises(ConfigError, match=r"lacks layer 'stem_conv'.*looks like densenet121"):
        load(ref / "densenet121.keras", "efficientnet_b0", abstract(model, x))
    with pytest.raises(ConfigError, match="no Keras weight import for model 'resnet18'"):
        load(ref / "resnet50.keras", "resnet18", {})


def test_the_layout_must_match_the_source(ref):
    model, x = build("resnet50", 64, layout="torchvision")
    with pytest.raises(ConfigError, match=r"set config.model.layout = 'keras'"):
        load_pretrained(
            str(ref / "resnet50.keras"), "resnet50", abstract(model, x), "keras", "torchvision"
        )
    with pytest.raises(ConfigError, match=r"set config.model.layout = 'torchvision'"):
        load_pretrained(str(ref / "resnet50.keras"), "resnet50", {}, "torchvision", "keras")
    with pytest.raises(ConfigError, match=r"config.model.layout must be one of"):
        build("resnet50", 64, layout="tf")
    with pytest.raises(ConfigError, match=r"unknown pretrained-weights source 'tf'"):
        load_pretrained(str(ref / "resnet50.keras"), "resnet50", {}, "tf")


def test_reader_formats_agree(ref, tmp_path):
    files = [ref / f"mobilenet_v2{s}" for s in (".keras", ".h5", ".weights.h5")]
    first, *others = [read_keras_file(str(p)) for p in files]
    assert first.model_name.startswith("mobilenetv2_") and len(first.layers) == 105
    for other in others:
        assert other.layers.keys() == first.layers.keys()
        for name, arrays in first.layers.items():
            for a, b in zip(arrays, other.layers[name], strict=True):
                np.testing.assert_array_equal(a, b)
    # tf.keras' save_weights("x.h5"), the layout of keras.applications' downloaded ImageNet
    # files: layer groups at the root, variable names ending in ":0".
    tf2 = tmp_path / "tf2.h5"
    with h5py.File(files[1], "r") as src, h5py.File(tf2, "w") as dst:
        weights = src["model_weights"]
        dst.attrs["layer_names"] = weights.attrs["layer_names"]
        for layer in weights.attrs["layer_names"]:
            names = [
                f"{n.decode() if isinstance(n, bytes) else n}:0"
                for n in weights[layer].attrs["weight_names"]
            ]
            group = dst.create_group(layer)
            group.attrs["weight_names"] = [n.encode() for n in names]
            for n in names:
                group[n] = weights[layer][n.removesuffix(":0")][()]
    tf2_weights = read_keras_file(str(tf2))
    assert tf2_weights.layers.keys() == first.layers.keys() and not tf2_weights.configs
    np.testing.assert_array_equal(tf2_weights.layers["Conv1"][0], first.layers["Conv1"][0])
    # Without the layer-name attributes: names from config.json in a .keras archive ...
    unnamed = tmp_path / "unnamed.keras"
    h5 = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(files[0]) as src:
        h5.write_bytes(src.read("model.weights.h5"))
    with h5py.File(h5, "a") as f:
        groups = []
        f.visit(lambda k: groups.append(k) if k.endswith("/vars") else None)
        for k in groups:
            del f[k].attrs["name"]
    with zipfile.ZipFile(files[0]) as src, zipfile.ZipFile(unnamed, "w") as dst:
        for item in src.namelist():
            data = h5.read_bytes() if item == "model.weights.h5" else src.read(item)
            dst.writestr(item, data)
    renamed = read_keras_file(str(unnamed))
    assert renamed.layers.keys() == first.layers.keys()
    np.testing.assert_array_equal(
        renamed.layers["block_16_project"][0], first.layers["block_16_project"][0]
    )
    # ... and a refusal for a bare .weights.h5.
    with pytest.raises(DataError, match=r"model.weights.h5.*no layer names"):
        read_keras_file(str(h5))


def test_unreadable_files_name_the_file(ref, tmp_path):
    data = (ref / "mobilenet_v2.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "cut.h5").write_bytes((ref / "mobilenet_v2.h5").read_bytes()[:100_000])
    (tmp_path / "text.h5").write_text("not weights")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("config.json", "{}")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    model, x = build("mobilenet_v2", 64)
    like = abstract(model, x)
    for name, problem in [
        ("cut.keras", r"truncated or not a complete Keras \.keras archive \([\d,]+ bytes\)"),
        ("cut.h5", "damaged or truncated"),
        ("text.h5", "neither a Keras `.keras` zip archive nor an HDF5"),
        ("other.keras", "without model.weights.h5"),
        ("empty.h5", "without Keras weights"),
        ("missing.keras", "does not exist"),
    ]:
        with pytest.raises(DataError, match=problem) as info:
            load(tmp_path / name, "mobilenet_v2", like)
        assert name in str(info.value)


def test_shapes_are_checked_before_datasets_are_read(ref, tmp_path):
    """Guards against reading a dataset before its shape is checked against the model, or one
    the model does not take: the stem's kernel, then the head's, are replaced by unwritten
    datasets of ~220 MiB (the old reader read both in full, as HDF5 fill values)."""
    model, x = build("mobilenet_v2", 64)
    like = with_head(abstract(model, x), 3, 1280)
    for layer, shape in [("Conv1", (3, 3, 3, 1 << 21)), ("predictions", (1280, 45_000))]:
        path = tmp_path / f"{layer}.weights.h5"
        shutil.copy(ref / "mobilenet_v2.weights.h5", path)
        with h5py.File(path, "a") as f:
            (key,) = [k for k in f["layers"] if f[f"layers/{k}/vars"].attrs["name"] == layer]
            del f[f"layers/{key}/vars/0"]
            f.create_dataset(f"layers/{key}/vars/0", shape=shape, dtype=np.float32)
        tracemalloc.start()
        try:
            if layer == "Conv1":
                with pytest.raises(
                    ConfigError, match=r"stem_conv/kernel has shape \(3, 3, 3, 32\)"
                ):
                    load(path, "mobilenet_v2", like)
            else:  # a head of another shape is re-initialised, so never read
                _, notes = load(path, "mobilenet_v2", like)
                assert any("head re-initialised" in n for n in notes)
        finally:
            used = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        print(f"{layer} of {np.prod(shape) * 4 / 2**20:.0f} MiB: peak {used / 2**20:.1f} MiB")
        assert used < 64 * 2**20
