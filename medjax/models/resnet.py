"""ResNet (He et al. 2016) with the ImageNet stem or a small-image stem: ResNet-18/34 with basic
blocks here, ResNet-50/101 with bottleneck blocks in resnet_bottleneck.py.

The small stem (3x3 stride-1 conv, no max-pool), as in the MedMNIST benchmark, keeps 28 px
inputs at 28x28 through the first stage instead of shrinking them to 7x7 before any residual
block sees them.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.conv import Conv
from medjax.models.layers import conv_norm_act, pooled_head, stage_features, with_epsilon
from medjax.models.registry import MODELS, check_input_size, keras_layout, small_stem


class BasicBlock(nn.Module):
    """3x3 -> 3x3 with a projected shortcut where shapes change; outputs `features` channels."""

    features: int
    stride: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        conv = functools.partial(Conv, dtype=self.dtype, impl=self.conv_impl)
        y = conv(self.features, 3, self.stride, name="conv1")(x)
        y = self.act(self.norm(name="norm1")(y, train))
        y = self.norm(name="norm2")(conv(self.features, 3, 1, name="conv2")(y), train)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = self.norm(name="proj_norm")(
                conv(self.features, 1, self.stride, name="proj")(x), train
            )
        return self.act(y + x).astype(self.dtype)


class ResNet(nn.Module):
    num_classes: int
    stage_sizes: Sequence[int]
    small_stem: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    block: Any = BasicBlock
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        kernel, stride = (3, 1) if self.small_stem else (7, 2)
        x = conv_norm_act(self, x, "stem", 64, kernel, stride, train)
        if not self.small_stem:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1)] * 2)
        x = stage_features(self, "stem", x)
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = self.block(
                    64 * 2**i,
                    stride,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    name=f"stage{i + 1}_block{j}",
                )(x, train)
            x = stage_features(self, f"stage{i + 1}", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


def register_resnet(name, stage_sizes, block=BasicBlock):
    def build(cfg, num_classes, image_size, act, norm, dtype):
        small = small_stem(cfg, image_size)
        check_input_size(name, image_size, 8 if small else 32)
        chosen = block
        if keras_layout(cfg):  # keras.applications' ResNet v1 (resnet_bottleneck.py)
            norm = with_epsilon(norm, 1.001e-5)
            chosen = functools.partial(block, v1=True) if block is not BasicBlock else block
        return ResNet(
            num_classes, stage_sizes, small, cfg.dropout, act, norm, dtype, cfg.conv, chosen
        )

    MODELS.register(name, build)


register_resnet("resnet18", (2, 2, 2, 2))
register_resnet("resnet34", (3, 4, 6, 3))
