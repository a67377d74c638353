"""Foreground region of interest: crop to the body/organ, or strip the skull, as preprocessing
ops for images (H, W, C) and volumes (D, H, W, C).

The mask is found per image: a threshold (a value, or Otsu's on the image), a binary opening
with a disk/ball of `radius` that cuts specks and thin bridges, the largest connected
component (and, for skull stripping, its holes filled; medjax.ops.morphology). The output has
the input's shape, whatever the box, so the ops stay pure, jit-compiled functions: the box is
resampled onto the full grid (`fit="resize"`) or copied unscaled into its centre
(`fit="pad"`). An image whose mask is empty (nothing above the threshold) is returned as it is.
"""

import jax
import jax.numpy as jnp

from medjax.errors import ConfigError
from medjax.ops import morphology
from medjax.ops.pipeline import PREPROCESS_OPS

FITS = ("resize", "pad")


def _check(threshold, radius, margin, fit, channel):
    if threshold != "otsu" and not isinstance(threshold, int | float):
        raise ValueError(f"threshold must be 'otsu' or a number, not {threshold!r}")
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an int >= 0 (pixels), not {radius!r}")
    if not 0 <= margin < 1:
        raise ValueError(f"margin must be a fraction of the image size in [0, 1), not {margin!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if channel is not None and (not isinstance(channel, int) or channel < 0):
        raise ValueError(f"channel must be None (the channel mean) or an int >= 0, not {channel!r}")


def _reference(image, channel, op: str):
    """The one spatial array the mask is computed on."""
    if channel is None:
        return image.astype(jnp.float32).mean(-1)
    if channel >= image.shape[-1]:
        raise ConfigError(
            f"{op}(channel={channel}) in config.data.preprocess: the images have "
            f"{image.shape[-1]} channel(s); use channel=None (their mean) or 0..{image.shape[-1] - 1}"
        )
    return image[..., channel].astype(jnp.float32)


def foreground_mask(image, threshold="otsu", radius=2, channel=None, holes=False, op="mask"):
    """The largest face-connected component of `image > threshold` after an opening."""
    ref = _reference(image, channel, op)
    t = morphology.otsu_threshold(ref) if threshold == "otsu" else jnp.float32(threshold)
    mask = morphology.largest_component(morphology.opening(ref > t, radius))
    return morphology.fill_holes(mask) if holes else mask


def _box(mask, margin, keep_aspect):
    """(lo, hi) per spatial axis: the mask's bounding box grown by `margin` times the image
    size on each side, kept inside the image; with `keep_aspect`, then widened about its
    centre to the image's aspect ratio (it may then reach past the image's edge)."""
    n = jnp.array(mask.shape, jnp.float32)
    lo, hi = morphology.bounding_box(mask)
    lo, hi = jnp.clip(lo - margin * n, 0, n), jnp.clip(hi + margin * n, 0, n)
    if keep_aspect:
        centre, scale = (lo + hi) / 2, jnp.min(n / (hi - lo))
        lo, hi = centre - n / scale / 2, centre + n / scale / 2
    return lo, hi


def _resize_box(image, lo, hi):
    n = jnp.array(image.shape[:-1], jnp.float32)
    scale = n / (hi - lo)
    dims = tuple(range(image.ndim - 1))
    return jax.image.scale_and_translate(
        image.astype(jnp.float32), image.shape, dims, scale, -lo * scale, "linear"
    )


def _pad_box(image, lo, hi):
    """The box's pixels, unscaled, centred in an image of zeros of the input's shape."""
    spatial = image.shape[:-1]
    inside = jnp.ones(spatial, bool)
    for axis, size in enumerate(spatial):
        pos = jnp.arange(size).reshape([-1 if a == axis else 1 for a in range(len(spatial))])
        inside = inside & (pos >= lo[axis]) & (pos < hi[axis])
    kept = jnp.where(inside[..., None], image.astype(jnp.float32), 0.0)
    n = jnp.array(spatial, jnp.float32)
    shift = (jnp.floor((n - (hi - lo)) / 2) - lo).astype(jnp.int32)  # out[p] = kept[p - shift]
    padded = jnp.pad(kept, [(s, s) for s in spatial] + [(0, 0)])
    start = [jnp.int32(s) - shift[a] for a, s in enumerate(spatial)] + [jnp.int32(0)]
    return jax.lax.dynamic_slice(padded, start, image.shape)


def crop_to_mask(image, mask, margin=0.05, fit="resize", keep_aspect=True):
    """`image` cropped to the bounding box of `mask` (+ margin), back at its own shape; the
    image unchanged when the mask is empty."""
    if fit == "pad":
        lo, hi = _box(mask, margin, keep_aspect=False)
        out = _pad_box(image, lo, hi)
    else:
        out = _resize_box(image, *_box(mask, margin, keep_aspect))
    return jnp.where(jnp.any(mask), out, image.astype(jnp.float32))


@PREPROCESS_OPS.register("foreground_crop")
def foreground_crop(
    threshold="otsu",
    radius: int = 2,
    margin: float = 0.05,
    fit: str = "resize",
    keep_aspect: bool = True,
    channel=None,
):
    """Crop to the foreground (body, organ, breast) and fill the input's shape with it: the
    box of the largest component of `image > threshold` ("otsu" or a value) after an opening
    with a disk/ball of `radius` px, grown by `margin` x the image size. fit="resize" resamples
    the box (linear) onto the whole grid, keeping the aspect ratio unless `keep_aspect=False`
    (widened boxes read 0 past the image's edge); fit="pad" copies it unscaled into the centre
    of a zero image. The mask is computed on `channel` (None: the channel mean). An image with
    no foreground passes unchanged."""
    _check(threshold, radius, margin, fit, channel)

    def apply(image):
        mask = foreground_mask(image, threshold, radius, channel, op="foreground_crop")
        return crop_to_mask(image, mask, margin, fit, keep_aspect)

    return apply


@PREPROCESS_OPS.register("skull_strip")
def skull_strip(
    threshold="otsu",
    radius: int = 2,
    fill_holes: bool = True,
    crop: bool = False,
    margin: float = 0.05,
    fit: str = "resize",
    keep_aspect: bool = True,
    channel=None,
):
    """Keep the brain (or organ) only: the largest component of `image > threshold` after an
    opening with a disk/ball of `radius` px (which breaks the thin bridges between brain and
    skull), its holes filled (dark ventricles stay inside), multiplies every channel; the rest
    becomes 0 (as zscore(scope='foreground') expects). `crop=True` then crops to the mask as
    foreground_crop does (margin, fit, keep_aspect). An image with no foreground passes
    unchanged."""
    _check(threshold, radius, margin, fit, channel)

    def apply(image):
        mask = foreground_mask(
            image, threshold, radius, channel, holes=fill_holes, op="skull_strip"
        )
        stripped = jnp.where(mask[..., None], image.astype(jnp.float32), 0.0)
        stripped = jnp.where(jnp.any(mask), stripped, image.astype(jnp.float32))
        return crop_to_mask(stripped, mask, margin, fit, keep_aspect) if crop else stripped

    return apply
