"""Issue 15 item 11: ConvLSTM over slices, the ViT variants (convolutional stem, self-attention
over CNN features), the optimizers the review lists, EfficientNetV2-M/L and the 3D
EfficientNet-B3; each against an independent reference where one exists (numpy equations,
torchvision's parameter counts, lax's grouped convolution, optax-free Nadam), and smoke runs of
the three experiment configs. Tiny shapes; parameter counts via jax.eval_shape (no compute)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from medjax.configs import get_base_config
from medjax.configs.loader import load_config
from medjax.errors import ConfigError
from medjax.models import build_model
from medjax.models.conv3d import depthwise_conv3d
from medjax.models.conv_lstm import ConvLSTMCell
from medjax.train.optimizers import OPTIMIZERS, build_optimizer

from .conftest import ROOT

# torchvision's counts at 1000 classes (EfficientNet_V2_{M,L}_Weights.meta["num_params"]);
# the README's model table quotes them (tests/test_docs.py).
EFFICIENTNET_V2_PARAMS = {"efficientnet_v2_m": 54_139_356, "efficientnet_v2_l": 118_515_272}


def _cfg(name, **changes):
    c = get_base_config().model
    c.name = name
    for k, v in changes.items():
        c[k] = v
    return c


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def _abstract_init(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _init(model, x):
    return jax.jit(lambda x: model.init(jax.random.key(1), x, train=False))(x)


def _intermediates(model, variables, x):
    _, state = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]))(
        variables, x
    )
    return {k: v[0] for k, v in state["intermediates"].items()}


# --- ConvLSTM ----------------------------------------------------------------------------------


def _np_conv_same(x, w):
    """Cross-correlation of NHWC x with HWIO w, zero padding k // 2 (a direct loop)."""
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros((*x.shape[:3], w.shape[-1]))
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[:, i, j] = np.einsum("nabc,abcd->nd", xp[:, i : i + k, j : j + k], w)
    return out


def _np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_conv_lstm_cell_step_is_shi_et_al_equations_with_peepholes():
    channels, features, k = 2, 3, 3
    cell = ConvLSTMCell(features, k, conv_impl="xla")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, channels)).astype(np.float32)
    c0 = rng.normal(size=(2, 5, 6, features)).astype(np.float32)
    h0 = rng.normal(size=(2, 5, 6, features)).astype(np.float32)
    params = cell.init(jax.random.key(0), (c0, h0), x)["params"]
    # Random values everywhere, peepholes included (they start at zero).
    params = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32) * 0.5, params)
    (c1, h1), out = cell.apply({"params": params}, (c0, h0), x)

    w = np.asarray(params["Conv_0"]["kernel"])
    wx, wh = w[:, :, :channels], w[:, :, channels:]  # the input's and the hidden state's
    b, peep = np.asarray(params["bias"]), np.asarray(params["peephole"])
    pre = _np_conv_same(x, wx) + _np_conv_same(h0, wh) + b
    zi, zf, zc, zo = np.split(pre, 4, axis=-1)
    i = _np_sigmoid(zi + peep[0] * c0)
    f = _np_sigmoid(zf + peep[1] * c0)
    c_ref = f * c0 + i * np.tanh(zc)
    h_ref = _np_sigmoid(zo + peep[2] * c_ref) * np.tanh(c_ref)
    np.testing.assert_allclose(c1, c_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1, h_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out, h1)


def test_conv_lstm_cell_starts_with_forget_bias_one_and_zero_state():
    cell = ConvLSTMCell(4, 3)
    c, h = cell.initialize_carry(None, (2, 5, 5, 7))
    assert c.shape == h.shape == (2, 5, 5, 4) and not c.any() and not h.any()
    params = cell.init(jax.random.key(0), (c, h), jnp.zeros((2, 5, 5, 7)))["params"]
    np.testing.assert_array_equal(params["bias"], [0] * 4 + [1] * 4 + [0] * 8)
    assert params["peephole"].shape == (3, 5, 5, 4)


