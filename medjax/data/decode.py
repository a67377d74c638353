"""Pixels from files: safe image decoding, channel conversion, and fitting to the model's size.

Value ranges (what preprocessing such as `value_range` or `minmax` sees) follow
config.data.bit_depth, applied to each file on its own, so one file never changes the values of
another:
- "auto" (default): every image on the 8-bit scale 0-255, each from its own full scale. 8-bit
  images (L, RGB, palette, RGBA without its alpha) stay uint8; 16-bit images (I;16 PNG/TIFF,
  or 32-bit integer TIFFs within 0..65535) become float32 values / 257, keeping their
  precision, so an 8-bit and a 16-bit image of one scene get the same values and the default
  `value_range` fits both.
- "8": uint8 0-255 throughout; 16-bit images divided by 257 and rounded.
- "16": uint16 0-65535 throughout, 8-bit images multiplied by 257 (255 -> 65535); preprocess
  with `value_range(in_max=65535)` or `minmax()`.
Float images (TIFF mode F, or 32-bit integers outside 0..65535) keep their values as float32,
as DICOM and NIfTI do (see those modules for their units). A dataset holding any float image is
float32 throughout. A dataset whose files have different depths gets one warning with the
count of each (`medjax.data.files`): depth can follow the scanner, and so the class.

Resizing: Pillow's BOX filter (area average) when an image shrinks, BILINEAR when it grows, so
no ringing pushes values outside the input's range; images already at the size are untouched.
Volumes are resampled with the same triangle (trilinear) filter in NumPy, widened when shrinking
so every input voxel contributes (antialiasing), as Pillow does for 2D.
"""

import dataclasses
import struct

import numpy as np
from PIL import Image, ImageFile

from medjax.data.source import to_channels
from medjax.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Only the formats medjax documents: a smaller decoder surface for untrusted files.
PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
FITS = ("pad", "resize")
BIT_DEPTHS = ("auto", "8", "16")  # config.data.bit_depth


@dataclasses.dataclass
class Decoded:
    """What one file holds: one image, or several (frames, slices), all of one patient."""

    images: list[np.ndarray]  # each (S, S, C), or (D, S, S, C) for volumes
    patient: str | None = None  # from the file itself (DICOM PatientID)
    modality: str = "unknown"
    depth: str | None = None  # image files: "8", "16" or "float", before bit_depth mapping


def is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTS)


def check_pixels(path: str, pixels: int, max_pixels: int, what="image", unit="pixels") -> None:
    """Refuse huge files before decoding them (a small compressed file can expand to GBs)."""
    if pixels > max_pixels:
        raise DataError(
            f"{path}: {what} of {pixels:,} {unit} exceeds config.data.max_pixels={max_pixels:,} "
            f"(a guard against decompression bombs); if the file is trusted, raise "
            f"--config.data.max_pixels"
        )


