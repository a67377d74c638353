"""DenseNet-121/169/201 (Huang et al. 2017), torchvision's DenseNet-BC layout.

Each dense layer is norm -> act -> 1x1 conv (bn_size * growth channels) -> norm -> act -> 3x3
conv (growth channels), and its output is concatenated onto its input; transitions between
blocks (norm -> act -> 1x1 conv halving the channels -> 2x2 average pool) shrink the map, and
a final norm + act precede the pooled head. Names follow torchvision's (denselayer numbering
from 1) so its weights map one to one: stem_conv/stem_norm = conv0/norm0,
block{i}_layer{j}/{norm1,conv1,norm2,conv2}, transition{i}/{norm,conv}, final_norm = norm5,
head = classifier.

The small-image stem (3x3 stride-1 conv, no max-pool) keeps all three transition poolings:
a 28 px input reaches the blocks at 28, 14, 7 and 3 px (8x in all, vs 32x with the ImageNet
stem), so the last block still sees a 3x3 map.

`config.model.layout = "keras"`: keras.applications' DenseNets are the same network with
batch-norm epsilon 1.001e-5 (conv1_conv/conv1_bn, conv{b}_block{l}_{0_bn,1_conv,1_bn,2_conv},
pool{b}_bn/pool{b}_conv, bn, predictions).
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.conv import Conv
from medjax.models.layers import pooled_head, stage_features, with_epsilon
from medjax.models.registry import MODELS, check_input_size, keras_layout, small_stem


class DenseLayer(nn.Module):
    growth: int
    bn_size: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        y = self.act(self.norm(name="norm1")(x, train))
        y = Conv(
            self.bn_size * self.growth, 1, dtype=self.dtype, impl=self.conv_impl, name="conv1"
        )(y.astype(self.dtype))
        y = self.act(self.norm(name="norm2")(y, train))
        y = Conv(self.growth, 3, dtype=self.dtype, impl=self.conv_impl, name="conv2")(
            y.astype(self.dtype)
        )
        return jnp.concatenate([x, y.astype(self.dtype)], axis=-1)


class Transition(nn.Module):
    features: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        y = self.act(self.norm(name="norm")(x, train)).astype(self.dtype)
        y = Conv(self.features, 1, dtype=self.dtype, impl=self.conv_impl, name="conv")(y)
        return nn.avg_pool(y, (2, 2), (2, 2))


class DenseNet(nn.Module):
    num_classes: int
    block_sizes: Sequence[int]
    small_stem: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    growth: int = 32
    bn_size: int = 4
    init_features: int = 64
    compression: float = 0.5
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        kernel, stride = (3, 1) if self.small_stem else (7, 2)
        x = Conv(
            self.init_features,
            kernel,
            stride,
            dtype=self.dtype,
            impl=self.conv_impl,
            name="stem_conv",
        )(x)
        x = self.act(self.norm(name="stem_norm")(x, train)).astype(self.dtype)
        if not self.small_stem:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1)] * 2)
        x = stage_features(self, "stem", x)
        last = len(self.block_sizes) - 1
        for i, layers in enumerate(self.block_sizes):
            for j in range(layers):
                x = DenseLayer(
                    self.growth,
                    self.bn_size,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    name=f"block{i + 1}_layer{j + 1}",
                )(x, train)
            if i < last:
                x = stage_features(self, f"stage{i + 1}", x)
                x = Transition(
                    int(x.shape[-1] * self.compression),
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    name=f"transition{i + 1}",
                )(x, train)
        # The last stage's feature map is the normalised one the head pools (torchvision's
        # `features` output, the usual Grad-CAM layer).
        x = self.act(self.norm(name="final_norm")(x, train))
        x = stage_features(self, f"stage{last + 1}", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


def _densenet(name, block_sizes):
    def build(cfg, num_classes, image_size, act, norm, dtype):
        small = small_stem(cfg, image_size)
        check_input_size(name, image_size, 8 if small else 32)
        if keras_layout(cfg):
            norm = with_epsilon(norm, 1.001e-5)
        return DenseNet(num_classes, block_sizes, small, cfg.dropout, act, norm, dtype, cfg.conv)

    MODELS.register(name, build)


_densenet("densenet121", (6, 12, 24, 16))
_densenet("densenet169", (6, 12, 32, 32))
_densenet("densenet201", (6, 12, 48, 32))
