"""Hostile data files fail fast, with a clear message, before the reader allocates what they
claim: .npz headers, images, DICOM, NIfTI and CSV manifests."""

import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from medjax.configs import get_base_config
from medjax.data import load_dataset, npz
from medjax.errors import DataError

MiB = 1 << 20


def npy_bytes(shape, dtype="|u1", data=b"") -> bytes:
    """A .npy header claiming `shape`, followed by `data` (whatever the header says)."""
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)}
    )
    return buf.getvalue() + data


def good_arrays():
    out = {}
    for split, n in (("train", 6), ("val", 4), ("test", 4)):
        out[f"{split}_images"] = np.zeros((n, 28, 28), np.uint8)
        out[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1)
    return out


def write_npz(path, members: dict[str, bytes], method=zipfile.ZIP_STORED):
    """An archive of raw member bytes, the good MedMNIST arrays filling the other keys."""
    with zipfile.ZipFile(path, "w", method) as zf:
        for key, array in good_arrays().items():
            if key not in members:
                buf = io.BytesIO()
                npy_format.write_array(buf, array)
                zf.writestr(f"{key}.npy", buf.getvalue())
        for key, raw in members.items():
            zf.writestr(f"{key}.npy", raw)
    return path


def medmnist_config(path, **changes):
    c = get_base_config()
    c.data.source, c.data.path = "medmnist", str(path)
    for key, value in changes.items():
        c.data[key] = value
    return c.data


def peak_bytes(fn) -> int:
    """Peak traced allocation while `fn` runs (NumPy reports its array buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def expect_data_error(config, match):
    def run():
        with pytest.raises(DataError, match=match):
            load_dataset(config)

    return run


@pytest.mark.parametrize("shape", [(10**6, 10**6, 1), (512, 1024, 1024)])
def test_npz_header_claiming_more_than_its_entry_fails_before_allocating(tmp_path, shape):
    """A 1 TB claim (MemoryError in np.load) and a 512 MiB one (allocated, then EOF)."""
    path = write_npz(tmp_path / "claim.npz", {"train_images": npy_bytes(shape, data=b"x" * 64)})
    run = expect_data_error(
        medmnist_config(path), r"train_images.*claims shape .*corrupt or crafted"
    )
    assert peak_bytes(run) < 16 * MiB


def _set_declared_size(raw: bytes, size: int) -> bytes:
    """The archive with its last member's uncompressed size (local and central header) set."""
    raw = bytearray(raw)
    local = raw.rindex(b"PK\x03\x04")
    central = raw.rindex(b"PK\x01\x02")
    raw[local + 22 : local + 26] = struct.pack("<I", size)
    raw[central + 24 : central + 28] = struct.pack("<I", size)
    return bytes(raw)


