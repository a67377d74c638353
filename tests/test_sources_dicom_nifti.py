"""DICOM and NIfTI sources: exact pixel arithmetic, frames and slices, groups, bad files."""

import os

import nibabel
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medjax.data.files import SkippedFileWarning
from medjax.errors import DataError

from .test_sources_files import load

STORED = (np.arange(64).reshape(8, 8) * 50).astype(np.uint16)  # 0..3150, 12 bits


def write_dicom(path, pixels, photometric="MONOCHROME2", bits=12, **tags):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.set_pixel_data(pixels, photometric, bits)  # multi-frame when pixels is (F, H, W)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_folder(root, **tags):
    """Two classes of one CT each (slope 2, intercept -1024), plus their patient ids."""
    for i, cls in enumerate(("healthy", "nodule")):
        write_dicom(
            root / cls / f"{i}.dcm",
            STORED,
            RescaleSlope=2,
            RescaleIntercept=-1024,
            PatientID=f"P{i}",
            Modality="CT",
            **tags,
        )


def test_dicom_rescale_is_exact_without_a_window(tmp_path):
    ct_folder(tmp_path)
    ds = load("dicom", tmp_path, dicom_window="none")
    split = ds.splits["all"]
    assert split.images.dtype == np.float32 and split.images.shape == (2, 8, 8, 1)
    np.testing.assert_array_equal(split.images[0, ..., 0], STORED * 2.0 - 1024)
    np.testing.assert_array_equal(split.groups, ["P0", "P1"])
    assert ds.class_names == ["healthy", "nodule"] and ds.modality == "ct"


def test_dicom_window_from_the_file_first_of_several_or_from_the_config(tmp_path):
    ct_folder(tmp_path, WindowCenter=[40, 500], WindowWidth=[400, 2000])
    hu = STORED * 2.0 - 1024

    def windowed(center, width):
        return (np.clip((hu - (center - width / 2)) / width, 0, 1) * 255).astype(np.float32)

    from_file = load("dicom", tmp_path).splits["all"].images[0, ..., 0]
    np.testing.assert_allclose(from_file, windowed(40, 400), atol=1e-4)
    assert from_file.min() == 0 and from_file.max() == 255
    from_config = load("dicom", tmp_path, dicom_window="-600,1500").splits["all"].images
    np.testing.assert_allclose(from_config[0, ..., 0], windowed(-600, 1500), atol=1e-4)


def test_dicom_monochrome1_is_inverted_exactly(tmp_path):
    stored = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    for cls in ("a", "b"):
        write_dicom(tmp_path / cls / "x.dcm", stored, "MONOCHROME1", 8, Modality="CR")
    raw = load("dicom", tmp_path, dicom_window="none")
    np.testing.assert_array_equal(raw.splits["all"].images[0, ..., 0], 255.0 - stored)
    assert raw.modality == "xray"
    windowed = load("dicom", tmp_path, dicom_window="127.5,255").splits["all"].images
    np.testing.assert_allclose(windowed[0, ..., 0], 255.0 - stored, atol=1e-4)


def test_dicom_multiframe_extensionless_files_and_patient_ids(tmp_path):
    frames = np.stack([STORED, STORED + 1, STORED + 2])
    write_dicom(tmp_path / "a" / "pat1" / "1.2.840.10008.1", frames, PatientID="anon7")
    write_dicom(tmp_path / "b" / "IM0001", STORED)  # no extension, no PatientID
    (tmp_path / "b" / "README").write_text("not DICOM: ignored")
    split = load("dicom", tmp_path, dicom_window="none").splits["all"]
    np.testing.assert_array_equal(split.images[:3, 0, 0, 0], [0, 1, 2])
    np.testing.assert_array_equal(split.labels, [0, 0, 0, 1])
    np.testing.assert_array_equal(split.groups, ["anon7"] * 3 + ["b/IM0001"])
    write_dicom(tmp_path / "volumes" / "a" / "x.dcm", frames)
    write_dicom(tmp_path / "volumes" / "b" / "y.dcm", frames[:2])
    volumes = load("dicom", tmp_path / "volumes", depth=3, dicom_window="none")
    assert volumes.splits["all"].images.shape == (2, 3, 8, 8, 1)
    np.testing.assert_array_equal(volumes.splits["all"].images[0, :, 0, 0, 0], [0, 1, 2])
    with pytest.raises(DataError, match="IM0001: a single-frame DICOM, but config.data.depth"):
        load("dicom", tmp_path, depth=3)


