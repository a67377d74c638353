"""Orbax checkpoints of the whole train state, the input pipeline's position and the config.

The last `keep` checkpoints are kept, and the best one by the validation selection metric, so a
run can resume exactly and be tested on the checkpoint that validation chose. Every checkpoint
records the config it was trained with, so a workdir whose config.json is lost or replaced
cannot resume another experiment's checkpoints.
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import re

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from medjax.configs import as_plain, config_diff, describe
from medjax.errors import WorkdirError, disk_error

# What Orbax leaves in its folder: step folders, and their temporary forms while being written.
_ORBAX_ENTRY = re.compile(r"^\d+(\.orbax-checkpoint-tmp.*)?$")


class _QuietDiskErrors(logging.Filter):
    """Orbax logs a full disk from each of its writer threads with a traceback (over a
    thousand lines per run); medjax reports it once, as a WorkdirError."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return disk_error(error or Exception(record.getMessage())) is None


logging.getLogger("absl").addFilter(_QuietDiskErrors())


def _score(metrics, name, mode):
    value = (metrics or {}).get(name, float("nan"))
    if not math.isfinite(value):
        return -math.inf
    return value if mode == "max" else -value


def foreign_entries(directory: str) -> list[str]:
    """Entries of a checkpoint folder that Orbax did not write."""
    if not os.path.isdir(directory):
        return []
    return sorted(e for e in os.listdir(directory) if not _ORBAX_ENTRY.match(e))


def newest_config(directory: str) -> tuple[int, dict | None] | None:
    """(step, config) of the newest checkpoint in `directory` (config None for checkpoints
    older medjax wrote without one); None when there is none. Refuses a folder holding files
    medjax did not write, so that nothing of the user's is resumed from or deleted."""
    foreign = foreign_entries(directory)
    if foreign:
        raise WorkdirError(
            f"{directory} holds files medjax did not write ({', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); move them elsewhere or choose another "
            f"--workdir"
        )
    if not os.path.isdir(directory) or not os.listdir(directory):
        return None
    # Read as files, not through a CheckpointManager: with several processes, creating one is
    # a collective, and only process 0 claims the workdir. A step folder is named by its
    # step once Orbax has finished it; the JSON item is one file.
    steps = sorted(int(e) for e in os.listdir(directory) if e.isdigit())
    if not steps:
        return None
    path = os.path.join(directory, str(steps[-1]), "data", "metadata")
    try:
        with open(path) as f:
            return steps[-1], _unpack(json.load(f))[1]
    except (OSError, ValueError) as error:
        raise WorkdirError(
            f"the newest checkpoint in {directory} (step {steps[-1]}) cannot be read ({error}); "
            f"delete its folder to resume from the one before, or pass --overwrite"
        ) from None


def _unpack(data: dict) -> tuple[dict, dict | None]:
    """(input position, config) from a checkpoint's JSON item; checkpoints written before the
    config was recorded hold the position alone."""
    if "position" in data:
        return data["position"], data.get("config")
    return data, None


class Checkpoints:
    def __init__(
        self, directory: str, keep: int, select_metric: str, select_mode: str, config=None
    ):
        self.directory = os.path.abspath(directory)
        self.select_metric, self.select_mode = select_metric, select_mode
        self.config = None if config is None else as_plain(config)
        score = lambda m: _score(m, select_metric, select_mode)
        best = policies.BestN(get_metric_fn=score, n=1, keep_checkpoints_without_metrics=False)
        options = ocp.CheckpointManagerOptions(
            # best_fn also makes Orbax write each checkpoint's metrics to disk, so the choice
            # survives a restart.
            best_fn=score,
            best_mode="max",
            preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep), best]),
            enable_async_checkpointing=True,
            cleanup_tmp_directories=True,  # what a save cut short by a kill left behind
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        best = self.best_step()
        self._best_score = -math.inf if best is None else self._score(self.manager.metrics(best))

    def _score(self, metrics) -> float:
        return _score(metrics, self.select_metric, self.select_mode)

    def improves(self, metrics: dict) -> bool:
        """Whether a checkpoint with these validation metrics would be the best so far (a tie
        counts: best_step prefers the later of equal scores)."""
        return self._score(metrics) >= self._best_score

    @contextlib.contextmanager
    def _writing(self):
        """A full or read-only disk as one WorkdirError; Orbax saves in the background, so
        the error of one save can surface at the next call."""
        try:
            yield
        except Exception as error:
            reason = disk_error(error)
            if reason is None:
                raise
            raise WorkdirError(
                f"{reason}: a checkpoint in {self.directory} could not be written. Free space "
                f"(or fix the folder's permissions) and run the same command again: it resumes "
                f"from the last complete checkpoint, nothing before it is lost"
            ) from None

    def save(self, step: int, state, position: dict, metrics: dict) -> None:
        self._best_score = max(self._best_score, self._score(metrics))
        with self._writing():
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    data=ocp.args.JsonSave({"position": position, "config": self.config}),
                ),
                metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        with self._writing():
            self.manager.wait_until_finished()
        steps = self.manager.all_steps()
        if not steps:
            return None
        return max(steps, key=lambda s: (self._score(self.manager.metrics(s)), s))

    def delete(self, step: int) -> None:
        self.manager.delete(step)

    def restore(self, step: int, like_state):
        """(state, input position) at `step`, placed with the shardings of `like_state`."""
        try:
            state, data = self._restore(step, like_state)
        except ValueError as error:
            if like_state.hparams:
                raise
            # Checkpoints written before TrainState had `hparams` lack the field; a run without
            # vectorized hyperparameters has nothing to restore there.
            fields = {f.name: getattr(like_state, f.name) for f in dataclasses.fields(like_state)}
            del fields["hparams"]
            try:
                state, data = self._restore(step, fields)
            except ValueError:
                raise error from None
            state = like_state.replace(**state)
        position, stored = _unpack(data)
        if stored is not None and self.config is not None and config_diff(stored, self.config):
            raise WorkdirError(
                f"the checkpoint of step {step} in {self.directory} was trained with another "
                f"config ({describe(config_diff(stored, self.config))}); choose another "
                f"--workdir, or pass --overwrite to start again"
            )
        return state, position

    def saved_state(self, step: int) -> dict:
        """The state saved at `step` as written (a tree of arrays, no template to restore it
        into), on this process's first device whatever mesh wrote it: for looking inside a
        checkpoint."""
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        path = epath.Path(self.directory) / str(step) / "state"
        meta = ocp.StandardCheckpointHandler().metadata(path).tree
        like = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            meta,
            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
        )
        return self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(like))
        ).state

    def _restore(self, step: int, like):
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
        )
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
            ),
        )
        return out.state, out.data

    def close(self) -> None:
        with self._writing():
            self.manager.wait_until_finished()
        self.manager.close()
