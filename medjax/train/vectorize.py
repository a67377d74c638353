"""Several runs trained together in one compiled program (`config.vectorize`).

Runs that differ only in settings that leave every array shape alone can share one program:
their states are stacked on a leading axis and one compiled step advances them all, each with
its own initialisation, data order, augmentation and dropout draws. Each run still has its own
workdir, checkpoints, metrics and results, exactly as if it ran alone. Besides the seed, the
learning rate, weight decay and label smoothing can differ: they travel in the train state as
arrays (`TrainState.hparams`) and the step builds its optimizer and loss from them.

How the K runs share the program depends on the backend (`stacked`). On GPUs and TPUs the
step is `jax.vmap`-ed: one small run leaves most of the device idle, K stacked runs fill it.
On the CPU, XLA turns a vmapped convolution (K weight sets) into a grouped convolution, which
its CPU backend runs far slower than K plain ones (measured on a 2-core Xeon, jax 0.12, the
ablation CNN: a vmapped step of 3 runs took 5.4x one run's step, a `lax.map` over the runs
10x); so there the program holds K unrolled copies of the step (2.8x one run's step for 3
runs). Compiling that K-fold program costs about what the faster steps save, so on the CPU
stacking is about even with separate runs. On one H200, 8 seeds of the BreastMNIST ablation
recipe trained 2.7x faster stacked and finished 1.5x sooner end to end (README, "Ablations
and sweeps"): what is left per run is host work (evaluation, checkpoints).
"""

import jax
import jax.numpy as jnp

from medjax.configs import config_diff
from medjax.errors import ConfigError

# config key -> its name in TrainState.hparams (None: not a hyperparameter of the step)
VECTORIZABLE = {
    "seed": None,
    "optimizer.learning_rate": "learning_rate",
    "optimizer.weight_decay": "weight_decay",
    "loss.label_smoothing": "label_smoothing",
}


def hparams(config) -> dict:
    """The run's own values of the vectorized hyperparameters, {} when there are none. Taken
    from config.vectorize, not from how many runs train together, so a run that goes on alone
    from its group's checkpoints has the same state structure."""
    out = {}
    for key in config.vectorize:
        name = VECTORIZABLE.get(key)
        if name:
            section, field = key.split(".")
            out[name] = float(config[section][field])
    return out


def check_keys(keys) -> None:
    """config.vectorize names only keys that leave the compiled program alone."""
    bad = [k for k in keys if k not in VECTORIZABLE]
    if bad:
        raise ConfigError(
            f"config.vectorize={list(keys)}: {bad} cannot be vectorized; valid: "
            f"{list(VECTORIZABLE)} (other settings change the compiled program: run them "
            f"separately)"
        )


def check(configs) -> bool:
    """True when `configs` are K > 1 runs to stack; raises ConfigError when they cannot be."""
    keys = tuple(configs[0].vectorize)
    if len(configs) == 1:
        return False
    for config in configs[1:]:
        extra = [k for k in config_diff(configs[0], config) if k not in keys]
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


def stacked(fn, members: int, shared: tuple[int, ...] = ()):
    """`fn` applied to each of `members` runs stacked on the leading axis of its arguments
    (those at the positions in `shared` are the same for every run), outputs stacked alike."""
    if jax.default_backend() != "cpu":

        def vmapped(*args):
            axes = tuple(None if i in shared else 0 for i in range(len(args)))
            return jax.vmap(fn, in_axes=axes)(*args)

        return vmapped

    def unrolled(*args):
        outs = [
            fn(
                *(
                    a if i in shared else jax.tree.map(lambda x, k=k: x[k], a)
                    for i, a in enumerate(args)
                )
            )
            for k in range(members)
        ]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return unrolled
