"""Experiment tracking: each run's metrics.jsonl rows, its config with its test metrics, and its
plots, also as TensorBoard event files (WORKDIR/tensorboard) and, with config.log.mlflow_uri,
as an MLflow run.

metrics.jsonl stays the record and the trackers are views of it. Every process starts its
views afresh from the rows the run kept (RunGroup.restore has already dropped those past the
checkpoint it resumes from), so a resumed run shows each step once, whatever a killed process
wrote after its last checkpoint, in any reader, not only in TensorBoard's purging one.

A sweep's runs live in SWEEPDIR/runs/NAME, so `tensorboard --logdir SWEEPDIR` shows them side
by side, and in MLflow they are the runs of one experiment named after the sweep's folder.
"""

import contextlib
import glob
import json
import os
import shutil

import numpy as np

from medjax.configs import flatten
from medjax.errors import ConfigError

TENSORBOARD = "tensorboard"
MLFLOW_RECORD = "mlflow.json"
PLOTS = "plots"


def scalars(row: dict) -> dict[str, float]:
    """A metrics.jsonl row as TensorBoard tags: "train/loss", "val/auc", ..."""
    split = row.get("split", "train")
    return {
        f"{split}/{key}": float(value)
        for key, value in row.items()
        if key not in ("step", "split") and isinstance(value, int | float)
    }


def test_metrics(results: dict) -> dict[str, float]:
    """The test split's single-number metrics, as "test/auc", ..."""
    test = results.get("test", {})
    return {f"test/{k}": float(v) for k, v in test.items() if isinstance(v, int | float)}


def hparams(config) -> dict:
    """The flattened config with every value a bool, int, float or str (tuples as text)."""
    return {
        key: value if isinstance(value, bool | int | float | str) else str(value)
        for key, value in flatten(config).items()
    }


def plot_files(workdir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(workdir, PLOTS, "*.png")))


def require_mlflow():
    """The mlflow module, or one ConfigError saying how to get it: medjax does not install it."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            "config.log.mlflow_uri is set but mlflow is not installed: pip install mlflow, or "
            "leave config.log.mlflow_uri empty to log to TensorBoard only"
        ) from None
    return mlflow


def sweep_folder(workdir: str) -> str | None:
    """The sweep's folder when `workdir` is one of its runs (SWEEPDIR/runs/NAME)."""
    parent = os.path.dirname(os.path.abspath(workdir))
    sweep = os.path.dirname(parent)
    is_run = os.path.basename(parent) == "runs"
    return sweep if is_run and os.path.exists(os.path.join(sweep, "sweep.json")) else None


