"""Score a trained phantom run's explanations against the phantom's ground-truth lesions.

`evaluate(run, methods)` explains the test images with a lesion for their labelled class with
each `medjax.explain` method and returns `medjax.eval.localisation.localisation_report` per
method.
"""

import jax
import numpy as np

from medjax.data import load_dataset
from medjax.data.phantom import phantom_masks
from medjax.eval.localisation import localisation_report
from medjax.explain import EXPLAINERS, explain_images


def explanation_maps(run, images, targets, method: str) -> np.ndarray:
    """(N, H, W) maps of `method` for the `targets` classes."""
    return np.asarray(explain_images(run, images, method=method, targets=targets))


def split_with_masks(run, split: str = "test"):
    """(model inputs, labels, masks) of a phantom run's split, regenerated from its config."""
    raw = load_dataset(run.config.data).splits[split]
    return run.preprocess_images(raw.images), raw.labels, phantom_masks(run.config.data)[split]


def evaluate(run, methods=None, split: str = "test", **report_kw) -> dict[str, dict]:
    """method -> localisation_report over `split`'s images with a lesion."""
    images, labels, masks = split_with_masks(run, split)
    keep = masks.any((1, 2))
    images, labels, masks = images[keep], labels[keep], masks[keep]
    probs = jax.jit(lambda x: run.probs_fn()(run.variables, x))
    return {
        m: localisation_report(
            explanation_maps(run, images, labels, m), masks, labels, probs, images, **report_kw
        )
        for m in (methods or EXPLAINERS.names())
    }


COLUMNS = (
    ("pointing", "pointing"),
    ("random_pointing", "random"),
    ("centre_pointing", "centre"),
    ("energy", "energy"),
    ("random_energy", "random"),
    ("centre_energy", "centre"),
    ("deletion", "deletion"),
    ("deletion_random", "random"),
    ("insertion", "insertion"),
    ("insertion_random", "random"),
)


def table(reports: dict) -> str:
    """A markdown table, one row per method."""
    head = "| method | " + " | ".join(label for _, label in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for method, r in reports.items():
        cells = " | ".join(f"{r[k]:.3f}" if k in r else "-" for k, _ in COLUMNS)
        rows.append(f"| {method} | {cells} |")
    return "\n".join(rows)
