"""Edge maps as extra channels: `sobel`, `laplacian` (images and volumes) and `canny` (images).

Each op returns the input channels first (`keep_image=True`, the default) and then its feature
channels, so `data.preprocess` can fuse them early (one network on C + k channels) and the
two_branch model can split them again (late fusion). `keep_image=False` keeps the features only.
Features are computed per channel; with several input channels they come feature by feature,
each over all input channels in order. `channels=N` takes the features of the first N input
channels only (0: all), so chained feature ops ("sobel()", "laplacian(channels=1)") each see
the image and not the channels the ops before them added. Borders follow scipy.ndimage's
mode='reflect', as medjax.ops.filters.
"""

import jax.numpy as jnp
from jax import lax

from medjax.errors import ConfigError
from medjax.ops.filters import spatial_ndim
from medjax.ops.kernels import blur_axis, gaussian_kernel
from medjax.ops.pipeline import PREPROCESS_OPS

SOBEL_OUTPUTS = ("magnitude", "directional")


def with_image(image, feats, keep_image: bool):
    """[image channels (float32)] + feature channels, concatenated on the last axis."""
    first = [image.astype(jnp.float32)] if keep_image else []
    return jnp.concatenate(first + list(feats), axis=-1)


def check_channels(channels) -> None:
    if not isinstance(channels, int) or channels < 0:
        raise ValueError(f"channels must be an integer >= 0 (0: all), got {channels!r}")


def source(image, channels: int):
    """The float32 channels the features are taken from: the first `channels`, or all for 0."""
    if channels > image.shape[-1]:
        raise ValueError(
            f"channels={channels} asks for more channels than the input's {image.shape[-1]}"
        )
    return image[..., : channels or image.shape[-1]].astype(jnp.float32)


def _neighbours(x, axis):
    """(x[i-1], x[i+1]) along `axis`, the border reflected (the edge pixel repeated)."""
    n = x.shape[axis]
    widths = [(0, 0)] * x.ndim
    widths[axis] = (1, 1)
    padded = jnp.pad(x, widths, mode="symmetric")
    return lax.slice_in_dim(padded, 0, n, axis=axis), lax.slice_in_dim(padded, 2, n + 2, axis=axis)


def sobel_axis(x, axis: int, smooth=(0.25, 0.5, 0.25)):
    """x[i+1] - x[i-1] along spatial `axis`, smoothed by `smooth` along the other spatial axes:
    skimage.filters.sobel(x, axis=axis) with the default taps, scipy.ndimage.sobel with
    (1, 2, 1)."""
    before, after = _neighbours(x, axis)
    out = after - before
    taps = jnp.asarray(smooth, jnp.float32)
    for other in range(x.ndim - 1):
        if other != axis:
            out = blur_axis(out, taps, other)
    return out


@PREPROCESS_OPS.register("sobel")
def sobel(output: str = "magnitude", keep_image: bool = True, channels: int = 0):
    """Sobel gradients: output='magnitude' adds one channel per input channel, sqrt of the mean
    of the squared directional responses (skimage.filters.sobel); 'directional' adds one per
    spatial axis, height first (skimage's sobel_h, then sobel_v; then depth for volumes)."""
    if output not in SOBEL_OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(SOBEL_OUTPUTS)}, not {output!r}")
    check_channels(channels)

    def apply(image):
        ndim = spatial_ndim(image)
        x = source(image, channels)
        grads = [sobel_axis(x, axis) for axis in range(ndim)]
        if output == "magnitude":
            grads = [jnp.sqrt(sum(g * g for g in grads) / ndim)]
        return with_image(image, grads, keep_image)

    return apply


@PREPROCESS_OPS.register("laplacian")
def laplacian(keep_image: bool = True, channels: int = 0):
    """The discrete Laplacian, sum over spatial axes of x[i-1] - 2 x[i] + x[i+1]
    (scipy.ndimage.laplace); one channel per input channel."""
    check_channels(channels)

    def apply(image):
        x = source(image, channels)
        out = 0.0
        for axis in range(spatial_ndim(image)):
            before, after = _neighbours(x, axis)
            out = out + before + after - 2.0 * x
        return with_image(image, [out], keep_image)

    return apply


