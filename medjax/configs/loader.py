"""Load `path/to/experiment.py[:args]` and apply `--config.a.b=value` overrides."""

import ast
import importlib.util
import os

import ml_collections

from medjax.errors import ConfigError
from medjax.registry import suggest


def import_experiment(spec: str):
    """(module, path, arg) for `path/to/experiment.py[:arg]`; arg is None without `:`."""
    path, arg = spec, None
    if ".py:" in spec:
        path, arg = spec.split(".py:", 1)
        path += ".py"
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist; pass --config experiments/NAME.py")
    module_spec = importlib.util.spec_from_file_location("medjax_experiment", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, path, arg


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Import an experiment file and call its `get_config(arg)`; returns a locked ConfigDict."""
    module, path, arg = import_experiment(spec)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} has no get_config(arg=None) function")
    config = module.get_config(arg)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"get_config in {path!r} must return an ml_collections.ConfigDict")
    config.lock()
    return config


def flatten(config, prefix: str = "") -> dict:
    """{'a.b': value} for every leaf, with ConfigDicts and dicts descended into."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict | dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _convert(key: str, raw: str, current):
    """Turn the command-line text `raw` into a value of the same type as `current`."""
    if isinstance(current, str):
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(raw).lower() in ("true", "false", "1", "0", "yes", "no"):
            return str(raw).lower() in ("true", "1", "yes")
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(current, tuple | list):
        if isinstance(value, str):  # a single op or name: --config.data.augment=flip()
            value = (value,) if value else ()
        if isinstance(value, tuple | list):
            return tuple(value)
    elif current is None:
        return value
    raise ConfigError(
        f"--config.{key}={raw!r}: expected a {type(current).__name__} like {current!r}"
    )


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[tuple[str, str]]) -> None:
    """Set each `a.b.c` to its value; an unknown key fails naming the closest valid ones."""
    valid = flatten(config)
    for key, raw in overrides:
        if key not in valid:
            raise ConfigError(
                f"--config.{key}: no such config key.{suggest(key, valid)} "
                f"Keys under the same section: "
                f"{', '.join(k for k in valid if k.rsplit('.', 1)[0] == key.rpartition('.')[0])}"
            )
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        with config.unlocked():
            node[leaf] = _convert(key, raw, valid[key])


def config_from_plain(plain: dict) -> ml_collections.ConfigDict:
    """A run's config.json back as a locked ConfigDict over today's defaults: lists become the
    tuples the defaults hold, and keys this medjax no longer has are kept as they were."""
    from medjax.configs.base import get_base_config

    def merge(node, values):
        for key, value in values.items():
            current = node.get(key) if key in node else None
            if isinstance(current, ml_collections.ConfigDict) and isinstance(value, dict):
                merge(current, value)
            elif isinstance(current, tuple) and isinstance(value, list):
                node[key] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            elif key in node:
                node[key] = value
            else:
                with node.unlocked():
                    node[key] = value

    config = get_base_config()
    merge(config, plain)
    config.lock()
    return config
