"""What the explainers need from a model: its logits, its stage features, gradients with respect
to a stage, and a copy with ReLU's guided backward rule.

Stages are the features every medjax model records with `layers.stage_features` ("stem",
"stage1", ..., "top"; "member/stage2" inside an ensemble, "encoder/stage1" inside cnn_rnn).
"""

import dataclasses
import re
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from medjax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelFn:
    """`apply(variables, images) -> (float32 logits, {stage: features})`, where `variables` may
    carry a "perturbations" collection (see `stage_gradient`), and `guided`, the same function
    for the model with guided activations (None when the model has no `act` to swap)."""

    apply: Callable
    guided: Callable | None = None

    def logits(self, variables, images):
        return self.apply(variables, images)[0]


def model_fn(model: nn.Module) -> ModelFn:
    guided = with_activation(model, guided_activation)
    return ModelFn(_apply(model), _apply(guided) if guided is not None else None)


def _apply(model: nn.Module) -> Callable:
    def apply(variables, images):
        logits, state = model.apply(variables, images, train=False, mutable=["intermediates"])
        return logits.astype(jnp.float32), _flatten(state.get("intermediates", {}))

    return apply


def _flatten(tree, prefix="") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:  # sow keeps a tuple of the values recorded under that name
            out[f"{prefix}{key}"] = value[0]
    return out


def _nest(path: str, value) -> dict:
    for key in reversed(path.split("/")):
        value = {key: value}
    return value


def target_score(logits, targets):
    """The summed target logits: samples are independent in eval mode, so its gradient with
    respect to a batch is each sample's own gradient."""
    return jnp.take_along_axis(logits, targets[:, None].astype(jnp.int32), axis=1).sum()


def stage_gradient(fn: ModelFn, variables, images, targets, stage: str):
    """(features, d target logit / d features) of `stage`, through a zero perturbation added
    to it (layers.stage_features)."""
    shape = jax.eval_shape(fn.apply, variables, images)[1][stage]
    zero = jnp.zeros(shape.shape, jnp.float32)

    def score(delta):
        logits, stages = fn.apply({**variables, "perturbations": _nest(stage, delta)}, images)
        return target_score(logits, targets), stages[stage].astype(jnp.float32)

    grad, features = jax.grad(score, has_aux=True)(zero)
    return features, grad


def input_gradient(logits_fn: Callable, variables, images, targets):
    """d target logit / d images, per sample."""
    return jax.grad(lambda x: target_score(logits_fn(variables, x), targets))(images)


# ---- stages ----


def _order(name: str):
    """Stages in network order: stem/patches, stage1.., block0.., top (names sort as text)."""
    ranks = []
    for part in name.split("/"):
        m = re.fullmatch(r"(stage|block)(\d+)", part)
        ranks.append((1, int(m.group(2))) if m else ({"stem": 0, "patches": 0}.get(part, 2), 0))
    return ranks


def spatial_stages(fn: ModelFn, variables, images) -> dict:
    """{name: shape} of the stages with a spatial map: (N, H, W, C) or (N, D, H, W, C) with
    more than one position, N the batch or the batch times the slices of a volume (cnn_rnn)."""
    stages = jax.eval_shape(fn.apply, variables, images)[1]
    n = images.shape[0]
    return {
        name: s.shape
        for name, s in sorted(stages.items(), key=lambda kv: _order(kv[0]))
        if s.ndim in (4, 5) and s.shape[0] % n == 0 and max(s.shape[1:-1]) > 1
    }


def choose_stage(fn: ModelFn, variables, images, stage: str | None) -> str:
    """`stage` checked against the model's stages, or by default the last spatial one."""
    stages = jax.eval_shape(fn.apply, variables, images)[1]
    spatial = spatial_stages(fn, variables, images)
    names = sorted(stages, key=_order)
    features = [s for s in names if s != "pooled" and not s.endswith("/pooled")]
    if stage is None:
        if not spatial:
            raise ConfigError(
                f"the model has no stage with a spatial map (its stages: {', '.join(names)}); "
                f"use --method saliency, integrated_gradients or occlusion instead"
            )
        last = list(spatial)[-1]
        if features and features[-1] not in spatial and "/" not in features[-1]:
            raise ConfigError(
                f"the model's last stage {features[-1]!r} has no spatial map (a transformer's "
                f"tokens): pass --stage {last} for a map of its patch embedding, or use --method "
                f"saliency, integrated_gradients or occlusion"
            )
        return last
    if stage not in stages:
        raise ConfigError(
            f"unknown stage {stage!r} in --stage; this model's stages with a spatial map: "
            f"{', '.join(spatial) or 'none'}"
        )
    if stage not in spatial:
        raise ConfigError(
            f"stage {stage!r} has no spatial map (shape {tuple(stages[stage].shape)}); choose "
            f"one of {', '.join(spatial) or 'none (use --method saliency or occlusion)'}"
        )
    return stage


# ---- guided backpropagation ----


def guided_activation(act: Callable) -> Callable:
    """`act` whose backward pass zeroes negative gradients leaving it (captum's GuidedBackprop
    rule, Springenberg et al. for ReLU: (x > 0)(g > 0) g)."""

    @jax.custom_vjp
    def guided(x):
        return act(x)

    def forward(x):
        return jax.vjp(act, x)

    def backward(vjp, g):
        return (jax.nn.relu(vjp(g)[0]),)

    guided.defvjp(forward, backward)
    return guided


def with_activation(module: nn.Module, wrap: Callable) -> nn.Module | None:
    """A copy of `module` with every `act` field (its own and its submodules', ensemble
    members') replaced by `wrap(act)`; None when there is none. Parameters are unchanged."""
    updates = {}
    for field in dataclasses.fields(module):
        if field.name in ("parent", "name"):
            continue
        value = getattr(module, field.name, None)
        if field.name == "act" and callable(value):
            updates["act"] = wrap(value)
        elif isinstance(value, nn.Module):
            sub = with_activation(value, wrap)
            if sub is not None:
                updates[field.name] = sub
        elif isinstance(value, tuple) and value and all(isinstance(v, nn.Module) for v in value):
            subs = [with_activation(v, wrap) for v in value]
            if any(s is not None for s in subs):
                updates[field.name] = tuple(
                    v if s is None else s for v, s in zip(value, subs, strict=True)
                )
    return module.clone(**updates) if updates else None
