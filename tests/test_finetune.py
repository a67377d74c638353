"""Freezing by parameter path, the head's own learning rate, frozen batch statistics."""

import subprocess

import jax
import numpy as np
import pytest

from medjax.errors import ConfigError, Interrupted
from medjax.train.loop import train_and_evaluate
from medjax.weights import read_torch_file

from .conftest import ROOT, interrupt_at, tiny_config
from .test_train import _final_params


def _initial(config, tmp_path):
    """The parameters at step 0: a zero-step-learning-rate run keeps them."""
    with pytest.raises(Interrupted):
        train_and_evaluate(config, str(tmp_path), hooks=[interrupt_at(1)])
    return _final_params(str(tmp_path), config)[1]


def test_freezing_everything_but_the_head_trains_only_the_head(tmp_path):
    config = tiny_config(**{"model.freeze": ("^(?!head)",), "train.num_steps": 6})
    train_and_evaluate(config, str(tmp_path / "run"))
    _, final = _final_params(str(tmp_path / "run"), config)
    start = _initial(tiny_config(**{"model.freeze": (".",), "train.num_steps": 6}), tmp_path / "0")
    for part in ("params", "batch_stats"):
        flat_a = jax.tree_util.tree_flatten_with_path(start[part])[0]
        flat_b = dict(jax.tree_util.tree_flatten_with_path(final[part])[0])
        for path, a in flat_a:
            b = flat_b[path]
            if str(path[0].key) == "head":
                assert not np.allclose(a, b), path
            else:
                np.testing.assert_array_equal(a, b, err_msg=str(path))


def test_a_freeze_pattern_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="matches no parameter"):
        train_and_evaluate(tiny_config(**{"model.freeze": ("^backbone",)}), str(tmp_path))
    assert not (tmp_path / "config.json").exists()


def test_head_learning_rate_runs(tmp_path):
    config = tiny_config(**{"optimizer.head_learning_rate": 0.01, "train.num_steps": 4})
    results = train_and_evaluate(config, str(tmp_path))
    assert 0 <= results["test"]["auc"] <= 1


def test_training_starts_from_torchvision_weights(torch_python, tmp_path, capsys):
    subprocess.run(
        [torch_python, str(ROOT / "tools" / "torch_reference.py"), "--model", "resnet18"]
        + ["--num-classes", "1000", "--image-size", "64", "--out", str(tmp_path / "tv")],
        check=True,
    )
    weights = str(tmp_path / "tv" / "weights.pth")
    config = tiny_config(
        **{
            "data.image_size": 64,
            "model.name": "resnet18",
            "model.stem": "imagenet",
            "model.pretrained": weights,
            "model.freeze": ("^(?!head)",),
            "train.num_steps": 2,
            "train.eval_every_epochs": 1.0,
        }
    )
    train_and_evaluate(config, str(tmp_path / "run"))
    out = capsys.readouterr().out
    assert "head re-initialised" in out and "summed" in out  # 2 classes; gray into RGB stem
    _, final = _final_params(str(tmp_path / "run"), config)
    stem = read_torch_file(weights)["conv1.weight"].sum(1)  # (O, I=3, H, W) -> gray
    np.testing.assert_allclose(
        final["params"]["stem_conv"]["kernel"][:, :, 0, :], stem.transpose(1, 2, 0), atol=1e-6
    )
