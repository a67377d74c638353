"""Class-activation maps at a stage: Grad-CAM, Grad-CAM++ and guided Grad-CAM.

Both follow pytorch-grad-cam (1.5.7): the stage's channels weighted (Grad-CAM: the spatial mean
of the gradient; Grad-CAM++: eq. 19 of Chattopadhyay et al.), summed, ReLU, min-max normalised,
resized to the input with bilinear interpolation (trilinear for volumes, where pytorch-grad-cam
uses scipy's cubic zoom), then normalised again.
"""

import jax
import jax.numpy as jnp

from medjax.explain.maps import normalise, resize, spatial_axes
from medjax.explain.model_fn import ModelFn, stage_gradient
from medjax.explain.registry import EXPLAINERS


def _fold(x, batch: int):
    """A per-slice stage (cnn_rnn: (B * D, h, w, C)) as a volume (B, D, h, w, C)."""
    return x if x.shape[0] == batch else x.reshape(batch, -1, *x.shape[1:])


def _weights(features, grads, plus_plus: bool):
    axes = spatial_axes(features)
    if not plus_plus:
        return grads.mean(axis=axes)
    g2 = grads**2
    total = features.sum(axis=axes, keepdims=True)
    alpha = g2 / (2 * g2 + total * g2 * grads + 1e-6)
    alpha = jnp.where(grads != 0, alpha, 0.0)
    return (jax.nn.relu(grads) * alpha).sum(axis=axes)


def class_activation(fn, variables, images, targets, stage, plus_plus=False):
    features, grads = stage_gradient(fn, variables, images, targets, stage)
    features, grads = _fold(features, len(images)), _fold(grads, len(images))
    weights = _weights(features, grads, plus_plus)
    cam = jax.nn.relu(jnp.einsum("b...c,bc->b...", features, weights))
    spatial = images.shape[1:-1]
    return normalise(jax.nn.relu(resize(normalise(cam), spatial)))


@EXPLAINERS.register("gradcam")
def gradcam(fn: ModelFn, variables, images, targets, stage: str):
    """Grad-CAM (Selvaraju et al.) at `stage` (see model_fn.choose_stage)."""
    return class_activation(fn, variables, images, targets, stage)


@EXPLAINERS.register("gradcam_pp")
def gradcam_pp(fn: ModelFn, variables, images, targets, stage: str):
    """Grad-CAM++ (Chattopadhyay et al.) at `stage`."""
    return class_activation(fn, variables, images, targets, stage, plus_plus=True)


@EXPLAINERS.register("guided_gradcam")
def guided_gradcam(fn: ModelFn, variables, images, targets, stage: str):
    """Guided backpropagation times Grad-CAM, per pixel (Selvaraju et al.)."""
    from medjax.explain.gradients import guided_backprop

    cam = gradcam(fn, variables, images, targets, stage)
    return guided_backprop(fn, variables, images, targets) * cam
