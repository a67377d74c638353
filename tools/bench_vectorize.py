"""K seeds of one experiment: stacked in one program (config.vectorize) against K runs one
after another, whole runs timed end to end (README "Ablations and sweeps").

    PYTHONPATH=. python tools/bench_vectorize.py \
        --config experiments/ablations/breastmnist_optimizer_activation.py --seeds 3

Both ways run in this one process on the same data (from the data cache, filled by a first
untimed run), with the persistent compilation cache a sweep uses: that first run leaves the
single-run programs in it, so the sequential runs load theirs from disk as a sweep's seeds do,
while the stacked program compiles afresh (the comparison favours the sequential runs). Each
way's wall time includes compilation, training, evaluation, checkpoints and results. Prints
one JSON line.
"""

import argparse
import json
import pathlib
import sys
import tempfile
import time

from medjax.cli import split_overrides
from medjax.configs import apply_overrides, load_config
from medjax.sweep.runner import compilation_cache
from medjax.train.loop import train_and_evaluate, train_and_evaluate_runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    rest, overrides = split_overrides(sys.argv[1:])
    args = parser.parse_args(rest)
    base = load_config(args.config)
    apply_overrides(base, overrides)
    configs = []
    for seed in range(args.seeds):
        c = base.copy_and_resolve_references()
        c.unlock()
        c.seed, c.vectorize = seed, ("seed",)
        configs.append(c.lock())
    with tempfile.TemporaryDirectory() as tmp, compilation_cache(tmp):
        train_and_evaluate(configs[0], f"{tmp}/warm")  # data into the cache, untimed
        t = time.perf_counter()
        alone = [train_and_evaluate(c, f"{tmp}/alone{i}") for i, c in enumerate(configs)]
        sequential_s = time.perf_counter() - t
        t = time.perf_counter()
        together = train_and_evaluate_runs(configs, [f"{tmp}/v{i}" for i in range(len(configs))])
        stacked_s = time.perf_counter() - t
        cards = [
            json.loads(pathlib.Path(tmp, name, "run_card.json").read_text())["timings"]
            for name in ("alone0", "v0")
        ]
    print(
        json.dumps(
            {
                "config": args.config,
                "seeds": args.seeds,
                "sequential_s": round(sequential_s, 1),
                "vectorized_s": round(stacked_s, 1),
                "speedup": round(sequential_s / stacked_s, 2),
                "test_auc_sequential": [round(r["test"]["auc"], 4) for r in alone],
                "test_auc_vectorized": [round(r["test"]["auc"], 4) for r in together],
                "one_sequential_run": cards[0],
                "vectorized_group": cards[1],
            }
        )
    )


if __name__ == "__main__":
    main()
