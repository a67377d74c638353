"""Helpers shared by the random ops: probability gating, argument checks, resampling."""

import jax
import jax.numpy as jnp

from medjax.ops.spline import map_coordinates_cubic


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


ORDERS = (0, 1, 3)  # nearest, linear, cubic B-spline
DEFAULT_ORDER = 3  # the least blur for its cost (README, "Resampling")


def map_channels(image, coords, order=DEFAULT_ORDER, mode="nearest"):
    """Sample every channel at `coords` (ndim_spatial, *spatial), for images and volumes alike:
    order 0 or 1 with jax.scipy's map_coordinates, 3 with medjax.ops.spline."""
    if order == 3:
        sample = lambda c: map_coordinates_cubic(c, coords, mode)
    else:
        sample = lambda c: jax.scipy.ndimage.map_coordinates(c, list(coords), order, mode=mode)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image).astype(image.dtype)


def check_resampling(order, mode) -> None:
    if order not in ORDERS:
        raise ValueError("order must be 0 (nearest), 1 (linear) or 3 (cubic)")
    if mode not in ("nearest", "constant"):
        raise ValueError("mode must be 'nearest' or 'constant'")


def grid(spatial):
    """Index coordinates (ndim_spatial, *spatial)."""
    return jnp.stack(jnp.meshgrid(*(jnp.arange(n) for n in spatial), indexing="ij"))
