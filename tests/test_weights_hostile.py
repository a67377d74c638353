"""Damaged and hostile torch.save files: each must be refused quickly with one DataError naming
the file, the problem and the fix, after allocating little, whatever sizes the file declares;
and the legitimate files must still load. tracemalloc counts Python's and numpy's allocations
(the bytes of the arrays a reader would build). The files are written by hand (zipfile and
pickle opcodes, tests/test_weights.py). Keras files: tests/test_weights_keras_hostile.py.
"""

import shutil
import struct
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from medjax.errors import ConfigError, DataError
from medjax.weights import load_pretrained, read_torch_file
from tests.test_weights import FIXTURE, build, init, resnet18_state, state_pickle, write_torch_zip

MIB = 1 << 20
REFUSAL_PEAK = 16 * MIB  # what refusing a file may allocate: the reader's own small buffers


def refused(fn, *args, error=DataError, peak=REFUSAL_PEAK, seconds=5) -> str:
    """The message of the `error` that fn(*args) raises, checked to come within `seconds`
    after allocating under `peak` bytes."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error) as info:
            fn(*args)
    finally:
        took = time.perf_counter() - start
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"refused in {took:.3f} s, peak {used / MIB:.2f} MiB: {info.value}")
    assert used < peak, f"allocated {used / MIB:.0f} MiB before refusing the file"
    assert took < seconds
    return str(info.value)


def write_zip(path, entries: dict, compression=zipfile.ZIP_STORED) -> str:
    with zipfile.ZipFile(path, "w", compression, compresslevel=9) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return str(path)


def torch_zip(path, tensors: dict, storages: dict) -> str:
    """A torch.save file of `tensors` (see state_pickle) over `storages` ({key: bytes})."""
    entries = {"archive/data.pkl": state_pickle(tensors)}
    return write_zip(path, entries | {f"archive/data/{k}": v for k, v in storages.items()})


def test_stride_zero_view_is_refused_before_it_is_allocated(tmp_path):
    """Guards against materialising a view whose stride 0 repeats one stored float: the old
    reader copied it in full (256 MiB here; 37 GiB from the second file, 539 bytes)."""
    one = np.ones(1, np.float32).tobytes()
    path = torch_zip(
        tmp_path / "s0.pth", {"w": ("FloatStorage", "0", 1, 0, (1 << 26,), (0,))}, {"0": one}
    )
    message = refused(read_torch_file, path)
    assert "s0.pth" in message and "zero or overlapping stride" in message
    assert "v.contiguous()" in message
    huge = ("FloatStorage", "0", 1, 0, (100_000, 100_000), (0, 0))  # 37 GiB
    path = torch_zip(tmp_path / "huge.pth", {"w": huge}, {"0": one})
    refused(load_pretrained, path, "resnet18", {})


def test_overlapping_strides_are_refused(tmp_path):
    """Guards against a view with overlapping strides reading each element of a 4 MiB
    storage 64 times (a 256 MiB copy); in-bounds views passed the old check."""
    n = 1 << 20
    view = ("FloatStorage", "0", n, 0, (n - 63, 64), (1, 1))
    path = torch_zip(tmp_path / "overlap.pth", {"w": view}, {"0": bytes(4 * n)})
    assert "reads elements of storage '0' more than once" in refused(read_torch_file, path)


def test_many_views_of_one_storage_are_capped(tmp_path):
    """Guards against one 1 MiB storage viewed by 300 tensors, each transposed (so each a
    copy): 300 MiB from a 1 MiB file. Copies may take at most what the storages hold."""
    view = ("FloatStorage", "0", 512 * 512, 0, (512, 512), (1, 512))
    tensors = {f"w{i}": view for i in range(300)}
    path = torch_zip(tmp_path / "views.pth", tensors, {"0": bytes(4 * 512 * 512)})
    assert "more than the file's content backs" in refused(read_torch_file, path)


@pytest.fixture(scope="module")
def zeros_deflated(tmp_path_factory):
    """A deflated zip entry of 100 MiB of zeros (~100 KB), built once."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
        z.open("archive/data/0", "w") as f,
    ):
        for _ in range(100):
            f.write(bytes(MIB))
    return path


def test_deflated_zip_bomb_is_refused(tmp_path, zeros_deflated):
    """Guards against inflating a deflated storage (100 MiB from ~100 KB) or data.pkl in full:
    the old reader read zip entries with no size limit."""
    path = tmp_path / "bomb.pth"
    shutil.copy(zeros_deflated, path)
    n = 25 * MIB
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/data.pkl", state_pickle({"w": ("FloatStorage", "0", n, 0, (n,), (1,))}))
    message = refused(read_torch_file, str(path))
    assert "expands 1" in message and "decompression bomb" in message
    pkl = tmp_path / "pkl.pth"  # the same 100 MiB entry as the pickle
    with zipfile.ZipFile(zeros_deflated) as src, zipfile.ZipFile(pkl, "w") as z:
        info = src.getinfo("archive/data/0")
        info.filename = "archive/data.pkl"
        z.writestr(info, src.read("archive/data/0"), zipfile.ZIP_DEFLATED, 9)
    assert "holds 104,857,600 bytes, over" in refused(read_torch_file, str(pkl))


def set_entry_size(path, name: str, size: int) -> None:
    """Overwrite the uncompressed size that both headers of zip entry `name` declare."""
    with zipfile.ZipFile(path) as z:
        local, central = z.getinfo(name).header_offset, z.start_dir
    data = bytearray(path.read_bytes())
    data[local + 22 : local + 26] = struct.pack("<I", size)
    while data[central + 46 : central + 46 + len(name)] != name.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    data[central + 24 : central + 28] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


