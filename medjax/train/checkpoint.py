"""Orbax checkpoints of the whole train state plus the input pipeline's position.

The last `keep` checkpoints are kept, and the best one by the validation selection metric, so a
run can resume exactly and be tested on the checkpoint that validation chose.
"""

import dataclasses
import math
import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


def _score(metrics, name, mode):
    value = (metrics or {}).get(name, float("nan"))
    if not math.isfinite(value):
        return -math.inf
    return value if mode == "max" else -value


class Checkpoints:
    def __init__(self, directory: str, keep: int, select_metric: str, select_mode: str):
        self.select_metric, self.select_mode = select_metric, select_mode
        score = lambda m: _score(m, select_metric, select_mode)
        best = policies.BestN(get_metric_fn=score, n=1, keep_checkpoints_without_metrics=False)
        options = ocp.CheckpointManagerOptions(
            # best_fn also makes Orbax write each checkpoint's metrics to disk, so the choice
            # survives a restart.
            best_fn=score,
            best_mode="max",
            preservation_policy=policies.AnyPreservationPolicy([policies.LatestN(keep), best]),
            enable_async_checkpointing=True,
        )
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)
        best = self.best_step()
        self._best_score = -math.inf if best is None else self._score(self.manager.metrics(best))

    def _score(self, metrics) -> float:
        return _score(metrics, self.select_metric, self.select_mode)

    def improves(self, metrics: dict) -> bool:
        """Whether a checkpoint with these validation metrics would be the best so far (a tie
        counts: best_step prefers the later of equal scores)."""
        return self._score(metrics) >= self._best_score

    def save(self, step: int, state, data_state: dict, metrics: dict) -> None:
        self._best_score = max(self._best_score, self._score(metrics))
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        self.manager.wait_until_finished()
        steps = self.manager.all_steps()
        if not steps:
            return None
        return max(steps, key=lambda s: (self._score(self.manager.metrics(s)), s))

    def restore(self, step: int, like_state):
        """(state, data_state) at `step`, placed with the shardings of `like_state`."""
        try:
            return self._restore(step, like_state)
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
            return like_state.replace(**state), data

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
        self.manager.wait_until_finished()
        self.manager.close()
