"""DICOM files (pydicom): one 2D image per frame, in the modality's units or windowed.

Pixels are the stored values times RescaleSlope plus RescaleIntercept (Hounsfield units for
CT), as float32, then config.data.dicom_window:
- "file": the file's WindowCenter/WindowWidth (the first pair when it lists several) maps
  [center - width/2, center + width/2] linearly onto [0, 255], clipped, so the default
  `value_range` preprocessing fits; a file without a window uses its own min..max instead.
- "center,width": that window for every file (e.g. "40,400" for CT soft tissue).
- "none": the rescaled values themselves (HU for CT): preprocess with `minmax()` or
  `value_range(in_min=..., in_max=...)`.
MONOCHROME1 files (low values shown bright) are inverted so bright means high values in every
image: windowed ones become 255 - v, unwindowed ones are mirrored within the range their stored
bits can hold. RGB files (ultrasound captures) keep their [0, 255] colours, unwindowed.

Multi-frame files give one 2D image per frame, all with the file's label and patient; with
config.data.depth > 0 the frames form one volume instead. The patient is the manifest's column,
else the PatientID tag, else the file itself. Modality comes from the Modality tag.
"""

import math
import os

import numpy as np
import pydicom

from medjax.data import files
from medjax.data.decode import IMAGE_EXTS, Decoded, check_pixels, fit_image, fit_volume
from medjax.data.manifest import register_folder_source
from medjax.data.source import to_channels
from medjax.errors import ConfigError, DataError

MODALITIES = {
    "xray": ("CR", "DX", "DR", "MG", "RF", "RG", "XA", "PX", "IO"),
    "ct": ("CT",),
    "mri": ("MR",),
    "ultrasound": ("US",),
}
NOT_DICOM = (*IMAGE_EXTS, ".nii", ".nii.gz", ".csv", ".txt", ".json", ".xml", ".zip")


def parse_window(value: str):
    """config.data.dicom_window -> "file", None (no window) or (center, width)."""
    if value in ("file", "none"):
        return None if value == "none" else value
    try:
        center, width = (float(x) for x in value.split(","))
    except ValueError:
        center, width = 0.0, -1.0
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise ConfigError(
            f"config.data.dicom_window={value!r}: use 'file' (each file's own window), 'none' "
            f"(raw rescaled values) or 'center,width' with width > 0, e.g. '40,400'"
        )
    return center, width


def is_dicom_file(path: str) -> bool:
    """.dcm/.dicom files, and files of other names with the DICM preamble (PACS exports often
    have no extension, or UID names like 1.2.840.113619.2.55)."""
    lower = path.lower()
    if lower.endswith((".dcm", ".dicom")):
        return True
    if lower.endswith(NOT_DICOM):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _number(ds, keyword: str, default=None, path: str = ""):
    value = ds.get(keyword)
    if value is None or value == "":
        return default
    if isinstance(value, pydicom.multival.MultiValue):  # several windows: the first is default
        value = value[0] if len(value) else default
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: DICOM tag {keyword} is {str(value)[:40]!r}, not a number; the file's "
            f"header is corrupt: fix or remove the file"
        ) from None


def _count(ds, keyword: str, default: int, path: str) -> int:
    """A count tag (Rows, NumberOfFrames, ...) as a non-negative int."""
    value = _number(ds, keyword, default, path)
    if not math.isfinite(value) or value < 0:
        raise DataError(
            f"{path}: DICOM tag {keyword} is {value}, not a count; the file's header is "
            f"corrupt: fix or remove the file"
        )
    return int(value)


