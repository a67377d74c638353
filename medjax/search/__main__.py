"""Evolve an architecture with a genetic algorithm over config.search.space.

python -m medjax.search --config experiments/review/search_cnn.py[:args] --workdir DIR
    [--generations G] [--population P] [--parallel N] [--max-runs N] [--overwrite]
    [--config.KEY=VALUE ...]

Every candidate is a run of the experiment with its genome's keys set, in DIR/runs/gen<g>-c<i>;
its fitness is train.select_metric on validation. Starting the same command again goes on
where the search stopped (finished candidates are read, interrupted ones resume); a larger
--generations extends a finished search. DIR/search.json holds every candidate,
DIR/best_config.py reproduces the best one (python -m medjax.run --config DIR/best_config.py),
DIR/search.png plots fitness by generation. Only the best candidate's test metrics are read.
"""

import argparse
import os

from medjax.cli import at_least, main_guard, split_overrides
from medjax.errors import TrainingError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m medjax.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--config.KEY=VALUE overrides apply to every candidate (search.* ones to the GA)",
    )
    p.add_argument("--config", required=True, help="experiments/NAME.py[:args] with search.space")
    p.add_argument("--workdir", required=True, help="the search's folder")
    p.add_argument("--generations", type=at_least(1), help="sets search.generations")
    p.add_argument("--population", type=at_least(2), help="sets search.population")
    p.add_argument(
        "--parallel",
        type=at_least(1),
        default=0,
        metavar="N",
        help="N candidates at a time, each its own `python -m medjax.run` process",
    )
    p.add_argument(
        "--max-runs",
        type=at_least(0),
        default=None,
        metavar="N",
        help="train at most N candidates in this start, then stop (the next start goes on)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="retrain from scratch candidates whose workdir holds another config",
    )
    return p


def main(argv):
    rest, overrides = split_overrides(argv)
    args = _parser().parse_args(rest)
    for flag in ("generations", "population"):
        if getattr(args, flag) is not None:
            overrides.append((f"search.{flag}", str(getattr(args, flag))))
    from medjax.search import driver, outputs

    plan = driver.make_plan(args.config, overrides)  # every choice checked before any run
    state, done = driver.search(
        plan,
        args.workdir,
        max_runs=args.max_runs,
        overwrite=args.overwrite,
        parallel=args.parallel,
    )
    path = os.path.join(args.workdir, driver.STATE)
    if not done:
        print(
            f"search: stopped after --max-runs {args.max_runs}; the same command goes on ({path})"
        )
        return
    best = outputs.finish(plan, state, args.workdir, driver.ranked(plan, state))
    if best is None:
        raise TrainingError(f"every candidate failed; their errors are in {path}")
    print(outputs.table(plan, state, best))
    test = best["test"]
    print(
        f"search: best {best['id']} ({outputs.short(best['values'])}): val "
        f"{plan.select_metric} {best['metric']:.4f}, {best['params']:,} parameters; test AUC "
        f"{test.get('auc', float('nan')):.4f}, accuracy {test.get('accuracy', float('nan')):.4f}"
    )
    print(
        f"search: {path}, {os.path.join(args.workdir, outputs.BEST_CONFIG)}, "
        f"{os.path.join(args.workdir, outputs.PLOT)}"
    )


if __name__ == "__main__":
    main_guard(main)
