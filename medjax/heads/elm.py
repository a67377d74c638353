"""The extreme learning machine head, in JAX: a random hidden layer that is never trained and
output weights solved in closed form.

Features are standardised with the training features' mean and standard deviation; the hidden
layer is tanh(x W + b) with W ~ N(0, 1/F) and b ~ N(0, 1) drawn from the run's seed (a bounded
activation, the usual ELM choice, so no hidden unit dominates the ridge solve); the output
weights are the ridge solution beta = (H^T H + ridge I)^-1 H^T T on one-hot targets T
(solved through the SVD of H).
Probabilities: softmax of the outputs H beta. The outputs approximate the one-hot targets, so
the softmax keeps their order (AUC, argmax) but is soft (an output of (1, 0) is 0.73 / 0.27);
the run's post-hoc temperature (config.eval.calibrate) sharpens it if calibration matters.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from medjax.heads.registry import register

GRID = tuple({"hidden": h, "ridge": r} for h in (256, 1024) for r in (0.1, 1.0, 10.0, 100.0))


@dataclasses.dataclass(frozen=True)
class ELM:
    mean: np.ndarray  # (F,) of the training features
    scale: np.ndarray  # (F,)
    weights: np.ndarray  # (F, hidden), random
    bias: np.ndarray  # (hidden,), random
    beta: np.ndarray  # (hidden, classes), solved

    def hidden(self, features):
        x = (jnp.asarray(features, jnp.float32) - self.mean) / self.scale
        return jnp.tanh(x @ self.weights + self.bias)

    def predict_proba(self, features) -> np.ndarray:
        return np.asarray(jax.nn.softmax(self.hidden(features) @ self.beta, axis=-1))


def random_layer(seed: int, num_features: int, hidden: int):
    """(W, b) of the hidden layer: the same seed gives the same layer."""
    kw, kb = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(kw, (num_features, hidden), jnp.float32) / np.sqrt(num_features)
    return w, jax.random.normal(kb, (hidden,), jnp.float32)


@register("elm", GRID)
def elm(features, labels, num_classes, seed, hidden, ridge):
    features = np.asarray(features, np.float32)
    mean, scale = features.mean(0), features.std(0)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)  # a constant feature stays 0
    w, b = random_layer(seed, features.shape[1], hidden)
    head = ELM(mean, scale, np.asarray(w), np.asarray(b), np.zeros((hidden, num_classes)))
    h = head.hidden(features)
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    # Through the SVD of H, not the normal equations: squaring H in float32 would lose half
    # the digits of a small ridge's solution.
    u, s, vt = jnp.linalg.svd(h, full_matrices=False)
    beta = vt.T @ ((s / (s**2 + ridge))[:, None] * (u.T @ targets))
    return dataclasses.replace(head, beta=np.asarray(beta))
