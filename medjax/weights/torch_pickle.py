"""The restricted unpickler of medjax.weights.torch_file: what `<prefix>/data.pkl` may build.

Security: a pickle names the functions the loader must call to rebuild objects, so loading an
untrusted pickle normally runs arbitrary code. `find_class` here never imports anything: the few
torch globals a state dict needs map to local functions (fresh wrappers, so a pickle cannot
modify them), and every other global becomes an inert `Opaque` placeholder that only records
its name and arguments. A file whose weights contain a placeholder is refused with the global's
name (other checkpoint entries, such as timm's `args` namespace, may hold placeholders
harmlessly: they are never used).

Memory: tensors are built as LazyArrays over a `Storage` (nothing is read while unpickling),
and a view must read each element of its storage at most once and only inside it
(`check_view`), so no tensor is larger than the bytes behind it. Before unpickling,
`check_pickle` walks the opcodes: the C unpickler sizes its memo by the largest index a PUT
names (a 10-byte pickle can make it allocate 64 GiB). Otherwise an opcode builds one object
of at most ~250 bytes (an empty set; a container grows by about that much per item it takes
off the stack) or a string or integer about as large as its bytes in the pickle, so
MAX_PICKLE_OPCODES and MAX_PICKLE_BYTES bound what unpickling builds. Left unbounded: the
objects a checkpoint's other entries build (an optimizer's state, timm's `args`) within
those limits, and time (scanning a million opcodes takes ~0.5 s).
"""

import collections
import functools
import io
import operator
import pickle
import pickletools

import ml_dtypes
import numpy as np

from medjax.errors import DataError
from medjax.weights.bounded import LazyArray

