"""NaN or inf in raw data is blamed on the data, by file (or array) and image index, in every
source, and config.data.on_error="skip" leaves such files out."""

import warnings

import nibabel
import numpy as np
import pytest
from PIL import Image

from medjax.data import load_dataset
from medjax.data.files import SkippedFileWarning
from medjax.errors import DataError

from .test_data_bounds import good_arrays, medmnist_config
from .test_sources_dicom_nifti import STORED, write_dicom
from .test_sources_files import grey, load, save


def nan_tiff(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.ones((8, 8), np.float32)
    values[3, 4] = np.nan
    Image.fromarray(values).save(path)


def test_a_nan_pixel_in_an_image_file_names_the_file_or_is_skipped(tmp_path):
    save(tmp_path / "a" / "ok.png", grey(1))
    save(tmp_path / "b" / "ok.png", grey(2))
    nan_tiff(tmp_path / "b" / "bad.tif")
    with pytest.raises(DataError, match="b/bad.tif: NaN or infinite pixel values; the data is"):
        load("image_folder", tmp_path)
    with pytest.warns(SkippedFileWarning) as caught:
        ds = load("image_folder", tmp_path, on_error="skip")
    assert "bad.tif: NaN" in str(caught[0].message) and len(ds.splits["all"]) == 2


def test_an_infinite_voxel_in_a_nifti_slice_names_the_file_and_slice(tmp_path):
    volume = np.ones((8, 8, 4), np.float32)
    volume[1, 1, 2] = np.inf
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / cls / "v.nii")
    with pytest.raises(DataError, match=r"a/v.nii: .*\(in 1 of its 4 frames or slices, the first"):
        load("nifti", tmp_path, slice_axis=2)


def test_a_nan_rescale_slope_in_a_dicom_names_the_file(tmp_path):
    write_dicom(tmp_path / "a" / "ok.dcm", STORED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom: 'NaN' is not a valid DS
        write_dicom(tmp_path / "b" / "nan.dcm", STORED, RescaleSlope="NaN")
        with pytest.raises(DataError, match="b/nan.dcm: NaN or infinite pixel values"):
            load("dicom", tmp_path, dicom_window="none")


def test_a_nan_pixel_in_a_float_npz_names_the_array_and_image(tmp_path):
    arrays = good_arrays()
    arrays["val_images"] = arrays["val_images"].astype(np.float32)
    arrays["val_images"][2, 5, 5] = np.nan
    arrays["val_images"][3, 0, 0] = -np.inf
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(
        DataError,
        match=r"nan.npz: val_images: 2 of 4 images hold NaN .* first at index 2; the data",
    ):
        load_dataset(medmnist_config(tmp_path / "nan.npz"))
