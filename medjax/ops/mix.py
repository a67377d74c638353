"""Batch-level augmentation that mixes examples and their labels: MixUp and CutMix.

A mix op is `(key, images, targets) -> (images, targets)` on a whole batch with one-hot (or
already soft) targets; it runs inside the compiled train step after the per-example ops.
Partners are the batch reversed, so every example is mixed and no permutation has to be drawn.
"""

import jax
import jax.numpy as jnp

from medjax.ops.pipeline import MIX_OPS


def _check(alpha, p):
    if alpha <= 0:
        raise ValueError("alpha must be positive")
    if not 0 <= p <= 1:
        raise ValueError("p must be in [0, 1]")


@MIX_OPS.register("mixup")
def mixup(alpha: float = 0.2, p: float = 1.0):
    """x = lam x_i + (1 - lam) x_j and the same for the labels, lam ~ Beta(alpha, alpha), one
    lam per example (Zhang et al. 2018); applied to each example with probability p."""
    _check(alpha, p)

    def apply(key, images, targets):
        kl, kp = jax.random.split(key)
        n = images.shape[0]
        lam = jax.random.beta(kl, alpha, alpha, (n,))
        lam = jnp.where(jax.random.uniform(kp, (n,)) < p, lam, 1.0)
        li = lam.reshape(n, *(1,) * (images.ndim - 1))
        mixed = li * images + (1 - li) * images[::-1]
        return mixed.astype(images.dtype), lam[:, None] * targets + (1 - lam[:, None]) * targets[
            ::-1
        ]

    return apply


@MIX_OPS.register("cutmix")
def cutmix(alpha: float = 1.0, p: float = 0.5):
    """Paste a box from the partner image; the labels mix by the pasted area (Yun et al. 2019).
    The box covers 1 - lam of the image, lam ~ Beta(alpha, alpha); images and volumes."""
    _check(alpha, p)

    def apply(key, images, targets):
        kl, kc, kp = jax.random.split(key, 3)
        n, spatial = images.shape[0], images.shape[1:-1]
        lam = jax.random.beta(kl, alpha, alpha, (n,))
        side = (1 - lam)[:, None] ** (1 / len(spatial)) * jnp.array(spatial)
        centres = jax.random.uniform(kc, (n, len(spatial))) * jnp.array(spatial)
        lo = jnp.clip(centres - side / 2, 0, jnp.array(spatial))
        hi = jnp.clip(centres + side / 2, 0, jnp.array(spatial))
        grid = jnp.stack(jnp.meshgrid(*(jnp.arange(s) + 0.5 for s in spatial), indexing="ij"), -1)
        shape = (n, *(1,) * len(spatial), len(spatial))
        inside = jnp.all((grid >= lo.reshape(shape)) & (grid < hi.reshape(shape)), -1)
        inside &= (jax.random.uniform(kp, (n,)) < p).reshape(n, *(1,) * len(spatial))
        mixed = jnp.where(inside[..., None], images[::-1], images)
        # The label weight is the area actually pasted, after clipping at the border.
        kept = 1 - inside.mean(tuple(range(1, inside.ndim)))
        return mixed, kept[:, None] * targets + (1 - kept[:, None]) * targets[::-1]

    return apply
