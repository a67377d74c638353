"""Kill a run again and again at random instants (SIGKILL: no chance to save), restart it each
time, and check that it ends bit for bit where an uninterrupted run ends.

    PYTHONPATH=. python tools/kill_resume_check.py --kills 20 [--stacked] [--seed 0]

The run trains a tiny CNN on phantom data for 48 steps, validating every 2 steps and saving a
checkpoint at every validation, with each training batch read 30 ms late, so that kills land
anywhere: in a step, in an evaluation, in an asynchronous checkpoint save, in a log write.
`--stacked` trains two seeds together (config.vectorize). Prints one line per kill and a
verdict; exits 1 on any difference. tests/test_resume.py checks one kill per signal in CI.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXPERIMENT = """
from medjax.configs import get_base_config

def get_config(arg=None):
    c = get_base_config()
    c.seed = int(arg or 0)
    c.data.num_train, c.data.num_val, c.data.num_test = 128, 64, 64
    c.data.cache = False
    c.data.augment = ("random_flip()", "random_affine(rotate=10)")
    c.data.sampler = "balanced"
    c.model.widths = (8, 16)
    c.model.dropout = 0.2
    c.train.batch_size = 16
    c.train.num_steps = 48
    c.train.log_every_steps = 2
    c.train.eval_every_epochs = 0.25
    c.train.checkpoint_every_minutes = 0.0
    c.train.ema_decay = 0.9
    c.eval.batch_size = 48
    c.eval.bootstrap_samples = 50
    if arg is not None:
        c.vectorize = ("seed",)
    return c.lock()
"""

RUN = """
import sys, time
sys.path.insert(0, {root!r})
from medjax.data import imbalance
index_dataset = imbalance.index_dataset

class Slow:
    def __init__(self, stream): self.stream = stream
    def __iter__(self): return self
    def __next__(self):
        time.sleep(0.03)
        return next(self.stream)
    def get_state(self): return self.stream.get_state()
    def set_state(self, state): self.stream.set_state(state)

imbalance.index_dataset = lambda *a, **k: [Slow(iter(index_dataset(*a, **k)))][0]
from medjax.configs import load_config
from medjax.train.loop import train_and_evaluate_runs
exp, workdirs = sys.argv[1], sys.argv[2:]
specs = [exp] if len(workdirs) == 1 else [f"{{exp}}:{{i}}" for i in range(len(workdirs))]
train_and_evaluate_runs([load_config(s) for s in specs], workdirs)
"""


def final_state(workdir):
    from medjax.train.checkpoint import Checkpoints

    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"), 2, "auc", "max")
    state = ckpts.saved_state(ckpts.latest_step())
    ckpts.close()
    return jax.tree.leaves(state)


def rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        out = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in out]


def same(a, b) -> bool:
    with open(os.path.join(a, "results.json")) as fa, open(os.path.join(b, "results.json")) as fb:
        results = json.load(fa) == json.load(fb)
    leaves = all(np.array_equal(x, y) for x, y in zip(final_state(a), final_state(b), strict=True))
    return results and leaves and rows(a) == rows(b)


def start(experiment, workdirs):
    return subprocess.Popen(
        [sys.executable, "-c", RUN.format(root=ROOT), experiment, *workdirs],
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def training_started(workdir, since: float) -> bool:
    """Whether this process has trained and logged a step (it then records its time)."""
    path = os.path.join(workdir, "timing.json")
    return os.path.exists(path) and os.path.getmtime(path) > since


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--stacked", action="store_true", help="two seeds in one program")
    p.add_argument("--seed", type=int, default=0, help="of the kill times")
    args = p.parse_args()
    rng = random.Random(args.seed)
    base = tempfile.mkdtemp(prefix="kill_resume_")
    experiment = os.path.join(base, "tiny.py")
    with open(experiment, "w") as f:
        f.write(EXPERIMENT)
    k = 2 if args.stacked else 1
    reference = [os.path.join(base, f"reference{i}") for i in range(k)]
    killed = [os.path.join(base, f"killed{i}") for i in range(k)]
    for i in range(k):  # each seed alone: what the stacked runs must equal (on the CPU)
        assert start(experiment + (f":{i}" if k > 1 else ""), [reference[i]]).wait() == 0
    kills = 0
    while True:
        started, proc = time.time(), start(experiment, killed)
        while proc.poll() is None and not training_started(killed[0], started):
            time.sleep(0.01)
        if proc.poll() is None and kills < args.kills:
            time.sleep(rng.uniform(0, 1.5))
        if proc.poll() is not None:
            break
        if kills == args.kills:
            proc.wait()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        steps = sorted(
            int(e) for e in os.listdir(os.path.join(killed[0], "checkpoints")) if e.isdigit()
        )
        print(f"kill {kills}: newest checkpoint {steps[-1] if steps else None}", flush=True)
    assert proc.returncode == 0, f"the last run failed with status {proc.returncode}"
    ok = all(same(r, c) for r, c in zip(reference, killed, strict=True))
    print(f"{kills} kills; final parameters, logged rows and results identical: {ok}")
    shutil.rmtree(base)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
