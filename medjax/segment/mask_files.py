"""Lesion masks of the file sources (image_folder, csv): `<name>_mask.png` beside each image,
or the file a manifest's config.data.mask_column names. A mask is any image of its image's
size; nonzero pixels are lesion. It is fitted to config.data.image_size exactly as its image
(pad or stretch, medjax.data.decode.fit_image) and split exactly as its image (same labels,
patients and seeds through medjax.data.splits.assign)."""

import os

import numpy as np
from PIL import Image

from medjax.data import files, manifest, splits
from medjax.data.csv_rows import read_table
from medjax.data.decode import fit_image, image_to_array, is_image_file, open_image
from medjax.data.image_folder import is_class_image, mask_path
from medjax.data.loading import limit
from medjax.data.source import Dataset, Split
from medjax.errors import DataError


def entries_and_masks(cfg) -> tuple[list[files.Entry], list[str], list[str]]:
    """(image entries, class names, each entry's mask path), in the source's order."""
    if manifest.is_manifest(cfg.path):
        entries, names = manifest.parse(cfg)
        if not cfg.mask_column:
            return entries, names, [mask_path(e.path) for e in entries]
        table = read_table(cfg.path)
        if cfg.mask_column not in table.header:
            raise DataError(
                f"{cfg.path}: no column {cfg.mask_column!r} (config.data.mask_column); the header "
                f"has {table.header}; set it to the mask column, or '' for <name>_mask.png files"
            )
        column = table.header.index(cfg.mask_column)
        root = os.path.realpath(os.path.dirname(os.path.abspath(cfg.path)))
        masks = []
        for number, cells in table.rows:  # one entry per row, in order (manifest.parse)
            where = f"{cfg.path} row {number}"
            raw = cells[column].strip() if column < len(cells) else ""
            if not raw:
                raise DataError(f"{where}: empty {cfg.mask_column!r} cell; name the mask file")
            masks.append(manifest._resolve(raw, root, where))
        return entries, names, masks
    entries, names = files.scan_folders(cfg.path, is_class_image, "image")
    return entries, names, [mask_path(e.path) for e in entries]


def read_mask(path: str, image: str, cfg) -> np.ndarray:
    """The mask at `path` of the image at `image`, bool (image_size, image_size)."""
    if not os.path.isfile(path):
        raise DataError(
            f"{image}: no mask {path}; put a <name>_mask.png beside each image, or name the "
            f"masks in a manifest column (config.data.mask_column)"
        )
    if not is_image_file(image):
        raise DataError(f"{image}: masks are read for PNG, JPEG, BMP and TIFF images only")
    array = image_to_array(open_image(path, cfg.max_pixels), path)
    with Image.open(image) as im:
        width, height = im.size
    if array.shape[:2] != (height, width):
        raise DataError(
            f"{path}: the mask is {array.shape[1]}x{array.shape[0]} pixels but its image "
            f"{image} is {width}x{height}; a mask must have its image's size"
        )
    lesion = (array.max(-1) > 0).astype(np.float32)[..., None]
    return fit_image(lesion, cfg.image_size, cfg.fit)[..., 0] >= 0.5


def file_masks(cfg) -> dict[str, np.ndarray]:
    """Masks bool (N, H, W) per split, aligned with load_dataset(cfg)'s images (which, with
    config.data.on_error='raise', keeps every entry in order)."""
    entries, names, paths = entries_and_masks(cfg)
    masks = np.stack([read_mask(p, e.path, cfg) for e, p in zip(entries, paths, strict=True)])
    labels = np.array([e.label for e in entries], np.int32)
    # the groups medjax.data.files.build_dataset gives 2D images, so the splits agree
    groups = None
    if any(e.patient is not None for e in entries):
        groups = np.array([e.patient if e.patient is not None else e.name for e in entries])
    by_split = {}
    for split in dict.fromkeys(e.split for e in entries):
        keep = np.array([e.split == split for e in entries])
        by_split[split] = Split(masks[keep], labels[keep], None if groups is None else groups[keep])
    dataset = Dataset("masks", by_split, len(names), list(names), origin=cfg.path)
    return {n: s.images for n, s in limit(splits.assign(dataset, cfg), cfg).splits.items()}
