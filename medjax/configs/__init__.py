"""Experiment configs: the shared defaults, loading `file.py:args`, and `--config.a.b=v` overrides."""

from medjax.configs.base import apply_runlocal, get_base_config, parse_arg
from medjax.configs.diff import as_plain, config_diff, describe
from medjax.configs.loader import apply_overrides, config_from_plain, flatten, load_config

__all__ = [
    "apply_overrides",
    "apply_runlocal",
    "config_from_plain",
    "as_plain",
    "config_diff",
    "describe",
    "flatten",
    "get_base_config",
    "load_config",
    "parse_arg",
]
