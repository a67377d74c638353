"""A run killed at any instant resumes exactly, as it happens in practice: a real process,
killed by SIGKILL, SIGTERM (a scheduler's pre-emption) or SIGINT (Ctrl-C) after an evaluation
checkpoint, then started again with the same command, ends bit for bit where an uninterrupted
run ends: final parameters, every logged row, results."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from medjax.configs import load_config
from medjax.train import checkpoint as ckpt_lib
from medjax.train.loop import train_and_evaluate

from .conftest import ROOT

EXPERIMENT = textwrap.dedent(
    """
    from medjax.configs import get_base_config

    def get_config(arg=None):
        c = get_base_config()
        c.data.num_train, c.data.num_val, c.data.num_test = 128, 64, 64
        c.data.cache = False
        c.data.augment = ("random_flip()", "random_affine(rotate=10)")
        c.model.widths = (8, 16)
        c.model.dropout = 0.2
        c.train.batch_size = 16
        c.train.num_steps = 32
        c.train.log_every_steps = 2
        c.train.eval_every_epochs = 0.25  # every 2 steps, each a possible checkpoint
        c.train.ema_decay = 0.9
        c.train.precise_bn = "on"  # recomputed at every validation: must be the same after a resume
        c.eval.batch_size = 48
        c.eval.bootstrap_samples = 50
        return c.lock()
    """
)

# `python -m medjax.run` as a user starts it, with each training batch read 40 ms late so that
# the signal lands in the middle of training rather than after it.
SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from medjax.data import imbalance

    index_dataset = imbalance.index_dataset

    class Slow:
        def __init__(self, stream):
            self.stream = stream
        def __iter__(self):
            return self
        def __next__(self):
            time.sleep(0.04)
            return next(self.stream)
        def get_state(self):
            return self.stream.get_state()
        def set_state(self, state):
            self.stream.set_state(state)

    imbalance.index_dataset = lambda *a, **k: [Slow(iter(index_dataset(*a, **k)))][0]
    from medjax.cli import main_guard
    from medjax.run import main
    main_guard(main, sys.argv[1:])
    """
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "tiny.py"
    path.write_text(EXPERIMENT)
    return str(path)


@pytest.fixture(scope="module")
def uninterrupted(experiment, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("resume") / "straight")
    train_and_evaluate(load_config(experiment), workdir)
    return workdir


def _start(experiment, workdir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN.format(root=str(ROOT)), "--config", experiment]
        + ["--workdir", workdir],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _committed_steps(workdir) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(e) for e in os.listdir(folder) if e.isdigit())


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        row.pop("images_per_s", None)  # a rate, not a result
    return rows


def _json(workdir, name):
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


def _final_state(workdir):
    ckpts = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"), 2, "auc", "max")
    state = ckpts.saved_state(ckpts.latest_step())
    ckpts.close()
    return state


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"]
)
def test_a_run_killed_after_a_checkpoint_resumes_bit_for_bit(
    sig, experiment, uninterrupted, tmp_path
):
    workdir = str(tmp_path / "killed")
    proc = _start(experiment, workdir)
    deadline = time.time() + 120
    while not [s for s in _committed_steps(workdir) if s >= 6]:
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    expected = {signal.SIGKILL: -9, signal.SIGTERM: 143, signal.SIGINT: 130}[sig]
    assert proc.returncode == expected, out[-3000:]
    stopped = max(_committed_steps(workdir))
    assert stopped < 32, "the signal came after training ended: nothing was tested"
    if sig != signal.SIGKILL:
        assert f"{signal.Signals(sig).name} at step {stopped}: checkpoint saved" in out

    proc = _start(experiment, workdir)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    assert f"resuming {workdir} from step" in out

    for a, b in zip(
        jax.tree.leaves(_final_state(uninterrupted)),
        jax.tree.leaves(_final_state(workdir)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert _rows(workdir) == _rows(uninterrupted)  # every row once, none from the killed run
    results = [_json(w, "results.json") for w in (uninterrupted, workdir)]
    assert results[0] == results[1]
    card = _json(workdir, "run_card.json")
    timings = card["timings"]
    assert card["resumed_from_step"] > 0 and timings["processes"] == 2
    assert timings["wall_s"] > timings["wall_s_this_process"]  # the killed process counts
