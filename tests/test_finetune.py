"""Fine-tuning through train_and_evaluate: the head's own learning rate scales the head's
updates and nothing else, frozen parameters and their batch-norm statistics stay bit for bit
as they started, and pretrained weights are what training starts from."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.errors import ConfigError
from medjax.models import build_model
from medjax.train.loop import train_and_evaluate
from medjax.weights import load_pretrained

from .conftest import tiny_config
from .test_train import _final_params
from .test_weights import resnet18_state, write_torch_zip

# Plain SGD at a constant rate: one step moves each parameter by exactly -rate * gradient.
SGD = {
    "optimizer.name": "sgd",
    "optimizer.momentum": 0.0,
    "optimizer.learning_rate": 0.01,
    "train.eval_every_epochs": 100.0,  # evaluate the last step only
    "eval.bootstrap_samples": 0,
}


def _train(workdir, **changes):
    """The variables at the end of a tiny SGD run."""
    config = tiny_config(**{**SGD, **changes})
    train_and_evaluate(config, str(workdir))
    return _final_params(str(workdir), config)[1]


def _flat(tree, keep=lambda path: True) -> dict:
    """{'stage1_block0/conv1/kernel': leaf} for the leaves whose path `keep` accepts."""
    flat = {
        "/".join(str(k.key) for k in path): np.asarray(x)
        for path, x in jax.tree_util.tree_leaves_with_path(tree)
    }
    return {k: v for k, v in flat.items() if keep(k)}


def _head(path):
    return path.startswith("head/")


def _body(path):
    return not _head(path)


@pytest.fixture(scope="module")
def initial(tmp_path_factory):
    """The tiny model's variables at step 0: a one-step run with every parameter frozen keeps
    them (test_freezing_... shows that frozen parameters and statistics do not move)."""
    return _train(
        tmp_path_factory.mktemp("initial"), **{"model.freeze": (".",), "train.num_steps": 1}
    )


def test_head_learning_rate_scales_the_head_update_and_only_it(initial, tmp_path):
    # From the same start and batch both runs take the same gradient, so one SGD step moves
    # the head 100 times as far at 100 times the rate, and the body exactly as far.
    plain = _train(tmp_path / "plain", **{"train.num_steps": 1})
    fast = _train(tmp_path / "fast", **{"train.num_steps": 1, "optimizer.head_learning_rate": 1.0})
    start = _flat(initial["params"])
    plain_head, fast_head = _flat(plain["params"], _head), _flat(fast["params"], _head)
    assert plain_head
    for k, moved in plain_head.items():
        step = moved - start[k]
        assert np.abs(step).max() > 1e-5, k
        np.testing.assert_allclose(fast_head[k] - start[k], 100 * step, rtol=1e-3, err_msg=k)
    plain_body = _flat(plain["params"], _body)
    chex.assert_trees_all_equal(_flat(fast["params"], _body), plain_body)
    assert all(not np.array_equal(x, start[k]) for k, x in plain_body.items())
    chex.assert_trees_all_equal(fast["batch_stats"], plain["batch_stats"])


def test_freezing_everything_but_the_head_trains_only_the_head(initial, tmp_path):
    final = _train(tmp_path, **{"model.freeze": ("^(?!head)",), "train.num_steps": 3})
    # The start's statistics are batch norm's fresh ones (mean 0, variance 1): not moved.
    assert all(set(np.unique(x)) <= {0.0, 1.0} for x in jax.tree.leaves(initial["batch_stats"]))
    chex.assert_trees_all_equal(final["batch_stats"], initial["batch_stats"])
    start = _flat(initial["params"])
    chex.assert_trees_all_equal(_flat(final["params"], _body), _flat(initial["params"], _body))
    for k, x in _flat(final["params"], _head).items():
        assert np.abs(x - start[k]).max() > 1e-4, k


def test_a_freeze_pattern_that_matches_nothing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="matches no parameter"):
        train_and_evaluate(tiny_config(**{"model.freeze": ("^backbone",)}), str(tmp_path))
    assert not (tmp_path / "config.json").exists()


FROZEN = ("^stem", "^stage1_")


def test_training_starts_from_pretrained_weights_and_keeps_frozen_ones(tmp_path, capsys):
    sd = resnet18_state(num_classes=2)  # a 2-class head, so the head is loaded too
    weights = write_torch_zip(tmp_path / "r18.pth", sd)
    config = tiny_config(
        **{
            **SGD,
            "optimizer.learning_rate": 1e-3,
            "data.image_size": 32,
            "model.name": "resnet18",
            "model.stem": "imagenet",
            "model.pretrained": weights,
            "model.freeze": FROZEN,
            "train.num_steps": 2,
        }
    )
    train_and_evaluate(config, str(tmp_path / "run"))
    assert "summed" in capsys.readouterr().out  # gray input: the RGB stem kernel summed
    final = _final_params(str(tmp_path / "run"), config)[1]
    model = build_model(config.model, 2, 32)
    x = jnp.zeros((1, 32, 32, 1))
    like = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    loaded = load_pretrained(weights, "resnet18", like)[0]
    # What the loader placed, checked on two tensors straight from the file.
    np.testing.assert_array_equal(loaded["params"]["head"]["kernel"], sd["fc.weight"].T)
    stem = sd["conv1.weight"].sum(1).transpose(1, 2, 0)  # (O, 3, H, W) -> (H, W, O), gray
    np.testing.assert_allclose(loaded["params"]["stem_conv"]["kernel"][:, :, 0], stem, rtol=1e-6)

    def frozen(path):
        return any(re.search(p, path) for p in FROZEN)

    def trained(path):
        return not frozen(path)

    for part in ("params", "batch_stats"):
        assert _flat(loaded[part], frozen) and _flat(loaded[part], trained)
        chex.assert_trees_all_equal(_flat(final[part], frozen), _flat(loaded[part], frozen))
        start = _flat(loaded[part])
        for k, x in _flat(final[part], trained).items():
            assert not np.array_equal(x, start[k]), k
    # Two small steps (lr 1e-3) moved a trained weight by at most 7.5e-4; had training started
    # from the model's own initialisation instead of the file's weights, every tensor would be
    # 0.1 or more off somewhere (measured).
    start = _flat(loaded["params"])
    for k, x in _flat(final["params"], trained).items():
        np.testing.assert_allclose(x, start[k], atol=1e-2, rtol=0, err_msg=k)