def test_npz_member_declaring_more_than_deflate_can_expand_is_refused(tmp_path):
    shape = (256 * MiB // (28 * 28), 28, 28)
    header = npy_bytes(shape)
    path = write_npz(
        tmp_path / "bomb.npz", {"train_images": header + b"\0" * 64}, zipfile.ZIP_DEFLATED
    )
    path.write_bytes(_set_declared_size(path.read_bytes(), len(header) + int(np.prod(shape))))
    run = expect_data_error(medmnist_config(path), "more than its compression can produce")
    assert peak_bytes(run) < 16 * MiB


def test_npz_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_npz(tmp_path / "ok.npz", {})
    monkeypatch.setattr(npz, "memory_bytes", lambda: 10_000)
    with pytest.raises(DataError, match=r"more than this machine's .* GiB of memory"):
        load_dataset(medmnist_config(path))


def test_npz_images_above_max_pixels_are_refused(tmp_path):
    path = write_npz(tmp_path / "ok.npz", {})
    with pytest.raises(DataError, match="train_images: image of 784 values exceeds .*max_pixels"):
        load_dataset(medmnist_config(path, max_pixels=500))
    assert len(load_dataset(medmnist_config(path, max_pixels=784)).splits["train"]) == 6


def test_npz_object_arrays_are_named_not_unpickled(tmp_path):
    images = np.empty(6, object)
    images[:] = [np.zeros((28, 28))] * 6
    buf = io.BytesIO()
    np.save(buf, images, allow_pickle=True)
    path = write_npz(tmp_path / "objects.npz", {"train_images": buf.getvalue()})
    with pytest.raises(DataError, match="'train_images' holds Python objects"):
        load_dataset(medmnist_config(path))


def folder_with(tmp_path, name: str) -> str:
    """A two-class folder whose class b holds `name` next to a small valid image."""
    from .test_sources_files import grey, save  # noqa: PLC0415

    save(tmp_path / "a" / "ok.png", grey(1))
    (tmp_path / "b").mkdir(exist_ok=True)
    return str(tmp_path / "b" / name)


def files_config(source, root, **changes):
    from .test_sources_files import data_config  # noqa: PLC0415

    return data_config(source, root, **changes)


def expect_source_error(source, root, match, **changes):
    from medjax.data import SOURCES  # noqa: PLC0415

    def run():
        with pytest.raises(DataError, match=match):
            SOURCES.get(source)(files_config(source, root, **changes))

    return run


def test_a_16_bit_tiff_above_max_pixels_is_refused_before_decoding(tmp_path):
    from PIL import Image  # noqa: PLC0415

    path = folder_with(tmp_path, "big.tif")
    Image.fromarray(np.zeros((3000, 3000), np.uint16)).save(path, compression="tiff_deflate")
    run = expect_source_error(
        "image_folder", tmp_path, "big.tif: image of 9,000,000 pixels exceeds", max_pixels=10**6
    )
    assert peak_bytes(run) < 4 * MiB  # decoding it would take 18 MB


def test_a_multi_frame_tiff_is_refused_before_decoding_any_frame(tmp_path):
    from PIL import Image  # noqa: PLC0415

    path = folder_with(tmp_path, "pages.tif")
    small, big = (Image.fromarray(np.zeros((n, n), np.uint16)) for n in (8, 3000))
    small.save(path, save_all=True, append_images=[big], compression="tiff_deflate")
    run = expect_source_error("image_folder", tmp_path, "pages.tif: has 2 frames or pages")
    assert peak_bytes(run) < 4 * MiB


def test_a_nii_gz_stream_longer_than_its_header_reads_only_the_header_size(tmp_path):
    import gzip  # noqa: PLC0415

    import nibabel  # noqa: PLC0415

    volume = np.ones((8, 8, 4), np.float32)
    image = nibabel.Nifti1Image(volume, np.eye(4))
    (tmp_path / "a").mkdir()
    nibabel.save(image, tmp_path / "a" / "ok.nii.gz")
    (tmp_path / "b").mkdir()
    plain = tmp_path / "b" / "plain.nii"
    nibabel.save(image, plain)
    with gzip.open(tmp_path / "b" / "bomb.nii.gz", "wb", compresslevel=1) as f:
        f.write(plain.read_bytes())
        for _ in range(64):
            f.write(bytes(MiB))  # 64 MiB of zeros beyond what the header claims
    plain.unlink()
    from medjax.data import SOURCES  # noqa: PLC0415

    config = files_config("nifti", tmp_path, depth=4)
    tracemalloc.start()
    try:
        images = SOURCES.get("nifti")(config).splits["all"].images
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * MiB
    np.testing.assert_array_equal(images[1], 1.0)


def test_a_nii_header_claiming_more_than_the_file_holds_is_refused_unread(tmp_path):
    import nibabel  # noqa: PLC0415

    path = folder_with(tmp_path, "claim.nii")
    image = nibabel.Nifti1Image(np.ones((8, 8, 4), np.float32), np.eye(4))
    (tmp_path / "a" / "ok.png").unlink()
    nibabel.save(image, tmp_path / "a" / "ok.nii")
    image.header.set_data_shape((400, 400, 400))
    with open(path, "wb") as f:
        f.write(image.header.binaryblock + b"\0" * 104)
    run = expect_source_error(
        "nifti", tmp_path, r"claim.nii: its header claims \(400, 400, 400\) voxels", depth=4
    )
    assert peak_bytes(run) < 4 * MiB


def test_a_dicom_file_too_large_for_max_pixels_is_refused_unread(tmp_path):
    from .test_sources_dicom_nifti import STORED, write_dicom  # noqa: PLC0415

    path = folder_with(tmp_path, "huge.dcm")
    (tmp_path / "a" / "ok.png").unlink()
    write_dicom(tmp_path / "a" / "ok.dcm", STORED)
    with open(path, "wb") as f:
        f.truncate(80 * MiB)  # sparse: no disk space used
    run = expect_source_error(
        "dicom", tmp_path, r"huge.dcm: a DICOM file of 83,886,080 bytes", max_pixels=1000
    )
    assert peak_bytes(run) < 4 * MiB
