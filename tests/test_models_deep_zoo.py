"""Exact reference parameter counts of ResNet-18/34/50/101, DenseNet-121/169/201, Inception-v3
and Xception; for all but ResNet-18/34 (tests/test_models_and_metrics.py) also small-image
stems, config-driven activation/norm/dtype, named stage features.

Shapes and counts come from jax.eval_shape (no compute); only a few 28 px, batch-1 forward
passes run for real."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.models import build_model, densenet, inception, resnet_bottleneck, xception  # noqa: F401

FOUR_STAGES = ("stem", "stage1", "stage2", "stage3", "stage4", "pooled")
STAGES = {
    "resnet50": FOUR_STAGES,
    "resnet101": FOUR_STAGES,
    "densenet121": FOUR_STAGES,
    "densenet169": FOUR_STAGES,
    "densenet201": FOUR_STAGES,
    "inception_v3": ("stem", "stage1", "stage2", "stage3", "pooled"),
    "xception": FOUR_STAGES,
}
NAMES = list(STAGES)


def _cfg(name, **changes):
    c = get_base_config().model
    c.name = name
    for k, v in changes.items():
        c[k] = v
    return c


def _shapes(model, size, channels=3, batch=1, mutable=False):
    """eval_shape of (init variables, apply output) on a zero batch."""
    x = jnp.zeros((batch, size, size, channels))

    def run():
        v = model.init(jax.random.key(0), x, train=False)
        if mutable:
            return v, model.apply(v, x, train=False, mutable=["intermediates"])
        return v, model.apply(v, x, train=False)

    return jax.eval_shape(run)


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


# torchvision (1000 classes; BN weight+bias counted, running stats not). The README's model
# table quotes these (tests/test_docs.py).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "inception_v3": 23_834_568,  # aux_logits=False
}
# Keras' Xception: count_params() includes BatchNorm's moving mean/variance (our batch_stats);
# its trainable count is our params.
KERAS_XCEPTION = {"params": 22_855_952, "params_and_batch_stats": 22_910_480}


@pytest.mark.parametrize(
    "name, size",
    [(n, 299 if n == "inception_v3" else 224) for n in TORCHVISION_PARAMS]
    + [("inception_v3", 224)],  # the count does not depend on the input size
)
def test_parameter_counts_match_torchvision(name, size):
    v, _ = _shapes(build_model(_cfg(name, stem="imagenet"), 1000, size), size)
    assert _count(v["params"]) == TORCHVISION_PARAMS[name]


def test_xception_matches_keras_counts():
    v, _ = _shapes(build_model(_cfg("xception", stem="imagenet"), 1000, 299), 299)
    assert _count(v["params"]) == KERAS_XCEPTION["params"]
    assert (
        _count(v["params"]) + _count(v["batch_stats"]) == KERAS_XCEPTION["params_and_batch_stats"]
    )
    p = v["params"]
    assert p["block2_sepconv1"]["depthwise"]["kernel"].shape == (3, 3, 1, 64)
    assert p["block14_sepconv2"]["pointwise"]["kernel"].shape == (1, 1, 1536, 2048)
    assert "bias" not in p["block1_conv1"] and p["head"]["bias"].shape == (1000,)


def test_reference_layer_names_for_weight_import():
    v, _ = _shapes(build_model(_cfg("densenet121", stem="imagenet"), 1000, 224), 224)
    p = v["params"]
    assert p["block4_layer16"]["conv2"]["kernel"].shape == (3, 3, 128, 32)
    assert p["transition3"]["conv"]["kernel"].shape == (1, 1, 1024, 512)
    assert [x.shape for x in jax.tree.leaves(p["final_norm"])] == [(1024,), (1024,)]
    v, _ = _shapes(build_model(_cfg("inception_v3", stem="imagenet"), 1000, 299), 299)
    p = v["params"]
    assert p["Mixed_6b"]["branch7x7dbl_2"]["conv"]["kernel"].shape == (7, 1, 128, 128)
    assert p["Mixed_7c"]["branch3x3dbl_3a"]["conv"]["kernel"].shape == (1, 3, 384, 384)
    v, _ = _shapes(build_model(_cfg("resnet50", stem="imagenet"), 1000, 224), 224)
    b = v["params"]["stage2_block0"]
    assert b["conv2"]["kernel"].shape == (3, 3, 128, 128)  # v1.5: the stride sits here
    assert b["proj"]["kernel"].shape == (1, 1, 256, 512)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_28px_auto_stem_gives_logits_and_stage_features(name, channels):
    model = build_model(_cfg(name), 7, 28)
    v, (logits, state) = _shapes(model, 28, channels, batch=2, mutable=True)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32
    feats = state["intermediates"]
    assert set(feats) == set(STAGES[name])
    last = feats[STAGES[name][-2]][0]
    assert last.shape[1] >= 2 and last.shape[2] >= 2  # the small stem keeps a spatial map


@pytest.mark.parametrize("name", NAMES)
def test_input_too_small_for_the_imagenet_stem_names_the_model(name):
    with pytest.raises(ConfigError, match=f"{name}.*stem='small'"):
        build_model(_cfg(name, stem="imagenet"), 2, 16)
    with pytest.raises(ConfigError, match="stem"):
        build_model(_cfg(name, stem="tiny"), 2, 28)


def test_inception_needs_75px_with_the_imagenet_stem():
    with pytest.raises(ConfigError, match="inception_v3.*at least 75 px"):
        build_model(_cfg("inception_v3", stem="imagenet"), 2, 74)
    _, logits = _shapes(build_model(_cfg("inception_v3", stem="imagenet"), 2, 75), 75)
    assert logits.shape == (1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_norm_activation_and_dtype_come_from_the_config(name):
    v, _ = _shapes(build_model(_cfg(name, norm="none"), 3, 28), 28)
    assert "batch_stats" not in v
    v, _ = _shapes(build_model(_cfg(name, norm="group"), 3, 28), 28)
    assert "batch_stats" not in v and _count(v["params"]) > 0
    model = build_model(_cfg(name, activation="tanh"), 3, 28)
    x = jnp.zeros((1, 28, 28, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, x))(variables))
    assert "tanh" in jaxpr
    v, logits = _shapes(build_model(_cfg(name, dtype="bfloat16"), 3, 28), 28)
    assert logits.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))


def _lecun_variables(shapes):
    """Variables of the given shapes without running model.init, whose jit-compiled random
    initialisers take minutes on two CPU cores: LeCun-normal kernels, unit scales and
    variances, zero biases and means."""
    rng = np.random.default_rng(0)

    def make(path, s):
        key = jax.tree_util.keystr(path)
        if "kernel" in key:
            return jnp.asarray(rng.normal(0, np.prod(s.shape[:-1]) ** -0.5, s.shape), s.dtype)
        return (jnp.ones if "scale" in key or "var" in key else jnp.zeros)(s.shape, s.dtype)

    return jax.tree_util.tree_map_with_path(make, shapes)


@pytest.mark.parametrize("name", ["densenet121", "xception"])
def test_real_forward_on_a_tiny_input(name):
    x = jax.random.normal(jax.random.key(1), (1, 28, 28, 1))
    outs = {}
    for act in ("relu", "gelu"):
        model = build_model(_cfg(name, activation=act), 3, 28)
        variables = _lecun_variables(jax.eval_shape(lambda m=model: m.init(jax.random.key(0), x)))
        apply = jax.jit(lambda v, m=model: m.apply(v, x, mutable=["intermediates"]))
        logits, state = apply(variables)
        assert set(state["intermediates"]) == set(STAGES[name])
        assert np.isfinite(np.asarray(logits)).all()
        outs[act] = np.asarray(logits)
    assert not np.allclose(outs["relu"], outs["gelu"], atol=1e-3)
