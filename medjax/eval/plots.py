"""The evaluation's figures, PNG files in WORKDIR/plots/ (and an external evaluation's --out).

roc_pr.png: ROC and precision-recall curves (binary: of the positive class; multi-class: each
class one-vs-rest) with the argmax and the validation-chosen operating point marked;
confusion_matrix.png: counts and row-normalised (each true class's row sums to 1);
reliability.png: the reliability diagram before and after temperature scaling;
learning_curves.png: training loss and validation metrics by step (from metrics.jsonl).
matplotlib's object API (`Figure`) renders with Agg and never touches pyplot's global state.
"""

import os

import numpy as np
from matplotlib.figure import Figure
from sklearn import metrics as skm

DPI = 100


def _save(fig: Figure, folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=DPI)
    return path


def roc_pr(folder, labels, probs, class_names, positive, split_metrics, point=None) -> str:
    """ROC and PR curves; `split_metrics` (the split's classification_metrics) places the
    argmax, `point` (the operating point's metrics on this split and its threshold) the
    chosen threshold."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    roc_ax, pr_ax = fig.subplots(1, 2)
    labels = np.asarray(labels)
    multi_label = labels.ndim == 2  # one curve per finding
    binary = len(class_names) == 2 and not multi_label
    for c in [positive] if binary else range(len(class_names)):
        is_c = labels[:, c] == 1 if multi_label else labels == c
        score = np.asarray(probs)[:, c]
        if is_c.all() or not is_c.any():
            continue
        fpr, tpr, _ = skm.roc_curve(is_c, score)
        precision, recall, _ = skm.precision_recall_curve(is_c, score)
        name = class_names[c]
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(is_c, score):.3f})")
        ap = skm.average_precision_score(is_c, score)
        pr_ax.step(recall, precision, where="post", label=f"{name} (AP {ap:.3f})")
    if binary:
        _mark(roc_ax, pr_ax, split_metrics, "o", "argmax")
        if point:
            _mark(roc_ax, pr_ax, point["metrics"], "*", f"threshold {point['threshold']:.3f}")
    roc_ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    pr_ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="lower right" if ax is roc_ax else "lower left", fontsize=8)
    return _save(fig, folder, "roc_pr.png")


def _mark(roc_ax, pr_ax, m, marker, label) -> None:
    size = 14 if marker == "*" else 7
    roc_ax.plot(1 - m["specificity"], m["sensitivity"], marker, ms=size, color="k", label=label)
    pr_ax.plot(m["sensitivity"], m["ppv"], marker, ms=size, color="k", label=label)


def confusion(folder, cm, class_names, title="") -> str:
    cm = np.asarray(cm)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(class_names)
    side = 2.2 + 0.55 * k
    fig = Figure(figsize=(2 * side + 1, side), layout="constrained")
    for ax, values, fmt, what in zip(
        fig.subplots(1, 2),
        (cm, rows),
        ("{:d}", "{:.2f}"),
        ("counts", "row-normalised"),
        strict=True,
    ):
        ax.imshow(values if what == "counts" else rows, cmap="Blues", vmin=0)
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                shade = "white" if rows[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    fmt.format(int(v) if what == "counts" else v),
                    ha="center",
                    va="center",
                    color=shade,
                    fontsize=8,
                )
        ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=what)
    if title:
        fig.suptitle(title)
    return _save(fig, folder, "confusion_matrix.png")


def reliability(folder, before: dict, after: dict | None, ece_before, ece_after=None) -> str:
    """Accuracy against mean confidence per bin (the top class), marker area by count."""
    panels = [("before temperature scaling", before, ece_before)]
    if after is not None:
        panels.append(("after temperature scaling", after, ece_after))
    fig = Figure(figsize=(4.4 * len(panels), 4.2), layout="constrained")
    for ax, (title, rel, ece) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        edges = np.linspace(0, 1, rel["bins"] + 1)
        acc = np.array([np.nan if a is None else a for a in rel["accuracy"]])
        conf = np.array([np.nan if c is None else c for c in rel["confidence"]])
        count = np.asarray(rel["count"])
        ax.bar(
            edges[:-1],
            np.nan_to_num(acc),
            width=np.diff(edges),
            align="edge",
            alpha=0.5,
            edgecolor="k",
            label="accuracy in bin",
        )
        ax.scatter(
            conf,
            acc,
            s=20 + 200 * count / max(count.max(), 1),
            color="tab:red",
            zorder=3,
            label="(mean confidence, accuracy)",
        )
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="top-class confidence",
            ylabel="accuracy",
            title=f"{title}\nECE {ece:.3f}",
        )
        ax.legend(loc="lower right", fontsize=8)
    return _save(fig, folder, "reliability.png")


def learning_curves(folder, rows: list[dict], select_metric="auc", selected=None) -> str | None:
    train = [r for r in rows if "split" not in r and "loss" in r]
    val = [r for r in rows if r.get("split") == "val"]
    if not train and not val:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    loss_ax.set(xlabel="step", ylabel="loss", title="training")
    names = dict.fromkeys([select_metric, "accuracy", "balanced_accuracy"])
    for name in names:
        points = [(r["step"], r[name]) for r in val if name in r]
        if points:
            steps, values = np.array(points).T
            val_ax.plot(steps, values, marker="o", ms=3, label=f"val {name}")
    if selected:
        val_ax.axvline(selected, color="grey", ls="--", lw=0.8, label=f"tested (step {selected})")
    val_ax.set(xlabel="step", ylabel="metric", title="validation")
    for ax in (loss_ax, val_ax):
        ax.legend(fontsize=8)
    return _save(fig, folder, "learning_curves.png")


def write_evaluation_plots(folder, labels, probs, class_names, positive, metrics, extras):
    """roc_pr, confusion and reliability of one split: `metrics` its classification_metrics,
    `extras` {"operating_point": {"threshold", "metrics"} or None, "calibration": {
    "reliability_after", "ece_after"} or None}. Returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    if np.asarray(labels).ndim == 2:  # multi-label: no confusion matrix or top-class reliability
        return [roc_pr(folder, labels, probs, class_names, positive, metrics)]
    cal = extras.get("calibration") or {}
    return [
        roc_pr(
            folder, labels, probs, class_names, positive, metrics, extras.get("operating_point")
        ),
        confusion(folder, metrics["confusion_matrix"], class_names, "argmax"),
        reliability(
            folder,
            metrics["reliability"],
            cal.get("reliability_after"),
            metrics["ece"],
            cal.get("ece_after"),
        ),
    ]
