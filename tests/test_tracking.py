"""TensorBoard event files and MLflow runs as views of metrics.jsonl (medjax.train.tracking).

The event files are read back record by record with tensorboardX's protos, not through
TensorBoard's EventAccumulator: that reader drops points a later file purges, and would hide
the duplicated steps these tests look for.
"""

import glob
import json
import os
import struct
import sys
import types

import numpy as np
import pytest
from PIL import Image

from medjax.errors import ConfigError
from medjax.train import tracking
from medjax.train.loop import train_and_evaluate
from medjax.train.validate import validate

from .conftest import tiny_config


def read_events(folder: str) -> list:
    """Every Event record of every event file in `folder` (the TFRecord framing: length,
    its CRC, the bytes, their CRC)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12 : i + 12 + n])
            events.append(event)
            i += 12 + n + 4
    return events


def scalar_points(events) -> list[tuple[str, int, float]]:
    return [
        (v.tag, e.step, v.simple_value)
        for e in events
        for v in e.summary.value
        if v.HasField("simple_value")
    ]


def _crash_at(step):
    def hook(at, state):
        if at == step:
            raise RuntimeError("killed")

    return hook


def test_resumed_run_event_files_hold_each_metrics_row_once(tmp_path):
    workdir = str(tmp_path)
    # One validation (and checkpoint) at step 8; the crash at 11 leaves rows 10 behind it.
    config = tiny_config(
        **{
            "train.log_every_steps": 2,
            "train.eval_every_epochs": 1.0,
            "train.num_steps": 12,
            "eval.bootstrap_samples": 0,
            "log.plots": True,
        }
    )
    with pytest.raises(RuntimeError, match="killed"):
        train_and_evaluate(config, workdir, hooks=[_crash_at(11)])
    first = scalar_points(read_events(str(tmp_path / "tensorboard")))
    assert [s for t, s, _ in first if t == "train/loss"] == [2, 4, 6, 8, 10]
    results = train_and_evaluate(config, workdir)

    events = read_events(str(tmp_path / "tensorboard"))
    points = scalar_points(events)
    assert len({(t, s) for t, s, _ in points}) == len(points), "a step written twice"
    by_tag = {}
    for tag, step, value in points:
        by_tag.setdefault(tag, {})[step] = value
    assert list(by_tag["train/loss"]) == [2, 4, 6, 8, 10, 12]
    assert list(by_tag["val/auc"]) == [8, 12]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        split = row.get("split", "train")
        for key in ("loss", "learning_rate", "auc", "balanced_accuracy"):
            if key in row:
                np.testing.assert_allclose(by_tag[f"{split}/{key}"][row["step"]], row[key], 1e-6)
    for key in ("auc", "accuracy", "balanced_accuracy", "f1"):
        np.testing.assert_allclose(by_tag[f"test/{key}"][12], results["test"][key], 1e-6)

    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    (start,) = [
        HParamsPluginData.FromString(v.metadata.plugin_data.content).session_start_info
        for e in events
        for v in e.summary.value
        if v.tag == "_hparams_/session_start_info"
    ]
    assert start.hparams["model.widths"].string_value == "(8, 16)"
    assert start.hparams["train.batch_size"].number_value == 16
    plots = sorted(f"plots/{name[:-4]}" for name in os.listdir(tmp_path / "plots"))
    assert "plots/roc_pr" in plots  # the run's own plots (medjax.eval.plots)
    images = {v.tag: v.image for e in events for v in e.summary.value if v.HasField("image")}
    assert sorted(images) == plots
    with Image.open(tmp_path / "plots" / "roc_pr.png") as png:
        assert (images["plots/roc_pr"].height, images["plots/roc_pr"].width) == png.size[::-1]
    assert images["plots/roc_pr"].encoded_image_string.startswith(b"\x89PNG")
    try:  # TensorBoard itself, where installed, reads the same points
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return
    accumulator = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == [2, 4, 6, 8, 10, 12]
    assert sorted(accumulator.Tags()["images"]) == plots


def test_mlflow_uri_without_mlflow_fails_before_the_run_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(ConfigError, match="pip install mlflow"):
        validate(tiny_config(**{"log.mlflow_uri": "file:/tmp/mlruns"}))
    with pytest.raises(ConfigError, match="not a tracking URI"):
        validate(tiny_config(**{"log.mlflow_uri": "mlruns"}))
    validate(tiny_config(**{"log.mlflow_uri": ""}))


class FakeClient:
    """The few MlflowClient calls medjax makes, recorded in a shared store."""

    store = {"runs": {}, "experiments": {}, "deleted": []}

    def __init__(self, tracking_uri):
        self.uri = tracking_uri

    def get_experiment_by_name(self, name):
        exp_id = self.store["experiments"].get(name)
        return types.SimpleNamespace(experiment_id=exp_id) if exp_id else None

    def create_experiment(self, name):
        self.store["experiments"][name] = str(len(self.store["experiments"]) + 1)
        return self.store["experiments"][name]

    def create_run(self, experiment_id, tags, run_name):
        run_id = f"run{len(self.store['runs'])}"
        self.store["runs"][run_id] = {"exp": experiment_id, "name": run_name, "metrics": []}
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))

    def delete_run(self, run_id):
        self.store["deleted"].append(run_id)

    def log_batch(self, run_id, metrics=(), params=()):
        self.store["runs"][run_id]["metrics"] += [(m.key, m.step) for m in metrics]

    def log_artifact(self, run_id, path, folder=None):
        pass

    def set_terminated(self, run_id, status):
        self.store["runs"][run_id]["status"] = status


def _fake_mlflow(monkeypatch):
    entities = types.ModuleType("mlflow.entities")
    entities.Metric = lambda key, value, timestamp, step: types.SimpleNamespace(key=key, step=step)
    entities.Param = lambda key, value: (key, value)
    client = types.ModuleType("mlflow.tracking")
    client.MlflowClient = FakeClient
    root = types.ModuleType("mlflow")
    for name, module in (
        ("mlflow", root),
        ("mlflow.entities", entities),
        ("mlflow.tracking", client),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    FakeClient.store = {"runs": {}, "experiments": {}, "deleted": []}
    return FakeClient.store


def test_mlflow_sweep_runs_share_an_experiment_and_a_restart_replaces_the_run(
    tmp_path, monkeypatch
):
    store = _fake_mlflow(monkeypatch)
    sweep = tmp_path / "sweep"
    os.makedirs(sweep / "runs" / "seed=0")
    os.makedirs(sweep / "runs" / "seed=1")
    (sweep / "sweep.json").write_text("{}")
    config = tiny_config(**{"log.tensorboard": False, "log.mlflow_uri": "file:/x"})
    rows = [{"step": 2, "loss": 1.0}, {"step": 2, "split": "val", "auc": 0.5}]
    for name in ("seed=0", "seed=1"):
        t = tracking.Trackers(config, str(sweep / "runs" / name), rows)
        t.close()
    assert store["experiments"] == {"sweep": "1"}
    assert [r["name"] for r in store["runs"].values()] == ["seed=0", "seed=1"]
    assert store["runs"]["run0"]["status"] == "KILLED"  # closed before its results
    t = tracking.Trackers(config, str(sweep / "runs" / "seed=0"), rows[:1])
    t.log({"step": 4, "loss": 0.5})
    t.finish({"test": {"auc": 0.9}}, 4)
    t.close()
    assert store["deleted"] == ["run0"]
    assert store["runs"]["run2"]["metrics"] == [
        ("train/loss", 2),
        ("train/loss", 4),
        ("test/auc", 4),
    ]
    assert store["runs"]["run2"]["status"] == "FINISHED"


def test_log_keys_do_not_make_another_run(tmp_path):
    from medjax.configs import as_plain
    from medjax.errors import WorkdirError
    from medjax.train import workdir as wd

    older = as_plain(tiny_config())
    del older["log"]  # a run from before config.log existed
    wd.write_json(str(tmp_path / "config.json"), older)
    assert wd.claim(str(tmp_path), tiny_config(**{"log.tensorboard": False}), overwrite=False)
    with pytest.raises(WorkdirError, match="seed"):
        wd.claim(str(tmp_path), tiny_config(seed=1), overwrite=False)
