"""The trained network's "pooled" features (the input of its head, float32) of a split, as a
fitted head sees them: evaluated weights, preprocessed images, no augmentation and no flip TTA
(a fitted head takes one feature vector per image)."""

import jax
import jax.numpy as jnp
import numpy as np

from medjax.errors import ConfigError
from medjax.models import build_model
from medjax.train import sharding
from medjax.train.evaluate import predict
from medjax.train.steps import evaluated_variables
from medjax.train.vectorize import stacked


def pooled_of(model, variables, images):
    """(N, F) float32 features a model sows as intermediates["pooled"]."""
    _, state = model.apply(variables, images, train=False, mutable=["intermediates"])
    pooled = state.get("intermediates", {}).get("pooled")
    if pooled is None or pooled[0].ndim != 2:
        raise ConfigError(_no_pooled(type(model).__name__))
    return pooled[0].astype(jnp.float32)


def _no_pooled(name: str) -> str:
    return (
        f"model {name} gives no 'pooled' feature vector (N, features) for a fitted head to "
        f"take; use config.model.head='linear' or 'mlp' with it, or a model that sows "
        f"'pooled' (every model ending in medjax.models.layers.pooled_head does)"
    )


def input_shape(config) -> tuple:
    d = config.data
    return ((d.depth,) if d.depth > 0 else ()) + (d.image_size, d.image_size, d.channels)


def check_pooled(config) -> None:
    """One ConfigError, before any data is read, when config.model gives no 2-D "pooled"
    feature at the configured input size (checked on shapes only: nothing is computed)."""
    model = build_model(config.model, num_classes=2, image_size=config.data.image_size)
    x = jax.ShapeDtypeStruct((2, *input_shape(config)), jnp.float32)

    def features(x):
        variables = model.init(jax.random.key(0), x, train=False)
        return pooled_of(model, variables, x)

    try:
        jax.eval_shape(features, x)
    except ConfigError as e:
        if "gives no 'pooled'" in str(e):
            raise ConfigError(_no_pooled(repr(config.model.name))) from None
        raise
    except Exception:  # noqa: BLE001
        pass  # a shape the data will change (channels, depth): the model reports it there


def feature_step(exp):
    """Jitted (state, images) -> features (B, F), or (K, B, F) for K runs trained together."""
    model = exp.model

    def features(state, images):
        return pooled_of(model, evaluated_variables(state), images)

    if exp.vectorized:
        features = stacked(features, len(exp.configs), shared=(1,))
    return jax.jit(
        features,
        in_shardings=(exp.state_sharding, exp.batch_shardings()[1]),
        out_shardings=sharding.replicated(exp.mesh),
    )


def split_features(exp, step, state, split: str) -> np.ndarray:
    """(K, N, F) features of each run for every example of `split` (preprocessed only)."""
    data = exp.data.dataset.splits[split]
    out = predict(
        step, state, data, exp.config.eval.batch_size, exp.batch_shardings()[1], f"{split} features"
    )
    return out.reshape(len(exp.configs), *out.shape[-2:])
