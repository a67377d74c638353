"""k-fold cross-validation in a sweep: every setting run on each fold, then pooled.

`python -m medjax.sweep --config ... --workdir W --folds K` adds `data.num_folds=K` and
`data.fold=0..K-1` to every run the sweep file lists (medjax.sweep.grid.load_sweep). Each fold
trains on the other folds of train+val and is validated on its own (test stays fixed,
medjax.data.splits). Runs that differ only in `data.fold` form one cross-validated setting:
W/folds.json holds, per setting (and seed), the mean and SD across folds of each validation and
test metric, and the pooled out-of-fold predictions' metrics (every train+val image predicted
once, by the model that did not train on it; each run's WORKDIR/predictions/val.npz) with
bootstrap 95% intervals.
"""

import json
import os

import numpy as np

from medjax.errors import ConfigError
from medjax.eval.metrics import classification_metrics
from medjax.sweep import stats
from medjax.sweep.runner import run_dir
from medjax.train import predictions
from medjax.train import workdir as wd

FOLD, NUM_FOLDS, SEED = "data.fold", "data.num_folds", "seed"
FILE = "folds.json"
BOOTSTRAP = 1000


def with_folds(items: list, folds: int, path: str) -> list:
    """Each run of `items` once per fold, the fold keys before the seed (run names end with
    it)."""
    if folds < 2:
        raise ConfigError(f"--folds {folds}: give 2 or more folds (5 is usual)")
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(item)  # load_sweep reports it
            continue
        if FOLD in item or NUM_FOLDS in item:
            raise ConfigError(
                f"sweep() in {path} sets {FOLD} or {NUM_FOLDS} itself; drop --folds or those keys"
            )
        rest = {k: v for k, v in item.items() if k != SEED}
        seed = {SEED: item[SEED]} if SEED in item else {}
        out += [{**rest, NUM_FOLDS: folds, FOLD: f, **seed} for f in range(folds)]
    return out


def _groups(records: list) -> dict:
    """(overrides less data.fold) -> the records of its folds, for runs with num_folds > 1."""
    out = {}
    for rec in records:
        texts = rec["run"].texts
        if FOLD in texts and int(texts.get(NUM_FOLDS, "0")) > 1:
            key = tuple((k, v) for k, v in texts.items() if k != FOLD)
            out.setdefault(key, []).append(rec)
    return out


def _positive_class(workdir: str) -> int:
    with open(os.path.join(workdir, "config.json")) as f:
        return int(json.load(f)["eval"]["positive_class"])


def pool(workdir: str, recs: list) -> dict:
    """Mean ± SD across folds of each metric, and the pooled out-of-fold metrics."""
    done = [r for r in recs if r["status"] == "finished"]
    num_folds = int(recs[0]["run"].texts[NUM_FOLDS])
    names = sorted({m for r in done for m in r["metrics"]})
    names = [m for m in names if m.startswith(("val_", "test_")) and "augmented" not in m]
    out = {
        "num_folds": num_folds,
        "folds_finished": sorted(int(r["run"].texts[FOLD]) for r in done),
        "across_folds": {
            m: {k: v for k, v in stats.describe([r["metrics"].get(m) for r in done]).items()}
            for m in names
        },
    }
    if len(done) == num_folds:
        paths = [run_dir(workdir, r["run"].name) for r in done]
        parts = [predictions.load_split(p, "val") for p in paths]
        probs = np.concatenate([p for p, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        m = classification_metrics(
            labels, probs, probs.shape[1], _positive_class(paths[0]), BOOTSTRAP
        )
        out["pooled"] = {
            "images": int(len(labels)),
            "auc": m["auc"],
            "auc_ci95": m["ci95"]["auc"],
            "accuracy": m["accuracy"],
            "accuracy_ci95": m["ci95"]["accuracy"],
            "bootstrap_samples": BOOTSTRAP,
        }
    return out


def _fmt(d: dict) -> str:
    if not d["n"]:
        return "-"
    return f"{d['mean']:.3f}" if d["n"] == 1 else f"{d['mean']:.3f} ± {d['sd']:.3f}"


def write(workdir: str, records: list, select: str) -> list[str]:
    """Write W/folds.json when the sweep has folds; returns summary.md's lines about them."""
    groups = _groups(records)
    if not groups:
        return []
    pooled = [{"setting": dict(key), **pool(workdir, recs)} for key, recs in groups.items()]
    wd.write_json(os.path.join(workdir, FILE), {"settings": pooled})
    lines = [
        "",
        "## Cross-validation",
        "",
        f"Mean ± SD across folds; pooled: the out-of-fold validation predictions of all folds "
        f"together, with a {BOOTSTRAP}-resample bootstrap 95% interval. Details: {FILE}.",
        "",
        f"| setting | folds | {select} | test_auc | pooled AUC [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for row in pooled:
        label = ", ".join(f"{k}={v}" for k, v in row["setting"].items() if k != NUM_FOLDS)
        p = row.get("pooled")
        auc = f"{p['auc']:.3f} [{p['auc_ci95'][0]:.3f}, {p['auc_ci95'][1]:.3f}]" if p else "-"
        across = row["across_folds"]
        cells = [_fmt(across[m]) if m in across else "-" for m in (select, "test_auc")]
        lines.append(
            f"| {label or 'base'} | {len(row['folds_finished'])}/{row['num_folds']} | "
            f"{cells[0]} | {cells[1]} | {auc} |"
        )
    return lines