def open_image(path: str, max_pixels: int) -> Image.Image:
    """Open and fully decode an image, refusing truncated, corrupt and oversized files."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A process-wide Pillow switch: with it, truncated files decode with grey filler rows.
        raise DataError(
            f"{path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled in this process (by other "
            f"code), so truncated images would load silently padded; set it back to False"
        )
    try:
        im = Image.open(path, formats=PIL_FORMATS)
    except Image.DecompressionBombError as e:
        raise DataError(
            f"{path}: refused by Pillow's own limit ({e}); if the file is trusted, raise "
            f"PIL.Image.MAX_IMAGE_PIXELS and --config.data.max_pixels"
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
        raise DataError(
            f"{path}: not a readable {'/'.join(PIL_FORMATS)} image ({e}); re-export or remove it"
        ) from None
    with im:
        width, height = im.size
        check_pixels(path, width * height, max_pixels)
        if getattr(im, "n_frames", 1) > 1:
            raise DataError(
                f"{path}: has {im.n_frames} frames or pages; medjax reads single-frame images, "
                f"so save each page as its own file"
            )
        try:
            im.load()  # decodes everything: a truncated or corrupt stream fails here
        except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
            raise DataError(
                f"{path}: truncated or corrupt image ({e}); re-export or remove it"
            ) from None
        return im.copy()


def image_to_array(im: Image.Image, path: str) -> np.ndarray:
    """(H, W, C) uint8, uint16 or float32, keeping 16-bit depth; alpha is dropped."""
    mode = im.mode
    if mode in ("1", "LA", "La"):
        im, mode = im.convert("L"), "L"
    elif mode in ("P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    array = np.asarray(im)
    if mode == "I":  # 32-bit integers: 16-bit data from some writers, else keep as float
        if array.size and array.min() >= 0 and array.max() <= 65535:
            array = array.astype(np.uint16)
        else:
            array = array.astype(np.float32)
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        array = array.astype(np.uint16)  # also byte-swaps big-endian I;16B
    elif mode == "F":
        array = array.astype(np.float32)
    elif mode not in ("L", "RGB"):
        raise DataError(f"{path}: unsupported image mode {mode!r}; convert it to grey or RGB")
    return array if array.ndim == 3 else array[..., None]


def fit_image(image: np.ndarray, size: int, fit: str) -> np.ndarray:
    """(H, W, C) -> (size, size, C), same dtype: pad to square (fit="pad") or stretch."""
    height, width = image.shape[:2]
    if fit == "pad" and height != width:
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        padded = np.zeros((side, side, image.shape[2]), image.dtype)
        padded[top : top + height, left : left + width] = image
        image, height, width = padded, side, side
    if (height, width) == (size, size):
        return image
    shrink = height >= size and width >= size
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    # Channel by channel in float ("F" mode) so 16-bit and float data keep their precision.
    channels = [
        np.asarray(Image.fromarray(image[..., c].astype(np.float32)).resize((size, size), resample))
        for c in range(image.shape[2])
    ]
    return cast(np.stack(channels, axis=-1), image.dtype)


def cast(values: np.ndarray, dtype) -> np.ndarray:
    """Float results back to an integer dtype by rounding and clipping to its range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights, widened by the shrink factor (antialias)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale - 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None] - centers[:, None]) / support)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_volume(volume: np.ndarray, depth: int, size: int, fit: str) -> np.ndarray:
    """(D, H, W) -> (depth, size, size) float32; fit="pad" squares each slice first (the depth
    axis is always resampled on its own: slice spacing differs from pixel spacing anyway)."""
    volume = volume.astype(np.float32)
    d, h, w = volume.shape
    if fit == "pad" and h != w:
        side = max(h, w)
        padded = np.zeros((d, side, side), np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        padded[:, top : top + h, left : left + w] = volume
        volume = padded
    for axis, n_out in enumerate((depth, size, size)):
        n_in = volume.shape[axis]
        if n_in != n_out:
            moved = np.tensordot(_axis_weights(n_in, n_out), volume, axes=(1, axis))
            volume = np.moveaxis(moved, 0, axis)
    return volume


def file_depth(array: np.ndarray) -> str:
    """The depth `image_to_array` decoded a file at: "8", "16" or "float"."""
    return {np.dtype(np.uint8): "8", np.dtype(np.uint16): "16"}.get(array.dtype, "float")


def to_bit_depth(array: np.ndarray, bit_depth: str) -> np.ndarray:
    """One file's pixels on the common scale config.data.bit_depth names (see module doc)."""
    depth = file_depth(array)
    if depth == "8" and bit_depth == "16":
        return array.astype(np.uint16) * 257
    if depth == "16" and bit_depth != "16":
        scaled = array.astype(np.float32) / 257
        return scaled if bit_depth == "auto" else cast(scaled, np.uint8)
    return array


def stack_consistent(images: list[np.ndarray]) -> np.ndarray:
    """Stack examples into one array: float32 if any is float (integer values kept as they
    are: `to_bit_depth` already put every file on one scale), else their common dtype."""
    if any(a.dtype.kind == "f" for a in images):
        return np.stack([a.astype(np.float32) for a in images])
    return np.stack(images)


def read_image(path: str, cfg) -> Decoded:
    """One PNG/JPEG/BMP/TIFF file -> [(image_size, image_size, channels)]."""
    if cfg.depth > 0:
        raise DataError(
            f"{path}: a 2D image, but config.data.depth={cfg.depth} asks for volumes; set "
            f"--config.data.depth=0 (or use NIfTI or multi-frame DICOM volumes)"
        )
    array = image_to_array(open_image(path, cfg.max_pixels), path)
    depth, array = file_depth(array), to_bit_depth(array, cfg.bit_depth)
    array = to_channels(array[None], cfg.channels, path)[0]
    return Decoded([fit_image(array, cfg.image_size, cfg.fit)], depth=depth)
