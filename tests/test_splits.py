import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.data import load_dataset
from medjax.data.source import Dataset, Split
from medjax.data.splits import assign
from medjax.errors import ConfigError, DataError

NAMES = ["a", "b", "c"]


def _cfg(**changes):
    c = get_base_config().data
    for k, v in changes.items():
        c[k] = v
    return c


def _split(labels, groups=None, offset=0):
    """Images are their own index (plus offset), so every image can be traced."""
    labels = np.asarray(labels, np.int32)
    return Split(np.arange(offset, offset + len(labels))[:, None], labels, groups)


def _ds(**splits):
    return Dataset("t", splits, len(NAMES), NAMES, origin="test.npz")


def _ids(split):
    return set(split.images[:, 0].tolist())


def _labels(n, seed=0, p=(0.6, 0.3, 0.1)):
    return np.random.default_rng(seed).choice(len(p), n, p=p)


def _patients(n, seed):
    """A random group structure: 1 to ~12 images per patient, mostly one label per patient."""
    rng = np.random.default_rng(seed)
    sizes = rng.geometric(rng.uniform(0.1, 0.9), size=n)
    groups = np.repeat(np.arange(len(sizes)), sizes)[:n]
    patient_label = rng.choice(3, groups.max() + 1, p=(0.6, 0.3, 0.1))
    labels = np.where(rng.random(n) < 0.9, patient_label[groups], rng.integers(0, 3, n))
    return labels, np.array([f"p{g}" for g in groups])


def test_all_is_split_by_fractions_stratified_and_deterministic():
    labels = _labels(1000)
    out = assign(_ds(all=_split(labels)), _cfg())
    sizes = {k: len(s) for k, s in out.splits.items()}
    assert sizes == {"train": 700, "val": 100, "test": 200}
    overall = np.bincount(labels, minlength=3) / len(labels)
    for name, s in out.splits.items():
        counts = np.bincount(s.labels, minlength=3)
        np.testing.assert_allclose(counts, overall * len(s), atol=1.0, err_msg=name)
    assert set().union(*map(_ids, out.splits.values())) == set(range(1000))
    again = assign(_ds(all=_split(labels)), _cfg())
    other = assign(_ds(all=_split(labels)), _cfg(split_seed=1))
    for name in out.splits:
        assert _ids(again.splits[name]) == _ids(out.splits[name])
    assert _ids(other.splits["val"]) != _ids(out.splits["val"])
    assert out.split_method == "train/val/test stratified(seed=0) 0.7/0.1/0.2"


def test_official_splits_are_untouched():
    splits = {
        "train": _split(_labels(50), offset=0),
        "val": _split(_labels(10), offset=50),
        "test": _split(_labels(10), offset=60),
    }
    out = assign(_ds(**splits), _cfg(split_seed=3))
    for name, s in splits.items():
        assert out.splits[name] is s
    assert out.summary()["split_method"] == "official"


def test_train_and_test_source_gets_val_carved_from_train():
    train, test = _split(_labels(400), offset=0), _split(_labels(100), offset=400)
    out = assign(_ds(train=train, test=test), _cfg())
    assert out.splits["test"] is test
    assert _ids(out.splits["train"]) | _ids(out.splits["val"]) == _ids(train)
    assert not _ids(out.splits["train"]) & _ids(out.splits["val"])
    assert len(out.splits["val"]) == 50  # 0.1 / (0.7 + 0.1) of 400
    assert out.split_method.endswith("from the source's train; official test")


def test_train_and_val_source_gets_test_carved_from_train():
    train, val = _split(_labels(360), offset=0), _split(_labels(40), offset=360)
    out = assign(_ds(train=train, val=val), _cfg())
    assert out.splits["val"] is val and len(out.splits["test"]) == 80  # 0.2 / 0.9 of 360


@pytest.mark.parametrize("source", ["all", "train+test", "kfold"])
def test_no_patient_is_in_two_splits_over_many_seeds_and_group_structures(source):
    for seed in range(25):
        labels, groups = _patients(300, seed)
        if source == "train+test":
            cut = 240 + np.argmax(groups[240:] != groups[239])  # the source's own test is
            splits = {"train": _split(labels[:cut], groups[:cut])}  # patient-disjoint too
            splits["test"] = _split(labels[cut:], groups[cut:], offset=cut)
            kw = {}
        else:
            splits, kw = {"all": _split(labels, groups)}, {}
        if source == "kfold":
            kw = {"num_folds": 4, "fold": seed % 4}
        out = assign(_ds(**splits), _cfg(split_seed=seed, **kw))
        patients = {n: set(s.groups) for n, s in out.splits.items()}
        assert not patients["train"] & patients["val"], seed
        assert not patients["val"] & patients["test"], seed
        assert not patients["train"] & patients["test"], seed
        assert sum(map(len, out.splits.values())) == 300
        assert set().union(*map(_ids, out.splits.values())) == set(range(300))
        for s in out.splits.values():  # ids travel with their images
            np.testing.assert_array_equal(s.groups, groups[s.images[:, 0]])
        assert "patients" in out.summary()["val"]


