"""3D models for volumes (N, D, H, W, C): a plain 3D CNN and a 3D ResNet-18.

The builders get the first spatial dimension (D) as `image_size`; the in-plane size is checked
when the model is traced, since only then is it known. `config.model.stem` 'auto' picks the
small stem for D <= 64 (MedMNIST 3D volumes are 28^3).

resnet3d_18 is torchvision's r3d_18 (Tran et al. 2018, 33,371,472 params at 400 Kinetics
classes): stem conv 3x7x7 stride (1, 2, 2) with 64 channels (no max-pool), four stages of two
basic blocks of 3x3x3 convs (64, 128, 256, 512 channels), stages 2-4 halving D, H and W, a
1x1x1 projection where the shape changes, global average pooling and a Linear head. The small
stem is a 3x3x3 stride-1 conv, so 28^3 volumes reach stage 4 at 4^3. Names follow resnet.py
(stem_conv, stage{i}_block{j}/conv1, ...; torchvision's stem.0, layer{i}.{j}.conv1.0, ...).
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.cnn import check_cnn_config
from medjax.models.conv3d import Conv3D
from medjax.models.layers import pooled_head, stage_features
from medjax.models.registry import MODELS, check_input_size, small_stem


def _conv(features, kernel, stride, dtype, name, impl="auto"):
    """Bias-free 3D conv with torch's symmetric padding (kernel // 2), as Conv3d(bias=False)."""
    return Conv3D(features, tuple(kernel), stride, dtype, impl, name=name)


def check_in_plane(name: str, x, downsampling: int) -> None:
    """The builder checked D; refuse an in-plane size the model would shrink to nothing."""
    if x.ndim != 5:
        raise ConfigError(
            f"model {name!r} takes volumes (N, D, H, W, C) but got an input of shape {x.shape}"
        )
    check_input_size(name, min(x.shape[2:4]), downsampling)


class CNN3D(nn.Module):
    """cnn.CNN with 3D kernels: stages of (conv -> norm -> act) x convs_per_stage, 2x2x2 pooling
    between stages, global average pooling, dropout and a linear classifier."""

    num_classes: int
    widths: Sequence[int]
    convs_per_stage: int
    kernel_size: int
    pool: str
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_in_plane("cnn3d", x, 2 ** (len(self.widths) - 1))
        x = x.astype(self.dtype)
        k = (self.kernel_size,) * 3
        for i, width in enumerate(self.widths):
            if i > 0:
                pool = nn.max_pool if self.pool == "max" else nn.avg_pool
                x = pool(x, (2, 2, 2), (2, 2, 2))
            for j in range(self.convs_per_stage):
                x = _conv(width, k, 1, self.dtype, f"conv{i}_{j}", self.conv_impl)(x)
                x = self.act(self.norm(name=f"norm{i}_{j}")(x, train)).astype(self.dtype)
            x = stage_features(self, f"stage{i}", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
        return pooled_head(self, x, train)


class BasicBlock3D(nn.Module):
    features: int
    stride: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda k, s, name: _conv(self.features, k, s, self.dtype, name, self.conv_impl)
        y = conv((3, 3, 3), self.stride, "conv1")(x)
        y = self.act(self.norm(name="norm1")(y, train))
        y = conv((3, 3, 3), 1, "conv2")(y.astype(self.dtype))
        y = self.norm(name="norm2")(y, train)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv((1, 1, 1), self.stride, "proj")(x)
            x = self.norm(name="proj_norm")(x, train)
        return self.act(y + x).astype(self.dtype)


class ResNet3D(nn.Module):
    num_classes: int
    stage_sizes: Sequence[int]
    small_stem: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_in_plane("resnet3d_18", x, 8 if self.small_stem else 16)
        x = x.astype(self.dtype)
        kernel, stride = ((3, 3, 3), 1) if self.small_stem else ((3, 7, 7), (1, 2, 2))
        x = _conv(64, kernel, stride, self.dtype, "stem_conv", self.conv_impl)(x)
        x = self.act(self.norm(name="stem_norm")(x, train)).astype(self.dtype)
        x = stage_features(self, "stem", x)
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):
                stride = 2 if i > 0 and j == 0 else 1
                x = BasicBlock3D(
                    64 * 2**i,
                    stride,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    name=f"stage{i + 1}_block{j}",
                )(x, train)
            x = stage_features(self, f"stage{i + 1}", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
        return pooled_head(self, x, train)


@MODELS.register("cnn3d")
def cnn3d(cfg, num_classes, image_size, act, norm, dtype):
    check_cnn_config("cnn3d", cfg, image_size)
    return CNN3D(
        num_classes,
        tuple(cfg.widths),
        cfg.convs_per_stage,
        cfg.kernel_size,
        cfg.pool,
        cfg.dropout,
        act,
        norm,
        dtype,
        cfg.conv,
    )


@MODELS.register("resnet3d_18")
def resnet3d_18(cfg, num_classes, image_size, act, norm, dtype):
    small = small_stem(cfg, image_size)
    # Neither stem strides in depth; the three stride-2 stages halve it 8x.
    check_input_size("resnet3d_18", image_size, 8)
    return ResNet3D(num_classes, (2, 2, 2, 2), small, cfg.dropout, act, norm, dtype, cfg.conv)
