"""CSV manifests: one row per file, with its label and optionally its patient and split.

Columns are named by config.data.path_column, label_column, patient_column and split_column
(set the last two to "" to ignore such columns); other columns are ignored. Paths are relative
to the manifest's folder, and must stay inside that folder's tree after following symlinks, so a
manifest can never make medjax read files elsewhere. Files are read by type: PNG, JPEG, BMP,
TIFF, DICOM (.dcm, or any file with the DICM preamble) and NIfTI (.nii, .nii.gz).

Labels: when every label is an integer, it is the class index (classes 0..max, named "0", "1",
...); otherwise the classes are the sorted distinct labels. With a split column the class list
comes from the train rows, so a val or test label unseen in training is an error. The split
column takes train/val/test (also training, valid, validation, testing), for every row or none.
"""

import csv
import os

from medjax.configs import get_base_config
from medjax.data import files
from medjax.data.source import SOURCE_FILES, SOURCES, Dataset
from medjax.errors import DataError


def is_manifest(path: str) -> bool:
    return path.lower().endswith(".csv")


def _column(header: list[str], cfg, key: str, path: str) -> str | None:
    """The column config.data.<key> names; the optional ones may be absent under their default
    name, but a name the user chose must exist (a typo would silently drop patient grouping)."""
    value, required = cfg[key], key in ("path_column", "label_column")
    if value in header:
        return value
    if not value and not required:
        return None
    if required or value != get_base_config().data[key]:
        raise DataError(
            f"{path}: no column {value!r} (config.data.{key}); the header has {header}; set "
            f"--config.data.{key}=<the column's name>"
        )
    return None


def _resolve(raw: str, root: str, where: str) -> str:
    """The real path of a manifest entry, refusing anything outside the manifest's folder."""
    full = os.path.realpath(os.path.join(root, raw))  # an absolute raw path replaces root
    if os.path.commonpath([full, root]) != root:
        raise DataError(
            f"{where}: path {raw!r} resolves to {full}, outside the manifest's folder {root}; "
            f"manifests may only name files inside their own folder tree (move the file there, "
            f"or the manifest above it)"
        )
    return full


def _class_list(labels: list[str], where: list[str], reference: list[int], path: str):
    """(label index per row, class names) from the raw label strings."""
    try:
        numbers = [int(x) for x in labels]
    except ValueError:
        numbers = None
    if numbers is not None:
        names = [str(i) for i in range(max(numbers[i] for i in reference) + 1)]
        index = {str(i): i for i in range(len(names))}
        labels = [str(n) for n in numbers]  # "01" and "1" are the same class
    else:
        names = sorted({labels[i] for i in reference})
        index = {name: i for i, name in enumerate(names)}
    for label, at in zip(labels, where, strict=True):
        if label not in index:
            from_rows = "the train rows" if len(reference) < len(labels) else "all rows"
            raise DataError(
                f"{at}: label {label!r} is not in the class list {names} (from {from_rows} of "
                f"{path}); fix the label, or add training rows for it"
            )
    return [index[x] for x in labels], names


def parse(cfg) -> tuple[list[files.Entry], list[str]]:
    """Entries and class names from the manifest at config.data.path."""
    path = cfg.path
    if not os.path.isfile(path):
        raise DataError(f"manifest {path!r} does not exist; check --config.data.path")
    root = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
        reader = csv.DictReader(f)
        header = [h for h in (reader.fieldnames or []) if h is not None]
        path_col, label_col, patient_col, split_col = (
            _column(header, cfg, key, path)
            for key in ("path_column", "label_column", "patient_column", "split_column")
        )
        rows = [(f"{path} line {reader.line_num}", row) for row in reader]
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")

    entries, labels, seen = [], [], {}
    for where, row in rows:
        raw = (row.get(path_col) or "").strip()
        label = (row.get(label_col) or "").strip()
        if not raw or not label:
            column = path_col if not raw else label_col
            raise DataError(f"{where}: empty {column!r} cell; fill it in or delete the row")
        full = _resolve(raw, root, where)
        if full in seen:
            raise DataError(
                f"{where}: {raw!r} is also listed at {seen[full]}; one row per file (a file in "
                f"two splits would leak test images into training)"
            )
        seen[full] = where
        patient = split = None
        if patient_col:
            patient = (row.get(patient_col) or "").strip()
            if not patient:
                raise DataError(
                    f"{where}: empty {patient_col!r} cell; fill it in, or set "
                    f"--config.data.patient_column='' to not group images by patient"
                )
        if split_col:
            value = (row.get(split_col) or "").strip()
            split = files.SPLIT_ALIASES.get(value.lower())
            if split is None:
                raise DataError(
                    f"{where}: split {value!r} in column {split_col!r} is not one of "
                    f"{sorted(files.SPLIT_ALIASES)}; fix it, or set --config.data.split_column='' "
                    f"to let medjax make the splits"
                )
        labels.append(label)
        entries.append(files.Entry(full, raw, -1, split or "all", patient, where))
    reference = [i for i, e in enumerate(entries) if e.split == "train"] if split_col else []
    if split_col and not reference:
        raise DataError(f"{path}: no row has split 'train' in column {split_col!r}")
    indices, class_names = _class_list(
        labels, [e.where for e in entries], reference or range(len(entries)), path
    )
    for entry, index in zip(entries, indices, strict=True):
        entry.label = index
    return entries, class_names


def load_manifest(cfg) -> Dataset:
    entries, class_names = parse(cfg)
    return files.load(entries, class_names, cfg, origin=cfg.path)


def list_manifest(cfg) -> list[str]:
    """The manifest and every file it names (that exists: missing ones may be skipped)."""
    entries, _ = parse(cfg)
    return [cfg.path] + [e.path for e in entries if os.path.isfile(e.path)]


def _require_manifest(cfg) -> None:
    if not is_manifest(cfg.path):
        raise DataError(
            f"config.data.source='csv' needs a .csv manifest in config.data.path, not "
            f"{cfg.path!r}; for a folder of class folders use source image_folder, dicom or nifti"
        )


@SOURCES.register("csv")
def csv_source(cfg) -> Dataset:
    _require_manifest(cfg)
    return load_manifest(cfg)


@SOURCE_FILES.register("csv")
def csv_files(cfg) -> list[str]:
    _require_manifest(cfg)
    return list_manifest(cfg)


def register_folder_source(name: str, is_file, kind: str, reader) -> None:
    """Register source `name` (and its file lister): one folder per class, as `files` scans
    them for files `is_file` accepts and decodes them with `reader`; or, when config.data.path
    is a .csv, the manifest it names."""

    def load(cfg) -> Dataset:
        if is_manifest(cfg.path):
            return load_manifest(cfg)
        entries, class_names = files.scan_folders(cfg.path, is_file, kind)
        return files.load(entries, class_names, cfg, origin=cfg.path, reader=reader)

    def listed(cfg) -> list[str]:
        if is_manifest(cfg.path):
            return list_manifest(cfg)
        return [e.path for e in files.scan_folders(cfg.path, is_file, kind)[0]]

    SOURCES.register(name, load)
    SOURCE_FILES.register(name, listed)
