"""MedMNIST `.npz` files (official layout: {train,val,test}_{images,labels}), 2D and 3D.

`config.data.image_size` picks the file of a MedMNIST+ size (`<name>.npz` at 28 px,
`<name>_<size>.npz` otherwise) and is checked against the pixels. 3D sets hold volumes
(N, D, H, W) and load as (N, D, H, W, C); they need `config.data.depth` set to D, as a 2D set
needs it 0, so that a config says which kind of model input it trains on. Any other file in the
MedMNIST layout loads as well, with classes named by index.
"""

import os

import numpy as np

from medjax.data.medmnist_info import INFO, file_name
from medjax.data.npz import read_npz
from medjax.data.source import (
    SOURCE_FILES,
    SOURCES,
    SPLITS,
    Dataset,
    Split,
    check_every_class,
    check_labels,
    index_names,
    to_channels,
)
from medjax.data.values import check_finite
from medjax.errors import ConfigError, DataError

# Class names (multi-label ChestMNIST: its findings) and modality of every MedMNIST v2 dataset.
KNOWN = {name: (info.modality, list(info.class_names)) for name, info in INFO.items()}


def find_file(name: str, path: str, size: int = 28) -> str:
    """`path` if it is a file; else `<name>[_<size>].npz` in `path` or in $MEDJAX_DATA_DIR."""
    wanted = file_name(name, size)
    if path and not os.path.isdir(path):
        if not os.path.isfile(path):
            raise DataError(
                f"data file {path!r} does not exist; check --config.data.path "
                f"(or unset it to look for {wanted} in $MEDJAX_DATA_DIR)"
            )
        return path
    data_dir = path or os.environ.get("MEDJAX_DATA_DIR", "")
    candidate = os.path.join(data_dir, wanted)
    if not data_dir or not os.path.isfile(candidate):
        if path:
            where = f"in config.data.path={path!r}"
        elif data_dir:
            where = f"in MEDJAX_DATA_DIR={data_dir!r}"
        else:
            where = "(MEDJAX_DATA_DIR is not set)"
        raise DataError(
            f"MedMNIST file {wanted} not found {where}; download it with "
            f"`python -m medjax.data.fetch medmnist {name} --size {size} --dir DIR`, then pass "
            f"--config.data.path=DIR/{wanted} or export MEDJAX_DATA_DIR=DIR"
        )
    return candidate


def _check_config(cfg) -> None:
    info = INFO.get(cfg.name)
    if info is None:
        return
    if cfg.image_size not in info.sizes:
        raise ConfigError(
            f"{cfg.name} comes at image sizes {', '.join(map(str, info.sizes))}, not "
            f"config.data.image_size={cfg.image_size}; set one of those"
        )
    if info.volumes and not cfg.depth:
        raise ConfigError(
            f"{cfg.name} holds 3D volumes of {cfg.image_size}^3 voxels; set "
            f"--config.data.depth={cfg.image_size} and a 3D model (cnn3d, resnet3d_18)"
        )
    if not info.volumes and cfg.depth:
        raise ConfigError(
            f"{cfg.name} holds 2D images; set --config.data.depth=0 (it is {cfg.depth})"
        )


def _check_shape(path: str, split: str, images: np.ndarray, cfg) -> bool:
    """Whether `images` are volumes; raises when their size or kind contradicts the config."""
    volumes = cfg.depth > 0
    if volumes:
        if images.ndim not in (4, 5):
            raise DataError(
                f"{path}: {split}_images has shape {images.shape}; config.data.depth="
                f"{cfg.depth} asks for 3D volumes (N, D, H, W) or (N, D, H, W, C). For 2D "
                f"images set --config.data.depth=0"
            )
        if images.shape[1] != cfg.depth:
            raise DataError(
                f"{path}: volumes have {images.shape[1]} slices but config.data.depth="
                f"{cfg.depth}; set --config.data.depth={images.shape[1]}"
            )
    elif images.ndim == 4 and images.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: {split}_images has shape {images.shape}, which looks like 3D volumes "
            f"(N, D, H, W); set --config.data.depth={images.shape[1]} (and a 3D model). If its "
            f"last axis is channels, medjax reads 1 (grey) or 3 (RGB), not {images.shape[-1]}"
        )
    elif images.ndim not in (3, 4):
        raise DataError(
            f"{path}: {split}_images has shape {images.shape}; expected (N, H, W) or "
            f"(N, H, W, C) 2D images"
        )
    h, w = images.shape[2:4] if volumes else images.shape[1:3]
    if h != cfg.image_size or w != cfg.image_size:
        raise DataError(
            f"{path}: images are {h}x{w} px but config.data.image_size={cfg.image_size}; set "
            f"--config.data.image_size={h}"
        )
    return volumes


