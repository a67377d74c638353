"""Read the weights of a Keras model file into numpy arrays, with h5py only (no Keras, no pickle).

Three layouts, told apart by their content rather than their suffix:

* Keras 3 `.keras` archives: a zip holding `config.json` (the model's architecture, JSON) and
  `model.weights.h5`, which has the layout of Keras 3's `.weights.h5` files.
* Keras 3 `.weights.h5` (`model.save_weights`): one group per layer, `layers/<path>/vars/<i>`,
  where <path> is the layer's class name in snake case made unique in model order
  ("batch_normalization_10"), not its name; nested models nest as
  `layers/functional/layers/...`. Keras >= 3.? writes the layer's name as the `name`
  attribute of each `vars` group; without it the names come from `config.json` (a `.keras`
  archive), by replaying Keras' path naming over the configured layers.
* Legacy HDF5 (`model.save("x.h5")`, tf.keras' `save_weights("x.h5")`, and the ImageNet weight
  files keras.applications downloads): `[model_weights/]<layer>/` groups whose `weight_names`
  attribute lists the layer's variables in order ("conv1_conv/kernel:0"). The layer a variable
  belongs to is the second-last part of its name, so nested models flatten to their layers.

Variables keep Keras' order per layer: kernel, bias (Conv2D, Dense, depthwise_kernel for
DepthwiseConv2D); gamma, beta, moving_mean, moving_variance (BatchNormalization); mean,
variance, count (Normalization).

Memory (see bounded.py): `open_keras_file` gives the variables as LazyArrays over the open
file, so load.py checks their shapes against the model before any is read, and reads only
those the model takes. A dataset is read at most once, only from bytes inside the file, and
all reads together may expand at most MAX_INFLATION times from the bytes the file stores for
them: an unwritten (fill-value) dataset of any shape has none. Attributes and JSON configs
are size-checked before they are read or parsed.
"""

import contextlib
import functools
import io
import json
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field

import h5py
import ml_dtypes
import numpy as np

from medjax.errors import DataError
from medjax.weights.bounded import (
    LazyArray,
    check_inflation,
    checked_entry,
    entry_chunks,
    open_zip,
    read_entry,
    reading,
)

# keras.applications' largest model config (EfficientNetB7) is ~1 MB of JSON and its names
# lists ~30 KB; parsed JSON takes ~20x its text, so these keep a hostile config under ~350 MB.
MAX_CONFIG_BYTES = 16 << 20
MAX_ATTRIBUTE_BYTES = 16 << 20
_RESAVE = "save the model again with Keras (model.save('model.keras'))"


@dataclass
class KerasWeights:
    """A Keras file's variables by layer name (layers without variables left out; numpy
    arrays, or LazyArrays while the file is open), the layers' configs by name
    ({'class_name', 'config'}, in model order; empty when the file has no architecture) and
    the model's own name ("resnet50"; "" when unknown)."""

    layers: dict[str, list]
    configs: dict[str, dict] = field(default_factory=dict)
    model_name: str = ""


def _structure(problem: str) -> DataError:
    return DataError(f"{problem}: the file is damaged or not one Keras wrote; {_RESAVE}")


def _attr(obj, name: str):
    """Attribute `name` of `obj` (None when absent), its declared size checked before it is read."""
    if name not in obj.attrs:
        return None
    aid = obj.attrs.get_id(name)
    nbytes = int(np.prod(aid.shape or (), dtype=object)) * aid.dtype.itemsize
    if nbytes > MAX_ATTRIBUTE_BYTES:
        raise _structure(f"attribute {name} of {obj.name} declares {nbytes:,} bytes")
    return obj.attrs[name]


