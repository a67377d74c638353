"""New images for a trained model: finding the files, and decoding them as its training data was.

Inputs are folders (searched recursively, hidden files and files of other types ignored, as
the folder sources do), single files, or .csv files listing paths in a column (relative to the
.csv's folder). Each file is decoded by the reader its type selects (`medjax.data.files`) with
the run's own config.data (image_size, channels, fit, bit_depth, dicom_window, depth,
slice_axis, max_pixels), so a file gives exactly the pixels it would have given in training;
a file the model cannot take (a volume for a 2D model, an image for a volume model, a channel
count that does not convert) is a DataError naming it.
"""

import dataclasses
import os

import ml_collections
import numpy as np

from medjax.data import dicom, files, nifti
from medjax.data.csv_rows import read_table
from medjax.data.decode import Decoded, is_image_file
from medjax.errors import DataError

# Settings a user would change to make a file fit at training time, but which are the run's
# at prediction time: their errors get a fix that fits prediction.
TRAINING_ADVICE = ("config.data.depth", "config.data.channels", "config.data.slice_axis")


def readable(path: str) -> bool:
    return is_image_file(path) or nifti.is_nifti_file(path) or dicom.is_dicom_file(path)


def _in_folder(folder: str) -> list[str]:
    found = []
    for parent, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not files._hidden(d))
        found += [os.path.join(parent, n) for n in sorted(names) if not files._hidden(n)]
    return [p for p in found if readable(p)]


def _in_csv(path: str, column: str) -> list[files.Entry]:
    table = read_table(path)
    if column not in table.header:
        raise DataError(
            f"{path}: no column {column!r} (the run's config.data.path_column); the header has "
            f"{table.header}; pass --path-column=<the column of file paths>"
        )
    at, root = table.header.index(column), os.path.dirname(os.path.abspath(path))
    entries = []
    for number, cells in table.rows:
        raw = cells[at].strip() if at < len(cells) else ""
        where = f"{path} row {number}"
        if not raw:
            raise DataError(f"{where}: empty {column!r} cell; fill it in or delete the row")
        entries.append(files.Entry(os.path.join(root, raw), raw, -1, where=where))
    return entries


def gather(inputs: list[str], path_column: str) -> list[files.Entry]:
    """One entry per file, in the order given (folders sorted); label -1 (unknown)."""
    entries = []
    for item in inputs:
        if item.lower().endswith(".csv") and os.path.isfile(item):
            entries += _in_csv(item, path_column)
        elif os.path.isdir(item):
            found = _in_folder(item)
            if not found:
                raise DataError(
                    f"{item}: no PNG, JPEG, BMP, TIFF, DICOM or NIfTI files in this folder or "
                    f"below it; pass the folder that holds the images"
                )
            entries += [files.Entry(p, p, -1) for p in found]
        elif os.path.isfile(item):
            entries.append(files.Entry(item, item, -1))
        else:
            raise DataError(f"--input {item} does not exist; pass image files, folders or a .csv")
    return entries


def _takes(run) -> str:
    size, shape = run.config.data.image_size, run.image_shape
    what = f"{shape[-1]}-channel "
    if len(shape) == 4:
        return what + f"volumes (resampled to {shape[0]}x{size}x{size}): NIfTI or multi-frame DICOM"
    slices = " or NIfTI volumes (cut into slices)" if run.config.data.slice_axis >= 0 else ""
    return what + f"2D images (resized to {size}x{size}){slices}"


def _for_prediction(message: str, run) -> str:
    """A decoding error whose fix is a training setting, with the fix for prediction."""
    if not any(key in message for key in TRAINING_ADVICE):
        return message
    return (
        f"{message.split('; ')[0]}; the model of {run.workdir} takes {_takes(run)}, so pass "
        f"such files instead (a trained model's config.data cannot change)"
    )


def decode_config(run, on_error: str) -> ml_collections.ConfigDict:
    """The run's config.data with `on_error` ("raise" or "skip") for these files."""
    data = ml_collections.ConfigDict(run.config.data.to_dict())
    data.on_error = on_error
    return data


def reader(run):
    """(path, cfg) -> Decoded: the file's reader, its errors worded for prediction, and every
    image checked against the model's input shape."""

    def read(path: str, cfg) -> Decoded:
        try:
            decoded = files.reader_for(path)(path, cfg)
        except DataError as e:
            raise DataError(_for_prediction(str(e), run)) from None
        for image in decoded.images:
            if image.shape != tuple(run.image_shape):
                raise DataError(
                    f"{path}: decodes to shape {image.shape}, but the model of {run.workdir} "
                    f"takes {tuple(run.image_shape)}, {_takes(run)}"
                )
        return decoded

    return read


@dataclasses.dataclass
class Images:
    """Decoded images of some files, with the file and frame (or slice) each came from."""

    images: list[np.ndarray]
    names: list[str]  # the path as the user gave it, or as found in a folder or .csv
    frames: list[int]  # index within its file: 0 unless a file holds several images


def decode(entries: list[files.Entry], cfg, read) -> tuple[Images, int]:
    """The readable files' images, and how many files were skipped (cfg.on_error="skip")."""
    pairs, skipped = files.read_all(entries, cfg, read)
    out = Images([], [], [])
    for entry, decoded in pairs:
        for frame, image in enumerate(decoded.images):
            out.images.append(image)
            out.names.append(entry.name)
            out.frames.append(frame)
    return out, skipped
