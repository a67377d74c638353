"""Deterministic denoising and sharpening filters for images (H, W, C) and volumes (D, H, W, C).

Every filter works over all spatial axes and treats channels independently. Borders follow
scipy.ndimage's mode='reflect' (numpy's 'symmetric': the edge pixel is repeated), so all filters
agree on what lies beyond the image. Filters compute in float32 and return the input's float dtype
(median only selects input values, so it keeps any dtype).
"""

import itertools
import math

import jax.numpy as jnp

from medjax.ops.kernels import gaussian_smooth
from medjax.ops.pipeline import PREPROCESS_OPS

# Beyond this many window elements a sorting network compiles slowly; fall back to jnp.sort.
_MAX_NETWORK = 64


def spatial_ndim(image) -> int:
    """2 for (H, W, C), 3 for (D, H, W, C); anything else is a usage error caught at trace time."""
    if image.ndim not in (3, 4):
        raise ValueError(
            f"expected an image (H, W, C) or a volume (D, H, W, C), got shape {tuple(image.shape)}"
        )
    return image.ndim - 1


def cast_like(out, image):
    """The result in the input's float dtype (float32 for integer inputs)."""
    return out.astype(image.dtype) if jnp.issubdtype(image.dtype, jnp.floating) else out


def _check_window(name, size, allow_zero):
    if (
        not isinstance(size, int)
        or size < 0
        or (size == 0 and not allow_zero)
        or (size and size % 2 == 0)
    ):
        zero = " (or 0 for the default)" if allow_zero else ""
        raise ValueError(f"{name} must be a positive odd integer{zero}, got {size!r}")


def _pad(x, radius):
    """Reflect-pad the spatial axes (all but the last) by `radius`."""
    return jnp.pad(x, [(radius, radius)] * (x.ndim - 1) + [(0, 0)], mode="symmetric")


def _windows(x, size):
    """(offset, shifted copy of x) for every offset in a size^ndim window centred on each pixel."""
    r = size // 2
    padded = _pad(x, r)
    spatial = x.shape[:-1]
    for start in itertools.product(range(size), repeat=len(spatial)):
        window = padded[tuple(slice(s, s + n) for s, n in zip(start, spatial, strict=True))]
        yield tuple(s - r for s in start), window


@PREPROCESS_OPS.register("gaussian_blur")
def gaussian_blur(sigma: float = 1.0, kernel_size: int = 0):
    """Gaussian blur over all spatial axes (any value range; the range shrinks, never grows).
    kernel_size=0 truncates at 4 sigma, as scipy.ndimage.gaussian_filter does by default."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    _check_window("kernel_size", kernel_size, allow_zero=True)
    radius = kernel_size // 2 if kernel_size else int(4.0 * sigma + 0.5)

    def apply(image):
        spatial_ndim(image)
        return cast_like(gaussian_smooth(image.astype(jnp.float32), sigma, radius), image)

    return apply


def _sorting_network(n):
    """Compare-exchange pairs of Batcher's odd-even merge sort for n elements (any n)."""
    pairs, p = [], 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def _median_of(values):
    """Elementwise median of an odd number of equally shaped arrays."""
    n = len(values)
    if n > _MAX_NETWORK:
        return jnp.sort(jnp.stack(values, -1), axis=-1)[..., n // 2]
    # A min/max network vectorises far better than a per-pixel sort; XLA drops the comparators
    # that do not feed the middle element.
    v = list(values)
    for a, b in _sorting_network(n):
        v[a], v[b] = jnp.minimum(v[a], v[b]), jnp.maximum(v[a], v[b])
    return v[n // 2]


@PREPROCESS_OPS.register("median")
def median(size: int = 3):
    """Median over a size^ndim window (scipy.ndimage.median_filter, mode='reflect'); keeps values."""
    _check_window("size", size, allow_zero=False)

    def apply(image):
        spatial_ndim(image)
        return _median_of([w for _, w in _windows(image, size)])

    return apply


@PREPROCESS_OPS.register("bilateral")
def bilateral(sigma_color: float = 0.1, sigma_spatial: float = 1.0, win_size: int = 0):
    """Edge-preserving bilateral filter; sigma_color is in image units (0.1 suits [0, 1] images).
    win_size=0 means max(5, 2 * ceil(3 * sigma_spatial) + 1), as skimage. Keeps the value range."""
    if sigma_color <= 0 or sigma_spatial <= 0:
        raise ValueError("sigma_color and sigma_spatial must be positive")
    _check_window("win_size", win_size, allow_zero=True)
    size = win_size or max(5, 2 * math.ceil(3 * sigma_spatial) + 1)

    def apply(image):
        spatial_ndim(image)
        x = image.astype(jnp.float32)
        total = norm = 0.0
        for offset, shifted in _windows(x, size):
            # One exp per neighbour: the spatial term is a constant folded into the exponent.
            spatial = -0.5 * sum(o * o for o in offset) / sigma_spatial**2
            w = jnp.exp(spatial - 0.5 * jnp.square((shifted - x) / sigma_color))
            total, norm = total + w * shifted, norm + w
        # The centre pixel has weight 1, so norm >= 1.
        return cast_like(total / norm, image)

    return apply


@PREPROCESS_OPS.register("unsharp_mask")
def unsharp_mask(sigma: float = 1.0, amount: float = 1.0):
    """image + amount * (image - gaussian_blur(sigma)); not clipped, so it can overshoot the
    input range at edges (skimage's unsharp_mask with preserve_range=True)."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if amount < 0:
        raise ValueError(f"amount must be >= 0 (use gaussian_blur to smooth), got {amount}")
    radius = int(4.0 * sigma + 0.5)

    def apply(image):
        spatial_ndim(image)
        x = image.astype(jnp.float32)
        return cast_like(x + amount * (x - gaussian_smooth(x, sigma, radius)), image)

    return apply
