"""ViT, 3D volume models, CNN-RNN and ensembles: parameter counts against the references, small
inputs, config errors, and feature extraction. Shapes via jax.eval_shape (no compute) except
for a few forward passes on 28 px inputs."""

import jax
import jax.numpy as jnp
import pytest

import medjax.models  # noqa: F401
import medjax.models.cnn_rnn  # noqa: F401
import medjax.models.ensemble  # noqa: F401
import medjax.models.vit  # noqa: F401
import medjax.models.volume  # noqa: F401
from medjax.configs import get_base_config
from medjax.errors import ConfigError
from medjax.models import build_model

VOLUME = (2, 16, 28, 28, 1)


def _cfg(name, **changes):
    c = get_base_config().model
    c.name = name
    for k, v in changes.items():
        c[k] = v
    return c


def _init(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def _count(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def _apply_shapes(model, shape):
    """Logits and intermediates of a training step, abstractly."""
    variables = _init(model, shape)
    return jax.eval_shape(
        lambda v: model.apply(
            v,
            jnp.zeros(shape),
            train=True,
            rngs={"dropout": jax.random.key(1)},
            mutable=["batch_stats", "intermediates"],
        ),
        variables,
    )


# --- ViT ---------------------------------------------------------------------------------------


# At 1000 classes, 224 px, patch 16 (the README's model table quotes vit_b: tests/test_docs.py)
VIT_PARAMS = {
    "vit_ti": 5_717_416,  # timm vit_tiny_patch16_224
    "vit_s": 22_050_664,  # timm vit_small_patch16_224
    "vit_b": 86_567_656,  # torchvision vit_b_16
}
R3D_18_PARAMS_400_CLASSES = 33_371_472  # torchvision r3d_18 (Kinetics-400)


@pytest.mark.parametrize("name", VIT_PARAMS)
def test_vit_matches_reference_parameter_counts(name):
    variables = _init(build_model(_cfg(name, stem="imagenet"), 1000, 224), (1, 224, 224, 3))
    assert _count(variables["params"]) == VIT_PARAMS[name]
    if name == "vit_b":
        assert variables["params"]["pos_embedding"].shape == (1, 197, 768)
        assert variables["params"]["class_token"].shape == (1, 1, 768)


@pytest.mark.parametrize("patch", [4, 7])
@pytest.mark.parametrize("channels", [1, 3])
def test_vit_takes_28px_with_a_patch_size_that_divides_it(patch, channels):
    model = build_model(_cfg("vit_s", patch_size=patch), 5, 28)
    logits, state = _apply_shapes(model, (2, 28, 28, channels))
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32
    tokens = 1 + (28 // patch) ** 2
    assert state["intermediates"]["block11"][0].shape == (2, tokens, 384)
    assert state["intermediates"]["patches"][0].shape == (2, 28 // patch, 28 // patch, 384)


def test_vit_patch_size_that_does_not_divide_the_image_fails_at_config_time():
    with pytest.raises(ConfigError, match=r"28 px.*patch_size=16.*patch_size=4 or 7"):
        build_model(_cfg("vit_ti"), 2, 28)
    with pytest.raises(ConfigError, match="patch_size=0"):
        build_model(_cfg("vit_ti", patch_size=0), 2, 28)


def test_vit_refuses_inputs_of_another_size_than_built_for():
    model = build_model(_cfg("vit_ti", patch_size=4), 2, 28)
    with pytest.raises(ConfigError, match="built for 28x28"):
        _init(model, (1, 32, 32, 1))


def test_vit_forward_exposes_tokens_and_takes_the_activation_from_the_config():
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    blocks = {}
    for act in ("gelu", "relu"):
        # norm='batch' is ignored: ViT's LayerNorm has no running statistics.
        model = build_model(_cfg("vit_ti", patch_size=7, activation=act), 3, 28)
        variables = model.init(jax.random.key(0), x, train=False)
        assert set(variables) == {"params"}
        logits, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        assert logits.shape == (2, 3)
        names = set(state["intermediates"])
        assert names == {"patches", "pooled", *(f"block{i}" for i in range(12))}
        blocks[act] = state["intermediates"]["block0"][0]
    assert blocks["gelu"].shape == (2, 17, 192)
    assert not jnp.allclose(blocks["gelu"], blocks["relu"])


def test_vit_bfloat16_gives_float32_logits():
    model = build_model(_cfg("vit_ti", patch_size=4, dtype="bfloat16"), 3, 28)
    logits, state = _apply_shapes(model, (2, 28, 28, 3))
    assert logits.dtype == jnp.float32
    assert state["intermediates"]["block0"][0].dtype == jnp.bfloat16


# --- 3D models ---------------------------------------------------------------------------------


def test_resnet3d_18_matches_torchvision_r3d_18_parameter_count():
    model = build_model(_cfg("resnet3d_18", stem="imagenet"), 400, 16)
    variables = _init(model, (1, 16, 112, 112, 3))
    assert _count(variables["params"]) == R3D_18_PARAMS_400_CLASSES
    assert variables["params"]["stem_conv"]["kernel"].shape == (3, 7, 7, 3, 64)


@pytest.mark.parametrize("name", ["cnn3d", "resnet3d_18"])
@pytest.mark.parametrize("channels", [1, 3])
def test_3d_models_take_small_volumes(name, channels):
    logits, state = _apply_shapes(build_model(_cfg(name), 4, 16), (*VOLUME[:-1], channels))
    assert logits.shape == (2, 4) and logits.dtype == jnp.float32
    stages = {"cnn3d": ["stage0", "stage1", "stage2"], "resnet3d_18": ["stem", "stage4"]}[name]
    assert {"pooled", *stages} <= set(state["intermediates"])
    assert state["batch_stats"]


def test_resnet3d_small_stem_keeps_28_cubed_volumes_at_4_cubed_in_stage4():
    _, state = _apply_shapes(build_model(_cfg("resnet3d_18"), 2, 28), (1, 28, 28, 28, 1))
    assert state["intermediates"]["stage4"][0].shape == (1, 4, 4, 4, 512)


@pytest.mark.parametrize("name", ["cnn3d", "resnet3d_18", "cnn_rnn"])
def test_3d_models_take_norm_and_dtype_from_the_config(name):
    variables = _init(build_model(_cfg(name, norm="none"), 2, 16), VOLUME)
    assert "batch_stats" not in variables
    group = _init(build_model(_cfg(name, norm="group"), 2, 16), VOLUME)
    assert "batch_stats" not in group and _count(group["params"]) == _count(
        _init(build_model(_cfg(name), 2, 16), VOLUME)["params"]
    )
    logits, _ = _apply_shapes(build_model(_cfg(name, dtype="bfloat16"), 2, 16), VOLUME)
    assert logits.dtype == jnp.float32


def test_3d_models_refuse_volumes_they_would_shrink_to_nothing():
    with pytest.raises(ConfigError, match="resnet3d_18"):
        build_model(_cfg("resnet3d_18"), 2, 4)  # depth 4 < 8x downsampling
    model = build_model(_cfg("resnet3d_18", stem="imagenet"), 2, 16)
    with pytest.raises(ConfigError, match="resnet3d_18.*stem='small'"):
        _init(model, (1, 16, 8, 8, 1))  # in-plane 8 px < 16x
    with pytest.raises(ConfigError, match=r"cnn3d.*volumes \(N, D, H, W, C\)"):
        _init(build_model(_cfg("cnn3d"), 2, 28), (1, 28, 28, 1))


# --- CNN-RNN -----------------------------------------------------------------------------------


def test_cnn_rnn_runs_an_lstm_or_gru_over_slices():
    counts = {}
    for rnn in ("lstm", "gru"):
        model = build_model(_cfg("cnn_rnn", rnn=rnn, rnn_hidden=32), 3, 16)
        variables = _init(model, VOLUME)
        assert set(variables["params"]) == {"encoder", "rnn", "head"}
        assert "head" not in variables["params"]["encoder"]  # features taken before it
        logits, state = _apply_shapes(model, VOLUME)
        assert logits.shape == (2, 3)
        inter = state["intermediates"]
        assert inter["slices"][0].shape == (2, 16, 128)  # widths[-1] features per slice
        assert inter["hidden"][0].shape == (2, 16, 32)
        assert inter["encoder"]["stage0"][0].shape == (32, 28, 28, 32)
        counts[rnn] = _count(variables["params"]["rnn"])
    # LSTM: 4 gates, GRU: 3 (flax puts one bias per gate pair; the GRU's candidate has two).
    assert counts == {
        "lstm": 4 * (128 * 32 + 32 * 32 + 32),
        "gru": 3 * (128 * 32 + 32 * 32) + 4 * 32,
    }
    with pytest.raises(ConfigError, match="'lstm' or 'gru'"):
        build_model(_cfg("cnn_rnn", rnn="transformer"), 3, 16)


def test_cnn_rnn_forward_on_a_tiny_volume():
    model = build_model(_cfg("cnn_rnn", widths=(4, 8), rnn="gru", rnn_hidden=8), 2, 3)
    x = jax.random.normal(jax.random.key(0), (1, 3, 12, 12, 1))
    variables = model.init(jax.random.key(0), x, train=False)
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert logits.shape == (1, 2) and jnp.all(jnp.isfinite(logits))
    assert set(updates["batch_stats"]) == {"encoder"}


# --- ensembles ---------------------------------------------------------------------------------


def _backbone_params(name, image_size=28, shape=(1, 28, 28, 1)):
    params = _init(build_model(_cfg(name), 5, image_size), shape)["params"]
    return _count(params) - _count(params["head"])


@pytest.mark.parametrize("combine", ["mean", "concat"])
def test_ensemble_combines_member_features_under_one_head(combine):
    model = build_model(_cfg("ensemble", members=("cnn", "resnet18"), combine=combine), 5, 28)
    variables = _init(model, (2, 28, 28, 1))
    params = variables["params"]
    assert set(variables["batch_stats"]) == {"cnn", "resnet18"}
    assert "head" not in params["cnn"] and "head" not in params["resnet18"]
    # cnn features are 128 wide, resnet18's 512.
    extra = 128 * 512 + 512 + 512 * 5 + 5 if combine == "mean" else (128 + 512) * 5 + 5
    expected = _backbone_params("cnn") + _backbone_params("resnet18") + extra
    assert _count(params) == expected
    assert ("proj_cnn" in params) == (combine == "mean")
    logits, state = _apply_shapes(model, (2, 28, 28, 1))
    assert logits.shape == (2, 5)
    inter = state["intermediates"]
    assert inter["pooled"][0].shape == (2, 512 if combine == "mean" else 640)
    assert "stage4" in inter["resnet18"] and "stage2" in inter["cnn"]


def test_ensemble_forward_names_repeated_members_apart():
    c = _cfg("ensemble", members=("cnn", "cnn"), widths=(4, 8), dropout=0.5)
    model = build_model(c, 2, 28)
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    assert set(variables["params"]) == {"cnn", "cnn_1", "head"}
    logits, updates = model.apply(
        variables, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
    )
    assert logits.shape == (2, 2) and set(updates["batch_stats"]) == {"cnn", "cnn_1"}
    eval_logits = model.apply(variables, x, train=False)
    assert eval_logits.dtype == jnp.float32 and jnp.all(jnp.isfinite(eval_logits))


def test_ensemble_of_volume_models_takes_the_member_head_not_a_nested_one():
    # cnn_rnn extracts its own encoder's features; the ensemble must take cnn_rnn's head input.
    model = build_model(_cfg("ensemble", members=("cnn_rnn", "cnn3d"), combine="concat"), 3, 16)
    params = _init(model, VOLUME)["params"]
    assert "head" not in params["cnn_rnn"] and "head" not in params["cnn_rnn"]["encoder"]
    logits, state = _apply_shapes(model, VOLUME)
    assert logits.shape == (2, 3)
    assert state["intermediates"]["pooled"][0].shape == (2, 128 + 128)


def test_ensemble_bfloat16_gives_float32_logits():
    model = build_model(
        _cfg("ensemble", members=("cnn", "vit_ti"), patch_size=7, dtype="bfloat16"), 2, 28
    )
    logits, _ = _apply_shapes(model, (2, 28, 28, 1))
    assert logits.dtype == jnp.float32


def test_ensemble_members_are_validated():
    with pytest.raises(ConfigError, match="members is empty.*Valid names:.*resnet18"):
        build_model(_cfg("ensemble"), 2, 28)
    with pytest.raises(ConfigError, match="unknown model 'resnet81'.*Valid names:.*cnn"):
        build_model(_cfg("ensemble", members=("cnn", "resnet81")), 2, 28)
    with pytest.raises(ConfigError, match="ensemble cannot be a member"):
        build_model(_cfg("ensemble", members=("cnn", "ensemble")), 2, 28)
    with pytest.raises(ConfigError, match="'mean' or 'concat'"):
        build_model(_cfg("ensemble", members=("cnn",), combine="max"), 2, 28)
    with pytest.raises(ConfigError, match="patch_size"):  # a member's own check still runs
        build_model(_cfg("ensemble", members=("cnn", "vit_ti")), 2, 28)
