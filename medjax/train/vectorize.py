"""Several runs trained together in one compiled program (`config.vectorize`).

Runs that differ only in settings that leave every array shape alone (today: the seed) can
share one program: their states are stacked on a leading axis and the train step is
`jax.vmap`-ed over it, each run with its own initialisation, data order, augmentation and
dropout draws. On small models and datasets one step of K stacked runs costs far less than K
steps, because a single small run leaves the machine idle between its small kernels. Each run
still has its own workdir, checkpoints, metrics and results, exactly as if it ran alone.
"""

import jax
import jax.numpy as jnp
import numpy as np

from medjax.configs import flatten
from medjax.errors import ConfigError

VECTORIZABLE = ("seed",)


def check(configs) -> bool:
    """True when `configs` are K > 1 runs to stack; raises ConfigError when they cannot be."""
    keys = tuple(configs[0].vectorize)
    bad = [k for k in keys if k not in VECTORIZABLE]
    if bad:
        raise ConfigError(
            f"config.vectorize={list(keys)}: {bad} cannot be vectorized; valid: "
            f"{list(VECTORIZABLE)} (other settings change the compiled program: run them "
            f"separately)"
        )
    if len(configs) == 1:
        return False
    first = flatten(configs[0].to_dict())
    for config in configs[1:]:
        other = flatten(config.to_dict())
        differ = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        extra = [k for k in differ if k not in keys]
        if extra:
            raise ConfigError(
                f"runs trained together may differ only in config.vectorize={list(keys)}, but "
                f"these differ too: {extra[:5]}"
            )
    if configs[0].data.oversample:
        raise ConfigError(
            "config.data.oversample draws its synthetic images from the seed, so vectorized "
            "runs would need K training sets; unset config.vectorize or config.data.oversample"
        )
    if configs[0].model.pretrained:
        raise ConfigError(
            "config.model.pretrained with config.vectorize is not supported yet; unset "
            "config.vectorize to fine-tune each seed in its own run"
        )
    return True


class Runs:
    """K runs' states: one unstacked state (K = 1), or K stacked on a leading axis."""

    def __init__(self, count: int, vectorized: bool):
        self.count, self.vectorized = count, vectorized

    def take(self, state, i: int):
        return jax.tree.map(lambda x: x[i], state) if self.vectorized else state

    def stack(self, states: list, sharding):
        if not self.vectorized:
            return states[0]
        return jax.device_put(jax.tree.map(lambda *xs: jnp.stack(xs), *states), sharding)

    def rows(self, tree) -> list:
        """Per-run host values of a pytree of (K,)-or-scalar arrays."""
        tree = jax.device_get(tree)
        if not self.vectorized:
            return [tree]
        return [jax.tree.map(lambda x, i=i: np.asarray(x)[i], tree) for i in range(self.count)]

    def batch(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack(images) if self.vectorized else images[0]
