"""Deterministic intensity preprocessing for images (H, W, C) and volumes (D, H, W, C).

Ops whose parameters depend on the data (`scope="dataset"`) are `Fitted`: their statistics are
computed on the training split, after the ops before them, and then frozen, so validation and
test images are normalised with training statistics only.
"""

import jax.numpy as jnp
import numpy as np

from medjax.ops.pipeline import PREPROCESS_OPS, Fitted

SCOPES = ("image", "dataset", "foreground")

# ITU-R BT.601 luma, the weights PIL uses for "L".
_LUMA = (0.299, 0.587, 0.114)


def _scope(scope, allowed=SCOPES):
    if scope not in allowed:
        raise ValueError(f"scope must be one of {', '.join(allowed)}, not {scope!r}")


def _spatial_axes(image):
    return tuple(range(image.ndim - 1))


@PREPROCESS_OPS.register("value_range")
def value_range(min: float = -1.0, max: float = 1.0, in_min: float = 0.0, in_max: float = 255.0):
    """Map the fixed input range [in_min, in_max] (uint8 by default) linearly to [min, max]."""
    if in_max <= in_min:
        raise ValueError("in_max must be greater than in_min")
    scale = (max - min) / (in_max - in_min)
    return lambda image: (image.astype(jnp.float32) - in_min) * scale + min


@PREPROCESS_OPS.register("normalize")
def normalize(mean: float = 0.5, std: float = 0.5, in_max: float = 255.0):
    """(x / in_max - mean) / std with given constants (as torchvision's Normalize)."""
    if std <= 0:
        raise ValueError("std must be positive")
    return lambda image: (image.astype(jnp.float32) / in_max - mean) / std


@PREPROCESS_OPS.register("zscore")
def zscore(scope: str = "image", eps: float = 1e-6):
    """Zero mean, unit variance per channel. scope: "image" (statistics of each image),
    "dataset" (of the training split), "foreground" (of each image's non-zero voxels only,
    background left at 0, as for skull-stripped MRI)."""
    _scope(scope)

    def apply(image):
        image = image.astype(jnp.float32)
        axes = _spatial_axes(image)
        if scope == "foreground":
            mask = image != 0
            n = jnp.maximum(mask.sum(axes), 1)
            mean = jnp.where(mask, image, 0).sum(axes) / n
            var = jnp.where(mask, (image - mean) ** 2, 0).sum(axes) / n
            return jnp.where(mask, (image - mean) / (jnp.sqrt(var) + eps), 0.0)
        return (image - image.mean(axes)) / (image.std(axes) + eps)

    if scope != "dataset":
        return apply

    def fit(images: np.ndarray):
        axes = tuple(range(images.ndim - 1))
        x = images.astype(np.float64)
        return {"mean": x.mean(axes), "std": x.std(axes)}

    return Fitted(fit, lambda s, image: (image.astype(jnp.float32) - s["mean"]) / (s["std"] + eps))


@PREPROCESS_OPS.register("minmax")
def minmax(min: float = 0.0, max: float = 1.0, scope: str = "image"):
    """Rescale per channel so the smallest value maps to `min` and the largest to `max`, over
    each image (scope "image") or the training split ("dataset")."""
    _scope(scope, ("image", "dataset"))

    def rescale(lo, hi, image):
        image = image.astype(jnp.float32)
        return (image - lo) / jnp.maximum(hi - lo, 1e-12) * (max - min) + min

    if scope == "image":
        axes = lambda image: _spatial_axes(image)
        return lambda image: rescale(image.min(axes(image)), image.max(axes(image)), image)

    def fit(images: np.ndarray):
        axes = tuple(range(images.ndim - 1))
        return {
            "lo": images.min(axes).astype(np.float32),
            "hi": images.max(axes).astype(np.float32),
        }

    return Fitted(fit, lambda s, image: rescale(s["lo"], s["hi"], image))


@PREPROCESS_OPS.register("clip_percentile")
def clip_percentile(lower: float = 0.5, upper: float = 99.5, rescale: bool = False):
    """Clip each image at its own `lower` and `upper` percentiles (per channel), which removes
    outliers such as MRI hot spots; `rescale` then maps the clipped range to [0, 1]."""
    if not 0 <= lower < upper <= 100:
        raise ValueError("need 0 <= lower < upper <= 100")

    def apply(image):
        image = image.astype(jnp.float32)
        lo, hi = jnp.percentile(image, jnp.array([lower, upper]), axis=_spatial_axes(image))
        out = jnp.clip(image, lo, hi)
        return (out - lo) / jnp.maximum(hi - lo, 1e-12) if rescale else out

    return apply


@PREPROCESS_OPS.register("window")
def window(center: float = 40.0, width: float = 400.0, min: float = 0.0, max: float = 1.0):
    """Intensity window (CT/DICOM): values in [center - width/2, center + width/2] map linearly
    to [min, max], values outside are clipped (e.g. lung 'center=-600, width=1500' in HU)."""
    if width <= 0:
        raise ValueError("width must be positive")
    lo = center - width / 2

    def apply(image):
        x = jnp.clip((image.astype(jnp.float32) - lo) / width, 0.0, 1.0)
        return x * (max - min) + min

    return apply


@PREPROCESS_OPS.register("grayscale")
def grayscale():
    """RGB to one luma channel (ITU-R 601 weights, as PIL's "L"); one channel passes through."""

    def apply(image):
        if image.shape[-1] == 1:
            return image
        if image.shape[-1] != 3:
            raise ValueError(f"grayscale needs 1 or 3 channels, got {image.shape[-1]}")
        return (image.astype(jnp.float32) @ jnp.array(_LUMA))[..., None]

    return apply


@PREPROCESS_OPS.register("to_rgb")
def to_rgb():
    """One channel repeated to three (for RGB-pretrained models); RGB passes through."""

    def apply(image):
        if image.shape[-1] == 3:
            return image
        if image.shape[-1] != 1:
            raise ValueError(f"to_rgb needs 1 or 3 channels, got {image.shape[-1]}")
        return jnp.repeat(image, 3, axis=-1)

    return apply


@PREPROCESS_OPS.register("gamma")
def gamma(gamma: float = 1.0):
    """x ** gamma on images in [0, 1] (values below 0 are clipped): < 1 brightens dark tissue."""
    if gamma <= 0:
        raise ValueError("gamma must be positive")
    return lambda image: jnp.clip(image.astype(jnp.float32), 0.0, None) ** gamma
