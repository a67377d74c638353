"""The whole experiment: data -> model -> compiled training with checkpoints -> test results."""

import dataclasses
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
from medjax.train import finetune, losses, sharding, vectorize
from medjax.train import workdir as wd
from medjax.train.checkpoint import Checkpoints
from medjax.train.evaluate import evaluate_runs
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


@dataclasses.dataclass
class Run:
    """One run's own files and progress; several share one program when vectorized."""

    config: object
    workdir: str
    ckpts: Checkpoints = None
    batches: object = None
    last_val: dict = dataclasses.field(default_factory=dict)

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)


def train_and_evaluate(config, workdir: str, overwrite: bool = False, stop_at_step: int = 0):
    """Train, checkpoint and evaluate `config` in `workdir`; returns the results dict.

    `stop_at_step` ends training early after checkpointing, as an interruption would; running
    again on the same workdir resumes from the latest checkpoint.
    """
    return train_and_evaluate_runs([config], [workdir], overwrite, stop_at_step)[0]


def train_and_evaluate_runs(configs, workdirs, overwrite=False, stop_at_step: int = 0):
    """train_and_evaluate for K runs at once: with K > 1 they differ only in the keys of
    config.vectorize and train stacked in one program (medjax.train.vectorize), each writing
    its own workdir as a lone run would. Returns the K results dicts."""
    wall_start = time.perf_counter()
    for c in configs:
        validate(c)
    config = configs[0]  # everything but the vectorized keys is shared
    vectorized = vectorize.check(configs)
    group = vectorize.Runs(len(configs), vectorized)
    runs = [Run(c, w) for c, w in zip(configs, workdirs, strict=True)]
    preprocess_fn, augment_fn, mix_fn = build_pipeline_fns(config)
    mesh = sharding.make_mesh()
    sharding.check_batch_size("config.train.batch_size", config.train.batch_size, mesh)
    sharding.check_batch_size("config.eval.batch_size", config.eval.batch_size, mesh)

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

    def make_tx(hparams=None):
        def optimizer(lr=0.0):  # lr: the head's own rate in fine-tuning
            return build_optimizer(config.optimizer, total_steps, steps_per_epoch, lr, hparams)[0]

        def shapes():
            return finetune.param_shapes(model, image_shape)

        return finetune.with_finetuning(optimizer(), config, shapes, optimizer)

    # Each run's own schedule, for its logged learning rate.
    schedules = [build_optimizer(c.optimizer, total_steps, steps_per_epoch)[1] for c in configs]
    weights = losses.class_weights(
        config.loss.class_weights, train.labels, dataset.num_classes, config.loss.effective_beta
    )
    tx, loss_fn = make_tx(), losses.build_loss(config.loss, weights)
    hparams = [vectorize.hparams(c) for c in configs]

    def per_run(hp):  # the optimizer and loss of the run whose state holds `hp`
        return make_tx(hp), losses.build_loss(config.loss, weights, hp)

    repl, batch_sharding = sharding.replicated(mesh), sharding.data_sharding(mesh)

    def init(seed, hp):
        return init_state(
            model, make_tx(hp), image_shape, seed, ema=config.train.ema_decay > 0, hparams=hp
        )

    if vectorized:
        seeds = np.array([c.seed for c in configs], np.int32)
        stacked_hp = {k: np.array([h[k] for h in hparams], np.float32) for k in hparams[0]}
        state = jax.jit(jax.vmap(init), out_shardings=repl)(seeds, stacked_hp)
    else:
        state = jax.jit(lambda: init(config.seed, hparams[0]), out_shardings=repl)()
    if config.model.pretrained:
        state = finetune.load_into_state(state, config, tx, repl)
    # Only now, with every config error ruled out, does each run claim its workdir.
    resuming = [wd.prepare(r.workdir, r.config, overwrite) for r in runs]
    for r in runs:
        wd.write_json(
            r.path("data_summary.json"),
            {
                "origin": dataset.origin,
                "class_names": dataset.class_names,
                **summary,
                "preprocess": list(config.data.preprocess),
                "fitted_on_train": fitted_stats,
            },
        )
        r.ckpts = Checkpoints(
            r.path("checkpoints"),
            config.train.keep_checkpoints,
            config.train.select_metric,
            config.train.select_mode,
        )
        r.batches = iter(
            imbalance.index_dataset(
                config.data.sampler, train.labels, config.train.batch_size, r.config.seed
            )
        )
    start = _common_latest_step(runs)
    if start:
        like = group.split(state)
        restored = [r.ckpts.restore(start, s) for r, s in zip(runs, like, strict=True)]
        state = group.stack([s for s, _ in restored], repl)
        for r, (_, data_state) in zip(runs, restored, strict=True):
            r.batches.set_state(data_state)
        print(f"resuming {', '.join(workdirs)} from step {start}")
    elif any(resuming):
        print(f"{', '.join(workdirs)}: same config, no checkpoint yet; starting from step 0")

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
        members=len(runs) if vectorized else 0,
        per_run=per_run if hparams[0] else None,
    )
    train_batch_sharding = sharding.stacked_data_sharding(mesh) if vectorized else batch_sharding

    def next_batch():
        idx = [next(r.batches) for r in runs]
        return (
            sharding.to_global(group.batch([train.images[i] for i in idx]), train_batch_sharding),
            sharding.to_global(group.batch([train.labels[i] for i in idx]), train_batch_sharding),
        )

    def save_all(step, state, val_rows):
        for r, s, val in zip(runs, group.split(state), val_rows, strict=True):
            r.ckpts.save(step, s, r.batches.get_state(), val)

    def close_all():
        for r in runs:
            r.ckpts.close()

    t = time.perf_counter()
    images, labels = next_batch()
    train_step = train_step.lower(state, images, labels).compile()
    compile_s = time.perf_counter() - t

    def val_metrics(step):
        return evaluate_runs(
            eval_step,
            state,
            dataset.splits["val"],
            configs,
            dataset.num_classes,
            batch_sharding,
            desc=f"val @ {step}",
        )

    metric = config.train.select_metric
    seen_images, train_seconds = 0, 0.0
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
    step, interval_start, interval_steps = start, time.perf_counter(), 0
    last_save = time.perf_counter()
    try:
        while step < total_steps:
            state, metrics = train_step(state, images, labels)
            step += 1
            interval_steps += 1
            bar.update(1)
            if step == stop_at_step and step < total_steps:
                save_all(step, state, [{}] * len(runs))
                break
            is_last = step == total_steps
            if not is_last:
                images, labels = next_batch()  # overlaps host work with the device step
            if step % config.train.log_every_steps == 0 or step % eval_every == 0 or is_last:
                rows = group.rows((metrics, state.skipped))
                elapsed = time.perf_counter() - interval_start
                rate = interval_steps * config.train.batch_size * len(runs) / elapsed
                seen_images += interval_steps * config.train.batch_size * len(runs)
                train_seconds += elapsed
                for r, schedule, (m, skipped) in zip(runs, schedules, rows, strict=True):
                    if skipped or not np.isfinite(m["loss"]):
                        close_all()
                        raise TrainingError(
                            f"{r.workdir}: the loss stopped being finite by step {step}; the last "
                            f"good checkpoint (step {r.ckpts.latest_step()}) is kept. Lower "
                            f"config.optimizer.learning_rate or set "
                            f"config.optimizer.grad_clip_norm"
                        )
                    wd.append_jsonl(
                        r.path("metrics.jsonl"),
                        {
                            "step": step,
                            "epoch": round(step / steps_per_epoch, 3),
                            "loss": float(m["loss"]),
                            "accuracy": float(m["accuracy"]),
                            "grad_norm": float(m["grad_norm"]),
                            "learning_rate": float(schedule(step - 1)),
                            "images_per_s": round(rate / len(runs), 1),
                        },
                    )
                loss = float(np.mean([m["loss"] for m, _ in rows]))
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}", **runs[0].last_val)
                if step % eval_every == 0 or is_last:
                    vals = val_metrics(step)
                    for r, val in zip(runs, vals, strict=True):
                        wd.append_jsonl(
                            r.path("metrics.jsonl"),
                            {
                                "step": step,
                                "split": "val",
                                **{k: v for k, v in val.items() if isinstance(v, int | float)},
                            },
                        )
                        r.last_val = {f"val_{metric}": f"{val.get(metric, float('nan')):.3f}"}
                    # Orbax spends ~0.2 s of CPU a save even on a small model: only the
                    # checkpoints that selection or resuming needs.
                    due = (
                        time.perf_counter() - last_save
                        >= 60 * config.train.checkpoint_every_minutes
                    )
                    improved = any(r.ckpts.improves(v) for r, v in zip(runs, vals, strict=True))
                    if is_last or due or improved:
                        save_all(step, state, vals)
                        last_save = time.perf_counter()
                interval_start, interval_steps = time.perf_counter(), 0
    except KeyboardInterrupt:
        save_all(step, state, [{}] * len(runs))
        close_all()
        raise TrainingError(
            f"interrupted at step {step}; checkpoint saved. Run the same command again to resume"
        ) from None
    finally:
        bar.close()
    if step < total_steps:
        close_all()
        return [{"stopped_at_step": step} for _ in runs]

    best = [r.ckpts.best_step() for r in runs]
    like = group.split(state)
    state = group.stack(
        [r.ckpts.restore(b, s)[0] for r, b, s in zip(runs, best, like, strict=True)], repl
    )
    results = [{"selected_step": b, "selected_by": f"val_{metric}"} for b in best]
    for split in ("val", "test"):
        for res, m in zip(
            results,
            evaluate_runs(
                eval_step,
                state,
                dataset.splits[split],
                configs,
                dataset.num_classes,
                batch_sharding,
                desc=split,
                bootstrap=config.eval.bootstrap_samples,
            ),
            strict=True,
        ):
            res[split] = m
    close_all()
    num_params = sum(x.size for x in jax.tree.leaves(state.params)) // len(runs)
    for r, res in zip(runs, results, strict=True):
        wd.write_json(r.path("results.json"), res)
        card = {
            "hardware": run_card.hardware(),
            "software": run_card.software(),
            "seed": r.config.seed,
            "data": {"origin": dataset.origin, "image_shape": list(image_shape), **summary},
            "model": {
                "name": config.model.name,
                "parameters": num_params,
            },
            "steps": total_steps,
            "resumed_from_step": start,
            # Vectorized runs share one program: its time and throughput are the group's.
            "trained_together": len(runs) if vectorized else 1,
            "timings": {
                "wall_s": round(time.perf_counter() - wall_start, 2),
                "compile_s": round(compile_s, 2),
                "train_s_this_process": round(train_seconds, 2),
                "train_images_per_s": round(seen_images / max(train_seconds, 1e-9), 1),
            },
            "memory": run_card.peak_memory(),
        }
        wd.write_json(r.path("run_card.json"), card)
    return results


def _common_latest_step(runs) -> int:
    """The newest step every run has a checkpoint of (they save together; an interruption
    during an asynchronous save can leave one run a step ahead)."""
    steps = [set(r.ckpts.manager.all_steps()) for r in runs]
    common = set.intersection(*steps) if steps else set()
    return max(common, default=0)
