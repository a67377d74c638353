"""Any dataset already prepared in a TFDS data directory, read offline without TensorFlow.

`config.data.path` is the data directory (the folder holding `<name>/<version>/`) and
`config.data.name` the dataset, optionally with its version ("my_dataset:1.0.0"). The dataset
must be prepared in the ArrayRecord format, which `tfds.data_source` reads by random access
with NumPy and PIL only; nothing is ever downloaded. Images come from the feature named "image"
(or the only image feature), labels from "label" (or the only ClassLabel feature), patient ids
from `config.data.patient_column` when the dataset has such a feature. 2D images are fitted
to `config.data.image_size` as the file sources do (`medjax.data.decode.fit_image`, by
`config.data.fit`); volumes (with `config.data.depth` set) must already share one shape. TFDS's
"validation" split becomes "val"; splits that are missing are made by
`medjax.data.splits.assign`, and extra splits ("unlabeled", ...) next to official ones are left
out.
"""

import os

import numpy as np
from tqdm.auto import tqdm

from medjax.data.decode import fit_image
from medjax.data.source import (
    SOURCE_FILES,
    SOURCES,
    Dataset,
    Split,
    check_labels,
    index_names,
    to_channels,
)
from medjax.data.values import check_finite
from medjax.errors import ConfigError, DataError

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "test": "test"}
CHUNK = 1024


def _dataset_dir(cfg) -> tuple[str, str]:
    """(the dataset's folder in the data directory, the version asked for or "")."""
    if not cfg.path:
        raise ConfigError(
            "the tfds source reads a prepared TFDS data directory; set --config.data.path to it "
            "(the folder that holds <name>/<version>/dataset_info.json)"
        )
    if not os.path.isdir(cfg.path):
        problem = "is a file, not a folder" if os.path.exists(cfg.path) else "does not exist"
        raise DataError(
            f"TFDS data directory {cfg.path!r} {problem}; set config.data.path to the folder "
            f"that holds <name>/<version>/dataset_info.json"
        )
    name, _, version = cfg.name.partition(":")
    folder = os.path.join(cfg.path, name)
    if not name or not os.path.isdir(folder):
        found = sorted(
            d for d in os.listdir(cfg.path) if os.path.isdir(os.path.join(cfg.path, d, ""))
        )
        raise DataError(
            f"no dataset {name!r} in the TFDS data directory {cfg.path}; it holds "
            f"{', '.join(found) or 'nothing'}. Set --config.data.name to one of them "
            f"(optionally with :version)"
        )
    return folder, version


def _prepared_versions(folder: str) -> dict[str, str]:
    """version -> its folder, for every prepared version (possibly under builder configs)."""
    out = {}
    for root, _, files in os.walk(folder):
        if "dataset_info.json" in files:
            out[os.path.relpath(root, folder)] = root
    return out


@SOURCE_FILES.register("tfds")
def tfds_files(cfg) -> list[str]:
    folder, _ = _dataset_dir(cfg)
    return sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(folder)
        for f in files
        if not root.split(os.sep)[-1].startswith("incomplete")
    )


def _check_prepared(cfg, folder: str, version: str) -> None:
    versions = _prepared_versions(folder)
    if version:
        versions = {v: p for v, p in versions.items() if v.split(os.sep)[-1] == version}
    if not versions:
        raise DataError(
            f"{folder}: no prepared {'version ' + version if version else 'version'} "
            f"(no <version>/dataset_info.json); prepare the dataset there first, e.g. "
            f"`tfds build --data_dir={cfg.path} --file_format=array_record`"
        )
    for path in versions.values():
        files = os.listdir(path)
        if not any(".array_record-" in f for f in files) and any(".tfrecord-" in f for f in files):
            raise DataError(
                f"{path}: prepared as TFRecord, which only TensorFlow reads; prepare it again with "
                f"file_format='array_record' (`tfds build --file_format=array_record`)"
            )


