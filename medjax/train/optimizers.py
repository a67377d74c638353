"""Optax optimizers and learning-rate schedules chosen by name."""

import types

import optax

from medjax.registry import Registry

OPTIMIZERS = Registry("optimizer", "config.optimizer.name")
SCHEDULES = Registry("learning-rate schedule", "config.optimizer.schedule")

OPTIMIZERS.register("adam", lambda lr, c: optax.adam(lr))
OPTIMIZERS.register("adamw", lambda lr, c: optax.adamw(lr, weight_decay=c.weight_decay))
OPTIMIZERS.register("sgd", lambda lr, c: optax.sgd(lr, momentum=c.momentum or None))
OPTIMIZERS.register("nesterov", lambda lr, c: optax.sgd(lr, momentum=c.momentum, nesterov=True))
OPTIMIZERS.register("rmsprop", lambda lr, c: optax.rmsprop(lr, momentum=c.momentum))
OPTIMIZERS.register("adadelta", lambda lr, c: optax.adadelta(lr))
OPTIMIZERS.register("adamax", lambda lr, c: optax.adamax(lr))
OPTIMIZERS.register("adagrad", lambda lr, c: optax.adagrad(lr))
# Dozat's Nesterov Adam with a constant momentum (as Keras' and optax's; PyTorch's NAdam also
# decays the momentum over steps, momentum_decay=0.004).
OPTIMIZERS.register("nadam", lambda lr, c: optax.nadam(lr))
OPTIMIZERS.register("radam", lambda lr, c: optax.radam(lr))
# Layer-wise trust ratios: both apply their weight decay inside, before the ratio is taken.
OPTIMIZERS.register("lamb", lambda lr, c: optax.lamb(lr, weight_decay=c.weight_decay))
OPTIMIZERS.register(
    "lars", lambda lr, c: optax.lars(lr, weight_decay=c.weight_decay, momentum=c.momentum)
)
# Optimizers whose own rule applies config.optimizer.weight_decay (no L2 term is added).
OWN_WEIGHT_DECAY = ("adamw", "lamb", "lars")

SCHEDULES.register("constant", lambda lr, total, warmup: optax.constant_schedule(lr))
SCHEDULES.register("cosine", lambda lr, total, warmup: optax.cosine_decay_schedule(lr, total))
SCHEDULES.register(
    "warmup_cosine",
    lambda lr, total, warmup: optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(total, warmup + 1)
    ),
)


def build_optimizer(
    c, total_steps: int, steps_per_epoch: float, learning_rate: float = 0.0, hparams=None
):
    """(optax transformation, schedule) from `config.optimizer`, at `learning_rate` instead of
    `c.learning_rate` when given (the head's own rate in fine-tuning).

    Weight decay is decoupled for adamw, part of the layer-wise update of lamb and lars, and an
    L2 term added to the gradient for the others, as in their papers; clipping by global norm comes first when enabled. `hparams` holds the
    run's own `learning_rate` and `weight_decay` as traced scalars when runs trained together
    differ in them (medjax.train.vectorize); the transformation's state has the same structure
    whatever their values.
    """
    hparams = hparams or {}
    make = OPTIMIZERS.get(c.name)
    lr = learning_rate or hparams.get("learning_rate", c.learning_rate)
    weight_decay = hparams.get("weight_decay", c.weight_decay)
    schedule = SCHEDULES.get(c.schedule)(
        lr, total_steps, int(round(c.warmup_epochs * steps_per_epoch))
    )
    parts = []
    if c.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(c.grad_clip_norm))
    decays = "weight_decay" in hparams or c.weight_decay  # a traced value has no truth value
    if decays and c.name not in OWN_WEIGHT_DECAY:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(make(schedule, types.SimpleNamespace(**{**c, "weight_decay": weight_decay})))
    return optax.chain(*parts), schedule
