"""Ground-truth masks aligned with the configured dataset's splits.

The design keeps masks out of the image pipeline and its cache: a mask loader rebuilds, for
the sources that have masks, a dataset whose "images" are the masks, with the same labels and
patient groups in the same order, and passes it through the same split assignment and size
limits (which look only at labels, groups and seeds), so mask i of a split belongs to image i.
The masks then go through the spatial ops of config.data.preprocess (resize, pad, crop) and
never through its intensity ops.
"""

import numpy as np

from medjax.data.pipeline import preprocess_split
from medjax.data.source import Split
from medjax.errors import ConfigError, DataError
from medjax.ops import build_preprocess
from medjax.ops.pipeline import op_name

SOURCES_WITH_MASKS = ("phantom", "image_folder", "csv")
# config.data.preprocess ops that move pixels (medjax.ops.geometry): masks follow them
SPATIAL_OPS = ("resize", "resize_short_side", "pad_to_square", "center_crop", "crop_or_pad")


def check_source(data_config) -> None:
    """ConfigError before any data is read when the source cannot give masks."""
    if data_config.source not in SOURCES_WITH_MASKS:
        raise ConfigError(
            f"config.segment.model needs lesion masks, and data source {data_config.source!r} "
            f"has none; use source phantom (generated masks), or image_folder / csv with a "
            f"<image name>_mask.png beside each image or a mask column named by "
            f"config.data.mask_column, or set config.segment.model='' for no segmentation prior"
        )
    if data_config.source != "phantom" and data_config.on_error != "raise":
        raise ConfigError(
            "config.segment.model with file masks needs config.data.on_error='raise': a "
            "skipped image would shift every mask after it onto the wrong image"
        )


def load_masks(data_config) -> dict[str, np.ndarray]:
    """Masks bool (N, H, W) per split, in the order of `load_dataset(data_config)`'s images,
    after the spatial preprocessing ops."""
    check_source(data_config)
    if data_config.source == "phantom":
        from medjax.data.phantom import phantom_masks

        raw = phantom_masks(data_config)
    else:
        from medjax.segment.mask_files import file_masks

        raw = file_masks(data_config)
    return spatially_preprocessed(raw, data_config.preprocess)


def spatially_preprocessed(masks: dict, specs) -> dict[str, np.ndarray]:
    """`masks` through the spatial ops of `specs` alone, as float, then thresholded at 1/2."""
    spatial = [s for s in specs if op_name(s) in SPATIAL_OPS]
    if not spatial:
        return {name: m.astype(bool) for name, m in masks.items()}
    fn, _ = build_preprocess(spatial).fit(None)
    out = {}
    for name, m in masks.items():
        split = Split(m[..., None].astype(np.float32), np.zeros(len(m), np.int32))
        out[name] = preprocess_split(split, fn).images[..., 0] >= 0.5
    return out


def check_aligned(images: dict, masks: dict, origin: str) -> None:
    """DataError when a split's masks do not match its images in number or size."""
    for name, split in images.items():
        m = masks.get(name)
        if m is None or m.shape != split.images.shape[:3]:
            got = None if m is None else m.shape
            raise DataError(
                f"{origin}: the {name!r} split has images {split.images.shape[:3]} but masks "
                f"{got}; masks must have their images' size and number"
            )
