"""Feature-level ensembles of backbones, trained jointly with one shared classifier.

`config.model.members` names the backbones (any registered model but another ensemble), e.g.
("cnn", "resnet18"); each is built from a copy of `config.model` with that name, so they share
activation, norm, dtype, stem and input size. Each member's features are combined by
`config.model.combine`: 'mean' (members narrower than the widest are first projected to its width
by a Dense named proj_<member>) or 'concat'; then dropout (`config.model.dropout`) and one Linear
head. Members are built with dropout 0 so their features are dropped out once, here (this also
turns off the dropout inside ViT members). Submodules are named after the members ('cnn',
'resnet18'; 'cnn_1' for a second 'cnn'), so each member's weights can be loaded separately.

How the features are taken without changing the backbones: every medjax classifier ends in a
Linear layer named 'head'; `backbone_features` runs a member with a Flax method interceptor
(`nn.intercept_methods`, the mechanism behind `apply(capture_intermediates=...)`) that returns
the head's input instead of calling it. The member's head therefore creates no parameters. For
most models that input is the sown "pooled" feature vector; for VGG and AlexNet, whose head
follows two hidden Linear layers, it is the last hidden layer's output (torchvision's usual
"fc7" features), and those hidden layers count as part of the backbone.

Intermediates: the members' own (under their names) when 'intermediates' is mutable, and
"pooled", the combined features before dropout.
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from medjax.errors import ConfigError
from medjax.models.layers import pooled_head
from medjax.models.registry import MODELS, build_model

# Extractions in progress, innermost last: a model that itself extracts features (cnn_rnn) inside
# an ensemble member must have its encoder's head taken by its own extraction, not the member's.
_ACTIVE: list[object] = []


def backbone_features(model: nn.Module, x, train: bool):
    """Call a bound classifier `model` on x and return the input of its Linear 'head' (float32)."""
    token, taken = object(), []

    def take_head_input(next_fun, args, call_kwargs, context):
        is_head = context.module.name == "head" and context.method_name == "__call__"
        if not is_head or _ACTIVE[-1] is not token:
            return next_fun(*args, **call_kwargs)
        taken.append(args[0])
        return args[0]

    _ACTIVE.append(token)
    try:
        with nn.intercept_methods(take_head_input):
            model(x, train=train)
    finally:
        _ACTIVE.pop()
    if len(taken) != 1:
        raise ConfigError(
            f"model {type(model).__name__} called a layer named 'head' {len(taken)} times; feature "
            f"extraction (ensemble, cnn_rnn) needs each model to end in exactly one Linear "
            f"classifier named 'head' applied to its features"
        )
    return taken[0].astype(jnp.float32)


class Ensemble(nn.Module):
    num_classes: int
    members: Sequence[nn.Module]
    combine: str
    dropout: float
    act: Callable = nn.relu  # the MLP head's (config.model.head_hidden)
    head_hidden: tuple = ()  # widths of hidden Linear layers before 'head' (pooled_head)
    # Members arrive built and named ('cnn', 'resnet18'); keep those names instead of members_0.
    preserve_adopted_names = True

    @nn.compact
    def __call__(self, x, train: bool = False):
        feats = [backbone_features(m, x, train) for m in self.members]
        if self.combine == "concat":
            x = jnp.concatenate(feats, axis=-1)
        else:
            width = max(f.shape[-1] for f in feats)
            feats = [
                f
                if f.shape[-1] == width
                else nn.Dense(width, name=f"proj_{m.name}")(f).astype(jnp.float32)
                for m, f in zip(self.members, feats, strict=True)
            ]
            x = jnp.mean(jnp.stack(feats), axis=0)
        return pooled_head(self, x, train)


def member_names(members: Sequence[str]) -> list[str]:
    """Submodule names: the model names, with _1, _2 ... on repeats."""
    seen: dict[str, int] = {}
    names = []
    for m in members:
        names.append(m if m not in seen else f"{m}_{seen[m]}")
        seen[m] = seen.get(m, 0) + 1
    return names


def member_config(cfg, name: str):
    """A member's model config: `cfg` with its name, and no dropout or members of its own
    (ensemble and two_branch build their backbones with it)."""
    if isinstance(cfg, ml_collections.FrozenConfigDict):
        member = cfg.as_configdict()
    else:
        member = cfg.copy_and_resolve_references()
    with member.unlocked():
        member.name, member.dropout, member.members = name, 0.0, ()
        member.head_hidden = ()  # the MLP head is the ensemble's, on the combined features
    return member


@MODELS.register("ensemble")
def ensemble(cfg, num_classes, image_size, act: Callable, norm: Any, dtype):
    valid = ", ".join(n for n in MODELS.names() if n != "ensemble")
    members = tuple(cfg.members)
    if not members:
        raise ConfigError(
            f"config.model.members is empty; name the ensemble's backbones, e.g. "
            f"('cnn', 'resnet18'). Valid names: {valid}."
        )
    for m in members:
        if m == "ensemble":
            raise ConfigError(
                "an ensemble cannot be a member of an ensemble (config.model.members)"
            )
        if m not in MODELS:
            raise ConfigError(f"unknown model {m!r} in config.model.members. Valid names: {valid}.")
    if cfg.combine not in ("mean", "concat"):
        raise ConfigError(f"config.model.combine must be 'mean' or 'concat', not {cfg.combine!r}")
    built = tuple(
        build_model(member_config(cfg, m), num_classes, image_size).clone(name=name)
        for m, name in zip(members, member_names(members), strict=True)
    )
    return Ensemble(num_classes, built, cfg.combine, cfg.dropout, act)
