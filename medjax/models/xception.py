"""Xception (Chollet 2017), the Keras Applications layout.

Entry flow: two bias-free 3x3 convs (the first strided; both unpadded as in Keras), then
blocks 2-4 of separable convs, each halving the map with a 3x3 'same' max-pool and adding a
strided 1x1-conv + norm shortcut. Middle flow: blocks 5-12, three act -> separable conv ->
norm each, identity shortcut. Exit flow: block 13 (as the entry blocks) and block 14 (two
separable convs with norm and act), global average pool and a linear head. A separable conv is
a bias-free depthwise 3x3 (medjax.models.depthwise) and a bias-free pointwise
1x1, both with 'same' padding, as Keras' SeparableConv2D(use_bias=False).

Names are Keras' (block1_conv1, block1_conv1_bn, block2_sepconv1/{depthwise,pointwise},
block2_sepconv1_bn, block2_residual = the unnamed shortcut conv, head = predictions), so its
weights map one to one. Keras' count_params() (22,910,480) includes the BatchNorm moving
mean/variance, which are medjax's 'batch_stats'; its trainable count (22,855,952) is 'params'.

Small-image stem (config.model.stem small, or auto at <= 64 px): the two entry convs at stride
1 with 'same' padding, so a 28 px input is still 28 px when block 2 starts and 2 px after
block 13 (16x in all, vs 32x); the parameters do not change.

Stage features (sown in 'intermediates'): stem (block 1), stage1..stage3 (after blocks 2, 3,
and 4-12, one per map size), stage4 (after block 14, the usual Grad-CAM layer), pooled.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.conv import Conv
from medjax.models.depthwise import DepthwiseConv
from medjax.models.layers import pooled_head, stage_features
from medjax.models.registry import MODELS, check_input_size, small_stem


class SeparableConv(nn.Module):
    features: int
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        x = DepthwiseConv(3, 1, 1, self.dtype, self.conv_impl, name="depthwise")(x)
        return Conv(self.features, 1, dtype=self.dtype, impl=self.conv_impl, name="pointwise")(x)


class Xception(nn.Module):
    num_classes: int
    small_stem: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    def _sep(self, x, features, name, train, act_first=True):
        if act_first:
            x = self.act(x)
        x = SeparableConv(features, self.dtype, self.conv_impl, name=name)(x.astype(self.dtype))
        return self.norm(name=f"{name}_bn")(x, train)

    def _down_block(self, x, block, widths, train, act_first):
        """Two separable convs and a 'same' max-pool, plus a strided 1x1 shortcut."""
        r = Conv(widths[1], 1, 2, dtype=self.dtype, impl=self.conv_impl, name=f"{block}_residual")
        r = self.norm(name=f"{block}_residual_bn")(r(x), train)
        x = self._sep(x, widths[0], f"{block}_sepconv1", train, act_first)
        x = self._sep(x, widths[1], f"{block}_sepconv2", train)
        x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
        return (x + r).astype(self.dtype)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        stride, pad = (1, 1) if self.small_stem else (2, 0)
        for i, (width, s) in enumerate(((32, stride), (64, 1))):
            name = f"block1_conv{i + 1}"
            x = Conv(width, 3, s, pad, dtype=self.dtype, impl=self.conv_impl, name=name)(x)
            x = self.act(self.norm(name=f"{name}_bn")(x, train)).astype(self.dtype)
        x = stage_features(self, "stem", x)
        # Block 2 follows the stem's activation, so its first separable conv takes no act.
        x = self._down_block(x, "block2", (128, 128), train, act_first=False)
        x = stage_features(self, "stage1", x)
        x = self._down_block(x, "block3", (256, 256), train, act_first=True)
        x = stage_features(self, "stage2", x)
        x = self._down_block(x, "block4", (728, 728), train, act_first=True)
        for b in range(5, 13):
            y = x
            for k in range(1, 4):
                y = self._sep(y, 728, f"block{b}_sepconv{k}", train)
            x = (x + y).astype(self.dtype)
        x = stage_features(self, "stage3", x)
        x = self._down_block(x, "block13", (728, 1024), train, act_first=True)
        x = self._sep(x, 1536, "block14_sepconv1", train, act_first=False)
        x = self.act(self._sep(x, 2048, "block14_sepconv2", train))
        x = stage_features(self, "stage4", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


@MODELS.register("xception")
def xception(cfg, num_classes, image_size, act, norm, dtype):
    small = small_stem(cfg, image_size)
    check_input_size("xception", image_size, 16 if small else 32)
    return Xception(num_classes, small, cfg.dropout, act, norm, dtype, cfg.conv)
