"""Inception-v3 (Szegedy et al. 2016), torchvision's layout without the auxiliary classifier.

Every convolution is torchvision's BasicConv2d: bias-free conv -> norm -> act (torchvision's
BatchNorm uses eps 1e-3; here the norm comes from config.model.norm, like every model's).
Module names are torchvision's (Conv2d_1a_3x3, Mixed_5b/branch1x1, ...; each BasicConv has
children conv and norm = bn), so its weights map one to one; the classifier is `head` (= fc).

ImageNet stem: three 3x3 convs (the first strided), max-pool, 1x1, 3x3, max-pool, most of them
unpadded as in the reference, which is why inputs must be at least 75 px (299 px is the usual).
Small-image stem (config.model.stem small, or auto at <= 64 px): the same convs, all stride 1
and padded, and no max-pools, so a 28 px input reaches the 35-px-grid blocks (Mixed_5*) at
28 px, the 17-px-grid ones at 13 px and the 8-px-grid ones at 6 px, the reference's shape of
grid sizes. The parameters are the same for both stems and any input size.

Stage features (sown in 'intermediates'): stem, stage1 (after Mixed_5d), stage2 (after
Mixed_6e), stage3 (after Mixed_7c, the usual Grad-CAM layer), pooled.
"""

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.conv import Conv
from medjax.models.layers import pooled_head, stage_features
from medjax.models.registry import MODELS, check_input_size, small_stem


class BasicConv(nn.Module):
    features: int
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    act: Callable = nn.relu
    norm: Any = None
    dtype: Any = jnp.float32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        (kh, kw), (ph, pw) = self.kernel, self.padding
        if kh == kw and ph == pw:
            conv = Conv(self.features, kh, self.stride, ph, self.dtype, self.conv_impl, name="conv")
        else:  # the 1x7 / 7x1 / 1x3 / 3x1 factorised kernels
            conv = nn.Conv(
                self.features,
                (kh, kw),
                self.stride,
                padding=((ph, ph), (pw, pw)),
                use_bias=False,
                dtype=self.dtype,
                name="conv",
            )
        x = self.act(self.norm(name="norm")(conv(x), train))
        return x.astype(self.dtype)


def _pool_avg(x):  # torchvision's avg_pool2d(3, 1, 1), padding counted in the mean
    return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)


def _pool_max(x):
    return nn.max_pool(x, (3, 3), (2, 2))


class Mixed(nn.Module):
    """One Inception module: branches of BasicConvs (and a pool), concatenated on channels.

    `branches` maps a branch's name to its convs as (name, features, kernel, stride, padding),
    in order; a conv listed as a tuple of two forks the branch into two concatenated convs
    (InceptionE's 1x3 / 3x1 pair). `pool` is 'avg' (then a 1x1 conv `branch_pool` of
    `pool_features`) or 'max' (no conv: the reductions Mixed_6a and Mixed_7a).
    """

    branches: tuple
    pool: str
    pool_features: int
    act: Callable
    norm: Any
    dtype: Any
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool):
        bc = functools.partial(
            BasicConv, act=self.act, norm=self.norm, dtype=self.dtype, conv_impl=self.conv_impl
        )
        outs = []
        for convs in self.branches:
            y = x
            for spec in convs:
                if isinstance(spec[0], tuple):  # a fork: both convs read y
                    y = jnp.concatenate([bc(*s[1:], name=s[0])(y, train) for s in spec], -1)
                else:
                    y = bc(*spec[1:], name=spec[0])(y, train)
            outs.append(y)
        if self.pool == "avg":
            outs.append(bc(self.pool_features, name="branch_pool")(_pool_avg(x), train))
        else:
            outs.append(_pool_max(x))
        return jnp.concatenate(outs, -1)


def _c(name, features, kernel=1, stride=1, padding=0):
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    padding = (padding, padding) if isinstance(padding, int) else padding
    return (name, features, kernel, stride, padding)


# (kernel, stride, padding) of the factorised 7x7: a 1x7 row and a 7x1 column
R7, C7 = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))

A = (  # InceptionA: the 35-px grid
    (_c("branch1x1", 64),),
    (_c("branch5x5_1", 48), _c("branch5x5_2", 64, 5, 1, 2)),
    (
        _c("branch3x3dbl_1", 64),
        _c("branch3x3dbl_2", 96, 3, 1, 1),
        _c("branch3x3dbl_3", 96, 3, 1, 1),
    ),
)
B = (  # InceptionB: 35 -> 17 px reduction
    (_c("branch3x3", 384, 3, 2),),
    (
        _c("branch3x3dbl_1", 64),
        _c("branch3x3dbl_2", 96, 3, 1, 1),
        _c("branch3x3dbl_3", 96, 3, 2),
    ),
)


