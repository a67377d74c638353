"""Parameter sharding (FSDP and rules), gradient accumulation, and checkpoints restored on
another device count and layout. Several devices are simulated on the CPU in subprocesses
(XLA_FLAGS=--xla_force_host_platform_device_count); this process has one device."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from medjax.errors import ConfigError
from medjax.train import sharding
from medjax.train.checkpoint import Checkpoints
from medjax.train.experiment import build_experiment
from medjax.train.loop import train_and_evaluate
from tests.conftest import ROOT, tiny_config

pytestmark = pytest.mark.slow

FSDP8 = {"mesh.fsdp": 8, "sharding.strategy": "fsdp"}
# Batch norm, augmentation and EMA: the parts whose statistics cross devices.
BASE = {
    "data.augment": ("random_flip()", "random_affine(rotate=10)"),
    "train.ema_decay": 0.9,
    "train.checkpoint_every_minutes": 0.0,
}

SCRIPT = """
import json, shutil, sys
sys.path.insert(0, {root!r})
import jax
from medjax.errors import Interrupted
from medjax.train import sharding
from medjax.train.experiment import build_experiment
from medjax.train.loop import train_and_evaluate
from tests.conftest import interrupt_at, tiny_config
from tests.test_scale_out import BASE, losses

task, out, changes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = tiny_config(**BASE, **changes)
report = {{"devices": jax.device_count()}}
if task == "interrupt":
    try:
        train_and_evaluate(config, out, hooks=[interrupt_at(6)])
    except Interrupted:
        pass
elif task == "layout":
    state = build_experiment([config]).init_state()
    held = lambda tree: sorted(sharding.bytes_per_device(tree).values())
    total = lambda tree: sum(x.nbytes for x in jax.tree.leaves(tree))
    report.update(params=held(state.params), opt_state=held(state.opt_state),
                  params_total=total(state.params), opt_total=total(state.opt_state),
                  specs={{"params/" + sharding.leaf_name(p): list(x.sharding.spec) for p, x in
                          jax.tree_util.tree_leaves_with_path(state.params)}})
else:
    train_and_evaluate(config, out)
    report["loss"] = losses(out)
print(json.dumps(report))
"""


def losses(workdir) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [row["loss"] for row in map(json.loads, f) if "loss" in row]


def on_devices(n: int, task: str, workdir, changes: dict) -> dict:
    env = dict(
        os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT.format(root=str(ROOT)),
            task,
            str(workdir),
            json.dumps(changes),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def final_params(workdir):
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"), 2, "auc", "max")
    try:
        state = ckpts.saved_state(ckpts.latest_step())
    finally:
        ckpts.close()
    return state["params"], state["opt_state"]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The uninterrupted run on this process's one device, replicated: the reference."""
    assert jax.device_count() == 1
    workdir = tmp_path_factory.mktemp("one") / "run"
    results = train_and_evaluate(tiny_config(**BASE), str(workdir))
    return workdir, results


def test_fsdp_over_8_devices_gives_the_loss_curve_of_one_device(one_device, tmp_path):
    reference, results = one_device
    eight = on_devices(8, "train", tmp_path / "fsdp8", FSDP8)
    assert eight["devices"] == 8
    # float32; the sums of 8 shards round differently from one device's
    np.testing.assert_allclose(eight["loss"], losses(reference), rtol=1e-5, atol=1e-6)
    fsdp = json.loads((tmp_path / "fsdp8" / "results.json").read_text())
    assert fsdp["test"]["auc"] == pytest.approx(results["test"]["auc"], abs=1e-3)


