"""Parse op specs like "random_affine(rotate=15, zoom=0.1)" and chain them into one function."""

import ast
import inspect

import jax

from medjax.errors import ConfigError
from medjax.registry import Registry, suggest

PREPROCESS_OPS = Registry("preprocessing op", "config.data.preprocess")
AUGMENT_OPS = Registry("augmentation op", "config.data.augment")


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


def _build(specs, registry):
    fns = []
    for spec in specs:
        factory, args, kwargs = parse_op(spec, registry)
        try:
            fns.append(factory(*args, **kwargs))
        except ValueError as e:
            raise ConfigError(f"op {spec!r} in {registry.config_key}: {e}") from None
    return fns


def build_preprocess(specs):
    """One deterministic `image -> image` function for the whole preprocessing list."""
    fns = _build(specs, PREPROCESS_OPS)

    def apply(image):
        for fn in fns:
            image = fn(image)
        return image

    return apply


def build_augment(specs):
    """One random `(key, image) -> image` function; each op gets its own sub-key."""
    fns = _build(specs, AUGMENT_OPS)

    def apply(key, image):
        for i, fn in enumerate(fns):
            image = fn(jax.random.fold_in(key, i), image)
        return image

    return apply
