"""Classification losses chosen by `config.loss.name`, with class weights and label smoothing."""

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


def class_weights(spec: str, train_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class loss weights from the training split only (never val or test)."""
    if spec == "none":
        return np.ones(num_classes, np.float32)
    if spec == "balanced":  # inverse frequency, normalised to mean 1 (as scikit-learn's)
        counts = np.bincount(train_labels, minlength=num_classes).astype(np.float32)
        return len(train_labels) / (num_classes * np.maximum(counts, 1))
    raise ConfigError(f"config.loss.class_weights must be 'none' or 'balanced', not {spec!r}")