def _features(features, origin: str, patient_key: str):
    """Names of the image, label and (or None) patient features."""
    import tensorflow_datasets as tfds  # noqa: PLC0415  (slow import, only for this source)

    def kind(f):
        if isinstance(f, tfds.features.Image):
            return "image"
        if isinstance(f, tfds.features.ClassLabel):
            return "label"
        if isinstance(f, tfds.features.Tensor) and len(f.shape) >= 2:
            return "image"
        return ""

    kinds = {k: kind(f) for k, f in features.items()}
    picked = {}
    for role in ("image", "label"):
        candidates = [k for k, v in kinds.items() if v == role]
        if role in features:
            picked[role] = role
        elif len(candidates) == 1:
            picked[role] = candidates[0]
        else:
            listing = "; ".join(f"{k}: {type(f).__name__}" for k, f in features.items())
            raise DataError(
                f"{origin}: cannot tell which feature is the {role}; the dataset has {listing}. "
                f"medjax reads the features named 'image' and 'label', or else the only image "
                f"(Image or Tensor of rank >= 2) and the only ClassLabel feature"
            )
    return picked["image"], picked["label"], patient_key if patient_key in features else None


def _read(source, keys, cfg, origin: str, desc: str) -> Split | None:
    image_key, label_key, patient_key = keys
    images, labels, groups = [], [], []
    n = len(source)
    if n == 0:
        return None
    for start in tqdm(range(0, n, CHUNK), desc=desc, leave=False, disable=n < 8 * CHUNK):
        for ex in source.__getitems__(list(range(start, min(start + CHUNK, n)))):
            image = np.asarray(ex[image_key])
            if cfg.depth == 0:
                image = fit_image(
                    image if image.ndim == 3 else image[..., None], cfg.image_size, cfg.fit
                )
            images.append(image)
            labels.append(int(ex[label_key]))
            if patient_key:
                value = ex[patient_key]
                groups.append(value.decode() if isinstance(value, bytes) else str(value))
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataError(
            f"{origin}: {desc} holds images of {len(shapes)} different shapes "
            f"({', '.join(map(str, sorted(shapes)[:3]))}); volumes must share one shape"
        )
    if cfg.depth and images and images[0].shape[0] != cfg.depth:
        raise DataError(
            f"{origin}: volumes have {images[0].shape[0]} slices but config.data.depth="
            f"{cfg.depth}; set --config.data.depth={images[0].shape[0]}"
        )
    stacked = np.stack(images)
    if cfg.depth:
        flat = to_channels(stacked.reshape(-1, *stacked.shape[2:]), cfg.channels, origin)
        stacked = flat.reshape(*stacked.shape[:2], *flat.shape[1:])
    else:
        stacked = to_channels(stacked, cfg.channels, origin)
    fix = "repair those examples and prepare the dataset again"
    check_finite(stacked, f"{origin}: split {desc!r}", fix)
    return Split(stacked, np.asarray(labels, np.int32), np.asarray(groups) if groups else None)


def _merge(parts: list[Split]) -> Split:
    groups = (
        None if any(p.groups is None for p in parts) else np.concatenate([p.groups for p in parts])
    )
    return Split(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), groups
    )


@SOURCES.register("tfds")
def tfds_source(cfg) -> Dataset:
    import tensorflow_datasets as tfds  # noqa: PLC0415  (slow import, only for this source)

    folder, version = _dataset_dir(cfg)
    _check_prepared(cfg, folder, version)
    try:
        sources = tfds.data_source(cfg.name, data_dir=cfg.path, download=False)
    except (tfds.core.registered.DatasetNotFoundError, NotImplementedError, ValueError) as e:
        raise DataError(f"{folder}: TFDS cannot read it ({str(e).splitlines()[0]})") from None
    info = next(iter(sources.values())).dataset_info
    origin = f"{cfg.path.rstrip('/')}/{info.name}/{info.version}"
    keys = _features(info.features, origin, cfg.patient_column)
    by_split: dict[str, list[Split]] = {}
    for tfds_name, source in sources.items():
        split = _read(source, keys, cfg, origin, tfds_name)
        if split is not None:
            by_split.setdefault(SPLIT_NAMES.get(tfds_name, "all"), []).append(split)
    if set(by_split) - {"all"}:
        by_split.pop("all", None)  # extra splits ("unlabeled", ...) next to official ones
    splits = {name: _merge(parts) for name, parts in by_split.items()}
    label = info.features[keys[1]]
    if isinstance(label, tfds.features.ClassLabel):
        names = list(label.names)
    else:
        names = index_names(splits, origin)
    check_labels(splits, names, origin, "unlabelled examples (label -1) are not supported")
    return Dataset(info.name, splits, len(names), names, "unknown", origin=origin)
