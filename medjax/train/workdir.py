"""The run's working directory: its files, and the guard against mixing two experiments."""

import json
import os
import shutil

import numpy as np

from medjax.configs import flatten
from medjax.errors import WorkdirError

OUTPUTS = (
    "config.json",
    "metrics.jsonl",
    "results.json",
    "run_card.json",
    "data_summary.json",
    "checkpoints",
)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.write("\n")
    os.replace(tmp, path)  # never leave a half-written results file behind


def append_jsonl(path: str, obj) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_jsonable) + "\n")


def config_dict(config) -> dict:
    return json.loads(config.to_json_best_effort())


def prepare(workdir: str, config, overwrite: bool) -> bool:
    """Create or check `workdir`; True when it holds an earlier run of this same config."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    current = config_dict(config)
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous == current:
            return True
        if not overwrite:
            old, new = flatten(previous), flatten(current)
            diff = [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
            raise WorkdirError(
                f"{workdir} holds a run with a different config ({'; '.join(diff[:5])}"
                f"{' ...' if len(diff) > 5 else ''}); choose another --workdir, or pass "
                f"--overwrite to delete that run and start again"
            )
        for name in OUTPUTS:
            target = os.path.join(workdir, name)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
    elif overwrite and os.path.isdir(os.path.join(workdir, "checkpoints")):
        shutil.rmtree(os.path.join(workdir, "checkpoints"))
    write_json(path, current)
    return False
