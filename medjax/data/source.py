"""The source interface: every data source turns `config.data` into a `Dataset` of splits.

Sources register under the name `config.data.source` selects. They return raw pixels (uint8 or
float) with integer labels; preprocessing is applied afterwards, the same way for every source.
A source returns the official train/val/test splits when the data has them, or fewer (only
"all", or "train" and "test"): `medjax.data.splits.assign` then makes the missing ones,
stratified by class and grouped by patient, and the k-fold split when the config asks for one.
File-based sources also register a lister in SOURCE_FILES, so the cache can tell (from the
files' sizes and times, without decoding) whether a cached copy is still valid.
"""

import dataclasses

import numpy as np

from medjax.errors import DataError
from medjax.registry import Registry

SOURCES = Registry("data source", "config.data.source")
# name -> fn(config.data) -> list of the files the source reads (for the cache key)
SOURCE_FILES = Registry("data source file lister", "config.data.source")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Split:
    images: np.ndarray  # (N, H, W, C), or (N, D, H, W, C) for volumes
    labels: np.ndarray  # (N,) int32 class indices, or multi-label (N, L) int32 0/1 per finding
    groups: np.ndarray | None = None  # (N,) patient ids (str): no patient in two splits

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class Dataset:
    name: str
    splits: dict[str, Split]
    num_classes: int
    class_names: list[str]
    modality: str = "unknown"
    origin: str = ""  # file or generator it came from, for the run card
    split_method: str = ""  # how the splits were made (medjax.data.splits.assign)

    @property
    def multi_label(self) -> bool:
        """Whether each image has several findings (labels (N, L), one 0/1 per class name)
        rather than one class."""
        return self.splits["train"].labels.ndim == 2

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.splits["train"].images.shape[1:]

    def summary(self) -> dict:
        """Images, patients (when ids exist) and class counts per split, and how the splits
        were made ("split_method"), as printed and saved with the run."""
        out = {}
        for name, s in self.splits.items():
            counts = label_counts(s.labels, self.num_classes)
            out[name] = {"images": len(s)}
            if s.groups is not None:
                out[name]["patients"] = len(np.unique(s.groups))
            out[name]["class_counts"] = {self.class_names[c]: int(n) for c, n in enumerate(counts)}
        return {**out, "split_method": self.split_method} if self.split_method else out


def to_channels(images: np.ndarray, channels: int, origin: str) -> np.ndarray:
    """(N, H, W[, C]) -> (N, H, W, channels), replicating grey or taking RGB luminance."""
    if images.ndim == 3:
        images = images[..., None]
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 3 and channels == 1:
        grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return grey[..., None].round().astype(images.dtype)
    raise DataError(
        f"{origin}: images have {have} channels and config.data.channels={channels}; "
        f"set --config.data.channels={have}"
    )


def shown(items, limit: int = 10) -> str:
    """A list for a message, cut short: a dataset can have hundreds of classes."""
    items = list(items)
    return str(items) if len(items) <= limit else f"{items[:limit]} and {len(items) - limit} more"


def index_names(splits: dict, origin: str) -> list[str]:
    """Names class_0..class_K for labels that are bare class indices, K the largest training
    label. Refused when K reaches the training set's size (some class would have no training
    image) before the list is built: one corrupt label (2**32) would make it billions long."""
    train = splits["train"] if "train" in splits else splits["all"]
    if train.labels.ndim == 2:  # multi-label: one name per column
        return [f"finding_{i}" for i in range(train.labels.shape[1])]
    largest = int(train.labels.max()) if len(train) else -1
    if largest >= len(train):
        raise DataError(
            f"{origin}: the largest training label is {largest} for {len(train)} training "
            f"images, so some of the classes 0..{largest} have none; the labels are corrupt or "
            f"not 0-based class indices"
        )
    return [f"class_{i}" for i in range(largest + 1)]


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class; for multi-label (N, L) labels, images with each finding."""
    if labels.ndim == 2:
        return labels.sum(0).astype(np.int64)
    return np.bincount(labels, minlength=num_classes)


def check_labels(splits: dict, names: list, origin: str, fix: str) -> None:
    """Every label a class index of `names` (multi-label: a 0/1 per name); else a DataError
    naming the split, the count and the first bad value, ending with `fix`."""
    for name, split in splits.items():
        if split.labels.ndim == 2:
            _check_multi_hot(name, split.labels, names, origin, fix)
            continue
        bad = (split.labels < 0) | (split.labels >= len(names))
        if bad.any():
            raise DataError(
                f"{origin}: split {name!r} has {int(bad.sum())} labels outside "
                f"0..{len(names) - 1} (first bad value {int(split.labels[bad][0])}) for the "
                f"{len(names)} classes {shown(names)}; {fix}"
            )


def check_every_class(split_name: str, split: Split, names: list, origin: str, fix: str) -> None:
    """DataError naming the first class of `names` without an image in `split`, ending with
    `fix`: a classifier cannot learn a class it never sees."""
    counts = label_counts(split.labels, len(names))
    for label, count in enumerate(counts[: len(names)]):
        if not count:
            counted = shown(f"{n}: {c}" for n, c in zip(names, counts, strict=False))
            raise DataError(
                f"{origin}: class {names[label]!r} has no images in the {split_name} split "
                f"(class counts: {counted}); {fix}"
            )


def source_files(data_config) -> list[str]:
    """The files the configured source reads; [] for generated data."""
    if data_config.source not in SOURCE_FILES:
        return []
    return SOURCE_FILES.get(data_config.source)(data_config)


def _check_multi_hot(split: str, labels: np.ndarray, names: list, origin: str, fix: str) -> None:
    if labels.shape[1] != len(names):
        raise DataError(
            f"{origin}: split {split!r} has {labels.shape[1]} labels per image but there are "
            f"{len(names)} findings {shown(names)}; {fix}"
        )
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        raise DataError(
            f"{origin}: split {split!r} has {int(bad.sum())} multi-label entries that are not 0 "
            f"or 1 (first bad value {int(labels[bad][0])}); {fix}"
        )
