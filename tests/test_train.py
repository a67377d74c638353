import dataclasses
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from medjax.errors import Interrupted, TrainingError, WorkdirError
from medjax.train.checkpoint import Checkpoints
from medjax.train.loop import train_and_evaluate
from medjax.train.steps import TrainState

from .conftest import ROOT, interrupt_at, tiny_config


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_end_to_end_outputs(tmp_path):
    results = train_and_evaluate(tiny_config(), str(tmp_path))
    for name in (
        "config.json",
        "metrics.jsonl",
        "results.json",
        "run_card.json",
        "data_summary.json",
    ):
        assert (tmp_path / name).exists(), name
    test = results["test"]
    assert test["num_examples"] == 64  # the padded last eval batch is masked out
    for key in (
        "accuracy",
        "auc",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "f1",
        "confusion_matrix",
        "ci95",
    ):
        assert key in test
    card = json.loads((tmp_path / "run_card.json").read_text())
    assert card["hardware"]["device_count"] >= 1 and card["software"]["jax"]
    assert card["timings"]["train_images_per_s"] > 0 and card["timings"]["compile_s"] > 0
    lines = _read_jsonl(tmp_path / "metrics.jsonl")
    train_lines = [x for x in lines if "loss" in x]
    assert [x["step"] for x in train_lines] == [2, 4, 6, 8, 10, 12]
    assert {"learning_rate", "images_per_s"} <= set(train_lines[0])
    assert results["selected_step"] in {x["step"] for x in lines if x.get("split") == "val"}


def _final_params(workdir, config):
    ckpts = Checkpoints(os.path.join(workdir, "checkpoints"), 2, "auc", "max")
    step = ckpts.latest_step()
    state = ckpts.saved_state(step)
    ckpts.close()
    return step, state


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    config = tiny_config(
        **{
            "data.augment": ("random_flip()", "random_affine(rotate=10)", "speckle_noise()"),
            "data.mix": "cutmix(p=0.5)",
            "model.dropout": 0.3,
            "train.ema_decay": 0.9,
        }
    )
    train_and_evaluate(config, str(tmp_path / "straight"))
    with pytest.raises(Interrupted, match="SIGINT at step 5: checkpoint saved"):
        train_and_evaluate(config, str(tmp_path / "resumed"), hooks=[interrupt_at(5)])
    train_and_evaluate(config, str(tmp_path / "resumed"))
    step_a, a = _final_params(str(tmp_path / "straight"), config)
    step_b, b = _final_params(str(tmp_path / "resumed"), config)
    assert step_a == step_b == 12
    chex.assert_trees_all_equal(a, b)
    card = json.loads((tmp_path / "resumed" / "run_card.json").read_text())
    assert card["resumed_from_step"] == 5


def test_fitted_preprocessing_resize_mixup_ema_and_tta_run_end_to_end(tmp_path):
    """That these options run together and record what they fitted; what EMA and flip TTA
    compute is checked in tests/test_ema_tta.py."""
    config = tiny_config(
        **{
            "data.preprocess": (
                "value_range(min=0.0, max=1.0)",
                "zscore(scope='dataset')",
                "resize(size=32)",
            ),
            "data.augment": ("elastic(alpha=4.0, sigma=3.0)", "bias_field()", "cutout()"),
            "data.mix": "mixup(alpha=0.4)",
            "train.ema_decay": 0.95,
            "eval.flip_tta": True,
        }
    )
    results = train_and_evaluate(config, str(tmp_path))
    assert 0 <= results["test"]["auc"] <= 1
    summary = json.loads((tmp_path / "data_summary.json").read_text())
    ((op, stats),) = summary["fitted_on_train"].items()
    assert "zscore" in op and set(stats) == {"mean", "std"}
    card = json.loads((tmp_path / "run_card.json").read_text())
    assert card["data"]["image_shape"] == [32, 32, 1]


def test_workdir_with_another_config_is_refused_unless_overwrite(tmp_path):
    train_and_evaluate(tiny_config(), str(tmp_path))
    other = tiny_config(**{"optimizer.learning_rate": 0.01})
    with pytest.raises(WorkdirError, match="optimizer.learning_rate: 0.001 -> 0.01.*--overwrite"):
        train_and_evaluate(other, str(tmp_path))
    train_and_evaluate(other, str(tmp_path), overwrite=True)
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["learning_rate"] == 0.01


def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config(
        **{
            "train.num_steps": 40,
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 1e4,
            "optimizer.momentum": 0.0,
        }
    )
    with pytest.raises(TrainingError, match="last good checkpoint.*learning_rate"):
        train_and_evaluate(config, str(tmp_path))
    ckpts = Checkpoints(str(tmp_path / "checkpoints"), 2, "auc", "max")
    for step in ckpts.manager.all_steps():
        state = ckpts.saved_state(step)
        chex.assert_tree_all_finite(state["params"])
    ckpts.close()


SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.conftest import tiny_config
from medjax.train.loop import train_and_evaluate
import jax
config = tiny_config(**{{"train.num_steps": 20, "train.eval_every_epochs": 10.0,
                        "data.augment": ("random_flip()",), "train.precise_bn": "on"}})
results = train_and_evaluate(config, sys.argv[1])
lines = [json.loads(x) for x in open(sys.argv[1] + "/metrics.jsonl")]
print(json.dumps({{"devices": jax.device_count(), "loss": [x["loss"] for x in lines if "loss" in x],
                   "val_auc": results["val"]["auc"]}}))
"""


def _run_on_devices(tmp_path, n):
    env = dict(
        os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu"
    )
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=str(ROOT)), str(tmp_path / f"dev{n}")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one_device(tmp_path):
    one, eight = _run_on_devices(tmp_path, 1), _run_on_devices(tmp_path, 8)
    assert one["devices"] == 1 and eight["devices"] == 8
    assert len(one["loss"]) == 5  # steps 4, 8, ..., 20
    np.testing.assert_allclose(eight["loss"], one["loss"], rtol=2e-4, atol=1e-5)
    # precise BN's statistics are reduced over the devices' shares of each batch. Eight devices
    # sum in another order, which may swap a few of the 32 x 32 positive-negative pairs of the
    # 64 validation images (1/1024 of AUC each): two swapped on an Intel Xeon, none on an AMD
    # EPYC; a broken reduction moves it by far more.
    assert eight["val_auc"] == pytest.approx(one["val_auc"], abs=3 / 1024)


def test_best_checkpoint_is_kept_and_found_after_a_restart(tmp_path):
    state = {"w": np.ones(3, np.float32)}
    ckpts = Checkpoints(str(tmp_path), 2, "auc", "max")
    for step, auc in [(1, 0.5), (2, 0.9), (3, 0.6), (4, float("nan")), (5, None)]:
        ckpts.save(step, state, {"i": step}, {} if auc is None else {"auc": auc})
    ckpts.close()
    ckpts = Checkpoints(str(tmp_path), 2, "auc", "max")
    assert ckpts.best_step() == 2 and ckpts.latest_step() == 5
    ckpts.save(6, state, {}, {"auc": 0.1})
    ckpts.save(7, state, {}, {"auc": 0.2})
    assert ckpts.manager.all_steps() == [2, 6, 7] and ckpts.best_step() == 2
    ckpts.close()


def test_checkpoints_from_before_vectorized_hyperparameters_still_restore(tmp_path):
    """TrainState gained `hparams`; checkpoints written without it restore into a state whose
    hparams are empty, and a state that needs them is refused."""
    state = TrainState(
        step=np.int32(3),
        params={"w": np.ones(3, np.float32)},
        batch_stats={},
        opt_state=(),
        rng=np.zeros(2, np.uint32),
        skipped=np.int32(0),
    )
    old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    del old["hparams"]  # what older medjax wrote
    like = jax.tree.map(jax.numpy.asarray, state)
    ckpts = Checkpoints(str(tmp_path), 2, "auc", "max")
    ckpts.save(3, jax.tree.map(jax.numpy.asarray, old), {"i": 3}, {})
    restored, data = ckpts.restore(3, like)
    assert restored.hparams == () and data == {"i": 3} and int(restored.step) == 3
    with pytest.raises(ValueError, match="hparams"):
        ckpts.restore(3, like.replace(hparams={"learning_rate": jax.numpy.float32(0.1)}))
    ckpts.close()


def test_saving_only_the_checkpoints_needed_selects_the_same_one(tmp_path, monkeypatch):
    """An evaluation saves when validation improves (or ties), at the end, and when
    config.train.checkpoint_every_minutes have passed: the same checkpoint is chosen and tested
    as when every evaluation saves."""
    saved, real_save = [], Checkpoints.save

    def counting_save(self, step, *args, **kwargs):
        saved.append(step)
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(Checkpoints, "save", counting_save)
    changes = {"train.num_steps": 24, "seed": 1}
    every = train_and_evaluate(
        tiny_config(**changes, **{"train.checkpoint_every_minutes": 0.0}), str(tmp_path / "every")
    )
    assert saved == list(range(2, 25, 2))
    saved.clear()
    needed = train_and_evaluate(tiny_config(**changes), str(tmp_path / "needed"))
    assert needed == every
    assert needed["selected_step"] in saved and saved[-1] == 24 and len(saved) < 12
