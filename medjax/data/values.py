"""Pixel values no source may pass on (NaN, infinity).

A NaN pixel in the raw data surfaces, many steps into training, as a NaN loss that looks like
a learning-rate problem; every source therefore checks its raw images here and names the file
(or array and split) and the first bad image, so the message blames the data.
"""

import numpy as np

from medjax.errors import DataError

CHUNK_BYTES = 64 << 20  # the boolean mask of one chunk, not of the whole split
RANGE_CHECKS = ("raise", "warn", "off")  # config.data.range_check


def nonfinite(images: np.ndarray) -> tuple[int, int] | None:
    """(index of the first image holding NaN or inf, how many images do), or None.

    Integer images are finite by construction and cost nothing."""
    if images.dtype.kind not in "fc" or not images.size:
        return None
    per_image = max(1, images[0].nbytes)
    step = max(1, CHUNK_BYTES // per_image)
    bad = []
    for start in range(0, len(images), step):
        block = images[start : start + step]
        bad.append(~np.isfinite(block.reshape(len(block), -1)).all(1))
    bad = np.concatenate(bad)
    return (int(np.argmax(bad)), int(bad.sum())) if bad.any() else None


def check_finite(images: np.ndarray, where: str, fix: str) -> None:
    """DataError naming `where`, the first bad image and `fix` if any value is NaN or inf."""
    found = nonfinite(images)
    if found:
        first, count = found
        raise DataError(
            f"{where}: {count} of {len(images)} images hold NaN or infinite pixel values, the "
            f"first at index {first}; the data is at fault, not the training: {fix}"
        )
