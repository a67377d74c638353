"""Separable Gaussian smoothing over the spatial axes of images and volumes, shared by the
preprocessing filters (fixed sigma) and the augmentation ops (a random blur's traced sigma,
smooth elastic displacement fields).

Shifted slices rather than dm_pix.gaussian_blur: the same code covers volumes, and under
jit(vmap) on the host it ran ~12x faster than dm-pix's depthwise convolution (8x224x224x3).
"""

import jax.numpy as jnp
from jax import lax


def gaussian_kernel(sigma, radius: int):
    """Normalised 1D Gaussian taps at -radius..radius; `sigma` may be traced, and sigma -> 0
    gives the identity tap."""
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (x / jnp.maximum(sigma, 1e-3)) ** 2)
    return w / w.sum()


def blur_axis(x, taps, axis: int):
    """1D correlation with symmetric `taps` along `axis`, border reflected as scipy.ndimage's
    mode='reflect' (numpy's 'symmetric'); axes shorter than the radius repeat their edge."""
    r = (taps.shape[0] - 1) // 2
    n = x.shape[axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (r, r)
    padded = jnp.pad(x, widths, mode="symmetric" if r <= n else "edge")
    return sum(taps[i] * lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(2 * r + 1))


def gaussian_smooth(x, sigma, radius: int):
    """Blur every spatial axis (all but the last) with a Gaussian truncated at `radius`."""
    taps = gaussian_kernel(sigma, radius)
    for axis in range(x.ndim - 1):
        x = blur_axis(x, taps, axis)
    return x