def test_lying_entry_size_is_not_trusted(tmp_path, zeros_deflated):
    """Guards against trusting a size header: the entry says 4 bytes (one float, as the pickle
    declares) but inflates to 100 MiB, which the old reader decompressed in full before
    cutting it to the 4 declared bytes."""
    path = tmp_path / "lie.pth"
    shutil.copy(zeros_deflated, path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("archive/data.pkl", state_pickle({"w": ("FloatStorage", "0", 1, 0, (1,), (1,))}))
    set_entry_size(path, "archive/data/0", 4)
    assert "damaged or truncated file" in refused(read_torch_file, str(path))


def test_pickle_memo_and_opcode_bombs_are_refused(tmp_path):
    """Guards against pickles that make the unpickler itself allocate: a PUT at memo index
    2**24 makes the C unpickler allocate 256 MiB for its memo (2**32: 64 GiB, from 10 bytes),
    and 1.1 million 1-byte EMPTY_DICT opcodes build 70 MiB of dicts."""
    memo = b"\x80\x02Nr" + struct.pack("<I", 1 << 24) + b"."
    path = write_torch_zip(tmp_path / "memo.pth", {}, pickle_bytes=memo)
    assert "memo index 16,777,216" in refused(read_torch_file, path)
    dicts = b"\x80\x02(" + b"}" * 1_100_000 + b"l."
    path = write_torch_zip(tmp_path / "dicts.pth", {}, pickle_bytes=dicts)
    # The opcode scan is Python code: ~0.5 us an opcode, 4x that under tracemalloc.
    assert "over 1,000,000 opcodes" in refused(read_torch_file, path, seconds=30)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.99])
def test_truncated_file_says_so(tmp_path, fraction):
    """Guards against calling a download cut short a legacy or TorchScript file."""
    data = FIXTURE.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: int(len(data) * fraction)])
    message = refused(read_torch_file, str(path))
    assert f"{path}: the file is truncated or not a complete torch.save archive" in message
    assert message.endswith("bytes); download it again")
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")  # torch < 1.6's magic
    assert "legacy torch < 1.6 file" in refused(read_torch_file, str(legacy))


def damaged_resnet18(path, keys) -> str:
    """A resnet18 state dict whose storages of `keys` fail their CRC check when read."""
    state = resnet18_state()
    write_torch_zip(path, state)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        for key in keys:
            info = z.getinfo(f"archive/data/{list(state).index(key)}")
            start = info.header_offset + 30 + len(info.filename)
            data[start : start + 4] = bytes(4)
    path.write_bytes(bytes(data))
    return str(path)


def test_fit_is_checked_before_any_tensor_is_read(tmp_path):
    """Guards against reading tensors before the model says it takes them (and tensors it
    does not take): damaged entries show which tensors are read."""
    model, x = build("resnet18", 10, 32)
    like = init(model, x, abstract=True)
    like["params"]["head"] = {"kernel": np.zeros((512, 10), np.float32), "bias": np.zeros(10)}
    both = damaged_resnet18(tmp_path / "both.pth", ["conv1.weight", "fc.weight"])
    small = init(model.clone(small_stem=True), x, abstract=True)
    shape = r"stem_conv/kernel has shape \(3, 3, 3, 64\) in the model but \(7, 7, 3, 64\)"
    with pytest.raises(ConfigError, match=shape):  # the mismatch, found before any read
        load_pretrained(both, "resnet18", small)
    with pytest.raises(DataError, match=r"both.pth: damaged or truncated file \(Bad CRC-32"):
        load_pretrained(both, "resnet18", like)  # conv1 fits, so it is read
    head = damaged_resnet18(tmp_path / "head.pth", ["fc.weight"])
    variables, notes = load_pretrained(head, "resnet18", like)  # a new head: fc is not read
    assert any("re-initialised" in n for n in notes)
    np.testing.assert_array_equal(variables["params"]["head"]["kernel"], 0)


def test_legit_files_read_without_copies(tmp_path):
    """Guards against the bounds refusing real files, and against copying every tensor:
    the fixture (torch.save's own views: transposed, offset, strided, v3, parameters) reads,
    and a contiguous state dict takes about its storages' bytes."""
    assert len(read_torch_file(str(FIXTURE))["state_dict"]) == 11
    state = resnet18_state()
    path = write_torch_zip(tmp_path / "r18.pth", state)
    nbytes = sum(a.nbytes for a in state.values())
    tracemalloc.start()
    sd = read_torch_file(path)
    used = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"resnet18: {nbytes / MIB:.1f} MiB of tensors, peak {used / MIB:.1f} MiB")
    assert used < 1.1 * nbytes
    np.testing.assert_array_equal(sd["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])


def test_tensors_of_the_wrong_rank_name_the_tensor(tmp_path):
    """Guards against a convolution weight of the wrong rank failing inside numpy's transpose
    ("axes don't match array") instead of naming the tensor."""
    state = resnet18_state()
    state["conv1.weight"] = state["conv1.weight"].reshape(64, -1)
    path = write_torch_zip(tmp_path / "flat.pth", state)
    model, x = build("resnet18", 1000, 32)
    with pytest.raises(ConfigError, match=r"conv1\.weight has shape \(64, 147\), not the 4"):
        load_pretrained(path, "resnet18", init(model, x, abstract=True))