def test_conv_lstm_scans_the_cell_over_slices_in_order():
    model = build_model(_cfg("conv_lstm", widths=(4, 8), rnn_hidden=5), 3, 4)
    x = jax.random.normal(jax.random.key(0), (2, 4, 12, 12, 1))
    variables = _init(model, x)
    feats = _intermediates(model, variables, x)
    assert feats["stage1"].shape == (8, 6, 6, 8)  # every slice, in-plane pooled once
    assert feats["hidden"].shape == (2, 4, 6, 6, 5)
    # The last state is the cell stepped by hand over the slices' maps, first to last.
    cell = ConvLSTMCell(5, 3)
    maps = feats["stage1"].reshape(2, 4, 6, 6, 8)
    carry = cell.initialize_carry(None, maps[:, 0].shape)
    for t in range(4):
        carry, h = cell.apply({"params": variables["params"]["conv_lstm"]}, carry, maps[:, t])
    np.testing.assert_allclose(feats["last_state"], h, rtol=1e-4, atol=1e-5)
    logits = model.apply(variables, x, train=False)
    reversed_logits = model.apply(variables, x[:, ::-1], train=False)
    assert logits.shape == (2, 3) and not np.allclose(logits, reversed_logits, atol=1e-4)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rnn_hidden": 0}, "rnn_hidden"),
        ({"kernel_size": 2}, "kernel_size"),
        ({"pool": "x"}, "pool"),
    ],
)
def test_conv_lstm_refuses_bad_keys(changes, message):
    with pytest.raises(ConfigError, match=message):
        build_model(_cfg("conv_lstm", **changes), 2, 8)


# --- ViT variants ------------------------------------------------------------------------------

TINY_T = {"transformer_width": 16, "transformer_depth": 2, "transformer_heads": 2}


def test_vit_conv_stem_replaces_the_patchify_layer_by_stride_2_convs():
    model = build_model(_cfg("vit_conv_stem", patch_size=4, **TINY_T), 3, 28)
    shapes = _abstract_init(model, (1, 28, 28, 1))["params"]
    # log2(4) = 2 stride-2 3x3 convs, channels doubling up to the width, then a 1x1 conv.
    assert shapes["stem0_conv"]["kernel"].shape == (3, 3, 1, 8)
    assert shapes["stem1_conv"]["kernel"].shape == (3, 3, 8, 16)
    assert shapes["conv_proj"]["kernel"].shape == (1, 1, 16, 16)
    assert shapes["pos_embedding"].shape == (1, 1 + 7 * 7, 16)
    assert {"encoder_layer_0", "encoder_layer_1", "encoder_ln", "head"} <= set(shapes)
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    variables = _init(model, x)
    feats = _intermediates(model, variables, x)
    assert feats["patches"].shape == (2, 7, 7, 16) and feats["block1"].shape == (2, 50, 16)
    assert feats["pooled"].shape == (2, 16)


def test_vit_conv_stem_defaults_are_vit_c_1gf():
    model = build_model(_cfg("vit_conv_stem"), 1000, 224)  # patch 16: four stem convs
    shapes = _abstract_init(model, (1, 224, 224, 3))["params"]
    stem = [shapes[f"stem{i}_conv"]["kernel"].shape[-1] for i in range(4)]
    assert stem == [24, 48, 96, 192] and "stem4_conv" not in shapes
    assert sum(n.startswith("encoder_layer_") for n in shapes) == 11


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("vit_conv_stem", {"patch_size": 7}, "power of two"),
        ("vit_conv_stem", {"patch_size": 8}, "not divisible"),  # 28 px
        ("cnn_attention", {"transformer_heads": 5}, "multiple of the heads"),
        ("vit_conv_stem", {"transformer_depth": 0}, "transformer_depth"),
        ("cnn_attention", {"widths": (4, 8, 16, 32, 64, 128)}, "downsamples"),
    ],
)
def test_vit_variants_refuse_bad_keys(name, changes, message):
    with pytest.raises(ConfigError, match=message):
        build_model(_cfg(name, **changes), 2, 28)


def test_vit_variants_refuse_another_input_size():
    for name in ("vit_conv_stem", "cnn_attention"):
        model = build_model(_cfg(name, patch_size=4, widths=(4,), **TINY_T), 2, 28)
        with pytest.raises(ConfigError, match="built for 28x28"):
            _abstract_init(model, (1, 32, 32, 1))


