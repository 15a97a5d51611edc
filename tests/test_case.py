"""Cases: every bad input is a CaseError naming the file and the fix."""

import numpy as np
import pytest
import SimpleITK as sitk

from deepradiomics import Extractor
from deepradiomics.case import Case, read_image
from deepradiomics.errors import CaseError

FIRSTORDER = {"featureClass": {"firstorder": ["Mean", "Maximum"]}}


def save(array, path, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    if image.GetDimension() == 3:
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(1)
    image = save(rng.normal(100, 10, (12, 16, 16)).astype(np.float32), tmp_path / "image.nii.gz")
    mask_array = np.zeros((12, 16, 16), np.uint8)
    mask_array[4:8, 5:11, 5:11] = 1
    mask = save(mask_array, tmp_path / "mask.nii.gz")
    return tmp_path, image, mask


def test_good_case_reads_and_checks(volume):
    _, image, mask = volume
    case = Case({"Image": image}, mask)
    assert case.array().shape == (12, 16, 16)
    assert case.mask_array().sum() == 4 * 6 * 6


def test_missing_file(volume):
    folder, _, mask = volume
    with pytest.raises(CaseError, match=r"nope\.nii\.gz' does not exist"):
        Case({"Image": folder / "nope.nii.gz"}, mask).image()


def test_unreadable_file(volume):
    folder, _, mask = volume
    bad = folder / "garbage.nii.gz"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(CaseError, match="cannot read .*garbage"):
        Case({"Image": bad}, mask).image()


def test_geometry_mismatch_names_both_files(volume):
    folder, _, mask = volume
    shifted = save(np.zeros((12, 16, 16), np.float32), folder / "shifted.nii.gz", origin=(5.0, 0.0, 0.0))
    with pytest.raises(CaseError, match="shifted.nii.gz.*mask.nii.gz.*origin.*resample"):
        Case({"Image": shifted}, mask).image()
    other_size = save(np.zeros((12, 16, 17), np.float32), folder / "bigger.nii.gz")
    with pytest.raises(CaseError, match="size"):
        Case({"Image": other_size}, mask).image()


def test_empty_mask_and_missing_label(volume):
    folder, image, _ = volume
    empty = save(np.zeros((12, 16, 16), np.uint8), folder / "empty.nii.gz")
    with pytest.raises(CaseError, match="empty.nii.gz.*no voxel with label 1.*the mask is empty"):
        Case({"Image": image}, empty).mask_image()
    two = np.zeros((12, 16, 16), np.uint8)
    two[2:5, 2:5, 2:5] = 2
    labelled = save(two, folder / "labels.nii.gz")
    with pytest.raises(CaseError, match=r"label 1 .*values present: \[0, 2\].*--label"):
        Case({"Image": image}, labelled).mask_image()
    assert Case({"Image": image}, labelled, label=2).mask_array().sum() == 27


def test_nan_voxels(volume):
    folder, _, mask = volume
    array = np.ones((12, 16, 16), np.float32)
    array[0, 0, :3] = np.nan
    path = save(array, folder / "nan.nrrd")  # (SimpleITK's NIfTI writer replaces NaN by 0)
    with pytest.raises(CaseError, match="nan.nrrd' has 3 NaN or infinite voxels"):
        Case({"Image": path}, mask).image()


def test_2d_4d_and_vector_images(volume):
    folder, _, mask = volume
    flat = save(np.zeros((16, 16), np.float32), folder / "flat.nii.gz")
    with pytest.raises(CaseError, match="flat.nii.gz' is 2D.*3D volume is expected"):
        read_image(flat)
    four = save(np.zeros((2, 12, 16, 16), np.float32), folder / "four.nii.gz")
    with pytest.raises(CaseError, match="four.nii.gz.*(4D|components)"):
        read_image(four)
    rgb = sitk.GetImageFromArray(np.zeros((12, 16, 16, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(folder / "rgb.nrrd"))
    with pytest.raises(CaseError, match="rgb.nrrd' has 3 components"):
        read_image(folder / "rgb.nrrd")


def test_missing_modality_says_how_to_add_it(volume):
    _, image, mask = volume
    with pytest.raises(CaseError, match="no modality 't1'.*-m t1=PATH.*Image_t1"):
        Case({"Image": image}, mask).image("t1")


def write_dicom_series(array, folder, spacing=(0.8, 0.8, 2.5)):
    """Write a (z, y, x) int16 volume as a DICOM series, one file per slice, as a scanner would."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.1"
    for z in range(array.shape[0]):
        slice_image = sitk.GetImageFromArray(array[z : z + 1].astype(np.int16))[:, :, 0]
        slice_image.SetSpacing(spacing[:2])
        tags = {
            "0020|000e": series_uid,
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.2",
            "0008|0060": "MR",
            "0020|0032": f"0\\0\\{z * spacing[2]}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(z + 1),
            "0028|0030": f"{spacing[0]}\\{spacing[1]}",
            "0018|0050": str(spacing[2]),
            "0008|0018": f"1.2.826.0.1.3680043.2.1125.1.3.{z + 1}",
        }
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(slice_image)
    return folder


def test_dicom_series_folder_as_image(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 1000, (10, 20, 24)).astype(np.int16)
    folder = write_dicom_series(array, tmp_path / "series")
    image = read_image(folder)
    assert image.GetSize() == (24, 20, 10)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.8, 2.5), rtol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)

    mask_array = np.zeros(array.shape, np.uint8)
    mask_array[3:7, 5:15, 5:15] = 1
    mask = sitk.GetImageFromArray(mask_array)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
    row = Extractor(FIRSTORDER).execute(folder, tmp_path / "mask.nrrd")
    assert row["original_firstorder_Maximum"] == array[mask_array == 1].max()

    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CaseError, match="holds no DICOM series"):
        read_image(tmp_path / "empty_dir")
