"""Check a whole config before anything runs: every value has its key's type, every name
resolves, every size is sensible.

A run that would fail on a typo after loading data (or after an hour of training) fails here
instead, and leaves no trace in its workdir. `validate` is the one entry point: the keys of
the data sources, the ops and the models are checked by the code that owns them (the same
checks then guard direct use of that code), the rest here. `check_devices` and `check_data`
are the checks that need the devices or the loaded data.
"""

import ml_collections

from medjax import heads
from medjax.configs import get_base_config
from medjax.data import SOURCES, imbalance, splits
from medjax.data.decode import BIT_DEPTHS, FITS
from medjax.data.dicom import parse_window
from medjax.data.files import ON_ERROR
from medjax.data.values import RANGE_CHECKS
from medjax.ensemble.combine import COMBINERS
from medjax.errors import ConfigError
from medjax.eval.operating_point import METHODS as OPERATING_POINTS
from medjax.models import build_model
from medjax.models.conv import IMPLS
from medjax.ops import build_augment, build_mix, build_preprocess
from medjax.ops.feature_check import check_feature_ops, input_shape
from medjax.ops.per_class import check_mode, parse_per_class
from medjax.segment.checks import check_segment
from medjax.train import sharding, tracking, vectorize
from medjax.train.losses import CLASS_WEIGHTS, LOSSES, MULTI_LABEL_LOSSES
from medjax.train.optimizers import OPTIMIZERS, SCHEDULES
from medjax.train.precise_bn import MODES as PRECISE_BN_MODES
from medjax.weights.load import SOURCES as WEIGHT_SOURCES

SELECT_METRICS = ("auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity")


def _positive(value):
    return None if value > 0 else "must be positive"


def _at_least(low):
    return lambda value: None if value >= low else f"must be at least {low}"


def _fraction(value):  # [0, 1)
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _open_fraction(value):  # (0, 1]
    return None if 0 < value <= 1 else "must be in (0, 1]"


def _one_of(*names):
    return lambda value: None if value in names else f"must be one of {', '.join(names)}"


# key -> check(value) -> None or what is wrong with the value; or (check, a hint for the fix)
RULES = {
    "data.image_size": _positive,
    "data.channels": _positive,
    "data.max_pixels": _positive,
    "data.max_examples_per_split": (_at_least(0), "0 keeps every image"),
    "data.bit_depth": _one_of(*BIT_DEPTHS),
    "data.range_check": _one_of(*RANGE_CHECKS),
    "data.fit": _one_of(*FITS),
    "data.on_error": _one_of(*ON_ERROR),
    "model.dropout": (_fraction, "the fraction of units dropped"),
    "model.stochastic_depth": _fraction,
    "model.width_multiplier": _positive,
    "model.conv": _one_of(*IMPLS),
    "model.pretrained_source": _one_of(*WEIGHT_SOURCES),
    "optimizer.learning_rate": _positive,
    "optimizer.warmup_epochs": _at_least(0),
    "optimizer.weight_decay": _at_least(0),
    "optimizer.momentum": (_fraction, "0.9 is usual"),
    "optimizer.grad_clip_norm": _at_least(0),
    "optimizer.head_learning_rate": _at_least(0),
    "loss.label_smoothing": _fraction,
    "loss.effective_beta": (_fraction, "0.99-0.9999 is usual"),
    "loss.focal_gamma": _at_least(0),
    "loss.class_weights": _one_of(*CLASS_WEIGHTS),
    "train.batch_size": _positive,
    "train.num_epochs": _at_least(0),
    "train.num_steps": (_at_least(0), "0 means num_epochs decides"),
    "train.log_every_steps": _positive,
    "train.eval_every_epochs": _positive,
    "train.keep_checkpoints": _positive,
    "train.checkpoint_every_minutes": (_at_least(0), "0 saves at every evaluation"),
    "train.ema_decay": (_fraction, "0 disables it; 0.99-0.999 is usual"),
    "train.select_metric": _one_of(*SELECT_METRICS),
    "train.select_mode": _one_of("max", "min"),
    "train.precise_bn": _one_of(*PRECISE_BN_MODES),
    "train.precise_bn_images": _positive,
    "train.grad_accum_steps": (_positive, "1 updates from each batch at once"),
    "sharding.strategy": _one_of(*sharding.STRATEGIES),
    "eval.gap_margin": _at_least(0),
    "eval.decision_margin": _at_least(0),
    "eval.batch_size": _positive,
    "eval.bootstrap_samples": _at_least(0),
    "eval.ece_bins": (_at_least(2), "15 is usual"),
    "eval.operating_point": _one_of(*OPERATING_POINTS),
    "eval.target_sensitivity": (_open_fraction, "the validation sensitivity to reach, e.g. 0.9"),
}


def _types(config, defaults, prefix="") -> None:
    """Every value of the type of its key's default (an int where a float is expected is
    fine), tuples element by element: `--config.model.widths=abc` fails here, not in JAX."""
    for key, default in defaults.items():
        name, value = prefix + key, config[key]
        if isinstance(default, ml_collections.ConfigDict):
            _types(value, default, name + ".")
        elif not _same_type(value, default):
            raise ConfigError(
                f"config.{name}={value!r} must be a {_type_name(default)} like {default!r}"
            )


def _same_type(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, tuple | list):
        kinds = {type(d) for d in default}
        return isinstance(value, tuple | list) and all(
            not kinds or _same_type(v, default[0]) for v in value
        )
    return isinstance(value, type(default))


def _type_name(default) -> str:
    if isinstance(default, tuple | list) and default:
        return f"tuple of {type(default[0]).__name__}"
    return type(default).__name__


