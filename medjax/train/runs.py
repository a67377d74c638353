"""The runs a program trains: K runs stacked in one program (medjax.train.vectorize), or one
alone (K = 1), each with its own workdir, lock, checkpoints, input position and files.

`RunGroup` is a context manager: whatever ends the block (results, an error, Ctrl-C), every
checkpoint manager is closed (its pending saves finished) and every workdir lock released, so
a sweep can go on with the same workdirs in the same process.
"""

import copy
import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from medjax import hosts
from medjax.data import imbalance
from medjax.inference import files as inference_files
from medjax.report import experiment as experiment_record
from medjax.report import timing
from medjax.train import sharding, tracking
from medjax.train import workdir as wd
from medjax.train.checkpoint import Checkpoints
from medjax.train.steps import evaluated_variables

METRICS = "metrics.jsonl"


class Batches:
    """A run's training index stream, one batch read ahead. Its position is always that of
    the next batch the model has not trained on, read ahead or not, so a checkpoint saved at
    any step resumes with exactly the batch that would have come next."""

    def __init__(self, stream):
        self._stream, self._ahead = stream, None

    def read_ahead(self) -> None:
        if self._ahead is None:
            position = copy.deepcopy(self._stream.get_state())
            self._ahead = (position, next(self._stream))

    def next(self) -> np.ndarray:
        self.read_ahead()
        (_, batch), self._ahead = self._ahead, None
        return batch

    def position(self) -> dict:
        return self._ahead[0] if self._ahead else copy.deepcopy(self._stream.get_state())

    def set_position(self, position: dict) -> None:
        self._ahead = None
        self._stream.set_state(position)


@dataclasses.dataclass
class Run:
    config: object
    workdir: str
    lock: wd.Lock | None = None
    ckpts: Checkpoints | None = None
    batches: Batches | None = None
    earlier_processes: list = dataclasses.field(default_factory=list)
    experiment: dict | None = None  # medjax.report.experiment.describe
    trackers: tracking.Trackers | None = None  # process 0 only

    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)


