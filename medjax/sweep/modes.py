"""Ways to execute a sweep's unfinished runs: one after another in this process (runs that
config.vectorize allows stacked in one program), N `python -m medjax.run` subprocesses, one
shell command per run for any scheduler, or one SLURM job per run through submitit. Ray
tasks are medjax.sweep.on_ray, which needs the optional ray package."""

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import time

from tqdm.auto import tqdm

from medjax.errors import ConfigError, Interrupted, TrainingError
from medjax.report.experiment import describe
from medjax.sweep.runner import (
    LOG,
    MANIFEST,
    cache_env,
    clear_failure,
    command,
    compilation_cache,
    groups,
    record_failure,
    run_dir,
    status_of,
)
from medjax.train import workdir as wd


def _interrupted(error: BaseException) -> bool:
    # Interrupted: the loop saved a checkpoint on Ctrl-C or SIGTERM; KeyboardInterrupt: a
    # second Ctrl-C, or one outside training.
    return isinstance(error, Interrupted | KeyboardInterrupt)


def _stop(name: str) -> TrainingError:
    return TrainingError(
        f"sweep interrupted during run {name}; run the same command again: finished runs are "
        f"skipped and unfinished ones resume from their checkpoints"
    )


def _bar(sweep, todo):
    total = len(sweep.runs)
    return tqdm(total=total, initial=total - len(todo), desc="sweep", unit="run", position=0)


def _train(loop, group: list, workdir: str, rerun: set, sweep) -> None:
    paths = [run_dir(workdir, r.name) for r in group]
    spec, overrides = sweep.spec, list(sweep.overrides)
    for run, path in zip(group, paths, strict=True):
        ckpts = os.path.join(path, "checkpoints")
        resumes = os.path.isdir(ckpts) and os.listdir(ckpts) and run.name not in rerun
        tqdm.write(f"sweep: {run.name} {'resumes' if resumes else 'starts'} ({path})")
        clear_failure(path)
    records = [describe(spec, [*overrides, *r.texts.items()]) for r in group]
    if len(group) == 1:
        overwrite = group[0].name in rerun
        loop.train_and_evaluate(group[0].config, paths[0], overwrite, experiment=records[0])
        return
    tqdm.write(f"sweep: {len(group)} runs trained together (config.vectorize)")
    loop.train_and_evaluate_runs(
        [r.config for r in group],
        paths,
        overwrite=any(r.name in rerun for r in group),
        experiments=records,
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
                    _train(loop, attempt, workdir, rerun, sweep)
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