def _check_size(ds, path: str, frames: int, rows: int, columns: int) -> None:
    """Uncompressed pixel data must hold what the header claims, checked before decoding."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    bits = _count(ds, "BitsAllocated", 8, path)
    if (syntax is not None and syntax.is_compressed) or bits % 8:
        return  # compressed (or bit-packed) data is smaller; max_pixels bounds its decoding
    samples = _count(ds, "SamplesPerPixel", 1, path)
    claimed, held = frames * rows * columns * samples * bits // 8, len(ds.PixelData)
    if claimed > held:
        raise DataError(
            f"{path}: the header claims {frames} frame(s) of {rows}x{columns} pixels "
            f"({claimed:,} bytes) but the pixel data holds {held:,} bytes; the file is truncated "
            f"or its header is wrong: re-export or remove it"
        )


def _grey(ds, stored: np.ndarray, window, path: str) -> np.ndarray:
    """Stored grey values (F, H, W) -> rescaled, windowed, MONOCHROME1-inverted float32."""
    slope = _number(ds, "RescaleSlope", 1.0, path)
    intercept = _number(ds, "RescaleIntercept", 0.0, path)
    values = stored.astype(np.float64) * slope + intercept
    inverted = str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1"
    if window == "file":
        center, width = (
            _number(ds, "WindowCenter", None, path),
            _number(ds, "WindowWidth", None, path),
        )
        if center is None or width is None or width <= 0:
            low, high = float(values.min()), float(values.max())
            center, width = (low + high) / 2, max(high - low, 1e-6)
        window = center, width
    if window is not None:
        center, width = window
        values = np.clip((values - (center - width / 2)) / width, 0.0, 1.0) * 255.0
        return (255.0 - values if inverted else values).astype(np.float32)
    if inverted:
        bits = int(ds.get("BitsStored") or stored.dtype.itemsize * 8)
        signed = int(ds.get("PixelRepresentation") or 0) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
        values = low + high - values
    return values.astype(np.float32)


def _modality(ds) -> str:
    code = str(ds.get("Modality", "")).strip().upper()
    return next((name for name, codes in MODALITIES.items() if code in codes), "unknown")


def _check_file_size(path: str, max_pixels: int) -> None:
    """Refuse a file too large for any image within max_pixels before reading it whole (up to
    3 samples of 8 bytes per pixel, plus room for other elements)."""
    size, limit = os.path.getsize(path), max_pixels * 24 + (64 << 20)
    if size > limit:
        raise DataError(
            f"{path}: a DICOM file of {size:,} bytes, more than an image within "
            f"config.data.max_pixels={max_pixels:,} can take; if the file is trusted, raise "
            f"--config.data.max_pixels"
        )


def read_dicom(path: str, cfg) -> Decoded:
    _check_file_size(path, cfg.max_pixels)
    try:
        ds = pydicom.dcmread(path, force=True)  # force: files without the 128-byte preamble
    except Exception as e:  # pydicom raises many exception types on malformed files
        raise DataError(f"{path}: unreadable DICOM ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds:
        raise DataError(
            f"{path}: not a DICOM image (no pixel data; a report, or not DICOM at all); remove "
            f"it from the data"
        )
    frames = _count(ds, "NumberOfFrames", 1, path)
    rows, columns = _count(ds, "Rows", 0, path), _count(ds, "Columns", 0, path)
    check_pixels(path, frames * rows * columns, cfg.max_pixels, "image data")
    _check_size(ds, path, frames, rows, columns)
    try:
        pixels = ds.pixel_array
    except Exception as e:  # missing decoder plugins, bad lengths, unknown transfer syntaxes
        raise DataError(f"{path}: cannot decode the DICOM pixel data ({e})") from None
    stack = pixels if frames > 1 else pixels[None]
    if _count(ds, "SamplesPerPixel", 1, path) == 1:
        stack = _grey(ds, stack, parse_window(cfg.dicom_window), path)[..., None]
    else:
        stack = stack.astype(np.float32)  # RGB: pydicom already converted YBR to RGB
    if cfg.depth > 0:
        if frames == 1 or stack.shape[-1] != 1:
            raise DataError(
                f"{path}: a {'single-frame' if frames == 1 else 'colour'} DICOM, but "
                f"config.data.depth={cfg.depth} asks for volumes; use multi-frame grey DICOMs "
                f"or NIfTI (convert a series of slices with dcm2niix), or set depth=0"
            )
        volume = fit_volume(stack[..., 0], cfg.depth, cfg.image_size, cfg.fit)
        images = [to_channels(volume[..., None], cfg.channels, path)]
    else:
        stack = to_channels(stack, cfg.channels, path)
        images = [fit_image(frame, cfg.image_size, cfg.fit) for frame in stack]
    patient = str(ds.get("PatientID", "") or "").strip() or None
    return Decoded(images, patient, _modality(ds))


files.register_reader(is_dicom_file, read_dicom)


register_folder_source("dicom", is_dicom_file, "DICOM", read_dicom)
