"""What the file-based sources share: folder layouts, reading files under config.data.on_error,
and assembling the Dataset.

Folder layouts (image_folder, dicom, nifti): `root/<class>/...` or `root/<split>/<class>/...`,
with files found recursively inside each class folder (so `class/patient/series/*.dcm` works).
Hidden files and folders (".DS_Store", macOS "._x.png" resource forks, "__MACOSX") are ignored,
as are files of other types than the source reads. Class names are the folder names, sorted.
"""

import concurrent.futures
import dataclasses
import os
import warnings
from collections.abc import Callable

import numpy as np

from medjax.data.decode import Decoded, is_image_file, read_image, stack_consistent
from medjax.data.source import Dataset, Split, check_every_class
from medjax.data.values import nonfinite
from medjax.errors import DataError

# Folder and split-column names (any case) -> medjax split
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
LAYOUTS = "root/<class>/<files> or root/<split>/<class>/<files>"
ON_ERROR = ("raise", "skip")  # config.data.on_error


class SkippedFileWarning(UserWarning):
    """A file left out of the dataset because config.data.on_error is "skip"."""


class MixedDepthWarning(UserWarning):
    """The image files of one dataset were stored at different bit depths."""


DEPTH_NAMES = {"8": "8-bit", "16": "16-bit", "float": "float"}
SCALES = {
    "auto": "each was mapped from its own full scale onto 0-255 (16-bit values / 257)",
    "8": "each was mapped onto 0-255 uint8 (16-bit values / 257, rounded)",
    "16": "each was mapped onto 0-65535 uint16 (8-bit values x 257)",
}


@dataclasses.dataclass
class Entry:
    path: str  # absolute
    name: str  # as the user wrote or sees it (relative to the data root), for messages
    label: int
    split: str = "all"  # train, val, test, or all when the data has no official splits
    patient: str | None = None
    where: str = ""  # e.g. "labels.csv line 7", so errors point at the manifest row


Reader = Callable[[str, object], Decoded]
# (accepts(path), reader) in registration order; the DICOM and NIfTI modules add theirs
READERS: list[tuple[Callable[[str], bool], Reader]] = [(is_image_file, read_image)]


def register_reader(accepts: Callable[[str], bool], reader: Reader) -> None:
    READERS.append((accepts, reader))


def reader_for(path: str) -> Reader:
    for accepts, reader in READERS:
        if accepts(path):
            return reader
    raise DataError(
        f"{path}: unknown file type; medjax reads PNG, JPEG, BMP, TIFF, DICOM (.dcm or with the "
        f"DICM preamble) and NIfTI (.nii, .nii.gz)"
    )


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _listdir(folder: str) -> tuple[list[str], list[str]]:
    """(visible subfolder names, visible file names), sorted."""
    names = sorted(n for n in os.listdir(folder) if not _hidden(n))
    dirs = [n for n in names if os.path.isdir(os.path.join(folder, n))]
    return dirs, [n for n in names if n not in dirs]


def _class_files(folder: str, accepts: Callable[[str], bool]) -> list[str]:
    found = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        found += [os.path.join(parent, n) for n in sorted(names) if not _hidden(n)]
    return [p for p in found if accepts(p)]


def _classes(folder: str, accepts, what: str, where: str) -> dict[str, list[str]]:
    """class name -> its files, for one folder of class folders."""
    dirs, loose = _listdir(folder)
    stray = [n for n in loose if accepts(os.path.join(folder, n))]
    if stray:
        raise DataError(
            f"{folder}: {what} files ({stray[0]!r}, ...) lie directly in {where}, where class "
            f"folders are expected; move them into {LAYOUTS}"
        )
    if not dirs:
        raise DataError(f"{folder}: no class folders in {where}; expected {LAYOUTS}")
    classes = {d: _class_files(os.path.join(folder, d), accepts) for d in dirs}
    for name, found in classes.items():
        if not found:
            raise DataError(
                f"{os.path.join(folder, name)}: class folder {name!r} holds no {what} files; add "
                f"some or remove the folder"
            )
    return classes


