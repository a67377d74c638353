"""Read a `torch.save` file into numpy arrays without torch, and without running pickled code.

A `torch.save` file (torch >= 1.6) is a zip archive: `<prefix>/data.pkl` is a pickle of the
saved object in which every tensor is a call `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)`, and every storage a persistent id `("storage", torch.FloatStorage, key,
location, numel)` whose bytes are `<prefix>/data/<key>` (little-endian unless
`<prefix>/byteorder` says otherwise). torch_pickle.py says what the pickle may build.

Memory (see bounded.py): `open_torch_file` reads the pickle alone and gives tensors as
LazyArrays, so load.py checks them against the model first. A storage's entry must hold
exactly the bytes its persistent id declares, all storages together may expand at most
MAX_INFLATION times from their compressed entries (torch.save stores them uncompressed), and
each is read once, in counted chunks; views copied out of storages take at most as many bytes
again as the storages (views of one storage may overlap each other, never themselves).
"""

import contextlib
import os
import pickle
import zipfile
import zlib

import numpy as np

from medjax.errors import DataError
from medjax.weights.bounded import (
    SMALL,
    Budget,
    LazyArray,
    check_inflation,
    open_zip,
    read_entry,
    reading,
)
from medjax.weights.torch_pickle import (
    MAX_PICKLE_BYTES,
    DType,
    Storage,
    Unpickler,
    check_pickle,
    refused_global,
)


def _errors(path: str):
    return reading(
        f"weights file {path}",
        (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, KeyError, EOFError, OSError),
        "download it again",
        "not what torch.save writes; re-save it with torch.save(model.state_dict(), path)",
    )