def _text(value, what: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise _structure(f"{what} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise _structure(f"{what} has type {type(value).__name__}, not text")
    return value


def _texts(value, what: str) -> list[str]:
    """A names attribute (layer_names, weight_names) as strings."""
    if not (isinstance(value, np.ndarray) and value.ndim == 1):
        raise _structure(f"{what} has type {type(value).__name__}, not a list of names")
    return [_text(v, f"an entry of {what}") for v in value] if value.size else []


def _child(group: h5py.Group, name: str, kind: type, what: str):
    """group[name], refused unless it is a `kind` in this file (not behind an external link)."""
    obj = group.get(name)
    if obj is None:
        raise _structure(f"{group.name} lacks the {what} {name!r}")
    if not isinstance(obj, kind) or obj.file != group.file:
        found = {h5py.Group: "a group", h5py.Dataset: "a dataset"}.get(type(obj), "another object")
        found = found if obj.file == group.file else "a link to another file"
        where = f"{group.name.rstrip('/')}/{name}"  # (obj.name is in the other file for a link)
        raise _structure(f"{where} is {found} where Keras writes a {what}")
    return obj


class _Datasets:
    """The variables of one open HDF5 file as LazyArrays (see module docstring)."""

    def __init__(self, path: str):
        self.path, self.arrays, self.stored, self.produced = path, {}, 0, 0

    def lazy(self, ds: h5py.Dataset) -> LazyArray:
        marker = _attr(ds, "dtype")  # Keras 3 stores bfloat16 variables as opaque 2 bytes
        bfloat16 = isinstance(marker, str | bytes) and marker in ("bfloat16", b"bfloat16")
        bfloat16 = bfloat16 and ds.dtype.itemsize == 2
        if not bfloat16 and ds.dtype.kind not in "fiub":
            raise _structure(f"variable {ds.name} has non-numeric type {ds.dtype}")
        if ds.shape is None:
            raise _structure(f"variable {ds.name} is empty (no shape)")
        if ds.is_virtual or ds.id.get_create_plist().get_external_count():
            raise _structure(f"variable {ds.name} keeps its data outside the file")
        dtype = ml_dtypes.bfloat16 if bfloat16 else ds.dtype
        return LazyArray(ds.shape, dtype, functools.partial(self._read, ds, dtype))

    def _read(self, ds: h5py.Dataset, dtype) -> np.ndarray:
        with _errors(self.path):
            if ds.id not in self.arrays:  # hard links and repeated weight_names: one read
                self.stored += ds.id.get_storage_size()
                self.produced += ds.size * ds.dtype.itemsize
                check_inflation(self.stored, self.produced, f"variable {ds.name}")
                self.arrays[ds.id] = np.asarray(ds[()]).view(dtype)
            return self.arrays[ds.id]


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_list(model_config: dict) -> list[tuple[str, str, dict]]:
    """(class name, name, config) of each layer a Functional/Sequential config lists."""
    config = model_config.get("config")
    layers = config.get("layers", []) if isinstance(config, dict) else []
    if not isinstance(layers, list):
        raise _structure("its model config's layers are not a list")
    out = []
    for layer in layers:
        layer = layer if isinstance(layer, dict) else {}
        kind, cfg = layer.get("class_name"), layer.get("config", {})
        name = cfg.get("name", "") if isinstance(cfg, dict) else None
        if not (isinstance(kind, str) and isinstance(name, str)):
            raise _structure("its model config lists a layer without a class name or name")
        out.append((kind, name, cfg))
    return out


def _config_paths(model_config: dict, prefix: str = "layers") -> dict[str, str]:
    """Keras 3's weight paths -> layer names, replayed from a Functional/Sequential config:
    each container names its layers by snake-cased class, `_1`, `_2`... in order."""
    paths, used = {}, {}
    for kind, name, cfg in _layer_list(model_config):
        if kind == "InputLayer":  # not in model.layers
            continue
        base = _snake(kind)
        n = used.get(base, 0)
        used[base] = n + 1
        path = f"{prefix}/{base}" + (f"_{n}" if n else "")
        paths[path] = name or path
        if cfg.get("layers"):  # a nested model
            paths |= _config_paths({"config": cfg}, f"{path}/layers")
    return paths


def _layer_configs(model_config: dict) -> dict[str, dict]:
    out = {}
    for kind, name, cfg in _layer_list(model_config):
        out[name] = {"class_name": kind, "config": cfg}
        if cfg.get("layers"):
            out |= _layer_configs({"config": cfg})
    return out


def _read_v3(f: h5py.File, model_config: dict | None, datasets: _Datasets) -> dict[str, list]:
    root = "layers" if "layers" in f else "_layer_checkpoint_dependencies"  # tf.keras 2.13
    _child(f, root, h5py.Group, "group of layers")
    by_path = _config_paths(model_config, root) if model_config else {}
    layers, unnamed = {}, []

    def visit(path, obj):
        if not (isinstance(obj, h5py.Group) and path.endswith("/vars")):
            return
        owner = path.removesuffix("/vars")
        if not owner.startswith(root + "/"):  # the optimizer's and metrics' state
            return
        keys = sorted(obj, key=lambda k: int(k) if k.isdigit() else -1)
        arrays = [datasets.lazy(_child(obj, k, h5py.Dataset, "variable dataset")) for k in keys]
        if not arrays:
            return
        name = _attr(obj, "name")  # the layer's name, in Keras >= 3.?
        name = _text(name, f"the name attribute of {path}") if name is not None else ""
        name = name or by_path.get(owner)
        if not name:
            unnamed.append(owner)
            return
        if name in layers:
            raise _structure(f"two layers are named {name!r}")
        layers[name] = arrays

    f.visititems(visit)
    if unnamed:
        raise DataError(
            f"its weights carry no layer names ({unnamed[0]}, ...), as older Keras 3 "
            "`.weights.h5` files; save the whole model instead (model.save('model.keras'))"
        )
    return layers


def _read_legacy(group: h5py.Group, datasets: _Datasets) -> dict[str, list]:
    layers = {}
    for layer_name in _texts(_attr(group, "layer_names"), "the layer_names attribute"):
        g = _child(group, layer_name, h5py.Group, "layer group (in layer_names)")
        weights = _attr(g, "weight_names")
        names = [] if weights is None else _texts(weights, f"weight_names of {g.name}")
        for weight in names:
            parts = weight.split("/")
            name = parts[-2] if len(parts) > 1 else g.name.rsplit("/", 1)[-1]
            ds = _child(g, weight, h5py.Dataset, "variable dataset (in weight_names)")
            layers.setdefault(name, []).append(datasets.lazy(ds))
    return layers


def _json(text, what: str) -> dict:
    if len(text) > MAX_CONFIG_BYTES:
        raise _structure(f"its {what} has {len(text):,} bytes, over {MAX_CONFIG_BYTES:,}")
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _structure(f"its {what} is not valid JSON ({str(e)[:100]})") from None
    if not isinstance(value, dict):
        raise _structure(f"its {what} is not a JSON object")
    return value


def _weights(f: h5py.File, model_config: dict | None, datasets: _Datasets) -> KerasWeights:
    if "layers" in f or "_layer_checkpoint_dependencies" in f:
        layers = _read_v3(f, model_config, datasets)
    else:
        group = f.get("model_weights", f)
        if not isinstance(group, h5py.Group) or "layer_names" not in group.attrs:
            raise DataError(
                f"an HDF5 file without Keras weights (no layers, no layer_names); {_RESAVE}"
            )
        layers = _read_legacy(group, datasets)
        config = _attr(f, "model_config")
        if config is not None:
            model_config = _json(_text(config, "its model_config"), "model_config attribute")
    if not layers:
        raise DataError(f"it holds no weights; {_RESAVE}")
    configs = _layer_configs(model_config) if model_config else {}
    name = (model_config or {}).get("config", {})
    name = name.get("name", "") if isinstance(name, dict) else ""
    return KerasWeights(layers, configs, name if isinstance(name, str) else "")


def _unzipped(archive: zipfile.ZipFile) -> tuple[io.BytesIO, dict | None]:
    """A `.keras` archive's model.weights.h5 (in memory) and config.json (None if absent)."""
    names = archive.namelist()
    if "model.weights.h5" not in names:
        sharded = " (sharded weights are not supported)" if "model.weights.json" in names else ""
        raise DataError(
            f"a zip file without model.weights.h5, so not a Keras 3 `.keras` archive{sharded}; "
            f"{_RESAVE}"
        )
    model_config = None
    if "config.json" in names:
        model_config = _json(read_entry(archive, "config.json", MAX_CONFIG_BYTES), "config.json")
    info = archive.getinfo("model.weights.h5")
    check_inflation(info.compress_size, info.file_size, "its model.weights.h5")
    source = io.BytesIO()
    for chunk in entry_chunks(archive, checked_entry(archive, info.filename, info.file_size)):
        source.write(chunk)
    return source, model_config


def _errors(path: str):
    return reading(
        f"Keras weights file {path}",
        (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, zlib.error),
        "save the model again",
        f"not what Keras writes; {_RESAVE}",
    )


@contextlib.contextmanager
def open_keras_file(path: str):
    """The weights of the Keras file `path` (`.keras`, `.weights.h5` or legacy `.h5`) as
    LazyArrays that read from the file while this context is open (see module docstring).

    Raises medjax.errors.DataError naming the file when it is missing, damaged or holds no
    Keras weights."""
    if not os.path.isfile(path):
        raise DataError(f"weights file {path} does not exist (or is not a file)")
    with _errors(path):
        archive = open_zip(path, "Keras .keras")
        if archive is not None:
            with archive:
                source, model_config = _unzipped(archive)
        elif h5py.is_hdf5(path):
            source, model_config = path, None
        else:
            raise DataError("neither a Keras `.keras` zip archive nor an HDF5 (`.h5`) file")
        f = h5py.File(source, "r")
    with f:
        with _errors(path):
            weights = _weights(f, model_config, _Datasets(path))
        yield weights


def read_keras_file(path: str) -> KerasWeights:
    """The weights of the Keras file `path` as numpy arrays (see open_keras_file)."""
    with open_keras_file(path) as weights:
        layers = {k: [np.asarray(a) for a in arrays] for k, arrays in weights.layers.items()}
        return KerasWeights(layers, weights.configs, weights.model_name)