class TensorBoard:
    """One event file per run, rewritten from the kept rows when a process starts."""

    def __init__(self, workdir: str, rows: list[dict]):
        from tensorboardX import SummaryWriter

        path = os.path.join(workdir, TENSORBOARD)
        shutil.rmtree(path, ignore_errors=True)  # what an earlier process wrote, rows included
        self.writer = SummaryWriter(path, flush_secs=30)
        for row in rows:
            self.log(row)

    def log(self, row: dict) -> None:
        self._scalars(scalars(row), row["step"])

    def _scalars(self, values: dict, step: int) -> None:
        # One event per row, not one per scalar (add_scalar): a resumed run's replay of
        # thousands of rows takes a fraction of the time.
        from tensorboardX.proto.summary_pb2 import Summary

        entries = [Summary.Value(tag=t, simple_value=v) for t, v in values.items()]
        self.writer.file_writer.add_summary(Summary(value=entries), step)

    def finish(self, config, results: dict, workdir: str, step: int) -> None:
        from PIL import Image
        from tensorboardX.summary import hparams as hparams_summaries

        metrics = test_metrics(results)
        self._scalars(metrics, step)
        # Written into this run's own file (add_hparams would make a second run per run), so
        # the HParams tab lists one row per workdir with the "test/..." scalars beside it.
        for summary in hparams_summaries(hparams(config), metrics):
            self.writer.file_writer.add_summary(summary)
        for path in plot_files(workdir):
            image = np.asarray(Image.open(path).convert("RGB"))
            name = os.path.splitext(os.path.basename(path))[0]
            self.writer.add_image(f"plots/{name}", image, step, dataformats="HWC")

    def close(self, status: str) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per medjax run; a new process deletes the one an earlier process made
    (its id is in WORKDIR/mlflow.json) and replays the kept rows into a fresh one."""

    def __init__(self, uri: str, workdir: str, rows: list[dict], config, experiment: dict):
        require_mlflow()
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric, self.client = Metric, MlflowClient(tracking_uri=uri)
        record_path = os.path.join(workdir, MLFLOW_RECORD)
        previous = _read_json(record_path)
        if previous.get("uri") == uri and previous.get("run_id"):
            # Already deleted, or the store was reset: then there is nothing to replace.
            with contextlib.suppress(Exception):
                self.client.delete_run(previous["run_id"])
        name, run_name = _names(workdir, experiment)
        found = self.client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found else self.client.create_experiment(name)
        tags = {"medjax.workdir": os.path.abspath(workdir)}
        self.run_id = self.client.create_run(exp_id, tags=tags, run_name=run_name).info.run_id
        with open(record_path, "w") as f:
            json.dump({"uri": uri, "run_id": self.run_id, "experiment": name}, f)
        params = [Param(k, str(v)[:500]) for k, v in hparams(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])
        metrics = [m for row in rows for m in self._metrics(row)]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + 1000])

    def _metrics(self, row: dict, step: int | None = None) -> list:
        step = row["step"] if step is None else step
        return [self._metric(k, v, 0, step) for k, v in scalars(row).items()]

    def log(self, row: dict) -> None:
        self.client.log_batch(self.run_id, metrics=self._metrics(row))

    def finish(self, config, results: dict, workdir: str, step: int) -> None:
        metrics = [self._metric(k, v, 0, step) for k, v in test_metrics(results).items()]
        self.client.log_batch(self.run_id, metrics=metrics)
        for path in plot_files(workdir):
            self.client.log_artifact(self.run_id, path, PLOTS)
        self.client.log_artifact(self.run_id, os.path.join(workdir, "results.json"))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _names(workdir: str, experiment: dict) -> tuple[str, str]:
    """(MLflow experiment, run name): the sweep's folder and the run's, or the experiment
    file's name and the workdir's."""
    sweep = sweep_folder(workdir)
    run_name = os.path.basename(os.path.abspath(workdir))
    if sweep:
        return os.path.basename(sweep), run_name
    stem = os.path.splitext(os.path.basename(experiment.get("file", "")))[0]
    return stem or "medjax", run_name


class Trackers:
    """The trackers config.log asks for, for one run; each call goes to all of them."""

    def __init__(self, config, workdir: str, rows: list[dict], experiment: dict | None = None):
        self.config, self.workdir, self.items, self.finished = config, workdir, [], False
        try:
            if config.log.tensorboard:
                self.items.append(TensorBoard(workdir, rows))
            if config.log.mlflow_uri:
                self.items.append(
                    MLflow(config.log.mlflow_uri, workdir, rows, config, experiment or {})
                )
        except BaseException:
            self.close("FAILED")
            raise

    def log(self, row: dict) -> None:
        for item in self.items:
            item.log(row)

    def finish(self, results: dict, step: int) -> None:
        for item in self.items:
            item.finish(self.config, results, self.workdir, step)
        self.finished = True

    def close(self, status: str | None = None) -> None:
        """Flush and end each tracker; a run stopped before its results is KILLED in MLflow
        (running the command again resumes it, in a new MLflow run)."""
        status = status or ("FINISHED" if self.finished else "KILLED")
        items, self.items = self.items, []
        for item in items:
            item.close(status)
