"""MedMNIST `.npz` files (official layout: {train,val,test}_{images,labels})."""

import os
import zipfile

import numpy as np

from medjax.data.source import SOURCES, SPLITS, Dataset, Split, to_channels
from medjax.errors import DataError

# Class names and modality of the MedMNIST v2 datasets medjax has been run on; any other
# MedMNIST-layout file still loads, with classes named by index.
KNOWN = {
    "breastmnist": ("ultrasound", ["malignant", "normal_or_benign"]),
    "pneumoniamnist": ("xray", ["normal", "pneumonia"]),
}


def find_file(name: str, path: str) -> str:
    if path:
        if not os.path.isfile(path):
            raise DataError(
                f"data file {path!r} does not exist; check --config.data.path "
                f"(or unset it to look for {name}.npz in $MEDJAX_DATA_DIR)"
            )
        return path
    data_dir = os.environ.get("MEDJAX_DATA_DIR", "")
    candidate = os.path.join(data_dir, f"{name}.npz")
    if not data_dir or not os.path.isfile(candidate):
        where = f"in MEDJAX_DATA_DIR={data_dir!r}" if data_dir else "(MEDJAX_DATA_DIR is not set)"
        raise DataError(
            f"MedMNIST file {name}.npz not found {where}; pass "
            f"--config.data.path=/path/to/{name}.npz or export MEDJAX_DATA_DIR=<folder with it>"
        )
    return candidate


def read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e}); re-download it") from None


@SOURCES.register("medmnist")
def medmnist(cfg) -> Dataset:
    path = find_file(cfg.name, cfg.path)
    arrays = read_npz(path)
    expected = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")]
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: not in the MedMNIST layout; missing keys {missing} (found {sorted(arrays)}). "
            f"Expected {expected}"
        )
    splits = {}
    for s in SPLITS:
        images, labels = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        if images.ndim not in (3, 4) or len(images) != len(labels):
            raise DataError(
                f"{path}: {s}_images has shape {images.shape} for {len(labels)} labels; expected "
                f"(N, H, W) or (N, H, W, C) 2D images, one per label"
            )
        if images.shape[1] != cfg.image_size or images.shape[2] != cfg.image_size:
            raise DataError(
                f"{path}: images are {images.shape[1]}x{images.shape[2]} px but "
                f"config.data.image_size={cfg.image_size}; set "
                f"--config.data.image_size={images.shape[1]}"
            )
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise DataError(
                f"{path}: {s}_labels has shape {labels.shape}; medjax needs one class per image "
                f"(N,) or (N, 1) (multi-label MedMNIST sets are not supported yet)"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: {s}_labels are {labels.dtype}, not integer class indices")
        splits[s] = Split(to_channels(images, cfg.channels, path), labels.astype(np.int32))
    modality, names = KNOWN.get(cfg.name, ("unknown", None))
    num_classes = int(max(int(s.labels.max()) for s in splits.values())) + 1
    if names is None:
        names = [f"class_{i}" for i in range(num_classes)]
    for s, split in splits.items():
        bad = (split.labels < 0) | (split.labels >= len(names))
        if bad.any():
            raise DataError(
                f"{path}: {s}_labels has {int(bad.sum())} labels outside 0..{len(names) - 1} "
                f"(first bad value {int(split.labels[bad][0])}) for the {len(names)} classes "
                f"{names}; the file is corrupt or not {cfg.name}"
            )
    return Dataset(cfg.name, splits, len(names), list(names), modality, origin=path)
