"""MobileNetV2 (Sandler et al. 2018) in torchvision's layout (3,504,872 params at width 1.0).

A 3x3/2 stem conv (32), seven stages of inverted residual blocks (1x1 expansion, 3x3 depthwise,
linear 1x1 projection, identity shortcut when shape allows), a 1x1 conv to 1280 channels, global
average pooling, dropout and a linear head. `config.model.width_multiplier` scales every width,
rounded to multiples of 8 as torchvision's _make_divisible; the 1280 of the last conv only grows.

Config: the paper's ReLU6 is replaced by `config.model.activation` ('relu' by default; ReLU6
is not a registered activation, and the paper chose it for low-precision inference), its
BatchNorm by `config.model.norm`, the head dropout (0.2 in torchvision) by
`config.model.dropout`.

Small-image layout (stem 'small', or 'auto' at <= 64 px): the stem conv and the first stride-2
stage run at stride 1, as in the CIFAR MobileNetV2s, so the network downsamples 8x instead of
32x and 28 px inputs reach the last stage at 4x4.

Weight import: torchvision features.0 -> stem_conv/stem_norm, features.k (k = 1..17) -> the
blocks stage{s}_block{j} (expand_conv/norm, dw_conv/norm, project_conv/norm), features.18 ->
top_conv/top_norm, classifier.1 -> head.

`config.model.layout = "keras"` builds keras.applications' MobileNetV2: TensorFlow's "SAME"
padding on the stride-2 convolutions (for even sizes (0, 1), not torch's (1, 1)) and batch-norm
epsilon 1e-3; its ReLU6 is config.model.activation = "relu6".
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.conv import Conv
from medjax.models.depthwise import DepthwiseConv
from medjax.models.layers import conv_norm_act, pooled_head, stage_features, with_epsilon
from medjax.models.registry import MODELS, check_input_size, keras_layout, small_stem

# (expansion t, output channels c, blocks n, first stride s) per stage, from the paper's Table 2.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
STAGES += ((6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: the nearest multiple of `divisor`, never 10% below v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def small_strides(strides: Sequence[int]) -> tuple[int, ...]:
    """The strides with the first stride-2 stage set to 1 (the small-image layout's)."""
    first = list(strides).index(2)
    return tuple(1 if i == first else s for i, s in enumerate(strides))


def depthwise(
    features: int, kernel: int, stride: int, dtype, name: str, tf_same: bool = False, impl="auto"
) -> DepthwiseConv:
    """A bias-free depthwise kxk convolution (`features` must be the input's channels) with
    torch's symmetric k//2 padding, or with TensorFlow's "SAME" padding (lax's "SAME" is TF's:
    the odd pixel after) when `tf_same`."""
    del features  # one filter per input channel
    padding = "SAME" if tf_same else kernel // 2
    return DepthwiseConv(kernel, stride, padding, dtype, impl, name=name)


class InvertedResidual(nn.Module):
    features: int
    stride: int
    expand_ratio: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"
    tf_same: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        hidden = round(x.shape[-1] * self.expand_ratio)
        y = x
        if self.expand_ratio != 1:
            y = Conv(hidden, 1, dtype=self.dtype, impl=self.conv_impl, name="expand_conv")(y)
            y = self.act(self.norm(name="expand_norm")(y, train)).astype(self.dtype)
        dw = depthwise(hidden, 3, self.stride, self.dtype, "dw_conv", self.tf_same, self.conv_impl)
        y = dw(y)
        y = self.act(self.norm(name="dw_norm")(y, train)).astype(self.dtype)
        # Linear bottleneck: no activation after the projection.
        y = Conv(self.features, 1, dtype=self.dtype, impl=self.conv_impl, name="project_conv")(y)
        y = self.norm(name="project_norm")(y, train)
        if self.stride == 1 and x.shape[-1] == self.features:
            y = y + x
        return y.astype(self.dtype)


class MobileNetV2(nn.Module):
    num_classes: int
    stem_features: int
    stem_stride: int
    stages: Sequence[tuple[int, int, int, int]]  # (t, c, n, s), widths already scaled
    top_features: int
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    tf_same: bool = False  # TensorFlow's "SAME" padding on stride-2 convs (Keras' layout)
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        stem_stride, tf_same = self.stem_stride, self.tf_same
        x = conv_norm_act(self, x, "stem", self.stem_features, 3, stem_stride, train, tf_same)
        x = stage_features(self, "stem", x)
        for i, (t, c, n, s) in enumerate(self.stages, start=1):
            for j in range(n):
                x = InvertedResidual(
                    c,
                    s if j == 0 else 1,
                    t,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    self.tf_same,
                    name=f"stage{i}_block{j}",
                )(x, train)
            x = stage_features(self, f"stage{i}", x)
        x = conv_norm_act(self, x, "top", self.top_features, 1, 1, train)
        x = stage_features(self, "top", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


@MODELS.register("mobilenet_v2")
def mobilenet_v2(cfg, num_classes, image_size, act, norm, dtype):
    width = float(cfg.width_multiplier)
    if width <= 0:
        raise ConfigError(f"config.model.width_multiplier must be positive, not {width}")
    small = small_stem(cfg, image_size)
    check_input_size("mobilenet_v2", image_size, 8 if small else 32)
    strides = [s for _, _, _, s in STAGES]
    strides = small_strides(strides) if small else strides
    stages = tuple(
        (t, make_divisible(c * width), n, s)
        for (t, c, n, _), s in zip(STAGES, strides, strict=True)
    )
    keras = keras_layout(cfg)
    return MobileNetV2(
        num_classes,
        stem_features=make_divisible(32 * width),
        stem_stride=1 if small else 2,
        stages=stages,
        top_features=make_divisible(1280 * max(1.0, width)),
        dropout=cfg.dropout,
        act=act,
        norm=with_epsilon(norm, 1e-3) if keras else norm,
        dtype=dtype,
        conv_impl=cfg.conv,
        tf_same=keras,
    )
