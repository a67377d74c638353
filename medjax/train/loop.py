"""The whole experiment: data -> model -> compiled training with checkpoints -> test results."""

import functools
import math
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from medjax import data as data_lib
from medjax.data import cache as data_cache
from medjax.data import imbalance
from medjax.data.pipeline import preprocess_dataset
from medjax.data.source import SPLITS
from medjax.errors import ConfigError, TrainingError
from medjax.models import build_model
from medjax.ops import build_augment, build_mix, build_preprocess
from medjax.report import run_card
from medjax.train import finetune, losses, sharding
from medjax.train import workdir as wd
from medjax.train.checkpoint import Checkpoints
from medjax.train.evaluate import evaluate
from medjax.train.optimizers import build_optimizer
from medjax.train.steps import init_state, jit_steps
from medjax.train.validate import validate


def build_pipeline_fns(config):
    """Parse the op lists first, so a bad op fails before any data is read."""
    augment = build_augment(config.data.augment) if config.data.augment else None
    return build_preprocess(config.data.preprocess), augment, build_mix(config.data.mix)


def schedule_steps(config, num_train: int):
    if config.train.batch_size > num_train:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} exceeds the {num_train} training "
            f"images; lower it"
        )
    steps_per_epoch = num_train / config.train.batch_size
    total = config.train.num_steps or math.ceil(config.train.num_epochs * steps_per_epoch)
    eval_every = max(1, round(config.train.eval_every_epochs * steps_per_epoch))
    return steps_per_epoch, total, eval_every


