"""The whole experiment: data -> model -> compiled training with checkpoints -> test results.

`train_and_evaluate_runs` reads top to bottom: build the experiment, claim the workdir and
resume from its newest checkpoint, train (logging, validating and checkpointing as the config
says), then test the checkpoint that validation chose and write the results and the run card.
A run killed at any instant resumes exactly: the same batches, augmentations and results as
if it had never stopped.
"""

import time

import jax
import numpy as np
from tqdm.auto import tqdm

from medjax import heads, hosts
from medjax.errors import Interrupted, TrainingError
from medjax.eval import post_hoc
from medjax.report import run_card, timing
from medjax.segment import prior as segment_prior
from medjax.train import consistency, predictions
from medjax.train import workdir as wd
from medjax.train.evaluate import evaluate_runs, metrics_of_runs, predict_runs
from medjax.train.experiment import build_experiment
from medjax.train.interrupt import deferred_signals
from medjax.train.runs import RunGroup


def train_and_evaluate(
    config, workdir: str, overwrite: bool = False, hooks=(), experiment=None
) -> dict:
    """Train, checkpoint and evaluate `config` in `workdir`; returns the results dict.

    `hooks` are called as hook(step, state) after every step, of the segmenter's too (tests
    interrupt a run with them); running again on the same workdir resumes from its newest
    checkpoint.
    `experiment` (medjax.report.experiment.describe) is recorded in experiment.json.
    """
    experiments = None if experiment is None else [experiment]
    return train_and_evaluate_runs([config], [workdir], overwrite, hooks, experiments)[0]


def train_and_evaluate_runs(
    configs, workdirs, overwrite=False, hooks=(), experiments=None
) -> list[dict]:
    """train_and_evaluate for K runs at once: with K > 1 they differ only in the keys of
    config.vectorize and train stacked in one program (medjax.train.vectorize), each writing
    its own workdir as a lone run would. Returns the K results dicts."""
    clock = timing.ProcessClock()
    # config.segment: a segmenter trained first rewrites the data the classifier trains on
    prior = segment_prior.prepare(configs, workdirs, overwrite, hooks)
    exp = build_experiment(configs, prior.data if prior else None)
    state = exp.init_state()  # a bad weights file fails here, before any workdir is touched
    with RunGroup(exp, workdirs, experiments) as runs:
        runs.claim(overwrite)
        state, start = runs.restore(state)
        clock.first_step = clock.step = start
        if start:
            print(f"resuming {', '.join(workdirs)} from step {start}")
        state = train(exp, runs, state, start, clock, hooks)
        results, probs = test(exp, runs, state)
        if prior:
            results[0]["segmentation"] = prior.results
        runs.write("results.json", results)
        if exp.config.log.plots:
            write_plots(exp, runs, results, probs)
        runs.track_results(results)  # after results: the plots test() made are there
        runs.record_time(clock)
        params = sum(x.size for x in jax.tree.leaves(state.params)) // len(runs.runs)
        runs.write("run_card.json", [card(exp, r, params, start, clock) for r in runs.runs])
    return results


def train(exp, runs: RunGroup, state, step: int, clock, hooks=()):
    """Train from `step` to the end of the schedule; returns the final state. On SIGINT or
    SIGTERM, saves a checkpoint after the current step and raises Interrupted."""
    total, cfg = exp.schedule.total_steps, exp.config.train
    start = time.perf_counter()
    train_step = exp.compile_train_step(state)
    clock.compile_s = time.perf_counter() - start
    bar = Progress(
        total=total,
        initial=step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        disable=not hosts.is_main(),  # one bar, not one per process
    )
    with deferred_signals() as stop, bar:
        clock.start_interval()
        while step < total:
            images, labels = runs.next_batch()
            state, metrics = train_step(state, images, labels)
            step += 1
            clock.tick()
            if step < total:
                runs.read_ahead()  # host work overlaps the device step
            validating = step % exp.schedule.eval_every == 0 or step == total
            logging = step % cfg.log_every_steps == 0 or validating
            if logging:
                log_training(exp, runs, step, (metrics, state.skipped), clock, bar)
                if validating:
                    validate_and_save(exp, runs, step, state, bar)
                clock.start_interval()
            bar.update(1)
            for hook in hooks:
                hook(step, state)
            # Several processes must stop at the same step (the checkpoint is collective):
            # they agree where they already wait for the device, at logging steps.
            can_stop = logging or jax.process_count() == 1
            if can_stop and hosts.agree(bool(stop)):
                runs.save(step, state)
                # only another process was signalled: exit as a stopped process would
                name = stop.signal_name or "SIGTERM"
                raise Interrupted(
                    f"{stop.signal_name or 'a stop request to another process'} at step "
                    f"{step}: checkpoint saved in {', '.join(runs.workdirs)}. Run the same "
                    f"command again to resume",
                    name,
                )
    return state


