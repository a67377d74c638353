"""Random geometric augmentation: `(key, image) -> image` for images (H, W, C) and volumes
(D, H, W, C), pure and jit/vmap-able, each with a probability `p` and the identity at strength 0.

Rotation, zoom, shift and shear are composed into one matrix so that the image is resampled once
(each extra interpolation blurs it). Resampling is cubic B-spline interpolation by default
(`order=3`, medjax.ops.spline, as scipy.ndimage's order 3): linear interpolation (`order=1`,
jax.scipy's map_coordinates) blurs every resampled image by about half a pixel, so a network
trained on always-resampled images meets sharper ones at evaluation (README, "Resampling").
Zooming out is antialiased: the image is smoothed first, as far as it shrinks (scikit-image's
rule, sigma = (1 / scale - 1) / 2 pixels).
"""

import math

import dm_pix
import jax
import jax.numpy as jnp

from medjax.ops.kernels import gaussian_smooth
from medjax.ops.pipeline import AUGMENT_OPS
from medjax.ops.sampling import DEFAULT_ORDER, check, check_resampling, grid, map_channels, maybe

# Spatial axes, counted from the end so one name means the same axis for images and volumes.
FLIP_AXES = {"lr": (-2,), "ud": (-3,), "depth": (-4,), "both": (-2, -3), "all": (-2, -3, -4)}


def _rotation(angles):
    """2D: one angle; 3D: rotations about the depth, height and width axes, composed."""
    if angles.shape[0] == 1:
        c, s = jnp.cos(angles[0]), jnp.sin(angles[0])
        return jnp.array([[c, -s], [s, c]])
    out = jnp.eye(3)
    for (i, j), a in zip(((1, 2), (0, 2), (0, 1)), angles, strict=True):
        c, s = jnp.cos(a), jnp.sin(a)
        out = out @ jnp.eye(3).at[i, i].set(c).at[j, j].set(c).at[i, j].set(-s).at[j, i].set(s)
    return out


@AUGMENT_OPS.register("random_flip")
def random_flip(axis: str = "lr", p: float = 0.5):
    """Flip left-right ('lr'), up-down ('ud'), along depth ('depth', volumes), or each of
    'both' (lr, ud) / 'all' (lr, ud, depth) independently, each with probability p."""
    if axis not in FLIP_AXES:
        raise ValueError(f"axis must be one of {', '.join(FLIP_AXES)}")
    check(p)

    def apply(key, image):
        for i, ax in enumerate(FLIP_AXES[axis]):
            if -ax <= image.ndim - 1:
                image = maybe(jax.random.fold_in(key, i), p, jnp.flip(image, ax), image)
        return image

    return apply


def affine(
    image,
    angles,
    scale=1.0,
    offset=None,
    shear=0.0,
    order=DEFAULT_ORDER,
    mode="nearest",
    antialias_radius: int = 0,
):
    """Rotate by `angles` degrees (one for images; about the depth, height and width axes for
    volumes), zoom by `scale`, shift by `offset` (a fraction of each side) and shear the
    height/width plane by `shear` degrees, about the centre, resampling once. With
    `antialias_radius` > 0 an image shrunk (scale < 1) is first smoothed by a Gaussian of
    sigma (1 / scale - 1) / 2 pixels truncated there."""
    if antialias_radius:
        sigma = jnp.maximum(1 / jnp.asarray(scale, jnp.float32) - 1, 0) / 2
        image = gaussian_smooth(image, sigma, antialias_radius)
    n = image.ndim - 1
    size = jnp.array(image.shape[:-1], jnp.float32)
    offset = jnp.zeros(n) if offset is None else jnp.asarray(offset) * size
    shear_m = jnp.eye(n).at[n - 2, n - 1].set(jnp.tan(jnp.deg2rad(shear)))
    # Output -> input coordinates (pull resampling), about the centre.
    # Negated so that positive angles turn the picture counter-clockwise as displayed (rows
    # down), as scipy.ndimage.rotate and PIL's Image.rotate do.
    linear = _rotation(-jnp.deg2rad(jnp.atleast_1d(angles))) @ shear_m / scale
    centre = (size - 1) / 2
    translation = centre - linear @ centre - offset
    coords = jnp.tensordot(linear, grid(image.shape[:-1]), 1)
    return map_channels(image, coords + translation.reshape(n, *(1,) * n), order, mode)


