"""The disk cache of preprocessed splits: hits, invalidation, corrupt and interrupted entries."""

import json
import os
import pathlib

import numpy as np
import pytest

from medjax.configs import get_base_config
from medjax.data import cache, load_dataset
from medjax.data.pipeline import preprocess_dataset
from medjax.errors import Interrupted
from medjax.ops import build_preprocess
from medjax.train.loop import train_and_evaluate
from tests.conftest import interrupt_at, tiny_config
from tests.test_medmnist import write_medmnist


@pytest.fixture(autouse=True)
def _fixed_code_hash(monkeypatch):
    """Other work on medjax/data or medjax/ops during a test run must not change the keys."""
    monkeypatch.setattr(cache, "_code_hash", lambda: "code-v1")


@pytest.fixture
def setup(tmp_path):
    """A MedMNIST-layout file, a config reading it with a fitted op, and a counting build."""
    path = write_medmnist(tmp_path, "breastmnist", 28)
    c = get_base_config()
    c.data.source, c.data.name, c.data.path = "medmnist", "breastmnist", str(path)
    c.data.cache_dir = str(tmp_path / "cache")
    c.data.preprocess = ("value_range(min=0.0, max=1.0)", "zscore(scope='dataset')")
    calls = []

    def build():
        calls.append(1)
        raw = load_dataset(c.data)
        dataset, stats = preprocess_dataset(raw, build_preprocess(c.data.preprocess))
        return dataset, raw.summary(), stats

    return c, build, calls, path


def cache_folder(c):
    return pathlib.Path(c.data.cache_dir)


def _entries(c):
    root = c.data.cache_dir
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def test_second_call_is_a_hit_with_everything_restored(setup, capsys):
    c, build, calls, _ = setup
    first = cache.load_or_build(c.data, build)
    assert "cache written" in capsys.readouterr().out
    second = cache.load_or_build(c.data, build)
    assert "cache hit" in capsys.readouterr().out and len(calls) == 1
    (d1, s1, f1), (d2, s2, f2) = first, second
    assert s1 == s2 and f1 == f2 and f2  # fitted statistics come back for the run's record
    assert (d1.name, d1.class_names, d1.modality, d1.origin, d1.num_classes) == (
        d2.name,
        d2.class_names,
        d2.modality,
        d2.origin,
        d2.num_classes,
    )
    for name in d1.splits:
        np.testing.assert_array_equal(d1.splits[name].images, d2.splits[name].images)
        np.testing.assert_array_equal(d1.splits[name].labels, d2.splits[name].labels)
        assert d2.splits[name].images.dtype == np.float32
    (entry,) = _entries(c)
    assert entry.startswith("medmnist-breastmnist-")
    meta = json.loads((cache_folder(c) / entry / "meta.json").read_text())
    assert meta["key_inputs"]["files"][0][0] == os.path.abspath(c.data.path)


def test_file_change_invalidates(setup):
    c, build, calls, path = setup
    cache.load_or_build(c.data, build)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, new time
    cache.load_or_build(c.data, build)
    write_medmnist(path.parent, "breastmnist", 28)  # rewritten
    with open(path, "ab") as f:
        f.write(b"\0")  # and a byte longer: npz readers ignore trailing bytes
    cache.load_or_build(c.data, build)
    assert len(calls) == 3 and len(_entries(c)) == 3


def test_preprocess_change_invalidates_but_augment_does_not(setup):
    c, build, calls, _ = setup
    cache.load_or_build(c.data, build)
    c.data.augment = ("random_flip(axis='lr')",)
    c.data.sampler = "balanced"
    cache.load_or_build(c.data, build)
    assert len(calls) == 1
    c.data.preprocess = ("value_range(min=-1.0, max=1.0)",)
    cache.load_or_build(c.data, build)
    assert len(calls) == 2


def test_phantom_generator_keys_count_only_for_phantom(setup):
    c, _, _, _ = setup
    key = cache.entry_dir(c.data)
    c.data.num_train = 7  # a phantom-only key: irrelevant to a MedMNIST file
    assert cache.entry_dir(c.data) == key
    c.data.source = "phantom"
    phantom_key = cache.entry_dir(c.data)
    c.data.num_train = 8
    assert cache.entry_dir(c.data) != phantom_key


def test_code_change_invalidates(setup, monkeypatch):
    c, _, _, _ = setup
    key = cache.entry_dir(c.data)
    monkeypatch.setattr(cache, "_code_hash", lambda: "code-v2")
    assert cache.entry_dir(c.data) != key
    monkeypatch.undo()
    assert len(cache._code_hash()) == 16 and cache._code_hash() == cache._code_hash()


@pytest.mark.parametrize("damage", ["truncate", "garbage_meta", "missing_split"])
def test_corrupt_entry_is_rebuilt_with_a_warning(setup, damage):
    c, build, calls, _ = setup
    cache.load_or_build(c.data, build)
    meta_path = cache_folder(c) / _entries(c)[0] / "meta.json"
    if damage == "truncate":
        data = meta_path.parent / "data.npz"
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "garbage_meta":
        meta_path.write_text("{not json")
    else:
        meta = json.loads(meta_path.read_text())
        meta["splits"].append("extra")
        meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        dataset, _, _ = cache.load_or_build(c.data, build)
    assert len(calls) == 2 and len(dataset.splits["train"]) == 6
    cache.load_or_build(c.data, build)  # the rebuilt entry is good
    assert len(calls) == 2


def test_interrupted_write_leaves_no_entry(setup, monkeypatch):
    c, build, calls, _ = setup

    def interrupted(f, **arrays):
        f.write(b"PK half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.load_or_build(c.data, build)
    assert _entries(c) == []  # not even the temporary folder
    monkeypatch.undo()
    cache.load_or_build(c.data, build)
    cache.load_or_build(c.data, build)
    assert len(calls) == 2


def test_cache_false_always_builds_and_writes_nothing(setup):
    c, build, calls, _ = setup
    c.data.cache = False
    cache.load_or_build(c.data, build)
    cache.load_or_build(c.data, build)
    assert len(calls) == 2 and _entries(c) == []


def test_cache_dir_defaults_to_the_environment(monkeypatch, tmp_path):
    c = get_base_config()
    monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path))
    assert cache.cache_root(c.data) == str(tmp_path)
    monkeypatch.delenv("MEDJAX_CACHE_DIR")
    assert cache.cache_root(c.data).endswith(os.path.join(".cache", "medjax"))
    c.data.cache_dir = "/elsewhere"
    assert cache.cache_root(c.data) == "/elsewhere"


@pytest.mark.slow
def test_training_run_reuses_the_cache_and_still_records_the_data(tmp_path, capsys):
    config = tiny_config(**{"train.num_steps": 2, "data.cache_dir": str(tmp_path / "cache")})
    with pytest.raises(Interrupted):  # the data part is enough
        train_and_evaluate(config, str(tmp_path / "a"), hooks=[interrupt_at(1)])
    assert "cache written" in capsys.readouterr().out
    with pytest.raises(Interrupted):
        train_and_evaluate(config, str(tmp_path / "b"), hooks=[interrupt_at(1)])
    out = capsys.readouterr().out
    assert "data: cache hit" in out and "data: phantom(" in out
    first, second = (json.loads((tmp_path / w / "data_summary.json").read_text()) for w in "ab")
    assert first == second and first["train"]["images"] == 128
