"""Classification losses chosen by `config.loss.name`, with class weights and label smoothing.

Class weights are computed from the training split only. They compound with a balanced sampler
or SMOTE (`medjax.data.imbalance`), which already even out the classes: use one of them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.errors import ConfigError
from medjax.registry import Registry

LOSSES = Registry("loss", "config.loss.name")


@LOSSES.register("softmax_xent")
def softmax_xent(logits, labels, class_weights, label_smoothing: float):
    """Cross-entropy, averaged with per-class weights so the loss scale stays comparable.
    `labels` are class indices (N,) or soft targets (N, K) from MixUp/CutMix."""
    num_classes = logits.shape[-1]
    targets = jnp.eye(num_classes)[labels] if labels.ndim == 1 else labels
    per_example = optax.softmax_cross_entropy(
        logits.astype(jnp.float32), optax.smooth_labels(targets, label_smoothing)
    )
    w = targets @ jnp.asarray(class_weights, jnp.float32)
    return jnp.sum(w * per_example) / jnp.sum(w)


@LOSSES.register("focal")
def focal(logits, labels, class_weights, label_smoothing: float, gamma: float = 2.0):
    """Softmax focal loss (Lin et al. 2017), -sum_k t_k (1 - p_k)^gamma log p_k: easy examples
    (p near 1) count less. The class weights play the role of the paper's alpha and average
    like cross-entropy's; gamma=0 is cross-entropy. Soft targets (N, K) from MixUp/CutMix weight
    each class's term, which for one-hot targets is the paper's loss. (optax has only the
    sigmoid, one-vs-rest form.)"""
    num_classes = logits.shape[-1]
    targets = jnp.eye(num_classes)[labels] if labels.ndim == 1 else labels
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
    # clipped: (1 - p)^gamma has an infinite slope at p = 1 when gamma < 1
    modulator = jnp.clip(-jnp.expm1(log_p), 1e-12, 1.0) ** gamma
    smoothed = optax.smooth_labels(targets, label_smoothing)
    per_example = -jnp.sum(smoothed * modulator * log_p, axis=-1)
    w = targets @ jnp.asarray(class_weights, jnp.float32)
    return jnp.sum(w * per_example) / jnp.sum(w)


@LOSSES.register("sigmoid_bce")
def sigmoid_bce(logits, labels, class_weights, label_smoothing: float):
    """Multi-label binary cross-entropy: one sigmoid per finding, `labels` multi-hot (N, L)
    (or MixUp/CutMix's blends of them), averaged over images and findings. `class_weights` (L,)
    weigh each finding's positive term (PyTorch's BCEWithLogitsLoss pos_weight); smoothing moves
    each target toward 1/2."""
    targets = labels.astype(jnp.float32)
    targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    logits = logits.astype(jnp.float32)
    pos_weight = jnp.asarray(class_weights, jnp.float32)
    # -[w t log s(x) + (1 - t) log(1 - s(x))], with log s(x) = -softplus(-x)
    per_term = pos_weight * targets * jax.nn.softplus(-logits) + (1 - targets) * jax.nn.softplus(
        logits
    )
    return jnp.mean(per_term)


MULTI_LABEL_LOSSES = ("sigmoid_bce",)


def build_loss(loss_config, class_weights: np.ndarray, hparams=None):
    """`config.loss` -> fn(logits, labels) -> scalar loss; `hparams` may hold the run's own
    `label_smoothing` as a traced scalar (medjax.train.vectorize)."""
    fn = LOSSES.get(loss_config.name)
    extra = {"gamma": loss_config.focal_gamma} if loss_config.name == "focal" else {}
    smoothing = (hparams or {}).get("label_smoothing", loss_config.label_smoothing)
    return functools.partial(fn, class_weights=class_weights, label_smoothing=smoothing, **extra)


def batch_weight(loss_fn, labels):
    """The total weight a loss from build_loss averages a batch's examples by: their number
    without class weights (medjax.train.accumulate weighs micro-batches by it)."""
    targets = (
        labels
        if labels.ndim > 1
        else jax.nn.one_hot(labels, len(loss_fn.keywords["class_weights"]))
    )
    return jnp.sum(targets @ jnp.asarray(loss_fn.keywords["class_weights"], jnp.float32))


CLASS_WEIGHTS = ("none", "balanced", "effective")


def class_weights(
    spec: str, train_labels: np.ndarray, num_classes: int, beta: float = 0.999
) -> np.ndarray:
    """Per-class loss weights from the training split only (never val or test). Multi-label
    `train_labels` (N, L): each finding's positive-term weight, negatives / positives for
    "balanced" (so each finding's positives and negatives weigh the same in total)."""
    if train_labels.ndim == 2:
        return multi_label_weights(spec, train_labels)
    counts = np.maximum(np.bincount(train_labels, minlength=num_classes), 1).astype(np.float64)
    if spec == "none":
        return np.ones(num_classes, np.float32)
    if spec == "balanced":  # inverse frequency, mean 1 over the images (as scikit-learn's)
        return (len(train_labels) / (num_classes * counts)).astype(np.float32)
    if spec == "effective":
        # Cui et al. 2019: weight 1 / effective number of samples (1 - beta^n) / (1 - beta),
        # mean 1 over the classes as in the paper. beta -> 1 tends to inverse frequency, beta = 0
        # to no weighting.
        w = (1 - beta) / -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
        return (w * num_classes / w.sum()).astype(np.float32)
    raise ConfigError(
        f"config.loss.class_weights must be one of {', '.join(CLASS_WEIGHTS)}, not {spec!r}"
    )


def multi_label_weights(spec: str, train_labels: np.ndarray) -> np.ndarray:
    positives = np.maximum(train_labels.sum(0), 1).astype(np.float64)
    if spec == "none":
        return np.ones(train_labels.shape[1], np.float32)
    if spec == "balanced":
        return ((len(train_labels) - positives) / positives).astype(np.float32)
    raise ConfigError(
        f"config.loss.class_weights={spec!r} has no multi-label form; use 'none' or 'balanced' "
        f"(each finding's positives weighted by its negatives / positives)"
    )
