"""CSV manifests: one row per file, with its label and optionally its patient and split.

Columns are named by config.data.path_column, label_column, patient_column and split_column
(set the last two to "" to ignore such columns); other columns are ignored. Paths are relative
to the manifest's folder, and must stay inside that folder's tree after following symlinks, so a
manifest can never make medjax read files elsewhere. Files are read by type: PNG, JPEG, BMP,
TIFF, DICOM (.dcm, or any file with the DICM preamble) and NIfTI (.nii, .nii.gz).

Labels: numbers are class indices, anything else class names (`medjax.data.manifest_labels`
has the rules). With a split column the class list comes from the train rows, so a val or test
label unseen in training is an error. The split column takes train/val/test (also training,
valid, validation, testing), for every row or none. Errors name the row as a spreadsheet shows
it, the header being row 1; the file must be UTF-8 (`medjax.data.csv_rows`).
"""

import os

from medjax.configs import get_base_config
from medjax.data import files
from medjax.data.csv_rows import read_table
from medjax.data.manifest_labels import class_list
from medjax.data.source import SOURCE_FILES, SOURCES, Dataset
from medjax.errors import DataError


def is_manifest(path: str) -> bool:
    return path.lower().endswith(".csv")


def _column(header: list[str], cfg, key: str, path: str) -> int | None:
    """The index of the column config.data.<key> names; the optional ones may be absent under
    their default name, but a name the user chose must exist (a typo would silently drop
    patient grouping), and a used name must be unique (which one to read would be a guess)."""
    value, required = cfg[key], key in ("path_column", "label_column")
    if header.count(value) > 1:
        at = [i + 1 for i, h in enumerate(header) if h == value]
        raise DataError(
            f"{path}: the header has {len(at)} columns named {value!r} (config.data.{key}), "
            f"columns {at}; rename or delete all but one"
        )
    if value in header:
        return header.index(value)
    if not value and not required:
        return None
    if required or value != get_base_config().data[key]:
        hint = ""
        if len(header) == 1 and (";" in header[0] or "\t" in header[0]):
            hint = " (the header looks separated by ';' or tabs: save the file comma-separated)"
        raise DataError(
            f"{path}: no column {value!r} (config.data.{key}); the header has {header}{hint}; "
            f"set --config.data.{key}=<the column's name>"
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


def _cell(cells: list[str], column: int | None) -> str:
    return cells[column].strip() if column is not None and column < len(cells) else ""


def _check_width(cells: list[str], header: list[str], where: str) -> None:
    extra = [c for c in cells[len(header) :] if c.strip()]
    if extra:
        raise DataError(
            f"{where}: {len(cells)} cells for the {len(header)} columns of the header (extra: "
            f'{extra[:3]}); a comma inside a path or label must be quoted ("a,b.png")'
        )


def _split_of(cells, column, where: str, name: str) -> str:
    value = _cell(cells, column)
    split = files.SPLIT_ALIASES.get(value.lower())
    if split is None:
        raise DataError(
            f"{where}: split {value!r} in column {name!r} is not one of "
            f"{sorted(files.SPLIT_ALIASES)}; fix it, or set --config.data.split_column='' to let "
            f"medjax make the splits"
        )
    return split


def _entry(cells, columns, names, root: str, where: str, seen: dict) -> files.Entry:
    """One row's entry (label still -1); `columns` are the path, label, patient and split
    column indices, `names` their names."""
    path_col, label_col, patient_col, split_col = columns
    raw = _cell(cells, path_col)
    if not raw or not _cell(cells, label_col):
        column = names[0] if not raw else names[1]
        raise DataError(f"{where}: empty {column!r} cell; fill it in or delete the row")
    full = _resolve(raw, root, where)
    if full in seen:
        raise DataError(
            f"{where}: {raw!r} is also listed at {seen[full]}; one row per file (a file in two "
            f"splits would leak test images into training)"
        )
    seen[full] = where
    patient = None
    if patient_col is not None:
        patient = _cell(cells, patient_col)
        if not patient:
            raise DataError(
                f"{where}: empty {names[2]!r} cell; fill it in, or set "
                f"--config.data.patient_column='' to not group images by patient"
            )
    split = _split_of(cells, split_col, where, names[3]) if split_col is not None else "all"
    return files.Entry(full, raw, -1, split, patient, where)


KEYS = ("path_column", "label_column", "patient_column", "split_column")


def parse(cfg) -> tuple[list[files.Entry], list[str]]:
    """Entries and class names from the manifest at config.data.path."""
    path = cfg.path
    if not os.path.isfile(path):
        raise DataError(f"manifest {path!r} does not exist; check --config.data.path")
    root = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    table = read_table(path)
    columns = [_column(table.header, cfg, key, path) for key in KEYS]
    names = [cfg[key] for key in KEYS]
    if not table.rows:
        raise DataError(f"{path}: the manifest has no rows")
    entries, labels, seen = [], [], {}
    for number, cells in table.rows:
        where = f"{path} row {number}"
        _check_width(cells, table.header, where)
        entries.append(_entry(cells, columns, names, root, where, seen))
        labels.append(_cell(cells, columns[1]))
    split_col = columns[3]
    reference = [i for i, e in enumerate(entries) if e.split == "train"]
    if split_col is not None and not reference:
        raise DataError(f"{path}: no row has split 'train' in column {names[3]!r}")
    indices, class_names = class_list(
        labels, [n for n, _ in table.rows], reference or range(len(entries)), path
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