def test_unreadable_dicom_fails_naming_the_file_or_is_skipped(tmp_path):
    ct_folder(tmp_path)
    (tmp_path / "nodule" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"junk" * 9)
    with pytest.raises(DataError, match="nodule/broken.dcm: .*(DICOM|pixel data)"):
        load("dicom", tmp_path)
    with pytest.warns(SkippedFileWarning) as caught:
        assert len(load("dicom", tmp_path, on_error="skip").splits["all"]) == 2
    assert "broken.dcm: not a DICOM image" in str(caught[0].message)
    assert "skipped 1 of 3 files" in str(caught[1].message)


def test_manifest_mixes_png_dicom_and_nifti(tmp_path):
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(tmp_path / "x.png")
    write_dicom(tmp_path / "scan", STORED, PatientID="P9")
    nibabel.save(
        nibabel.Nifti1Image(np.full((8, 8), 3.5, np.float32), np.eye(4)), tmp_path / "m.nii"
    )
    (tmp_path / "labels.csv").write_text("path,label\nx.png,a\nscan,b\nm.nii,a\n")
    split = load("csv", tmp_path / "labels.csv", dicom_window="none").splits["all"]
    assert split.images.dtype == np.float32
    np.testing.assert_array_equal(split.images[:, 0, 0, 0], [100, 0, 3.5])
    np.testing.assert_array_equal(split.groups, ["x.png", "P9", "m.nii"])


def nifti(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(data, np.float32), np.eye(4)), path)
    return path


def brain_folder(root, shape=(8, 8, 4)):
    volume = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    nifti(root / "control" / "s1.nii.gz", volume)
    nifti(root / "control" / "s2.nii", volume + 1)
    nifti(root / "patient" / "s3.nii.gz", volume + 2)
    return volume


def test_nifti_volumes_exact_at_their_size_and_resampled_otherwise(tmp_path):
    volume = brain_folder(tmp_path)
    ds = load("nifti", tmp_path, depth=4)
    images = ds.splits["all"].images
    assert images.shape == (3, 4, 8, 8, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(images[1, ..., 0], np.moveaxis(volume, 2, 0) + 1)
    np.testing.assert_array_equal(ds.splits["all"].labels, [0, 0, 1])
    small = load("nifti", tmp_path, depth=2, image_size=4).splits["all"].images
    assert small.shape == (3, 2, 4, 4, 1)
    # trilinear, antialiased: a linear ramp stays linear, its mean unchanged
    np.testing.assert_allclose(small[0].mean(), volume.mean(), rtol=1e-5)
    nifti(tmp_path / "patient" / "s4.nii.gz", np.ones((8, 8, 4)))
    constant = load("nifti", tmp_path, depth=6, image_size=12).splits["all"].images
    np.testing.assert_allclose(constant[-1], 1.0, rtol=1e-6)


def test_nifti_slices_keep_their_volume_as_group(tmp_path):
    volume = brain_folder(tmp_path)
    split = load("nifti", tmp_path, slice_axis=2).splits["all"]
    assert split.images.shape == (12, 8, 8, 1)
    np.testing.assert_array_equal(split.images[5, ..., 0], volume[:, :, 1] + 1)
    np.testing.assert_array_equal(split.labels, [0] * 8 + [1] * 4)
    assert (
        list(split.groups)
        == ["control/s1.nii.gz"] * 4 + ["control/s2.nii"] * 4 + ["patient/s3.nii.gz"] * 4
    )
    along_0 = load("nifti", tmp_path, slice_axis=0).splits["all"]
    assert along_0.images.shape == (24, 8, 8, 1)  # 8 x 4 slices padded to square, resized


def test_nifti_dimension_errors(tmp_path):
    brain_folder(tmp_path)
    with pytest.raises(DataError, match="s1.nii.gz: a 3D volume .* where 2D images were expected"):
        load("nifti", tmp_path)
    nifti(tmp_path / "patient" / "fmri.nii.gz", np.zeros((8, 8, 4, 3)))
    with pytest.raises(DataError, match="fmri.nii.gz: a 4D NIfTI"):
        load("nifti", tmp_path, depth=4)
    (tmp_path / "patient" / "fmri.nii.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DataError, match="fmri.nii.gz: unreadable NIfTI"):
        load("nifti", tmp_path, depth=4)
    with pytest.raises(DataError, match="volume of 256 voxels exceeds config.data.max_pixels"):
        load("nifti", tmp_path, depth=4, max_pixels=255)