class Progress(tqdm):
    """The training bar; its postfix keeps the latest loss, images/s and validation metric."""

    def show(self, **fields) -> None:
        self.shown = {**getattr(self, "shown", {}), **fields}
        self.set_postfix(self.shown)


def log_training(exp, runs: RunGroup, step: int, values, clock, bar) -> None:
    """A metrics.jsonl row per run; stops on a non-finite loss, keeping the last good
    checkpoint (the step skipped the update that made it so)."""
    rows = runs.rows(values)  # waits for the step
    rate = clock.end_interval(exp.config.train.batch_size * len(runs.runs))
    for run, (m, skipped) in zip(runs.runs, rows, strict=True):
        if skipped or not np.isfinite(m["loss"]):
            latest = run.ckpts.latest_step()
            kept = f"the last good checkpoint (step {latest}) is kept" if latest else ""
            raise TrainingError(
                f"{run.workdir}: the loss stopped being finite by step {step}; "
                f"{kept or 'no checkpoint had been saved yet'}. Lower "
                f"config.optimizer.learning_rate or set config.optimizer.grad_clip_norm"
            )
    runs.log(
        [
            {
                "step": step,
                "epoch": round(step / exp.schedule.steps_per_epoch, 3),
                "loss": float(m["loss"]),
                "accuracy": float(m["accuracy"]),
                "grad_norm": float(m["grad_norm"]),
                "learning_rate": float(schedule(step - 1)),
                "images_per_s": round(rate / len(runs.runs), 1),
            }
            for schedule, (m, _) in zip(exp.lr_schedules, rows, strict=True)
        ]
    )
    runs.record_time(clock)
    bar.show(loss=f"{np.mean([m['loss'] for m, _ in rows]):.4f}", img_s=f"{rate:.0f}")


def validate_and_save(exp, runs: RunGroup, step: int, state, bar) -> None:
    """Validation metrics logged; a checkpoint saved when validation improves, at the end, or
    when config.train.checkpoint_every_minutes have passed since the last one."""
    cfg = exp.config.train
    vals = evaluate(exp, exp.for_evaluation(state), "val", desc=f"val @ {step}")
    runs.log(
        [
            {"step": step, "split": "val", **{k: v for k, v in val.items() if _is_number(v)}}
            for val in vals
        ]
    )
    bar.show(**{f"val_{cfg.select_metric}": f"{vals[0].get(cfg.select_metric, np.nan):.3f}"})
    # Orbax spends ~0.2 s of CPU a save even on a small model: only the checkpoints that
    # selection or resuming needs.
    due = runs.minutes_since_save() >= cfg.checkpoint_every_minutes
    if step == exp.schedule.total_steps or due or runs.improves(vals):
        runs.save(step, state, vals)


def _is_number(value) -> bool:
    return isinstance(value, int | float)


def evaluate(exp, state, split: str, desc: str) -> list[dict]:
    return evaluate_runs(
        exp.eval_step,
        state,
        exp.data.dataset.splits[split],
        exp.configs,
        exp.data.dataset.num_classes,
        exp.batch_shardings()[1],
        desc=desc,
    )


