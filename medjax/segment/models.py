"""Segmentation networks selected by `config.segment.model`; each maps (N, H, W, C) images to
per-pixel logits (N, H, W, classes).

U-Net (Ronneberger et al. 2015) with "same" padding, so the output keeps the input's size;
FCN (Long et al. 2015) in its 8s form, score maps of the last stages fused coarse to fine;
DeepLabV3 (Chen et al. 2017: a dilated last stage, atrous spatial pyramid pooling) and
DeepLabV3+ (Chen et al. 2018: v3's head plus a decoder fed by the first stage). Widths, rates,
normalisation and activation come from the config, by the same names the classifiers use.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.conv import Conv
from medjax.models.layers import ACTIVATIONS, NORMS, Identity
from medjax.registry import Registry

SEGMENTERS = Registry("segmentation model", "config.segment.model")


class ConvNormAct(nn.Module):
    """conv -> norm -> activation; the conv has a bias only without normalisation (a norm's
    shift makes it redundant), as in the reference implementations."""

    features: int
    act: Callable
    norm: Any
    kernel: int = 3
    dilation: int = 1
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        k, d = self.kernel, self.dilation
        if d == 1:
            x = Conv(self.features, k, impl=self.conv_impl, name="conv")(x)
        else:  # atrous: medjax's GEMM conv has no dilation
            x = nn.Conv(self.features, (k, k), kernel_dilation=d, use_bias=False, name="conv")(x)
        if self.norm is Identity:
            x = x + self.param("bias", nn.initializers.zeros, (self.features,))
        return self.act(self.norm(name="norm")(x, train))


def _resize(x, like):
    """`x` bilinearly resized to the spatial size of `like`."""
    return jax.image.resize(x, (x.shape[0], *like.shape[1:3], x.shape[-1]), "bilinear")


class _Segmenter(nn.Module):
    num_classes: int
    widths: Sequence[int]
    act: Callable
    norm: Any
    conv_impl: str = "auto"

    def block(self, features, name, kernel=3, dilation=1):
        return ConvNormAct(
            features, self.act, self.norm, kernel, dilation, self.conv_impl, name=name
        )

    def double(self, x, features, name, train, dilation=1):
        x = self.block(features, f"{name}_0", dilation=dilation)(x, train)
        return self.block(features, f"{name}_1", dilation=dilation)(x, train)

    def classify(self, x):
        return nn.Conv(self.num_classes, (1, 1), name="classifier")(x)


class UNet(_Segmenter):
    """Two 3x3 convs per level, 2x2 max pooling down, 2x2 transposed convs up, skips
    concatenated: widths (64, 128, 256, 512, 1024) is the paper's network."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        skips = []
        for i, width in enumerate(self.widths):
            if i:
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = self.double(x, width, f"down{i}", train)
            skips.append(x)
        for i in range(len(self.widths) - 2, -1, -1):
            width = self.widths[i]
            x = nn.ConvTranspose(width, (2, 2), (2, 2), name=f"upconv{i}")(x)
            x = self.double(jnp.concatenate([skips[i], x], -1), width, f"up{i}", train)
        return self.classify(x)


