"""Folders of PNG, JPEG, BMP and TIFF images, one folder per class (the Kaggle layout).

`root/<class>/*` (medjax makes the splits) or `root/<split>/<class>/*` (official splits, folders
named train, val, test or training, valid, validation, testing in any case). 8- and 16-bit
images of any size and mode are decoded as `medjax.data.decode` describes. A .csv path in
config.data.path reads a manifest instead (see `medjax.data.manifest`).
"""

from medjax.data import files
from medjax.data.decode import is_image_file, read_image
from medjax.data.manifest import is_manifest, list_manifest, load_manifest
from medjax.data.source import SOURCE_FILES, SOURCES, Dataset


@SOURCES.register("image_folder")
def image_folder(cfg) -> Dataset:
    if is_manifest(cfg.path):
        return load_manifest(cfg)
    entries, class_names = files.scan_folders(cfg.path, is_image_file, "image")
    return files.load(entries, class_names, cfg, origin=cfg.path, reader=read_image)


@SOURCE_FILES.register("image_folder")
def image_folder_files(cfg) -> list[str]:
    if is_manifest(cfg.path):
        return list_manifest(cfg)
    return [e.path for e in files.scan_folders(cfg.path, is_image_file, "image")[0]]