# A state dict's pickle holds only names and tensor metadata, ~30 opcodes and ~100 bytes per
# tensor (a timm training checkpoint of ViT-H, optimizer state included: ~2,400 tensors,
# ~0.3 MB), so these leave over 10x room while keeping what a hostile pickle builds (~250
# bytes per opcode, up to 4 bytes per byte of text) under ~350 MB.
MAX_PICKLE_BYTES = 16 << 20
MAX_PICKLE_OPCODES = 1_000_000
_MAX_DIMS = 64  # numpy's
_MAX_INDEX = 1 << 62  # beyond any real size, offset or stride; keeps their arithmetic in int64

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
# torch dtypes (pickled as globals such as torch.float32) for _rebuild_tensor_v3, which torch
# uses for dtypes without a legacy storage class (uint16, float8, ...).
TORCH_DTYPES = {
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


class DType:
    """A torch storage class or dtype, only as a tag naming a numpy dtype."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __setstate__(self, state):  # a pickle's BUILD must not retag a dtype
        raise DataError(f"the pickle modifies torch.{self.name}")


class Storage:
    """A storage a persistent id declares: `numel` elements of `dtype`, read by `source`
    (torch_file's archive) only when a tensor over it is."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, source):
        self.key, self.dtype, self.numel, self.source = key, dtype, numel, source

    def __setstate__(self, state):
        raise DataError("the pickle modifies a storage")

    def retyped(self, dtype: np.dtype) -> "Storage":
        nbytes = self.numel * self.dtype.itemsize
        if nbytes % dtype.itemsize:
            raise DataError(f"storage {self.key} is not a whole number of {dtype} values")
        return Storage(self.key, dtype, nbytes // dtype.itemsize, self.source)


def _indices(values, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple | list) or len(values) > _MAX_DIMS:
        raise DataError(f"{what} is not a tuple of at most {_MAX_DIMS} integers")
    try:
        values = tuple(operator.index(v) for v in values)
    except TypeError:
        raise DataError(f"{what} holds a value that is not an integer") from None
    if any(not 0 <= v < _MAX_INDEX for v in values):  # not formatted: it may be 10**10**6
        raise DataError(f"{what} holds a negative or impossibly large value")
    return values


def check_view(offset: int, size: tuple, stride: tuple, storage: Storage) -> None:
    """Refuse a view that reads outside its storage or reads any element twice (a stride 0,
    or strides that overlap): such a view would make more array than the file has bytes.
    Views torch.save writes of parameters (contiguous, permuted, sliced) pass."""
    if 0 in size:
        return
    extent = 1  # the elements the dimensions with smaller strides span
    dims = sorted(((n, s) for n, s in zip(size, stride, strict=True) if n > 1), key=lambda d: d[1])
    for n, s in dims:
        if s < extent:
            raise DataError(
                f"a tensor of size {size} with strides {stride} reads elements of storage "
                f"{storage.key[:40]!r} more than once (a zero or overlapping stride), so it "
                "would take more memory than the file holds; re-save the weights with "
                "contiguous tensors: torch.save({k: v.contiguous() for k, v in "
                "state_dict.items()}, path)"
            )
        extent += s * (n - 1)
    if offset + extent > storage.numel:
        raise DataError(
            f"a tensor of size {size} at offset {offset} reaches outside its storage "
            f"{storage.key[:40]!r} of {storage.numel} elements"
        )


def _rebuild_tensor(storage, offset, size, stride, *_):
    """`torch._utils._rebuild_tensor_v2`: a strided view of a storage, read lazily."""
    if not isinstance(storage, Storage):
        raise DataError(f"a tensor is built from a {type(storage).__name__}, not from a storage")
    (offset,) = _indices((offset,), "a tensor's storage offset")
    size, stride = _indices(size, "a tensor's size"), _indices(stride, "a tensor's stride")
    if len(size) != len(stride):
        raise DataError(f"a tensor of size {size} has strides {stride}")
    check_view(offset, size, stride, storage)
    read = functools.partial(storage.source.view, storage, offset, size, stride)
    return LazyArray(size, storage.dtype, read)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_):
    """`torch._utils._rebuild_tensor_v3`: v2 with an explicit dtype over an untyped storage."""
    if not isinstance(dtype, DType) or not isinstance(storage, Storage):
        raise DataError(f"a tensor of unsupported dtype {type(dtype).__name__}")
    return _rebuild_tensor(storage.retyped(dtype.dtype), offset, size, stride)


def _rebuild_parameter(data, *_):
    """`torch._utils._rebuild_parameter(_with_state)`: a Parameter is its data here."""
    return data


def _rebuild_from_type(func, cls, args, state):
    """`torch._tensor._rebuild_from_type_v2`: a tensor (subclass); the subclass is dropped."""
    return func(*args)


_SAFE = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}


def check_pickle(data: bytes) -> None:
    """Refuse a pickle with more than MAX_PICKLE_OPCODES opcodes, or a memo index beyond the
    entries stored so far (Python's pickler numbers them 0, 1, 2, ...), before it is loaded."""
    puts = 0
    for count, (opcode, arg, _) in enumerate(pickletools.genops(data)):
        if count == MAX_PICKLE_OPCODES:
            raise DataError(
                f"its pickle has over {MAX_PICKLE_OPCODES:,} opcodes, far more than a state "
                "dict's; it is not a weights file"
            )
        if opcode.name in _MEMO_PUTS:
            if arg > puts:
                raise DataError(
                    f"its pickle stores object {puts} at memo index {min(arg, 1 << 32):,}; "
                    "Python's pickler never does, and the unpickler would allocate memory for "
                    "every index below it; it is not a weights file"
                )
            puts += 1
        elif opcode.name == "MEMOIZE":
            puts += 1


class Unpickler(pickle.Unpickler):
    """Loads `data` (already checked by check_pickle) with `storage(kind, key, numel)`
    turning each persistent id into a Storage."""

    def __init__(self, data: bytes, storage):
        super().__init__(io.BytesIO(data))
        self.storage = storage

    def find_class(self, module, name):
        if (module, name) in _SAFE:  # a fresh wrapper: a pickle's BUILD cannot alter ours
            return functools.partial(_SAFE[(module, name)])
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return DType(name, STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return DType(name, TORCH_DTYPES[name])
        return type("Opaque", (Opaque,), {"refused": f"{module}.{name}"[:200]})

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise DataError(f"a persistent id is a {type(pid).__name__}, not a torch storage")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, DType) or not isinstance(key, str):
            raise DataError(f"a storage of unknown type {type(kind).__name__}")
        (numel,) = _indices((numel,), f"storage {key[:40]!r}'s size")
        return self.storage(kind, key, numel)
