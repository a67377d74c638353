"""AlexNet (Krizhevsky et al. 2012) in torchvision's single-tower layout (61,100,840 params).

ImageNet layout (stem 'imagenet'): conv 11x11/4 (64) - pool - conv 5x5 (192) - pool -
conv 3x3 (384, 256, 256) - pool, each pool 3x3 stride 2 (overlapping, as in the paper), a 6x6
adaptive average pool, then dropout-Linear(9216, 4096)-act-dropout-Linear(4096, 4096)-act-
Linear(4096, classes). The size check asks for >= 64 px (63 px is the exact minimum).

Small-image layout (stem 'small', or 'auto' at <= 64 px): the first conv is 3x3 stride 1, the
rest unchanged, so 28 px inputs go 28 -> 13 -> 6 -> 2 through the three pools (the size check
asks for >= 16 px, 15 px is the exact minimum); the last map is globally averaged and the
classifier is 512 wide instead of 4096, like the small VGG in medjax.models.vgg.

Config: the activation is `config.model.activation` (ReLU in the reference), the classifier
dropout `config.model.dropout` (0.5 in torchvision). torchvision's AlexNet has no normalisation
(the paper's local response normalisation was dropped), so `config.model.norm` is not used,
as for the plain VGGs.

Weight import: conv1..conv5 are features.0/3/6/8/10, fc1/fc2/head classifier.1/4/6; the pooled
map is flattened channel-first, as torch's.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.models.layers import stage_features
from medjax.models.registry import MODELS, check_input_size, small_stem
from medjax.models.vgg import Classifier, adaptive_avg_pool


class AlexNet(nn.Module):
    num_classes: int
    small: bool
    dropout: float
    act: Callable
    dtype: Any = jnp.float32
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        def conv(x, features, kernel, stride, name, padding=None):
            padding = kernel // 2 if padding is None else padding
            y = nn.Conv(features, (kernel, kernel), stride, padding, dtype=self.dtype, name=name)(x)
            return self.act(y).astype(self.dtype)

        def pool(x):
            return nn.max_pool(x, (3, 3), (2, 2))

        x = x.astype(self.dtype)
        # torchvision pads the 11x11/4 conv by 2 (not 5): 224 px -> 55x55.
        x = conv(x, 64, 3, 1, "conv1") if self.small else conv(x, 64, 11, 4, "conv1", padding=2)
        x = stage_features(self, "stage1", x)
        x = conv(pool(x), 192, 5, 1, "conv2")
        x = stage_features(self, "stage2", x)
        x = conv(pool(x), 384, 3, 1, "conv3")
        x = conv(x, 256, 3, 1, "conv4")
        x = conv(x, 256, 3, 1, "conv5")
        x = stage_features(self, "stage3", x)  # the last conv map, before the pool
        x = pool(x).astype(jnp.float32)
        if self.small:
            x = jnp.mean(x, axis=(1, 2))
        else:
            x = adaptive_avg_pool(x, 6).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        self.sow("intermediates", "pooled", x)
        hidden = 512 if self.small else 4096
        return Classifier(
            self.num_classes,
            hidden,
            self.dropout,
            self.act,
            self.dtype,
            dropout_first=True,
            head_hidden=self.head_hidden,
        )(x, train)


@MODELS.register("alexnet")
def alexnet(cfg, num_classes, image_size, act, norm, dtype):
    small = small_stem(cfg, image_size)
    # Three 3x3/2 pools need >= 15 px after the first conv; the 11x11/4 conv needs 63 px for that.
    check_input_size("alexnet", image_size, 16 if small else 64)
    return AlexNet(num_classes, small, cfg.dropout, act, dtype)