def test_grouped_split_keeps_fractions_and_class_proportions_roughly():
    labels, groups = _patients(3000, seed=7)
    out = assign(_ds(all=_split(labels, groups)), _cfg())
    for name, f in zip(("train", "val", "test"), (0.7, 0.1, 0.2), strict=True):
        s = out.splits[name]
        assert abs(len(s) / 3000 - f) < 0.03, name
        share = np.bincount(s.labels, minlength=3) / len(s)
        np.testing.assert_allclose(share, np.bincount(labels) / 3000, atol=0.04, err_msg=name)
    assert out.split_method.startswith("train/val/test patient-grouped stratified(seed=0)")


@pytest.mark.parametrize("grouped", [False, True])
def test_kfold_folds_are_disjoint_cover_the_pool_and_keep_test(grouped):
    labels, groups = _patients(400, seed=3)
    if not grouped:
        groups = None
    tr = _split(labels[:300], None if groups is None else groups[:300])
    va = _split(labels[300:340], None if groups is None else groups[300:340], offset=300)
    te = _split(labels[340:], None if groups is None else groups[340:], offset=340)
    vals = []
    for fold in range(5):
        out = assign(_ds(train=tr, val=va, test=te), _cfg(num_folds=5, fold=fold, split_seed=2))
        assert out.splits["test"] is te
        assert not _ids(out.splits["train"]) & _ids(out.splits["val"])
        assert _ids(out.splits["train"]) | _ids(out.splits["val"]) == set(range(340))
        vals.append(_ids(out.splits["val"]))
        assert out.split_method.startswith(f"fold {fold} of 5")
    assert sum(map(len, vals)) == 340 and set().union(*vals) == set(range(340))
    if not grouped:  # stratified: every fold has each class within 1 image of its share
        for v in vals:
            counts = np.bincount(labels[sorted(v)], minlength=3)
            np.testing.assert_allclose(counts, np.bincount(labels[:340]) / 5, atol=1.0)


def test_kfold_without_a_test_split_carves_test_first():
    labels = _labels(500)
    out = assign(_ds(all=_split(labels)), _cfg(num_folds=4, fold=1))
    assert len(out.splits["test"]) == 100
    assert len(out.splits["val"]) == 100 and len(out.splits["train"]) == 300
    assert "test stratified(seed=0)" in out.split_method


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"num_folds": 5, "fold": 5}, "fold=5 is out of range for num_folds=5; use 0 to 4"),
        ({"num_folds": 1}, "num_folds=1"),
        ({"split_fractions": (0.7, 0.2, 0.2)}, "sum to 1"),
        ({"split_fractions": (0.8, 0.0, 0.2)}, "three positive fractions"),
    ],
)
def test_bad_split_config_is_one_clear_error(changes, match):
    with pytest.raises(ConfigError, match=match):
        assign(_ds(all=_split(_labels(100))), _cfg(**changes))


def test_a_class_too_small_to_stratify_is_named_with_its_count():
    labels = np.array([0] * 50 + [1] * 40 + [2] * 2)
    with pytest.raises(DataError, match="class 'c' has 2 images; a stratified train/val/test"):
        assign(_ds(all=_split(labels)), _cfg())
    groups = np.array([f"p{i % 30}" for i in range(90)] + ["x", "x"])
    with pytest.raises(DataError, match="class 'c' has 2 images from 1 patients"):
        assign(_ds(all=_split(labels, groups)), _cfg())


def test_kfold_with_too_few_images_or_a_small_class_fails_clearly():
    small = _ds(train=_split([0, 1, 0]), test=_split([0, 1], offset=3))
    with pytest.raises(DataError, match="num_folds=5 needs at least 5 images in train\\+val"):
        assign(small, _cfg(num_folds=5))
    labels = [0] * 30 + [1] * 3
    with pytest.raises(DataError, match="class 'b' has 3 images; a stratified 5-fold"):
        assign(_ds(train=_split(labels), test=_split([0, 1], offset=40)), _cfg(num_folds=5))


def test_bad_source_split_sets_and_partial_patient_ids_are_refused():
    with pytest.raises(DataError, match="returned splits \\['test', 'val'\\]"):
        assign(_ds(val=_split([0, 1]), test=_split([0, 1])), _cfg())
    with pytest.raises(DataError, match="patient ids were given for the train split"):
        assign(_ds(train=_split([0, 1], np.array(["a", "b"])), test=_split([0, 1])), _cfg())


def test_phantom_reports_official_splits_in_its_summary():
    c = get_base_config()
    c.data.num_train, c.data.num_val, c.data.num_test = 32, 16, 16
    summary = load_dataset(c.data).summary()
    assert summary["split_method"] == "official" and "patients" not in summary["train"]
