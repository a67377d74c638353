"""What preprocessing hands to the model: finite values, in the range the ops promise.

- NaN or inf in any preprocessed split is always a DataError naming the split, the first bad
  image and the op that produced it (found by re-running the ops one by one on that image), or
  the raw data when it was already there.
- The training split's range is compared with the one the preprocessing list promises: the
  range of its last range-setting op (`value_range`, `normalize`, `minmax`, `window`, ...) as
  carried through the ops after it that keep a range (resizing, cropping, filters, channels).
  Values beyond that range by more than its own width (for [-1, 1]: below -3 or above 3) are
  what a wrong input assumption gives (16-bit pixels through the default value_range(in_max=
  255) reach 513, float images scaled x1000 far more), so they fail, or warn with
  config.data.range_check="warn"; genuine outliers (CT metal at 3000 HU through
  value_range(in_max=1000)) can also land there, hence the switch. A range under 1/100 of the
  promised width after value_range or normalize (in_max=65535 on 8-bit data) warns only: it
  still trains, normalisation layers rescale it.
"""

import dataclasses
import inspect
import warnings

import jax.numpy as jnp
import numpy as np

from medjax.data.source import Dataset
from medjax.data.values import RANGE_CHECKS, nonfinite
from medjax.errors import DataError
from medjax.ops.pipeline import PREPROCESS_OPS, build_preprocess, parse_op


class RangeWarning(UserWarning):
    """Preprocessed training values outside, or far inside, the range the ops promise."""


@dataclasses.dataclass(frozen=True)
class Promise:
    low: float
    high: float
    spec: str  # the op that set it
    assumes: tuple[float, float] | None = None  # the input range of a fixed mapping


def _promise(ends, spec: str, assumes=None) -> Promise:
    return Promise(float(min(ends)), float(max(ends)), spec, assumes)


# Each rule: (promise so far or None, the op's arguments, its spec) -> the promise after it.


def _value_range(_, a, spec):
    return _promise((a["min"], a["max"]), spec, (a["in_min"], a["in_max"]))


def _normalize(_, a, spec):
    return _promise((-a["mean"] / a["std"], (1 - a["mean"]) / a["std"]), spec, (0.0, a["in_max"]))


def _to_min_max(_, a, spec):
    return _promise((a["min"], a["max"]), spec)


def _to_unit(_, a, spec):
    return _promise((0.0, 1.0), spec)


def _clip_percentile(promise, a, spec):
    return _promise((0.0, 1.0), spec) if a["rescale"] else promise


def _keep(promise, a, spec):
    return promise


def _pad(promise, a, spec):
    if promise is None:
        return None
    ends = (promise.low, promise.high, a["value"])
    return dataclasses.replace(promise, low=min(ends), high=max(ends))


def _gamma(promise, a, spec):
    if promise is None:
        return None
    low, high = (max(x, 0.0) ** a["gamma"] for x in (promise.low, promise.high))
    return dataclasses.replace(promise, low=low, high=high)


# Ops not listed (zscore, unsharp_mask, ops added later) leave no promise to check.
RULES = {
    "value_range": _value_range,
    "normalize": _normalize,
    "minmax": _to_min_max,
    "window": _to_min_max,
    "equalize": _to_unit,
    "clahe": _to_unit,
    "clip_percentile": _clip_percentile,
    "gamma": _gamma,
    "pad_to_square": _pad,
    "crop_or_pad": _pad,
    **dict.fromkeys(("resize", "resize_short_side", "center_crop"), _keep),
    **dict.fromkeys(("grayscale", "to_rgb", "gaussian_blur", "median", "bilateral"), _keep),
}


def promised_range(specs) -> Promise | None:
    """The range the preprocessing list promises for its output, or None if it promises none."""
    promise = None
    for spec in specs:
        factory, args, kwargs = parse_op(spec, PREPROCESS_OPS)
        bound = inspect.signature(factory).bind(*args, **kwargs)
        bound.apply_defaults()
        rule = RULES.get(spec.strip().partition("(")[0].strip())
        promise = rule(promise, bound.arguments, spec) if rule else None
    return promise


def _span(images: np.ndarray) -> str:
    return f"{float(images.min()):.6g}..{float(images.max()):.6g} ({images.dtype})"


