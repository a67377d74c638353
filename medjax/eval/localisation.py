"""Do explanation maps point at the lesion, and does the model depend on what they point at?

Maps are (N, H, W) arrays, one per image, larger = more important; masks are bool (N, H, W)
ground-truth lesion masks (e.g. `medjax.data.phantom.phantom_masks`).

- Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop"): a hit
  when the map's maximum lies within `tolerance` pixels of the mask; the hit rate over images
  with a lesion.
- Energy-based pointing game (Wang et al. 2020, Score-CAM): the fraction of the map's
  nonnegative energy that falls inside the mask.
- Baselines: uniform random maps (expected energy fraction and, at tolerance 0, expected hit
  rate = the mask's area fraction) and a centred Gaussian (centre bias).
- Deletion and insertion (Petsiuk et al. 2018, RISE): pixels are removed from the image (or
  inserted into a baseline image) in the map's order in `steps` equal steps, recording the
  target class's probability; the area under that curve (trapezoid, x from 0 to 1). A faithful
  map has a low deletion and a high insertion AUC, compared with random orderings.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _peak(maps: np.ndarray) -> np.ndarray:
    """(N, 2) row, column of each map's first maximum."""
    flat = maps.reshape(len(maps), -1).argmax(1)
    return np.stack(np.unravel_index(flat, maps.shape[1:]), 1)


def pointing_hits(maps, masks, tolerance: float = 0.0) -> np.ndarray:
    """Bool (N,): whether each map's maximum lies within `tolerance` pixels (Euclidean) of a
    mask pixel. Images without a lesion are never hits; select images with one first."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    hits = np.zeros(len(maps), bool)
    for i, (r, c) in enumerate(_peak(maps)):
        rows, cols = np.nonzero(masks[i])
        if len(rows):
            hits[i] = np.min((rows - r) ** 2 + (cols - c) ** 2) <= tolerance**2
    return hits


def energy_fractions(maps, masks) -> np.ndarray:
    """(N,): each map's nonnegative energy inside the mask over its total (0 for a map with
    none: it points nowhere)."""
    positive = np.maximum(np.asarray(maps, np.float64), 0)
    total = positive.sum((1, 2))
    inside = (positive * np.asarray(masks, bool)).sum((1, 2))
    return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)


def random_maps(shape, seed: int = 0) -> np.ndarray:
    """Uniform noise maps: the chance baseline."""
    return np.random.default_rng(seed).uniform(size=shape)


def centre_maps(shape, sigma: float = 0.25) -> np.ndarray:
    """A centred Gaussian for every image (sigma as a fraction of the side): the baseline of a
    map that only knows lesions are more often near the middle."""
    n, h, w = shape
    yy, xx = np.meshgrid(
        (np.arange(h) - (h - 1) / 2) / h, (np.arange(w) - (w - 1) / 2) / w, indexing="ij"
    )
    return np.broadcast_to(np.exp(-(yy**2 + xx**2) / (2 * sigma**2)), (n, h, w)).copy()


def blur(images, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (N, H, W, C) images over H and W (edges reflected): the
    baseline image RISE inserts pixels into."""
    images = np.asarray(images, np.float32)
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    out = images
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        size = out.shape[axis]
        out = sum(
            k * np.take(padded, np.arange(j, j + size), axis=axis) for j, k in enumerate(kernel)
        )
    return out.astype(np.float32)


def baseline_images(images, baseline="blur", sigma: float = 3.0) -> np.ndarray:
    """ "blur" (Gaussian, `sigma` px), a number (constant image), or an array like `images`."""
    images = np.asarray(images, np.float32)
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline {baseline!r}: use 'blur', a number or an image array")
        return blur(images, sigma)
    return np.broadcast_to(np.asarray(baseline, np.float32), images.shape).copy()


def _ranks(maps) -> np.ndarray:
    """(N, H, W) rank of each pixel in its map, 0 = most important (ties: row-major order)."""
    flat = np.asarray(maps, np.float64).reshape(len(maps), -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None], axis=1)
    return ranks.reshape(np.shape(maps))


