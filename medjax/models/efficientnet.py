"""EfficientNet-B0..B7 (Tan & Le 2019) and EfficientNetV2-S/M/L (Tan & Le 2021), torchvision's
layout.

B0 is a 3x3/2 stem conv, seven stages of MBConv blocks (1x1 expansion, kxk depthwise,
squeeze-and-excitation, linear 1x1 projection, identity shortcut), a 1x1 conv to 4x the last
width, global average pooling, dropout and a linear head. B1..B7 scale it by compound scaling:
widths x `width` (rounded to multiples of 8, torchvision's _make_divisible), blocks per stage
ceil(n x `depth`). V2-S starts with three stages of Fused-MBConv (the expansion and depthwise
convs fused into one kxk conv, no SE) and ends at 1280 channels; V2-M and V2-L add a seventh
stage and more, wider blocks. Parameter counts at 1000 classes equal torchvision's (B0 5,288,548
... B7 66,347,960, V2-S 21,458,488, V2-M 54,139,356, V2-L 118,515,272); the squeeze width is a
quarter of the block's *input* channels and the SE 1x1 convs have biases, as torchvision's.

Config: SiLU (Swish) is replaced by `config.model.activation`, also inside SE (set 'silu' for
the paper's network); the SE gate stays a sigmoid (it is a gate, not an activation). BatchNorm is
`config.model.norm` (torchvision uses eps 1e-3 for B5..B7 and V2; medjax's BatchNorm uses 1e-5).
The head dropout (0.2..0.5 in the paper, DROPOUT below) is `config.model.dropout`. Stochastic
depth (drop-path on residual branches, linearly 0 -> rate over the blocks; 0.2 in the paper) is
`config.model.stochastic_depth` when the config has it, else off; it draws from the 'dropout' rng.

RESOLUTION holds each variant's training resolution (the paper's; torchvision's eval crops) for
experiment configs; the models themselves accept any size. Small-image layout (stem 'small', or
'auto' at <= 64 px): the stem and the first stride-2 stage run at stride 1 (8x downsampling
instead of 32x), so 28 px inputs reach the last stage at 4x4.

Weight import: torchvision features.0 -> stem_conv/stem_norm, features[s][j] ->
stage{s}_block{j} (expand_conv/norm, dw_conv/norm, se/reduce and se/expand, project_conv/norm; for
Fused-MBConv fused_conv/norm and project_conv/norm), features[-1] -> top_conv/top_norm,
classifier.1 -> head.

`config.model.layout = "keras"` builds keras.applications' EfficientNetB0..B7: TensorFlow's
"SAME" padding on the stride-2 convolutions (an even-sized map pads (0, 1) for 3x3, (1, 2) for
5x5; torch pads k//2 both sides) and batch-norm epsilon 1e-3 in every variant. Its names:
stem_conv/stem_bn, block{s}{a,b,..}_{expand_conv,expand_bn,dwconv,bn,se_reduce,se_expand,
project_conv,project_bn}, top_conv/top_bn, predictions. Keras' model also normalises its input
(Rescaling, Normalization layers); medjax leaves that to config.data.preprocess, and the
weight import says which normalisation the file's model applied.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.conv import Conv
from medjax.models.layers import conv_norm_act, pooled_head, stage_features, with_epsilon
from medjax.models.mobilenet import depthwise, make_divisible, small_strides
from medjax.models.registry import MODELS, check_input_size, keras_layout, small_stem

# (block, expansion, kernel, stride, input channels, output channels, blocks) per stage.
B0_STAGES = (
    ("mb", 1, 3, 1, 32, 16, 1),
    ("mb", 6, 3, 2, 16, 24, 2),
    ("mb", 6, 5, 2, 24, 40, 2),
    ("mb", 6, 3, 2, 40, 80, 3),
    ("mb", 6, 5, 1, 80, 112, 3),
    ("mb", 6, 5, 2, 112, 192, 4),
    ("mb", 6, 3, 1, 192, 320, 1),
)
V2_S_STAGES = (
    ("fused", 1, 3, 1, 24, 24, 2),
    ("fused", 4, 3, 2, 24, 48, 4),
    ("fused", 4, 3, 2, 48, 64, 4),
    ("mb", 4, 3, 2, 64, 128, 6),
    ("mb", 6, 3, 1, 128, 160, 9),
    ("mb", 6, 3, 2, 160, 256, 15),
)
V2_M_STAGES = (
    ("fused", 1, 3, 1, 24, 24, 3),
    ("fused", 4, 3, 2, 24, 48, 5),
    ("fused", 4, 3, 2, 48, 80, 5),
    ("mb", 4, 3, 2, 80, 160, 7),
    ("mb", 6, 3, 1, 160, 176, 14),
    ("mb", 6, 3, 2, 176, 304, 18),
    ("mb", 6, 3, 1, 304, 512, 5),
)
V2_L_STAGES = (
    ("fused", 1, 3, 1, 32, 32, 4),
    ("fused", 4, 3, 2, 32, 64, 7),
    ("fused", 4, 3, 2, 64, 96, 7),
    ("mb", 4, 3, 2, 96, 192, 10),
    ("mb", 6, 3, 1, 192, 224, 19),
    ("mb", 6, 3, 2, 224, 384, 25),
    ("mb", 6, 3, 1, 384, 640, 7),
)
# name: (width coefficient, depth coefficient, training resolution, head dropout), the paper's.
SCALING = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}
# V2: name -> (stages, training resolution, head dropout), torchvision's.
V2 = {
    "efficientnet_v2_s": (V2_S_STAGES, 384, 0.2),
    "efficientnet_v2_m": (V2_M_STAGES, 480, 0.3),
    "efficientnet_v2_l": (V2_L_STAGES, 480, 0.4),
}
RESOLUTION = {name: row[2] for name, row in SCALING.items()} | {n: r[1] for n, r in V2.items()}
DROPOUT = {name: row[3] for name, row in SCALING.items()} | {n: r[2] for n, r in V2.items()}


class MBConv(nn.Module):
    """An inverted residual block, with squeeze-and-excitation (kind 'mb') or with the expansion
    and depthwise convs fused into one kxk conv and no SE (kind 'fused')."""

    kind: str
    features: int
    kernel: int
    stride: int
    expand_ratio: int
    drop_path: float
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"
    tf_same: bool = False

    @nn.compact
    def __call__(self, x, train: bool):
        inputs = x.shape[-1]
        expanded = make_divisible(inputs * self.expand_ratio)

        def cn(y, features, kernel, stride, name, act=True):  # conv-norm(-act)
            conv = Conv(
                features, kernel, stride, dtype=self.dtype, impl=self.conv_impl, name=f"{name}_conv"
            )
            y = self.norm(name=f"{name}_norm")(conv(y), train)
            return (self.act(y) if act else y).astype(self.dtype)

        if self.kind == "fused":
            if expanded == inputs:  # a single kxk conv-norm-act
                y = cn(x, self.features, self.kernel, self.stride, "fused")
            else:
                y = cn(x, expanded, self.kernel, self.stride, "fused")
                y = cn(y, self.features, 1, 1, "project", act=False)
        else:
            y = cn(x, expanded, 1, 1, "expand") if expanded != inputs else x
            dw = depthwise(
                expanded,
                self.kernel,
                self.stride,
                self.dtype,
                "dw_conv",
                self.tf_same,
                self.conv_impl,
            )
            y = dw(y)
            y = self.act(self.norm(name="dw_norm")(y, train)).astype(self.dtype)
            y = y * SqueezeExcite(max(1, inputs // 4), self.act, self.dtype, name="se")(y)
            y = cn(y, self.features, 1, 1, "project", act=False)
        if self.stride == 1 and inputs == self.features:
            # Stochastic depth: drop the whole residual branch of a sample.
            drop = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3), deterministic=not train)
            y = drop(y) + x
        return y.astype(self.dtype)


class SqueezeExcite(nn.Module):
    """Per-channel gates from the pooled map: 1x1 conv (bias) - act - 1x1 conv (bias) - sigmoid."""

    squeeze: int
    act: Callable
    dtype: Any

    @nn.compact
    def __call__(self, x):
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = self.act(nn.Conv(self.squeeze, (1, 1), dtype=self.dtype, name="reduce")(s))
        return nn.sigmoid(nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, name="expand")(s))


class EfficientNet(nn.Module):
    num_classes: int
    stem_features: int
    stem_stride: int
    stages: Sequence[tuple]  # (block, expansion, kernel, stride, channels, blocks), scaled
    top_features: int
    dropout: float
    drop_path: float
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
        total = sum(n for *_, n in self.stages)
        index = 0
        for i, (kind, t, k, s, c, n) in enumerate(self.stages, start=1):
            for j in range(n):
                x = MBConv(
                    kind,
                    c,
                    k,
                    s if j == 0 else 1,
                    t,
                    self.drop_path * index / total,
                    self.act,
                    self.norm,
                    self.dtype,
                    self.conv_impl,
                    self.tf_same,
                    name=f"stage{i}_block{j}",
                )(x, train)
                index += 1
            x = stage_features(self, f"stage{i}", x)
        x = conv_norm_act(self, x, "top", self.top_features, 1, 1, train)
        x = stage_features(self, "top", x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


# torchvision's (and the reference TF) batch-norm epsilon for these variants; pretrained
# weights only reproduce their logits with it.
EPS_1E3 = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7", *V2)


def _efficientnet(name: str, base: Sequence[tuple], width: float, depth: float, top: int | None):
    def build(cfg, num_classes, image_size, act, norm, dtype):
        small = small_stem(cfg, image_size)
        check_input_size(name, image_size, 8 if small else 32)
        keras = keras_layout(cfg)
        if keras or name in EPS_1E3:
            norm = with_epsilon(norm, 1e-3)
        strides = [row[3] for row in base]
        strides = small_strides(strides) if small else strides
        stages = tuple(
            (kind, t, k, s, make_divisible(c_out * width), math.ceil(n * depth))
            for (kind, t, k, _, _, c_out, n), s in zip(base, strides, strict=True)
        )
        return EfficientNet(
            num_classes,
            stem_features=make_divisible(base[0][4] * width),
            stem_stride=1 if small else 2,
            stages=stages,
            # B0..B7 end at 4x the last stage's width, V2 at a fixed 1280.
            top_features=top or 4 * stages[-1][4],
            dropout=cfg.dropout,
            drop_path=float(cfg.stochastic_depth),
            act=act,
            norm=norm,
            dtype=dtype,
            conv_impl=cfg.conv,
            tf_same=keras,
        )

    MODELS.register(name, build)


for _name, (_width, _depth, *_) in SCALING.items():
    _efficientnet(_name, B0_STAGES, _width, _depth, None)
for _name, (_stages, *_) in V2.items():
    _efficientnet(_name, _stages, 1.0, 1.0, 1280)
