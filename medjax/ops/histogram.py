"""Histogram-based contrast enhancement, per channel, for images (H, W, C) and volumes (D, H, W, C).

Both ops replicate scikit-image (`exposure.equalize_hist`, `exposure.equalize_adapthist`) step by
step, so results can be checked against it; tile grids depend only on the static shape.
"""

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from medjax.ops.filters import cast_like, spatial_ndim
from medjax.ops.pipeline import PREPROCESS_OPS

NR_OF_GRAY = 2**14  # skimage's CLAHE works on 14-bit grey levels


def _per_channel(fn, image):
    spatial_ndim(image)
    out = jax.vmap(fn, in_axes=-1, out_axes=-1)(image.astype(jnp.float32))
    return cast_like(out, image)


def _equalize(x, nbins):
    """skimage's equalize_hist on one channel: numpy's histogram over the image's own min..max."""
    lo, hi = x.min(), x.max()
    flat = lo == hi  # numpy widens an empty range by 0.5 each way
    lo, hi = jnp.where(flat, lo - 0.5, lo), jnp.where(flat, hi + 0.5, hi)
    edges = (jnp.arange(nbins + 1, dtype=jnp.float32) * ((hi - lo) / nbins) + lo).at[-1].set(hi)
    v = x.ravel()
    idx = jnp.clip(((v - lo) / (hi - lo) * nbins).astype(jnp.int32), 0, nbins - 1)
    # As numpy: correct the index near an edge so that bin i is exactly [edges[i], edges[i+1]).
    idx = idx - (v < edges[idx])
    idx = idx + ((v >= edges[idx + 1]) & (idx != nbins - 1))
    cdf = jnp.cumsum(jnp.zeros(nbins, jnp.int32).at[idx].add(1)) / v.size
    return jnp.interp(x, (edges[:-1] + edges[1:]) / 2, cdf)


@PREPROCESS_OPS.register("equalize")
def equalize(nbins: int = 256):
    """Global histogram equalisation per channel (skimage's equalize_hist), output in [0, 1].
    The histogram spans each channel's own min..max, so any input range works; a constant
    channel maps to 0.5."""
    if not isinstance(nbins, int) or nbins < 1:
        raise ValueError(f"nbins must be a positive integer, got {nbins!r}")
    return lambda image: _per_channel(functools.partial(_equalize, nbins=nbins), image)


