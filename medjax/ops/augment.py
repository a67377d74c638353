"""Random augmentation ops: `(key, image) -> image`, pure and jit/vmap-able.

Geometric ops compose rotation, zoom, shift and shear into one matrix so the image is resampled
once (each extra interpolation blurs it). Resampling is dm-pix's `affine_transform`.
"""

import dm_pix
import jax
import jax.numpy as jnp

from medjax.ops.pipeline import AUGMENT_OPS


def _maybe(key, p, new, old):
    return jnp.where(jax.random.uniform(key) < p, new, old)


@AUGMENT_OPS.register("random_flip")
def random_flip(axis: str = "lr", p: float = 0.5):
    """Flip left-right ('lr'), up-down ('ud') or each independently ('both') with probability p."""
    if axis not in ("lr", "ud", "both"):
        raise ValueError("axis must be 'lr', 'ud' or 'both'")
    axes = {"lr": (-2,), "ud": (-3,), "both": (-2, -3)}[axis]

    def apply(key, image):
        for i, ax in enumerate(axes):
            image = _maybe(jax.random.fold_in(key, i), p, jnp.flip(image, ax), image)
        return image

    return apply


@AUGMENT_OPS.register("random_affine")
def random_affine(
    rotate: float = 0.0,
    zoom: float = 0.0,
    shift: float = 0.0,
    shear: float = 0.0,
    p: float = 1.0,
    mode: str = "nearest",
):
    """Rotation by U(-rotate, rotate) degrees, zoom by U(1-zoom, 1+zoom), shift by U(-shift, shift)
    of the size, shear by U(-shear, shear) degrees: one resampling, applied with probability p."""
    if min(rotate, zoom, shift, shear) < 0 or zoom >= 1:
        raise ValueError("strengths must be >= 0 and zoom < 1")
    if mode not in ("nearest", "constant"):
        raise ValueError("mode must be 'nearest' or 'constant'")

    def apply(key, image):
        kr, kz, ks, ksh, kp = jax.random.split(key, 5)
        h, w = image.shape[-3], image.shape[-2]
        angle = jnp.deg2rad(jax.random.uniform(kr, minval=-rotate, maxval=rotate))
        scale = jax.random.uniform(kz, minval=1 - zoom, maxval=1 + zoom)
        dy, dx = jax.random.uniform(ks, (2,), minval=-shift, maxval=shift) * jnp.array([h, w])
        sh = jnp.tan(jnp.deg2rad(jax.random.uniform(ksh, minval=-shear, maxval=shear)))
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        # Output -> input coordinates (pull resampling), about the image centre.
        linear = jnp.array([[cos, -sin], [sin, cos]]) @ jnp.array([[1.0, sh], [0.0, 1.0]]) / scale
        centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
        offset = centre - linear @ centre - jnp.array([dy, dx])
        matrix = jnp.eye(4).at[:2, :2].set(linear).at[:2, 3].set(offset)
        out = dm_pix.affine_transform(image, matrix, mode=mode)
        return _maybe(kp, p, out, image)

    return apply


@AUGMENT_OPS.register("gaussian_noise")
def gaussian_noise(std: float = 0.05, p: float = 0.5):
    """Additive Gaussian noise with standard deviation U(0, std) in normalised units."""

    def apply(key, image):
        ks, kn, kp = jax.random.split(key, 3)
        sigma = jax.random.uniform(ks, maxval=std)
        noisy = image + sigma * jax.random.normal(kn, image.shape, image.dtype)
        return _maybe(kp, p, noisy, image)

    return apply
