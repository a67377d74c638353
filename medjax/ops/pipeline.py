"""Parse op specs like "random_affine(rotate=15, zoom=0.1)" and chain them into one function."""

import ast
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from medjax.errors import ConfigError
from medjax.registry import Registry, suggest

PREPROCESS_OPS = Registry("preprocessing op", "config.data.preprocess")
AUGMENT_OPS = Registry("augmentation op", "config.data.augment")
MIX_OPS = Registry("batch mixing op", "config.data.mix")


def parse_op(spec: str, registry: Registry):
    """Return (factory, kwargs) for one spec, failing on an unknown op or argument."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
        if isinstance(node, ast.Name):
            name, args, kwargs = node.id, [], {}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        else:
            raise ValueError
    except (SyntaxError, ValueError):
        raise ConfigError(
            f"cannot parse op {spec!r} in {registry.config_key}; write it as "
            f"name(arg=value, ...) with literal values, e.g. \"random_flip(axis='lr')\""
        ) from None
    factory = registry.get(name)
    params = inspect.signature(factory).parameters
    for key in kwargs:
        if key not in params:
            raise ConfigError(
                f"op {name!r} in {registry.config_key} has no argument {key!r}.{suggest(key, params)}"
                f" Valid arguments: {', '.join(params) or '(none)'}."
            )
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
        raise ConfigError(f"op {spec!r} in {registry.config_key}: {e}") from None
    return factory, args, kwargs


def op_name(spec: str) -> str:
    """The name of the op in a spec that parse_op accepts: "random_affine(rotate=5)" ->
    "random_affine"."""
    node = ast.parse(spec.strip(), mode="eval").body
    return (node.func if isinstance(node, ast.Call) else node).id


def _build(specs, registry):
    fns = []
    for spec in specs:
        factory, args, kwargs = parse_op(spec, registry)
        try:
            fns.append(factory(*args, **kwargs))
        except ValueError as e:
            raise ConfigError(f"op {spec!r} in {registry.config_key}: {e}") from None
    return fns


@dataclasses.dataclass(frozen=True)
class Fitted:
    """A preprocessing op with parameters estimated from the training split: `fit(images)`
    gets the training images as preprocessed by the ops before it and returns the parameters
    (arrays) that `apply(params, image)` then uses for every split."""

    fit: Callable[[np.ndarray], Any]
    apply: Callable[[Any, jax.Array], jax.Array]


def _chain(fns):
    def apply(image):
        for fn in fns:
            image = fn(image)
        return image

    return apply


def _map_batched(fn, images: np.ndarray, chunk: int = 1024) -> np.ndarray:
    batched = jax.jit(jax.vmap(fn))
    return np.concatenate(
        [np.asarray(batched(images[i : i + chunk])) for i in range(0, len(images), chunk)]
    )


class Preprocess:
    """The preprocessing list as one `image -> image` function.

    With dataset-fitted ops in the list (`zscore(scope='dataset')`, ...), call `fit(train_images)`
    first; it returns the pure function with the fitted statistics bound in, and the statistics
    (for the record).
    """

    def __init__(self, specs):
        self.specs = tuple(specs)
        self.ops = _build(self.specs, PREPROCESS_OPS)
        self.needs_fit = any(isinstance(op, Fitted) for op in self.ops)

    def __call__(self, image):
        if self.needs_fit:
            raise RuntimeError("this preprocessing has dataset-fitted ops; call fit() first")
        return _chain(self.ops)(image)

    def fit(self, train_images: np.ndarray):
        fns, stats, done = [], {}, 0
        images = train_images
        for i, op in enumerate(self.ops):
            if isinstance(op, Fitted):
                images = _map_batched(_chain(fns[done:]), images) if fns[done:] else images
                done = len(fns)
                params = jax.tree.map(np.asarray, op.fit(np.asarray(images)))
                stats[f"{i}:{self.specs[i]}"] = jax.tree.map(lambda x: x.tolist(), params)
                op = (lambda o, p: lambda image: o.apply(p, image))(op, params)
            fns.append(op)
        return _chain(fns), stats

    def bind(self, stats: dict):
        """The pure function with statistics an earlier `fit` returned (as recorded in a run's
        data_summary.json) bound in: new images preprocessed exactly as the training split
        was, without its images."""
        fns = []
        for i, op in enumerate(self.ops):
            if isinstance(op, Fitted):
                key = f"{i}:{self.specs[i]}"
                if key not in stats:
                    raise ConfigError(
                        f"preprocessing op {self.specs[i]!r} has no fitted statistics in the "
                        f"run's record (found: {', '.join(stats) or 'none'})"
                    )
                params = jax.tree.map(
                    lambda x: np.asarray(x, np.float32),
                    stats[key],
                    is_leaf=lambda x: isinstance(x, list),
                )
                op = (lambda o, p: lambda image: o.apply(p, image))(op, params)
            fns.append(op)
        return _chain(fns)


def build_preprocess(specs) -> Preprocess:
    """The whole preprocessing list, parsed and checked (see `Preprocess`)."""
    return Preprocess(specs)


def build_mix(spec: str):
    """The batch mixing op `(key, images, targets) -> (images, targets)`, or None for ""."""
    return _build([spec], MIX_OPS)[0] if spec else None


def build_augment(specs):
    """One random `(key, image) -> image` function; each op gets its own sub-key."""
    fns = _build(specs, AUGMENT_OPS)

    def apply(key, image):
        for i, fn in enumerate(fns):
            image = fn(jax.random.fold_in(key, i), image)
        return image

    return apply
