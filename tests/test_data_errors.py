"""Inputs that used to fail with a traceback, a misleading message or not at all: each gives one
clear DataError (or a warning where the data may be legitimate)."""

import subprocess
import sys

import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.data import SOURCES, load_dataset
from medjax.data.source import Dataset, Split
from medjax.data.splits import SharedPatientWarning
from medjax.errors import DataError

from .conftest import ROOT
from .test_data_bounds import good_arrays, medmnist_config
from .test_sources_files import grey, save


def npz(tmp_path, **changes):
    arrays = {**good_arrays(), **changes}
    np.savez(tmp_path / "x.npz", **arrays)
    return medmnist_config(tmp_path / "x.npz")


def test_an_empty_val_split_in_an_npz_is_carved_from_train(tmp_path):
    empty = {"val_images": np.zeros((0, 28, 28), np.uint8), "val_labels": np.zeros((0, 1), int)}
    train = {"train_images": np.zeros((16, 28, 28), np.uint8), "train_labels": np.arange(16) % 2}
    ds = load_dataset(npz(tmp_path, **empty, **train))
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 14, "val": 2, "test": 4}
    assert ds.split_method.startswith("train/val stratified")


def test_an_empty_train_split_in_an_npz_names_the_sizes(tmp_path):
    empty = {
        "train_images": np.zeros((0, 28, 28), np.uint8),
        "train_labels": np.zeros((0, 1), np.uint8),
    }
    with pytest.raises(DataError, match=r"train split is empty \(images per split: train 0, val 4"):
        load_dataset(npz(tmp_path, **empty))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((6, 28, 28), bool), "train_images are bool; medjax reads integer or float"),
        (np.array(3), r"train_images has shape \(\); expected"),
        (np.full((6, 28, 28), "a"), "train_images are <U1"),
    ],
)
def test_npz_images_that_are_not_pixel_arrays(tmp_path, images, message):
    with pytest.raises(DataError, match=message):
        load_dataset(npz(tmp_path, train_images=images))


def test_npz_labels_beyond_int32_do_not_wrap_into_a_valid_class(tmp_path):
    labels = np.array([0, 1, 0, 1, 0, 2**32], np.int64)  # 2**32 wraps to 0 as int32
    with pytest.raises(DataError, match=r"largest training label is 4294967296 for 6 training"):
        load_dataset(npz(tmp_path, train_labels=labels))


def test_an_npz_class_seen_only_outside_train_is_refused(tmp_path):
    with pytest.raises(
        DataError, match=r"'val' has 2 labels outside 0..0 .*every class needs training"
    ):
        load_dataset(npz(tmp_path, train_labels=np.zeros((6, 1), np.uint8)))


def test_fetch_into_a_dir_that_is_a_file_says_so(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "medjax.data.fetch", "medmnist", "breastmnist", "--dir", target],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--dir '{target}' is a file, not a folder" in result.stderr


def test_a_tfds_path_that_is_a_file_says_so(tmp_path):
    c = get_base_config()
    c.data.source, c.data.path = "tfds", str(tmp_path / "x.npz")
    (tmp_path / "x.npz").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_dataset(c.data)


def test_official_splits_sharing_a_patient_warn(tmp_path):
    for i in range(6):
        save(tmp_path / f"{i}.png", grey(i))
    rows = ["a,p1,train", "b,p2,train", "a,p4,val", "b,p5,val", "a,p1,test", "b,p3,test"]
    lines = [f"{i}.png,{row}" for i, row in enumerate(rows)]
    (tmp_path / "m.csv").write_text("path,label,patient_id,split\n" + "\n".join(lines) + "\n")
    c = get_base_config().data
    c.source, c.path, c.image_size = "csv", str(tmp_path / "m.csv"), 8
    with pytest.warns(SharedPatientWarning, match=r"1 patients .* \(first: 'p1' in test, train\)"):
        ds = load_dataset(c)
    assert ds.split_method == "official"


def test_an_empty_split_from_a_source_names_the_sizes():
    def source(cfg):
        split = Split(np.zeros((4, 8, 8, 1), np.uint8), np.array([0, 1, 0, 1]))
        empty = Split(np.zeros((0, 8, 8, 1), np.uint8), np.zeros(0, np.int64))
        return Dataset("t", {"train": split, "val": empty, "test": split}, 2, ["a", "b"])

    SOURCES.register("test_empty_val", source)
    try:
        c = get_base_config().data
        c.source = "test_empty_val"
        with pytest.raises(
            DataError, match=r"'val' split is empty .*train 4, val 0, test 4\); use more data"
        ):
            load_dataset(c)
    finally:
        SOURCES._entries.pop("test_empty_val")
