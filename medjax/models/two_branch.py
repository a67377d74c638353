"""Late fusion of the image with hand-crafted feature channels: two backbones, one classifier.

The input's first `config.model.branch_channels` channels (the image, as the edge and wavelet
preprocessing ops put it first) go to one backbone, the remaining channels (the features) to
another; `config.model.branches` names the two (any registered model but an ensemble or another
two_branch, default two plain CNNs built from the same `config.model` keys). Their pooled
features (the input of each one's Linear 'head', taken by `ensemble.backbone_features`) are
concatenated, then dropout and one Linear head: the usual `pooled_head`, so Grad-CAM and
feature extraction find "pooled" and each branch's stages ("image/stage2", "features/stage2").
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.ensemble import backbone_features, member_config
from medjax.models.layers import pooled_head
from medjax.models.registry import MODELS, build_model

BRANCH_NAMES = ("image", "features")
_NOT_BRANCHES = ("ensemble", "two_branch")


class TwoBranch(nn.Module):
    num_classes: int
    image_branch: nn.Module
    feature_branch: nn.Module
    branch_channels: int
    dropout: float
    preserve_adopted_names = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        split = self.branch_channels
        if x.shape[-1] <= split:
            raise ConfigError(
                f"two_branch gives the first config.model.branch_channels={split} channels to "
                f"the image branch and the rest to the feature branch, but the input has only "
                f"{x.shape[-1]}; add feature channels in config.data.preprocess (e.g. "
                f"'sobel()' or 'dwt()') or lower branch_channels"
            )
        feats = [
            backbone_features(self.image_branch, x[..., :split], train),
            backbone_features(self.feature_branch, x[..., split:], train),
        ]
        return pooled_head(self, jnp.concatenate(feats, axis=-1), train)


@MODELS.register("two_branch")
def two_branch(cfg, num_classes, image_size, act: Callable, norm: Any, dtype):
    branches = tuple(cfg.branches)
    valid = ", ".join(n for n in MODELS.names() if n not in _NOT_BRANCHES)
    if len(branches) != 2:
        raise ConfigError(
            f"config.model.branches must name two backbones (image, features), e.g. "
            f"('cnn', 'cnn'), not {branches!r}. Valid names: {valid}."
        )
    for name in branches:
        if name in _NOT_BRANCHES or name not in MODELS:
            raise ConfigError(
                f"config.model.branches: {name!r} cannot be a branch of two_branch. Valid "
                f"names: {valid}."
            )
    if not isinstance(cfg.branch_channels, int) or cfg.branch_channels < 1:
        raise ConfigError(
            f"config.model.branch_channels must be the number (>= 1) of leading input channels "
            f"that are the image (1 for grey, 3 for RGB), not {cfg.branch_channels!r}"
        )
    built = [
        build_model(member_config(cfg, name), num_classes, image_size).clone(name=branch)
        for name, branch in zip(branches, BRANCH_NAMES, strict=True)
    ]
    return TwoBranch(num_classes, *built, cfg.branch_channels, cfg.dropout)
