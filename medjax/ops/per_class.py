"""Per-class augmentation (DARI-style): extra or stronger augmentation for chosen classes,
usually the minority ones.

`config.data.augment_per_class` lists entries "CLASS: op(...)", CLASS a class index or name
(e.g. ("malignant: random_affine(rotate=30)", "malignant: elastic()")). The ops listed for
class c run, in order, on the examples whose label is c: after the shared
`config.data.augment` (`config.data.augment_per_class_mode="after"`), or in its place
("instead", so that a class's images are not resampled twice and blurred more than the
others'). Every other example is left bit for bit as the shared augmentation made it.
Each example still draws from its own key, so the same seed gives the same augmentation,
resumed or not.
"""

import jax
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.ops.pipeline import AUGMENT_OPS, MIX_OPS, PREPROCESS_OPS, _build, build_augment, op_name

KEY = "config.data.augment_per_class"
MODES = ("after", "instead")  # config.data.augment_per_class_mode
# The per-class ops draw from a stream of the example's key that the shared ops (folded with
# their position, 0, 1, ...) never reach.
_STREAM = 2**30


def parse_per_class(specs) -> list[tuple[int | str, str]]:
    """[(class index or name, op spec)] for the entries, each op parsed and built, so that a
    bad entry fails before any data is read."""
    out = []
    for entry in specs:
        if not isinstance(entry, str) or ":" not in entry:
            raise ConfigError(
                f'{KEY} entry {entry!r} names no class; write "CLASS: op(...)" with a class '
                f'index or name, e.g. "1: random_affine(rotate=30)"'
            )
        ref, spec = (s.strip() for s in entry.split(":", 1))
        if not ref or not spec:
            raise ConfigError(f"{KEY} entry {entry!r}: need both a class and an op")
        _check_is_augmentation(spec, entry)
        try:
            _build([spec], AUGMENT_OPS)
        except ConfigError as e:  # name this key, not data.augment
            message = str(e).replace(f" in {AUGMENT_OPS.config_key}", "")
            raise ConfigError(f"{KEY} entry {entry!r}: {message}") from None
        out.append((int(ref) if ref.lstrip("-").isdigit() else ref, spec))
    return out


def _check_is_augmentation(spec: str, entry: str) -> None:
    try:
        name = op_name(spec)
    except (SyntaxError, AttributeError):
        return  # parse_op reports the syntax
    for registry, where in (
        (PREPROCESS_OPS, "config.data.preprocess"),
        (MIX_OPS, "config.data.mix"),
    ):
        if name in registry.names() and name not in AUGMENT_OPS.names():
            raise ConfigError(
                f"{KEY} entry {entry!r}: {name!r} is a {registry.kind}, not an augmentation "
                f"op; put it in {where}, or use one of: {', '.join(AUGMENT_OPS.names())}"
            )


def resolve(parsed, class_names) -> dict[int, tuple[str, ...]]:
    """{class index: its op specs, in order} against the data's class list."""
    by_class: dict[int, tuple[str, ...]] = {}
    for ref, spec in parsed:
        if isinstance(ref, int):
            c = ref
            if not 0 <= c < len(class_names):
                c = None
        else:
            c = class_names.index(ref) if ref in class_names else None
        if c is None:
            valid = ", ".join(f"{i} ({n})" for i, n in enumerate(class_names))
            raise ConfigError(
                f"{KEY} names class {ref!r}, which the data does not have; valid classes: {valid}"
            )
        by_class[c] = (*by_class.get(c, ()), spec)
    return by_class


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(
            f"config.data.augment_per_class_mode must be one of {', '.join(MODES)}, not {mode!r}"
        )


def build_labelled_augment(
    shared_specs, per_class_specs, class_names, mode="after", multi_label=False
):
    """One `(key, image, label) -> image` function: the shared ops, then (mode "after") or
    in their place ("instead") those of the example's class; None when there are no ops at
    all. `label` may be left out only when no class has ops of its own."""
    check_mode(mode)
    if multi_label and per_class_specs:
        raise ConfigError(
            f"{KEY} needs one class per image; this data is multi-label (an image has several "
            f"findings), so leave {KEY} empty"
        )
    by_class = resolve(parse_per_class(per_class_specs), class_names)
    if not shared_specs and not by_class:
        return None
    shared = build_augment(shared_specs)
    extra = {c: build_augment(specs) for c, specs in sorted(by_class.items())}

    def apply(key, image, label=None):
        original, image = image, shared(key, image)
        if not extra:
            return image
        if label is None:
            raise TypeError(f"{KEY} is set, so the augmentation needs each example's label")
        key = jax.random.fold_in(key, _STREAM)
        for c, fn in extra.items():
            # computed for every example (shapes are static under vmap), kept for class c only
            changed = fn(jax.random.fold_in(key, c), image if mode == "after" else original)
            image = jnp.where(label == c, changed.astype(image.dtype), image)
        return image

    return apply
