"""Image folders and CSV manifests: every image format and mode, layouts, and each bad input."""

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from medjax.configs import get_base_config
from medjax.data import SOURCES, load_dataset
from medjax.data.files import MixedDepthWarning, SkippedFileWarning
from medjax.data.source import source_files
from medjax.errors import ConfigError, DataError
from medjax.train.validate import validate

from .conftest import tiny_config


def data_config(source, path, **changes):
    c = get_base_config()
    c.data.source, c.data.path, c.data.image_size = source, str(path), 8
    for key, value in changes.items():
        c.data[key] = value
    return c.data


def load(source, path, **changes):
    return SOURCES.get(source)(data_config(source, path, **changes))


def save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)
    return path


def grey(value, size=8, dtype=np.uint8):
    return np.full((size, size), value, dtype)


def ramp(size=8):
    return (np.arange(size * size).reshape(size, size) * 3).astype(np.uint8)


def test_image_folder_8bit_modes_load_exactly(tmp_path):
    root = tmp_path / "kaggle"
    save(root / "benign" / "l.png", ramp())
    save(root / "benign" / "b.bmp", ramp())
    save(root / "benign" / "p.png", ramp(), "P")  # palette of greys
    save(root / "malignant" / "rgba.png", np.dstack([ramp()] * 3 + [grey(7)]))  # alpha dropped
    save(root / "malignant" / "rgb.tiff", np.dstack([ramp()] * 3))
    save(root / "malignant" / "j.jpg", ramp())
    (root / "malignant" / "notes.txt").write_text("ignored: not an image")
    (root / "malignant" / ".DS_Store").write_text("ignored: hidden")
    ds = load("image_folder", root)
    assert ds.class_names == ["benign", "malignant"] and set(ds.splits) == {"all"}
    split = ds.splits["all"]
    assert split.images.shape == (6, 8, 8, 1) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.labels, [0, 0, 0, 1, 1, 1])
    for i in (0, 1, 2, 4, 5):  # b.bmp, l.png, p.png, rgb.tiff, rgba.png: lossless
        np.testing.assert_array_equal(split.images[i, ..., 0], ramp())
    assert np.abs(split.images[3, ..., 0].astype(int) - ramp()).max() <= 8  # JPEG
    assert split.groups is None and ds.modality == "unknown"
    rgb = load("image_folder", root, channels=3).splits["all"].images
    assert rgb.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(rgb[1], np.dstack([ramp()] * 3))


def test_16bit_png_and_tiff_decode_exactly_at_bit_depth_16(tmp_path):
    deep = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    save(tmp_path / "a" / "deep.png", deep)
    save(tmp_path / "a" / "deep.tif", deep)
    save(tmp_path / "b" / "shallow.png", ramp())
    with pytest.warns(MixedDepthWarning):
        images = load("image_folder", tmp_path, bit_depth="16").splits["all"].images
    assert images.dtype == np.uint16
    np.testing.assert_array_equal(images[0, ..., 0], deep)
    np.testing.assert_array_equal(images[1, ..., 0], deep)
    np.testing.assert_array_equal(images[2, ..., 0], ramp().astype(np.uint16) * 257)


def test_fit_pads_keeping_aspect_or_stretches(tmp_path):
    save(tmp_path / "a" / "tall.png", grey(200, 16)[:, :8])  # 16 high, 8 wide
    save(tmp_path / "b" / "small.png", grey(90, 4))  # enlarged
    padded = load("image_folder", tmp_path, fit="pad").splits["all"].images[..., 0]
    np.testing.assert_array_equal(padded[0, :, 2:6], 200)
    np.testing.assert_array_equal(padded[0, :, [0, 1, 6, 7]], 0)
    np.testing.assert_array_equal(padded[1], 90)
    stretched = load("image_folder", tmp_path, fit="resize").splits["all"].images
    np.testing.assert_array_equal(stretched[0], 200)


def test_official_split_folders_any_case(tmp_path):
    for folder, n in (("Training", 3), ("valid", 1), ("TEST", 2)):
        for cls in ("normal", "pneumonia"):
            for i in range(n):
                save(tmp_path / folder / cls / f"{i}.png", grey(i))
    ds = load("image_folder", tmp_path)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "val": 2, "test": 4}
    assert ds.class_names == ["normal", "pneumonia"]
    np.testing.assert_array_equal(ds.splits["test"].labels, [0, 0, 1, 1])


