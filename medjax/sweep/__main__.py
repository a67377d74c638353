"""Run every configuration a sweep file lists, then summarise them over seeds.

python -m medjax.sweep --config experiments/ablations/NAME.py[:args] --workdir DIR
    [--dry-run | --parallel N | --ray [ADDRESS] | --emit-commands | --submitit]
    [--overwrite] [--folds K] [--config.KEY=VALUE ...]
python -m medjax.sweep --summarize DIR

One way to run the sweep per environment:
  one machine      (no flag) one run after another in this process; --parallel N: N
                   `python -m medjax.run` processes at a time, GPUs round robin
  a Ray cluster    --ray [ADDRESS]: one Ray task per run (--ray-gpus-per-run,
                   --ray-cpus-per-run); no address starts Ray on this machine
  SLURM            --submitit: one job per run (--submitit-param KEY=VALUE)
  any scheduler    --emit-commands: one shell command per unfinished run

Each run gets DIR/runs/<its overrides>; starting the same sweep again skips finished runs and
resumes unfinished ones. DIR/summary.md and DIR/summary.csv hold the results. --folds K runs
every setting on each fold of a K-fold cross-validation and pools them in DIR/folds.json.
"""

import argparse
import ast
import os
import sys

from medjax.cli import main_guard, split_overrides
from medjax.errors import ConfigError, TrainingError
from medjax.sweep import modes, on_ray, runner
from medjax.sweep.grid import load_sweep
from medjax.sweep.summary import write_summary
from medjax.train import workdir as wd


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m medjax.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--config.KEY=VALUE overrides apply to every run, before the sweep's own.",
    )
    p.add_argument("--config", help="experiments/NAME.py[:args] with get_config and sweep")
    p.add_argument("--workdir", help="the sweep's folder: runs/, sweep.json, summary.*")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="list the runs and their workdirs")
    mode.add_argument(
        "--parallel",
        type=int,
        default=0,
        metavar="N",
        help="N runs at a time, each its own `python -m medjax.run` process "
        "(GPUs handed out round robin)",
    )
    mode.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="one Ray task per unfinished run, each a `python -m medjax.run` process; ADDRESS "
        "(host:6379, ray://host:10001 or auto) is a running cluster whose workers see DIR at "
        "the same path; without it, Ray starts on this machine (pip install 'medjax[ray]')",
    )
    mode.add_argument(
        "--emit-commands",
        action="store_true",
        help="print one shell command per unfinished run, for a scheduler",
    )
    mode.add_argument(
        "--submitit",
        action="store_true",
        help="submit one SLURM job per unfinished run through submitit",
    )
    mode.add_argument("--summarize", metavar="DIR", help="only (re)write DIR's summary")
    p.add_argument(
        "--submitit-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="submitit executor parameter, e.g. slurm_partition=gpu, timeout_min=60",
    )
    p.add_argument(
        "--ray-gpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="GPUs each Ray task asks for (fractions share one); default 1 where the cluster "
        "has GPUs, else 0",
    )
    p.add_argument(
        "--ray-cpus-per-run",
        type=float,
        default=None,
        metavar="N",
        help="CPUs each Ray task asks for (default 1)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="rerun from scratch the runs whose workdir holds another config",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="K-fold cross-validation: each run once per fold (data.num_folds=K, data.fold), "
        "pooled in DIR/folds.json",
    )
    return p


def _submitit_params(items) -> dict:
    params = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--submitit-param {item!r}: write KEY=VALUE, e.g. timeout_min=60")
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def _check_ray_args(args) -> None:
    for kind in ("gpus", "cpus"):
        value = getattr(args, f"ray_{kind}_per_run")
        if value is not None and args.ray is None:
            raise ConfigError(f"--ray-{kind}-per-run is for Ray tasks: add --ray [ADDRESS]")
        if value is not None and value < 0:
            raise ConfigError(f"--ray-{kind}-per-run {value:g}: give a number >= 0")


def _report(workdir: str) -> dict:
    info = write_summary(workdir)
    line = f"sweep: {info['finished']}/{info['runs']} runs finished"
    if info["best"] is not None:
        line += f"; best by validation: {info['best']}"
    print(f"{line}; {os.path.join(workdir, 'summary.md')}")
    return info


def main(argv):
    rest, overrides = split_overrides(argv)
    args = _parser().parse_args(rest)
    if args.summarize:
        _report(args.summarize)
        return
    if not args.config or not args.workdir:
        raise ConfigError("pass --config experiments/ablations/NAME.py and --workdir DIR")
    if args.parallel < 0:
        raise ConfigError(f"--parallel {args.parallel}: give a number of processes >= 1")
    _check_ray_args(args)
    sweep = load_sweep(
        args.config, overrides, args.folds
    )  # every run's config checked before any starts
    workdir = args.workdir
    if args.dry_run:
        n_settings = len({r.setting for r in sweep.runs})
        print(f"{len(sweep.runs)} runs ({n_settings} settings) of {args.config} in {workdir}:")
        for run in sweep.runs:
            path = runner.run_dir(workdir, run.name)
            print(f"  {runner.status_of(path):<11} {path}")
        stacked = [g for g in runner.groups(sweep.runs, workdir) if len(g) > 1]
        if stacked:
            print(
                f"config.vectorize trains {sum(map(len, stacked))} of them in {len(stacked)} "
                f"stacked groups of {', '.join(str(len(g)) for g in stacked)}"
            )
        return
    rerun = runner.stale_runs(sweep, workdir, args.overwrite)
    todo = [
        r
        for r in sweep.runs
        if r.name in rerun or runner.status_of(runner.run_dir(workdir, r.name)) != "finished"
    ]
    cluster = None
    if args.ray is not None:  # Ray missing or its cluster silent: said before anything is written
        cluster = on_ray.start(args.ray or None, args.ray_gpus_per_run, args.ray_cpus_per_run, todo)
    wd.make(workdir)
    with wd.Lock(workdir):  # one sweep at a time in a workdir
        runner.write_manifest(sweep, workdir, argv)
        if args.emit_commands:
            print(f"# {len(todo)} of {len(sweep.runs)} runs unfinished", file=sys.stderr)
            for line in modes.emit_commands(sweep, workdir, todo, rerun):
                print(line)
            return
        if args.submitit:
            params = _submitit_params(args.submitit_param)
            for name, job in modes.submit_submitit(sweep, workdir, todo, rerun, params):
                print(f"{job} {name}")
            print(f"when the jobs are done: python -m medjax.sweep --summarize {workdir}")
            return
        try:
            if args.ray is not None:
                if cluster is not None:  # None: every run has finished
                    cluster.run(sweep, workdir, todo, rerun)
            elif args.parallel:
                modes.run_parallel(sweep, workdir, todo, rerun, args.parallel)
            else:
                modes.run_sequential(sweep, workdir, todo, rerun)
        finally:
            if cluster is not None:
                cluster.close()
            info = _report(workdir)
    if info["failed"]:
        names = ", ".join(info["failed_runs"][:3]) + (" ..." if info["failed"] > 3 else "")
        raise TrainingError(
            f"{info['failed']} of {info['runs']} runs failed ({names}); their errors are in "
            f"{os.path.join(workdir, 'summary.md')}. Running the same command again retries them"
        )


if __name__ == "__main__":
    main_guard(main)