def test(exp, runs: RunGroup, state) -> tuple[list[dict], dict]:
    """Validation and test metrics, with bootstrap intervals, of the checkpoint each run's
    validation chose, the checks that it is evaluated as it was trained, and the operating
    point and temperature fitted on validation (medjax.eval.post_hoc); the test split is
    evaluated here and nowhere else. A fitted head (config.model.head, medjax.heads) is fitted
    here, on the chosen checkpoint's features, and its results replace the network's. Returns
    (the runs' results, their probabilities (K, N, classes) by split)."""
    trained, best = runs.best_states(state)
    state = exp.for_evaluation(trained)
    runs.save_inference(state)  # what predict, explain and export use (medjax.inference)
    metric, bootstrap = exp.config.train.select_metric, exp.config.eval.bootstrap_samples
    results = [{"selected_step": b, "selected_by": f"val_{metric}"} for b in best]
    sharding, splits = exp.batch_shardings()[1], exp.data.dataset.splits
    probs = {}
    for split in ("val", "test"):
        probs[split] = predict_runs(
            exp.eval_step, state, splits[split], exp.configs, sharding, split
        )
        metrics = metrics_of_runs(
            probs[split], splits[split].labels, exp.configs, exp.data.dataset.num_classes, bootstrap
        )
        for res, m in zip(results, metrics, strict=True):
            res[split] = m
    check_consistency(exp, trained, probs["val"], results)  # of the network as trained
    if heads.is_fitted(exp.config):  # its probabilities and metrics become the run's
        probs = heads.in_run.fit_heads(exp, runs, state, results)
    predictions.save_split(runs, "val", probs["val"], splits["val"].labels)  # k-fold pooling
    predictions.save_split(runs, "test", probs["test"], splits["test"].labels)  # ensembles
    labels = {split: splits[split].labels for split in probs}
    for k, (res, config) in enumerate(zip(results, exp.configs, strict=True)):
        mine = {split: p[k] for split, p in probs.items()}
        res.update(post_hoc.fit_and_report(labels, mine, config, exp.data.dataset.num_classes))
    return results, probs


def write_plots(exp, runs: RunGroup, results: list[dict], probs: dict) -> None:
    """Each run's WORKDIR/plots/ (medjax.eval.post_hoc.plot_run), after its results.json."""
    if jax.process_index():
        return
    labels, names = exp.data.dataset.splits["test"].labels, exp.data.dataset.class_names
    for k, (run, res) in enumerate(zip(runs.runs, results, strict=True)):
        rows = wd.read_jsonl(run.path("metrics.jsonl"))
        post_hoc.plot_run(run.workdir, res, labels, probs["test"][k], names, run.config, rows)


def check_consistency(exp, trained, val_probs, results: list[dict]) -> None:
    """Each run's results gain "warnings" (printed too): a gap between the model as evaluated
    (`val_probs`) and as trained (consistency.as_trained; eval.gap_check; "val_augmented" and
    "train_eval_gap" record it), and a shifted decision rule on validation or test."""
    cfg = exp.config.eval
    for res in results:
        res["warnings"] = []
    if cfg.gap_check and exp.augment_fn is not None:
        for res, gap in zip(
            results,
            consistency.gaps(exp, trained, val_probs, [r["val"] for r in results]),
            strict=True,
        ):
            res["val_augmented"], res["train_eval_gap"], found = gap
            res["warnings"] += found
    for res in results:
        for split in ("val", "test"):
            res["warnings"] += consistency.decision_rule(res[split], split, cfg.decision_margin)
    for warning in dict.fromkeys(w for res in results for w in res["warnings"]):
        print(f"warning: {warning}")


def card(exp, run, parameters: int, start: int, clock) -> dict:
    """The run card: what ran, on what, for how long."""
    return {
        "hardware": run_card.hardware(),
        "mesh": {**exp.mesh.shape, "sharding": exp.config.sharding.strategy},
        "software": run_card.software(),
        "seed": run.config.seed,
        "data": {"image_shape": list(exp.data.dataset.image_shape), **exp.data.summary},
        "model": {"name": exp.config.model.name, "parameters": parameters},
        "steps": exp.schedule.total_steps,
        "resumed_from_step": start,
        # Vectorized runs share one program: its time and throughput are the group's.
        "trained_together": len(exp.configs),
        "timings": timing.run_timings(run.earlier_processes, clock),
        "memory": run_card.peak_memory(),
    }
