"""Two hybrids of convolutions and ViT's encoder blocks: vit_conv_stem and cnn_attention.

vit_conv_stem is the "improved ViT" of Xiao et al. 2021 (Early convolutions help transformers
see better): ViT's patchify layer (one p x p stride-p conv) replaced by log2(p) stacked 3x3
stride-2 conv-norm-act layers, their channels doubling up to the token width (their
ViT_C-1GF: 24, 48, 96, 192 for p = 16, width 192), then a 1x1 conv (with bias) to the token
width; the rest is vit.py's (class token, position embeddings, pre-norm encoder blocks, final
LayerNorm); the default depth, 11, is one block fewer than ViT's 12, as the paper's, to keep
the flops.
The patch size (config.model.patch_size) must be a power of two that divides the image: 28 px
with patch 4 gives two stem convs and 7 x 7 tokens.

cnn_attention is the "CNN + self-attention transformer" design: the plain CNN's stages
(cnn.conv_stages: widths, convs_per_stage, kernel_size, pool) make a feature map (N, h, w, C);
each of its h * w positions is a token, projected by a Linear layer ("proj") to the token width,
given a learned position embedding, and read by ViT's encoder blocks, so every position attends
to every other; the final LayerNorm'd tokens are averaged (there is no class token) and go
through dropout to the Linear head.

Config (the keys shared by both): config.model.transformer_width, transformer_depth and
transformer_heads (the defaults, 192, 11 and 3, are ViT_C-1GF's); the MLP is 4x the width and
uses config.model.activation (the experiment configs set 'gelu'); config.model.norm and
activation also shape the conv stem and the CNN (the paper's stem used BatchNorm and ReLU);
config.model.dropout is applied as in vit.py, and before the head. Both models take only the
image size they were built for (their position embeddings are sized for it).

Intermediates: vit_conv_stem "patches" (N, h, w, width) after the stem (as vit's, the
spatial map Grad-CAM can take), "block{i}" (class token first), "pooled"; cnn_attention
"stage{i}", "tokens" (N, h, w, width) after the projection (Grad-CAM's default), "block{i}"
(N, h * w, width), "pooled".
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.cnn import check_cnn_config, conv_stages
from medjax.models.layers import conv_norm_act, pooled_head, stage_features
from medjax.models.registry import MODELS
from medjax.models.vit import (
    F32,
    check_built_size,
    check_patch_size,
    class_token_encoder,
    encoder_blocks,
    layer_norm,
)


class ViTConvStem(nn.Module):
    num_classes: int
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = F32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_built_size("vit_conv_stem", self.image_size, x)
        convs = self.patch_size.bit_length() - 1  # log2 of a power of two
        for i in range(convs):
            features = max(1, self.width // 2 ** (convs - 1 - i))
            x = conv_norm_act(self, x, f"stem{i}", features, 3, 2, train)
        x = nn.Conv(self.width, (1, 1), dtype=self.dtype, name="conv_proj")(x)
        x = stage_features(self, "patches", x)
        return pooled_head(self, class_token_encoder(self, x, train), train)


class CNNAttention(nn.Module):
    num_classes: int
    image_size: int
    widths: Sequence[int]
    convs_per_stage: int
    kernel_size: int
    pool: str
    width: int
    depth: int
    heads: int
    dropout: float
    act: Callable
    norm: Any
    dtype: Any = F32
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_built_size("cnn_attention", self.image_size, x)
        x = conv_stages(self, x, train)
        x = nn.Dense(self.width, dtype=self.dtype, name="proj")(x)
        x = stage_features(self, "tokens", x)
        n, h, w, _ = x.shape
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, h * w, self.width))
        x = x.reshape(n, h * w, self.width) + pos.astype(self.dtype)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = encoder_blocks(self, x, train)
        x = layer_norm("encoder_ln")(x).astype(F32)
        return pooled_head(self, jnp.mean(x, axis=1), train)


def _transformer_keys(name: str, cfg) -> tuple[int, int, int]:
    """(width, depth, heads) from config.model.transformer_*, refused unless usable."""
    width, depth, heads = cfg.transformer_width, cfg.transformer_depth, cfg.transformer_heads
    if min(width, depth, heads) < 1 or width % heads:
        raise ConfigError(
            f"{name}: config.model.transformer_width ({width}), transformer_depth ({depth}) and "
            f"transformer_heads ({heads}) must be positive, with the width a multiple of the "
            f"heads (e.g. width 192 with 3 heads, 64 with 4)"
        )
    return width, depth, heads


@MODELS.register("vit_conv_stem")
def vit_conv_stem(cfg, num_classes, image_size, act, norm, dtype):
    width, depth, heads = _transformer_keys("vit_conv_stem", cfg)
    p = cfg.patch_size
    if p < 2 or p & (p - 1):
        raise ConfigError(
            f"vit_conv_stem: config.model.patch_size={p} must be a power of two (2, 4, 8, 16): "
            f"the stem halves the image once per 3x3 stride-2 conv"
        )
    check_patch_size(image_size, p)
    return ViTConvStem(
        num_classes, image_size, p, width, depth, heads, cfg.dropout, act, norm, dtype, cfg.conv
    )


@MODELS.register("cnn_attention")
def cnn_attention(cfg, num_classes, image_size, act, norm, dtype):
    width, depth, heads = _transformer_keys("cnn_attention", cfg)
    check_cnn_config("cnn_attention", cfg, image_size)
    return CNNAttention(
        num_classes,
        image_size,
        tuple(cfg.widths),
        cfg.convs_per_stage,
        cfg.kernel_size,
        cfg.pool,
        width,
        depth,
        heads,
        cfg.dropout,
        act,
        norm,
        dtype,
        cfg.conv,
    )
