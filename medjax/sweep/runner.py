"""Run a sweep's runs: one after another in this process, as N subprocesses, or as commands
and SLURM jobs for a scheduler.

Every run has its own workdir, `<sweep workdir>/runs/<run name>`, so the rules of a single
run hold for each: one with results is skipped, one with a checkpoint resumes from it, one
whose config changed is refused unless --overwrite. A run that fails is recorded in its
`failed.json` and the others go on; the next start of the sweep tries it again.
"""

import contextlib
import datetime
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback

from tqdm.auto import tqdm

from medjax.configs import flatten
from medjax.errors import ConfigError, MedjaxError, TrainingError, WorkdirError
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
            old = flatten(json.load(f))
        new = flatten(wd.config_dict(run.config))
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
        diff += [f"{k}: {old[k]!r} -> (none)" for k in old if k not in new]
        if diff:
            stale.append((run.name, diff))
    if stale and not overwrite:
        name, diff = stale[0]
        raise WorkdirError(
            f"{len(stale)} run(s) in {workdir} hold another config than the sweep now gives "
            f"them (first: {name}: {'; '.join(diff[:3])}); choose another --workdir, or pass "
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


def _interrupted(error: BaseException) -> bool:
    # The training loop turns Ctrl-C into a TrainingError after saving a checkpoint; the
    # KeyboardInterrupt stays its __context__.
    return isinstance(error, KeyboardInterrupt) or isinstance(error.__context__, KeyboardInterrupt)


def _stop(name: str) -> TrainingError:
    return TrainingError(
        f"sweep interrupted during run {name}; run the same command again: finished runs are "
        f"skipped and unfinished ones resume from their checkpoints"
    )


def _bar(sweep, todo):
    total = len(sweep.runs)
    return tqdm(total=total, initial=total - len(todo), desc="sweep", unit="run", position=0)


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


def _train(loop, group: list, workdir: str, rerun: set) -> None:
    paths = [run_dir(workdir, r.name) for r in group]
    for run, path in zip(group, paths, strict=True):
        ckpts = os.path.join(path, "checkpoints")
        resumes = os.path.isdir(ckpts) and os.listdir(ckpts) and run.name not in rerun
        tqdm.write(f"sweep: {run.name} {'resumes' if resumes else 'starts'} ({path})")
        clear_failure(path)
    if len(group) == 1:
        loop.train_and_evaluate(group[0].config, paths[0], overwrite=group[0].name in rerun)
        return
    tqdm.write(f"sweep: {len(group)} runs trained together (config.vectorize)")
    loop.train_and_evaluate_runs(
        [r.config for r in group], paths, overwrite=any(r.name in rerun for r in group)
    )


def run_sequential(sweep, workdir: str, todo: list, rerun: set) -> None:
    """Each run in this process: data and JAX start once; programs come from the cache. Runs
    that config.vectorize allows to stack train together in one program; when such a group
    fails, its runs go on one by one from the group's checkpoints, so only the failing one is
    recorded as failed."""
    from medjax.train import loop  # imports JAX

    with compilation_cache(workdir), _bar(sweep, todo) as bar:
        for group in groups(todo, workdir):
            attempts = [group] if len(group) == 1 else [group, *([r] for r in group)]
            for attempt in attempts:
                try:
                    _train(loop, attempt, workdir, rerun)
                except BaseException as e:
                    if _interrupted(e):
                        raise _stop(", ".join(r.name for r in attempt)) from None
                    if not isinstance(e, Exception):
                        raise
                    if len(attempt) > 1:
                        tqdm.write(f"sweep: the group failed ({e}); its runs go on one by one")
                        continue
                    message = record_failure(run_dir(workdir, attempt[0].name), e)
                    tqdm.write(f"sweep: {attempt[0].name} failed: {message}")
                bar.update(len(attempt))
                if attempt is group:
                    break


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


def emit_commands(sweep, workdir: str, todo: list, rerun: set) -> list[str]:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in cache_env(workdir).items())
    return [
        f"{env} {shlex.join(command(sweep, workdir, r, r.name in rerun))}".strip() for r in todo
    ]


