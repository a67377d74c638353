"""Folders of PNG, JPEG, BMP and TIFF images, one folder per class (the Kaggle layout).

`root/<class>/*` (medjax makes the splits) or `root/<split>/<class>/*` (official splits, folders
named train, val, test or training, valid, validation, testing in any case). 8- and 16-bit
images of any size and mode are decoded as `medjax.data.decode` describes. A .csv path in
config.data.path reads a manifest instead (see `medjax.data.manifest`). A file named
`<name>_mask.<ext>` is the segmentation mask of `<name>.<ext>` beside it (medjax.segment), not
an image of the class.
"""

import os

from medjax.data.decode import is_image_file, read_image
from medjax.data.manifest import register_folder_source

MASK_SUFFIX = "_mask"


def is_mask_file(path: str) -> bool:
    return os.path.splitext(path)[0].endswith(MASK_SUFFIX)


def mask_path(image_path: str) -> str:
    """Where the mask of an image lies: `<name>_mask.png` beside `<name>.<ext>`."""
    return os.path.splitext(image_path)[0] + MASK_SUFFIX + ".png"


def is_class_image(path: str) -> bool:
    return is_image_file(path) and not is_mask_file(path)


register_folder_source("image_folder", is_class_image, "image", read_image)
