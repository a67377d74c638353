"""The train state and the pure train / eval steps that are compiled with `jax.jit`.

Randomness comes only from the state's key folded with the step number, and, for
augmentation, with each example's position in the global batch: the same seed gives the same
run on any number of devices, resumed or not.
"""

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from medjax.train.accumulate import accumulated
from medjax.train.finetune import keep_frozen_stats


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays
    skipped: jax.Array  # steps whose loss was not finite (their update was not applied)
    # Exponential moving average of params and batch stats, evaluated instead of them when
    # config.train.ema_decay > 0 (it smooths the step-to-step noise of small datasets); else ().
    ema: Any = ()
    # The run's own hyperparameters as float32 scalars, when runs trained together differ in
    # them (medjax.train.vectorize): {"learning_rate": ..., ...}; else ().
    hparams: Any = ()


def seed_keys(seed: int):
    """(key of the initial weights, key the run's randomness is folded from)."""
    return jax.random.split(jax.random.key(seed))


def step_keys(state_key, step):
    """(augmentation, dropout, mixing) keys of one train step."""
    return jax.random.split(jax.random.fold_in(state_key, step), 3)


def example_keys(augment_key, batch_size: int):
    """One augmentation key per position in the global batch."""
    return jax.vmap(lambda i: jax.random.fold_in(augment_key, i))(jnp.arange(batch_size))


def init_state(model, tx, image_shape, seed: int, ema: bool = False, hparams=()) -> TrainState:
    init_key, state_key = seed_keys(seed)
    variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=jax.random.key_data(state_key),
        skipped=jnp.zeros((), jnp.int32),
        ema={"params": params, "batch_stats": variables.get("batch_stats", {})} if ema else (),
        hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()} if hparams else (),
    )


def _update_ema(state: TrainState, decay: float) -> TrainState:
    if not decay:
        return state
    # Warm-up as in TF's ExponentialMovingAverage(num_updates=step): early averages do not
    # drag the random initialisation along.
    d = jnp.minimum(decay, (1.0 + state.step) / (10.0 + state.step))
    ema = jax.tree.map(
        lambda e, x: d * e + (1 - d) * x,
        state.ema,
        {"params": state.params, "batch_stats": state.batch_stats},
    )
    return state.replace(ema=ema)


def make_train_step(
    model,
    tx,
    loss_fn,
    augment_fn=None,
    ema_decay: float = 0.0,
    mix_fn=None,
    freeze=(),
    per_run=None,
    accumulate: int = 1,
):
    """(state, images, labels) -> (state, metrics); a non-finite loss leaves the state unchanged.

    `per_run(hparams) -> (tx, loss_fn)` builds both from the state's own hyperparameters when
    it carries any (medjax.train.vectorize), in place of the fixed `tx` and `loss_fn`.
    `accumulate` > 1 computes the gradient in that many micro-batches (medjax.train.accumulate).
    """

    def train_step(state: TrainState, images, labels):
        tx_, loss_ = per_run(state.hparams) if per_run and state.hparams else (tx, loss_fn)
        aug_key, dropout_key, mix_key = step_keys(jax.random.wrap_key_data(state.rng), state.step)
        if augment_fn is not None:
            keys = example_keys(aug_key, len(images))
            images = jax.vmap(augment_fn)(keys, images, labels)
        multi_label = labels.ndim == 2  # (B, L) findings; else (B,) class indices
        targets = labels
        if mix_fn is not None:
            hot = (
                labels.astype(jnp.float32)
                if multi_label
                else jax.nn.one_hot(labels, model.num_classes)
            )
            images, targets = mix_fn(mix_key, images, hot)

        def objective(params, images, targets, dropout_key):
            logits, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            return loss_(logits, targets), (logits, updates.get("batch_stats", {}))

        grad_fn = jax.value_and_grad(objective, has_aux=True)
        if accumulate > 1:
            grad_fn = accumulated(grad_fn, accumulate, loss_)
        (loss, (logits, batch_stats)), grads = grad_fn(state.params, images, targets, dropout_key)
        updates, opt_state = tx_.update(grads, state.opt_state, state.params)
        new = _update_ema(
            state.replace(
                step=state.step + 1,
                params=optax.apply_updates(state.params, updates),
                batch_stats=keep_frozen_stats(state.batch_stats, batch_stats, freeze),
                opt_state=opt_state,
            ),
            ema_decay,
        )
        # Overflowing parameters can leave the loss finite for a while, so check them too.
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.global_norm((new.params, batch_stats)))
        # Keep the last good state when the loss diverges; the loop stops on the flag.
        new = jax.tree.map(
            lambda a, b: jnp.where(finite, a, b),
            new,
            state.replace(step=new.step, skipped=state.skipped + 1),
        )
        metrics = {
            "loss": loss,
            # multi-label: the share of findings called right at probability 1/2
            "accuracy": jnp.mean((logits > 0) == (labels > 0))
            if multi_label
            else jnp.mean(jnp.argmax(logits, -1) == labels),
            "grad_norm": optax.global_norm(grads),
        }
        return new, metrics

    return train_step