def _channels(images: np.ndarray, volumes: bool, channels: int, path: str) -> np.ndarray:
    if not volumes:
        return to_channels(images, channels, path)
    if images.ndim == 4:
        images = images[..., None]
    flat = to_channels(images.reshape(-1, *images.shape[2:]), channels, path)
    return flat.reshape(*images.shape[:2], *flat.shape[1:])


@SOURCE_FILES.register("medmnist")
def medmnist_files(cfg) -> list[str]:
    return [find_file(cfg.name, cfg.path, cfg.image_size)]


def _labels(path: str, split: str, labels: np.ndarray) -> np.ndarray:
    """(N,) int64 class indices from (N,) or (N, 1) integers, or multi-label (N, L) 0/1
    findings (ChestMNIST), before any narrowing cast, so a huge value cannot wrap around into a
    valid class."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim not in (1, 2):
        raise DataError(
            f"{path}: {split}_labels has shape {labels.shape}; medjax reads one class per image "
            f"(N,) or (N, 1), or multi-label findings (N, L) of 0/1"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {split}_labels are {labels.dtype}, not integer class indices; save them "
            f"as integers (e.g. labels.astype(np.int64) after checking they are whole numbers)"
        )
    return labels.astype(np.int64)


def _read_split(path: str, split: str, arrays: dict, cfg) -> Split | None:
    """One split's checked images and labels; None when the file's split is empty."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.dtype.kind not in "uif":
        raise DataError(
            f"{path}: {split}_images are {images.dtype}; medjax reads integer or float pixel "
            f"values, so save them as uint8, uint16 or float32"
        )
    volumes = _check_shape(path, split, images, cfg)
    labels = _labels(path, split, labels)
    if len(images) != len(labels):
        raise DataError(
            f"{path}: {split}_images holds {len(images)} images for {len(labels)} labels; the "
            f"file is corrupt, re-download it"
        )
    if not len(images):
        return None
    check_finite(
        images, f"{path}: {split}_images", "repair or drop those images and save the file again"
    )
    return Split(_channels(images, volumes, cfg.channels, path), labels)


def _sizes(arrays: dict) -> str:
    return ", ".join(f"{s} {len(arrays[f'{s}_labels'])}" for s in SPLITS)


@SOURCES.register("medmnist")
def medmnist(cfg) -> Dataset:
    """The file's train/val/test; an empty val or test is left to `medjax.data.splits.assign`
    to carve from train, as for any source without that split."""
    _check_config(cfg)
    path = find_file(cfg.name, cfg.path, cfg.image_size)
    arrays = read_npz(path, cfg.max_pixels)
    expected = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")]
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: not in the MedMNIST layout; missing keys {missing} (found {sorted(arrays)}). "
            f"Expected {expected}"
        )
    splits = {s: _read_split(path, s, arrays, cfg) for s in SPLITS}
    splits = {s: split for s, split in splits.items() if split is not None}
    if "train" not in splits:
        raise DataError(
            f"{path}: the train split is empty (images per split: {_sizes(arrays)}); medjax "
            f"trains on train_images, so put the training images there"
        )
    modality, names = KNOWN.get(cfg.name, ("unknown", None))
    if names is None:
        names = index_names(splits, path)
    fix = f"the file is corrupt or not {cfg.name}"
    if cfg.name not in KNOWN:
        fix = "labels are class indices 0, 1, ... and every class needs training images"
    check_labels(splits, names, path, fix)
    check_every_class("train", splits["train"], names, path, "add training images of it")
    for split in splits.values():
        split.labels = split.labels.astype(np.int32)
    return Dataset(cfg.name, splits, len(names), list(names), modality, origin=path)