def scan_folders(
    root: str, accepts: Callable[[str], bool], what: str
) -> tuple[list[Entry], list[str]]:
    """Entries and sorted class names of a class-folder tree, with split folders if present."""
    if not os.path.isdir(root):
        raise DataError(
            f"{root!r} is not a folder; set --config.data.path to the data root ({LAYOUTS}), "
            f"or to a .csv manifest"
        )
    dirs, _ = _listdir(root)
    split_of = {d: SPLIT_ALIASES.get(d.lower()) for d in dirs}
    if dirs and all(split_of.values()):
        by_split = {}
        for d in dirs:
            if split_of[d] in by_split:
                raise DataError(f"{root}: two folders for the {split_of[d]} split; keep one: {d}")
            by_split[split_of[d]] = (d, _classes(os.path.join(root, d), accepts, what, d))
        if "train" not in by_split:
            raise DataError(
                f"{root}: split folders {sorted(split_of)} but no train folder; name the training "
                f"folder train (or training)"
            )
        class_names = sorted(by_split["train"][1])
        for d, classes in by_split.values():
            if sorted(classes) != class_names:
                extra = sorted(set(classes) - set(class_names))
                lacking = sorted(set(class_names) - set(classes))
                raise DataError(
                    f"{os.path.join(root, d)}: its class folders differ from train's "
                    f"{class_names} (extra: {extra}, missing: {lacking}); every split folder "
                    f"needs the same class folders"
                )
    elif not any(split_of.values()):
        by_split = {"all": (root, _classes(root, accepts, what, "the data root"))}
        class_names = sorted(by_split["all"][1])
    else:
        raise DataError(
            f"{root}: unrecognised folder layout (folders: {dirs}); expected {LAYOUTS}, split "
            f"folders named train, val, test (or training, valid, validation, testing)"
        )
    entries = [
        Entry(path, os.path.relpath(path, root).replace(os.sep, "/"), label, split)
        for split, (_, classes) in by_split.items()
        for label, name in enumerate(class_names)
        for path in classes[name]
    ]
    return entries, class_names


def _check_finite(path: str, decoded: Decoded) -> None:
    """Inside the per-file read, so config.data.on_error="skip" leaves such files out too."""
    found = nonfinite(np.stack(decoded.images))
    if found:
        n = len(decoded.images)
        which = f" (in {found[1]} of its {n} frames or slices, the first at index {found[0]})"
        raise DataError(
            f"{path}: NaN or infinite pixel values{which if n > 1 else ''}; the data is at "
            f"fault, not the training: clean the file (e.g. replace them and save it again), or "
            f"set --config.data.on_error=skip to leave out such files"
        )


def read_all(entries: list[Entry], cfg, reader: Reader | None = None):
    """[(entry, Decoded)] of the readable files, in order, and how many were skipped.

    on_error="raise" stops at the first bad file; "skip" warns about each one and counts them.
    """

    def attempt(entry: Entry) -> Decoded | DataError:
        try:
            if not os.path.isfile(entry.path):
                problem = (
                    "is a folder, not a file" if os.path.isdir(entry.path) else "does not exist"
                )
                raise DataError(
                    f"{entry.name!r} {problem} (looked for {entry.path}); fix the path "
                    f"(relative to the manifest's folder) or delete the row"
                )
            decoded = (reader or reader_for(entry.path))(entry.path, cfg)
            _check_finite(entry.path, decoded)
            return decoded
        except DataError as e:
            return DataError(f"{entry.where}: {e}" if entry.where else str(e))

    kept, skipped = [], 0
    # Threads overlap file reads and Pillow's decoding, which releases the GIL.
    pool = concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        for entry, result in zip(entries, pool.map(attempt, entries), strict=True):
            if not isinstance(result, DataError):
                kept.append((entry, result))
            elif cfg.on_error == "skip":
                skipped += 1
                warnings.warn(f"skipped {result}", SkippedFileWarning, stacklevel=2)
            else:
                raise result
    finally:
        pool.shutdown(cancel_futures=True)
    return kept, skipped


