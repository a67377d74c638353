"""ResNet-50/101 (He et al. 2016) with bottleneck blocks, torchvision's "v1.5" layout.

v1.5 puts a downsampling block's stride on its 3x3 convolution, not on the first 1x1 (the
original paper's v1), as torchvision and most later work do: slightly more accurate, and the
layout pretrained torchvision weights need. Stem, stages, feature names and the small-image
stem are ResNet-18/34's (medjax/models/resnet.py); only the block differs.

`config.model.layout = "keras"` builds keras.applications' ResNet50/101 instead: v1 (the stride
on conv1 and proj, both 1x1) with batch-norm epsilon 1.001e-5. Keras' convolutions also have
biases; each is followed by a batch norm, which cancels a bias in training and absorbs it into
its moving mean in inference, so the weight import folds them there and the parameters stay
torchvision's.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from medjax.models.conv import Conv
from medjax.models.resnet import register_resnet

EXPANSION = 4  # a bottleneck block outputs 4x its inner (3x3) width


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, with a projected shortcut where shapes change;
    names follow torchvision's conv1..3/bn1..3/downsample."""

    features: int  # the inner width; the block outputs EXPANSION * features channels
    stride: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"
    v1: bool = False  # the stride on conv1 (the original paper's and Keras') instead of conv2

    @nn.compact
    def __call__(self, x, train: bool):
        conv = functools.partial(Conv, dtype=self.dtype, impl=self.conv_impl)
        out = self.features * EXPANSION
        s1, s2 = (self.stride, 1) if self.v1 else (1, self.stride)
        y = self.act(self.norm(name="norm1")(conv(self.features, 1, s1, name="conv1")(x), train))
        y = conv(self.features, 3, s2, name="conv2")(y)
        y = self.act(self.norm(name="norm2")(y, train))
        y = self.norm(name="norm3")(conv(out, 1, 1, name="conv3")(y), train)
        if self.stride != 1 or x.shape[-1] != out:
            x = self.norm(name="proj_norm")(conv(out, 1, self.stride, name="proj")(x), train)
        return self.act(y + x).astype(self.dtype)


register_resnet("resnet50", (3, 4, 6, 3), Bottleneck)
register_resnet("resnet101", (3, 4, 23, 3), Bottleneck)
