"""The tfds source on tiny datasets prepared here, in the ArrayRecord format, without TensorFlow.

TFDS writes image features by encoding arrays with TensorFlow, but takes already encoded PNG
bytes as they are, so the builder below hands it PNGs made with PIL; reading back uses NumPy and
PIL only (tfds.data_source), as medjax does.
"""

import importlib.resources
import importlib.resources.abc
import io
import sys

import numpy as np
import pytest
from PIL import Image

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.data.source import source_files
from medjax.errors import ConfigError, DataError

tfds = pytest.importorskip("tensorflow_datasets")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="png")
    return buf.getvalue()


def prepare(data_dir, monkeypatch, name="tiny_scans", splits=None, size=12, features=None):
    """Write a TFDS dataset (ArrayRecord) with PNG images; returns the images per split."""
    # tfds 4.9.10 imports the backport importlib_resources, which it only declares for Python <
    # 3.9 (tensorflow/datasets#11212), when it prepares a dataset; the standard library's
    # module has what it looks for.
    monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)
    splits = splits or {"train": 8, "validation": 4, "test": 4}
    rng = np.random.default_rng(0)
    images = {s: rng.integers(0, 256, (n, size, size), dtype=np.uint8) for s, n in splits.items()}
    features = features or tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(size, size, 1)),
            "label": tfds.features.ClassLabel(names=["benign", "malignant"]),
            "patient_id": tfds.features.Text(),
        }
    )

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s) for s in splits}

        def _generate_examples(self, split):
            for i, image in enumerate(images[split]):
                by_type = {
                    tfds.features.Image: _png(image),
                    tfds.features.ClassLabel: i % 2,
                    tfds.features.Text: f"{split}-p{i // 2}",
                }
                yield i, {k: by_type[type(f)] for k, f in features.items()}

    Builder.name = name
    Builder(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return images


def config(data_dir, name="tiny_scans:1.0.0", **changes):
    c = get_base_config()
    c.data.source, c.data.name, c.data.path = "tfds", name, str(data_dir)
    c.data.image_size = 12
    for k, v in changes.items():
        c.data[k] = v
    return c.data


def test_reads_back_splits_classes_and_patients(tmp_path, monkeypatch):
    images = prepare(tmp_path, monkeypatch)
    assert "tensorflow" not in sys.modules
    ds = load_dataset(config(tmp_path))
    assert ds.class_names == ["benign", "malignant"] and ds.num_classes == 2
    assert {k: len(s) for k, s in ds.splits.items()} == {"train": 8, "val": 4, "test": 4}
    np.testing.assert_array_equal(ds.splits["val"].images[..., 0], images["validation"])
    np.testing.assert_array_equal(ds.splits["train"].labels, np.arange(8) % 2)
    assert ds.splits["test"].groups[0] == "test-p0"
    assert ds.origin.endswith("tiny_scans/1.0.0")
    files = source_files(config(tmp_path))
    assert any(".array_record-" in f for f in files) and any("dataset_info" in f for f in files)


def test_without_version_and_resized_to_image_size(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    ds = load_dataset(config(tmp_path, name="tiny_scans", image_size=8, channels=3))
    assert ds.image_shape == (8, 8, 3)


def test_features_under_other_names_found_by_type(tmp_path, monkeypatch):
    features = tfds.features.FeaturesDict(
        {
            "scan": tfds.features.Image(shape=(12, 12, 1)),
            "diagnosis": tfds.features.ClassLabel(names=["a", "b"]),
        }
    )
    prepare(tmp_path, monkeypatch, features=features)
    ds = load_dataset(config(tmp_path))
    assert ds.class_names == ["a", "b"]


def test_ambiguous_features_are_listed(tmp_path, monkeypatch):
    features = tfds.features.FeaturesDict(
        {
            "scan": tfds.features.Image(shape=(12, 12, 1)),
            "mask": tfds.features.Image(shape=(12, 12, 1)),
            "label": tfds.features.ClassLabel(names=["a", "b"]),
        }
    )
    prepare(tmp_path, monkeypatch, features=features)
    with pytest.raises(DataError, match="which feature is the image") as e:
        load_dataset(config(tmp_path))
    assert "scan: Image" in str(e.value) and "mask: Image" in str(e.value)


def test_missing_dataset_lists_what_the_directory_holds(tmp_path, monkeypatch):
    prepare(tmp_path, monkeypatch)
    with pytest.raises(DataError, match="no dataset 'nope'.*tiny_scans"):
        load_dataset(config(tmp_path, name="nope:1.0.0"))
    with pytest.raises(DataError, match="no prepared version 2.0.0"):
        load_dataset(config(tmp_path, name="tiny_scans:2.0.0"))
    with pytest.raises(ConfigError, match="config.data.path"):
        load_dataset(config(""))


def test_tfrecord_preparation_gets_a_clear_error(tmp_path):
    version = tmp_path / "old_scans" / "1.0.0"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    (version / "old_scans-train.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(DataError, match="array_record"):
        load_dataset(config(tmp_path, name="old_scans"))
