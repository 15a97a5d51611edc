"""Voxel-based feature maps: PyRadiomics' own maps, bit for bit, for any number of worker processes.

Parity is checked against PyRadiomics' ``execute(..., voxelBased=True)`` on small real ROIs: a
208-voxel part of brain1 (every texture class, voxel batches of 40 so that ``jobs=2`` splits each class,
and a ROI where GLCM ``MCC`` fails on some batches and not on others), and breast1 (a vector mask with
``label_channel``, resampling, an unmasked kernel of radius 2, a LoG image, one batch per class).
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict

import numpy as np
import pytest

from tests.conftest import require_data
from tests.test_compat import _roi_stats_class, assert_same_result

pytestmark = pytest.mark.usefixtures("quiet_pyradiomics")
PYRADIOMICS_LOG_LEVEL = logging.CRITICAL  # PyRadiomics logs every failed MCC batch as an error


@pytest.fixture(scope="module")
def brain1_part():
    """brain1's image and a 3-slice, 208-voxel part of its ROI (a few seconds of voxel extraction)."""
    import SimpleITK as sitk

    folder = require_data("pyradiomics")
    image = sitk.ReadImage(str(folder / "brain1_image.nrrd"))
    mask = sitk.ReadImage(str(folder / "brain1_label.nrrd"))
    labels = sitk.GetArrayFromImage(mask)
    z, y, x = (int(np.median(axis)) for axis in np.nonzero(labels == 1))
    part = np.zeros_like(labels)
    box = (slice(z - 1, z + 2), slice(y - 5, y + 5), slice(x - 5, x + 5))
    part[box] = labels[box]
    part_mask = sitk.GetImageFromArray(part)
    part_mask.CopyInformation(mask)
    assert int((part == 1).sum()) == 208
    return image, part_mask


def test_maps_match_pyradiomics_bit_for_bit_for_any_jobs(brain1_part):
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxel import compute_voxel_features

    image, mask = brain1_part
    params = {"setting": {"binWidth": 25}, "voxelSetting": {"kernelRadius": 1, "voxelBatch": 40, "initValue": float("nan")}}
    extractor = RadiomicsFeatureExtractor(params)
    expected = extractor.execute(image, mask, voxelBased=True)
    assert sum(isinstance(v, sitk.Image) for v in expected.values()) == 93  # every texture and first-order feature
    roi = np.isfinite(sitk.GetArrayFromImage(expected["original_firstorder_Mean"]))  # maps are on the cropped grid
    mcc = sitk.GetArrayFromImage(expected["original_glcm_MCC"])[roi]
    assert roi.sum() == 208 and 0 < np.isnan(mcc).sum() < mcc.size  # MCC fails on some batches only: both paths compared
    for jobs in (1, 2):
        assert_same_result(expected, compute_voxel_features(extractor, image, mask, jobs=jobs), f"jobs={jobs}")


def test_settings_label_channel_and_filters_as_pyradiomics():
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxel import compute_voxel_features

    folder = require_data("pyradiomics")
    image = str(folder / "breast1_image.nrrd")
    mask = sitk.ReadImage(str(folder / "breast1_label.nrrd"))
    segmentation = sitk.Compose(sitk.Cast(mask * 0, mask.GetPixelID()), mask)  # the ROI in channel 1
    params = {
        "setting": {"binWidth": 10, "resampledPixelSpacing": [1, 1, 2], "interpolator": "sitkLinear", "label": 1},
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
        "featureClass": {"firstorder": ["Median", "RobustMeanAbsoluteDeviation", "InterquartileRange"], "glszm": [], "ngtdm": ["Busyness"]},
        "voxelSetting": {"kernelRadius": 2, "maskedKernel": False, "initValue": -1.0},
    }
    extractor = RadiomicsFeatureExtractor(params)
    expected = extractor.execute(image, segmentation, label_channel=1, voxelBased=True)
    got = compute_voxel_features(extractor, image, segmentation, label_channel=1, jobs=2)
    assert_same_result(expected, got, "breast1")
    assert expected["diagnostics_Configuration_Settings"]["label_channel"] == 1


