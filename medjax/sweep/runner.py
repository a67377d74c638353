"""A sweep's runs on disk: where each one lives, how far it got, what failed, which runs
train together, the command that runs one, and the sweep's own record.

How the runs are executed (in this process, as subprocesses, as commands or SLURM jobs) is
medjax.sweep.modes; as Ray tasks, medjax.sweep.on_ray. Every run has its own workdir, `<sweep workdir>/runs/<run name>`, so the rules of a single
run hold for each: one with results is skipped, one with a checkpoint resumes from it, one
whose config changed is refused unless --overwrite. A run that fails is recorded in its
`failed.json` and the others go on; the next start of the sweep tries it again.
"""

import contextlib
import datetime
import json
import os
import shlex
import sys
import traceback

from medjax.configs import config_diff, describe
from medjax.errors import MedjaxError, WorkdirError
from medjax.train import workdir as wd

RUNS = "runs"
FAILED = "failed.json"
LOG = "log.txt"
MANIFEST = "sweep.json"
CACHE = "jax_cache"


def run_dir(workdir: str, name: str) -> str:
    return os.path.join(workdir, RUNS, name)


def status_of(path: str) -> str:
    """finished, failed, interrupted (a checkpoint, no results) or pending (never started)."""
    if os.path.exists(os.path.join(path, "results.json")):
        return "finished"
    if os.path.exists(os.path.join(path, FAILED)):
        return "failed"
    ckpts = os.path.join(path, "checkpoints")
    return "interrupted" if os.path.isdir(ckpts) and os.listdir(ckpts) else "pending"


def record_failure(path: str, error: BaseException | str) -> str:
    """Write failed.json; `error` is an exception, or the message a subprocess left."""
    os.makedirs(path, exist_ok=True)
    if isinstance(error, str):
        message, kind, trace = error, "subprocess", ""
    else:
        message, kind = str(error) or type(error).__name__, type(error).__name__
        if not isinstance(error, MedjaxError):  # a crash, not a user error: say what kind
            message = f"{kind}: {message}"
        trace = "".join(traceback.format_exception(error)[-6:])
    wd.write_json(os.path.join(path, FAILED), {"error": message, "type": kind, "traceback": trace})
    return message


def clear_failure(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(path, FAILED))


def stale_runs(sweep, workdir: str, overwrite: bool) -> set:
    """Names of runs whose workdir holds another config; an error unless `overwrite`."""
    stale = []
    for run in sweep.runs:
        path = os.path.join(run_dir(workdir, run.name), "config.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            diff = config_diff(json.load(f), run.config)
        if diff:
            stale.append((run.name, diff))
    if stale and not overwrite:
        name, diff = stale[0]
        raise WorkdirError(
            f"{len(stale)} run(s) in {workdir} hold another config than the sweep now gives "
            f"them (first: {name}: {describe(diff, 3)}); choose another --workdir, or pass "
            f"--overwrite to run them again from scratch"
        )
    return {name for name, _ in stale}


def write_manifest(sweep, workdir: str, argv: list) -> None:
    """sweep.json: what was swept and how it was started, for --summarize and for the record."""
    path = os.path.join(workdir, MANIFEST)
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    previous = {}
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
    os.makedirs(workdir, exist_ok=True)
    wd.write_json(
        path,
        {
            "config": sweep.spec,
            "overrides": [list(o) for o in sweep.overrides],
            "command": shlex.join([sys.executable, "-m", "medjax.sweep", *argv]),
            "cwd": os.getcwd(),
            "started": previous.get("started", now),
            "restarted": previous.get("restarted", []) + ([now] if previous else []),
            "select": {"metric": sweep.select_metric, "mode": sweep.select_mode},
            "reference": dict(sweep.reference),
            "runs": [{"name": r.name, "overrides": r.texts} for r in sweep.runs],
            **({"submitted": previous["submitted"]} if "submitted" in previous else {}),
        },
    )


def cache_env(workdir: str) -> dict:
    """JAX's persistent compilation cache in the sweep's workdir, unless one is set already.

    Runs that differ only by seed compile to the same programs, so all but the first of a
    setting load them from disk (on a 2-core CPU, 2 s instead of 6-10 s per run).
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return {}
    return {
        "JAX_COMPILATION_CACHE_DIR": os.path.abspath(os.path.join(workdir, CACHE)),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


@contextlib.contextmanager
def compilation_cache(workdir: str):
    env = cache_env(workdir)
    import jax

    if not env or jax.config.jax_compilation_cache_dir:
        yield
        return
    from jax.experimental.compilation_cache import compilation_cache as cc

    min_secs = jax.config.jax_persistent_cache_min_compile_time_secs
    cc.set_cache_dir(env["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    cc.reset_cache()  # JAX reads the directory once per process; make it read ours
    try:
        yield
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)
        cc.reset_cache()


def groups(todo: list, workdir: str) -> list[list]:
    """The runs to train together: runs whose configs differ only in the keys of their
    config.vectorize (medjax.train.vectorize) and that stand at the same step; the rest alone."""
    out: dict = {}
    for run in todo:
        keys = tuple(run.config.vectorize)
        if not keys:
            out[("alone", run.name)] = [run]
            continue
        shared = tuple((k, v) for k, v in run.texts.items() if k not in keys)
        ckpts = os.path.join(run_dir(workdir, run.name), "checkpoints")
        steps = sorted(os.listdir(ckpts)) if os.path.isdir(ckpts) else []
        out.setdefault((shared, tuple(steps)), []).append(run)
    return list(out.values())


def absolute_spec(spec: str) -> str:
    path, sep, arg = spec.partition(".py:")
    if sep:
        return os.path.abspath(path + ".py") + ":" + arg
    return os.path.abspath(spec)


def command(sweep, workdir: str, run, overwrite: bool = False) -> list[str]:
    """The `python -m medjax.run` command line of one run, with absolute paths."""
    overrides = list(sweep.overrides) + list(run.texts.items())
    return [
        sys.executable,
        "-m",
        "medjax.run",
        "--config",
        absolute_spec(sweep.spec),
        "--workdir",
        os.path.abspath(run_dir(workdir, run.name)),
        *(f"--config.{k}={v}" for k, v in overrides),
        *(["--overwrite"] if overwrite else []),
    ]
