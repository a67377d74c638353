"""Folders of PNG, JPEG, BMP and TIFF images, one folder per class (the Kaggle layout).

`root/<class>/*` (medjax makes the splits) or `root/<split>/<class>/*` (official splits, folders
named train, val, test or training, valid, validation, testing in any case). 8- and 16-bit
images of any size and mode are decoded as `medjax.data.decode` describes. A .csv path in
config.data.path reads a manifest instead (see `medjax.data.manifest`).
"""

from medjax.data.decode import is_image_file, read_image
from medjax.data.manifest import register_folder_source

register_folder_source("image_folder", is_image_file, "image", read_image)