class RunGroup:
    def __init__(self, experiment, workdirs, records=None):
        self.exp = experiment
        records = records or [None] * len(workdirs)
        self.runs = [
            Run(c, w, experiment=r)
            for c, w, r in zip(experiment.configs, workdirs, records, strict=True)
        ]
        self.last_saved, self._saved_at = None, time.perf_counter()
        k = len(self.runs)
        # One compiled program each way: slicing leaf by leaf dispatches (and first compiles)
        # one tiny program per leaf and shape, seconds per checkpoint.
        self._split = jax.jit(lambda s: [jax.tree.map(lambda x, i=i: x[i], s) for i in range(k)])
        self._stack = jax.jit(
            lambda states: jax.tree.map(lambda *xs: jnp.stack(xs), *states),
            out_shardings=experiment.state_sharding,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(quiet=exc[0] is not None)
        return False

    @property
    def workdirs(self) -> list[str]:
        return [r.workdir for r in self.runs]

    # -- workdirs ---------------------------------------------------------------------------

    def claim(self, overwrite: bool) -> None:
        """Lock each workdir, check it may hold this run (resume or start), and record the
        config and data summary. Several hosts share one workdir: the first one claims it."""
        cfg = self.exp.config.train
        for run in self.runs:
            if jax.process_index() == 0:
                wd.make(run.workdir)
                run.lock = wd.Lock(run.workdir)
                wd.claim(run.workdir, run.config, overwrite)
                wd.write_json(run.path("data_summary.json"), self.exp.data.summary)
                if run.experiment is not None:
                    wd.write_json(run.path(experiment_record.EXPERIMENT), run.experiment)
            hosts.barrier(f"claimed {run.workdir}")  # the others open what process 0 made
            run.ckpts = Checkpoints(
                run.path("checkpoints"),
                cfg.keep_checkpoints,
                cfg.select_metric,
                cfg.select_mode,
                config=run.config,
            )
            labels, sampler = self.exp.data.train.labels, run.config.data.sampler
            stream = imbalance.index_dataset(sampler, labels, cfg.batch_size, run.config.seed)
            run.batches = Batches(iter(stream))

    def restore(self, state):
        """(state, step) from the newest checkpoint all runs have, or (state, 0). Rows and
        checkpoints past that step (a save or a log cut short by a kill) are dropped: the
        steps after it are trained again, exactly as they were."""
        steps = [set(r.ckpts.all_steps()) for r in self.runs]
        start = max(set.intersection(*steps), default=0)
        for run in self.runs:
            for step in run.ckpts.all_steps():
                if step > start:
                    run.ckpts.delete(step)
            run.earlier_processes = timing.earlier_processes(run.workdir) if start else []
            if jax.process_index() == 0:  # views of the rows just kept (medjax.train.tracking)
                wd.keep_rows_until(run.path(METRICS), start)
                rows = wd.read_jsonl(run.path(METRICS))
                run.trackers = tracking.Trackers(run.config, run.workdir, rows, run.experiment)
        if not start:
            return state, 0
        restored = [
            r.ckpts.restore(start, s) for r, s in zip(self.runs, self.split(state), strict=True)
        ]
        for run, (_, position) in zip(self.runs, restored, strict=True):
            run.batches.set_position(position)
        self.last_saved = start
        return self.stack([s for s, _ in restored]), start

    def close(self, quiet: bool = False) -> None:
        """Finish pending saves and release the workdirs; `quiet` when an error is already on
        its way, which a second one from closing must not hide."""
        for run in self.runs:
            try:
                for closing in (run.ckpts, run.trackers):
                    if closing is not None:
                        closing.close()
            except Exception:
                if not quiet:
                    raise
            finally:
                run.ckpts = run.trackers = None
                if run.lock is not None:
                    run.lock.release()

    # -- inputs and states ------------------------------------------------------------------

    def next_batch(self):
        """The runs' next training batch as arrays on the mesh, (K, B, ...) when stacked. With
        several processes each gathers only the images of its own rows."""
        train, (batch_sharding, _) = self.exp.data.train, self.exp.batch_shardings()
        idx = self._batch([r.batches.next() for r in self.runs])  # (B,) or (K, B)
        mine = idx[..., sharding.process_rows(batch_sharding, idx.shape)]
        images, labels = train.images[mine], train.labels[mine]
        return (
            sharding.to_global(images, batch_sharding, (*idx.shape, *images.shape[idx.ndim :])),
            sharding.to_global(labels, batch_sharding, (*idx.shape, *labels.shape[idx.ndim :])),
        )

    def read_ahead(self) -> None:
        for run in self.runs:
            run.batches.read_ahead()

    def _batch(self, arrays: list[np.ndarray]) -> np.ndarray:
        return np.stack(arrays) if self.exp.vectorized else arrays[0]

    def split(self, state) -> list:
        """The K runs' own states."""
        return self._split(state) if self.exp.vectorized else [state]

    def stack(self, states: list):
        if not self.exp.vectorized:
            return states[0]
        return self._stack(states)

    def rows(self, tree) -> list:
        """Per-run host values of a pytree of (K,)-or-scalar arrays."""
        tree = jax.device_get(tree)
        if not self.exp.vectorized:
            return [tree]
        return [jax.tree.map(lambda x, i=i: np.asarray(x)[i], tree) for i in range(len(self.runs))]

    # -- checkpoints and files --------------------------------------------------------------

    def save(self, step: int, state, vals: list[dict] | None = None) -> None:
        if step == self.last_saved:
            return
        vals = vals or [{}] * len(self.runs)
        for run, s, val in zip(self.runs, self.split(state), vals, strict=True):
            run.ckpts.save(step, s, run.batches.position(), val)
        self.last_saved, self._saved_at = step, time.perf_counter()

    def minutes_since_save(self) -> float:
        return (time.perf_counter() - self._saved_at) / 60

    def improves(self, vals: list[dict]) -> bool:
        return any(r.ckpts.improves(v) for r, v in zip(self.runs, vals, strict=True))

    def best_states(self, state):
        """(the runs' states at the checkpoints validation chose, those steps)."""
        best = [r.ckpts.best_step() for r in self.runs]
        states = [
            r.ckpts.restore(b, s)[0]
            for r, b, s in zip(self.runs, best, self.split(state), strict=True)
        ]
        return self.stack(states), best

    def log(self, rows: list[dict]) -> None:
        """One row per run appended to its metrics.jsonl, and to its trackers."""
        if jax.process_index() == 0:
            for run, row in zip(self.runs, rows, strict=True):
                wd.append_jsonl(run.path(METRICS), row)
                if run.trackers is not None:
                    run.trackers.log(row)

    def track_results(self, results: list[dict]) -> None:
        """Each run's config, test metrics and plots to its trackers, at its last step."""
        for run, res in zip(self.runs, results, strict=True):
            if run.trackers is not None:
                run.trackers.finish(res, self.exp.schedule.total_steps)

    def write(self, name: str, objects: list) -> None:
        """One JSON file per run in its workdir."""
        if jax.process_index() == 0:
            for run, obj in zip(self.runs, objects, strict=True):
                wd.write_json(run.path(name), obj)

    def save_inference(self, state) -> None:
        """Each run's evaluated variables in its workdir (medjax.inference.files)."""
        for run, s in zip(self.runs, self.split(state), strict=True):
            # every process takes part: sharded variables are gathered across them
            variables = sharding.to_host(evaluated_variables(s), self.exp.mesh)
            if jax.process_index() == 0:
                inference_files.save_variables(run.workdir, variables)

    def record_time(self, clock: timing.ProcessClock) -> None:
        if jax.process_index() == 0:
            for run in self.runs:
                timing.record(run.workdir, run.earlier_processes, clock)