def _inception_c(c7):  # InceptionC: the 17-px grid, factorised 7x7 convs of c7 channels
    return (
        (_c("branch1x1", 192),),
        (
            _c("branch7x7_1", c7),
            _c("branch7x7_2", c7, *R7),
            _c("branch7x7_3", 192, *C7),
        ),
        (
            _c("branch7x7dbl_1", c7),
            _c("branch7x7dbl_2", c7, *C7),
            _c("branch7x7dbl_3", c7, *R7),
            _c("branch7x7dbl_4", c7, *C7),
            _c("branch7x7dbl_5", 192, *R7),
        ),
    )


D = (  # InceptionD: 17 -> 8 px reduction
    (_c("branch3x3_1", 192), _c("branch3x3_2", 320, 3, 2)),
    (
        _c("branch7x7x3_1", 192),
        _c("branch7x7x3_2", 192, *R7),
        _c("branch7x7x3_3", 192, *C7),
        _c("branch7x7x3_4", 192, 3, 2),
    ),
)


def _fork(prefix):  # InceptionE's 1x3 and 3x1 convs, both reading the same input
    return (_c(f"{prefix}a", 384, (1, 3), 1, (0, 1)), _c(f"{prefix}b", 384, (3, 1), 1, (1, 0)))


E = (  # InceptionE: the 8-px grid
    (_c("branch1x1", 320),),
    (_c("branch3x3_1", 384), _fork("branch3x3_2")),
    (_c("branch3x3dbl_1", 448), _c("branch3x3dbl_2", 384, 3, 1, 1), _fork("branch3x3dbl_3")),
)

# (name, branches, pool, pool_features, stage feature sown after it)
BLOCKS = (
    ("Mixed_5b", A, "avg", 32, None),
    ("Mixed_5c", A, "avg", 64, None),
    ("Mixed_5d", A, "avg", 64, "stage1"),
    ("Mixed_6a", B, "max", 0, None),
    ("Mixed_6b", _inception_c(128), "avg", 192, None),
    ("Mixed_6c", _inception_c(160), "avg", 192, None),
    ("Mixed_6d", _inception_c(160), "avg", 192, None),
    ("Mixed_6e", _inception_c(192), "avg", 192, "stage2"),
    ("Mixed_7a", D, "max", 0, None),
    ("Mixed_7b", E, "avg", 192, None),
    ("Mixed_7c", E, "avg", 192, "stage3"),
)


class InceptionV3(nn.Module):
    num_classes: int
    small_stem: bool
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        bc = functools.partial(
            BasicConv, act=self.act, norm=self.norm, dtype=self.dtype, conv_impl=self.conv_impl
        )
        x = x.astype(self.dtype)
        s, p = (1, 1) if self.small_stem else (2, 0)  # stride of 1a; padding of the 3x3s
        x = bc(32, (3, 3), s, (p, p), name="Conv2d_1a_3x3")(x, train)
        x = bc(32, (3, 3), 1, (p, p), name="Conv2d_2a_3x3")(x, train)
        x = bc(64, (3, 3), 1, (1, 1), name="Conv2d_2b_3x3")(x, train)
        if not self.small_stem:
            x = _pool_max(x)
        x = bc(80, name="Conv2d_3b_1x1")(x, train)
        x = bc(192, (3, 3), 1, (p, p), name="Conv2d_4a_3x3")(x, train)
        if not self.small_stem:
            x = _pool_max(x)
        x = stage_features(self, "stem", x)
        for name, branches, pool, pool_features, stage in BLOCKS:
            x = Mixed(
                branches,
                pool,
                pool_features,
                self.act,
                self.norm,
                self.dtype,
                self.conv_impl,
                name=name,
            )(x, train)
            if stage:
                x = stage_features(self, stage, x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


def _final_size(size: int, small: bool) -> int:
    """The side of the last feature map: unpadded 3x3 convs and pools also trim borders."""

    def down(n):  # an unpadded 3x3, stride 2 (conv or pool)
        return (n - 3) // 2 + 1

    if not small:
        size = down(down(down(size) - 2) - 2)  # 1a, 2a, pool, 4a, pool
    return down(down(size))  # Mixed_6a, Mixed_7a


@MODELS.register("inception_v3")
def inception_v3(cfg, num_classes, image_size, act, norm, dtype):
    small = small_stem(cfg, image_size)
    check_input_size("inception_v3", image_size, 4 if small else 32)
    if _final_size(image_size, small) < 1:
        least = next(n for n in range(1, 512) if _final_size(n, small) >= 1)
        raise ConfigError(
            f"model 'inception_v3' with the {'small' if small else 'imagenet'} stem needs inputs "
            f"of at least {least} px (its unpadded convolutions trim the borders), not "
            f"{image_size} px; use a larger config.data.image_size or config.model.stem='small'"
        )
    return InceptionV3(num_classes, small, cfg.dropout, act, norm, dtype, cfg.conv)
