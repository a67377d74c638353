"""--ray: a sweep's runs as Ray tasks, on one local Ray instance of 2 CPUs shared by the module.

One real sweep (two runs that finish, one whose data folder is missing) runs once; the tests
read what it left. Runs are `python -m medjax.run` processes on Ray's workers, so a failure
has to come from the run itself: an image_folder source whose folder does not exist passes
the sweep's config checks and fails on the worker as it loads data.
"""

import csv
import json
import os
import pathlib
import signal
import socket
import sys
import textwrap
import time
import types

import pytest

from medjax.errors import ConfigError, TrainingError
from medjax.sweep import load_sweep, on_ray, runner
from medjax.sweep.__main__ import main

MISSING = "/nonexistent/medjax-ray-test-data"
SWEEP_FILE = textwrap.dedent(
    f"""
    from medjax.configs import get_base_config, parse_arg

    def get_config(arg=None):
        parse_arg(arg, bad=True)
        c = get_base_config()
        c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
        c.model.widths = (4, 8)
        c.train.batch_size = 16
        c.train.num_steps = 4
        c.train.log_every_steps = 2
        c.train.eval_every_epochs = 0.5
        c.eval.batch_size = 32
        c.eval.bootstrap_samples = 10
        c.log.plots = False
        return c.lock()

    def sweep(arg=None):
        runs = [{{"seed": 0}}, {{"seed": 1}}]
        if parse_arg(arg, bad=True).bad:
            runs.insert(0, {{"data.source": "image_folder", "data.path": "{MISSING}", "seed": 0}})
        return runs
    """
)


@pytest.fixture(scope="module")
def ray_cpu():
    ray = pytest.importorskip("ray")
    # the workers (and the runs they start) inherit this process's environment
    handlers = {sig: signal.getsignal(sig) for sig in on_ray.SIGNALS}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAX_PLATFORMS", "cpu")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    on_ray.restore_signals(handlers)  # later tests expect the default SIGTERM handling


@pytest.fixture(scope="module")
def swept(ray_cpu, tmp_path_factory):
    """The sweep run once through main(): (its file, its workdir, the error main raised)."""
    tmp = tmp_path_factory.mktemp("ray_sweep")
    path = tmp / "ray_sweep.py"
    path.write_text(SWEEP_FILE)
    workdir = str(tmp / "w")
    start = time.perf_counter()
    with pytest.raises(TrainingError) as error:
        main(["--config", f"{path}:bad", "--workdir", workdir, "--ray"])
    print(f"ray sweep of 3 runs: {time.perf_counter() - start:.1f} s")
    return str(path), workdir, str(error.value)


def _read(*parts) -> str:
    return pathlib.Path(*parts).read_text()


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _names(spec):
    return [r.name for r in load_sweep(spec).runs]


def test_ray_tasks_finish_the_runs_and_the_summary_is_written(swept):
    path, workdir, _ = swept
    good = _names(f"{path}:bad=0")
    for name in good:
        run = runner.run_dir(workdir, name)
        assert json.loads(_read(run, "results.json"))["test"]["auc"] >= 0
        assert "run card:" in _read(run, "log.txt")  # the task's log
    rows = {r["run"]: r["status"] for r in _rows(os.path.join(workdir, "summary.csv"))}
    assert rows == {**dict.fromkeys(good, "finished"), _names(f"{path}:bad")[0]: "failed"}
    assert os.path.exists(os.path.join(workdir, "summary.md"))


def test_a_failing_run_is_recorded_while_the_others_finish(swept):
    path, workdir, error = swept
    bad = runner.run_dir(workdir, _names(f"{path}:bad")[0])
    assert error.startswith("1 of 3 runs failed")
    failed = json.loads(_read(bad, runner.FAILED))
    assert MISSING in failed["error"] and "is not a folder" in failed["error"]
    assert f"medjax: error: '{MISSING}' is not a folder" in _read(bad, "log.txt")
    assert "## Failed runs" in _read(workdir, "summary.md")


