"""A sweep's results: summary.csv (one row per run) and summary.md (one row per setting).

The best setting is chosen on the mean validation metric alone (the one each run selects its
checkpoint by); test metrics are reported next to it, never used to choose. Each setting is
compared with the reference setting on the seeds both finished.
"""

import csv
import json
import math
import os

from medjax.errors import WorkdirError
from medjax.sweep import folds, plots, stats
from medjax.sweep.grid import PlannedRun, factors, settings
from medjax.sweep.plots import metric_label
from medjax.sweep.runner import FAILED, MANIFEST, run_dir, status_of


def _read(path):
    with open(path) as f:
        return json.load(f)


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _curves(path: str, select: str) -> dict:
    """Train loss and validation `select` by step, from the run's metrics.jsonl."""
    out = {"loss": {}, "val": {}}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("split") == "val" and select in row:
                    out["val"][row["step"]] = row[select]
                elif "loss" in row:
                    out["loss"][row["step"]] = row["loss"]
    return out


def collect(workdir: str) -> tuple[dict, list]:
    """The manifest and one record per run (status, metrics, timings, error, curves)."""
    path = os.path.join(workdir, MANIFEST)
    if not os.path.exists(path):
        raise WorkdirError(f"{workdir} holds no {MANIFEST}; pass the --workdir of a sweep")
    manifest = _read(path)
    select = manifest["select"]["metric"]
    records = []
    for entry in manifest["runs"]:
        d = run_dir(workdir, entry["name"])
        rec = {
            "run": PlannedRun(entry["name"], entry["overrides"]),
            "status": status_of(d),
            "error": "",
        }
        rec["metrics"], rec["timings"] = {}, {}
        if rec["status"] == "finished":
            results = _read(os.path.join(d, "results.json"))
            for split in ("val", "test", "val_augmented"):  # the last: the train/eval gap
                rec["metrics"].update(
                    {f"{split}_{k}": v for k, v in _scalars(results.get(split, {})).items()}
                )
            rec["selected_step"] = results.get("selected_step")
            rec["warnings"] = " | ".join(results.get("warnings", []))
            if os.path.exists(os.path.join(d, "run_card.json")):
                rec["timings"] = _read(os.path.join(d, "run_card.json")).get("timings", {})
        elif rec["status"] == "failed":
            rec["error"] = _read(os.path.join(d, FAILED)).get("error", "")
        rec["curves"] = _curves(os.path.join(d, "metrics.jsonl"), select)
        records.append(rec)
    return manifest, records


def write_csv(path: str, records: list) -> None:
    keys = list(dict.fromkeys(k for r in records for k in r["run"].texts))
    metrics = list(dict.fromkeys(m for r in records for m in r["metrics"]))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["run", "status", *keys, *metrics, "selected_step", "wall_s", "images_per_s"]
            + ["warnings", "error"]
        )
        for r in records:
            w.writerow(
                [
                    r["run"].name,
                    r["status"],
                    *(r["run"].texts.get(k, "") for k in keys),
                    *(r["metrics"].get(m, "") for m in metrics),
                    r.get("selected_step", ""),
                    r["timings"].get("wall_s", ""),
                    r["timings"].get("train_images_per_s", ""),
                    r.get("warnings", ""),
                    r["error"],
                ]
            )


def _fmt(d: dict) -> str:
    if d["n"] == 0:
        return "-"
    if d["n"] == 1:
        return f"{d['mean']:.3f}"
    lo, hi = d["ci95"]
    return f"{d['mean']:.3f} ± {d['sd']:.3f} [{lo:.3f}, {hi:.3f}]"


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "-"
    return f"{p:.3g}"


def aggregate(records: list, metrics: list) -> list[dict]:
    """One entry per setting: its runs by seed and `stats.describe` of each metric."""
    groups = settings([r["run"] for r in records])
    by_name = {r["run"].name: r for r in records}
    out = []
    for setting, runs in groups.items():
        recs = [by_name[r.name] for r in runs]
        done = [r for r in recs if r["status"] == "finished"]
        out.append(
            {
                "setting": setting,
                "records": recs,
                "by_seed": {r["run"].seed: r["metrics"] for r in done},
                "stats": {m: stats.describe([r["metrics"].get(m) for r in done]) for m in metrics},
            }
        )
    return out


def best_index(groups: list, select: str, mode: str):
    scored = [(i, g["stats"][select]["mean"]) for i, g in enumerate(groups)]
    scored = [(i, s) for i, s in scored if not math.isnan(s)]
    if not scored:
        return None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda x: x[1])[0]


def comparisons(groups: list, reference: tuple, metrics: list) -> dict:
    """metric -> rows of the paired comparison of each setting with the reference."""
    ref = next(g for g in groups if g["setting"] == reference)
    out = {}
    for m in metrics:
        rows = []
        for g in groups:
            if g is ref:
                continue
            seeds = [s for s in g["by_seed"] if s in ref["by_seed"]]
            seeds = [s for s in seeds if m in g["by_seed"][s] and m in ref["by_seed"][s]]
            rows.append(
                {
                    "group": g,
                    **stats.paired(
                        [g["by_seed"][s][m] for s in seeds], [ref["by_seed"][s][m] for s in seeds]
                    ),
                }
            )
        for row, adjusted in zip(rows, stats.holm([r["t_p"] for r in rows]), strict=True):
            row["holm_p"] = adjusted
        out[m] = rows
    return out