def _culprit(raw: Dataset, split: str, index: int, specs) -> str:
    """Which op first makes raw image `index` of `split` non-finite (the ops re-run one by one,
    each prefix fitted on the raw training split as the whole list was)."""
    image = raw.splits[split].images[index]
    if nonfinite(image[None]):
        return "it is already in the raw data: the data is at fault; clean it"
    train = raw.splits["train"].images
    for k in range(1, len(specs) + 1):
        fn, _ = build_preprocess(specs[:k]).fit(train)
        if nonfinite(np.asarray(fn(jnp.asarray(image)))[None]):
            return (
                f"op {specs[k - 1]!r} (number {k} in config.data.preprocess) produced it from raw "
                f"values {_span(image)}; fix those values in the data, or change the op"
            )
    return "the preprocessing produced it; check the raw values and the ops"


def _check_finite(raw: Dataset, done: Dataset, specs) -> None:
    for name, split in done.splits.items():
        found = nonfinite(split.images)
        if found:
            first, count = found
            raise DataError(
                f"config.data.preprocess turned {count} of {len(split)} {name} images into NaN "
                f"or infinite values, the first at index {first}: "
                f"{_culprit(raw, name, first, specs)}"
            )


def _cause(raw: np.ndarray, promise: Promise, specs) -> str:
    """The probable reason for a range far from the promise, and its fix."""
    if promise.assumes is None:
        return f"an op after {promise.spec!r} moved the values; check the ops after it"
    low, high = promise.assumes
    where = "" if promise.spec == specs[0] else " (before the ops ahead of it)"
    text = (
        f"the raw training pixels{where} span {_span(raw)} but {promise.spec!r} assumes "
        f"{low:g}..{high:g}"
    )
    if high > 2 * 255 and raw.max() <= 255:
        return (
            f"{text}: the data is on 0-255 (as PNG/TIFF files are under config.data.bit_depth="
            f"'auto'); drop in_max (0-255 is the default), or for 16-bit image files set "
            f"config.data.bit_depth='16' to keep 0-65535"
        )
    if raw.dtype == np.uint16 or (raw.dtype.kind in "ui" and 255 < raw.max() <= 65535):
        return (
            f"{text}: 16-bit data? Set in_max=65535 in that op, or config.data.bit_depth='auto' "
            f"(PNG/TIFF files: every file onto 0-255)"
        )
    return (
        f"{text}: set its in_min/in_max (or in_max) to the data's range, or use minmax() or "
        f"window(...) for data in physical units"
    )


def _check_range(raw: np.ndarray, done: np.ndarray, specs, mode: str) -> None:
    promise = promised_range(specs)
    if promise is None or promise.high <= promise.low or not done.size:
        return
    low, high, width = float(done.min()), float(done.max()), promise.high - promise.low
    said = f"the training images span {low:.6g}..{high:.6g} after preprocessing"
    if low < promise.low - width or high > promise.high + width:
        message = (
            f"config.data.preprocess: {said}, far outside the {promise.low:g}..{promise.high:g} "
            f"that {promise.spec!r} promises; {_cause(raw, promise, specs)}"
        )
        if mode == "raise":
            raise DataError(
                f"{message}. If these values are intended, set config.data.range_check='warn'"
            )
        warnings.warn(message, RangeWarning, stacklevel=4)
    elif promise.assumes and high - low < width / 100:
        warnings.warn(
            f"config.data.preprocess: {said}, under 1/100 of the {promise.low:g}.."
            f"{promise.high:g} that {promise.spec!r} maps its input range onto; "
            f"{_cause(raw, promise, specs)}",
            RangeWarning,
            stacklevel=4,
        )


def check_preprocessed(raw: Dataset, done: Dataset, specs, range_check: str = "raise") -> None:
    """Both checks of the module doc on `done`, the preprocessed `raw` (range_check is
    config.data.range_check: raise, warn or off)."""
    if range_check not in RANGE_CHECKS:
        raise ValueError(f"range_check must be one of {RANGE_CHECKS}, not {range_check!r}")
    _check_finite(raw, done, specs)
    if range_check != "off":
        _check_range(raw.splits["train"].images, done.splits["train"].images, specs, range_check)