def train_and_evaluate(config, workdir: str, overwrite: bool = False, stop_at_step: int = 0):
    """Train, checkpoint and evaluate `config` in `workdir`; returns the results dict.

    `stop_at_step` ends training early after checkpointing, as an interruption would; running
    again on the same workdir resumes from the latest checkpoint.
    """
    wall_start = time.perf_counter()
    validate(config)
    preprocess_fn, augment_fn, mix_fn = build_pipeline_fns(config)
    mesh = sharding.make_mesh()
    sharding.check_batch_size("config.train.batch_size", config.train.batch_size, mesh)
    sharding.check_batch_size("config.eval.batch_size", config.eval.batch_size, mesh)
    path = functools.partial(os.path.join, workdir)

    def load_and_preprocess():  # skipped when the data cache has the result
        raw = data_lib.load_dataset(config.data)
        dataset, fitted_stats = preprocess_dataset(raw, preprocess_fn)
        return dataset, raw.summary(), fitted_stats

    dataset, summary, fitted_stats = data_cache.load_or_build(config.data, load_and_preprocess)
    if not 0 <= config.eval.positive_class < dataset.num_classes:
        raise ConfigError(
            f"config.eval.positive_class={config.eval.positive_class} is not one of "
            f"the {dataset.num_classes} classes {dataset.class_names}"
        )
    print(
        f"data: {dataset.origin}: "
        + ", ".join(
            f"{n} {s['images']} {s['class_counts']}" for n, s in summary.items() if n in SPLITS
        )
        + f" ({summary.get('split_method', 'official')})"
    )
    train, image_shape = dataset.splits["train"], dataset.image_shape

    steps_per_epoch, total_steps, eval_every = schedule_steps(config, len(train))
    # After the schedule: an epoch counts real training images only (see medjax.data.imbalance)
    train, synthetic = imbalance.oversample(train, config.data.oversample, config.seed)
    if synthetic:
        made = {dataset.class_names[c]: n for c, n in synthetic.items()}
        summary["oversample"] = {"method": config.data.oversample, "synthetic_train_images": made}
        print(f"{config.data.oversample}: {made} synthetic training images, train only")
    model = build_model(config.model, dataset.num_classes, image_shape[0])
    tx, schedule = build_optimizer(config.optimizer, total_steps, steps_per_epoch)
    tx = finetune.with_finetuning(
        tx,
        config,
        lambda: finetune.param_shapes(model, image_shape),
        lambda lr: build_optimizer(config.optimizer, total_steps, steps_per_epoch, lr)[0],
    )
    weights = losses.class_weights(
        config.loss.class_weights, train.labels, dataset.num_classes, config.loss.effective_beta
    )
    loss_fn = losses.build_loss(config.loss, weights)
    repl, batch_sharding = sharding.replicated(mesh), sharding.data_sharding(mesh)
    state = jax.jit(
        lambda: init_state(model, tx, image_shape, config.seed, ema=config.train.ema_decay > 0),
        out_shardings=repl,
    )()
    if config.model.pretrained:
        state = finetune.load_into_state(state, config, tx, repl)
    # Only now, with every config error ruled out, does the run claim its workdir.
    resuming = wd.prepare(workdir, config, overwrite)
    wd.write_json(
        path("data_summary.json"),
        {
            "origin": dataset.origin,
            "class_names": dataset.class_names,
            **summary,
            "preprocess": list(config.data.preprocess),
            "fitted_on_train": fitted_stats,
        },
    )

    ckpts = Checkpoints(
        path("checkpoints"),
        config.train.keep_checkpoints,
        config.train.select_metric,
        config.train.select_mode,
    )
    batches = iter(
        imbalance.index_dataset(
            config.data.sampler, train.labels, config.train.batch_size, config.seed
        )
    )
    start = ckpts.latest_step() or 0
    if start:
        state, data_state = ckpts.restore(start, state)
        batches.set_state(data_state)
        print(f"resuming {workdir} from step {start}")
    elif resuming:
        print(f"{workdir}: same config, no checkpoint yet; starting from step 0")

    train_step, eval_step = jit_steps(
        model,
        tx,
        loss_fn,
        augment_fn,
        mesh,
        ema_decay=config.train.ema_decay,
        flip_tta=config.eval.flip_tta,
        mix_fn=mix_fn,
        freeze=tuple(config.model.freeze),
    )

    def next_batch():
        idx = next(batches)
        return (
            sharding.to_global(train.images[idx], batch_sharding),
            sharding.to_global(train.labels[idx], batch_sharding),
        )

    t = time.perf_counter()
    images, labels = next_batch()
    train_step = train_step.lower(state, images, labels).compile()
    compile_s = time.perf_counter() - t

    def val_metrics(step):
        return evaluate(
            eval_step,
            state,
            dataset.splits["val"],
            config,
            dataset.num_classes,
            batch_sharding,
            desc=f"val @ {step}",
        )

    metrics_path, last_val = path("metrics.jsonl"), {}
    seen_images, train_seconds = 0, 0.0
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    step, interval_start, interval_steps = start, time.perf_counter(), 0
    try:
        while step < total_steps:
            state, metrics = train_step(state, images, labels)
            step += 1
            interval_steps += 1
            bar.update(1)
            if step == stop_at_step and step < total_steps:
                ckpts.save(step, state, batches.get_state(), {})
                break
            is_last = step == total_steps
            if not is_last:
                images, labels = next_batch()  # overlaps host work with the device step
            if step % config.train.log_every_steps == 0 or step % eval_every == 0 or is_last:
                metrics, skipped = jax.device_get((metrics, state.skipped))
                elapsed = time.perf_counter() - interval_start
                rate = interval_steps * config.train.batch_size / elapsed
                seen_images += interval_steps * config.train.batch_size
                train_seconds += elapsed
                if skipped or not np.isfinite(metrics["loss"]):
                    ckpts.close()
                    raise TrainingError(
                        f"the loss stopped being finite by step {step}; the last good checkpoint "
                        f"(step {ckpts.latest_step()}) is kept. Lower "
                        f"config.optimizer.learning_rate or set config.optimizer.grad_clip_norm"
                    )
                line = {
                    "step": step,
                    "epoch": round(step / steps_per_epoch, 3),
                    "loss": float(metrics["loss"]),
                    "accuracy": float(metrics["accuracy"]),
                    "grad_norm": float(metrics["grad_norm"]),
                    "learning_rate": float(schedule(step - 1)),
                    "images_per_s": round(rate, 1),
                }
                wd.append_jsonl(metrics_path, line)
                bar.set_postfix(loss=f"{line['loss']:.4f}", img_s=f"{rate:.0f}", **last_val)
                if step % eval_every == 0 or is_last:
                    val = val_metrics(step)
                    wd.append_jsonl(
                        metrics_path,
                        {
                            "step": step,
                            "split": "val",
                            **{k: v for k, v in val.items() if isinstance(v, int | float)},
                        },
                    )
                    last_val = {
                        f"val_{config.train.select_metric}": f"{val.get(config.train.select_metric, float('nan')):.3f}"
                    }
                    ckpts.save(step, state, batches.get_state(), val)
                interval_start, interval_steps = time.perf_counter(), 0
    except KeyboardInterrupt:
        ckpts.save(step, state, batches.get_state(), {})
        ckpts.close()
        raise TrainingError(
            f"interrupted at step {step}; checkpoint saved. Run the same command again to resume"
        ) from None
    finally:
        bar.close()
    if step < total_steps:
        ckpts.close()
        return {"stopped_at_step": step}

    best = ckpts.best_step()
    state, _ = ckpts.restore(best, state)
    results = {"selected_step": best, "selected_by": f"val_{config.train.select_metric}"}
    for split in ("val", "test"):
        results[split] = evaluate(
            eval_step,
            state,
            dataset.splits[split],
            config,
            dataset.num_classes,
            batch_sharding,
            desc=split,
            bootstrap=config.eval.bootstrap_samples,
        )
    ckpts.close()
    wd.write_json(path("results.json"), results)
    card = {
        "hardware": run_card.hardware(),
        "software": run_card.software(),
        "seed": config.seed,
        "data": {"origin": dataset.origin, "image_shape": list(image_shape), **summary},
        "model": {
            "name": config.model.name,
            "parameters": int(sum(x.size for x in jax.tree.leaves(state.params))),
        },
        "steps": total_steps,
        "resumed_from_step": start,
        "timings": {
            "wall_s": round(time.perf_counter() - wall_start, 2),
            "compile_s": round(compile_s, 2),
            "train_s_this_process": round(train_seconds, 2),
            "train_images_per_s": round(seen_images / max(train_seconds, 1e-9), 1),
        },
        "memory": run_card.peak_memory(),
    }
    wd.write_json(path("run_card.json"), card)
    return results