def validate(config) -> None:
    """Raise a ConfigError naming the first key whose value cannot work."""
    if config.ensemble.members:  # not one network: sweeps, evaluate etc. must not train it
        raise ConfigError(
            "this config is an output-level ensemble (config.ensemble.members): run it with "
            "python -m medjax.run, which trains its members and combines them"
        )
    _types(config, get_base_config())
    for key, rule in RULES.items():
        rule, hint = rule if isinstance(rule, tuple) else (rule, "")
        section, field = key.split(".")
        problem = rule(config[section][field])
        if problem:
            hint = f" ({hint})" if hint else ""
            raise ConfigError(f"config.{key}={config[section][field]!r} {problem}{hint}")
    _check_data_keys(config.data)
    _check_model_keys(config)
    heads.check_config(config)
    check_segment(config)
    LOSSES.get(config.loss.name)
    OPTIMIZERS.get(config.optimizer.name)
    SCHEDULES.get(config.optimizer.schedule)
    vectorize.check_keys(config.vectorize)
    _check_mlflow_uri(config.log.mlflow_uri)
    COMBINERS.get(config.ensemble.method)
    sharding.parse_rules(config.sharding.rules)
    if config.train.batch_size % config.train.grad_accum_steps:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} is not a multiple of "
            f"config.train.grad_accum_steps={config.train.grad_accum_steps}; micro-batches "
            f"must be equal"
        )
    if not config.train.num_steps and config.train.num_epochs <= 0:
        raise ConfigError(
            "set config.train.num_epochs or config.train.num_steps to a positive value"
        )


def _check_data_keys(data) -> None:
    SOURCES.get(data.source)
    parse_window(data.dicom_window)
    if data.slice_axis not in (-1, 0, 1, 2):
        raise ConfigError(
            f"config.data.slice_axis must be -1 (whole volumes or 2D files) or a volume axis "
            f"0, 1 or 2, not {data.slice_axis}"
        )
    if data.depth < 0 or (data.depth > 0 and data.slice_axis >= 0):
        raise ConfigError(
            f"config.data.depth={data.depth} with slice_axis={data.slice_axis}: set depth > 0 "
            f"for volumes or slice_axis >= 0 for 2D slices of them, not both (depth >= 0)"
        )
    splits.check_config(data)
    imbalance.check_sampler(data.sampler)
    imbalance.parse_oversample(data.oversample)
    check_feature_ops(build_preprocess(data.preprocess), input_shape(data))
    build_augment(data.augment)
    parse_per_class(data.augment_per_class)
    check_mode(data.augment_per_class_mode)
    build_mix(data.mix)


def _check_mlflow_uri(uri: str) -> None:
    if not uri:
        return
    if not uri.startswith("file:") and "://" not in uri:
        raise ConfigError(
            f"config.log.mlflow_uri={uri!r} is not a tracking URI; write file:/path/mlruns, "
            f"sqlite:///path/mlflow.db or http://host:port, or leave it empty"
        )
    tracking.require_mlflow()  # before anything is written, not after training


def _check_model_keys(config) -> None:
    """The model's own keys, checked by building it (no weights are made) at a size every
    model takes: the input size is checked once the data, preprocessed, has one."""
    build_model(config.model, num_classes=2, image_size=512)
    pretrained, members = tuple(config.model.member_pretrained), tuple(config.model.members)
    if pretrained and (config.model.name != "ensemble" or len(pretrained) != len(members)):
        raise ConfigError(
            f"config.model.member_pretrained has {len(pretrained)} entries for "
            f"{len(members)} members of model {config.model.name!r}; it takes one weights file "
            f"(or '') per config.model.members entry of an 'ensemble' model"
        )


def check_devices(config, mesh) -> None:
    sharding.check_batch_size("config.train.batch_size", config.train.batch_size, mesh)
    accum = config.train.grad_accum_steps
    if accum > 1:
        sharding.check_batch_size(
            f"config.train.batch_size / grad_accum_steps ({config.train.batch_size} / {accum})",
            config.train.batch_size // accum,
            mesh,
        )
    sharding.check_batch_size("config.eval.batch_size", config.eval.batch_size, mesh)


def check_data(config, class_names: list, num_train: int, multi_label: bool = False) -> None:
    """The keys whose valid values depend on the loaded data."""
    check_task(config, len(class_names), multi_label)
    if not 0 <= config.eval.positive_class < len(class_names):
        raise ConfigError(
            f"config.eval.positive_class={config.eval.positive_class} is not one of "
            f"the {len(class_names)} classes {class_names}"
        )
    if config.train.batch_size > num_train:
        raise ConfigError(
            f"config.train.batch_size={config.train.batch_size} exceeds the {num_train} "
            f"training images; lower it"
        )


def check_task(config, num_labels: int, multi_label: bool) -> None:
    """Multi-label data (several findings per image) and single-label data each take their own
    loss, and the class-balancing methods that draw or make images by class take only one
    class per image."""
    multi_loss = config.loss.name in MULTI_LABEL_LOSSES
    if multi_label and not multi_loss:
        raise ConfigError(
            f"the data is multi-label ({num_labels} findings per image, each present or absent); "
            f"set config.loss.name='sigmoid_bce' (one sigmoid per finding), not "
            f"{config.loss.name!r}"
        )
    if multi_loss and not multi_label:
        raise ConfigError(
            f"config.loss.name={config.loss.name!r} is for multi-label data, but this data has "
            f"one class per image; use 'softmax_xent' or 'focal'"
        )
    if multi_label and (config.data.sampler != "shuffle" or config.data.oversample):
        raise ConfigError(
            "multi-label data has no single class per image to balance by: use "
            "config.data.sampler='shuffle' and config.data.oversample='', and "
            "config.loss.class_weights='balanced' (per-finding positive weights) instead"
        )
