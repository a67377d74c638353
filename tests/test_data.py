import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.data.phantom import generate
from medjax.data.pipeline import eval_batches, train_index_dataset
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError


def test_phantom_is_deterministic_and_balanced():
    a, la = generate(64, 28, 3, "mri", 1, seed=5)
    b, lb = generate(64, 28, 3, "mri", 1, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 28, 28, 1) and a.dtype == np.uint8
    assert set(np.bincount(la)) <= {21, 22}


@pytest.mark.parametrize("modality", ["xray", "ultrasound", "mri"])
def test_phantom_lesions_are_not_visible_in_global_statistics(modality):
    images, labels = generate(400, 28, 2, modality, 1, seed=0)
    means = images.reshape(len(images), -1).mean(1)
    gap = abs(means[labels == 1].mean() - means[labels == 0].mean())
    assert gap < means.std()  # the class has to be found in the image, not its mean


def test_phantom_rejects_unknown_modality():
    c = get_base_config()
    c.data.modality = "ct"
    with pytest.raises(ConfigError, match="xray, ultrasound, mri"):
        load_dataset(c.data)


def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    c = get_base_config()
    c.data.source, c.data.path = "medmnist", str(path)
    return c


def _good():
    rng = np.random.default_rng(0)
    out = {}
    for s, n in (("train", 20), ("val", 8), ("test", 8)):
        out[f"{s}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        out[f"{s}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    return out


def test_medmnist_reads_labels_n_by_1_and_n(tmp_path):
    arrays = _good()
    arrays["val_labels"] = arrays["val_labels"][:, 0]
    ds = load_dataset(_npz(tmp_path, **arrays).data)
    assert ds.num_classes == 2 and ds.image_shape == (28, 28, 1)
    assert ds.splits["val"].labels.shape == (8,)


def test_medmnist_wrong_layout_names_missing_keys(tmp_path):
    arrays = _good()
    del arrays["test_labels"]
    with pytest.raises(DataError, match="missing keys \\['test_labels'\\]"):
        load_dataset(_npz(tmp_path, **arrays).data)


def test_medmnist_negative_labels_refused(tmp_path):
    arrays = _good()
    arrays["train_labels"] = arrays["train_labels"].astype(np.int16) - 1
    with pytest.raises(DataError, match=r"outside 0..0 \(first bad value -1\)"):
        load_dataset(_npz(tmp_path, **arrays).data)


def test_medmnist_size_mismatch_says_which_setting(tmp_path):
    c = _npz(tmp_path, **_good())
    c.data.image_size = 64
    with pytest.raises(DataError, match="image_size=28"):
        load_dataset(c.data)


def test_missing_file_names_both_fixes(monkeypatch):
    monkeypatch.delenv("MEDJAX_DATA_DIR", raising=False)
    c = get_base_config()
    c.data.source, c.data.name = "medmnist", "breastmnist"
    with pytest.raises(
        DataError, match="MEDJAX_DATA_DIR.*config.data.path|config.data.path.*MEDJAX"
    ):
        load_dataset(c.data)


def test_corrupt_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    c = get_base_config()
    c.data.source, c.data.path = "medmnist", str(path)
    with pytest.raises(DataError, match="x.npz: not a .npz archive"):
        load_dataset(c.data)


def test_eval_batches_count_every_example_once():
    split = Split(np.arange(10)[:, None, None, None].astype(np.float32), np.arange(10) % 3)
    seen = []
    for images, labels, mask in eval_batches(split, 4):
        assert images.shape[0] == 4 and labels.shape == (4,)
        seen.extend(images[mask].ravel().tolist())
    assert seen == list(range(10))


def test_train_indices_reshuffle_each_epoch_and_resume_exactly():
    it = iter(train_index_dataset(10, 5, seed=0))
    first = [next(it) for _ in range(2)]
    assert sorted(np.concatenate(first)) == list(range(10))
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = iter(train_index_dataset(10, 5, seed=0))
    resumed.set_state(state)
    for e in expected:
        np.testing.assert_array_equal(next(resumed), e)
    assert not np.array_equal(np.concatenate(first), np.concatenate(expected[:2]))