def write_summary(workdir: str) -> dict:
    """Write summary.csv, summary.md and the plots; returns counts and the best setting."""
    manifest, records = collect(workdir)
    select = f"val_{manifest['select']['metric']}"
    metrics = list(dict.fromkeys([select, "test_auc", "test_accuracy"]))
    write_csv(os.path.join(workdir, "summary.csv"), records)
    groups = aggregate(records, metrics)
    keys = factors([g["setting"] for g in groups])
    for g in groups:
        g["label"] = " / ".join(dict(g["setting"]).get(k, "") for k in keys) or "base"
    best = best_index(groups, select, manifest["select"]["mode"])
    reference = tuple(tuple(x) for x in manifest["reference"].items())
    compared = comparisons(groups, reference, metrics)
    images = plots.write_all(workdir, groups, keys, metrics, best)
    counts = {s: sum(r["status"] == s for r in records) for s in ("finished", "failed")}
    counts["unfinished"] = len(records) - counts["finished"] - counts["failed"]
    lines = _markdown(manifest, records, groups, keys, metrics, best, reference, compared, images)
    lines += folds.write(workdir, records, select)  # W/folds.json when the sweep has --folds
    with open(os.path.join(workdir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return {
        **counts,
        "runs": len(records),
        "best": groups[best]["label"] if best is not None else None,
        "best_stats": groups[best]["stats"] if best is not None else None,
        "failed_runs": [r["run"].name for r in records if r["status"] == "failed"],
    }


def _markdown(manifest, records, groups, keys, metrics, best, reference, compared, images):
    select = metrics[0]
    varying = [k for k in dict.fromkeys(k for g in groups for k, _ in g["setting"])]
    varying = [k for k in varying if len({dict(g["setting"]).get(k) for g in groups}) > 1]
    status = {s: sum(r["status"] == s for r in records) for s in ("finished", "failed")}
    ref_label = next(g["label"] for g in groups if g["setting"] == reference)
    lines = [
        f"# Sweep: `{manifest['config']}`",
        "",
        f"{len(records)} runs in {len(groups)} settings: {status['finished']} finished, "
        f"{status['failed']} failed, {len(records) - sum(status.values())} not finished. "
        f"Started {manifest['started']} with `{manifest['command']}`.",
        "",
    ]
    if best is not None:
        g = groups[best]
        lines += [
            f"**Best setting by mean {metric_label(select)}: {g['label']}** "
            + ", ".join(f"{metric_label(m)} {_fmt(g['stats'][m])}" for m in metrics)
            + ". It is chosen on validation alone; the test metrics are reported, not used "
            "to choose.",
            "",
        ]
    lines += [
        "## Settings",
        "",
        "Mean ± standard deviation over seeds [95% t-interval of the mean: mean ± "
        "t(0.975, n-1)·SD/√n]; n = finished seeds.",
        "",
        "| | "
        + " | ".join(f"`{k}`" for k in varying)
        + " | n | "
        + " | ".join(metric_label(m) for m in metrics)
        + " |",
        "|---" * (len(varying) + len(metrics) + 2) + "|",
    ]
    for i, g in enumerate(groups):
        mark = "**best**" if i == best else ("reference" if g["setting"] == reference else "")
        s = dict(g["setting"])
        n = g["stats"][select]["n"]
        lines.append(
            f"| {mark} | "
            + " | ".join(s.get(k, "") for k in varying)
            + f" | {n} | "
            + " | ".join(_fmt(g["stats"][m]) for m in metrics)
            + " |"
        )
    lines += [
        "",
        f"## Against the reference ({ref_label})",
        "",
        "Differences (setting - reference) paired over the seeds both finished, two-sided: "
        "paired t-test (scipy.stats.ttest_rel), Holm-adjusted over the settings compared, and "
        f"the Wilcoxon signed-rank test where n >= {stats.WILCOXON_MIN_N}.",
    ]
    for m in metrics:
        lines += [
            "",
            f"### {metric_label(m)}",
            "",
            "| setting | n | mean difference | t-test p | Holm p | Wilcoxon p |",
            "|---|---|---|---|---|---|",
        ]
        for row in compared[m]:
            wilcoxon = (
                _p(row["wilcoxon_p"]) if row["wilcoxon_p"] is not None else row["wilcoxon_note"]
            )
            diff = "-" if math.isnan(row["mean_diff"]) else f"{row['mean_diff']:+.3f}"
            lines.append(
                f"| {row['group']['label']} | {row['n']} | {diff} | {_p(row['t_p'])} | "
                f"{_p(row['holm_p'])} | {wilcoxon} |"
            )
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        lines += ["", "## Failed runs", "", "| run | error |", "|---|---|"]
        lines += [f"| {r['run'].name} | {r['error'].replace('|', '/')} |" for r in failed]
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{title}]({name})" for title, name in images]
    return lines
