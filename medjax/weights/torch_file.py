"""Read a `torch.save` file into numpy arrays without torch, and without running pickled code.

A `torch.save` file (torch >= 1.6) is a zip archive: `<prefix>/data.pkl` is a pickle of the
saved object in which every tensor is a call `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, ...)`, and every storage a persistent id `("storage", torch.FloatStorage, key,
location, numel)` whose bytes are `<prefix>/data/<key>` (little-endian unless
`<prefix>/byteorder` says otherwise).

Security: a pickle names the functions the loader must call to rebuild objects, so loading an
untrusted pickle normally runs arbitrary code. `find_class` here never imports anything: the few
torch globals a state dict needs map to local numpy-building functions (fresh wrappers, so a
pickle cannot modify them), and every other global becomes an inert `Opaque` placeholder that
only records its name and arguments. A file whose
weights contain a placeholder is refused with the global's name (other checkpoint entries, such
as timm's `args` namespace, may hold placeholders harmlessly: they are never used).
"""

import collections
import functools
import os
import pickle
import zipfile

import ml_dtypes
import numpy as np

from medjax.errors import DataError

# torch storage class name -> numpy dtype of its elements.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class Opaque:
    """What the reader makes of a global it does not trust: `find_class` returns a subclass
    named after it, and building an object with it only records the arguments."""

    refused = "?"

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        self.args, self.state = args, None

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<refused pickle global {self.refused}>"


def refused_global(value) -> str | None:
    """The untrusted global `value` was built by (or is), else None."""
    if isinstance(value, Opaque) or (isinstance(value, type) and issubclass(value, Opaque)):
        return value.refused
    return None


class _DType:
    """A torch storage class or dtype, only as a tag naming a numpy dtype."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __setstate__(self, state):  # a pickle's BUILD must not retag a dtype
        raise DataError(f"the pickle modifies torch.{self.name}")


def _rebuild_tensor(storage, offset, size, stride, *_):
    """`torch._utils._rebuild_tensor_v2`: a strided view of a storage, copied."""
    if not isinstance(storage, np.ndarray):
        raise DataError(f"a tensor is built from {storage!r}, not from a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if size and min(size) <= 0:
        if min(size) < 0:
            raise DataError(f"a tensor has a negative size {size}")
        return np.zeros(size, storage.dtype)
    end = int(offset) + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if int(offset) < 0 or end > storage.size or min(stride, default=0) < 0:
        raise DataError(f"a tensor of size {size} reaches outside its storage")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[int(offset) :], size, tuple(s * item for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
    """`torch._utils._rebuild_tensor_v3`: v2 with an explicit dtype over an untyped storage."""
    if not isinstance(dtype, _DType) or not isinstance(storage, np.ndarray):
        raise DataError(f"a tensor of unsupported dtype {dtype!r}")
    if storage.nbytes % dtype.dtype.itemsize:
        raise DataError(f"a storage is not a whole number of {dtype.name} values")
    storage = storage.view(np.uint8).view(dtype.dtype)
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *_):
    """`torch._utils._rebuild_parameter(_with_state)`: a Parameter is its data here."""
    return data


def _rebuild_from_type(func, cls, args, state):
    """`torch._tensor._rebuild_from_type_v2`: a tensor (subclass); the subclass is dropped."""
    return func(*args)


# torch dtypes (pickled as globals such as torch.float32) for _rebuild_tensor_v3, which torch
# uses for dtypes without a legacy storage class (uint16, float8, ...).
_TORCH_DTYPES = {
    "float64": np.float64,
    "float32": np.float32,
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint64": np.uint64,
    "uint32": np.uint32,
    "uint16": np.uint16,
    "uint8": np.uint8,
    "bool": np.bool_,
}

_SAFE = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in _SAFE:  # a fresh wrapper: a pickle's BUILD cannot alter ours
            return functools.partial(_SAFE[(module, name)])
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _DType(name, STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _DType(name, _TORCH_DTYPES[name])
        return type("Opaque", (Opaque,), {"refused": f"{module}.{name}"})

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise DataError(f"unknown persistent id {pid!r:.80} (not a torch storage)")
        _, kind, key, _location, _numel = pid
        if not isinstance(kind, _DType):
            raise DataError(f"a storage of unknown type {kind!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}data/{key}")
            if len(raw) % kind.dtype.itemsize:
                raise DataError(f"storage {key} holds {len(raw)} bytes, not whole {kind.name}s")
            array = np.frombuffer(raw, kind.dtype)  # a little-endian host is assumed
            self.storages[key] = array.byteswap() if self.byteorder == "big" else array
        return self.storages[key]


def read_torch_file(path: str):
    """The object a `torch.save` zip file holds, tensors as numpy arrays (see module docstring)."""
    if not os.path.isfile(path):
        raise DataError(f"weights file {path} does not exist (or is not a file)")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise DataError(f"cannot read weights file {path}: {e}") from e
    if not is_zip:
        raise DataError(
            f"{path} is not a torch.save zip file (a legacy torch < 1.6 file, a TorchScript or "
            "safetensors file, or not a checkpoint); re-save it with torch.save(model.state_dict())"
            " in torch >= 1.6"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pickles) != 1 or pickles[0].count("/") != 1:
                raise DataError("no single <name>/data.pkl entry, so not a torch.save file")
            prefix = pickles[0].removesuffix("data.pkl")
            names = set(archive.namelist())
            byteorder = "little"
            if f"{prefix}byteorder" in names:
                byteorder = archive.read(f"{prefix}byteorder").decode().strip()
            if byteorder not in ("little", "big"):
                raise DataError(f"unknown byte order {byteorder!r}")
            with archive.open(pickles[0]) as f:
                return _Unpickler(f, archive, prefix, byteorder).load()
    except DataError as e:
        raise DataError(f"cannot read weights file {path}: {e}") from e
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError, OSError) as e:
        raise DataError(f"cannot read weights file {path}: damaged file ({e})") from e
    except (TypeError, ValueError, AttributeError, IndexError) as e:
        raise DataError(f"cannot read weights file {path}: unexpected content ({e})") from e


def find_state_dict(obj, path: str) -> dict[str, np.ndarray]:
    """The tensors of a state dict, or of a checkpoint wrapping one under 'state_dict' or
    'model' (timm, Lightning), with DataParallel's 'module.' prefix stripped, and a 'model.'
    prefix that every key shares (a Lightning module's `self.model`)."""
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
        if refused_global(value):
            raise DataError(
                f"{path}: entry {key!r} is built by the pickled global {refused_global(value)}, "
                "which the reader refuses (only torch tensors are read)"
            )
        if not isinstance(value, np.ndarray):
            raise DataError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[str(key).removeprefix("module.")] = value
    if not out:
        raise DataError(f"{path} holds no tensors")
    if all(key.startswith("model.") for key in out):
        out = {key.removeprefix("model."): value for key, value in out.items()}
    return out