def build_dataset(name, pairs, class_names, origin, skipped: int, total: int) -> Dataset:
    """Stack decoded files into splits of one dtype, labels and patient groups."""
    if skipped:
        warnings.warn(
            f"{origin}: skipped {skipped} of {total} files (config.data.on_error='skip')",
            SkippedFileWarning,
            stacklevel=2,
        )
        origin = f"{origin} (skipped {skipped} of {total} files)"
    if not pairs:
        raise DataError(f"{origin}: none of the {total} files could be read")
    images, labels, splits, patients, names = [], [], [], [], []
    for entry, decoded in pairs:
        for image in decoded.images:
            images.append(image)
            labels.append(entry.label)
            splits.append(entry.split)
            patients.append(entry.patient or decoded.patient)
            names.append(entry.name)
    shapes = sorted({a.shape for a in images})
    if len(shapes) > 1:
        raise DataError(
            f"{origin}: files decode to different shapes {shapes}; mixing 2D images and "
            f"volumes, or channel counts, in one dataset is not supported"
        )
    stacked, labels = stack_consistent(images), np.asarray(labels, np.int32)
    # A file without a patient id is its own group, so its frames or slices stay together.
    groups = None
    if any(p is not None for p in patients) or len(images) > len(pairs):
        groups = np.array([p if p is not None else n for p, n in zip(patients, names, strict=True)])
    out = {}
    for split in dict.fromkeys(splits):
        keep = np.array([s == split for s in splits])
        out[split] = Split(stacked[keep], labels[keep], None if groups is None else groups[keep])
    reference = "train" if "train" in out else "all"
    why = "none were left after skipping unreadable files; " if skipped else ""
    check_every_class(
        reference, out[reference], class_names, origin, f"{why}add some or remove the class"
    )
    modalities = {decoded.modality for _, decoded in pairs}
    modality = modalities.pop() if len(modalities) == 1 else "unknown"
    return Dataset(name, out, len(class_names), list(class_names), modality, origin=origin)


def warn_mixed_depths(pairs, bit_depth: str, origin: str) -> None:
    """One warning for a dataset whose image files differ in bit depth, with the count and a
    first file of each depth (DICOM and NIfTI, in physical units, are not counted)."""
    first, counts = {}, {}
    for entry, decoded in pairs:
        if decoded.depth is not None:
            first.setdefault(decoded.depth, entry.name)
            counts[decoded.depth] = counts.get(decoded.depth, 0) + 1
    if len(counts) < 2:
        return
    found = ", ".join(
        f"{counts[d]} {name} (first: {first[d]})" for d, name in DEPTH_NAMES.items() if d in counts
    )
    warnings.warn(
        f"{origin}: image files of different bit depths: {found}; with config.data.bit_depth="
        f"{bit_depth!r} {SCALES[bit_depth]}, float images keep their values. Check that the "
        f"depth does not follow the class (a model can learn the scanner instead of the "
        f"disease), and set config.data.bit_depth to choose the common scale",
        MixedDepthWarning,
        stacklevel=3,
    )


def load(entries, class_names, cfg, origin: str, reader: Reader | None = None) -> Dataset:
    if len(class_names) < 2:
        raise DataError(
            f"{origin}: one class only ({class_names[0]!r}); a classifier needs at least two "
            f"(is config.data.path the folder above the class folders, or the right manifest?)"
        )
    pairs, skipped = read_all(entries, cfg, reader)
    warn_mixed_depths(pairs, cfg.bit_depth, origin)
    name = os.path.basename(os.path.normpath(cfg.path)).removesuffix(".csv")
    return build_dataset(name, pairs, class_names, origin, skipped, len(entries))