def test_row_nanpercentile_is_numpys_to_the_bit():
    from deepradiomics.voxel import row_nanpercentile

    rng = np.random.default_rng(7)
    for trial in range(30):
        rows, columns = int(rng.integers(1, 20)), int(rng.integers(1, 130))
        values = np.round(rng.normal(size=(rows, columns)) * [1, 10, 1000][trial % 3], trial % 4)
        values[rng.random((rows, columns)) < rng.random()] = np.nan
        values[0] = np.nan if trial % 5 == 0 else values[0]  # a row without any value
        values[values == 0] = 0.0  # -0.0 is the documented exception (numpy's partial sort decides its sign)
        for percentile in (0, 10, 25, 50, 75, 90, 100, 33.3):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # numpy warns on all-NaN rows
                expected = np.nanpercentile(values, percentile, axis=1)
            assert row_nanpercentile(values, percentile).tobytes() == expected.tobytes(), (trial, percentile)


# -- maps of a params set, plugin maps, writing ------------------------------------------------------
@pytest.fixture
def roistats():
    from deepradiomics.registry import get_registry

    registry = get_registry()
    cls = registry.register(_roi_stats_class())
    yield cls
    registry.unregister(cls.name)


@pytest.fixture
def breast1_case():
    from deepradiomics.case import Case

    folder = require_data("pyradiomics")
    return Case({"Image": folder / "breast1_image.nrrd"}, folder / "breast1_label.nrrd", label=1, case_id="breast1")


def test_compute_maps_then_write_maps(roistats, breast1_case, tmp_path):
    import SimpleITK as sitk

    from deepradiomics import Extractor
    from deepradiomics.voxel import write_maps

    params = {"featureClass": {"glcm": ["Contrast"], "roistats": {"scale": 2.0}}, "voxelSetting": {"kernelRadius": 1, "voxelBatch": 50}}
    extractor = Extractor(params)
    maps = extractor.compute_maps(breast1_case, jobs=2, record_engine=False)
    assert list(maps) == ["original_glcm_Contrast", "original_roistats_Inside"]
    for fmt, suffix in (("nrrd", ".nrrd"), ("nii.gz", ".nii.gz")):
        row = write_maps(maps, tmp_path / fmt, fmt=fmt, case_id="breast1")
        assert list(row.index) == ["breast1"] and row.index.name == "ID" and list(row.columns) == list(maps)
        for name, image in maps.items():
            path = row.loc["breast1", name]
            assert path.endswith(name + suffix)
            back = sitk.ReadImage(path)
            assert sitk.GetArrayFromImage(back).tobytes() == sitk.GetArrayFromImage(image).tobytes()
            assert np.allclose(back.GetOrigin(), image.GetOrigin()) and np.allclose(back.GetSpacing(), image.GetSpacing())
        assert not [p for p in (tmp_path / fmt).iterdir() if p.name.startswith(".")]  # no temporary file left
    with_diagnostics = extractor.compute_maps(breast1_case, diagnostics=True)
    assert list(with_diagnostics)[0] == "diagnostics_Versions_PyRadiomics"
    row = write_maps(with_diagnostics, tmp_path / "all")
    assert row.loc["case", "diagnostics_Versions_PyRadiomics"] == with_diagnostics["diagnostics_Versions_PyRadiomics"]


def test_write_maps_refuses_a_bad_format_or_name(tmp_path):
    import SimpleITK as sitk

    from deepradiomics.errors import FeatureError, ParamsError
    from deepradiomics.voxel import write_maps

    image = sitk.Image(4, 4, 4, sitk.sitkFloat64)
    with pytest.raises(ParamsError, match="tiff"):
        write_maps({"original_x_Y": image}, tmp_path, fmt="tiff")
    with pytest.raises(FeatureError, match="not a feature name"):
        write_maps({"../escape": image}, tmp_path)