def _smooth_constant(x, sigma: float):
    """Gaussian smoothing of axes 0 and 1 with zeros beyond the border, renormalised by the
    smoothed all-ones image: skimage.feature.canny's smoothing without a mask."""
    taps = gaussian_kernel(sigma, int(4.0 * sigma + 0.5))
    r = (taps.shape[0] - 1) // 2

    def blur(y):
        for axis in (0, 1):
            n = y.shape[axis]
            widths = [(0, 0)] * y.ndim
            widths[axis] = (r, r)
            padded = jnp.pad(y, widths)
            y = sum(
                taps[i] * lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(2 * r + 1)
            )
        return y

    return blur(x) / (blur(jnp.ones_like(x)) + jnp.finfo(jnp.float32).eps)


def _shifted(m):
    """at(a, b) = m at (row + a, col + b), zero beyond the border (never read for the border
    pixels themselves, which are no edges)."""
    h, w = m.shape[:2]
    padded = jnp.pad(m, [(1, 1), (1, 1)] + [(0, 0)] * (m.ndim - 2))
    return lambda a, b: padded[1 + a : 1 + a + h, 1 + b : 1 + b + w]


def _local_maxima(gi, gj, magnitude):
    """Non-maximum suppression across the gradient direction, the two neighbours interpolated
    between the axial and the diagonal pixel as skimage's bilinear version."""
    at = _shifted(magnitude)
    ai, aj = jnp.abs(gi), jnp.abs(gj)
    vertical = ai >= aj
    s = jnp.where(gi * gj < 0, -1, 1)  # the diagonal leans with the gradient's quadrant

    def side(sign):
        axial = jnp.where(vertical, at(sign, 0), at(0, sign))
        diag_same = jnp.where(vertical, at(sign, sign), at(sign, sign))
        diag_other = jnp.where(vertical, at(sign, -sign), at(-sign, sign))
        diag = jnp.where(s > 0, diag_same, diag_other)
        return axial, diag

    big, small = jnp.maximum(ai, aj), jnp.minimum(ai, aj)
    w = small / jnp.where(big > 0, big, 1.0)
    keep = big > 0
    for sign in (1, -1):
        axial, diag = side(sign)
        keep &= diag * w + axial * (1.0 - w) <= magnitude
    h, wd = magnitude.shape[:2]
    interior = jnp.zeros((h, wd, 1), bool).at[1:-1, 1:-1].set(True)
    return keep & interior


def _dilate(mask):
    at = _shifted(mask)
    out = mask
    for a in (-1, 0, 1):
        for b in (-1, 0, 1):
            out = out | at(a, b)
    return out


def hysteresis(weak, strong):
    """The weak pixels 8-connected to a strong one through weak pixels (skimage's labelling),
    grown one ring per step until nothing changes."""

    def grow(state):
        edges, _ = state
        grown = weak & _dilate(edges)
        return grown, jnp.any(grown != edges)

    edges, _ = lax.while_loop(lambda s: s[1], grow, (strong & weak, jnp.array(True)))
    return edges


@PREPROCESS_OPS.register("canny")
def canny(
    sigma: float = 1.0,
    low: float = 0.1,
    high: float = 0.2,
    keep_image: bool = True,
    channels: int = 0,
):
    """Canny edges (images only) as a 0/1 channel per input channel: Gaussian smoothing (sigma),
    Sobel gradients (scipy's unnormalised taps), non-maximum suppression, then the pixels of at
    least `low` connected to one of at least `high`. Thresholds are on that gradient magnitude,
    as skimage.feature.canny's with float images: scale them with the image's value range
    (images on [-1, 1] have twice the gradients of the same images on [0, 1])."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not 0 <= low <= high:
        raise ValueError(f"thresholds need 0 <= low <= high, got low={low}, high={high}")
    check_channels(channels)

    def apply(image):
        if image.ndim != 3:
            raise ConfigError(
                f"canny is a 2D edge detector for images (H, W, C), not shape "
                f"{tuple(image.shape)}; for volumes use sobel or laplacian"
            )
        smoothed = _smooth_constant(source(image, channels), sigma)
        gi = sobel_axis(smoothed, 0, smooth=(1.0, 2.0, 1.0))
        gj = sobel_axis(smoothed, 1, smooth=(1.0, 2.0, 1.0))
        magnitude = jnp.hypot(gi, gj)
        weak = _local_maxima(gi, gj, magnitude) & (magnitude >= low)
        edges = hysteresis(weak, magnitude >= high)
        return with_image(image, [edges.astype(jnp.float32)], keep_image)

    return apply
