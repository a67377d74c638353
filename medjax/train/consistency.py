"""Is the model evaluated the model that was trained? Checks run on the chosen checkpoint.

A network trained only on augmented images (resampled, so slightly blurred; intensity-
jittered; mixed) can rank well (high AUC) and still classify badly the plain images it is
evaluated on: its batch-norm statistics and decision rule fit the augmented ones (README,
"Resampling"). Two signs give it away, and every run looks for both:

* the train/eval gap: validation images evaluated as they are and the same images through
  the training augmentation (fixed keys) should score about alike. A difference larger than
  the margin whose paired 95% bootstrap interval excludes zero is reported either way, with
  its likely causes (on 78 images, three that flip are chance, not a gap);
* a shifted decision rule: a high macro AUC with a balanced accuracy far below it means the
  classes are ranked well but the argmax puts the boundaries in the wrong place.
"""

import dataclasses

import jax
import numpy as np

from medjax.eval import paired_difference_ci
from medjax.train.evaluate import metrics_of_runs, predict_runs

COMPARED = ("accuracy", "balanced_accuracy", "auc")


def augmenter(augment_fn, seed: int, chunk: int = 256):
    """(images, indices, labels) -> `images` through the training augmentation (per-class ops
    by `labels`, as in training), image k with a key fixed by (`seed`, `indices[k]`): the same
    draws every time the check runs. Compiled once, reused for every batch."""
    batched = jax.jit(jax.vmap(augment_fn))
    base = jax.random.fold_in(jax.random.key(seed), 7)
    keys = jax.jit(jax.vmap(lambda i: jax.random.fold_in(base, i)))

    def augment(images: np.ndarray, indices, labels) -> np.ndarray:
        out = [
            np.asarray(
                batched(
                    keys(np.asarray(indices[s : s + chunk])),
                    images[s : s + chunk],
                    np.asarray(labels[s : s + chunk]),
                )
            )
            for s in range(0, len(images), chunk)
        ]
        return np.concatenate(out)

    return augment


def as_trained(exp, trained):
    """(validation split through the training augmentation, the state with the BN statistics
    that fit augmented images): the model as it was trained, on images like its training
    images. With precise BN, its statistics are recomputed on the same training batches,
    augmented; without, the running statistics training kept are those."""
    seed, train, val = (
        exp.config.seed,
        exp.data.dataset.splits["train"],
        exp.data.dataset.splits["val"],
    )
    augment = augmenter(exp.augment_fn, seed)
    images = augment(val.images, np.arange(len(val)), val.labels)
    state = trained
    if exp.precise_bn:
        state = exp.precise_bn(
            trained, lambda idx: augment(train.images[idx], idx, train.labels[idx])
        )
    return dataclasses.replace(val, images=images), state


def gaps(exp, trained, plain, plain_metrics) -> list[tuple]:
    """(val_augmented metrics, gap with paired intervals, warnings) of each run, given its
    validation probabilities and metrics as evaluated (`plain`, (K, N, classes))."""
    val = exp.data.dataset.splits["val"]
    augmented, state = as_trained(exp, trained)
    sharding, num_classes = exp.batch_shardings()[1], exp.data.dataset.num_classes
    aug = predict_runs(exp.eval_step, state, augmented, exp.configs, sharding, "val, augmented")
    out = []
    for config, p, a, plain_m in zip(exp.configs, plain, aug, plain_metrics, strict=True):
        positive, e = config.eval.positive_class, config.eval
        aug_m = metrics_of_runs([a], val.labels, [config], num_classes)[0]
        # multi-label: the margin alone decides (no paired intervals per finding)
        ci95 = (
            e.bootstrap_samples
            and val.labels.ndim == 1
            and paired_difference_ci(
                val.labels, p, a, num_classes, positive, e.bootstrap_samples, config.seed
            )
        )
        per_class = bool(config.data.augment_per_class)
        gap, found = train_eval_gap(plain_m, aug_m, ci95 or {}, e.gap_margin, per_class)
        out.append(({k: aug_m[k] for k in COMPARED}, gap, found))
    return out


def train_eval_gap(
    plain: dict, augmented: dict, ci95: dict, margin: float, per_class: bool = False
) -> tuple[dict, list[str]]:
    """(augmented minus plain per metric, with "ci95" its paired intervals; warnings) for the
    validation split: a gap counts when it is above `margin` and its interval excludes 0.
    `per_class`: the augmentation depends on the label (config.data.augment_per_class)."""
    gap = {k: round(augmented[k] - plain[k], 4) for k in COMPARED if k in plain}
    # Without an interval (eval.bootstrap_samples=0) the margin alone decides.
    known = {k: ci95.get(k) or [np.inf, -np.inf] for k in gap}
    worse = [k for k, g in gap.items() if g > margin and known[k][0] > 0]
    better = [k for k, g in gap.items() if g < -margin and known[k][1] < 0]
    gap["ci95"] = {k: [round(v, 4) for v in ci95[k]] for k in gap if ci95.get(k)}
    found = []
    if worse:
        found.append(
            f"validation {_pairs(worse, plain, augmented)} (as evaluated vs through the "
            f"training augmentation): the network fits augmented images better than the "
            f"images it is evaluated on. Likely causes: resampling blur "
            f"(random_affine/elastic with order=1, or p=1.0 so no image stays sharp), "
            f"batch-norm statistics of augmented images (train.precise_bn='on'), intensity "
            f"augmentation or mixing that shifts every image the same way"
            + (
                "; per-class augmentation (data.augment_per_class): the network may read the "
                "class from the augmentation itself (milder ops, or p < 1, for that class)"
                if per_class
                else ""
            )
        )
    if better:
        found.append(
            f"validation {_pairs(better, plain, augmented)} (as evaluated vs through the "
            f"training augmentation): the augmentation changes images more than the network "
            f"tolerates; check that it stays within real variation "
            f"(python -m medjax.preview)"
        )
    return gap, found


def decision_rule(metrics: dict, split: str, margin: float) -> list[str]:
    """A warning when AUC is high but balanced accuracy far below it."""
    auc, balanced = metrics.get("auc", np.nan), metrics.get("balanced_accuracy", np.nan)
    if auc >= 0.9 and auc - balanced > margin:
        return [
            f"{split} AUC {auc:.3f} but balanced accuracy {balanced:.3f}: the classes are "
            f"ranked well but the decision rule is shifted (look at the confusion matrix: one "
            f"class absorbing another). Likely causes: the train/eval mismatches above, class "
            f"imbalance (loss.class_weights, data.sampler='balanced'), or a shift between "
            f"training and {split} data"
        ]
    return []


def _pairs(keys, plain, augmented) -> str:
    return ", ".join(f"{k} {plain[k]:.3f} vs {augmented[k]:.3f}" for k in keys)
