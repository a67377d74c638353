"""Random intensity augmentation: `(key, image) -> image` for images and volumes, each with a
probability `p` and the identity at strength 0.

Noise and bias-field ops act about the image minimum, so they model the physics (dark
background stays dark) whatever the intensity scale preprocessing left.
"""

import math

import jax
import jax.numpy as jnp

from medjax.ops.kernels import gaussian_smooth
from medjax.ops.pipeline import AUGMENT_OPS
from medjax.ops.sampling import check, maybe


@AUGMENT_OPS.register("brightness")
def brightness(delta: float = 0.1, p: float = 0.5):
    """Add U(-delta, delta) to every pixel."""
    check(p, delta=delta)

    def apply(key, image):
        kd, kp = jax.random.split(key)
        return maybe(kp, p, image + jax.random.uniform(kd, minval=-delta, maxval=delta), image)

    return apply


@AUGMENT_OPS.register("contrast")
def contrast(factor: float = 0.2, p: float = 0.5):
    """Scale deviations from the image mean by U(1-factor, 1+factor)."""
    check(p, factor=factor)

    def apply(key, image):
        kf, kp = jax.random.split(key)
        f = jax.random.uniform(kf, minval=1 - factor, maxval=1 + factor)
        mean = image.mean(tuple(range(image.ndim - 1)))
        return maybe(kp, p, (image - mean) * f + mean, image)

    return apply


@AUGMENT_OPS.register("gamma_jitter")
def gamma_jitter(gamma: float = 0.3, p: float = 0.5):
    """Gamma log-uniform in [1/(1+gamma), 1+gamma] on the image rescaled to [0, 1] by its own
    min and max, then mapped back (as MONAI's RandAdjustContrast): works at any intensity scale."""
    check(p, gamma=gamma)

    def apply(key, image):
        kg, kp = jax.random.split(key)
        g = jnp.exp(jax.random.uniform(kg, minval=-1, maxval=1) * jnp.log1p(gamma))
        lo, hi = image.min(), image.max()
        span = jnp.maximum(hi - lo, 1e-12)
        out = ((image - lo) / span) ** g * span + lo
        return maybe(kp, p, out, image)

    return apply


def _noise_op(combine, fields: int = 1):
    """A noise augmentation with standard deviation U(0, std), in the image's own units, from
    `fields` Gaussian noise images (drawing them is most of the op's cost)."""

    def factory(std: float = 0.05, p: float = 0.5):
        check(p, std=std)

        def apply(key, image):
            ks, kn, kp = jax.random.split(key, 3)
            sigma = jax.random.uniform(ks, maxval=std)
            noise = sigma * jax.random.normal(kn, (fields, *image.shape), image.dtype)
            return maybe(kp, p, combine(image, noise), image)

        return apply

    factory.__doc__ = combine.__doc__
    return factory


def _gaussian(image, noise):
    """Additive Gaussian noise (X-ray quantum noise at high counts; any modality)."""
    return image + noise[0]


def _speckle(image, noise):
    """Multiplicative speckle noise (ultrasound): x' = m + (x - m)(1 + n), m the image minimum,
    so the darkest level stays noise-free at any intensity scale."""
    m = image.min()
    return m + (image - m) * (1 + noise[0])


def _rician(image, noise):
    """Rician noise (magnitude MRI): x' = m + |(x - m) + n1 + i n2|, m the image minimum."""
    m = image.min()
    return m + jnp.sqrt((image - m + noise[0]) ** 2 + noise[1] ** 2)


AUGMENT_OPS.register("gaussian_noise")(_noise_op(_gaussian))
AUGMENT_OPS.register("speckle_noise")(_noise_op(_speckle))
AUGMENT_OPS.register("rician_noise")(_noise_op(_rician, fields=2))


@AUGMENT_OPS.register("bias_field")
def bias_field(strength: float = 0.3, degree: int = 3, p: float = 0.5):
    """A smooth multiplicative intensity field (MRI coil inhomogeneity): exp of a polynomial of
    the coordinates of `degree` with coefficients U(-strength, strength), applied about the
    image minimum as the noise ops are."""
    check(p, strength=strength)
    if degree < 1:
        raise ValueError("degree must be >= 1")

    def apply(key, image):
        kc, kp = jax.random.split(key)
        spatial = image.shape[:-1]
        axes = jnp.meshgrid(*(jnp.linspace(-1, 1, n) for n in spatial), indexing="ij")
        powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i) if i + j]
        # 2D terms in the height/width plane, plus depth powers for volumes.
        terms = [axes[-2] ** i * axes[-1] ** j for i, j in powers]
        if len(spatial) == 3:
            terms += [axes[0] ** k for k in range(1, degree + 1)]
        coef = jax.random.uniform(kc, (len(terms),), minval=-strength, maxval=strength)
        field = jnp.exp(jnp.tensordot(coef, jnp.stack(terms), 1))[..., None]
        m = image.min()
        return maybe(kp, p, m + (image - m) * field, image)

    return apply


@AUGMENT_OPS.register("random_blur")
def random_blur(sigma: float = 1.0, p: float = 0.5):
    """Gaussian blur with sigma U(0, sigma) pixels (out-of-focus or low-resolution scans)."""
    check(p, sigma=sigma)

    def apply(key, image):
        ks, kp = jax.random.split(key)
        s = jax.random.uniform(ks, maxval=sigma)
        return maybe(kp, p, gaussian_smooth(image, s, max(1, math.ceil(3 * sigma))), image)

    return apply
