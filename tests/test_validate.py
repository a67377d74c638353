"""Every config key is checked before any data is read, in one place, with one message naming
the key; and the builder that run, sweep, bench and preview share gives them one program."""

import re
import types

import pytest

from medjax import bench
from medjax.configs import apply_overrides, get_base_config, load_config
from medjax.errors import ConfigError
from medjax.train import validate
from medjax.train.experiment import build_experiment, synthetic_data
from medjax.train.loop import train_and_evaluate

from .conftest import tiny_config

# One value each rule must refuse; every rule is listed, so a new rule needs a case here.
BAD = {
    "data.image_size": 0,
    "data.channels": 0,
    "data.max_pixels": 0,
    "data.max_examples_per_split": -1,
    "data.bit_depth": "12",
    "data.range_check": "maybe",
    "data.fit": "stretch",
    "data.on_error": "ignore",
    "model.dropout": 1.0,
    "model.stochastic_depth": -0.1,
    "model.width_multiplier": 0.0,
    "model.conv": "cudnn",
    "model.pretrained_source": "timm",
    "optimizer.learning_rate": 0.0,
    "optimizer.warmup_epochs": -1.0,
    "optimizer.weight_decay": -1e-4,
    "optimizer.momentum": 2.0,
    "optimizer.grad_clip_norm": -1.0,
    "optimizer.head_learning_rate": -0.1,
    "loss.label_smoothing": 1.0,
    "loss.effective_beta": 1.0,
    "loss.focal_gamma": -1.0,
    "loss.class_weights": "inverse",
    "train.batch_size": 0,
    "train.num_epochs": -1.0,
    "train.num_steps": -1,
    "train.log_every_steps": 0,
    "train.eval_every_epochs": 0.0,
    "train.keep_checkpoints": 0,
    "train.checkpoint_every_minutes": -1.0,
    "train.ema_decay": 1.0,
    "train.select_metric": "loss",
    "train.select_mode": "best",
    "train.precise_bn": "yes",
    "train.precise_bn_images": 0,
    "train.grad_accum_steps": 0,
    "sharding.strategy": "zero3",
    "eval.gap_margin": -0.1,
    "eval.decision_margin": -0.1,
    "eval.batch_size": 0,
    "eval.bootstrap_samples": -1,
    "eval.ece_bins": 1,
    "eval.operating_point": "max_f1",
    "eval.target_sensitivity": 0.0,
}


def test_every_rule_has_a_bad_value_here():
    assert set(BAD) == set(validate.RULES)


@pytest.mark.parametrize("key", sorted(BAD))
def test_a_bad_value_is_refused_naming_its_key(key):
    config = get_base_config()
    section, field = key.split(".")
    config[section][field] = BAD[key]
    with pytest.raises(ConfigError, match=f"config.{key}="):
        validate.validate(config)


@pytest.mark.parametrize(
    "override, message",
    [
        (("model.widths", "abc"), r"config.model.widths=\('abc',\) must be a tuple of int"),
        (("model.widths", "(8, 'x')"), "config.model.widths"),
        (("data.split_fractions", "('a', 'b', 'c')"), "config.data.split_fractions"),
        (("model.pool", "maxx"), "config.model.pool must be 'max' or 'avg'"),
        (("model.members", "('cnn', 'resnet81')"), "unknown model 'resnet81'"),
        (("data.augment", "('random_flip(axis=3)',)"), "random_flip"),
        (("vectorize", "('model.name',)"), "cannot be vectorized"),
    ],
)
def test_keys_the_models_ops_and_vectorize_own_are_checked_before_data(override, message):
    config = get_base_config()
    if override[0] == "model.members":
        config.model.name = "ensemble"
    apply_overrides(config, [override])
    with pytest.raises(ConfigError, match=message):
        validate.validate(config)


def test_a_bad_key_fails_before_any_file_is_read(tmp_path):
    config = tiny_config(
        **{"data.source": "image_folder", "data.path": str(tmp_path / "none"), "model.dropout": 2}
    )
    with pytest.raises(ConfigError, match="config.model.dropout=2"):
        train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_bench_times_the_program_a_run_trains_with(tmp_path, uncached_compilation):
    """`bench --config FILE` compiles the very train step a run of FILE trains with: only
    the data are random."""
    path = tmp_path / "experiment.py"
    path.write_text(EXPERIMENT)
    run = build_experiment([load_config(str(path))])
    args = types.SimpleNamespace(
        config=str(path), train_augment=None, model_arg=[], **dict.fromkeys(bench.FLAGS)
    )
    config = bench.bench_config(args)
    timed = build_experiment([config], synthetic_data(run.data.dataset.image_shape, 2, 16))
    state = run.init_state()
    # The compiled HLO, less where in the Python source each op was traced from.
    source = re.compile(r"metadata=\{[^}]*\}|column=\d+ end_column=\d+")
    program = lambda exp: source.sub("", exp.compile_train_step(state).as_text())
    assert program(timed) == program(run)
    args.model, args.batch_size = "resnet18", 8  # a flag overrides the file
    assert bench.bench_config(args).model.name == "resnet18"


EXPERIMENT = """
from medjax.configs import get_base_config

def get_config(arg=None):
    c = get_base_config()
    c.data.num_train, c.data.num_val, c.data.num_test = 64, 32, 32
    c.data.augment = ("random_flip()", "gaussian_noise()")
    c.data.mix = "mixup()"
    c.model.widths = (8, 16)
    c.train.batch_size = 16
    c.train.ema_decay = 0.9
    return c.lock()
"""