@functools.partial(jax.jit, static_argnames="insert")
def _composite(images, base, ranks, count, insert: bool):
    changed = (ranks < count)[..., None]  # the `count` most important pixels
    return jnp.where(changed, images, base) if insert else jnp.where(changed, base, images)


def curves(probs_fn, images, maps, targets, steps=16, mode="deletion", baseline="blur"):
    """(N, steps + 1): the target class's probability after 0, 1/steps, ..., all pixels have
    been deleted (replaced by the baseline) or inserted (into the baseline), in each map's order.
    `probs_fn(images) -> (N, classes)` is the model, batched and jitted."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode {mode!r}: use 'deletion' or 'insertion'")
    images = np.asarray(images, np.float32)
    base = baseline_images(images, baseline)
    ranks, pixels = jnp.asarray(_ranks(maps)), int(np.prod(np.shape(maps)[1:]))
    rows, targets = np.arange(len(images)), np.asarray(targets)
    out = []
    for k in range(steps + 1):
        x = _composite(images, base, ranks, (k * pixels) // steps, mode == "insertion")
        out.append(np.asarray(probs_fn(x))[rows, targets])
    return np.stack(out, 1)


def auc(curve) -> np.ndarray:
    """Trapezoid area under curves sampled at equal steps over [0, 1] (last axis)."""
    curve = np.asarray(curve, np.float64)
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / (2 * (curve.shape[-1] - 1))


def deletion_insertion(
    probs_fn, images, maps, targets, steps=16, baseline="blur", seed=0, random_orderings=3
) -> dict:
    """Mean deletion and insertion AUCs of `maps`, and of `random_orderings` uniform random
    orderings (their mean): a faithful map deletes faster and inserts faster than chance."""
    out = {}
    for mode in ("deletion", "insertion"):
        out[mode] = float(
            auc(curves(probs_fn, images, maps, targets, steps, mode, baseline)).mean()
        )
        rand = [
            auc(
                curves(
                    probs_fn,
                    images,
                    random_maps(np.shape(maps), seed + r),
                    targets,
                    steps,
                    mode,
                    baseline,
                )
            ).mean()
            for r in range(random_orderings)
        ]
        out[f"{mode}_random"] = float(np.mean(rand))
    return out


def localisation_report(
    maps,
    masks,
    labels,
    probs_fn=None,
    images=None,
    tolerance=0.0,
    steps=16,
    baseline="blur",
    random_orderings=3,
    seed=0,
) -> dict:
    """Every localisation number of `maps` over the images with a lesion: pointing-game hit
    rate and energy fraction, the same for random and centre-bias maps, the masks' mean area
    fraction (chance), and, given `probs_fn` and the model-input `images`, the deletion and
    insertion AUCs of the labelled class against random orderings."""
    masks, labels = np.asarray(masks, bool), np.asarray(labels)
    keep = masks.any((1, 2))
    if not keep.any():
        raise ValueError("no image has a lesion (every mask is empty): nothing to localise")
    maps, masks, labels = np.asarray(maps)[keep], masks[keep], labels[keep]
    shape = masks.shape
    report = {"images": int(keep.sum()), "area_fraction": float(masks.mean())}
    for name, m in (
        ("map", maps),
        ("random", random_maps(shape, seed)),
        ("centre", centre_maps(shape)),
    ):
        prefix = "" if name == "map" else f"{name}_"
        report[f"{prefix}pointing"] = float(pointing_hits(m, masks, tolerance).mean())
        report[f"{prefix}energy"] = float(energy_fractions(m, masks).mean())
    if probs_fn is not None:
        report.update(
            deletion_insertion(
                probs_fn,
                np.asarray(images)[keep],
                maps,
                labels,
                steps,
                baseline,
                seed,
                random_orderings,
            )
        )
    return report
