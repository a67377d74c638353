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
            use_running_average=not train, momentum=0.9, epsilon=self.epsilon, dtype=jnp.float32
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


def conv_norm_act(module: nn.Module, x, name: str, features: int, kernel: int, stride: int, train):
    """`{name}_conv` (medjax's Conv), `{name}_norm` and the activation, in `module`'s compute
    dtype: the stem and top layers the ResNet, MobileNet and EfficientNet families share. Call
    it from a compact __call__ of a module with act, norm, dtype and conv_impl fields."""
    x = Conv(
        features, kernel, stride, dtype=module.dtype, impl=module.conv_impl, name=f"{name}_conv"
    )(x.astype(module.dtype))
    return module.act(module.norm(name=f"{name}_norm")(x, train)).astype(module.dtype)


def pooled_head(module: nn.Module, x, train: bool):
    """The end of every classifier: record `x` as the "pooled" features, then dropout
    (`module.dropout`) and the linear layer "head", so feature extraction (ensembles, Grad-CAM,
    weight import) finds the same names in every model. Call it from a compact __call__."""
    module.sow("intermediates", "pooled", x)
    x = nn.Dropout(module.dropout, deterministic=not train)(x)
    return nn.Dense(module.num_classes, name="head")(x)


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
