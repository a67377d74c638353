"""Train the phantom localisation model (experiments/phantom_localisation.py) and print, per
explanation method, how well its maps point at the ground-truth lesions.

    python tools/localisation_bench.py --workdir runs/phantom_localisation [--config SPEC]
        [--methods saliency,gradcam] [--steps 16] [--orderings 3] [--tolerance 0]

Trains only when WORKDIR holds no finished run. Methods: medjax.explain.EXPLAINERS. Prints a markdown table and writes WORKDIR/localisation.json.
"""

import argparse
import json
import os

from medjax.cli import main_guard
from medjax.configs import load_config
from medjax.eval.phantom_localisation import evaluate, table
from medjax.inference import load_run


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--config", default="experiments/phantom_localisation.py")
    p.add_argument("--methods", default="", help="comma-separated (default: all available)")
    p.add_argument("--steps", type=int, default=16, help="deletion/insertion steps")
    p.add_argument("--orderings", type=int, default=3, help="random orderings to compare with")
    p.add_argument("--tolerance", type=float, default=0.0, help="pointing-game radius in px")
    args = p.parse_args(argv)
    if not os.path.exists(os.path.join(args.workdir, "results.json")):
        from medjax.train.loop import train_and_evaluate

        train_and_evaluate(load_config(args.config), args.workdir)
    run = load_run(args.workdir)
    reports = evaluate(
        run,
        [m for m in args.methods.split(",") if m] or None,
        steps=args.steps,
        random_orderings=args.orderings,
        tolerance=args.tolerance,
    )
    print(
        f"test AUC {run.results['test']['auc']:.3f}; images with a lesion: "
        f"{next(iter(reports.values()))['images']}"
    )
    print(table(reports))
    with open(os.path.join(args.workdir, "localisation.json"), "w") as f:
        json.dump(reports, f, indent=2)


if __name__ == "__main__":
    main_guard(main)
