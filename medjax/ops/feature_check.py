"""Config-time shape check of the feature-channel ops (sobel, laplacian, canny, dwt).

Their shape errors (a wavelet level too deep for the image, canny or dwt on a volume) would
otherwise appear only once the data is loaded and preprocessed; tracing the preprocessing list
with `jax.eval_shape` on the input shape the data keys promise finds them before any file is
read or workdir written. Only lists with a feature op are traced, and dataset-fitted ops
(which keep the shape) are skipped, as they have no statistics yet.
"""

import jax
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.ops.pipeline import Fitted, Preprocess, op_name

FEATURE_OPS = ("sobel", "laplacian", "canny", "dwt")


def input_shape(data) -> tuple[int, ...]:
    """One example as the data source hands it over: (D, H, W, C) for volumes, else (H, W, C)."""
    side = (data.image_size, data.image_size, data.channels)
    return (data.depth, *side) if data.depth > 0 and data.slice_axis < 0 else side


def check_feature_ops(preprocess: Preprocess, shape: tuple[int, ...]) -> None:
    if not any(op_name(spec) in FEATURE_OPS for spec in preprocess.specs):
        return
    ops = [op for op in preprocess.ops if not isinstance(op, Fitted)]

    def chain(image):
        for op in ops:
            image = op(image)
        return image

    try:
        jax.eval_shape(chain, jax.ShapeDtypeStruct(shape, jnp.float32))
    except ValueError as e:
        raise ConfigError(f"config.data.preprocess on inputs of shape {shape}: {e}") from None