def _clip_histogram(hist, clim):
    """skimage's clip_histogram: clip at clim and hand the excess back out, bin by bin."""
    nbins = hist.shape[0]
    excess = jnp.sum(jnp.maximum(hist - clim, 0))
    hist = jnp.minimum(hist, clim)
    incr = excess // nbins
    upper = clim - incr
    low = hist < upper
    excess = excess - jnp.sum(low) * incr
    hist = jnp.where(low, hist + incr, hist)
    mid = (hist >= upper) & (hist < clim)
    excess = excess + jnp.sum(jnp.where(mid, hist - clim, 0))
    hist = jnp.where(mid, clim, hist)

    # skimage's remainder loop, one `index` step per iteration: every pass sweeps index over all
    # bins, stopping when the excess is spent or a whole pass changed nothing.
    bins = jnp.arange(nbins)

    def cond(state):
        _, n, index, prev = state
        return (n > 0) & ~((index == 0) & (n == prev))

    def body(state):
        hist, n, index, prev = state
        prev = jnp.where(index == 0, n, prev)
        under = hist < clim
        step = jnp.maximum(1, jnp.sum(under) // jnp.maximum(n, 1))
        add = under & (bins >= index) & ((bins - index) % step == 0)
        return hist + add, n - jnp.sum(add), (index + 1) % nbins, prev

    hist, *_ = lax.while_loop(cond, body, (hist, excess, jnp.int32(0), jnp.int32(-1)))
    return hist


def _rescale_14bit(x):
    """skimage's img_as_uint, then rescale_intensity of the image's own range to 0..2**14-1."""
    u = jnp.rint(jnp.clip(x, 0.0, 1.0) * 65535).astype(jnp.int32)
    umin, umax = u.min(), u.max()
    span = jnp.maximum(umax - umin, 1)
    # Exact integer rounding (half to even, as np.round); the product stays below 2**31.
    num = (u - umin) * (NR_OF_GRAY - 1)
    q, r = num // span, num % span
    q = q + ((2 * r > span) | ((2 * r == span) & (q % 2 == 1)))
    return jnp.where(umax > umin, q, jnp.minimum(u, NR_OF_GRAY - 1))


def _clahe(x, clip_limit, kernel_size, nbins):
    """skimage's equalize_adapthist on one channel of any number of spatial dims."""
    shape = x.shape
    ks = [kernel_size or max(s // 8, 1) for s in shape]
    tiles = [-(-s // k) for s, k in zip(shape, ks, strict=True)]  # contextual regions per axis
    kernel_elements = math.prod(ks)
    levels = _rescale_14bit(x) // (1 + NR_OF_GRAY // nbins)

    # Histogram tiles start at the image origin; the last one reaches into skimage's padding
    # (numpy 'reflect'), which is padded exactly as skimage pads so the values agree.
    pad = [(k // 2, (k - s % k) % k + math.ceil(k / 2)) for s, k in zip(shape, ks, strict=True)]
    padded = jnp.pad(levels, pad, mode="reflect")
    region = padded[tuple(slice(k // 2, k // 2 + n * k) for k, n in zip(ks, tiles, strict=True))]
    strides = [math.prod(tiles[d + 1 :]) for d in range(len(shape))]
    tile_of = sum(
        (np.arange(n * k) // k * st).reshape([-1 if e == d else 1 for e in range(len(shape))])
        for d, (n, k, st) in enumerate(zip(tiles, ks, strides, strict=True))
    )
    tile_of = np.broadcast_to(tile_of, region.shape)
    hist = (
        jnp.zeros((math.prod(tiles), nbins), jnp.int32).at[tile_of.ravel(), region.ravel()].add(1)
    )

    clim = int(max(clip_limit * kernel_elements, 1)) if clip_limit > 0 else kernel_elements
    hist = jax.vmap(_clip_histogram, in_axes=(0, None))(hist, clim)
    cdf = jnp.cumsum(hist, axis=-1)
    # floor(cdf * (2**14 - 1) / n): exact in int32 unless regions are huge (cdf exceeds n by
    # less than nbins after redistribution).
    if (kernel_elements + nbins) * (NR_OF_GRAY - 1) < 2**31:
        lut = cdf * (NR_OF_GRAY - 1) // kernel_elements
    else:
        lut = jnp.floor(cdf * ((NR_OF_GRAY - 1) / kernel_elements)).astype(jnp.int32)
    lut = jnp.minimum(lut, NR_OF_GRAY - 1).astype(jnp.float32)

    # Each pixel blends the mappings of the 2**ndim nearest region centres (multilinear weights);
    # skimage shifts by half a region, so a region's centre pixel uses its own mapping only.
    lo, hi, frac = [], [], []
    for d, (s, k, n) in enumerate(zip(shape, ks, tiles, strict=True)):
        q = np.arange(s) + k // 2
        bshape = [-1 if e == d else 1 for e in range(len(shape))]
        lo.append((np.clip(q // k - 1, 0, n - 1) * strides[d]).reshape(bshape))
        hi.append((np.clip(q // k, 0, n - 1) * strides[d]).reshape(bshape))
        frac.append((q % k / k).reshape(bshape))
    result = jnp.zeros(shape, jnp.float32)
    for corner in itertools.product((0, 1), repeat=len(shape)):
        tile = sum(b if c else a for c, a, b in zip(corner, lo, hi, strict=True))
        weight = math.prod(f if c else 1 - f for c, f in zip(corner, frac, strict=True))
        result = result + lut[np.broadcast_to(tile, shape), levels] * weight.astype(np.float32)
    # skimage truncates to integer grey levels before the final min..max stretch; the small
    # offset keeps equal mappings (weights summing to 1 in float32) on the same level.
    result = jnp.floor(result + 1e-3)
    rmin, rmax = result.min(), result.max()
    stretched = (result - rmin) / jnp.where(rmax > rmin, rmax - rmin, 1.0)
    # A flat result is clipped to [0, 1] instead, as skimage's rescale_intensity does.
    return jnp.where(rmax > rmin, stretched, jnp.clip(result, 0.0, 1.0))


@PREPROCESS_OPS.register("clahe")
def clahe(clip_limit: float = 0.01, kernel_size: int = 0, nbins: int = 256):
    """Contrast-limited adaptive histogram equalisation per channel (skimage's
    equalize_adapthist), 2D or 3D. Input in [0, 1] (put value_range(min=0.0, max=1.0) before it;
    values outside are clipped), output in [0, 1]. kernel_size=0: 1/8 of each spatial size;
    clip_limit=0: no clipping (plain adaptive equalisation)."""
    if clip_limit < 0:
        raise ValueError(f"clip_limit must be >= 0, got {clip_limit}")
    if not isinstance(kernel_size, int) or kernel_size < 0:
        raise ValueError(f"kernel_size must be a non-negative integer, got {kernel_size!r}")
    if not isinstance(nbins, int) or nbins < 2:
        raise ValueError(f"nbins must be an integer >= 2, got {nbins!r}")
    fn = functools.partial(_clahe, clip_limit=clip_limit, kernel_size=kernel_size, nbins=nbins)
    return lambda image: _per_channel(fn, image)
