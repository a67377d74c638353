"""Occlusion (Zeiler and Fergus): how much the target logit drops when a window is replaced by
a baseline, averaged over the windows covering each position, as captum's Occlusion computes it
(windows start every `stride`, the last one cut at the border)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import ConfigError
from medjax.explain.model_fn import ModelFn
from medjax.explain.registry import EXPLAINERS


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    return np.arange(math.ceil((size - window) / stride) + 1) * stride


def _as_tuple(value, n: int, what: str) -> tuple:
    values = tuple(value) if isinstance(value, list | tuple) else (value,) * n
    if len(values) != n or any(int(v) < 1 for v in values):
        raise ConfigError(f"occlusion {what} must be a positive integer or {n} of them: {value}")
    return tuple(int(v) for v in values)


@EXPLAINERS.register("occlusion")
def occlusion(fn: ModelFn, variables, images, targets, window=4, stride=None, baseline=0.0):
    """Occlusion maps with a `window` (int or one per spatial axis), moved by `stride`
    (default: half the window), filled with `baseline`."""
    spatial = images.shape[1:-1]
    window = _as_tuple(window, len(spatial), "window")
    stride = _as_tuple(stride or [max(1, w // 2) for w in window], len(spatial), "stride")
    if any(w > n for w, n in zip(window, spatial, strict=True)):
        raise ConfigError(f"occlusion window {window} is larger than the input {spatial}")
    grids = np.meshgrid(
        *[window_starts(n, w, s) for n, w, s in zip(spatial, window, stride, strict=True)],
        indexing="ij",
    )
    starts = jnp.asarray(np.stack([g.ravel() for g in grids], axis=1))
    index = jnp.indices(spatial)
    rows = jnp.arange(len(images))

    def score(x):
        return fn.logits(variables, x)[rows, targets]

    full = score(images)

    def one(carry, start):
        total, count = carry
        inside = jnp.ones(spatial, bool)
        for axis, w in enumerate(window):
            inside &= (index[axis] >= start[axis]) & (index[axis] < start[axis] + w)
        mask = inside[None, ..., None]
        drop = full - score(jnp.where(mask, baseline, images))
        return (total + drop[:, *([None] * len(spatial))] * inside, count + inside), None

    zero = (jnp.zeros((len(images), *spatial), jnp.float32), jnp.zeros(spatial, jnp.float32))
    (total, count), _ = jax.lax.scan(one, zero, starts)
    return total / count