@AUGMENT_OPS.register("random_affine")
def random_affine(
    rotate: float = 0.0,
    zoom: float = 0.0,
    shift: float = 0.0,
    shear: float = 0.0,
    p: float = 1.0,
    mode: str = "nearest",
    order: int = DEFAULT_ORDER,
    antialias: bool = True,
):
    """Rotation by U(-rotate, rotate) degrees (about each axis for volumes), zoom by
    U(1-zoom, 1+zoom), shift by U(-shift, shift) of each side, shear of the height/width plane by
    U(-shear, shear) degrees: one resampling (cubic with order=3, linear 1, nearest 0), with
    probability p (the other images stay untouched: unresampled, as evaluation sees them).
    `mode` fills the border: 'nearest' (edge values) or 'constant' (zeros). `antialias` smooths
    an image before it is shrunk."""
    check(p, rotate=rotate, zoom=zoom, shift=shift, shear=shear)
    check_resampling(order, mode)
    if zoom >= 1:
        raise ValueError("zoom must be < 1")
    shrink = 1 / (1 - zoom) - 1  # the most an output pixel spans beyond one input pixel
    radius = math.ceil(3 * shrink / 2) if antialias and zoom > 0 else 0

    def apply(key, image):
        kr, kz, ks, ksh, kp = jax.random.split(key, 5)
        n = image.ndim - 1
        angles = jax.random.uniform(kr, (1 if n == 2 else 3,), minval=-rotate, maxval=rotate)
        scale = jax.random.uniform(kz, minval=1 - zoom, maxval=1 + zoom)
        offset = jax.random.uniform(ks, (n,), minval=-shift, maxval=shift)
        sh = jax.random.uniform(ksh, minval=-shear, maxval=shear)
        out = affine(image, angles, scale, offset, sh, order, mode, antialias_radius=radius)
        return maybe(kp, p, out, image)

    return apply


@AUGMENT_OPS.register("elastic")
def elastic(alpha: float = 10.0, sigma: float = 3.0, p: float = 0.5, order: int = DEFAULT_ORDER):
    """Elastic deformation (Simard et al. 2003): random displacements U(-1, 1) smoothed by a
    Gaussian of `sigma` pixels and scaled by `alpha` pixels, as dm-pix's elastic_deformation,
    for images and volumes; resampled with `order` as random_affine."""
    check(p, alpha=alpha)
    check_resampling(order, "nearest")
    if sigma <= 0:
        raise ValueError("sigma must be positive")

    def apply(key, image):
        kd, kp = jax.random.split(key)
        spatial = image.shape[:-1]
        noise = jax.random.uniform(kd, (*spatial, len(spatial)), minval=-1.0, maxval=1.0)
        radius = max(1, math.ceil(3 * sigma))
        disp = jnp.moveaxis(gaussian_smooth(noise, sigma, radius) * alpha, -1, 0)
        out = map_channels(image, grid(spatial) + disp, order)
        return maybe(kp, p, out, image)

    return apply


@AUGMENT_OPS.register("random_crop")
def random_crop(padding: int = 4, mode: str = "reflect", p: float = 1.0):
    """Pad every spatial side by `padding` ('reflect', 'edge' or 'constant' zeros) and crop back
    to the original size at a random position: a shift by whole pixels without resampling."""
    check(p, padding=padding)
    if mode not in ("reflect", "edge", "constant"):
        raise ValueError("mode must be 'reflect', 'edge' or 'constant'")

    def apply(key, image):
        kc, kp = jax.random.split(key)
        pad = [(padding, padding)] * (image.ndim - 1) + [(0, 0)]
        out = dm_pix.random_crop(kc, jnp.pad(image, pad, mode=mode), image.shape)
        return maybe(kp, p, out, image)

    return apply


@AUGMENT_OPS.register("cutout")
def cutout(size: float = 0.25, count: int = 1, value: float = 0.0, p: float = 0.5):
    """Set `count` boxes of side `size` (a fraction of each side) at random centres to `value`
    (DeVries and Taylor 2017); boxes may extend past the border."""
    check(p, size=size)
    if size > 1 or count < 1:
        raise ValueError("size must be in [0, 1] and count >= 1")

    def apply(key, image):
        kc, kp = jax.random.split(key)
        spatial = image.shape[:-1]
        centres = jax.random.uniform(kc, (count, len(spatial))) * jnp.array(spatial)
        half = size * jnp.array(spatial, jnp.float32) / 2
        grid = jnp.stack(jnp.meshgrid(*(jnp.arange(n) + 0.5 for n in spatial), indexing="ij"), -1)
        centres = centres.reshape(count, *(1,) * len(spatial), len(spatial))
        inside = jnp.all(jnp.abs(grid[None] - centres) < half, -1)
        out = jnp.where(inside.any(0)[..., None], value, image)
        return maybe(kp, p, out, image)

    return apply