def test_cnn_attention_lets_every_position_see_every_other():
    model = build_model(_cfg("cnn_attention", widths=(4, 8), **TINY_T), 3, 12)
    x = jax.random.normal(jax.random.key(0), (1, 12, 12, 1))
    variables = _init(model, x)
    moved = x.at[:, -2:, -2:].add(3.0)  # only the far corner changes
    before, after = _intermediates(model, variables, x), _intermediates(model, variables, moved)
    assert before["tokens"].shape == (1, 6, 6, 16) and before["block0"].shape == (1, 36, 16)
    # Convolutions keep the change local: the first token's CNN features stay the same...
    np.testing.assert_allclose(before["tokens"][:, 0, 0], after["tokens"][:, 0, 0], atol=1e-6)
    # ...while one attention layer carries it to the first token.
    assert np.abs(before["block0"][:, 0] - after["block0"][:, 0]).max() > 1e-4
    assert model.apply(variables, x, train=False).shape == (1, 3)


# --- optimizers --------------------------------------------------------------------------------


def _np_nadam(grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Dozat (2016), Nesterov-accelerated Adam with a constant momentum mu = b1: the update
    lr * (mu * m_t / (1 - mu^(t+1)) + (1 - mu) * g_t / (1 - mu^t)) / (sqrt(n_t / (1 - nu^t))
    + eps), with m_t, n_t Adam's moving averages."""
    m = n = 0.0
    updates = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        n = b2 * n + (1 - b2) * g**2
        m_bar = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        updates.append(-lr * m_bar / (np.sqrt(n / (1 - b2**t)) + eps))
    return updates


def test_nadam_updates_follow_dozats_rule():
    c = get_base_config().optimizer
    c.name, c.learning_rate = "nadam", 0.01
    tx, _ = build_optimizer(c, total_steps=10, steps_per_epoch=10)
    grads = [np.array([0.5, -2.0, 1e-3]), np.array([0.1, 1.0, -3.0]), np.array([-1.0, 0.2, 0.0])]
    state = tx.init(jnp.zeros(3))
    expected = _np_nadam(grads, 0.01)
    for g, want in zip(grads, expected, strict=True):
        update, state = tx.update(jnp.asarray(g, jnp.float32), state, jnp.zeros(3))
        np.testing.assert_allclose(update, want, rtol=1e-4)  # float32
    # It is not Adam: the Nesterov look-ahead already changes the first step.
    adam_first = -0.01 * grads[0] / (np.abs(grads[0]) + 1e-8)
    assert not np.allclose(expected[0], adam_first, rtol=1e-3)


def test_the_reviews_optimizers_are_registered():
    listed = {"adam", "adamw", "nadam", "adamax", "adadelta", "adagrad", "rmsprop", "sgd"}
    assert listed | {"nesterov", "radam", "lamb", "lars"} <= set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", ["lamb", "lars"])
def test_lamb_and_lars_apply_weight_decay_inside_their_trust_ratio(name):
    c = get_base_config().optimizer
    c.name, c.learning_rate, c.weight_decay = name, 0.1, 0.05
    tx, _ = build_optimizer(c, total_steps=10, steps_per_epoch=10)
    own = getattr(optax, name)(0.1, weight_decay=0.05)  # optax's own rule, no extra L2 term
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]])}
    grads = {"w": jnp.array([[0.1, 0.2], [-0.3, 0.4]])}
    got, _ = tx.update(grads, tx.init(params), params)
    want, _ = own.update(grads, own.init(params), params)
    np.testing.assert_allclose(got["w"], want["w"], rtol=1e-6)


# --- EfficientNet V2-M/L and 3D B3 -------------------------------------------------------------


@pytest.mark.parametrize("name", EFFICIENTNET_V2_PARAMS)
def test_efficientnet_v2_m_l_match_torchvision_parameter_counts(name):
    shapes = _abstract_init(build_model(_cfg(name), 1000, 224), (1, 224, 224, 3))
    assert _count(shapes["params"]) == EFFICIENTNET_V2_PARAMS[name]


