"""Check a whole config before anything runs: every name resolves, every size is sensible.

A run that would fail on a typo after loading data (or after an hour of training) fails here
instead, and leaves no trace in its workdir.
"""

from medjax.data import SOURCES, imbalance, splits, values
from medjax.data.decode import FITS
from medjax.data.dicom import parse_window
from medjax.data.files import ON_ERROR
from medjax.errors import ConfigError
from medjax.models.conv import IMPLS
from medjax.models.layers import ACTIVATIONS, DTYPES, NORMS
from medjax.models.registry import MODELS
from medjax.train.losses import CLASS_WEIGHTS, LOSSES
from medjax.train.optimizers import OPTIMIZERS, SCHEDULES

SELECT_METRICS = ("auc", "accuracy", "balanced_accuracy", "f1", "sensitivity", "specificity")


def _positive(name, value):
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {value}")


def _check_files(data) -> None:
    """The keys of the file sources (image_folder, csv, dicom, nifti)."""
    if data.fit not in FITS:
        raise ConfigError(f"config.data.fit must be one of {', '.join(FITS)}, not {data.fit!r}")
    if data.on_error not in ON_ERROR:
        raise ConfigError(
            f"config.data.on_error must be one of {', '.join(ON_ERROR)}, not {data.on_error!r}"
        )
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
    _positive("config.data.image_size", data.image_size)
    _positive("config.data.max_pixels", data.max_pixels)


def validate(config) -> None:
    SOURCES.get(config.data.source)
    _check_files(config.data)
    MODELS.get(config.model.name)
    ACTIVATIONS.get(config.model.activation)
    NORMS.get(config.model.norm)
    if config.model.dtype not in DTYPES:
        raise ConfigError(
            f"config.model.dtype must be one of {', '.join(DTYPES)}, not {config.model.dtype!r}"
        )
    if config.model.conv not in IMPLS:
        raise ConfigError(
            f"config.model.conv must be one of {', '.join(IMPLS)}, not {config.model.conv!r}"
        )
    OPTIMIZERS.get(config.optimizer.name)
    SCHEDULES.get(config.optimizer.schedule)
    LOSSES.get(config.loss.name)
    if config.loss.class_weights not in CLASS_WEIGHTS:
        raise ConfigError(
            f"config.loss.class_weights must be one of {', '.join(CLASS_WEIGHTS)}, not "
            f"{config.loss.class_weights!r}"
        )
    if not 0 <= config.loss.effective_beta < 1:
        raise ConfigError(
            f"config.loss.effective_beta must be in [0, 1) (0.99-0.9999 is usual), not "
            f"{config.loss.effective_beta}"
        )
    if config.loss.focal_gamma < 0:
        raise ConfigError(f"config.loss.focal_gamma must be >= 0, not {config.loss.focal_gamma}")
    splits.check_config(config.data)
    values.check_config(config.data)
    imbalance.check_sampler(config.data.sampler)
    imbalance.parse_oversample(config.data.oversample)
    if not 0 <= config.loss.label_smoothing < 1 or not 0 <= config.model.dropout < 1:
        raise ConfigError("config.loss.label_smoothing and config.model.dropout must be in [0, 1)")
    _positive("config.optimizer.learning_rate", config.optimizer.learning_rate)
    _positive("config.train.batch_size", config.train.batch_size)
    _positive("config.eval.batch_size", config.eval.batch_size)
    _positive("config.train.log_every_steps", config.train.log_every_steps)
    _positive("config.train.eval_every_epochs", config.train.eval_every_epochs)
    _positive("config.train.keep_checkpoints", config.train.keep_checkpoints)
    if config.train.checkpoint_every_minutes < 0:
        raise ConfigError(
            f"config.train.checkpoint_every_minutes must be >= 0 (0 saves at every evaluation), "
            f"not {config.train.checkpoint_every_minutes}"
        )
    if config.train.num_steps < 0 or (not config.train.num_steps and config.train.num_epochs <= 0):
        raise ConfigError(
            "set config.train.num_epochs or config.train.num_steps to a positive value"
        )
    if not 0 <= config.train.ema_decay < 1:
        raise ConfigError(
            f"config.train.ema_decay must be in [0, 1) (0 disables; 0.99-0.999 is usual), "
            f"not {config.train.ema_decay}"
        )
    if config.train.select_metric not in SELECT_METRICS:
        raise ConfigError(f"config.train.select_metric must be one of {', '.join(SELECT_METRICS)}")
    if config.train.select_mode not in ("max", "min"):
        raise ConfigError("config.train.select_mode must be 'max' or 'min'")
