"""Pure preprocessing and augmentation ops, chained by name from the config.

Preprocessing ops are deterministic `image -> image` functions applied once per example on the
host. Augmentation ops are `(key, image) -> image` functions run on the device inside the
compiled train step, vmapped over the batch with one key per example.
"""

from medjax.ops import (  # noqa: F401  (registers the ops)
    edges,
    filters,
    geometry,
    histogram,
    intensity,
    intensity_augment,
    mix,
    roi,
    spatial_augment,
    wavelets,
)
from medjax.ops.pipeline import (
    AUGMENT_OPS,
    MIX_OPS,
    PREPROCESS_OPS,
    Fitted,
    Preprocess,
    build_augment,
    build_mix,
    build_preprocess,
    parse_op,
)

__all__ = [
    "AUGMENT_OPS",
    "MIX_OPS",
    "PREPROCESS_OPS",
    "Fitted",
    "Preprocess",
    "build_augment",
    "build_mix",
    "build_preprocess",
    "parse_op",
]