def visible_gpus() -> list[str]:
    """GPU ids to hand out, without importing JAX here (that would claim GPU memory)."""
    if (ids := os.environ.get("CUDA_VISIBLE_DEVICES")) is not None:
        return [i.strip() for i in ids.split(",") if i.strip() and i.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if not out.returncode
        else []
    )


def error_from_log(path: str) -> str:
    with open(path, errors="replace") as f:
        f.seek(max(0, os.path.getsize(path) - 20000))
        lines = [x.strip() for x in f.read().replace("\r", "\n").splitlines() if x.strip()]
    for line in reversed(lines):
        if line.startswith("medjax: error:"):
            return line.removeprefix("medjax: error:").strip()
    return lines[-1] if lines else "the run exited without output"


def run_parallel(sweep, workdir: str, todo: list, rerun: set, processes: int) -> None:
    """`processes` runs at a time, each `python -m medjax.run` writing to its own log.txt.

    On GPUs each process slot gets one device through CUDA_VISIBLE_DEVICES, round robin; with
    more slots than GPUs they share, each with its fraction of the memory.
    """
    import medjax

    gpus = visible_gpus()
    env = {**os.environ, **cache_env(workdir)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(medjax.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    if gpus and processes > len(gpus) and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / math.ceil(processes / len(gpus)):.2f}"
    queue, running, free = list(todo), {}, list(range(processes))
    with _bar(sweep, todo) as bar:
        try:
            while queue or running:
                while queue and free:
                    slot, run = free.pop(0), queue.pop(0)
                    path = run_dir(workdir, run.name)
                    os.makedirs(path, exist_ok=True)
                    clear_failure(path)
                    slot_env = dict(env)
                    if gpus:
                        slot_env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                    with open(os.path.join(path, LOG), "a") as log:
                        # Own session: Ctrl-C reaches only this process, which passes it on
                        # once, so no child is interrupted while saving its checkpoint.
                        proc = subprocess.Popen(
                            command(sweep, workdir, run, run.name in rerun),
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=slot_env,
                            start_new_session=True,
                        )
                    running[proc] = (run, slot, time.perf_counter())
                    tqdm.write(f"sweep: {run.name} started (log: {os.path.join(path, LOG)})")
                done = [p for p in running if p.poll() is not None]
                for proc in done:
                    run, slot, start = running.pop(proc)
                    free.append(slot)
                    path = run_dir(workdir, run.name)
                    if proc.returncode == 0 and status_of(path) == "finished":
                        tqdm.write(
                            f"sweep: {run.name} finished ({time.perf_counter() - start:.0f} s)"
                        )
                    else:
                        error = error_from_log(os.path.join(path, LOG))
                        tqdm.write(f"sweep: {run.name} failed: {record_failure(path, error)}")
                    bar.update(1)
                if not done:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            for proc in running:
                proc.send_signal(signal.SIGINT)
            for proc in running:
                proc.wait()
            raise _stop(", ".join(r.name for r, _, _ in running.values())) from None


def run_command(argv: list, env: dict) -> None:
    """A SLURM job's body (submitit pickles this function by name)."""
    subprocess.run(argv, env={**os.environ, **env}, check=True)


def submit_submitit(sweep, workdir: str, todo: list, rerun: set, params: dict) -> list:
    """One SLURM job per run through submitit; returns (run name, job id) pairs."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--submitit needs the submitit package, which medjax does not install: pip install "
            "submitit, or use --emit-commands for one shell command per run for any scheduler"
        ) from None
    executor = submitit.AutoExecutor(folder=os.path.join(os.path.abspath(workdir), "submitit"))
    executor.update_parameters(**params)
    env = cache_env(workdir)
    with executor.batch():
        jobs = [
            executor.submit(run_command, command(sweep, workdir, r, r.name in rerun), env)
            for r in todo
        ]
    submitted = [(r.name, str(j.job_id)) for r, j in zip(todo, jobs, strict=True)]
    path = os.path.join(workdir, MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest.setdefault("submitted", []).extend({"run": n, "job_id": j} for n, j in submitted)
    wd.write_json(path, manifest)
    return submitted
