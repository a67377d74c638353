"""Pretrained weights for the members of a feature-level ensemble (medjax.models.ensemble):
`config.model.member_pretrained[i]` is loaded into the subtree of member i (named after it,
'resnet18', 'cnn_1') exactly as `config.model.pretrained` loads a model of that name alone.

Inside the ensemble a member's own classifier makes no parameters (its input is taken as the
features), so the file's classifier is not used; the ensemble's head stays as initialised.
"""

import numpy as np
from flax import traverse_util

from medjax.weights import keras_apps, torchvision
from medjax.weights.load import COLLECTIONS, load_pretrained


def _family(name: str, source: str):
    return (torchvision if source == "torchvision" else keras_apps).family(name)


def _member_like(variables: dict, name: str, head: tuple) -> dict:
    """The member's variables, with a stand-in classifier of a shape no file's fits, so the
    loader keeps the stand-in (dropped afterwards) instead of asking for the file's."""
    like = {c: variables[c][name] for c in COLLECTIONS if name in variables.get(c, {})}
    flat = traverse_util.flatten_dict(like.get("params", {}))
    flat[(*head, "kernel")] = np.zeros((0, 0), np.float32)
    flat[(*head, "bias")] = np.zeros((0,), np.float32)
    return {**like, "params": traverse_util.unflatten_dict(flat)}


def _drop(params: dict, head: tuple) -> dict:
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if k[: len(head)] != head})


def load_members(variables: dict, cfg) -> dict:
    """`variables` ({'params', 'batch_stats'} of an ensemble) with each member's weights file
    of `cfg.member_pretrained` ("" keeps the member's initialisation) placed in its subtree."""
    from medjax.models.ensemble import member_names

    out = {c: dict(variables.get(c, {})) for c in COLLECTIONS}
    names = member_names(tuple(cfg.members))
    for model, name, path in zip(cfg.members, names, cfg.member_pretrained, strict=True):
        if not path:
            continue
        head = _family(model, cfg.pretrained_source).head
        loaded, notes = load_pretrained(
            path,
            model,
            _member_like(variables, name, head),
            source=cfg.pretrained_source,
            layout=cfg.layout,
        )
        out["params"][name] = _drop(loaded["params"], head)
        if name in out["batch_stats"]:
            out["batch_stats"][name] = loaded["batch_stats"]
        for note in notes:
            if "classifier" not in note:  # the member's classifier is not used (see above)
                print(f"pretrained ({name}): {note}")
    return out
