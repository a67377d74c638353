"""Input-gradient explanations: saliency, SmoothGrad, integrated gradients, guided backprop.

Loops over noise samples and path points are unrolled (lax.scan(unroll=True)): on XLA's CPU
backend a convolution inside a while loop ran 10x slower (README, "## Explanations"); the cost
is a compilation that grows with the number of steps.

Maps are of the input's spatial shape: gradients reduce over channels by their largest
absolute value (saliency, SmoothGrad, guided backprop), attributions by their sum (integrated
gradients, so the map keeps its completeness: it sums to f(x) - f(baseline)).
"""

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import ConfigError
from medjax.explain.maps import max_abs_channel, spatial_axes
from medjax.explain.model_fn import ModelFn, input_gradient
from medjax.explain.registry import EXPLAINERS


@EXPLAINERS.register("saliency")
def saliency(fn: ModelFn, variables, images, targets):
    """Vanilla gradient (Simonyan et al.): max over channels of |d target logit / d x|."""
    return max_abs_channel(input_gradient(fn.logits, variables, images, targets))


@EXPLAINERS.register("guided_backprop")
def guided_backprop(fn: ModelFn, variables, images, targets):
    """The input gradient through guided activations (model_fn.guided_activation), reduced as
    saliency."""
    if fn.guided is None:
        raise ConfigError(
            "guided backpropagation needs a model with a config.model.activation to swap; "
            "this one has none: use --method saliency or gradcam"
        )
    logits = lambda v, x: fn.guided(v, x)[0]  # noqa: E731
    return max_abs_channel(input_gradient(logits, variables, images, targets))


@EXPLAINERS.register("smoothgrad")
def smoothgrad(fn: ModelFn, variables, images, targets, key, noise=0.15, samples=25):
    """SmoothGrad (Smilkov et al.): the mean saliency map over `samples` noisy copies, Gaussian
    noise of standard deviation `noise` x each image's value range, drawn from PRNG `key`."""
    axes = tuple(range(1, images.ndim))
    value_range = images.max(axis=axes, keepdims=True) - images.min(axis=axes, keepdims=True)
    sigma = noise * value_range

    def one(total, k):
        noisy = images + sigma * jax.random.normal(k, images.shape, images.dtype)
        return total + saliency(fn, variables, noisy, targets), None

    zero = jnp.zeros(images.shape[:-1], jnp.float32)
    total, _ = jax.lax.scan(one, zero, jax.random.split(key, samples), unroll=True)
    return total / samples


def _alphas(steps: int, method: str):
    """Path points and weights on [0, 1]: captum's default Gauss-Legendre rule, or the
    trapezoid / midpoint Riemann sums."""
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(steps)
        return (x + 1) / 2, w / 2
    if method == "riemann_trapezoid":
        a = np.linspace(0, 1, steps)
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
        return a, w
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    raise ConfigError(
        f"unknown integration method {method!r}; use gausslegendre, riemann_trapezoid or "
        f"riemann_middle"
    )


@EXPLAINERS.register("integrated_gradients")
def integrated_gradients(
    fn: ModelFn, variables, images, targets, baseline=0.0, steps=50, method="gausslegendre"
):
    """Integrated gradients (Sundararajan et al.) from `baseline` (a number or an array of the
    input's shape) in `steps` points, summed over channels."""
    alphas, weights = _alphas(steps, method)
    baseline = jnp.broadcast_to(jnp.asarray(baseline, images.dtype), images.shape)
    delta = images - baseline

    def one(total, aw):
        a, w = aw
        grad = input_gradient(fn.logits, variables, baseline + a * delta, targets)
        return total + w * grad, None

    path = (jnp.asarray(alphas, images.dtype), jnp.asarray(weights, images.dtype))
    total, _ = jax.lax.scan(one, jnp.zeros_like(images), path, unroll=True)
    return (delta * total).sum(axis=-1)


__all__ = ["guided_backprop", "integrated_gradients", "saliency", "smoothgrad", "spatial_axes"]