@pytest.mark.parametrize(
    "files, message",
    [
        (["train/a/x.png", "train/b/x.png", "test/a/x.png", "test/c/x.png"], "differ from"),
        (["a/x.png", "b/notes.txt"], "holds no image files"),
        (["train/a/x.png", "extra/a/x.png"], "unrecognised folder layout"),
        (["a/x.png", "stray.png"], "lie directly in"),
        (["val/a/x.png", "test/a/x.png"], "no train folder"),
        (["x.png"], "lie directly in"),
        (["only/x.png"], "a classifier needs at least two"),
    ],
)
def test_bad_folder_layouts(tmp_path, files, message):
    for name in files:
        if name.endswith(".png"):
            save(tmp_path / name, grey(1))
        else:
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=message):
        load("image_folder", tmp_path)


def _bad_files(root):
    save(root / "a" / "good.png", grey(1))
    save(root / "b" / "good.png", grey(2))
    data = save(root / "a" / "cut.png", ramp(64)).read_bytes()
    (root / "a" / "cut.png").write_bytes(data[: len(data) // 2])
    data = save(root / "b" / "cut.jpg", ramp(64)).read_bytes()
    (root / "b" / "cut.jpg").write_bytes(data[:-20])
    (root / "b" / "junk.png").write_bytes(b"\x89PNG not really")


@pytest.mark.parametrize("name", ["a/cut.png", "b/cut.jpg", "b/junk.png"])
def test_truncated_or_corrupt_images_fail_naming_the_file(tmp_path, name):
    _bad_files(tmp_path)
    for other in {"a/cut.png", "b/cut.jpg", "b/junk.png"} - {name}:
        (tmp_path / other).unlink()
    with pytest.raises(DataError, match=f"{name}: .*(truncated|corrupt|not a readable)"):
        load("image_folder", tmp_path)


def test_pillows_load_truncated_images_switch_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries do
    save(tmp_path / "a" / "x.png", grey(1))
    save(tmp_path / "b" / "x.png", grey(1))
    with pytest.raises(DataError, match="LOAD_TRUNCATED_IMAGES is enabled"):
        load("image_folder", tmp_path)


def test_on_error_skip_warns_per_file_and_counts(tmp_path):
    _bad_files(tmp_path)
    with pytest.warns(SkippedFileWarning) as caught:
        ds = load("image_folder", tmp_path, on_error="skip")
    messages = [str(w.message) for w in caught if w.category is SkippedFileWarning]
    assert len(messages) == 4 and "skipped 3 of 5 files" in messages[-1]
    for name in ("a/cut.png", "b/cut.jpg", "b/junk.png"):
        assert any(name in m for m in messages[:3])
    assert len(ds.splits["all"]) == 2 and "skipped 3 of 5 files" in ds.origin


def test_images_above_max_pixels_are_refused(tmp_path):
    save(tmp_path / "a" / "big.png", grey(1, 32))
    save(tmp_path / "b" / "ok.png", grey(1, 8))
    with pytest.raises(DataError, match="big.png: image of 1,024 pixels exceeds .*max_pixels"):
        load("image_folder", tmp_path, max_pixels=1000)
    assert len(load("image_folder", tmp_path, max_pixels=1024).splits["all"]) == 2


def _manifest(root, rows, header="path,label,patient_id,split,age"):
    (root / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def test_manifest_with_patients_splits_and_extra_columns(tmp_path):
    for i in range(6):
        save(tmp_path / "img" / f"{i}.png", grey(10 * i))
    rows = [
        "img/0.png,pneumonia,p1,train,50",
        "img/1.png,normal,p1,train,50",
        "img/2.png,normal,p2,Training,61",
        "./img/3.png,pneumonia,p3,val,40",
        "img/4.png,normal,p4,test,33",
        f"{tmp_path / 'img' / '5.png'},pneumonia,p5,test,70",  # absolute, inside the tree
    ]
    path = _manifest(tmp_path, rows)
    ds = load("csv", path)
    assert ds.class_names == ["normal", "pneumonia"]
    train, test = ds.splits["train"], ds.splits["test"]
    np.testing.assert_array_equal(train.labels, [1, 0, 0])
    np.testing.assert_array_equal(train.groups, ["p1", "p1", "p2"])
    np.testing.assert_array_equal(test.images[:, 0, 0, 0], [40, 50])
    assert len(ds.splits["val"]) == 1
    listed = source_files(data_config("csv", path))
    assert listed[0] == str(path) and len(listed) == 7
    # image_folder, dicom and nifti read a .csv path as a manifest too
    assert load("image_folder", path).class_names == ds.class_names


def test_manifest_integer_labels_and_no_optional_columns(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", grey(i))
    path = _manifest(tmp_path, ["0.png,2", "1.png,0", "2.png,01"], header="file,y")
    ds = load("csv", path, path_column="file", label_column="y")
    assert ds.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(ds.splits["all"].labels, [2, 0, 1])
    assert ds.splits["all"].groups is None


@pytest.mark.parametrize(
    "row, message",
    [
        ("missing.png,b", "row 3: 'missing.png' does not exist"),
        ("../outside.png,b", "row 3: path '../outside.png' resolves to .* outside"),
        ("{outside},b", "row 3: path .* outside the manifest's folder"),
        ("link.png,b", "row 3: path 'link.png' resolves to .* outside"),
        ("ok.png,b", "row 3: 'ok.png' is also listed at .* row 2"),
        (",b", "row 3: empty 'path' cell"),
    ],
)
def test_manifest_bad_paths(tmp_path, row, message):
    root = tmp_path / "data"
    save(root / "ok.png", grey(1))
    outside = save(tmp_path / "outside.png", grey(2))
    os.symlink(outside, root / "link.png")
    path = _manifest(root, ["ok.png,a", row.format(outside=outside)], header="path,label")
    with pytest.raises(DataError, match=message):
        load("csv", path)


def test_manifest_label_not_in_the_class_list(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", grey(i))
    rows = ["0.png,cat,p0,train,1", "1.png,dog,p1,train,1", "2.png,cow,p2,test,1"]
    with pytest.raises(DataError, match=r"row 4: label 'cow' is not in the class list"):
        load("csv", _manifest(tmp_path, rows))
    rows = ["0.png,1,p0,train,1", "1.png,0,p1,train,1", "2.png,2,p2,test,1"]
    with pytest.raises(DataError, match=r"row 4: label 2 is outside the valid range 0..1"):
        load("csv", _manifest(tmp_path, rows))
    with pytest.raises(DataError, match=r"row 2: split 'holdout'"):
        load("csv", _manifest(tmp_path, ["0.png,1,p0,holdout,1"]))
    with pytest.raises(DataError, match=r"no column 'pid' \(config.data.patient_column\)"):
        load("csv", _manifest(tmp_path, ["0.png,1,p0,train,1"]), patient_column="pid")


def test_source_file_listers(tmp_path):
    save(tmp_path / "train" / "a" / "x.png", grey(1))
    save(tmp_path / "train" / "b" / "y.jpg", grey(1))
    listed = source_files(data_config("image_folder", tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in listed] == ["train/a/x.png", "train/b/y.jpg"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("fit", "crop", "config.data.fit"),
        ("on_error", "ignore", "config.data.on_error"),
        ("dicom_window", "40", "config.data.dicom_window"),
        ("dicom_window", "40,-1", "width > 0"),
        ("slice_axis", 3, "config.data.slice_axis"),
        ("max_pixels", 0, "config.data.max_pixels"),
    ],
)
def test_validate_file_source_keys(key, value, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny_config(**{f"data.{key}": value}))


def test_validate_depth_and_slice_axis_exclusive():
    with pytest.raises(ConfigError, match="not both"):
        validate(tiny_config(**{"data.depth": 8, "data.slice_axis": 2}))
    validate(tiny_config(**{"data.dicom_window": "-600,1500", "data.slice_axis": 0}))


def test_end_to_end_on_an_image_folder_with_official_splits(tmp_path):
    from medjax.train.loop import train_and_evaluate  # noqa: PLC0415  (slow import)

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        for label, cls in enumerate(("benign", "malignant")):
            for i in range(n):
                image = rng.integers(0, 100, (20, 16)).astype(np.uint8) + 100 * label
                save(tmp_path / "data" / split / cls / f"{i}.png", image)
    config = tiny_config(
        **{
            "data.source": "image_folder",
            "data.path": str(tmp_path / "data"),
            "data.image_size": 16,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFileWarning)
        results = train_and_evaluate(config, str(tmp_path / "run"))
    assert results["test"]["num_examples"] == 16
    summary = json.loads((tmp_path / "run" / "data_summary.json").read_text())
    assert summary["class_names"] == ["benign", "malignant"]
    assert load_dataset(config.data).image_shape == (16, 16, 1)
