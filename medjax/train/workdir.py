"""A run's working directory: one process at a time, its files, and the guards against mixing
two experiments in it or deleting what medjax did not write there."""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shutil
import socket
import sys

import numpy as np

from medjax.configs import as_plain, config_diff, describe
from medjax.errors import WorkdirError
from medjax.train import checkpoint

OUTPUTS = (
    "config.json",
    "metrics.jsonl",
    "results.json",
    "run_card.json",
    "data_summary.json",
    "timing.json",
    "checkpoints",
    "inference",
    "plots",
    "predictions",
    "tensorboard",
    "mlflow.json",
    "experiment.json",
    "ensemble.json",
    "segmenter",
)
LOCK = ".medjax.lock"


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


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSON-lines file; a torn last line (the process was killed while writing
    it) is dropped."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return rows


def keep_rows_until(path: str, step: int) -> None:
    """Drop the rows past `step` from a metrics file: a resumed run logs those steps again,
    and one step must not have two different rows."""
    rows = read_jsonl(path)
    kept = [r for r in rows if r.get("step", 0) <= step]
    if len(kept) == len(rows) and (not rows or _ends_cleanly(path)):
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(tmp, path)


def _ends_cleanly(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class Lock:
    """An advisory lock on the workdir for this process's life. The kernel releases it when
    the process ends, however it ends, so a crashed run never blocks the next one."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK)
        try:
            self._file = open(self.path, "a+")  # noqa: SIM115 (held open until release)
        except OSError as e:
            raise _unwritable(workdir, e) from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirError(
                f"{workdir} is in use by {holder}; wait for that run to finish or stop it, or "
                f"choose another --workdir"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        self._file.write(
            f"process {os.getpid()} on host {socket.gethostname()} (started {started}: "
            f"{' '.join(sys.argv)[:200]})\n"
        )
        self._file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def release(self) -> None:
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


def _unwritable(workdir: str, error: OSError) -> WorkdirError:
    return WorkdirError(
        f"cannot write to --workdir {workdir} ({error.strerror}); choose a folder you can write to"
    )


def make(workdir: str) -> None:
    """Create `workdir`, or say plainly why it cannot be one."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a folder; choose another --workdir")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise _unwritable(workdir, e) from None


def _read_config(workdir: str) -> dict | None:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirError(
            f"{path} is not a config medjax wrote ({e}); choose another --workdir, or remove "
            f"that file if the folder is yours to reuse"
        ) from None


def claim(workdir: str, config, overwrite: bool) -> bool:
    """Check that `workdir` (created and locked) may hold a run of `config` and record it in
    config.json; True when it holds an earlier run of this same config, to resume.

    Both config.json and the newest checkpoint must match the config: a copied or trimmed
    workdir whose checkpoints belong to another experiment is refused, not resumed. With
    `overwrite`, a mismatching run is deleted, but only the files medjax writes.
    """
    current = as_plain(config)
    recorded = _read_config(workdir)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    found = checkpoint.newest_config(ckpt_dir)  # refuses folders medjax did not write
    problems = []
    if recorded is not None and config_diff(recorded, current):
        problems.append(f"config.json differs ({describe(config_diff(recorded, current))})")
    if found is not None:
        step, stored = found
        if stored is None and recorded is None:
            problems.append(
                f"its checkpoints (newest: step {step}) were written by an older medjax that did "
                f"not record their config, and config.json is missing"
            )
        elif stored is not None and config_diff(stored, current):
            problems.append(
                f"its checkpoint of step {step} was trained with another config "
                f"({describe(config_diff(stored, current))})"
            )
    if problems:
        if not overwrite:
            raise WorkdirError(
                f"{workdir} holds another run: {'; '.join(problems)}. Choose another --workdir, "
                f"or pass --overwrite to delete that run and start again"
            )
        remove_outputs(workdir)
    write_json(os.path.join(workdir, "config.json"), current)
    return not problems and (recorded is not None or found is not None)


def remove_outputs(workdir: str) -> None:
    """Delete what a medjax run wrote in `workdir`, and nothing else."""
    checkpoint.newest_config(os.path.join(workdir, "checkpoints"))  # refuses foreign folders
    for name in OUTPUTS:
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
            shutil.rmtree(target)
        elif os.path.exists(target):
            os.remove(target)
