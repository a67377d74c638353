"""Deterministic intensity preprocessing (2D images (H, W, C) and 3D volumes (D, H, W, C))."""

import jax.numpy as jnp

from medjax.ops.pipeline import PREPROCESS_OPS


@PREPROCESS_OPS.register("value_range")
def value_range(min: float = -1.0, max: float = 1.0, in_min: float = 0.0, in_max: float = 255.0):
    """Map the fixed input range [in_min, in_max] (uint8 by default) linearly to [min, max]."""
    if in_max <= in_min:
        raise ValueError("in_max must be greater than in_min")
    scale = (max - min) / (in_max - in_min)
    return lambda image: (image.astype(jnp.float32) - in_min) * scale + min


@PREPROCESS_OPS.register("normalize")
def normalize(mean: float = 0.5, std: float = 0.5, in_max: float = 255.0):
    """(x / in_max - mean) / std, with dataset-level mean and std (as torchvision's Normalize)."""
    if std <= 0:
        raise ValueError("std must be positive")
    return lambda image: (image.astype(jnp.float32) / in_max - mean) / std


@PREPROCESS_OPS.register("zscore")
def zscore(eps: float = 1e-6):
    """Per-image zero mean and unit variance, as is common for MRI."""

    def apply(image):
        image = image.astype(jnp.float32)
        return (image - image.mean()) / (image.std() + eps)

    return apply
