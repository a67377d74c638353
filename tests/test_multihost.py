"""One run over two processes (JAX multi-controller on the CPU, gloo collectives), started with
medjax.launch, against the same run in one process with as many devices."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import psutil
import pytest

from tests.conftest import ROOT
from tests.test_scale_out import final_params, losses

pytestmark = pytest.mark.slow

EXPERIMENT = """
import sys
sys.path.insert(0, {root!r})
from tests.conftest import tiny_config

def get_config(arg=None):
    return tiny_config(**{{
        "data.augment": ("random_flip()", "random_affine(rotate=10)"),
        "train.num_steps": 40,
        "train.checkpoint_every_minutes": 0.0,
    }})
"""


def run(tmp_path, workdir, nproc: int, devices: int, wait=True):
    spec = tmp_path / "experiment.py"
    spec.write_text(EXPERIMENT.format(root=str(ROOT)))
    train = [sys.executable, "-m", "medjax.run", "--config", str(spec), "--workdir", str(workdir)]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if nproc == 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        command = train
    else:
        launch = ["--nproc", str(nproc), "--cpu-devices", str(devices)]
        command = [sys.executable, "-m", "medjax.launch", *launch, "--", *train]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return proc
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out + err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multihost")
    run(tmp, tmp / "one", 1, 4)
    run(tmp, tmp / "two", 2, 2)
    return tmp


# gloo's all-reduce between processes sums in another order than one process's: over 40
# float32 Adam steps the losses drift apart by up to ~1e-4 relative and weights of size ~0.3 by
# up to ~4e-4 (Adam divides by the root of tiny second moments). Rows fed twice or missed
# would move them by orders of magnitude more.
def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_two_processes_train_what_one_process_trains(runs):
    one, two = runs / "one", runs / "two"
    np.testing.assert_allclose(losses(two), losses(one), rtol=3e-4)
    jax.tree.map(close, final_params(two), final_params(one))
    results = [json.loads((d / "results.json").read_text()) for d in (one, two)]
    for metric in ("auc", "accuracy", "balanced_accuracy"):  # 64 test images: 1/64 apart at most
        assert results[1]["test"][metric] == pytest.approx(results[0]["test"][metric], abs=0.016)
    card = json.loads((two / "run_card.json").read_text())
    assert card["hardware"]["process_count"] == 2 and card["hardware"]["device_count"] == 4
    assert card["mesh"] == {"data": 4, "fsdp": 1, "sharding": "replicated"}


def test_only_process_0_writes_the_workdir(runs):
    two = runs / "two"
    rows = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["step"], r.get("split", "train")) for r in rows]
    assert len(keys) == len(set(keys)), "a row was written twice"
    assert sorted(os.listdir(two)) == sorted(os.listdir(runs / "one"))


def _process(launcher, index: int):
    for child in psutil.Process(launcher.pid).children():
        if child.environ().get("JAX_PROCESS_ID") == str(index):
            return child
    return None


def test_a_killed_process_stops_the_other_and_the_run_resumes(runs, tmp_path):
    workdir = tmp_path / "killed"
    launcher = run(tmp_path, workdir, 2, 2, wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and launcher.poll() is None:
        ckpts = workdir / "checkpoints"
        if ckpts.is_dir() and any(e.isdigit() and int(e) >= 6 for e in os.listdir(ckpts)):
            break
        time.sleep(0.05)
    victim = _process(launcher, 1)
    assert victim is not None, "the run ended before a process could be killed"
    victim.send_signal(signal.SIGKILL)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "process 1 of 2 was killed by SIGKILL" in err
    assert "Run the same command again" in err
    assert not (workdir / "results.json").exists()
    out = run(tmp_path, workdir, 2, 2)
    assert "resuming" in out
    jax.tree.map(close, final_params(workdir), final_params(runs / "two"))


def test_an_unreachable_coordinator_is_one_clear_error(tmp_path):
    spec = tmp_path / "experiment.py"
    spec.write_text(EXPERIMENT.format(root=str(ROOT)))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "medjax.run",
            "--config",
            str(spec),
            "--workdir",
            str(tmp_path / "w"),
        ]
        + ["--coordinator", "127.0.0.1:9", "--num-processes", "2", "--process-id", "1"]
        + ["--coordinator-timeout", "5"],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "could not join the run through coordinator 127.0.0.1:9" in out.stderr
    assert not (tmp_path / "w").exists()
