"""A configurable plain CNN, the most common model in the medical imaging literature."""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.conv import Conv
from medjax.models.layers import pooled_head, stage_features
from medjax.models.registry import MODELS, check_input_size


class CNN(nn.Module):
    """Stages of (conv -> norm -> activation) x convs_per_stage, pooled between stages, then
    global average pooling, dropout and a linear classifier."""

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
        x = conv_stages(self, x, train)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        return pooled_head(self, x, train)


def conv_stages(module: nn.Module, x, train: bool):
    """The plain CNN's feature map: for each of `module.widths`, 2x2 pooling (`module.pool`; not
    before the first), then (conv -> norm -> act) x convs_per_stage, recorded as stage{i}. Call
    it from a compact __call__ of a module with CNN's fields; the hybrids (conv_lstm,
    cnn_attention) run their recurrence or attention on what it returns."""
    x = x.astype(module.dtype)
    for i, width in enumerate(module.widths):
        if i > 0:
            pool = nn.max_pool if module.pool == "max" else nn.avg_pool
            x = pool(x, (2, 2), (2, 2))
        for j in range(module.convs_per_stage):
            x = Conv(
                width,
                module.kernel_size,
                dtype=module.dtype,
                impl=module.conv_impl,
                name=f"conv{i}_{j}",
            )(x)
            x = module.act(module.norm(name=f"norm{i}_{j}")(x, train))
        x = stage_features(module, f"stage{i}", x)
    return x


def check_cnn_config(name: str, cfg, image_size: int) -> None:
    """The plain CNNs' (2D and 3D) own keys: pooling, widths, depth, odd kernel size."""
    if cfg.pool not in ("max", "avg"):
        raise ConfigError(f"config.model.pool must be 'max' or 'avg', not {cfg.pool!r}")
    if not cfg.widths or cfg.convs_per_stage < 1 or cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
        raise ConfigError(
            "config.model.widths and convs_per_stage must be positive and "
            "config.model.kernel_size odd (3, 5, 7: padding keeps the size)"
        )
    check_input_size(name, image_size, 2 ** (len(cfg.widths) - 1))


@MODELS.register("cnn")
def cnn(cfg, num_classes, image_size, act, norm, dtype):
    check_cnn_config("cnn", cfg, image_size)
    return CNN(
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
