"""Reading untrusted weight files with bounded memory.

A weights file declares the sizes of what it holds (a zip entry's uncompressed size, a tensor's
shape and strides, an HDF5 dataset's shape), and a damaged or hostile file can declare far more
than it contains: a 539-byte `.pth` can view one stored float as a 37 GiB tensor (stride 0), a
deflated zip entry or an unwritten HDF5 dataset can expand 1000x. So the readers allocate only
what the file's real content backs:

* arrays are `LazyArray`s, shape and dtype from the file's metadata, read only by `np.asarray`,
  so medjax.weights.load checks every shape against the model before it reads any bytes;
* bytes may expand from what the file stores (decompression, HDF5 fill values) at most
  MAX_INFLATION times, plus SMALL, over all of a file's arrays (`check_inflation`);
* a zip entry is read in chunks that count the bytes it really produces (`entry_chunks`);
* what a reader copies beyond that is capped by a `Budget`.
"""

import contextlib
import os
import zipfile

import numpy as np

from medjax.errors import DataError

# Trained weights barely compress (float32 noise: under 1.2x), so an entry or dataset that
# expands 100x is a decompression bomb or unwritten data, not weights. SMALL spares files
# whose few small buffers (zero-initialised biases, counters) compress well.
MAX_INFLATION = 100
SMALL = 1 << 20
_CHUNK = 1 << 20


def check_inflation(stored: int, produced: int, what: str) -> None:
    """Refuse `produced` bytes made from `stored` bytes of the file beyond MAX_INFLATION."""
    if produced > MAX_INFLATION * stored + SMALL:
        raise DataError(
            f"{what} expands {stored:,} stored bytes to {produced:,}, more than the "
            f"{MAX_INFLATION}x weights can compress: a decompression bomb, unwritten data or a "
            "damaged file; "
            "save the weights again, without compression"
        )


class Budget:
    """The bytes a reader may still allocate for one file's arrays."""

    def __init__(self, limit: int):
        self.limit, self.left = limit, limit

    def spend(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise DataError(
                f"{what} would take its arrays past {self.limit:,} bytes, more than the "
                "file's content backs: the file is damaged or hostile; download or save it again"
            )
        self.left -= nbytes


class LazyArray:
    """An array a weights file declares, read when converted to numpy (`np.asarray`).

    It has the part of numpy's array interface the converters use (shape, ndim, dtype,
    transpose, T, astype, sum, subtraction), each deferred, so an import runs on shapes alone
    until load.place has checked them against the model."""

    __slots__ = ("shape", "dtype", "_read")

    def __init__(self, shape: tuple, dtype, read):
        self.shape, self.dtype, self._read = tuple(shape), np.dtype(dtype), read

    def __setstate__(self, state):  # a pickle's BUILD must not change what was checked
        raise DataError("the pickle modifies a tensor after building it")

    def __repr__(self):
        return f"LazyArray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype=None, copy=None):
        array = self._read()
        return array if dtype is None else array.astype(dtype, copy=False)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _then(self, shape, dtype, op) -> "LazyArray":
        read = self._read
        return LazyArray(shape, dtype, lambda: op(read()))

    def transpose(self, *axes) -> "LazyArray":
        if len(axes) == 1 and isinstance(axes[0], tuple | list):
            axes = tuple(axes[0])
        axes = axes or tuple(reversed(range(self.ndim)))
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"axes {axes} don't match an array of shape {self.shape}")
        shape = tuple(self.shape[a] for a in axes)
        return self._then(shape, self.dtype, lambda a: a.transpose(axes))

    @property
    def T(self) -> "LazyArray":
        return self.transpose()

    def astype(self, dtype, copy: bool = True) -> "LazyArray":
        return self._then(self.shape, dtype, lambda a: a.astype(dtype, copy=copy))

    def sum(self, axis: int, keepdims: bool = False) -> "LazyArray":
        axis %= self.ndim
        shape = list(self.shape)
        shape[axis : axis + 1] = [1] if keepdims else []
        dtype = np.zeros(1, self.dtype).sum().dtype
        return self._then(shape, dtype, lambda a: a.sum(axis=axis, keepdims=keepdims))

    def __sub__(self, other) -> "LazyArray":
        shape = np.broadcast_shapes(self.shape, np.shape(other))
        dtype = np.result_type(self.dtype, getattr(other, "dtype", other))
        return self._then(shape, dtype, lambda a: a - np.asarray(other, dtype))


def open_zip(path: str, what: str) -> zipfile.ZipFile | None:
    """`path` as a zip archive, None when it is none; one that starts as a zip but has no
    readable directory at its end is refused as cut short (or not a whole `what` archive)."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise DataError(
            f"the file is truncated or not a complete {what} archive "
            f"({os.path.getsize(path):,} bytes); download it again"
        ) from None


def checked_entry(archive: zipfile.ZipFile, name: str, limit: int) -> zipfile.ZipInfo:
    """Entry `name`'s info, refused unless it declares at most `limit` bytes and its stored
    bytes lie inside the file."""
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise DataError(f"zip entry {name} holds {info.file_size:,} bytes, over {limit:,}")
    if info.header_offset + info.compress_size > os.path.getsize(archive.filename):
        raise DataError(f"zip entry {name} reaches past the end of the file: it is truncated")
    return info


def entry_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """The entry's bytes in chunks of at most 1 MiB, refused unless they total its declared
    size. zipfile's read(n) inflates at most n bytes; read() would inflate the whole stream
    before cutting it to the size the header declares."""
    got = 0
    with archive.open(info) as f:
        while chunk := f.read(_CHUNK):
            got += len(chunk)
            if got > info.file_size:
                break
            yield chunk
    if got != info.file_size:
        raise DataError(
            f"zip entry {info.filename} holds {'more' if got > info.file_size else f'{got:,}'} "
            f"bytes, not the {info.file_size:,} its header declares: the file is damaged"
        )


def read_entry(archive: zipfile.ZipFile, name: str, limit: int) -> bytearray:
    """The bytes of entry `name`, read within `limit` (checked_entry, entry_chunks)."""
    info = checked_entry(archive, name, limit)
    out, at = bytearray(info.file_size), 0
    for chunk in entry_chunks(archive, info):
        out[at : at + len(chunk)] = chunk
        at += len(chunk)
    return out


@contextlib.contextmanager
def reading(what: str, damaged: tuple, damaged_fix: str, unexpected_fix: str):
    """Every failure inside as one DataError naming `what` (the file): the exceptions in
    `damaged` mean broken bytes, the other usual ones content its writer never produces."""
    try:
        yield
    except DataError as e:
        raise DataError(f"cannot read {what}: {e}") from None
    except damaged as e:
        raise DataError(
            f"cannot read {what}: damaged or truncated file ({str(e)[:200]}); {damaged_fix}"
        ) from None
    except (TypeError, ValueError, AttributeError, IndexError, RuntimeError, KeyError) as e:
        raise DataError(
            f"cannot read {what}: unexpected content ({str(e)[:200]}), {unexpected_fix}"
        ) from None
