"""Damaged and hostile Keras files (.h5, .keras): each must be refused quickly with one
DataError naming the file, the problem and the fix, after allocating little, whatever sizes
the file declares (see tests/test_weights_hostile.py). The files are written with h5py.
"""

import re
import tracemalloc

import h5py
import numpy as np
import pytest

from medjax.weights import read_keras_file
from tests.test_weights_hostile import MIB, REFUSAL_PEAK, refused, write_zip


def legacy(f):
    """A minimal legacy Keras .h5: one layer, one variable."""
    f.attrs["layer_names"] = [b"conv"]
    f.create_group("conv").attrs["weight_names"] = [b"conv/kernel:0"]
    f["conv/conv/kernel:0"] = np.ones((1, 1, 3, 4), np.float32)


def v3(f):
    """A minimal Keras 3 .weights.h5: one layer, named, one variable."""
    f.create_group("layers/conv/vars").attrs["name"] = "conv"
    f["layers/conv/vars/0"] = np.ones((1, 1, 3, 4), np.float32)


def replace(f, name, **dataset):
    del f[name]
    f.create_dataset(name, **dataset)


def external(f, tmp_path):
    (tmp_path / "raw.bin").write_bytes(bytes(48))
    del f["conv/conv/kernel:0"]
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_external(str(tmp_path / "raw.bin").encode(), 0, 48)
    space = h5py.h5s.create_simple((1, 1, 3, 4))
    h5py.h5d.create(f["conv"].id, b"conv/kernel:0", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)


