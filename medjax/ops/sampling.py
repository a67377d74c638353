"""Helpers shared by the random ops: probability gating, argument checks, resampling."""

import jax
import jax.numpy as jnp


def maybe(key, p, new, old):
    """`new` with probability p, else `old` (both are computed: under vmap a branch would be
    too)."""
    return jnp.where(jax.random.uniform(key) < p, new, old)


def check(p, **strengths):
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")
    for name, value in strengths.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0")


def map_channels(image, coords, order=1, mode="nearest"):
    """Sample every channel at `coords` (ndim_spatial, *spatial): dm-pix's resampler is 2D only,
    so volumes use jax.scipy directly."""
    return jax.vmap(
        lambda c: jax.scipy.ndimage.map_coordinates(c, list(coords), order, mode=mode),
        in_axes=-1,
        out_axes=-1,
    )(image)


def grid(spatial):
    """Index coordinates (ndim_spatial, *spatial)."""
    return jnp.stack(jnp.meshgrid(*(jnp.arange(n) for n in spatial), indexing="ij"))
