"""Activations, normalisations and convolutions chosen by name from the config."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.models.conv import Conv
from medjax.registry import Registry

ACTIVATIONS = Registry("activation", "config.model.activation")
for _name, _fn in {
    "relu": nn.relu,
    "relu6": jax.nn.relu6,  # MobileNetV2's own
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.01),
    "elu": nn.elu,
    "gelu": functools.partial(nn.gelu, approximate=False),  # exact, as PyTorch's and Keras'
    "silu": nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
}.items():
    ACTIVATIONS.register(_name, _fn)

NORMS = Registry("normalisation", "config.model.norm")
# Every BatchNorm's; medjax.train.precise_bn reads a batch's statistics back through it.
BN_MOMENTUM = 0.9


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return x


class BatchNorm(nn.Module):
    epsilon: float = 1e-5  # PyTorch's default; EfficientNet-B5..B7 and V2 use 1e-3

    @nn.compact
    def __call__(self, x, train: bool = False):
        # Statistics in float32 even under bfloat16 compute: variance underflows in bfloat16.
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=BN_MOMENTUM,
            epsilon=self.epsilon,
            dtype=jnp.float32,
        )(x)


class GroupNorm(nn.Module):
    groups: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]), dtype=jnp.float32)(x)


class LayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.LayerNorm(dtype=jnp.float32)(x)


NORMS.register("batch", BatchNorm)
NORMS.register("group", GroupNorm)
NORMS.register("layer", LayerNorm)
NORMS.register("none", Identity)


def with_epsilon(norm, epsilon: float):
    """`norm` with batch-norm epsilon `epsilon` (other normalisations unchanged): pretrained
    weights reproduce their source's outputs only with the source's epsilon."""
    return functools.partial(BatchNorm, epsilon=epsilon) if norm is BatchNorm else norm


def tf_same_pad(x, kernel: int, stride: int):
    """NHWC `x` padded as TensorFlow's "SAME" (Keras' padding="same" and correct_pad) pads it:
    the total padding split with the odd pixel *after*, so a 3x3 stride-2 conv of an even-sized
    map pads (0, 1), a 5x5 one (1, 2), where torch pads k//2 on both sides."""
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads.append((total // 2, total - total // 2))
    return jnp.pad(x, ((0, 0), *pads, (0, 0)))


def conv_norm_act(
    module: nn.Module,
    x,
    name: str,
    features: int,
    kernel: int,
    stride: int,
    train,
    tf_same: bool = False,
):
    """`{name}_conv` (medjax's Conv), `{name}_norm` and the activation, in `module`'s compute
    dtype: the stem and top layers the ResNet, MobileNet and EfficientNet families share. Call
    it from a compact __call__ of a module with act, norm, dtype and conv_impl fields.
    `tf_same`: TensorFlow's asymmetric "SAME" padding (Keras' layout) instead of torch's k//2."""
    padding = None
    if tf_same and stride > 1:
        x, padding = tf_same_pad(x, kernel, stride), 0
    x = Conv(
        features,
        kernel,
        stride,
        padding,
        dtype=module.dtype,
        impl=module.conv_impl,
        name=f"{name}_conv",
    )(x.astype(module.dtype))
    return module.act(module.norm(name=f"{name}_norm")(x, train)).astype(module.dtype)


def stage_features(module: nn.Module, name: str, x):
    """Record a stage's output `x` as intermediates[`name`] and return it, plus the
    "perturbations" variable of that name when the caller passes one (a zero array: the
    gradient with respect to it is the gradient with respect to the stage, which Grad-CAM
    needs). Without that collection, as in training and prediction, it returns `x` unchanged
    and creates no variable, so parameters and outputs are those of a plain `sow`."""
    module.sow("intermediates", name, x)
    if module.has_variable("perturbations", name):
        x = x + module.get_variable("perturbations", name).astype(x.dtype)
    return x


def pooled_head(module: nn.Module, x, train: bool):
    """The end of every classifier: record `x` as the "pooled" features, then the hidden layers
    of `module.head_hidden` (hidden_layers) and dropout (`module.dropout`) and the linear layer
    "head", so feature extraction (ensembles, Grad-CAM, weight import) finds the same names in
    every model. Call it from a compact __call__."""
    module.sow("intermediates", "pooled", x)
    drop = nn.Dropout(module.dropout, deterministic=not train)
    x = hidden_layers(module, x, drop)
    return nn.Dense(module.num_classes, name="head")(drop(x))


def hidden_layers(module: nn.Module, x, drop):
    """The MLP head's hidden layers (config.model.head_hidden), "head_hidden0", "head_hidden1",
    ... (names model.freeze can address): each dropout (`drop`), Linear in float32 like the
    head, and `module.act`. None when module.head_hidden is empty."""
    for i, width in enumerate(getattr(module, "head_hidden", ())):
        x = module.act(nn.Dense(width, name=f"head_hidden{i}")(drop(x).astype(jnp.float32)))
    return x


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
