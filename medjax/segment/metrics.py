"""The segmenter's loss (pixel cross-entropy plus soft Dice) and its scores (Dice, IoU)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def dice_ce_loss(logits, masks, dice_weight: float, eps: float = 1.0):
    """Mean pixel cross-entropy plus `dice_weight` x (1 - soft Dice of the foreground), the
    Dice pooled over the batch's pixels so that lesion-free images (empty masks) do not make
    it undefined; `eps` smooths it. logits (N, H, W, 2), masks (N, H, W) bool."""
    target = masks.astype(jnp.int32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
    fg = jax.nn.softmax(logits)[..., 1]
    m = masks.astype(fg.dtype)
    dice = (2 * jnp.sum(fg * m) + eps) / (jnp.sum(fg) + jnp.sum(m) + eps)
    return ce + dice_weight * (1 - dice)


def counts(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per image (true positive, false positive, false negative) pixel counts, (N, 3)."""
    pred, true = pred.reshape(len(pred), -1).astype(bool), true.reshape(len(true), -1).astype(bool)
    return np.stack(
        [(pred & true).sum(1), (pred & ~true).sum(1), (~pred & true).sum(1)], axis=1
    ).astype(np.int64)


def scores(tp_fp_fn: np.ndarray) -> dict:
    """Dice 2TP / (2TP + FP + FN) and IoU TP / (TP + FP + FN) over the pooled pixels of the
    images whose counts are given (1 when prediction and truth are both empty)."""
    tp, fp, fn = (int(v) for v in tp_fp_fn.sum(0))
    if tp + fp + fn == 0:
        return {"dice": 1.0, "iou": 1.0}
    return {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn)}


def segmentation_metrics(pred, true, bootstrap: int = 0, seed: int = 0) -> dict:
    """Pooled Dice and IoU of predicted masks against true ones (N, H, W), the mean Dice of
    the images with a lesion, and with `bootstrap` > 0 a 95% percentile interval of the
    pooled scores over images resampled with replacement."""
    c = counts(pred, true)
    out = {**scores(c), "images": len(c)}
    lesion = c[:, 0] + c[:, 2] > 0  # images whose true mask is not empty
    if lesion.any():
        per = 2 * c[lesion, 0] / (2 * c[lesion, 0] + c[lesion, 1] + c[lesion, 2])
        out["mean_dice_lesion_images"] = float(per.mean())
    out["lesion_images"] = int(lesion.sum())
    if bootstrap:
        rng = np.random.default_rng(seed)
        draws = [scores(c[rng.integers(0, len(c), len(c))]) for _ in range(bootstrap)]
        out["ci95"] = {
            k: [float(np.percentile([d[k] for d in draws], q)) for q in (2.5, 97.5)]
            for k in ("dice", "iou")
        }
    return out
