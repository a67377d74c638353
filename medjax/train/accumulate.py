"""Gradient accumulation (config.train.grad_accum_steps): one update from a batch computed in
micro-batches, so an effective batch of 256 fits a device that holds 32 images' activations.

The update equals the one-batch update: each micro-batch's gradient is weighted by its share
of the batch's loss weight (its example count, or with class weights its summed weight), which
is exactly how the batch's loss averages. Augmentation and mixing run on the whole batch first,
with the same keys, so they draw as without accumulation. Two things cannot match: dropout
draws its masks per micro-batch, and batch norm normalises each micro-batch with its own
statistics (its running averages get the mean of the micro-batches' means and variances).
With group or layer norm and no dropout the update is the same to float rounding.

Micro-batch i takes rows i, i + k, i + 2k, ... of the batch: each device's contiguous share of
the batch then holds an equal part of every micro-batch, so all devices work on each one.
"""

import jax
import jax.numpy as jnp

from medjax.train.losses import batch_weight


def accumulated(grad_fn, steps: int, loss_fn):
    """`grad_fn(params, images, targets, key) -> ((loss, (logits, batch_stats)), grads)` over
    `steps` micro-batches, with the same signature and result."""

    def run(params, images, targets, key):
        def micro(x):  # (B, ...) -> (steps, B / steps, ...)
            return jnp.swapaxes(x.reshape(-1, steps, *x.shape[1:]), 0, 1)

        images, targets = micro(images), micro(targets)
        weights = jax.vmap(lambda t: batch_weight(loss_fn, t))(targets)
        shares = weights / jnp.sum(weights)

        def body(total, xs):
            images, targets, key, share = xs
            (loss, (logits, stats)), grads = grad_fn(params, images, targets, key)
            part = (grads, loss, jax.tree.map(lambda s: s / steps, stats))
            scaled = jax.tree.map(lambda p: p * share, part[:2]) + part[2:]
            return jax.tree.map(jnp.add, total, scaled), logits

        shapes = jax.eval_shape(grad_fn, params, images[0], targets[0], key)
        (_, (_, stats_shape)), grads_shape = shapes
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), (grads_shape, shapes[0][0], stats_shape)
        )
        keys = jax.random.split(key, steps)
        (grads, loss, stats), logits = jax.lax.scan(body, zeros, (images, targets, keys, shares))
        logits = jnp.swapaxes(logits, 0, 1).reshape(-1, logits.shape[-1])
        return (loss, (logits, stats)), grads

    return run
