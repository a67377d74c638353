"""The train state and the pure train / eval steps that are compiled with `jax.jit`.

Randomness comes only from the state's key folded with the step number, and, for
augmentation, with each example's position in the global batch: the same seed gives the same
run on any number of devices, resumed or not.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays
    skipped: jax.Array  # steps whose loss was not finite (their update was not applied)


def init_state(model, tx, image_shape, seed: int) -> TrainState:
    init_key, state_key = jax.random.split(jax.random.key(seed))
    variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=jax.random.key_data(state_key),
        skipped=jnp.zeros((), jnp.int32),
    )


def make_train_step(model, tx, loss_fn, augment_fn=None):
    """(state, images, labels) -> (state, metrics); a non-finite loss leaves the state unchanged."""

    def train_step(state: TrainState, images, labels):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        aug_key, dropout_key = jax.random.split(key)
        if augment_fn is not None:
            keys = jax.vmap(lambda i: jax.random.fold_in(aug_key, i))(jnp.arange(len(images)))
            images = jax.vmap(augment_fn)(keys, images)

        def objective(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            return loss_fn(logits, labels), (logits, updates.get("batch_stats", {}))

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=batch_stats,
            opt_state=opt_state,
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
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            "grad_norm": optax.global_norm(grads),
        }
        return new, metrics

    return train_step


def make_eval_step(model):
    """(state, images) -> class probabilities in float32."""

    def eval_step(state: TrainState, images):
        logits = model.apply(
            {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
        )
        return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

    return eval_step


def jit_steps(model, tx, loss_fn, augment_fn, mesh):
    """The train and eval steps compiled for `mesh`: batches split over `data`, state replicated,
    the old state's buffers donated to the new one."""
    from medjax.train.sharding import data_sharding, replicated

    repl, batch = replicated(mesh), data_sharding(mesh)
    train_step = jax.jit(
        make_train_step(model, tx, loss_fn, augment_fn),
        in_shardings=(repl, batch, batch),
        out_shardings=(repl, repl),
        donate_argnums=0,
    )
    eval_step = jax.jit(make_eval_step(model), in_shardings=(repl, batch), out_shardings=repl)
    return train_step, eval_step
