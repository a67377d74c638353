"""Reading `.npz` archives with the memory one file can make medjax allocate bounded.

`np.load` allocates each array at the size its `.npy` header claims before reading a byte of
it, so a file of a few bytes whose header claims a terabyte fails in that allocation (or, with
memory overcommit, maps it), and a deflated member of zeros expands about 1000-fold. Here each
member's header is read first and checked before its data: the bytes it claims must be what
the zip entry declares as its uncompressed size (zipfile never reads past that size, and fails
a stream that ends short of it); that size must be one the stored bytes can expand to (deflate
cannot exceed ~1032:1); all arrays together must fit in the machine's memory; and no single
image may exceed config.data.max_pixels values. Arrays are then read with allow_pickle=False.
"""

import functools
import os
import struct
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from medjax.data.decode import check_pixels
from medjax.errors import DataError

# Deflate's best case is 1032:1; the slack covers the .npy header and tiny members.
DEFLATE_MAX_RATIO = 1032
SLACK_BYTES = 1 << 16
HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
    (3, 0): npy_format.read_array_header_2_0,  # 3.0 differs only in allowing UTF-8 field names
}


@functools.cache
def memory_bytes() -> int:
    """This machine's physical memory (a bound no array set may exceed)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str):
    """(shape, dtype, header bytes) of one .npy member, read without touching its data."""
    with zf.open(info) as f:
        try:
            version = npy_format.read_magic(f)
            reader = HEADER_READERS.get(version)
            if reader is None:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = reader(f)
        except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as e:
            raise DataError(
                f"{path}: member {info.filename!r} is not a readable .npy array ({e}); the file "
                f"is corrupt, re-download or re-save it"
            ) from None
        return shape, dtype, f.tell()


def _check_member(info: zipfile.ZipInfo, shape, dtype, header: int, path: str, max_pixels):
    key = info.filename.removesuffix(".npy")
    if dtype.hasobject:
        raise DataError(
            f"{path}: array {key!r} holds Python objects (dtype {dtype}), which medjax never "
            f"unpickles from data files; save it as a numeric array (e.g. np.stack the images)"
        )
    claimed = header + int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if claimed != info.file_size:
        raise DataError(
            f"{path}: array {key!r} claims shape {shape} of {dtype} ({claimed:,} bytes) but its "
            f"archive entry holds {info.file_size:,} bytes; the file is corrupt or crafted, "
            f"re-download or re-save it"
        )
    stored, method = info.compress_size, info.compress_type
    limit = stored if method == zipfile.ZIP_STORED else DEFLATE_MAX_RATIO * stored + SLACK_BYTES
    if method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) and info.file_size > limit:
        raise DataError(
            f"{path}: array {key!r} declares {info.file_size:,} bytes from {stored:,} stored "
            f"bytes, more than its compression can produce; the file is corrupt or crafted, "
            f"re-download or re-save it"
        )
    if len(shape) >= 3:  # (N, H, W[, C]) or volumes: one image is everything after N
        pixels = int(np.prod(shape[1:], dtype=np.float64))
        check_pixels(f"{path}: {key}", pixels, max_pixels, "image", "values")


def read_npz(path: str, max_pixels: int) -> dict[str, np.ndarray]:
    """Every array of the archive, after checking every header (see the module doc)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"{path}: not a .npz archive ({e}); give the .npz file itself (a zip of .npy "
            f"arrays, as np.savez writes), or re-download it"
        ) from None
    with zf:
        members = [i for i in zf.infolist() if i.filename.endswith(".npy")]
        total = 0
        for info in members:
            shape, dtype, header = _header(zf, info, path)
            _check_member(info, shape, dtype, header, path, max_pixels)
            total += info.file_size
        if total > memory_bytes():
            raise DataError(
                f"{path}: its arrays hold {total / 2**30:.1f} GiB, more than this machine's "
                f"{memory_bytes() / 2**30:.1f} GiB of memory; use a smaller file (MedMNIST: a "
                f"smaller config.data.image_size) or a machine with more memory"
            )
        arrays = {}
        for info in members:
            with zf.open(info) as f:
                try:
                    arrays[info.filename.removesuffix(".npy")] = npy_format.read_array(
                        f, allow_pickle=False
                    )
                except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                    raise DataError(
                        f"{path}: array {info.filename!r} is truncated or corrupt ({e}); "
                        f"re-download or re-save the file"
                    ) from None
        return arrays
