"""A disk cache of decoded, preprocessed splits, so that a second run skips decoding.

An entry is keyed by everything that decides the preprocessed arrays: the `config.data` keys
(all but those acting after preprocessing: augmentation, mixing, sampling, oversampling, and the
cache settings themselves; the phantom generator's keys only for the phantom source), the path,
size and modification time of every file the source reads (`source_files`), the versions of
the libraries that decode and preprocess, the text of medjax's own data and ops code, and a
format version. Any change gives a new key, so an entry is never stale; old entries are simply
no longer used (delete the cache folder to reclaim the space).

Each entry is a folder `<cache_dir>/<source>-<name>-<hash>/` with `data.npz` (allow_pickle=False)
and `meta.json` (class names, summary, fitted preprocessing statistics, origin, modality, and the
key's inputs, for inspection). It is written in a temporary folder and renamed into place, so an
interrupted run never leaves half an entry; an entry that cannot be read is reported, deleted
and rebuilt.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

from medjax.data.source import Dataset, Split, source_files

FORMAT_VERSION = 1
# Keys that act after the cached arrays (or on the cache itself) and so do not change them.
LATER_KEYS = (
    "augment",
    "augment_per_class",
    "augment_per_class_mode",
    "mix",
    "sampler",
    "oversample",
    "cache",
    "cache_dir",
)
PHANTOM_KEYS = ("num_classes", "modality", "num_train", "num_val", "num_test")
LIBRARIES = ("numpy", "jax", "jaxlib", "pillow", "pydicom", "nibabel", "tensorflow-datasets")
_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
CODE_DIRS = ("data", "ops")


def cache_root(cfg) -> str:
    return (
        cfg.cache_dir
        or os.environ.get("MEDJAX_CACHE_DIR")
        or os.path.join(os.path.expanduser("~"), ".cache", "medjax")
    )


def _plain(value):
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = ""
    return out


def _code_hash() -> str:
    """The text of the code that decodes and preprocesses: an edit there changes the arrays."""
    digest = hashlib.sha256()
    for sub in CODE_DIRS:
        for path in sorted((_PACKAGE / sub).glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def key_inputs(cfg) -> dict:
    """Everything the entry's key is a hash of."""
    fields = {
        k: _plain(v)
        for k, v in sorted(cfg.items())
        if k not in LATER_KEYS and (cfg.source in ("phantom", "phantom3d") or k not in PHANTOM_KEYS)
    }
    if fields.get("path"):
        fields["path"] = os.path.abspath(fields["path"])
    files = []
    for path in source_files(cfg):
        st = os.stat(path)
        files.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
    return {
        "format": FORMAT_VERSION,
        "config": fields,
        "files": files,
        "libraries": _versions(),
        "code": _code_hash(),
    }


def entry_dir(cfg, inputs: dict | None = None) -> str:
    inputs = key_inputs(cfg) if inputs is None else inputs
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{cfg.source}-{cfg.name}")[:60]
    return os.path.join(cache_root(cfg), f"{label}-{digest}")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _dataset_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Dataset) if f.name != "splits"]


def _store(entry: str, dataset: Dataset, summary: dict, stats: dict, inputs: dict) -> None:
    root = os.path.dirname(entry)
    os.makedirs(root, exist_ok=True)
    arrays = {}
    for name, split in dataset.splits.items():
        arrays[f"{name}/images"] = split.images
        arrays[f"{name}/labels"] = split.labels
        if split.groups is not None:
            arrays[f"{name}/groups"] = np.asarray(split.groups).astype(str)
    need = sum(a.nbytes for a in arrays.values())
    free = shutil.disk_usage(root).free
    if free < need * 1.1 + (256 << 20):
        raise OSError(f"{need / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free")
    meta = {
        "format": FORMAT_VERSION,
        "splits": list(dataset.splits),
        "dataset": {k: getattr(dataset, k) for k in _dataset_fields()},
        "summary": summary,
        "fitted_on_train": stats,
        "key_inputs": inputs,
    }
    tmp = tempfile.mkdtemp(dir=root, prefix=".incomplete-")
    try:
        with open(os.path.join(tmp, "data.npz"), "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, default=_json_default)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.rename(tmp, entry)
        except OSError:
            if not os.path.isdir(entry):  # else another run wrote the same entry first: use it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Unreadable(Exception):
    pass


def _load(entry: str) -> tuple[Dataset, dict, dict]:
    try:
        with open(os.path.join(entry, "meta.json")) as f:
            meta = json.load(f)
        with np.load(os.path.join(entry, "data.npz"), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        if meta["format"] != FORMAT_VERSION or sorted(meta["dataset"]) != sorted(_dataset_fields()):
            raise _Unreadable("written by another medjax version")
        splits = {}
        for name in meta["splits"]:
            images, labels = arrays[f"{name}/images"], arrays[f"{name}/labels"]
            groups = arrays.get(f"{name}/groups")
            if len(images) != len(labels) or (groups is not None and len(groups) != len(labels)):
                raise _Unreadable(f"split {name!r} has {len(images)} images, {len(labels)} labels")
            splits[name] = Split(images, labels, groups)
        dataset = Dataset(splits=splits, **meta["dataset"])
        return dataset, meta["summary"], meta["fitted_on_train"]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise _Unreadable(f"{type(e).__name__}: {e}") from None


def load_or_build(cfg, build):
    """(dataset, summary, fitted_stats) from the cache entry for `cfg`, or from `build()`,
    whose result is then written to the cache. `cfg.cache=False` always builds."""
    if not cfg.cache:
        return build()
    inputs = key_inputs(cfg)
    entry = entry_dir(cfg, inputs)
    if os.path.isdir(entry):
        try:
            result = _load(entry)
        except _Unreadable as e:
            warnings.warn(
                f"data cache entry {entry} is unreadable ({e}); rebuilding it", stacklevel=2
            )
            shutil.rmtree(entry, ignore_errors=True)
        else:
            print(f"data: cache hit {entry}")
            return result
    dataset, summary, stats = build()
    try:
        _store(entry, dataset, summary, stats, inputs)
    except (OSError, TypeError, ValueError) as e:
        warnings.warn(
            f"data cache not written to {entry} ({e}); continuing without it. Set "
            f"config.data.cache_dir (or MEDJAX_CACHE_DIR) to a writable folder with space, or "
            f"config.data.cache=False",
            stacklevel=2,
        )
    else:
        print(f"data: cache written {entry}")
    return dataset, summary, stats
