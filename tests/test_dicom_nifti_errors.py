"""DICOM and NIfTI headers that used to give a traceback, a misleading message or a silent
wrong load: each names the file and the problem."""

import warnings

import nibabel
import numpy as np
import pydicom
import pytest

from medjax.errors import DataError

from .test_sources_dicom_nifti import STORED, write_dicom
from .test_sources_files import load


def raw_tag(path, tag, vr, value):
    ds = pydicom.dcmread(path)
    ds.add(pydicom.DataElement(tag, vr, value))  # written as given, not validated
    ds.save_as(path)


@pytest.mark.parametrize("tag, keyword", [(0x00280008, "NumberOfFrames"), (0x00281051, None)])
def test_a_non_numeric_dicom_tag_names_the_file_and_tag(tmp_path, tag, keyword):
    write_dicom(tmp_path / "a" / "x.dcm", STORED)
    bad = write_dicom(tmp_path / "b" / "y.dcm", STORED, WindowCenter=40)
    raw_tag(bad, tag, "LO", "abc")
    keyword = keyword or "WindowWidth"
    with pytest.raises(DataError, match=f"b/y.dcm: DICOM tag {keyword} is 'abc', not a number"):
        load("dicom", tmp_path)


def test_a_dicom_header_claiming_more_pixels_than_it_holds(tmp_path):
    write_dicom(tmp_path / "a" / "x.dcm", STORED)
    write_dicom(tmp_path / "b" / "y.dcm", STORED, Rows=4000, Columns=4000)
    with pytest.raises(
        DataError, match=r"y.dcm: the header claims 1 frame\(s\) of 4000x4000 pixels \(32,000,000"
    ):
        load("dicom", tmp_path)


def nifti(path, data, dtype=np.float32):
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(data, dtype), np.eye(4)), path)
    return path


@pytest.mark.parametrize(
    "data, dtype, message",
    [
        (np.ones((0, 8, 4)), np.float32, r"an empty NIfTI of shape \(0, 8, 4\)"),
        (np.ones((8, 8, 4)), np.complex64, "complex-valued voxels"),
    ],
)
def test_nifti_files_that_used_to_load_silently(tmp_path, data, dtype, message):
    nifti(tmp_path / "a" / "x.nii", np.ones((8, 8, 4)))
    nifti(tmp_path / "b" / "y.nii", data, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        with pytest.raises(DataError, match=f"b/y.nii: {message}"):
            load("nifti", tmp_path, depth=4)
