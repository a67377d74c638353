"""MedMNIST+ files at every size, 2D and 3D, in the official layout (synthetic, a few KB each)."""

import os

import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.data.medmnist_info import INFO, SIZES_2D, SIZES_3D, file_name
from medjax.errors import ConfigError, DataError


def write_medmnist(folder, name, size, volumes=False, channels=1, num_classes=2):
    """A tiny file shaped like the official ones: uint8 images, (N, 1) uint8 labels."""
    rng = np.random.default_rng(size)
    arrays = {}
    for split, n in (("train", max(6, num_classes)), ("val", 4), ("test", 4)):
        shape = (n, size, size, size) if volumes else (n, size, size)
        if channels == 3:
            shape = (*shape, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = np.arange(n) % num_classes
        arrays[f"{split}_labels"] = labels.reshape(n, 1).astype(np.uint8)
    path = folder / file_name(name, size)
    np.savez(path, **arrays)
    return path


def config(name, size, path="", depth=0, channels=1):
    c = get_base_config()
    c.data.source, c.data.name, c.data.path = "medmnist", name, str(path)
    c.data.image_size, c.data.depth, c.data.channels = size, depth, channels
    return c.data


def test_file_naming_follows_medmnist_plus():
    assert file_name("breastmnist", 28) == "breastmnist.npz"
    assert file_name("breastmnist", 224) == "breastmnist_224.npz"
    assert file_name("organmnist3d", 64) == "organmnist3d_64.npz"


@pytest.mark.parametrize("size", SIZES_2D)
def test_2d_sizes_picked_by_image_size_from_the_folder(tmp_path, size):
    for s in SIZES_2D:  # every size present: image_size must pick the right one
        write_medmnist(tmp_path, "pneumoniamnist", s)
    ds = load_dataset(config("pneumoniamnist", size, path=tmp_path))
    assert ds.image_shape == (size, size, 1)
    assert ds.origin.endswith(file_name("pneumoniamnist", size))
    assert ds.class_names == ["normal", "pneumonia"] and ds.modality == "xray"


def test_rgb_dataset_with_its_class_names(tmp_path):
    write_medmnist(tmp_path, "bloodmnist", 64, channels=3, num_classes=8)
    ds = load_dataset(config("bloodmnist", 64, path=tmp_path, channels=3))
    assert ds.image_shape == (64, 64, 3)
    assert ds.num_classes == 8 and ds.class_names[0] == "basophil"
    assert ds.modality == "microscopy"


@pytest.mark.parametrize("name", [n for n, i in INFO.items() if i.volumes])
@pytest.mark.parametrize("size", SIZES_3D)
def test_3d_volumes_load_as_ndhwc(tmp_path, monkeypatch, name, size):
    classes = len(INFO[name].class_names)
    write_medmnist(tmp_path, name, size, volumes=True, num_classes=classes)
    monkeypatch.setenv("MEDJAX_DATA_DIR", str(tmp_path))
    ds = load_dataset(config(name, size, depth=size))
    assert ds.image_shape == (size, size, size, 1)
    assert ds.splits["train"].images.dtype == np.uint8
    assert ds.class_names == list(INFO[name].class_names)


def test_3d_with_three_channels(tmp_path):
    path = write_medmnist(tmp_path, "nodulemnist3d", 28, volumes=True)
    ds = load_dataset(config("nodulemnist3d", 28, path=path, depth=28, channels=3))
    assert ds.image_shape == (28, 28, 28, 3)
    np.testing.assert_array_equal(ds.splits["val"].images[..., 0], ds.splits["val"].images[..., 2])


def test_3d_without_depth_says_which_setting(tmp_path):
    path = write_medmnist(tmp_path, "organmnist3d", 28, volumes=True)
    with pytest.raises(ConfigError, match="depth=28"):
        load_dataset(config("organmnist3d", 28, path=path))


def test_unknown_3d_file_without_depth_is_recognised(tmp_path):
    path = write_medmnist(tmp_path, "mystery3d", 28, volumes=True)
    with pytest.raises(DataError, match="looks like 3D volumes.*depth=28"):
        load_dataset(config("mystery3d", 28, path=path))
    ds = load_dataset(config("mystery3d", 28, path=path, depth=28))
    assert ds.image_shape == (28, 28, 28, 1) and ds.class_names == ["class_0", "class_1"]


def test_depth_mismatch_and_depth_on_2d(tmp_path):
    path = write_medmnist(tmp_path, "mystery3d", 28, volumes=True)
    with pytest.raises(DataError, match="28 slices.*depth=28"):
        load_dataset(config("mystery3d", 28, path=path, depth=16))
    write_medmnist(tmp_path, "breastmnist", 28)
    with pytest.raises(ConfigError, match="2D images; set --config.data.depth=0"):
        load_dataset(config("breastmnist", 28, path=tmp_path, depth=28))


def test_size_not_published_lists_the_sizes(tmp_path):
    with pytest.raises(ConfigError, match="sizes 28, 64, not"):
        load_dataset(config("vesselmnist3d", 128, path=tmp_path, depth=128))
    with pytest.raises(ConfigError, match="28, 64, 128, 224"):
        load_dataset(config("dermamnist", 32, path=tmp_path))


def test_chestmnist_loads_its_14_findings_as_multi_label(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (
            np.eye(14, dtype=np.uint8)[np.arange(6) % 14] | np.eye(14, dtype=np.uint8)[[13] * 6]
        )
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    with pytest.raises(DataError, match="'pneumonia' has no images in the train split"):
        load_dataset(config("chestmnist", 28, path=tmp_path))  # findings 0-5 and 13 only
    arrays["train_labels"] = np.ones((6, 14), np.uint8)
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    dataset = load_dataset(config("chestmnist", 28, path=tmp_path))
    assert dataset.multi_label and dataset.splits["test"].labels.shape == (6, 14)
    assert dataset.class_names[0] == "atelectasis" and dataset.num_classes == 14
    arrays["val_labels"][0, 0] = 2
    np.savez(tmp_path / "chestmnist.npz", **arrays)
    with pytest.raises(DataError, match="not 0 or 1"):
        load_dataset(config("chestmnist", 28, path=tmp_path))


def test_missing_size_names_the_fetch_command(tmp_path):
    write_medmnist(tmp_path, "breastmnist", 28)
    with pytest.raises(
        DataError, match="breastmnist_128.npz.*medjax.data.fetch medmnist breastmnist"
    ):
        load_dataset(config("breastmnist", 128, path=tmp_path))


def test_every_known_dataset_has_names_sizes_and_checksums():
    assert len(INFO) == 18  # 12 2D + 6 3D MedMNIST v2 sets
    for name, info in INFO.items():
        assert info.sizes == (SIZES_3D if info.volumes else SIZES_2D), name
        assert all(len(m) == 32 for m in info.md5.values()), name
        assert len(info.class_names) >= 2 and info.modality, name


@pytest.mark.realdata
def test_real_breastmnist_found_by_name_in_a_folder(medmnist_file):
    folder = os.path.dirname(medmnist_file("breastmnist"))
    ds = load_dataset(config("breastmnist", 28, path=folder))
    assert [len(s) for s in ds.splits.values()] == [546, 78, 156]
    assert ds.class_names == ["malignant", "normal_or_benign"] and ds.modality == "ultrasound"
