"""VGG-11/16/19 (Simonyan & Zisserman 2015), plain and with batch norm, in torchvision's layout.

ImageNet layout (stem 'imagenet'): five stages of 3x3 convolutions (with bias, as torchvision's,
also in the `_bn` variants), each followed by a 2x2 max-pool (32x downsampling), a 7x7 adaptive
average pool and the classifier Linear(25088, 4096)-act-dropout-Linear(4096, 4096)-act-dropout-
Linear(4096, classes). VGG-16 at 1000 classes has torchvision's 138,357,544 parameters.

Small-image layout (stem 'small', or 'auto' at <= 64 px): only the first three stages pool
(8x downsampling, 28 px -> 3x3 at the last stage); a 7x7 adaptive pool of a 3x3 map would only
copy pixels, so the last map is globally averaged and the classifier is 512-512-classes wide, as
in the CIFAR VGGs (Liu & Deng 2015), instead of carrying 120M mostly useless parameters.

Config: the `_bn` variants put `config.model.norm` after every convolution, the plain variants
use no normalisation whatever the config says (that is what distinguishes them). The activation
is `config.model.activation` (ReLU in the paper), the classifier dropout `config.model.dropout`
(0.5 in torchvision, 0 by default here).

Weight import: `stage{s}_conv{i}` is torchvision's i-th conv of stage s, `stage{s}_norm{i}` its
BatchNorm, `fc1`/`fc2`/`head` are classifier.0/3/6; the adaptive-pool output is flattened in
channel-first order, as torch's, so fc1's kernel is torch's weight transposed.
`config.model.layout = "keras"` builds keras.applications' VGG16/19 head instead: the last
map flattened as it is, channel-last (Keras' Flatten), with no adaptive pool, so fc1 takes
H/32 * W/32 * 512 inputs (25088 at 224 px, Keras' ImageNet size).
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from medjax.models.layers import Identity, stage_features
from medjax.models.registry import MODELS, check_input_size, keras_layout, small_stem

# Convolution widths per stage (torchvision's cfgs "A", "D", "E"); a max-pool ends each stage.
STAGES = {
    "vgg11": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "vgg16": ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
    "vgg19": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
SMALL_POOLS = 3  # stages that still pool in the small-image layout


def _pool_matrix(n: int, out: int) -> np.ndarray:
    # torch's AdaptiveAvgPool bins: [floor(j*n/out), ceil((j+1)*n/out)).
    m = np.zeros((out, n), np.float32)
    for j in range(out):
        start, end = (j * n) // out, -(-(j + 1) * n // out)
        m[j, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x, size: int):
    """torch.nn.AdaptiveAvgPool2d(size) for NHWC x, as two small matrix products."""
    h, w = x.shape[1:3]
    if (h, w) == (size, size):
        return x
    x = jnp.einsum("oh,nhwc->nowc", _pool_matrix(h, size).astype(x.dtype), x)
    return jnp.einsum("pw,nowc->nopc", _pool_matrix(w, size).astype(x.dtype), x)


class Classifier(nn.Module):
    """Linear-act-dropout-Linear-act-dropout-Linear (config.model.head_hidden adds more
    Linear-act-dropout layers, "head_hidden0", ..., before the last); the hidden layers in the compute dtype,
    the last one in float32. `dropout_first` gives AlexNet's order (dropout before each of the
    two hidden Linears instead of after)."""

    num_classes: int
    hidden: int
    dropout: float
    act: Callable
    dtype: Any
    dropout_first: bool = False
    head_hidden: tuple = ()  # config.model.head_hidden: after fc2, before 'head'

    @nn.compact
    def __call__(self, x, train: bool):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        layers = [(f"fc{i}", self.hidden) for i in (1, 2)]
        layers += [(f"head_hidden{i}", w) for i, w in enumerate(self.head_hidden)]
        for name, width in layers:
            x = drop(x) if self.dropout_first else x
            x = self.act(nn.Dense(width, dtype=self.dtype, name=name)(x))
            x = x if self.dropout_first else drop(x)
        return nn.Dense(self.num_classes, name="head")(x.astype(jnp.float32))


class VGG(nn.Module):
    num_classes: int
    stages: Sequence[Sequence[int]]
    small: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    keras_flatten: bool = False  # Keras' channel-last Flatten of the last map, no adaptive pool
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(self.dtype)
        for s, widths in enumerate(self.stages, start=1):
            for i, width in enumerate(widths):
                x = nn.Conv(width, (3, 3), padding=1, dtype=self.dtype, name=f"stage{s}_conv{i}")(x)
                x = self.act(self.norm(name=f"stage{s}_norm{i}")(x, train)).astype(self.dtype)
            # Sown before the pool: the last conv map of a stage is the usual Grad-CAM layer.
            x = stage_features(self, f"stage{s}", x)
            if not self.small or s <= SMALL_POOLS:
                x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.astype(jnp.float32)
        if self.small:
            x = jnp.mean(x, axis=(1, 2))
        elif self.keras_flatten:
            x = x.reshape(x.shape[0], -1)
        else:  # channel-first flatten, as torch.flatten of an NCHW map
            x = adaptive_avg_pool(x, 7).transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        self.sow("intermediates", "pooled", x)
        hidden = 512 if self.small else 4096
        return Classifier(
            self.num_classes,
            hidden,
            self.dropout,
            self.act,
            self.dtype,
            head_hidden=self.head_hidden,
        )(x, train)


def _vgg(name: str, batch_norm: bool):
    stages = STAGES[name.removesuffix("_bn")]

    def build(cfg, num_classes, image_size, act, norm, dtype):
        small = small_stem(cfg, image_size)
        check_input_size(name, image_size, 2 ** (SMALL_POOLS if small else len(stages)))
        norm = norm if batch_norm else Identity
        return VGG(num_classes, stages, small, cfg.dropout, act, norm, dtype, keras_layout(cfg))

    MODELS.register(name, build)


for _name in STAGES:
    _vgg(_name, batch_norm=False)
    _vgg(f"{_name}_bn", batch_norm=True)