def test_a_second_start_skips_finished_runs_and_retries_the_failed_one(swept, monkeypatch):
    path, workdir, _ = swept
    good = [runner.run_dir(workdir, n) for n in _names(f"{path}:bad=0")]
    stamps = [os.stat(os.path.join(p, "results.json")).st_mtime_ns for p in good]
    sent = []
    monkeypatch.setattr(on_ray, "run_ray", lambda ray, sweep, wd, todo, *a: sent.extend(todo))
    with pytest.raises(TrainingError, match="1 of 3 runs failed"):
        main(["--config", f"{path}:bad", "--workdir", workdir, "--ray"])
    assert [r.name for r in sent] == _names(f"{path}:bad")[:1]

    # every run of this sweep finished: no Ray task, not even a connection
    monkeypatch.setattr(on_ray, "connect", lambda *a: pytest.fail("connected to Ray"))
    main(["--config", f"{path}:bad=0", "--workdir", workdir, "--ray"])
    assert [os.stat(os.path.join(p, "results.json")).st_mtime_ns for p in good] == stamps
    statuses = [r["status"] for r in _rows(os.path.join(workdir, "summary.csv"))]
    assert statuses == ["finished", "finished"]


def test_an_address_that_does_not_answer_fails_fast_naming_it(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = f"{tmp_path / 'ray_sweep.py'}:bad=0"
    (tmp_path / "ray_sweep.py").write_text(SWEEP_FILE)
    start = time.perf_counter()
    with pytest.raises(
        ConfigError, match=f"no Ray cluster answers at 127.0.0.1:{port} .*ray status"
    ):
        main(["--config", spec, "--workdir", str(tmp_path / "w"), "--ray", f"127.0.0.1:{port}"])
    assert time.perf_counter() - start < on_ray.CONNECT_TIMEOUT_S + 10
    assert not (tmp_path / "w").exists()  # nothing of the sweep was written


def test_missing_ray_is_one_message_before_anything_is_written(tmp_path, monkeypatch):
    (tmp_path / "ray_sweep.py").write_text(SWEEP_FILE)
    monkeypatch.setitem(sys.modules, "ray", None)  # import fails, installed or not
    argv = ["--config", f"{tmp_path / 'ray_sweep.py'}:bad=0", "--workdir", str(tmp_path / "w")]
    with pytest.raises(
        ConfigError, match=r"--ray needs the ray package.*pip install 'medjax\[ray\]'"
    ):
        main([*argv, "--ray"])
    assert not (tmp_path / "w").exists()
    with pytest.raises(ConfigError, match="--ray-gpus-per-run is for Ray tasks: add --ray"):
        main([*argv, "--ray-gpus-per-run", "1"])


def test_resources_per_run_default_to_one_gpu_where_the_cluster_has_gpus():
    def cluster(**total):
        return types.SimpleNamespace(cluster_resources=lambda: total)

    assert on_ray.resources(cluster(CPU=16.0, GPU=8.0), None, None, local=True) == (1.0, 1.0)
    assert on_ray.resources(cluster(CPU=16.0), None, 4.0, local=True) == (0.0, 4.0)
    assert on_ray.resources(cluster(CPU=16.0, GPU=8.0), 0.5, None, local=False) == (0.5, 1.0)
    with pytest.raises(ConfigError, match="1 GPU per run, the cluster has 0.*--ray-gpus-per-run"):
        on_ray.resources(cluster(CPU=16.0), 1.0, None, local=True)
    # a remote cluster may add a node that has them (an autoscaler): a warning, not an error
    assert on_ray.resources(cluster(CPU=2.0), 1.0, None, local=False) == (1.0, 1.0)


@pytest.mark.parametrize(
    "address, where",
    [
        ("ray://head:10001", ("head", 10001)),
        ("ray://head", ("head", 10001)),
        ("10.0.0.1:6379", ("10.0.0.1", 6379)),
        ("head", ("head", 6379)),
        ("[::1]:6380", ("::1", 6380)),
    ],
)
def test_ray_addresses_name_the_port_that_is_tried(address, where):
    assert on_ray._host_port(address) == where
