"""HEADS: each head by name, with the hyperparameter grid validation chooses from; and the
config checks of config.model.head, run before any data is read."""

import dataclasses
from collections.abc import Callable

from medjax.errors import ConfigError
from medjax.registry import Registry
from medjax.train.losses import MULTI_LABEL_LOSSES

HEADS = Registry("head", "config.model.head")
NETWORK_HEADS = ("linear", "mlp")  # trained with the network: nothing is fitted afterwards


@dataclasses.dataclass(frozen=True)
class Head:
    """A head fitted on features. `fit(features, labels, num_classes, seed, **params)` returns
    an object with predict_proba(features) -> (N, classes); `grid` the params tried, in order
    (ties in the selection metric go to the earlier one)."""

    fit: Callable | None = None
    grid: tuple = ()


for _name in NETWORK_HEADS:
    HEADS.register(_name, Head())


def register(name: str, grid: tuple):
    def add(fit):
        HEADS.register(name, Head(fit, tuple(grid)))
        return fit

    return add


def is_fitted(config) -> bool:
    """Whether config.model.head is fitted on features after training."""
    return config.model.head not in NETWORK_HEADS


def check_config(config) -> None:
    """config.model.head and head_hidden agree, and a fitted head's model gives "pooled"
    features (medjax.heads.features.check_pooled)."""
    cfg = config.model
    HEADS.get(cfg.head)
    if cfg.head == "mlp" and not cfg.head_hidden:
        raise ConfigError(
            "config.model.head='mlp' needs hidden layers: set config.model.head_hidden, e.g. "
            "(512, 256)"
        )
    if cfg.head == "linear" and cfg.head_hidden:
        raise ConfigError(
            f"config.model.head_hidden={tuple(cfg.head_hidden)} adds hidden layers to the "
            f"head: set config.model.head='mlp' (or head_hidden=() for the linear head)"
        )
    if is_fitted(config) and config.loss.name in MULTI_LABEL_LOSSES:
        raise ConfigError(
            f"config.model.head={cfg.head!r} is fitted on one class per image, but "
            f"config.loss.name={config.loss.name!r} is for multi-label data; use "
            f"config.model.head='linear' or 'mlp' (one sigmoid per finding)"
        )
    if is_fitted(config):
        from medjax.heads.features import check_pooled

        check_pooled(config)