def linked(f, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as other:
        other["x"] = np.ones((1, 1, 3, 4), np.float32)
    del f["conv/conv/kernel:0"]
    f["conv/conv/kernel:0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")


MALFORMED = {  # what the file holds -> (base layout, how it is broken, the message)
    "layer_names_int": (
        legacy,
        lambda f, _: f.attrs.create("layer_names", 5),
        "layer_names attribute has type int64, not a list",
    ),
    "missing_group": (
        legacy,
        lambda f, _: f.__delitem__("conv"),
        r"/ lacks the layer group \(in layer_names\) 'conv'",
    ),
    "dataset_for_group": (
        legacy,
        lambda f, _: replace(f, "conv", data=np.zeros(3)),
        "/conv is a dataset where Keras writes a layer group",
    ),
    "group_for_dataset": (
        legacy,
        lambda f, _: (f.__delitem__("conv/conv/kernel:0"), f.create_group("conv/conv/kernel:0")),
        "kernel:0 is a group where Keras writes a variable dataset",
    ),
    "weight_names_float": (
        legacy,
        lambda f, _: f["conv"].attrs.create("weight_names", 2.5),
        "weight_names of /conv has type float64",
    ),
    "model_config_int": (
        legacy,
        lambda f, _: f.attrs.create("model_config", 5),
        "model_config has type int64, not text",
    ),
    "model_config_not_json": (
        legacy,
        lambda f, _: f.attrs.create("model_config", "{"),
        "model_config attribute is not valid JSON",
    ),
    "text_variable": (
        legacy,
        lambda f, _: replace(f, "conv/conv/kernel:0", data=[b"ab"]),
        "has non-numeric type",
    ),
    "external_link": (legacy, linked, "kernel:0 is a link to another file where Keras writes"),
    "external_storage": (legacy, external, "kernel:0 keeps its data outside the file"),
    "layers_dataset": (
        v3,
        lambda f, _: replace(f, "layers", data=np.zeros(3)),
        "/layers is a dataset where Keras writes a group of layers",
    ),
    "variable_group": (
        v3,
        lambda f, _: (f.__delitem__("layers/conv/vars/0"), f.create_group("layers/conv/vars/0")),
        "vars/0 is a group where Keras writes a variable dataset",
    ),
    "name_array": (
        v3,
        lambda f, _: f["layers/conv/vars"].attrs.create("name", [1, 2]),
        "the name attribute of layers/conv/vars has type ndarray",
    ),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_h5_files_give_one_clear_message(tmp_path, case):
    """Guards against malformed .h5 files failing with TypeError or AttributeError, with a
    misleading 'damaged or truncated' or 'holds no weights', or silently reading another
    file's data (external links and storage), instead of naming the problem and the fix."""
    base, breaks, problem = MALFORMED[case]
    path = tmp_path / f"{case}.h5"
    with h5py.File(path, "w") as f:
        base(f)
    assert read_keras_file(str(path)).layers["conv"][0].shape == (1, 1, 3, 4)  # intact: reads
    with h5py.File(path, "a") as f:
        breaks(f, tmp_path)
    message = refused(read_keras_file, str(path))
    assert message.startswith(f"cannot read Keras weights file {path}: ")
    assert re.search(problem, message) and "save the model again with Keras" in message


def test_malformed_keras_archives_give_one_clear_message(tmp_path):
    """Guards against a .keras archive whose config is malformed failing with a TypeError, one
    without weights naming no fix, and one cut short being called 'neither a Keras archive
    nor an HDF5 file'."""
    h5 = tmp_path / "model.weights.h5"
    with h5py.File(h5, "w") as f:
        v3(f)
    config = '{"class_name": "Functional", "config": {"layers": 5}}'
    path = write_zip(
        tmp_path / "bad.keras", {"config.json": config, "model.weights.h5": h5.read_bytes()}
    )
    assert "model config's layers are not a list" in refused(read_keras_file, path)
    path = write_zip(tmp_path / "empty.keras", {"config.json": "{}"})
    assert re.search(
        "without model.weights.h5.*save the model again", refused(read_keras_file, path)
    )
    data = (tmp_path / "bad.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    message = refused(read_keras_file, str(tmp_path / "cut.keras"))
    assert "truncated or not a complete Keras .keras archive" in message


def test_unwritten_compressed_and_repeated_datasets_are_bounded(tmp_path):
    """Guards against reading what a tiny .h5 declares: an unwritten 100 MiB dataset (HDF5
    fill values, no bytes stored), 64 MiB of zeros gzip-compressed 1000x, and one 4 MiB
    dataset listed 50 times in weight_names (the old reader allocated it 50 times)."""
    path = tmp_path / "unwritten.h5"
    with h5py.File(path, "w") as f:
        legacy(f)
        replace(f, "conv/conv/kernel:0", shape=(25 * MIB,), dtype=np.float32)
    assert "expands 0 stored bytes to 104,857,600" in refused(read_keras_file, str(path))
    path = tmp_path / "gzip.h5"
    with h5py.File(path, "w") as f:
        legacy(f)
        replace(
            f,
            "conv/conv/kernel:0",
            shape=(16 * MIB,),
            dtype=np.float32,
            chunks=(MIB,),
            compression="gzip",
        )
        for i in range(16):
            f["conv/conv/kernel:0"][i * MIB : (i + 1) * MIB] = np.zeros(MIB, np.float32)
    assert "a decompression bomb" in refused(read_keras_file, str(path))
    path = tmp_path / "repeated.h5"
    with h5py.File(path, "w") as f:
        legacy(f)
        f["conv"].attrs["weight_names"] = [b"conv/kernel:0"] * 50
        replace(f, "conv/conv/kernel:0", data=np.ones(MIB, np.float32))
    tracemalloc.start()
    layers = read_keras_file(str(path)).layers
    used = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"one 4 MiB dataset listed 50 times: peak {used / MIB:.1f} MiB")
    assert len(layers["conv"]) == 50 and used < REFUSAL_PEAK


def test_bfloat16_marker_needs_two_byte_values(tmp_path):
    """Guards the reader's bfloat16 rule (Keras 3 stores them as 2 opaque bytes marked
    dtype='bfloat16'): a marker on 4-byte values must not view them as twice as many."""
    path = tmp_path / "bf16.h5"
    with h5py.File(path, "w") as f:
        legacy(f)
        f["conv"].attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
        f["conv/conv/kernel:0"].attrs["dtype"] = "bfloat16"
        f["conv/conv/bias:0"] = np.array([0, 0x3F80], np.uint16)  # bfloat16 0.0, 1.0
        f["conv/conv/bias:0"].attrs["dtype"] = "bfloat16"
    kernel, bias = read_keras_file(str(path)).layers["conv"]
    assert kernel.shape == (1, 1, 3, 4) and kernel.dtype == np.float32
    np.testing.assert_array_equal(bias.astype(np.float32), [0.0, 1.0])
