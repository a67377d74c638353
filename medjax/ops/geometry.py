"""Deterministic geometry preprocessing: resize, pad and crop, for images (H, W, C) and volumes
(D, H, W, C). Target shapes are static (they come from the config and the input's shape), so
every op compiles to fixed shapes."""

import jax
import jax.numpy as jnp
import numpy as np

from medjax.ops.pipeline import PREPROCESS_OPS

METHODS = ("nearest", "bilinear", "bicubic", "lanczos3", "area")
_JAX_METHOD = {
    "nearest": "nearest",
    "bilinear": "linear",
    "bicubic": "cubic",
    "lanczos3": "lanczos3",
}


def _size(size, ndim: int) -> tuple[int, ...]:
    """An int means the same size along every spatial axis."""
    out = (size,) * ndim if isinstance(size, int) else tuple(size)
    if len(out) != ndim or min(out) < 1:
        raise ValueError(f"size must be a positive int or {ndim} positive ints, not {size!r}")
    return out


def _check_size(size):
    if isinstance(size, int):
        ok = size >= 1
    else:
        ok = isinstance(size, tuple | list) and all(isinstance(s, int) and s >= 1 for s in size)
    if not ok:
        raise ValueError(f"size must be a positive int or a tuple of them, not {size!r}")


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights averaging the input cells that each output cell covers, by the
    fraction covered: exact box-filter (area) resampling for any scale factor."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    left, right = edges[:-1, None], edges[1:, None]
    cells = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(right, cells + 1) - np.maximum(left, cells), 0.0, None)
    return (overlap / overlap.sum(1, keepdims=True)).astype(np.float32)


def _resize(image, shape, method: str, antialias: bool):
    image = image.astype(jnp.float32)
    if tuple(image.shape[:-1]) == tuple(shape):
        return image
    if method != "area":
        return jax.image.resize(
            image, (*shape, image.shape[-1]), _JAX_METHOD[method], antialias=antialias
        )
    for axis, n_out in enumerate(shape):
        weights = jnp.asarray(_area_matrix(image.shape[axis], n_out))
        image = jnp.moveaxis(jnp.tensordot(weights, image, axes=(1, axis)), 0, axis)
    return image


def _method(method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")


@PREPROCESS_OPS.register("resize")
def resize(size=224, method: str = "bilinear", antialias: bool = True):
    """Resize to `size` (an int for every spatial axis, or one per axis). bilinear and bicubic
    use half-pixel centres as PIL and OpenCV do; `antialias` widens the kernel when shrinking
    (as PIL does) so that downsampling does not alias; "area" averages the covered pixels."""
    _check_size(size)
    _method(method)
    return lambda image: _resize(image, _size(size, image.ndim - 1), method, antialias)


@PREPROCESS_OPS.register("resize_short_side")
def resize_short_side(size: int = 224, method: str = "bilinear", antialias: bool = True):
    """Resize so the shortest spatial side is `size`, keeping the aspect ratio (then crop or pad
    to a square with center_crop or pad_to_square)."""
    _check_size(size)
    _method(method)

    def apply(image):
        spatial = image.shape[:-1]
        scale = size / min(spatial)
        shape = tuple(max(size, round(n * scale)) for n in spatial)
        return _resize(image, shape, method, antialias)

    return apply


def _pad_or_crop(image, shape, value):
    """Centre-aligned: crop axes longer than `shape`, pad shorter ones with `value`."""
    for axis, n_out in enumerate(shape):
        n = image.shape[axis]
        if n > n_out:
            start = (n - n_out) // 2
            image = jax.lax.slice_in_dim(image, start, start + n_out, axis=axis)
        elif n < n_out:
            pad = [(0, 0)] * image.ndim
            pad[axis] = ((n_out - n) // 2, n_out - n - (n_out - n) // 2)
            image = jnp.pad(image, pad, constant_values=value)
    return image


@PREPROCESS_OPS.register("pad_to_square")
def pad_to_square(value: float = 0.0):
    """Pad the shorter spatial sides (centred, with `value`) to the longest one, so a later
    resize keeps the aspect ratio; volumes become cubes."""
    return lambda image: _pad_or_crop(image, (max(image.shape[:-1]),) * (image.ndim - 1), value)


@PREPROCESS_OPS.register("center_crop")
def center_crop(size=224):
    """The central `size` region (an int for every spatial axis, or one per axis); an axis
    already shorter than `size` is an error, use crop_or_pad for mixed cases."""
    _check_size(size)

    def apply(image):
        shape = _size(size, image.ndim - 1)
        if any(n < s for n, s in zip(image.shape[:-1], shape, strict=True)):
            raise ValueError(
                f"center_crop(size={size}) is larger than the image {image.shape[:-1]}; "
                f"use crop_or_pad(size=...) or resize first"
            )
        return _pad_or_crop(image, shape, 0.0)

    return apply


@PREPROCESS_OPS.register("crop_or_pad")
def crop_or_pad(size=224, value: float = 0.0):
    """Centre-crop the axes longer than `size` and pad the shorter ones with `value` (as
    MONAI's ResizeWithPadOrCrop): no resampling, so voxel spacing is kept."""
    _check_size(size)
    return lambda image: _pad_or_crop(image, _size(size, image.ndim - 1), value)


def output_shape(fn, image_shape) -> tuple[int, ...]:
    """The shape `fn` turns an `image_shape` input into, without computing anything."""
    return tuple(jax.eval_shape(fn, jax.ShapeDtypeStruct(image_shape, jnp.float32)).shape)
