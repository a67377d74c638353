"""The README's "The review's designs" table on real BreastMNIST: every design's experiment
file over seeds 0-2, each run a plain `python -m medjax.run`, then mean +- SD of the test
metrics.

    MEDJAX_DATA_DIR=/path/to/medmnist python tools/review_table.py --out runs/review [--only plain,ensemble_soft]

Finished runs are read, not retrained, and an interrupted one resumes, so the command can be
stopped and run again. The architecture search is left out (its own command is in
experiments/review/search_cnn.py). Prints one markdown row per design.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

# name -> experiments/review/<file>.py and its config arguments (besides seed)
DESIGNS = {
    "plain": ("plain_cnn", ""),
    **{
        f"head_{h}": ("cnn_svm", f"head={h}")
        for h in ("svm", "svm_linear", "logreg", "rf", "knn", "elm", "mlp")
    },
    **{f"ensemble_{m}": ("ensemble_cnns", f"method={m}") for m in ("soft", "hard", "stacking")},
    "edge_early": ("edge_fusion", "edges=sobel"),
    "dwt_early": ("dwt_fusion", "fusion=early"),
    "dwt_late": ("dwt_fusion", "fusion=late"),
    "dwt_twin": ("dwt_fusion", "fusion=twin"),
    "dari_after": ("dari_augment", ""),
    "dari_instead": ("dari_augment", "mode=instead"),
    **{f"oversample_{m}": ("gan_oversample", f"method={m}") for m in ("gan", "smote", "weights")},
    "cnn_self_attention": ("cnn_self_attention", ""),
    "vit_conv_stem": ("vit_conv_stem", ""),
}
METRICS = ("auc", "accuracy", "sensitivity")


def run(name: str, seed: int, out: str) -> dict:
    file, args = DESIGNS[name]
    spec = f"experiments/review/{file}.py:" + ",".join(filter(None, [f"seed={seed}", args]))
    workdir = os.path.join(out, f"{name}-{seed}")
    results = os.path.join(workdir, "results.json")
    if not os.path.exists(results):
        cmd = [sys.executable, "-m", "medjax.run", "--config", spec, "--workdir", workdir]
        if file == "ensemble_cnns":  # the three methods share the seed's members
            cmd.append(f"--config.ensemble.members_dir={out}/ensemble_members-{seed}")
        print(" ".join(cmd), flush=True)
        subprocess.run([*cmd, "--config.log.plots=False"], check=True)
    with open(results) as f:
        return json.load(f)["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/review", help="folder for the runs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1")
    parser.add_argument("--only", default="", help="comma-separated design names")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(DESIGNS)
    unknown = sorted(set(names) - set(DESIGNS))
    if unknown:
        parser.error(f"unknown designs {unknown}; valid: {', '.join(DESIGNS)}")
    rows = {n: [run(n, s, args.out) for s in range(args.seeds)] for n in names}
    print(f"| design | {' | '.join(METRICS)} |\n|---|{'---|' * len(METRICS)}")
    for name, tests in rows.items():
        cells = []
        for m in METRICS:
            v = np.array([t[m] for t in tests])
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            cells.append(f"{v.mean():.3f} ± {sd:.3f}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