def _map_class(name: str, produce=None):
    """A minimal plugin class whose ``voxel_maps`` is ``produce`` (none when None)."""
    from deepradiomics.featureclass import FeatureClass

    members = {"name": name.lower(), "feature_names": lambda self: [], "compute": lambda self, case: {}}
    if produce is not None:
        members["voxel_maps"] = produce
    return type(name, (FeatureClass,), members)


def test_plugin_maps_contract(breast1_case, caplog):
    import SimpleITK as sitk

    from deepradiomics.errors import FeatureError
    from deepradiomics.voxel import plugin_maps

    reference = breast1_case.mask_image()
    good = _map_class("Good", lambda self, case: {"Index": sitk.Cast(case.mask_image(), sitk.sitkUInt8)})()
    assert list(plugin_maps({"good": good}, breast1_case)) == ["original_good_Index"]
    small = _map_class("Small", lambda self, case: {"Index": sitk.Image(3, 3, 3, sitk.sitkUInt8)})()
    with pytest.raises(FeatureError, match="not on the grid"):
        plugin_maps({"small": small}, breast1_case)
    badname = _map_class("Badname", lambda self, case: {"Code_Index": reference})()
    with pytest.raises(FeatureError, match="Code_Index"):
        plugin_maps({"badname": badname}, breast1_case)
    array = _map_class("Array", lambda self, case: {"Index": np.zeros(3)})()
    with pytest.raises(FeatureError, match="SimpleITK.Image"):
        plugin_maps({"array": array}, breast1_case)
    with caplog.at_level(logging.WARNING, logger="deepradiomics.voxel"):
        assert plugin_maps({"nomaps": _map_class("Nomaps")()}, breast1_case) == OrderedDict()
    assert "'nomaps' provides no voxel maps" in caplog.text


def test_the_fast_engine_is_the_default_and_equals_pyradiomics_engine(breast1_case):
    """extract/batch --mode voxel use deepradiomics.voxelengine; its maps are PyRadiomics' engine's, the row says so."""
    import SimpleITK as sitk

    from deepradiomics import Extractor
    from deepradiomics.compat import RadiomicsFeatureExtractor

    params = {
        "featureClass": {"firstorder": ["Mean", "Entropy"], "glcm": ["Contrast", "MCC", "Idmn"], "glszm": ["ZoneEntropy"], "ngtdm": ["Busyness"]},
        "voxelSetting": {"kernelRadius": 1, "voxelBatch": 500},
    }
    fast = Extractor(params).compute_maps(breast1_case)
    assert fast["diagnostics_Voxel_Engine"] == "voxelengine"
    slow = Extractor({**params, "voxelSetting": {**params["voxelSetting"], "engine": "pyradiomics"}}).compute_maps(breast1_case)
    assert slow["diagnostics_Voxel_Engine"] == "pyradiomics"
    maps = [k for k, v in slow.items() if isinstance(v, sitk.Image)]
    assert maps == [k for k, v in fast.items() if isinstance(v, sitk.Image)] and len(maps) == 7
    for name in maps:
        a, b = sitk.GetArrayFromImage(fast[name]), sitk.GetArrayFromImage(slow[name])
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=name)
    # the drop-in keeps PyRadiomics' engine unless asked; asked, it gives the same maps
    image, mask = str(breast1_case.modalities["Image"]), str(breast1_case.mask)
    compat = RadiomicsFeatureExtractor(params)
    default = compat.execute(image, mask, voxelBased=True)
    asked = compat.execute(image, mask, voxelBased=True, engine="fast")
    for name in maps:
        np.testing.assert_array_equal(sitk.GetArrayFromImage(default[name]), sitk.GetArrayFromImage(slow[name]))
        np.testing.assert_allclose(sitk.GetArrayFromImage(asked[name]), sitk.GetArrayFromImage(default[name]), rtol=1e-9, atol=1e-12, equal_nan=True)


def test_an_unknown_engine_is_refused_with_the_choices():
    from deepradiomics.errors import ParamsError
    from deepradiomics.params import load_params

    with pytest.raises(ParamsError, match=r"voxelSetting.engine is 'quick': give one of fast, pyradiomics"):
        load_params({"featureClass": {"firstorder": []}, "voxelSetting": {"engine": "quick"}})
