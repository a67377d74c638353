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
"""

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field

import h5py
import ml_dtypes
import numpy as np

from medjax.errors import DataError


@dataclass
class KerasWeights:
    """A Keras file's variables by layer name (layers without variables left out), the layers'
    configs by name ({'class_name', 'config'}, in model order; empty when the file has no
    architecture) and the model's own name ("resnet50"; "" when unknown)."""

    layers: dict[str, list[np.ndarray]]
    configs: dict[str, dict] = field(default_factory=dict)
    model_name: str = ""


def _array(ds: h5py.Dataset) -> np.ndarray:
    if ds.attrs.get("dtype") == "bfloat16" and ds.dtype.itemsize == 2:
        return np.asarray(ds[()]).view(ml_dtypes.bfloat16)  # Keras 3 stores them as opaque
    if ds.dtype.kind not in "fiub":
        raise DataError(f"variable {ds.name} has non-numeric type {ds.dtype}")
    return np.asarray(ds[()])


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _config_paths(model_config: dict, prefix: str = "layers") -> dict[str, str]:
    """Keras 3's weight paths -> layer names, replayed from a Functional/Sequential config:
    each container names its layers by snake-cased class, `_1`, `_2`... in order."""
    paths, used = {}, {}
    for layer in model_config.get("config", {}).get("layers", []):
        if layer.get("class_name") == "InputLayer":  # not in model.layers
            continue
        base = _snake(layer.get("class_name", ""))
        n = used.get(base, 0)
        used[base] = n + 1
        path = f"{prefix}/{base}" + (f"_{n}" if n else "")
        paths[path] = layer.get("config", {}).get("name", path)
        if layer.get("config", {}).get("layers"):  # a nested model
            paths |= _config_paths(layer, f"{path}/layers")
    return paths


def _layer_configs(model_config: dict) -> dict[str, dict]:
    out = {}
    for layer in model_config.get("config", {}).get("layers", []):
        cfg = layer.get("config", {})
        out[cfg.get("name", "")] = {"class_name": layer.get("class_name"), "config": cfg}
        if cfg.get("layers"):
            out |= _layer_configs(layer)
    return out


def _read_v3(f: h5py.File, model_config: dict | None) -> dict[str, list[np.ndarray]]:
    root = "layers" if "layers" in f else "_layer_checkpoint_dependencies"  # tf.keras 2.13
    by_path = _config_paths(model_config, root) if model_config else {}
    layers, unnamed = {}, []

    def visit(path, obj):
        if not (isinstance(obj, h5py.Group) and path.endswith("/vars")):
            return
        owner = path.removesuffix("/vars")
        if not owner.startswith(root + "/"):  # the optimizer's and metrics' state
            return
        arrays = [_array(obj[k]) for k in sorted(obj, key=lambda k: int(k) if k.isdigit() else -1)]
        if not arrays:
            return
        name = obj.attrs.get("name") or by_path.get(owner)
        if not name:
            unnamed.append(owner)
            return
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name in layers:
            raise DataError(f"two layers are named {name!r}")
        layers[name] = arrays

    f.visititems(visit)
    if unnamed:
        raise DataError(
            f"its weights carry no layer names ({unnamed[0]}, ...), as older Keras 3 "
            "`.weights.h5` files; save the whole model instead (model.save('model.keras'))"
        )
    return layers


def _read_legacy(group: h5py.Group) -> dict[str, list[np.ndarray]]:
    layers = {}
    for layer_name in group.attrs["layer_names"]:
        g = group[layer_name.decode() if isinstance(layer_name, bytes) else layer_name]
        for weight in g.attrs.get("weight_names", []):
            weight = weight.decode() if isinstance(weight, bytes) else str(weight)
            parts = weight.split("/")
            name = parts[-2] if len(parts) > 1 else g.name.rsplit("/", 1)[-1]
            layers.setdefault(name, []).append(_array(g[weight]))
    return layers


def _json(text, what: str) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"its {what} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise DataError(f"its {what} is not a JSON object")
    return value


def _read(path: str) -> KerasWeights:
    model_config = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "model.weights.h5" not in names:
                raise DataError(
                    "a zip file without model.weights.h5, so not a Keras 3 `.keras` archive"
                    + (
                        " (sharded weights are not supported)"
                        if "model.weights.json" in names
                        else ""
                    )
                )
            if "config.json" in names:
                model_config = _json(z.read("config.json"), "config.json")
            source = io.BytesIO(z.read("model.weights.h5"))
    elif h5py.is_hdf5(path):
        source = path
    else:
        raise DataError("neither a Keras `.keras` zip archive nor an HDF5 (`.h5`) file")
    with h5py.File(source, "r") as f:
        if "layers" in f or "_layer_checkpoint_dependencies" in f:
            layers = _read_v3(f, model_config)
        else:
            group = f.get("model_weights", f)
            if "layer_names" not in group.attrs:
                raise DataError("an HDF5 file without Keras weights (no layers, no layer_names)")
            layers = _read_legacy(group)
            if "model_config" in f.attrs:
                model_config = _json(f.attrs["model_config"], "model_config attribute")
    if not layers:
        raise DataError("it holds no weights")
    configs = _layer_configs(model_config) if model_config else {}
    name = (model_config or {}).get("config", {}).get("name", "")
    return KerasWeights(layers, configs, name if isinstance(name, str) else "")


def read_keras_file(path: str) -> KerasWeights:
    """The weights of the Keras file `path` (`.keras`, `.weights.h5` or legacy `.h5`).

    Raises medjax.errors.DataError naming the file when it is missing, damaged or holds no
    Keras weights."""
    if not os.path.isfile(path):
        raise DataError(f"weights file {path} does not exist (or is not a file)")
    try:
        return _read(path)
    except DataError as e:
        raise DataError(f"cannot read Keras weights file {path}: {e}") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(
            f"cannot read Keras weights file {path}: damaged or truncated file ({e}); "
            "save the model again"
        ) from None
