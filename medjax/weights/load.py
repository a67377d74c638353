"""Place pretrained weights from a user's file into a medjax model's variables."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from medjax.errors import ConfigError
from medjax.weights import torchvision
from medjax.weights.torch_file import find_state_dict, read_torch_file

COLLECTIONS = ("params", "batch_stats")
SOURCES = ("torchvision",)
LAYOUT_FIX = (
    " torchvision's weights need its layout: config.model.stem = 'imagenet' (at <= 64 px the"
    " default 'auto' picks the small-image stem) and the default width_multiplier 1.0."
)


def _first(items, n: int = 3) -> str:
    items = ["/".join(p) if isinstance(p, tuple) else repr(p) for p in items]
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_pretrained(
    path: str, model_name: str, like: dict, source: str = "torchvision"
) -> tuple[dict, list[str]]:
    """The variables `like` (a freshly initialised medjax model's, {'params', 'batch_stats'})
    with every tensor taken from the weights file `path`, and notes on what was adapted.

    `path` is a `torch.save` file of a torchvision model's state dict (or of a checkpoint dict
    wrapping one under 'state_dict' or 'model'); it is read without torch and without running
    any pickled code (medjax.weights.torch_file). `model_name` is config.model.name. Every
    tensor of the file must fill one variable of the model and every variable must be filled,
    with two exceptions, each reported in the notes (`like` may be abstract, from
    jax.eval_shape, unless the head is kept from it):

    * The classifier head keeps its fresh initialisation from `like` when its shape differs
      from the file's (a different number of classes).
    * A 1-channel first convolution takes the *sum* of the file's RGB kernel over its input
      channels: an RGB network shown a gray image replicated into three channels computes
      sum_c w_c * x = (sum_c w_c) * x, so the summed kernel reproduces that response exactly
      (a mean would shrink the first activations 3x and throw off the batch-norm statistics
      after them). It is exact for inputs normalised alike in all channels; torchvision's
      per-channel ImageNet mean/std differ slightly between channels.

    Raises medjax.errors.DataError for a file that cannot be read, ConfigError for weights
    that do not fit the model (naming the first mismatches and, when the file's structure
    tells, the model it holds).
    """
    if source not in SOURCES:
        raise ConfigError(f"unknown pretrained-weights source {source!r}; valid: {SOURCES}")
    family = torchvision.family(model_name)
    sd = find_state_dict(read_torch_file(path), path)
    converted, used = torchvision.convert(sd, model_name)
    problem = f"the weights in {path} do not fit model {model_name!r}: "

    unused = [k for k in sd if k not in used and not k.endswith("num_batches_tracked")]
    if unused:
        raise ConfigError(
            f"{problem}the file has tensors torchvision's {model_name} lacks: {_first(unused)}."
            f"{torchvision.hint(sd, model_name)}"
        )
    flat_like = traverse_util.flatten_dict({c: like[c] for c in COLLECTIONS if c in like})
    flat_file = traverse_util.flatten_dict(converted)
    missing = [p for p in flat_like if p not in flat_file]
    unexpected = [p for p in flat_file if p not in flat_like]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"the model's {_first(missing)} not in the file")
        if unexpected:
            parts.append(f"the file's {_first(unexpected)} not in the model")
        fix = torchvision.hint(sd, model_name)
        if any(name in p[-2] for p in missing for name in ("GroupNorm", "LayerNorm")):
            fix += " torchvision's models use batch norm: set config.model.norm = 'batch'."
        raise ConfigError(f"{problem}{'; '.join(parts)}.{fix}")

    notes, out = [], dict(flat_like)
    if family.note:
        notes.append(family.note)
    head = [p for p in flat_like if p[0] == "params" and p[1 : 1 + len(family.head)] == family.head]
    if any(np.shape(flat_file[p]) != np.shape(flat_like[p]) for p in head):
        kernel = ("params", *family.head, "kernel")
        notes.append(
            f"head {'/'.join(family.head)} re-initialised: the file's classifier has "
            f"{np.shape(flat_file[kernel])[-1]} classes, the model {np.shape(flat_like[kernel])[-1]}"
        )
        head_kept = set(head)
    else:
        head_kept = set()
    stem = ("params", *family.stem, "kernel")
    file_stem = flat_file[stem]
    if np.shape(flat_like[stem])[2] == 1 and file_stem.shape[2] == 3:
        flat_file[stem] = file_stem.sum(axis=2, keepdims=True)
        notes.append(
            f"{'/'.join(family.stem)}: the file's RGB kernel summed over its input channels for "
            "1-channel input (the pretrained response to the gray image replicated to RGB)"
        )

    mismatched = [
        p
        for p in flat_like
        if p not in head_kept and np.shape(flat_file[p]) != np.shape(flat_like[p])
    ]
    if mismatched:
        p = mismatched[0]
        raise ConfigError(
            f"{problem}{'/'.join(p)} has shape {np.shape(flat_like[p])} in the model but "
            f"{np.shape(flat_file[p])} in the file ({len(mismatched)} mismatching in all)."
            f"{torchvision.hint(sd, model_name) or LAYOUT_FIX}"
        )
    if any(isinstance(flat_like[p], jax.ShapeDtypeStruct) for p in head_kept):
        raise ValueError(
            "`like` must hold initialised values (not jax.eval_shape's) to keep a head"
        )
    for p in flat_like:
        if p not in head_kept:
            out[p] = jnp.asarray(flat_file[p], dtype=flat_like[p].dtype)
    variables = dict(like) | traverse_util.unflatten_dict(out)
    return variables, notes
