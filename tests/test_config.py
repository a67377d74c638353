import pytest

from medjax.configs import apply_overrides, load_config, parse_arg
from medjax.errors import ConfigError
from medjax.ops import AUGMENT_OPS, build_augment, parse_op

from .conftest import ROOT

EXPERIMENTS = sorted((ROOT / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_loads_locked_with_and_without_runlocal(path):
    for spec in (str(path), f"{path}:runlocal"):
        config = load_config(spec)
        assert config.is_locked
        with pytest.raises(AttributeError):
            config.not_a_key = 1
    assert "Command:" in path.read_text() and "Result" in path.read_text()


def test_runlocal_shrinks_the_run():
    full = load_config(str(ROOT / "experiments/phantom_cnn.py"))
    small = load_config(str(ROOT / "experiments/phantom_cnn.py:runlocal"))
    assert small.train.num_steps and small.train.num_steps < 50
    assert small.data.num_train < full.data.num_train


def test_overrides_convert_to_the_field_type():
    c = load_config(str(ROOT / "experiments/phantom_cnn.py"))
    apply_overrides(
        c,
        [
            ("optimizer.name", "sgd"),
            ("optimizer.learning_rate", "1"),
            ("train.batch_size", "16"),
            ("model.widths", "(4, 8)"),
            ("data.augment", "random_flip()"),
        ],
    )
    assert c.optimizer.name == "sgd" and c.optimizer.learning_rate == 1.0
    assert c.train.batch_size == 16 and c.model.widths == (4, 8)
    assert c.data.augment == ("random_flip()",)


def test_typo_in_override_names_the_closest_key():
    c = load_config(str(ROOT / "experiments/phantom_cnn.py"))
    with pytest.raises(ConfigError, match="optimizer.learning_rate"):
        apply_overrides(c, [("optimizer.learning_rte", "0.1")])


def test_wrong_type_in_override_is_refused():
    c = load_config(str(ROOT / "experiments/phantom_cnn.py"))
    with pytest.raises(ConfigError, match="expected a int"):
        apply_overrides(c, [("train.batch_size", "many")])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("experiments/nope.py:runlocal")


def test_parse_arg():
    a = parse_arg("runlocal,size=64", runlocal=False, size=28)
    assert a.runlocal is True and a.size == 64
    with pytest.raises(ConfigError, match="takes: runlocal"):
        parse_arg("runlcal", runlocal=False)


def test_unknown_op_and_argument_list_valid_ones():
    with pytest.raises(ConfigError, match="random_flip"):
        parse_op("random_flp()", AUGMENT_OPS)
    with pytest.raises(ConfigError, match="Valid arguments: rotate, zoom"):
        parse_op("random_affine(rotation=10)", AUGMENT_OPS)
    with pytest.raises(ConfigError, match="cannot parse"):
        build_augment(["random_affine(rotate=)"])
    with pytest.raises(ConfigError, match="axis must be"):
        build_augment(["random_flip(axis='diagonal')"])


def test_keys_added_since_a_run_was_written_differ_only_when_not_at_their_default():
    """A config.json from a medjax without eval.ece_bins is the same run when the key is at its
    default (it can be re-tested after an upgrade), another one when it is not."""
    from medjax.configs import as_plain, config_diff, get_base_config

    old = as_plain(get_base_config())
    del old["eval"]["ece_bins"]
    new = get_base_config()
    assert config_diff(old, new) == {}
    new.eval.ece_bins = 10
    assert config_diff(old, new) == {"eval.ece_bins": ("(none)", 10)}
    assert config_diff(as_plain(new), old) == {"eval.ece_bins": (10, "(none)")}
