"""Place pretrained weights from a user's file into a medjax model's variables.

The readers give the file's arrays as LazyArrays (medjax.weights.bounded) and the converters
keep them lazy, so `place` checks every array's shape against the model before it reads any
bytes, and reads only the arrays the model takes: a file cannot make the import allocate
more than the model's own variables (at the file's dtype), whatever sizes it declares.
"""

import contextlib
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from medjax.errors import ConfigError
from medjax.weights import keras_apps, torchvision
from medjax.weights.keras_file import open_keras_file
from medjax.weights.torch_file import find_state_dict, open_torch_file
from medjax.weights.torchvision import Family

COLLECTIONS = ("params", "batch_stats")
SOURCES = ("torchvision", "keras")
LAYOUT_FIX = {
    "torchvision": " torchvision's weights need its layout: config.model.stem = 'imagenet' (at"
    " <= 64 px the default 'auto' picks the small-image stem) and the default width_multiplier"
    " 1.0.",
    "keras": " Keras' weights need its layout: config.model.layout = 'keras',"
    " config.model.stem = 'imagenet' (at <= 64 px the default 'auto' picks the small-image"
    " stem) and the default width_multiplier 1.0.",
}


@dataclass
class Imported:
    """A weights file in medjax's names, before it is checked against the model."""

    variables: dict  # {'params': ..., 'batch_stats': ...}, nested
    family: Family
    unused: list  # the file's tensors (torchvision) or layers (Keras) that no variable took
    what: str  # the file's model, "torchvision's resnet18"
    hint: str  # " It looks like ... weights: set config.model.name = ..." or ""
    source: str
    notes: list = field(default_factory=list)


@contextlib.contextmanager
def _torchvision(path: str, model_name: str):
    family = torchvision.family(model_name)
    with open_torch_file(path) as obj:
        sd = find_state_dict(obj, path)
        converted, used = torchvision.convert(sd, model_name)
        unused = [k for k in sd if k not in used and not k.endswith("num_batches_tracked")]
        what = f"tensors torchvision's {model_name}"
        hint = torchvision.hint(sd, model_name)
        yield Imported(converted, family, unused, what, hint, "torchvision")


@contextlib.contextmanager
def _keras(path: str, model_name: str):
    family = keras_apps.family(model_name)
    with open_keras_file(path) as weights:
        converted, used, notes = keras_apps.convert(weights, model_name)
        unused = [k for k in weights.layers if k not in used]
        what = f"layers Keras' {keras_apps.KERAS_NAMES[model_name]}"
        hint = keras_apps.hint(weights, model_name)
        yield Imported(converted, family, unused, what, hint, "keras", notes)


def _classes(kernel) -> int:
    return np.shape(kernel)[-1] if np.ndim(kernel) else 0


