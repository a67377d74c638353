"""VGG, AlexNet, MobileNetV2 and EfficientNet: reference parameter counts, small inputs, config.

Shapes and counts come from jax.eval_shape (no compute); only a few tests run a tiny forward.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import medjax.models  # noqa: F401
from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.models import alexnet, efficientnet, mobilenet, vgg  # noqa: F401  (registers them)
from medjax.models.layers import Identity
from medjax.models.registry import build_model

VGGS = ["vgg11", "vgg16", "vgg19", "vgg11_bn", "vgg16_bn", "vgg19_bn"]
EFFICIENTNETS = [f"efficientnet_b{i}" for i in range(8)] + ["efficientnet_v2_s"]
ALL = VGGS + ["alexnet", "mobilenet_v2"] + EFFICIENTNETS
# One of each family, for the (still eval_shape-only) config tests.
FAMILIES = ["vgg11_bn", "alexnet", "mobilenet_v2", "efficientnet_b0", "efficientnet_v2_s"]

# torchvision's counts at 1000 classes (weights incl. BN scale/bias, not running statistics).
TORCHVISION_PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "alexnet": 61_100_840,
    "mobilenet_v2": 3_504_872,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnet_v2_s": 21_458_488,
}


def _cfg(name, **kw):
    c = get_base_config().model
    c.name = name
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def _shapes(model, size, channels=3, batch=2):
    """Abstract variables, logits and intermediates of init + apply at (batch, size, size, ch)."""
    x = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    logits, state = jax.eval_shape(
        lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x
    )
    return variables, logits, state["intermediates"]


def _count(params):
    return sum(p.size for p in jax.tree.leaves(params))


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_torchvision(name):
    model = build_model(_cfg(name, stem="imagenet"), 1000, 224)
    variables, logits, _ = _shapes(model, 224, batch=1)
    assert logits.shape == (1, 1000)
    assert _count(variables["params"]) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize(("name", "channels"), [(n, 1) for n in ALL] + [(n, 3) for n in FAMILIES])
def test_28px_inputs_with_the_auto_stem(name, channels):
    _, logits, _ = _shapes(build_model(_cfg(name), 7, 28), 28, channels)
    assert logits.shape == (2, 7) and logits.dtype == jnp.float32


@pytest.mark.parametrize("name", FAMILIES + ["vgg16"])
def test_imagenet_layout_too_small_fails_at_config_time(name):
    with pytest.raises(ConfigError, match=f"{name}.*stem='small'"):
        build_model(_cfg(name, stem="imagenet"), 2, 16)


def test_unknown_stem_is_refused():
    for name in FAMILIES:
        with pytest.raises(ConfigError, match="config.model.stem"):
            build_model(_cfg(name, stem="tiny"), 2, 28)


def test_smallest_imagenet_inputs_work():
    # VGG at 32 px: a 1x1 map, copied to 7x7 by the adaptive pool as torch does.
    assert _shapes(build_model(_cfg("vgg11", stem="imagenet"), 3, 32), 32)[1].shape == (2, 3)
    assert _shapes(build_model(_cfg("alexnet", stem="imagenet"), 3, 64), 64)[1].shape == (2, 3)
    for name in ("mobilenet_v2", "efficientnet_b0"):
        assert _shapes(build_model(_cfg(name, stem="imagenet"), 3, 32), 32)[1].shape == (2, 3)


STAGES = {
    "vgg16_bn": [f"stage{i}" for i in range(1, 6)] + ["pooled"],
    "alexnet": ["stage1", "stage2", "stage3", "pooled"],
    "mobilenet_v2": ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top", "pooled"],
    "efficientnet_b3": ["stem"] + [f"stage{i}" for i in range(1, 8)] + ["top", "pooled"],
    "efficientnet_v2_s": ["stem"] + [f"stage{i}" for i in range(1, 7)] + ["top", "pooled"],
}


@pytest.mark.parametrize("name", list(STAGES))
def test_named_intermediates_and_small_layout_downsampling(name):
    _, _, inter = _shapes(build_model(_cfg(name), 3, 28), 28)
    assert sorted(inter) == sorted(STAGES[name])
    # The small layouts downsample 8x: VGG pools three times (28 -> 3), AlexNet's last conv
    # map is sown before its third pool (28 -> 13 -> 6), stride-2 convs round up (28 -> 4).
    size = {"vgg16_bn": 3, "alexnet": 6}.get(name, 4)
    assert inter[STAGES[name][-2]][0].shape[1:3] == (size, size)
    assert inter["pooled"][0].dtype == jnp.float32


def test_plain_vgg_and_alexnet_have_no_norm_bn_variants_follow_the_config():
    def collections(name, norm):
        return set(_shapes(build_model(_cfg(name, norm=norm), 2, 28), 28)[0])

    assert collections("vgg11", "batch") == {"params"}
    assert collections("alexnet", "batch") == {"params"}
    assert collections("vgg11_bn", "batch") == {"params", "batch_stats"}
    assert collections("vgg11_bn", "none") == {"params"}


@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "alexnet"])
def test_norm_comes_from_the_config(name):
    def tree(norm):
        variables = _shapes(build_model(_cfg(name, norm=norm), 2, 28), 28)[0]
        return variables, jax.tree_util.tree_structure(variables["params"])

    batch, group, none = tree("batch"), tree("group"), tree("none")
    assert "batch_stats" in batch[0] and "batch_stats" not in group[0]
    assert "batch_stats" not in none[0]
    assert batch[1] != group[1] and _count(none[0]["params"]) < _count(batch[0]["params"])


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_compute_gives_float32_logits_and_params(name):
    variables, logits, _ = _shapes(build_model(_cfg(name, dtype="bfloat16"), 3, 28), 28)
    assert logits.dtype == jnp.float32
    assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}


def test_mobilenet_width_multiplier_rounds_to_multiples_of_8():
    assert [mobilenet.make_divisible(v) for v in (32 * 0.35, 16 * 0.5, 24 * 1.4, 320 * 0.75)] == [
        16,
        8,
        32,
        240,
    ]
    params = _shapes(build_model(_cfg("mobilenet_v2", width_multiplier=0.5), 2, 28), 28)[0]
    params = params["params"]
    assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 16)
    assert params["stage7_block0"]["project_conv"]["kernel"].shape[-1] == 160
    assert params["top_conv"]["kernel"].shape[-1] == 1280  # the last width never shrinks
    with pytest.raises(ConfigError, match="width_multiplier"):
        build_model(_cfg("mobilenet_v2", width_multiplier=0.0), 2, 28)


def test_efficientnet_scaling_and_blocks():
    params = _shapes(build_model(_cfg("efficientnet_b7"), 2, 28), 28)[0]["params"]
    # B7: width 2.0 (stem 64), depth 3.1 (ceil(4 * 3.1) = 13 blocks in stage 6), top 4 x 640.
    assert params["stem_conv"]["kernel"].shape[-1] == 64
    assert sum(k.startswith("stage6_") for k in params) == 13
    assert params["top_conv"]["kernel"].shape[-1] == 2560
    # SE squeezes to a quarter of the block input, with biased 1x1 convs.
    se = params["stage2_block0"]["se"]
    assert se["reduce"]["kernel"].shape == (1, 1, 192, 8) and se["reduce"]["bias"].shape == (8,)
    v2 = _shapes(build_model(_cfg("efficientnet_v2_s"), 2, 28), 28)[0]["params"]
    assert set(v2["stage1_block0"]) == {"fused_conv", "fused_norm"}  # expansion 1: one conv
    assert set(v2["stage2_block0"]) == {"fused_conv", "fused_norm", "project_conv", "project_norm"}
    assert "se" in v2["stage4_block0"]
    assert efficientnet.RESOLUTION["efficientnet_b3"] == 300


def test_adaptive_pool_uses_torch_bins():
    x = jnp.arange(5.0).reshape(1, 5, 1, 1) * jnp.ones((1, 5, 5, 1))
    pooled = vgg.adaptive_avg_pool(x, 3)
    # torch bins of 5 -> 3: [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(pooled[0, :, 0, 0], [0.5, 2.0, 3.5])
    assert vgg.adaptive_avg_pool(jnp.ones((1, 1, 1, 2)), 7).shape == (1, 7, 7, 2)


def test_tiny_alexnet_forward_uses_the_configured_activation_and_sows_features():
    def run(activation):
        model = build_model(_cfg("alexnet", activation=activation), 3, 16)
        x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
        variables = model.init(jax.random.key(0), x)
        return model.apply(variables, x, mutable=["intermediates"])

    (relu, state), (gelu, _) = run("relu"), run("gelu")
    assert relu.shape == (2, 3) and bool(jnp.isfinite(relu).all())
    assert not np.allclose(relu, gelu)
    assert state["intermediates"]["stage3"][0].shape == (2, 3, 3, 256)


def _block(kind="mb", act=jax.nn.relu, drop_path=0.0):
    return efficientnet.MBConv(kind, 8, 3, 1, 4, drop_path, act, Identity, jnp.float32)


def test_mbconv_block_activation_and_stochastic_depth():
    x = jax.random.normal(jax.random.key(1), (16, 4, 4, 8))
    variables = _block().init(jax.random.key(0), x, False)
    se = variables["params"]["se"]
    assert se["reduce"]["kernel"].shape == (1, 1, 32, 2) and "bias" in se["expand"]
    relu = _block().apply(variables, x, False)
    assert not np.allclose(relu, _block(act=jax.nn.gelu).apply(variables, x, False))
    # Stochastic depth keeps or drops a sample's whole residual branch, only in training.
    out = _block(drop_path=0.5).apply(variables, x, True, rngs={"dropout": jax.random.key(3)})
    dropped = np.all(np.isclose(out, x), axis=(1, 2, 3))
    assert 0 < dropped.sum() < len(x)
    np.testing.assert_allclose(out[~dropped] - x[~dropped], 2 * (relu - x)[~dropped], atol=1e-5)
    np.testing.assert_allclose(_block(drop_path=0.5).apply(variables, x, False), relu, atol=1e-6)
    fused = _block("fused").init(jax.random.key(0), x, False)["params"]
    assert set(fused) == {"fused_conv", "project_conv"}  # expansion 4: fused kxk, then 1x1


def test_efficientnet_reads_stochastic_depth_from_the_config():
    # `stochastic_depth` is not a base-config key; EfficientNet reads it when present.
    assert build_model(_cfg("efficientnet_b0"), 2, 28).drop_path == 0.0
    assert build_model(_cfg("efficientnet_b0", stochastic_depth=0.2), 2, 28).drop_path == 0.2
