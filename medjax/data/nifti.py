"""NIfTI files (.nii, .nii.gz; nibabel) as 3D volumes or as 2D slices.

Values are the file's, after its own scl_slope/scl_inter scaling, as float32 (scanner units for
MRI, usually HU for CT): preprocess with `minmax()` or `normalize(...)`. Axes are the array's
(i, j, k) in file order; volumes are not reoriented, so keep a dataset's files in one
orientation.
- config.data.depth > 0: each file is one volume; k becomes the depth and (i, j) the slice
  plane, resampled trilinearly (antialiased when shrinking) to (depth, image_size, image_size);
  fit="pad" squares the slices before resampling, keeping their aspect.
- config.data.slice_axis in 0..2: every slice along that axis is one 2D image, empty ones
  included (no silent change of the count per volume), all with the volume's label; the slices
  of a volume share its patient (the manifest's column, else the file) so no split separates
  them.
- otherwise files must be 2D (i, j) or (i, j, 1); a 3D file is an error naming both settings.
A 4D file (a time series, several echoes) is an error: extract one volume first.
"""

import os

import nibabel
import numpy as np

from medjax.data import files
from medjax.data.decode import Decoded, check_pixels, fit_image, fit_volume
from medjax.data.manifest import register_folder_source
from medjax.data.source import to_channels
from medjax.errors import DataError


def is_nifti_file(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def _check_contents(image, shape: tuple[int, ...], path: str) -> None:
    """Refuse empty, complex and (uncompressed) truncated files before reading the voxels; a
    .nii.gz is read only up to the size its header claims, which max_pixels bounds."""
    if 0 in shape:
        raise DataError(f"{path}: an empty NIfTI of shape {shape}; re-export or remove it")
    dtype = image.header.get_data_dtype()
    if dtype.kind == "c":
        raise DataError(
            f"{path}: complex-valued voxels ({dtype}); medjax reads real images, so save the "
            f"magnitude (np.abs) or the real part as its own file"
        )
    if path.lower().endswith(".nii"):
        offset = int(image.dataobj.offset)
        claimed = offset + int(np.prod(shape)) * dtype.itemsize
        size = os.path.getsize(path)
        if claimed > size:
            raise DataError(
                f"{path}: its header claims {shape} voxels of {dtype} ({claimed:,} bytes with "
                f"the header) but the file holds {size:,} bytes; it is truncated: re-export it"
            )


def _load(path: str, max_pixels: int) -> np.ndarray:
    """The voxel array, refusing 4D files and oversized ones before reading the data."""
    try:
        image = nibabel.load(path)
        shape = tuple(int(n) for n in image.shape)
    except Exception as e:  # nibabel and gzip raise many types on malformed files
        raise DataError(f"{path}: unreadable NIfTI ({type(e).__name__}: {e})") from None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3 or len(shape) < 2:
        raise DataError(
            f"{path}: a {len(shape)}D NIfTI of shape {shape}; medjax reads 2D images and 3D "
            f"volumes, so extract one 3D volume first (e.g. fslroi, or nibabel's slicer)"
        )
    check_pixels(path, int(np.prod(shape)), max_pixels, "volume", "voxels")
    _check_contents(image, shape, path)
    try:
        return np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as e:  # truncated gzip streams, short files, bad scaling values
        raise DataError(f"{path}: truncated or corrupt NIfTI data ({e})") from None


def read_nifti(path: str, cfg) -> Decoded:
    data = _load(path, cfg.max_pixels)
    if cfg.depth > 0:
        if data.ndim != 3:
            raise DataError(
                f"{path}: a 2D NIfTI of shape {data.shape}, but config.data.depth={cfg.depth} "
                f"asks for volumes; set --config.data.depth=0"
            )
        volume = fit_volume(np.moveaxis(data, 2, 0), cfg.depth, cfg.image_size, cfg.fit)
        return Decoded([to_channels(volume[..., None], cfg.channels, path)])
    if cfg.slice_axis >= 0 and data.ndim == 3:
        slices = np.moveaxis(data, cfg.slice_axis, 0)
    elif data.ndim == 2 or data.shape[2] == 1:
        slices = data.reshape(1, *data.shape[:2])
    else:
        raise DataError(
            f"{path}: a 3D volume of shape {data.shape} where 2D images were expected; set "
            f"--config.data.depth=<slices> to train on volumes, or --config.data.slice_axis=2 "
            f"(or 0, 1) to train on its 2D slices"
        )
    slices = to_channels(slices, cfg.channels, path)
    return Decoded([fit_image(s, cfg.image_size, cfg.fit) for s in slices])


files.register_reader(is_nifti_file, read_nifti)


register_folder_source("nifti", is_nifti_file, "NIfTI", read_nifti)