def _first(items, n: int = 3) -> str:
    items = ["/".join(p) if isinstance(p, tuple) else repr(p) for p in items]
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_pretrained(
    path: str,
    model_name: str,
    like: dict,
    source: str = "torchvision",
    layout: str | None = None,
) -> tuple[dict, list[str]]:
    """The variables `like` (a freshly initialised medjax model's, {'params', 'batch_stats'})
    with every tensor taken from the weights file `path`, and notes on what was adapted.

    `source` "torchvision": `path` is a `torch.save` file of a torchvision model's state dict
    (or of a checkpoint dict wrapping one under 'state_dict' or 'model'); it is read without
    torch and without running any pickled code (medjax.weights.torch_file).
    `source` "keras": `path` is a keras.applications model saved by Keras (`.keras`, `.h5`,
    `.weights.h5`), read with h5py alone (medjax.weights.keras_file); the model must be built
    with config.model.layout = "keras" (medjax.weights.keras_apps).
    `layout` is config.model.layout, checked against the source when given. `model_name` is
    config.model.name. Every tensor of the file must fill one variable of the model and every
    variable must be filled, with these exceptions, each reported in the notes (`like` may be
    abstract, from jax.eval_shape, unless the head is kept from it):

    * The classifier head keeps its fresh initialisation from `like` when its shape differs
      from the file's (a different number of classes) or the file has none (a Keras model
      saved with include_top=False).
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
        raise ConfigError(
            f"unknown pretrained-weights source {source!r} in config.model.pretrained_source; "
            f"valid: {', '.join(SOURCES)}"
        )
    if layout is not None and layout != source:
        raise ConfigError(
            f"{source} weights need the model in the {source} layout, but config.model.layout "
            f"is {layout!r}: set config.model.layout = {source!r}"
        )
    with (_torchvision if source == "torchvision" else _keras)(path, model_name) as imported:
        return place(imported, like, path, model_name)


def place(imported: Imported, like: dict, path: str, model_name: str) -> tuple[dict, list[str]]:
    """`like` filled from `imported`, after checking that they fit (see load_pretrained): on
    shapes alone, so that only arrays that fit are read."""
    family, hint = imported.family, imported.hint
    problem = f"the weights in {path} do not fit model {model_name!r}: "
    if imported.unused:
        raise ConfigError(
            f"{problem}the file has {imported.what} lacks: {_first(imported.unused)}.{hint}"
        )
    flat_like = traverse_util.flatten_dict({c: like[c] for c in COLLECTIONS if c in like})
    flat_file = traverse_util.flatten_dict(imported.variables)
    head = [p for p in flat_like if p[0] == "params" and p[1 : 1 + len(family.head)] == family.head]
    # The MLP head's hidden layers (config.model.head_hidden) are new: no file has them, and
    # the classifier after them takes their width, so both start from `like`.
    hidden = {p for p in flat_like if p[0] == "params" and _is_hidden(p)}
    headless = all(p not in flat_file for p in head)
    missing = [
        p
        for p in flat_like
        if p not in flat_file and not (headless and p in head) and p not in hidden
    ]
    unexpected = [p for p in flat_file if p not in flat_like]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"the model's {_first(missing)} not in the file")
        if unexpected:
            parts.append(f"the file's {_first(unexpected)} not in the model")
        fix = hint
        if any(name in p[-2] for p in missing for name in ("GroupNorm", "LayerNorm")):
            fix += f" {imported.source}'s models use batch norm: set config.model.norm = 'batch'."
        raise ConfigError(f"{problem}{'; '.join(parts)}.{fix}")

    notes, out = [], dict(flat_like)
    if family.note:
        notes.append(family.note)
    notes.extend(imported.notes)
    kernel = ("params", *family.head, "kernel")
    if hidden:
        notes.append(
            f"MLP head ({len(hidden) // 2} hidden layers, config.model.head_hidden) and "
            f"classifier {'/'.join(family.head)} freshly initialised"
        )
        head_kept = hidden | set(head)
    elif headless:
        notes.append(f"classifier {'/'.join(family.head)} freshly initialised: the file has none")
        head_kept = set(head)
    elif any(np.shape(flat_file[p]) != np.shape(flat_like[p]) for p in head):
        notes.append(
            f"classifier {'/'.join(family.head)} re-initialised: the file's classifier has "
            f"{_classes(flat_file[kernel])} classes, the model {_classes(flat_like[kernel])}"
        )
        head_kept = set(head)
    else:
        head_kept = set()
    stem = ("params", *family.stem, "kernel")
    file_stem = flat_file[stem]
    if np.shape(flat_like[stem])[2] == 1 and np.shape(file_stem)[2:3] == (3,):
        flat_file[stem] = file_stem.sum(axis=2, keepdims=True)
        notes.append(
            f"{'/'.join(family.stem)}: the file's RGB kernel summed over its input channels for "
            "1-channel input (the pretrained response to the gray image replicated to RGB)"
        )

    # In the file's order (the converters walk the network from the stem), so the first
    # mismatch named is the earliest layer, not the alphabetically first.
    mismatched = [
        p
        for p in flat_file
        if p not in head_kept and np.shape(flat_file[p]) != np.shape(flat_like[p])
    ]
    if mismatched:
        p = mismatched[0]
        raise ConfigError(
            f"{problem}{'/'.join(p)} has shape {np.shape(flat_like[p])} in the model but "
            f"{np.shape(flat_file[p])} in the file ({len(mismatched)} mismatching in all)."
            f"{hint or LAYOUT_FIX[imported.source]}"
        )
    if any(isinstance(flat_like[p], jax.ShapeDtypeStruct) for p in head_kept):
        raise ValueError(
            "`like` must hold initialised values (not jax.eval_shape's) to keep a head"
        )
    for p in flat_like:
        if p not in head_kept:
            out[p] = jnp.asarray(np.asarray(flat_file[p]), dtype=flat_like[p].dtype)
    variables = dict(like) | traverse_util.unflatten_dict(out)
    return variables, notes


def _is_hidden(path) -> bool:
    return any(str(k).startswith("head_hidden") for k in path[1:])