def test_depthwise_conv3d_is_a_grouped_3d_convolution():
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 1, 3))
    for stride in (1, 2):
        want = jax.lax.conv_general_dilated(
            x,
            w,
            (stride,) * 3,
            [(1, 1)] * 3,
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
            feature_group_count=3,
        )
        np.testing.assert_allclose(depthwise_conv3d(x, w, stride, impl="gemm"), want, atol=1e-5)
    grad = lambda impl: jax.grad(lambda w: depthwise_conv3d(x, w, 2, impl=impl).sum())(w)
    np.testing.assert_allclose(grad("gemm"), grad("xla"), rtol=1e-4, atol=1e-4)


def test_efficientnet3d_b3_keeps_28_cubed_volumes_at_4_cubed_in_the_last_stage():
    model = build_model(_cfg("efficientnet3d_b3"), 2, 28)
    params = _abstract_init(model, (1, 28, 28, 28, 1))["params"]
    # B3's scaled widths and depths (torchvision's 2D B3: 40 stem, 384 last, 1536 top, 26 blocks).
    assert params["stem_conv"]["kernel"].shape == (3, 3, 3, 1, 40)
    assert params["stage7_block1"]["project_conv"]["kernel"].shape == (1, 1, 1, 2304, 384)
    assert params["top_conv"]["kernel"].shape == (1, 1, 1, 384, 1536)
    assert sum(n.startswith("stage") for n in params) == 26
    # Depthwise k x k x k on the expanded channels: stage 1 ends at 24, expansion 6.
    assert params["stage2_block0"]["dw_conv"]["kernel"].shape == (3, 3, 3, 1, 144)
    _, state = jax.eval_shape(
        lambda v: model.apply(
            v, jnp.zeros((1, 28, 28, 28, 1)), train=False, mutable=["intermediates"]
        ),
        _abstract_init(model, (1, 28, 28, 28, 1)),
    )
    assert state["intermediates"]["stage7"][0].shape == (1, 4, 4, 4, 384)


def test_efficientnet3d_b3_forward_on_a_tiny_volume():
    model = build_model(_cfg("efficientnet3d_b3"), 3, 8)
    shapes = _abstract_init(model, (2, 8, 8, 8, 1))
    # Random weights from numpy: initialising 12M parameters under jit compiles slowly on the CPU.
    rng = np.random.default_rng(0)
    variables = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(np.float32) * 0.1, shapes)
    variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8, 1))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert logits.shape == (2, 3) and np.all(np.isfinite(logits))
    assert not np.allclose(logits[0], logits[1])  # it depends on the volume
    with pytest.raises(ConfigError, match="shrink to nothing"):
        _abstract_init(model, (1, 8, 4, 4, 1))


@pytest.mark.parametrize(
    "name, changes, size, shape",
    [
        ("conv_lstm", {"widths": (4, 8), "rnn_hidden": 4}, 3, (1, 3, 8, 8, 1)),
        ("vit_conv_stem", {"patch_size": 4, **TINY_T}, 28, (1, 28, 28, 1)),
        ("cnn_attention", {"widths": (4, 8), **TINY_T}, 28, (1, 28, 28, 1)),
        ("efficientnet3d_b3", {}, 8, (1, 8, 8, 8, 1)),
    ],
)
def test_new_models_take_norm_and_dtype_from_the_config(name, changes, size, shape):
    model = build_model(_cfg(name, dtype="bfloat16", norm="group", **changes), 2, size)
    variables = _abstract_init(model, shape)
    assert "batch_stats" not in variables  # group norm has no running statistics
    logits = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
    assert logits.shape == (1, 2) and logits.dtype == jnp.float32


# --- the experiment configs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, model",
    [
        ("conv_lstm_volume.py:runlocal", "conv_lstm"),
        ("vit_conv_stem.py:runlocal,data=phantom", "vit_conv_stem"),
        ("cnn_self_attention.py:runlocal,data=phantom", "cnn_attention"),
    ],
)
def test_review_variant_configs_run_in_smoke_mode(spec, model, tmp_path):
    from medjax.train.loop import train_and_evaluate

    config = load_config(str(ROOT / "experiments/review" / spec))
    assert config.model.name == model
    results = train_and_evaluate(config, str(tmp_path))
    assert 0.0 <= results["test"]["auc"] <= 1.0
    assert (tmp_path / "results.json").exists()