class FCN(_Segmenter):
    """A plain conv backbone (two convs per stage, max pooling between), a 1x1 score map on
    its last stage, upsampled and summed with the score maps of up to two earlier stages (the
    8s form when there are enough), then upsampled to the input. Upsampling is bilinear and
    fixed, where the paper learns deconvolutions initialised as bilinear."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        size, stages = x, []
        for i, width in enumerate(self.widths):
            if i:
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = self.double(x, width, f"stage{i}", train)
            stages.append(x)
        score = self.classify(stages[-1])
        for i in range(len(stages) - 2, max(len(stages) - 4, -1), -1):
            skip = nn.Conv(self.num_classes, (1, 1), name=f"score{i}")(stages[i])
            score = _resize(score, skip) + skip
        return _resize(score, size)


class DeepLabV3(_Segmenter):
    """A conv backbone that pools between stages except before the last, which dilates by 2
    instead (output stride 2^(stages-2)); ASPP: a 1x1 conv, one 3x3 atrous conv per rate and
    image pooling, concatenated and projected; a 3x3 conv and the classifier; bilinear
    upsampling to the input. `decoder` (v3+): the head's output upsampled to the first
    stage's size, concatenated with those low-level features reduced by a 1x1 conv, then two
    3x3 convs before the classifier."""

    rates: Sequence[int] = (6, 12, 18)
    decoder: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        size, stages, last = x, [], len(self.widths) - 1
        for i, width in enumerate(self.widths):
            if 0 < i < last:
                x = nn.max_pool(x, (2, 2), (2, 2))
            x = self.double(x, width, f"stage{i}", train, dilation=2 if i == last > 0 else 1)
            stages.append(x)
        x = self.aspp(x, train)
        if self.decoder:
            low = self.block(max(self.widths[0] // 2, 8), "low_level", kernel=1)(stages[0], train)
            x = jnp.concatenate([_resize(x, low), low], -1)
            x = self.double(x, self.widths[-1], "decoder", train)
        else:
            x = self.block(self.widths[-1], "head", kernel=3)(x, train)
        return _resize(self.classify(x), size)

    def aspp(self, x, train):
        width = self.widths[-1]
        branches = [self.block(width, "aspp_1x1", kernel=1)(x, train)]
        for rate in self.rates:
            branches.append(self.block(width, f"aspp_rate{rate}", dilation=rate)(x, train))
        pooled = self.block(width, "aspp_pool", kernel=1)(jnp.mean(x, (1, 2), keepdims=True), train)
        branches.append(jnp.broadcast_to(pooled, branches[0].shape))
        return self.block(width, "aspp_project", kernel=1)(jnp.concatenate(branches, -1), train)


def _check_widths(name: str, cfg, image_size: int, downsampling: int) -> None:
    if not cfg.widths or min(cfg.widths) < 1:
        raise ConfigError(f"config.segment.widths must be positive widths, not {cfg.widths!r}")
    if image_size % downsampling:
        raise ConfigError(
            f"segmentation model {name!r} with {len(cfg.widths)} widths halves the image "
            f"{len(cfg.widths) - 1 if name == 'unet' else len(cfg.widths) - 2} times, so "
            f"config.data.image_size must be a multiple of {downsampling}, not {image_size}; "
            f"use fewer config.segment.widths or another image size"
        )


@SEGMENTERS.register("unet")
def unet(cfg, num_classes, image_size, act, norm):
    _check_widths("unet", cfg, image_size, 2 ** (len(cfg.widths) - 1))
    return UNet(num_classes, tuple(cfg.widths), act, norm)


@SEGMENTERS.register("fcn")
def fcn(cfg, num_classes, image_size, act, norm):
    _check_widths("fcn", cfg, image_size, 1)  # fused with bilinear resizing: any size
    return FCN(num_classes, tuple(cfg.widths), act, norm)


def _deeplab(name, decoder):
    def build(cfg, num_classes, image_size, act, norm):
        _check_widths(name, cfg, image_size, 1)
        if not cfg.atrous_rates or min(cfg.atrous_rates) < 1:
            raise ConfigError(
                f"config.segment.atrous_rates must be positive dilation rates, not "
                f"{cfg.atrous_rates!r}"
            )
        widths, rates = tuple(cfg.widths), tuple(cfg.atrous_rates)
        return DeepLabV3(num_classes, widths, act, norm, rates=rates, decoder=decoder)

    return build


SEGMENTERS.register("deeplabv3", _deeplab("deeplabv3", decoder=False))
SEGMENTERS.register("deeplabv3plus", _deeplab("deeplabv3plus", decoder=True))


def build_segmenter(segment_config, image_size: int, num_classes: int = 2):
    """`config.segment.model` with its activation and normalisation looked up by name."""
    factory = SEGMENTERS.get(segment_config.model)
    act = ACTIVATIONS.get(segment_config.activation)
    norm = NORMS.get(segment_config.norm)
    return factory(segment_config, num_classes, image_size, act, norm)
