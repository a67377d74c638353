"""How a predicted mask reaches the classifier: the image cropped to the mask's box, or the
mask appended as one more channel."""

import jax
import numpy as np

USES = ("crop", "channel")


def box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom and right exclusive, of the mask's bounding box
    grown by `margin` x its side on each side and clipped to the image; None for an empty
    mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return None
    h, w = mask.shape
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy = int(round(margin * (bottom - top)))
    dx = int(round(margin * (right - left)))
    return max(top - dy, 0), min(bottom + dy, h), max(left - dx, 0), min(right + dx, w)


def crop_to_masks(images: np.ndarray, masks: np.ndarray, margin: float, order: int = 1):
    """Each image (N, H, W, C) cropped to its mask's box (see `box`) and resized back to
    H x W (spline `order`, 1 = bilinear); an image whose mask is empty stays whole. Returns
    (images float32, how many masks were empty). Half-pixel centres, as medjax's resize op."""
    out, empty = np.empty(images.shape, np.float32), 0
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        b = box(mask, margin)
        if b is None:
            out[i], empty = image, empty + 1
            continue
        top, bottom, left, right = b
        crop = image[top:bottom, left:right].astype(np.float32)
        method = {0: "nearest", 1: "linear", 3: "cubic"}[order]
        out[i] = jax.image.resize(crop, image.shape, method, antialias=False)
    return out, empty


def add_mask_channel(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(N, H, W, C) images with the masks as channel C, valued -1 (background) or 1 (lesion)
    to match the review recipe's value range."""
    channel = np.where(masks, 1.0, -1.0).astype(np.float32)[..., None]
    return np.concatenate([images.astype(np.float32), channel], axis=-1)


def apply(use: str, images, masks, margin: float) -> tuple[np.ndarray, dict]:
    """(transformed images, what was done for the record)."""
    if use == "crop":
        out, empty = crop_to_masks(images, masks, margin)
        return out, {"empty_masks_kept_whole": empty}
    return add_mask_channel(images, masks), {}
