"""Precise batch-norm statistics for evaluation (Wu and Johnson 2021, "Rethinking 'Batch' in
BatchNorm"; fvcore's update_bn_stats).

Batch norm evaluates with running averages of the statistics it saw in training, and training
sees augmented images: resampled ones are blurred, intensity-jittered ones shifted, mixed ones
blended. Evaluation then normalises plain images with the statistics of other images, which
can cost many points of accuracy while AUC still looks fine (README, "Resampling").

So before each validation that selects a checkpoint, and before testing, the statistics are
recomputed with the weights as they are (the EMA's when it is kept) over a fixed set of
training batches that went through preprocessing only, the way evaluation sees images: each
layer's mean and variance are averaged over the batches, as BN computes them in training.
The training state is not changed, so training runs as it would without it, and a resumed run
recomputes the same statistics from the same weights and batches.
"""

import jax
import jax.numpy as jnp
import numpy as np

from medjax.models.layers import BN_MOMENTUM
from medjax.ops.pipeline import op_name
from medjax.train import sharding
from medjax.train.finetune import keep_frozen_stats
from medjax.train.vectorize import stacked

MODES = ("auto", "on", "off")  # config.train.precise_bn
# Augmentation that leaves an image's pixel statistics as they are (a mirror image, a shift by
# whole pixels): after only these, training batches look like evaluation's.
KEEPS_STATISTICS = ("random_flip", "random_crop")


def wanted(config) -> bool:
    """Whether config.train.precise_bn asks for it; 'auto': when the training images are
    changed in ways evaluation's are not (resampled, intensities changed, mixed)."""
    mode = config.train.precise_bn
    if mode != "auto":
        return mode == "on"
    ops = [op_name(spec) for spec in config.data.augment]
    ops += [op_name(entry.split(":", 1)[1]) for entry in config.data.augment_per_class]
    return bool(config.data.mix) or any(op not in KEEPS_STATISTICS for op in ops)


def batch_indices(num_train: int, batch_size: int, images: int, seed: int) -> list:
    """The training examples the statistics are computed on: a seeded choice, the same at
    every evaluation and in a resumed run; as many whole batches as `images` allows (one at
    least)."""
    order = np.random.default_rng([seed, 2021]).permutation(num_train)
    batches = max(1, min(images, num_train) // batch_size)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(batches)]


def make_moments(model, members: int = 0):
    """(state, images, dropout key) -> each BN layer's mean and variance over that batch, with
    the weights evaluation uses; over `members` stacked runs when > 0."""

    def moments(state, images, key):
        evaluated = state.ema or {"params": state.params, "batch_stats": state.batch_stats}
        # Flax's BatchNorm adds (1 - momentum) x the batch's mean and variance to its running
        # averages: from zeros, that is the batch's own statistics, scaled.
        zeros = jax.tree.map(jnp.zeros_like, evaluated["batch_stats"])
        _, updates = model.apply(
            {"params": evaluated["params"], "batch_stats": zeros},
            images,
            train=True,
            rngs={"dropout": key},
            mutable=["batch_stats"],
        )
        return jax.tree.map(lambda x: x / (1 - BN_MOMENTUM), updates["batch_stats"])

    return stacked(moments, members, shared=(2,)) if members else moments


class PreciseBN:
    """state -> the state with precise BN statistics where evaluation reads them (the EMA's
    when it is kept); frozen layers keep theirs (config.model.freeze)."""

    def __init__(self, model, configs, train_split, mesh, state_sharding=None):
        cfg = configs[0].train
        self.members = len(configs) if len(configs) > 1 else 0
        self.batches = [
            batch_indices(len(train_split), cfg.batch_size, cfg.precise_bn_images, c.seed)
            for c in configs
        ]
        self.images, self.freeze = train_split.images, tuple(configs[0].model.freeze)
        stacked_batch = sharding.stacked_data_sharding(mesh)
        self.sharding = stacked_batch if self.members else sharding.data_sharding(mesh)
        repl = sharding.replicated(mesh)
        state_sharding = repl if state_sharding is None else state_sharding
        self.moments = jax.jit(
            make_moments(model, self.members),
            in_shardings=(state_sharding, self.sharding, None),
            out_shardings=repl,
        )
        self.replace = jax.jit(self._replace, out_shardings=state_sharding)

    def __call__(self, state, images_of=None):
        """`images_of(indices)`: the training images to use (default: as preprocessed)."""
        images_of = images_of or (lambda idx: self.images[idx])
        total = None
        for i in range(len(self.batches[0])):
            idx = [run[i] for run in self.batches]
            images = np.stack([images_of(j) for j in idx]) if self.members else images_of(idx[0])
            key = jax.random.key(i)  # dropout, if any, as in training; the same every time
            m = self.moments(state, sharding.to_global(images, self.sharding), key)
            total = m if total is None else jax.tree.map(jnp.add, total, m)
        return self.replace(state, total, len(self.batches[0]))

    def _replace(self, state, total, count):
        evaluated = state.ema["batch_stats"] if state.ema else state.batch_stats
        fresh = keep_frozen_stats(evaluated, jax.tree.map(lambda t: t / count, total), self.freeze)
        if state.ema:
            return state.replace(ema={**state.ema, "batch_stats": fresh})
        return state.replace(batch_stats=fresh)