def evaluated_variables(state: TrainState) -> dict:
    """The variables a state is evaluated with: the EMA weights when kept."""
    return state.ema or {"params": state.params, "batch_stats": state.batch_stats}


def make_eval_step(model, flip_tta: bool = False, multi_label: bool = False):
    """(state, images) -> class probabilities in float32 (multi-label: each finding's sigmoid),
    from the EMA weights when kept, and averaged with those of the left-right mirrored images
    when `flip_tta`."""
    link = jax.nn.sigmoid if multi_label else functools.partial(jax.nn.softmax, axis=-1)

    def probs(variables, images):
        logits = model.apply(variables, images, train=False)
        return link(logits.astype(jnp.float32))

    def eval_step(state: TrainState, images):
        variables = evaluated_variables(state)
        p = probs(variables, images)
        if flip_tta:
            p = (p + probs(variables, jnp.flip(images, -2))) / 2
        return p

    return eval_step


def jit_steps(
    model,
    tx,
    loss_fn,
    augment_fn,
    mesh,
    ema_decay=0.0,
    flip_tta=False,
    mix_fn=None,
    freeze=(),
    members=0,
    per_run=None,
    state_sharding=None,
    accumulate=1,
    multi_label=False,
):
    """The train and eval steps compiled for `mesh`: batches split over the mesh, the state laid
    out as `state_sharding` says (replicated when None), the old state's buffers donated to the
    new one.

    `members` > 0: the state holds that many runs stacked on a leading axis
    (medjax.train.vectorize) and the train step takes (K, B, ...) batches, one per run, in one
    program; the eval step shows every run the same (B, ...) images and returns
    (K, B, classes). `per_run`: see make_train_step.
    """
    from medjax.train.sharding import data_sharding, replicated, stacked_data_sharding
    from medjax.train.vectorize import stacked

    repl, batch = replicated(mesh), data_sharding(mesh)
    state_sharding = repl if state_sharding is None else state_sharding
    train = make_train_step(
        model, tx, loss_fn, augment_fn, ema_decay, mix_fn, freeze, per_run, accumulate
    )
    evaluate = make_eval_step(model, flip_tta, multi_label)
    train_batch = batch
    if members:
        train, evaluate = stacked(train, members), stacked(evaluate, members, shared=(1,))
        train_batch = stacked_data_sharding(mesh)
    train_step = jax.jit(
        train,
        in_shardings=(state_sharding, train_batch, train_batch),
        out_shardings=(state_sharding, repl),
        donate_argnums=0,
    )
    eval_step = jax.jit(evaluate, in_shardings=(state_sharding, batch), out_shardings=repl)
    return train_step, eval_step