class _Archive:
    """An open torch.save zip: its storages, declared while unpickling, read when a tensor is."""

    def __init__(self, path: str, archive: zipfile.ZipFile):
        self.path, self.archive = path, archive
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1 or pickles[0].count("/") != 1:
            raise DataError("no single <name>/data.pkl entry, so not a torch.save file")
        self.pickle, self.prefix = pickles[0], pickles[0].removesuffix("data.pkl")
        self.byteorder = "little"
        if f"{self.prefix}byteorder" in archive.namelist():
            entry = read_entry(archive, f"{self.prefix}byteorder", 16)
            self.byteorder = entry.decode(errors="replace").strip()
        if self.byteorder not in ("little", "big"):
            raise DataError(f"unknown byte order {self.byteorder!r}")
        self.storages, self.stored, self.declared = {}, 0, 0
        self.bytes, self.copies = {}, None

    def load(self):
        data = bytes(read_entry(self.archive, self.pickle, MAX_PICKLE_BYTES))
        check_pickle(data)
        obj = Unpickler(data, self.storage).load()
        # Copies out of storages (transposed or sliced views) take at most what the storages do.
        self.copies = Budget(self.declared + SMALL)
        return obj

    def storage(self, kind: DType, key: str, numel: int) -> Storage:
        """A persistent id's storage, checked against its zip entry (nothing is read)."""
        if key in self.storages:
            known = self.storages[key]
            if (known.dtype, known.numel) != (kind.dtype, numel):
                raise DataError(f"storage {key[:40]!r} is declared twice, differently")
            return known
        name = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise DataError(
                f"storage {key[:40]!r} has no entry {name[:80]}: damaged file; download it again"
            ) from None
        if info.file_size != numel * kind.dtype.itemsize:
            raise DataError(
                f"storage {key[:40]!r} declares {numel} {kind.name} elements but its entry holds "
                f"{info.file_size:,} bytes"
            )
        self.stored += info.compress_size
        self.declared += info.file_size
        check_inflation(self.stored, self.declared, "its storages")
        self.storages[key] = Storage(key, kind.dtype, numel, self)
        return self.storages[key]

    def _storage_array(self, storage: Storage) -> np.ndarray:
        if storage.key not in self.bytes:
            limit = self.storages[storage.key].numel * self.storages[storage.key].dtype.itemsize
            name = f"{self.prefix}data/{storage.key}"
            self.bytes[storage.key] = read_entry(self.archive, name, limit)
        array = np.frombuffer(self.bytes[storage.key], storage.dtype)
        if self.byteorder == "big":  # a little-endian host is assumed
            self.copies.spend(array.nbytes, f"storage {storage.key[:40]!r}")
            array = array.byteswap()
        return array

    def view(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> np.ndarray:
        """A tensor's values (check_view has bounded the view by its storage)."""
        with _errors(self.path):
            data = self._storage_array(storage)
            numel = int(np.prod(size, dtype=np.int64))
            if offset == 0 and numel == storage.numel and _is_contiguous(size, stride):
                return data.reshape(size)  # the whole storage, in order: no copy
            self.copies.spend(numel * data.itemsize, f"a tensor of size {size}")
            view = np.lib.stride_tricks.as_strided(
                data[offset:], size, tuple(s * data.itemsize for s in stride), writeable=False
            )
            return np.array(view)


def _is_contiguous(size: tuple, stride: tuple) -> bool:
    expected = 1
    for n, s in zip(reversed(size), reversed(stride), strict=True):
        if n > 1 and s != expected:
            return False
        expected *= n
    return True


def _legacy_message(path: str) -> str:
    return (
        f"{path} is not a torch.save zip file (a legacy torch < 1.6 file, a TorchScript or "
        "safetensors file, or not a checkpoint); re-save it with torch.save(model.state_dict())"
        " in torch >= 1.6"
    )


@contextlib.contextmanager
def open_torch_file(path: str):
    """The object the `torch.save` file `path` holds, its tensors LazyArrays that read from the
    file while this context is open (see module docstring); only the pickle is read here."""
    if not os.path.isfile(path):
        raise DataError(f"weights file {path} does not exist (or is not a file)")
    with _errors(path):
        archive = open_zip(path, "torch.save")
    if archive is None:
        raise DataError(_legacy_message(path))
    with archive:
        with _errors(path):
            obj = _Archive(path, archive).load()
        yield obj


def _read_all(obj):
    """`obj` with the LazyArrays in its dicts, lists and tuples read."""
    if isinstance(obj, LazyArray):
        return np.asarray(obj)
    if isinstance(obj, dict):
        return type(obj)((k, _read_all(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_read_all(v) for v in obj)
    return obj


def read_torch_file(path: str):
    """The object a `torch.save` zip file holds, tensors as numpy arrays (see module docstring)."""
    with open_torch_file(path) as obj:
        try:
            return _read_all(obj)
        except RecursionError:
            raise DataError(
                f"cannot read weights file {path}: its object is nested too deeply"
            ) from None


def find_state_dict(obj, path: str) -> dict:
    """The tensors (numpy arrays or LazyArrays) of a state dict, or of a checkpoint wrapping one
    under 'state_dict' or 'model' (timm, Lightning), with DataParallel's 'module.' prefix
    stripped, and a 'model.' prefix that every key shares (a Lightning module's `self.model`)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if refused_global(obj):
        raise DataError(
            f"{path} holds an object built by {refused_global(obj)}, not a state dict; the "
            "reader refuses pickled globals other than torch's tensor and storage types"
        )
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a state dict")
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise DataError(f"{path}: its state dict has a {type(key).__name__} key, not a name")
        if refused_global(value):
            raise DataError(
                f"{path}: entry {key[:80]!r} is built by the pickled global "
                f"{refused_global(value)}, which the reader refuses (only torch tensors are read)"
            )
        if not isinstance(value, np.ndarray | LazyArray):
            raise DataError(f"{path}: entry {key[:80]!r} is a {type(value).__name__}, not a tensor")
        out[key.removeprefix("module.")] = value
    if not out:
        raise DataError(f"{path} holds no tensors")
    if all(key.startswith("model.") for key in out):
        out = {key.removeprefix("model."): value for key, value in out.items()}
    return out
