"""Score a trained phantom run's explanations against the phantom's ground-truth lesions.

`evaluate(run, methods)` explains the test images with a lesion for their labelled class and
returns `medjax.eval.localisation.localisation_report` per method. Methods come from
`medjax.explain.EXPLAINERS` when that package exists; otherwise only "saliency" (|d logit /
d input| summed over channels, Simonyan et al. 2014), computed here.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import load_dataset
from medjax.data.phantom import phantom_masks
from medjax.errors import ConfigError
from medjax.eval.localisation import localisation_report


def available_methods() -> list[str]:
    try:
        from medjax.explain import EXPLAINERS
    except ImportError:
        return ["saliency"]
    return list(EXPLAINERS.names())


def saliency_maps(run, images, targets, batch_size: int = 128) -> np.ndarray:
    """(N, H, W): |d logit[target] / d image| summed over channels."""
    logits = run.logits_fn()

    def one(variables, image, target):
        return logits(variables, image[None])[0, target]

    grads = jax.jit(jax.vmap(jax.grad(one, argnums=1), in_axes=(None, 0, 0)))
    out = [
        np.asarray(
            jnp.abs(
                grads(run.variables, images[i : i + batch_size], targets[i : i + batch_size])
            ).sum(-1)
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def explanation_maps(run, images, targets, method: str) -> np.ndarray:
    """(N, H, W) maps of `method` for the `targets` classes."""
    try:
        from medjax.explain import explain_images
    except ImportError:
        if method != "saliency":
            raise ConfigError(
                f"explanation method {method!r} needs medjax.explain, which is not installed; "
                f"use 'saliency'"
            ) from None
        return saliency_maps(run, images, targets)
    params = inspect.signature(explain_images).parameters
    extra = {k: targets for k in ("targets", "target", "classes") if k in params}
    maps = np.asarray(explain_images(run, images, method=method, **extra))
    return maps.sum(-1) if maps.ndim == 4 else maps


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
        for m in (methods or available_methods())
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
