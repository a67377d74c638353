"""Pictures of explanation maps: one overlay figure per image (image | map | overlay) and a
gallery of true positives, false positives and false negatives (matplotlib, Agg)."""

import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SIGNED = ("integrated_gradients", "occlusion")  # attributions of either sign


def _unit(image):
    """An image (…, C) as grey or RGB in [0, 1] for display."""
    image = image[..., 0] if image.shape[-1] == 1 else image[..., :3]
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def slices(x, volume: bool) -> list:
    """A 2D image or map as itself; a volume (D, H, W, ...) as its middle slice along each
    axis."""
    x = np.asarray(x)
    if not volume:
        return [x]
    d, h, w = x.shape[:3]
    return [x[d // 2], x[:, h // 2], x[:, :, w // 2]]


def _draw_map(ax, m, signed: bool):
    if signed:
        lim = float(np.abs(m).max()) or 1.0
        return ax.imshow(m, cmap="bwr", vmin=-lim, vmax=lim)
    return ax.imshow(m, cmap="jet", vmin=0, vmax=float(m.max()) or 1.0)


def _overlay(ax, image, m, signed: bool):
    ax.imshow(_unit(image), cmap="gray")
    shown = np.abs(m) if signed else m
    top = float(shown.max()) or 1.0
    ax.imshow(shown, cmap="jet", alpha=0.45 * np.clip(shown / top, 0, 1) + 0.05, vmin=0, vmax=top)


def title(class_names, label: int | None, probs, method: str) -> str:
    """The overlay's heading; `label` None for an image without a known class."""
    pred = int(np.argmax(probs))
    truth = "" if label is None else f"true {class_names[label]}, "
    return f"{truth}predicted {class_names[pred]} (p={probs[pred]:.2f}); {method}"


def overlay_figure(image, m, heading: str, method: str):
    """image | map | overlay; one row per slice for a volume (its three middle slices)."""
    volume = np.ndim(m) == 3
    rows = list(zip(slices(image, volume), slices(m, volume), strict=True))
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    signed = method in SIGNED
    for (im, mm), row in zip(rows, axes, strict=True):
        row[0].imshow(_unit(im), cmap="gray")
        fig.colorbar(_draw_map(row[1], mm, signed), ax=row[1], fraction=0.046)
        _overlay(row[2], im, mm, signed)
        for ax in row:
            ax.axis("off")
    for ax, name in zip(axes[0], ("image", "map", "overlay"), strict=True):
        ax.set_title(name, fontsize=9)
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-") or "class"


def save_overlays(out_dir, images, maps, indices, labels, probs, class_names, method) -> list:
    """OUT/<index>_<label>_<pred>.png for each image (<index>_<pred>.png where `labels` is
    None: new images without a known class); returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    labels = [None] * len(images) if labels is None else [int(x) for x in labels]
    for image, m, index, label, p in zip(images, maps, indices, labels, probs, strict=True):
        pred = int(np.argmax(p))
        known = "" if label is None else f"{_safe(class_names[label])}_"
        name = f"{index}_{known}{_safe(class_names[pred])}.png"
        fig = overlay_figure(image, m, title(class_names, label, p, method), method)
        fig.savefig(os.path.join(out_dir, name), dpi=100)
        plt.close(fig)
        paths.append(os.path.join(out_dir, name))
    return paths


def groups(labels, probs, positive_class: int | None) -> dict:
    """{group title: indices, most confident first}: true positives, false positives and false
    negatives of `positive_class` for a binary task, correct and wrong otherwise."""
    labels, preds = np.asarray(labels), np.asarray(probs).argmax(-1)
    confidence = np.asarray(probs).max(-1)
    if np.asarray(probs).shape[-1] == 2 and positive_class is not None:
        pos = positive_class
        masks = {
            "true positives": (labels == pos) & (preds == pos),
            "false positives": (labels != pos) & (preds == pos),
            "false negatives": (labels == pos) & (preds != pos),
        }
    else:
        masks = {"correct": labels == preds, "wrong": labels != preds}
    return {
        k: np.flatnonzero(v)[np.argsort(-confidence[v], kind="stable")] for k, v in masks.items()
    }


def gallery(path, images, maps, labels, probs, class_names, method, positive_class=None, per_row=6):
    """One row per group (see `groups`) of up to `per_row` overlays, most confident first;
    a volume shows its middle axial slice."""
    rows = groups(labels, probs, positive_class)
    fig, axes = plt.subplots(
        len(rows), per_row, figsize=(2 * per_row, 2.3 * len(rows)), squeeze=False
    )
    for (name, idx), row in zip(rows.items(), axes, strict=True):
        row[0].set_title(f"{name} ({len(idx)})", fontsize=9, loc="left")
        for ax, i in zip(row, list(idx[:per_row]) + [None] * per_row, strict=False):
            ax.axis("off")
            if i is None:
                continue
            volume = np.ndim(maps[i]) == 3
            image, m = slices(images[i], volume)[0], slices(maps[i], volume)[0]
            _overlay(ax, image, m, method in SIGNED)
            pred = int(np.argmax(probs[i]))
            ax.text(
                0.02,
                0.02,
                f"#{i} p={probs[i][pred]:.2f}",
                transform=ax.transAxes,
                color="white",
                fontsize=7,
                backgroundcolor="black",
            )
    fig.suptitle(
        f"{method}: positive class {class_names[positive_class]}" if len(rows) == 3 else method,
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
