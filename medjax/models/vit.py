"""Vision Transformers (Dosovitskiy et al. 2021): ViT-Ti/S/B in torchvision's vit_b_16 layout.

Patches of `config.model.patch_size` px are embedded by a strided conv with bias (conv_proj), a
learned class token is prepended, learned position embeddings for image_size // patch_size
squared patches plus the class token are added, then 12 pre-norm encoder blocks
(x + attn(ln_1(x)), x + mlp(ln_2(x))), a final LayerNorm (encoder_ln), and a Linear head on the
class token. vit_b at 224 px, patch 16, 1000 classes has torchvision vit_b_16's 86,567,656
parameters; vit_ti and vit_s have timm's vit_tiny/small_patch16_224 counts (same layout).

Config choices fixed by the architecture: normalisation is always LayerNorm (epsilon 1e-6, as
torchvision and timm), so `config.model.norm` is ignored; `config.model.stem` is ignored (the
patch size plays its part). `config.model.activation` replaces GELU in the MLP (experiment
configs set 'gelu'; note medjax's gelu is flax's tanh approximation, torch's is exact).
`config.model.dropout` is applied where torchvision applies its `dropout`: after the position
embedding, after attention and in the MLP; attention weights are not dropped out.

Intermediates: "patches" (N, h, w, width) after conv_proj, "block{i}" the token sequence
(N, 1 + h * w, width) after each block, class token first, so a Grad-CAM map is
tokens[:, 1:].reshape(N, h, w, width); "pooled" the normalised class token (N, width).

Weight import: names follow torchvision (conv_proj, class_token, pos_embedding,
encoder_layer_{i}/ln_1, self_attention (query/key/value/out = in_proj split in three and
out_proj), ln_2, mlp_0, mlp_3, encoder_ln = encoder.ln, head = heads.head).
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.models.layers import hidden_layers, stage_features
from medjax.models.registry import MODELS

F32 = jnp.float32
# torchvision's inits: xavier-uniform MLP weights with near-zero biases, zero head.
_MLP_INIT = {
    "kernel_init": nn.initializers.xavier_uniform(),
    "bias_init": nn.initializers.normal(1e-6),
}


def layer_norm(name):
    # Statistics in float32 under bfloat16 compute, as medjax's other norms.
    return nn.LayerNorm(epsilon=1e-6, dtype=F32, name=name)


class EncoderBlock(nn.Module):
    heads: int
    mlp_dim: int
    dropout: float
    act: Callable
    dtype: Any

    @nn.compact
    def __call__(self, x, train: bool):
        drop = nn.Dropout(self.dropout, deterministic=not train)
        y = layer_norm("ln_1")(x).astype(self.dtype)
        y = nn.MultiHeadDotProductAttention(
            self.heads, dtype=self.dtype, deterministic=True, name="self_attention"
        )(y)
        x = x + drop(y).astype(self.dtype)
        y = layer_norm("ln_2")(x).astype(self.dtype)
        y = nn.Dense(self.mlp_dim, dtype=self.dtype, name="mlp_0", **_MLP_INIT)(y)
        y = drop(self.act(y))
        y = drop(nn.Dense(x.shape[-1], dtype=self.dtype, name="mlp_3", **_MLP_INIT)(y))
        return (x + y).astype(self.dtype)


class ViT(nn.Module):
    num_classes: int
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    dropout: float
    act: Callable
    dtype: Any = F32
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)

    @nn.compact
    def __call__(self, x, train: bool = False):
        check_built_size("vit", self.image_size, x)
        p = self.patch_size
        x = nn.Conv(self.width, (p, p), p, padding="VALID", dtype=self.dtype, name="conv_proj")(
            x.astype(self.dtype)
        )
        x = stage_features(self, "patches", x)
        x = class_token_encoder(self, x, train)
        self.sow("intermediates", "pooled", x)
        x = hidden_layers(self, x, nn.Dropout(self.dropout, deterministic=not train))
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)


def check_built_size(name: str, image_size: int, x) -> None:
    """Refuse inputs of another size than the model was built for: its position embeddings
    are sized for `image_size` at build time."""
    if x.shape[1:3] != (image_size, image_size):
        raise ConfigError(
            f"{name} was built for {image_size}x{image_size} px inputs (its position "
            f"embeddings have that many tokens) but got {x.shape[1]}x{x.shape[2]} px; set "
            f"config.data.image_size to the input size"
        )


def class_token_encoder(module: nn.Module, x, train: bool):
    """ViT's transformer on a token map x (N, h, w, width): a learned class token prepended,
    learned position embeddings added, `module.depth` encoder blocks (intermediates block{i}),
    the final LayerNorm; returns the normalised class token (N, width) in float32. Call it from
    a compact __call__ of a module with ViT's width, depth, heads, dropout, act, dtype fields."""
    n, h, w, width = x.shape
    cls = module.param("class_token", nn.initializers.zeros, (1, 1, width))
    pos = module.param("pos_embedding", nn.initializers.normal(0.02), (1, 1 + h * w, width))
    cls = jnp.broadcast_to(cls.astype(module.dtype), (n, 1, width))
    x = jnp.concatenate([cls, x.reshape(n, h * w, width).astype(module.dtype)], axis=1)
    x = nn.Dropout(module.dropout, deterministic=not train)(x + pos.astype(module.dtype))
    x = encoder_blocks(module, x, train)
    return layer_norm("encoder_ln")(x)[:, 0].astype(F32)


def encoder_blocks(module: nn.Module, x, train: bool):
    """`module.depth` pre-norm encoder blocks (encoder_layer_{i}, MLP 4x the token width) on a
    token sequence x (N, L, width), each output recorded as block{i}."""
    for i in range(module.depth):
        x = EncoderBlock(
            module.heads,
            4 * x.shape[-1],
            module.dropout,
            module.act,
            module.dtype,
            name=f"encoder_layer_{i}",
        )(x, train)
        x = stage_features(module, f"block{i}", x)
    return x


def check_patch_size(image_size: int, patch_size: int) -> None:
    """Refuse a patch size that does not tile the image, suggesting ones that do."""
    if patch_size >= 1 and image_size % patch_size == 0:
        return
    # Divisors that leave at least a 4x4 patch grid, the two nearest the requested size.
    fits = [d for d in range(1, image_size + 1) if image_size % d == 0 and image_size // d >= 4]
    near = sorted(sorted(fits, key=lambda d: abs(d - patch_size))[:2])
    hint = f"use config.model.patch_size={' or '.join(map(str, near))}, or " if near else ""
    multiple = max(patch_size, 1) * max(1, round(image_size / max(patch_size, 1)))
    raise ConfigError(
        f"vit: image size {image_size} px is not divisible by config.model.patch_size="
        f"{patch_size}; {hint}resize the images to a multiple of the patch size "
        f"(config.data.image_size={multiple})"
    )


def _vit(name, width, heads):
    def build(cfg, num_classes, image_size, act, norm, dtype):
        check_patch_size(image_size, cfg.patch_size)
        return ViT(
            num_classes, image_size, cfg.patch_size, width, 12, heads, cfg.dropout, act, dtype
        )

    MODELS.register(name, build)


_vit("vit_ti", 192, 3)
_vit("vit_s", 384, 6)
_vit("vit_b", 768, 12)
