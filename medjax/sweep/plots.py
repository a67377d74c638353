"""The sweep's figures, as PNG files beside summary.md.

Figures are built on matplotlib's object API (`Figure`, not pyplot), which renders with Agg
and never opens a window or touches the global backend of a notebook that imports medjax.
"""

import math
import os

import numpy as np
from matplotlib.figure import Figure

NAMES = {"auc": "AUC", "accuracy": "ACC", "balanced_accuracy": "balanced ACC", "f1": "F1"}


def metric_label(metric: str) -> str:
    """'test_auc' -> 'test AUC'."""
    split, _, name = metric.partition("_")
    return f"{split} {NAMES.get(name, name)}"


def bars(path: str, groups: list, metrics: list, best) -> None:
    """Mean of each metric per setting with its 95% t-interval; the best setting in red."""
    n = len(groups)
    fig = Figure(figsize=(3.2 * len(metrics) + 2, 0.28 * n + 1.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    y = np.arange(n)
    for ax, m in zip(axes, metrics, strict=True):
        means = np.array([g["stats"][m]["mean"] for g in groups])
        lo = np.array([g["stats"][m]["ci95"][0] for g in groups])
        hi = np.array([g["stats"][m]["ci95"][1] for g in groups])
        err = np.nan_to_num(np.stack([means - lo, hi - means]), nan=0.0)
        colors = ["tab:red" if i == best else "tab:blue" for i in range(n)]
        ax.barh(y, means, xerr=err, color=colors, alpha=0.8, capsize=2)
        finite = means[np.isfinite(means)]
        if finite.size:
            ax.set_xlim(
                max(0.0, float(np.nanmin(np.where(np.isfinite(lo), lo, means))) - 0.05), 1.0
            )
        ax.set_xlabel(metric_label(m))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, [g["label"] for g in groups], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("mean over seeds, 95% t-interval (red: best by validation)")
    fig.savefig(path, dpi=110)


def heatmap(path: str, groups: list, keys: list, metric: str, best) -> None:
    """Mean `metric` over the grid of the two factors `keys`."""
    rows = list(dict.fromkeys(dict(g["setting"])[keys[0]] for g in groups))
    cols = list(dict.fromkeys(dict(g["setting"])[keys[1]] for g in groups))
    values = np.full((len(rows), len(cols)), np.nan)
    best_cell = None
    for i, g in enumerate(groups):
        s = dict(g["setting"])
        r, c = rows.index(s[keys[0]]), cols.index(s[keys[1]])
        values[r, c] = g["stats"][metric]["mean"]
        if i == best:
            best_cell = (r, c)
    fig = Figure(figsize=(1.0 * len(cols) + 2.5, 0.6 * len(rows) + 1.8), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label=f"mean {metric_label(metric)}")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(keys[1])
    ax.set_ylabel(keys[0])
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            star = "*" if (r, c) == best_cell else ""
            color = "white" if v < middle else "black"  # viridis: dark at the low end
            ax.text(c, r, f"{v:.3f}{star}", ha="center", va="center", fontsize=8, color=color)
    ax.set_title(f"mean {metric_label(metric)} over seeds (* best by validation)")
    fig.savefig(path, dpi=110)


def _band(curves: list[dict]):
    """Steps every seed logged, with the mean and standard deviation across seeds."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = np.array([[c[s] for s in steps] for c in curves], dtype=float)
    if not steps:
        return np.array([]), np.array([]), np.array([])
    sd = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(steps))
    return np.array(steps), values.mean(axis=0), sd


def curves(path: str, groups: list, keys: list, which: str, ylabel: str) -> bool:
    """One panel per value of the first factor, a line per setting, a band of ±1 SD over
    seeds. Returns False when no run logged anything."""
    panel_of = (lambda g: dict(g["setting"]).get(keys[0], "")) if len(keys) > 1 else (lambda g: "")
    panels = list(dict.fromkeys(panel_of(g) for g in groups))
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False, sharey=True).ravel()
    drawn = False
    for ax, panel in zip(axes, panels, strict=False):
        for g in groups:
            if panel_of(g) != panel:
                continue
            # finished runs only, as in the tables: a partial curve would cut the band short
            runs = [
                r["curves"][which]
                for r in g["records"]
                if r["status"] == "finished" and r["curves"][which]
            ]
            steps, mean, sd = _band(runs)
            if not len(steps):
                continue
            label = (
                " / ".join(dict(g["setting"]).get(k, "") for k in keys[1:]) if panel else g["label"]
            )
            (line,) = ax.plot(steps, mean, label=f"{label} (n={len(runs)})", lw=1.2)
            ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
            drawn = True
        ax.set_title(f"{keys[0]}={panel}" if panel else "", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].set_ylabel(ylabel)
    if drawn:
        fig.savefig(path, dpi=110)
    return drawn


def write_all(workdir: str, groups: list, keys: list, metrics: list, best) -> list:
    """Write every figure that applies; returns (title, file name) pairs for summary.md."""
    out = []
    if not any(g["stats"][metrics[0]]["n"] for g in groups):
        return out
    bars(os.path.join(workdir, "bars.png"), groups, metrics, best)
    out.append(("mean and 95% interval per setting", "bars.png"))
    test = next((m for m in metrics if m.startswith("test_")), metrics[0])
    if len(keys) == 2:
        heatmap(os.path.join(workdir, "heatmap.png"), groups, keys, test, best)
        out.append((f"{metric_label(test)} over {keys[0]} x {keys[1]}", "heatmap.png"))
    select = metrics[0]
    if curves(os.path.join(workdir, "curves_val.png"), groups, keys, "val", metric_label(select)):
        out.append((f"{metric_label(select)} during training", "curves_val.png"))
    if curves(os.path.join(workdir, "curves_loss.png"), groups, keys, "loss", "train loss"):
        out.append(("train loss", "curves_loss.png"))
    return out
