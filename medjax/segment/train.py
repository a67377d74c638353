"""Stage 1 of a segmentation prior: the segmenter trained on the training split's masks,
validated by Dice, checkpointed with Orbax in WORKDIR/segmenter.

Each step's batch is a function of (seed, step) alone, and the state holds everything else,
so a run killed at any instant resumes from its newest checkpoint to the same segmenter.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.errors import Interrupted
from medjax.segment.metrics import dice_ce_loss, segmentation_metrics
from medjax.segment.models import build_segmenter
from medjax.train import workdir as wd
from medjax.train.checkpoint import Checkpoints
from medjax.train.interrupt import deferred_signals
from medjax.train.steps import init_state

FOLDER = "segmenter"


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """The training images of `step`: epochs of a seeded permutation, the last partial batch
    of each dropped."""
    per_epoch = n // batch_size
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return np.sort(order[k * batch_size : (k + 1) * batch_size])


def make_train_step(model, tx, dice_weight: float):
    @jax.jit
    def train_step(state, images, masks):
        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, updated = model.apply(variables, images, train=True, mutable=["batch_stats"])
            return dice_ce_loss(logits, masks, dice_weight), updated

        (loss, updated), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        state = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            batch_stats=updated.get("batch_stats", state.batch_stats),
            opt_state=opt_state,
        )
        return state, loss

    return train_step


def make_predict(model, batch_size: int):
    """images (N, H, W, C) -> foreground probabilities (N, H, W), in fixed-size batches (the
    last zero-padded) so that one program serves every split."""

    @jax.jit
    def probs(variables, images):
        return jax.nn.softmax(model.apply(variables, images, train=False))[..., 1]

    def predict(state, images):
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        out = []
        for start in range(0, len(images), batch_size):
            block = images[start : start + batch_size]
            pad = batch_size - len(block)
            block = np.concatenate([block, np.zeros((pad, *block.shape[1:]), block.dtype)])
            out.append(np.asarray(probs(variables, jnp.asarray(block)))[: batch_size - pad])
        return np.concatenate(out)

    return predict


class Segmenter:
    """The configured segmenter on images of `image_shape`, its optimizer and steps."""

    def __init__(self, config, image_shape):
        cfg = config.segment
        self.config, self.cfg = config, cfg
        self.model = build_segmenter(cfg, image_shape[0])
        self.tx = optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps))
        self.image_shape = tuple(image_shape)
        self.train_step = make_train_step(self.model, self.tx, cfg.dice_weight)
        self.predict = make_predict(self.model, config.eval.batch_size)

    def init(self):
        return init_state(self.model, self.tx, self.image_shape, self.config.seed)

    def masks(self, state, images) -> np.ndarray:
        return self.predict(state, images) >= self.cfg.threshold


def train(seg: Segmenter, workdir: str, train_split, val_split, hooks=()):
    """(the state whose val Dice was best, its step): trained from WORKDIR/segmenter's newest
    checkpoint, or from scratch. `*_split` are (images, masks); `hooks` are called as
    hook(step, state) after every step (tests interrupt the stage with them)."""
    cfg = seg.cfg
    folder = os.path.join(workdir, FOLDER)
    os.makedirs(folder, exist_ok=True)
    log = os.path.join(folder, "metrics.jsonl")
    ckpts = Checkpoints(os.path.join(folder, "checkpoints"), 2, "dice", "max", config=seg.config)
    try:
        state, step = seg.init(), ckpts.latest_step() or 0
        if step:
            state, _ = ckpts.restore(step, state)
            print(f"segmenter: resuming from step {step}")
        wd.keep_rows_until(log, step)
        images, masks = train_split
        batch = min(cfg.batch_size, len(images))
        saved = step
        with deferred_signals() as stop:
            while step < cfg.steps:
                idx = batch_indices(seg.config.seed, step, len(images), batch)
                state, loss = seg.train_step(state, images[idx], masks[idx])
                step += 1
                for hook in hooks:
                    hook(step, state)
                if step % cfg.eval_every_steps == 0 or step == cfg.steps:
                    val = segmentation_metrics(seg.masks(state, val_split[0]), val_split[1])
                    row = {"step": step, "loss": float(loss), "val_dice": val["dice"]}
                    wd.append_jsonl(log, {**row, "val_iou": val["iou"]})
                    print(
                        f"segmenter step {step}: loss {float(loss):.4f}, val Dice {val['dice']:.3f}"
                    )
                    ckpts.save(step, state, {}, {"dice": val["dice"]})
                    saved = step
                if stop:
                    if saved != step:
                        ckpts.save(step, state, {}, {})
                    raise Interrupted(
                        f"{stop.signal_name} at segmenter step {step}: checkpoint saved in "
                        f"{folder}. Run the same command again to resume",
                        stop.signal_name,
                    )
        best = ckpts.best_step()
        return ckpts.restore(best, state)[0], best
    finally:
        ckpts.close()