def test_fsdp_leaves_each_device_an_eighth_of_params_and_optimizer_state(tmp_path):
    # widths 8 and 16 divide by 8 (kernels split on their output channels); widths 6 and 10
    # divide nothing: those leaves stay replicated and the run still works.
    even = on_devices(8, "layout", tmp_path, {**FSDP8, "model.widths": (8, 16)})
    for part, total in (("params", even["params_total"]), ("opt_state", even["opt_total"])):
        held = even[part]
        assert len(held) == 1 or max(held) == min(held)  # every device the same share
        # a few biases of odd size (the 2-class head's) stay whole on every device
        assert total / 8 <= max(held) <= total / 8 * 1.1, (part, held, total)
    assert even["specs"]["params/conv0_0/kernel"] == [None, None, None, "fsdp"]
    odd = on_devices(8, "train", tmp_path / "odd", {**FSDP8, "model.widths": (6, 10)})
    assert np.isfinite(odd["loss"]).all()


def test_sharding_rules_lay_out_the_leaves_they_match(tmp_path):
    rules = ("conv1_.*kernel=None,None,fsdp,None", "head/kernel=replicated")
    laid = on_devices(8, "layout", tmp_path, {"mesh.fsdp": 8, "sharding.rules": rules})
    specs = laid["specs"]
    assert specs["params/conv1_0/kernel"] == [None, None, "fsdp", None]
    assert specs["params/head/kernel"] == []
    assert specs["params/conv0_0/kernel"] == []  # strategy: replicated


def test_a_checkpoint_of_8_fsdp_devices_resumes_on_1_and_on_4(one_device, tmp_path):
    reference, _ = one_device
    saved = tmp_path / "saved8"
    on_devices(8, "interrupt", saved, FSDP8)
    for n, mesh in ((1, {}), (4, {"mesh.fsdp": 2, "sharding.strategy": "fsdp"})):
        workdir = tmp_path / f"resumed{n}"
        shutil.copytree(saved, workdir)
        if n == 1:
            train_and_evaluate(tiny_config(**BASE, **mesh), str(workdir))
        else:
            on_devices(n, "train", workdir, mesh)
        got, want = final_params(workdir), final_params(reference)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)
        np.testing.assert_allclose(losses(workdir), losses(reference), rtol=1e-5, atol=1e-6)


def _one_update(accumulate: int, **changes):
    config = tiny_config(
        **{
            "model.norm": "group",
            "train.grad_accum_steps": accumulate,
            "loss.class_weights": "balanced",
            "data.augment": ("random_flip()",),
            **changes,
        }
    )
    exp = build_experiment([config])
    state = exp.init_state()
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, *exp.data.dataset.image_shape)).astype(np.float32)
    labels = np.array([0] * 12 + [1] * 4, np.int32)  # unequal weights per micro-batch
    state, metrics = exp.train_step(state, images, labels)
    return jax.device_get(state.params), jax.device_get(metrics)


def test_gradient_accumulation_makes_the_update_of_one_big_batch():
    big, big_metrics = _one_update(1)
    micro, micro_metrics = _one_update(4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), micro, big)
    assert micro_metrics["loss"] == pytest.approx(big_metrics["loss"], rel=1e-5)
    assert micro_metrics["accuracy"] == big_metrics["accuracy"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mesh.fsdp": 3}, "does not divide the 1 devices"),
        ({"mesh.data": 2}, "= 2 devices, but this run sees 1"),
        ({"sharding.rules": ("nothing_like_this=fsdp",)}, "match no leaf"),
        ({"sharding.rules": ("head/kernel",)}, "write REGEX=SPEC"),
        ({"sharding.rules": ("head/kernel=None,None,None,fsdp",)}, "does not fit a leaf"),
        ({"sharding.strategy": "zero3"}, "must be one of replicated, fsdp"),
        ({"train.grad_accum_steps": 3}, "not a multiple of config.train.grad_accum_steps"),
    ],
)
def test_a_layout_that_cannot_work_is_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_experiment([tiny_config(**changes)])


def test_batch_rows_of_a_process_are_its_devices_rows():
    mesh = sharding.make_mesh()
    rows = sharding.process_rows(sharding.data_sharding(mesh), (16, 4))
    assert rows == slice(0, 16)  # one process holds the whole batch
