"""3D EfficientNet-B3 for volumes (N, D, H, W, C): efficientnet.py's network with 3D kernels.

Every layer of EfficientNet-B3 (compound scaling width 1.2, depth 1.4 of B0's seven MBConv
stages; efficientnet.B0_STAGES and SCALING) with its k x k kernels made k x k x k, as the 3D
EfficientNets of the volume studies (e.g. MONAI's EfficientNetBN with spatial_dims=3): a
3x3x3 stride-2 stem, MBConv blocks of a 1x1x1 expansion, a k x k x k depthwise convolution
(conv3d.DepthwiseConv3D), squeeze-and-excitation over the whole volume, a linear 1x1x1
projection and an identity shortcut (with stochastic depth, config.model.stochastic_depth),
a 1x1x1 conv to 4x the last width, global average pooling, dropout and a Linear head. Strides
halve D, H and W alike. Activation (the paper's SiLU), norm and dropout come from the config.

The builder gets D as `image_size`. Small-image layout (stem 'small', or 'auto' at D <= 64):
the stem and the first stride-2 stage run at stride 1 (8x downsampling instead of 32x), so
28^3 MedMNIST volumes reach the last stage at 4^3; the in-plane size is checked when traced.
Names follow efficientnet.py (stem_conv/stem_norm, stage{s}_block{j}/expand_conv, dw_conv,
se_reduce, se_expand, project_conv, top_conv, head); intermediates "stem", "stage{s}", "top",
"pooled".
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.conv3d import Conv3D, DepthwiseConv3D
from medjax.models.efficientnet import B0_STAGES, SCALING
from medjax.models.layers import pooled_head, stage_features
from medjax.models.mobilenet import make_divisible, small_strides
from medjax.models.registry import MODELS, check_input_size, small_stem
from medjax.models.volume import check_in_plane


def _conv_norm(module, x, name, features, kernel, stride, train, act=True):
    """`{name}_conv` (bias-free 3D) and `{name}_norm`, then the activation unless `act` is off."""
    conv = Conv3D(
        features, (kernel,) * 3, stride, module.dtype, module.conv_impl, name=f"{name}_conv"
    )
    y = module.norm(name=f"{name}_norm")(conv(x), train)
    return (module.act(y) if act else y).astype(module.dtype)


class MBConv3D(nn.Module):
    features: int
    kernel: int
    stride: int
    expand_ratio: int
    drop_path: float
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        inputs = x.shape[-1]
        expanded = make_divisible(inputs * self.expand_ratio)
        y = _conv_norm(self, x, "expand", expanded, 1, 1, train) if expanded != inputs else x
        dw = DepthwiseConv3D(self.kernel, self.stride, self.dtype, self.conv_impl, name="dw_conv")
        y = self.act(self.norm(name="dw_norm")(dw(y), train)).astype(self.dtype)
        # Squeeze-and-excitation: its squeeze width is a quarter of the block's input, as 2D's.
        s = jnp.mean(y, axis=(1, 2, 3), keepdims=True)
        s = self.act(nn.Dense(max(1, inputs // 4), dtype=self.dtype, name="se_reduce")(s))
        y = y * nn.sigmoid(nn.Dense(expanded, dtype=self.dtype, name="se_expand")(s))
        y = _conv_norm(self, y, "project", self.features, 1, 1, train, act=False)
        if self.stride == 1 and inputs == self.features:
            drop = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3, 4), deterministic=not train)
            y = drop(y) + x
        return y.astype(self.dtype)


class EfficientNet3D(nn.Module):
    num_classes: int
    stem_features: int
    stem_stride: int
    stages: Sequence[tuple]  # (expansion, kernel, stride, channels, blocks), scaled
    top_features: int
    dropout: float
    drop_path: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        downsampling = 2 ** sum(s == 2 for _, _, s, _, _ in self.stages) * self.stem_stride
        check_in_plane("efficientnet3d", x, downsampling)
        x = x.astype(self.dtype)
        x = _conv_norm(self, x, "stem", self.stem_features, 3, self.stem_stride, train)
        x = stage_features(self, "stem", x)
        total, index = sum(n for *_, n in self.stages), 0
        for i, (t, k, s, c, n) in enumerate(self.stages, start=1):
            for j in range(n):
                x = MBConv3D(
                    c,
                    k,
                    s if j == 0 else 1,
                    t,
                    self.drop_path * index / total,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    name=f"stage{i}_block{j}",
                )(x, train)
                index += 1
            x = stage_features(self, f"stage{i}", x)
        x = _conv_norm(self, x, "top", self.top_features, 1, 1, train)
        x = stage_features(self, "top", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
        return pooled_head(self, x, train)


def _efficientnet3d(name: str, width: float, depth: float):
    def build(cfg, num_classes, image_size, act, norm, dtype):
        small = small_stem(cfg, image_size)
        check_input_size(name, image_size, 8 if small else 32)  # D; in-plane when traced
        strides = [row[3] for row in B0_STAGES]
        strides = small_strides(strides) if small else strides
        stages = tuple(
            (t, k, s, make_divisible(c_out * width), math.ceil(n * depth))
            for (_, t, k, _, _, c_out, n), s in zip(B0_STAGES, strides, strict=True)
        )
        return EfficientNet3D(
            num_classes,
            stem_features=make_divisible(B0_STAGES[0][4] * width),
            stem_stride=1 if small else 2,
            stages=stages,
            top_features=4 * stages[-1][3],
            dropout=cfg.dropout,
            drop_path=float(cfg.stochastic_depth),
            act=act,
            norm=norm,
            dtype=dtype,
            conv_impl=cfg.conv,
        )

    MODELS.register(name, build)


_efficientnet3d("efficientnet3d_b3", *SCALING["efficientnet_b3"][:2])
