"""The README's class-imbalance result on real BreastMNIST, all seeds (README "Data").

    PYTHONPATH=. MEDJAX_DATA_DIR=/path/to/medmnist python tools/bench_imbalance.py [--seeds 5]

Trains the recipe of tests/test_imbalance_realdata.py (small CNN, 200 steps, last step
selected) three ways per seed: unweighted, with the balanced sampler, with effective-number
class weights; each run alone, as the test runs them. Prints one line per run, then the range
over seeds of the malignant test sensitivity and test AUC of each way, and one JSON line. The
test runs two of the seeds (a run takes 9-20 s on 2 CPU cores); this is the full measurement
the README quotes (15 runs, 3-5 minutes).
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from medjax.train.loop import train_and_evaluate  # noqa: E402
from tests.test_imbalance_realdata import RUNS, recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--data", default="", help="breastmnist.npz; default: $MEDJAX_DATA_DIR")
    args = parser.parse_args()
    path = args.data or os.path.join(os.environ.get("MEDJAX_DATA_DIR", "data"), "breastmnist.npz")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, changes in RUNS.items():
                test = train_and_evaluate(
                    recipe(path, seed=seed, **changes), f"{tmp}/{seed}-{name}"
                )["test"]
                rows.append(
                    {
                        "seed": seed,
                        "run": name,
                        "sensitivity": round(test["sensitivity"], 3),
                        "auc": round(test["auc"], 3),
                    }
                )
                print(rows[-1], flush=True)
    summary = {}
    for name in RUNS:
        mine = [r for r in rows if r["run"] == name]
        summary[name] = {
            key: [min(r[key] for r in mine), max(r[key] for r in mine)]
            for key in ("sensitivity", "auc")
        }
        print(
            f"{name:18s} malignant sensitivity {summary[name]['sensitivity'][0]:.2f}-"
            f"{summary[name]['sensitivity'][1]:.2f}, test AUC {summary[name]['auc'][0]:.2f}-"
            f"{summary[name]['auc'][1]:.2f} over seeds 0-{args.seeds - 1}"
        )
    print(json.dumps({"runs": rows, "ranges": summary}))


if __name__ == "__main__":
    main()
