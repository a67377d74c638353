"""A sweep's runs: read `sweep(arg)` from the experiment file, name each run, check every config.

An experiment file that is a sweep defines, beside `get_config(arg=None)`, a
`sweep(arg=None)` that returns or yields dicts of config overrides, one per run, e.g.
`{"optimizer.name": "sgd", "model.activation": "tanh", "seed": 1}`; `product(...)` writes a
full grid. It may also name the reference setting the others are compared with,
`REFERENCE = {"optimizer.name": "adam", "model.activation": "relu"}` (default: the first).
"""

import dataclasses
import hashlib
import itertools
import re

from medjax.configs import apply_overrides, flatten
from medjax.configs.loader import import_experiment
from medjax.errors import ConfigError
from medjax.registry import suggest

SEED_KEY = "seed"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME = 150  # leaves room under the usual 255-byte file-name limit


def product(factors: dict | None = None, **named) -> list[dict]:
    """Every combination of the factors' values, the last factor varying fastest.

    `product({"optimizer.name": ["adam", "sgd"], "seed": range(3)})`, or with keywords where
    `__` stands for `.`: `product(optimizer__name=["adam", "sgd"], seed=range(3))`. A value
    that is a dict sets several keys together, e.g. an optimizer with its own learning rate:
    `product({"opt": [{"optimizer.name": "sgd", "optimizer.learning_rate": 0.01}, ...]})`
    (the factor's own name, here "opt", is then only a label and is not a config key).
    """
    factors = {**(factors or {}), **{k.replace("__", "."): v for k, v in named.items()}}
    runs = []
    for combo in itertools.product(*(list(v) for v in factors.values())):
        run = {}
        for key, value in zip(factors, combo, strict=True):
            run.update(value if isinstance(value, dict) else {key: value})
        runs.append(run)
    return runs


def as_text(value) -> str:
    """The `--config.KEY=TEXT` form of a value, read back by medjax.configs.apply_overrides."""
    return (
        value
        if isinstance(value, str)
        else repr(tuple(value) if isinstance(value, list) else value)
    )


def run_name(texts: dict) -> str:
    """`a.b=v,c.d=w,seed=0`: the overrides in order with the seed last, safe as a folder name."""
    keys = [k for k in texts if k != SEED_KEY] + [k for k in texts if k == SEED_KEY]
    name = ",".join(f"{k}={_UNSAFE.sub('_', texts[k]).strip('_') or '_'}" for k in keys) or "base"
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}-{digest}"
    return name


@dataclasses.dataclass
class PlannedRun:
    """A run the sweep plans: its name, its overrides and its resolved config."""

    name: str
    texts: dict  # config key -> override text, in the order sweep() gave them
    config: object = None  # the resolved, validated ConfigDict

    @property
    def setting(self) -> tuple:
        """The overrides without the seed: runs with the same setting differ only by seed."""
        return tuple((k, v) for k, v in self.texts.items() if k != SEED_KEY)

    @property
    def seed(self) -> str:
        return self.texts.get(SEED_KEY, "")


@dataclasses.dataclass
class Sweep:
    spec: str  # experiments/NAME.py[:args]
    overrides: list  # (key, text) from the command line, applied to every run first
    runs: list
    reference: tuple  # the setting the others are compared with
    select_metric: str
    select_mode: str


def _check_keys(path, items, valid):
    for key in items:
        if key not in valid:
            raise ConfigError(
                f"sweep() in {path} sets {key!r}, which is not a config key.{suggest(key, valid)} "
                f"Fix it in sweep(); no run was started"
            )


def load_sweep(spec: str, overrides=(), folds: int = 0) -> Sweep:
    """Expand and check every run of the sweep in `spec`; nothing is trained or written.

    Any bad run fails here, before the first run starts: an unknown key, a value of the
    wrong type, a name no registry knows, two runs with the same name. `folds` > 0 runs each
    once per fold of a k-fold cross-validation (medjax.sweep.folds); then a plain experiment
    file (no sweep()) is one setting.
    """
    from medjax.train.validate import validate  # imports JAX: after the cheap checks

    module, path, arg = import_experiment(spec)
    has_sweep = callable(getattr(module, "sweep", None))
    if not has_sweep and not folds:
        raise ConfigError(
            f"{path} has no sweep(arg=None) function; a sweep file defines get_config and a "
            f"sweep() returning dicts of overrides (see medjax.sweep.product), or pass --folds K "
            f"to cross-validate its one config"
        )
    overrides = list(overrides)
    items = list(module.sweep(arg) or ()) if has_sweep else [{}]  # --folds: the plain config
    if folds:
        from medjax.sweep.folds import with_folds  # imports JAX: only for cross-validation

        items = with_folds(items, folds, path)
    if not items:
        raise ConfigError(f"sweep() in {path} gave no runs")
    runs, seen = [], {}
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
            raise ConfigError(
                f"sweep() in {path} must give dicts of config overrides like "
                f"{{'optimizer.name': 'sgd', 'seed': 0}}, not {item!r}"
            )
        texts = {k: as_text(v) for k, v in item.items()}
        name = run_name(texts)
        if name in seen:
            raise ConfigError(
                f"sweep() in {path} gives two runs named {name!r} ({seen[name]} and {texts}); "
                f"every run needs different overrides"
            )
        seen[name] = texts
        config = module.get_config(arg)
        config.lock()
        valid = flatten(config)
        _check_keys(path, texts, valid)
        apply_overrides(config, overrides)  # the command line's own: its errors say so already
        try:
            apply_overrides(config, list(texts.items()))
            validate(config)
        except ConfigError as e:
            raise ConfigError(f"sweep() in {path}, run {name}: {e}") from None
        runs.append(PlannedRun(name, texts, config))
    first = runs[0].config.train
    return Sweep(
        spec,
        overrides,
        runs,
        _reference(path, getattr(module, "REFERENCE", None), runs),
        first.select_metric,
        first.select_mode,
    )


def settings(runs) -> dict:
    """setting -> its runs, in the order the settings first appear."""
    out = {}
    for run in runs:
        out.setdefault(run.setting, []).append(run)
    return out


def _reference(path, wanted, runs) -> tuple:
    all_settings = list(settings(runs))
    if wanted is None:
        return all_settings[0]
    texts = {k: as_text(v) for k, v in dict(wanted).items()}
    matches = [s for s in all_settings if texts.items() <= dict(s).items()]
    if len(matches) != 1:
        raise ConfigError(
            f"REFERENCE = {wanted!r} in {path} matches {len(matches)} settings of the sweep, "
            f"not one; name values that pick out exactly one setting"
        )
    return matches[0]


def factors(setting_list) -> list[str]:
    """The keys that vary between settings, less those set together with another.

    A key whose value follows from another's (each optimizer with its own learning rate) is
    part of that factor, not a factor of its own, so optimizer x activation stays a 2-D grid.
    """
    rows = [dict(s) for s in setting_list]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    varying = [k for k in keys if len({r.get(k) for r in rows}) > 1]

    def follows(k, j):  # the value of k is a function of the value of j
        seen = {}
        return all(seen.setdefault(r.get(j), r.get(k)) == r.get(k) for r in rows)

    return [
        k
        for i, k in enumerate(varying)
        if not any(
            follows(k, j) and (not follows(j, k) or varying.index(j) < i) for j in varying if j != k
        )
    ]
