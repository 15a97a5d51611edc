"""The PyRadiomics drop-in: one import swapped, the same results, types, key order and exceptions.

The central test runs one PyRadiomics-style script twice, once with PyRadiomics' own
``RadiomicsFeatureExtractor`` and once with :class:`deepradiomics.compat.RadiomicsFeatureExtractor`,
on PyRadiomics' test cases (brain1, brain2, breast1, lung1) with several params files (CT-style
resampling with LoG and wavelet images, MR-style normalisation with square-root and gradient images and
an image-type override, a JSON file enabling every class, settings given as keyword arguments, classes
and image types enabled by hand, provenance off, a vector mask with ``label_channel``), and requires
the returned objects to be equal: same keys in the same order, the same type for every value, the same
value (bit for bit for arrays).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import require_data

CASES = ("brain1", "brain2", "breast1", "lung1")

CT_PARAMS = """\
# CT-style protocol: 2 mm isotropic resampling, Original + LoG + Wavelet, a few features per class
imageType:
  Original: {}
  LoG:
    sigma: [2.0, 3.0]
  Wavelet: {}
featureClass:
  shape: [MeshVolume, Sphericity, Maximum3DDiameter]
  firstorder: [Mean, Entropy, 90Percentile, Energy]
  glcm: [Contrast, JointEntropy, Idmn]
  glszm: [ZoneEntropy]
setting:
  binWidth: 2.5e1  # a number in YAML 1.2, as PyRadiomics reads it (PyYAML 1.1 would read a string)
  interpolator: sitkBSpline
  resampledPixelSpacing: [2, 2, 2]
  padDistance: 10
  voxelArrayShift: 1000
  label: 1
"""

MR_PARAMS = """\
# MR-style protocol: normalised intensities, cropped before filtering, a per-image-type bin width
imageType:
  Original: {}
  SquareRoot: {}
  Gradient: {binWidth: 10}
featureClass:
  firstorder:
  glrlm: [RunEntropy, GrayLevelNonUniformity]
  gldm: [DependenceEntropy]
  ngtdm: [Coarseness]
setting:
  normalize: true
  normalizeScale: 100
  binWidth: 5
  preCrop: true
  voxelArrayShift: 300
  label: 1
"""

#: every class with all its features (null lists), as a JSON params file
ALL_CLASSES_JSON = {
    "setting": {"binWidth": 25, "label": 1},
    "featureClass": {name: None for name in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")},
}


pytestmark = pytest.mark.usefixtures("quiet_pyradiomics")


@pytest.fixture(scope="module")
def cases() -> dict:
    folder = require_data("pyradiomics")
    return {name: (str(folder / f"{name}_image.nrrd"), str(folder / f"{name}_label.nrrd")) for name in CASES}


@pytest.fixture(scope="module")
def params_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("params")
    (folder / "ct.yaml").write_text(CT_PARAMS)
    (folder / "mr.yaml").write_text(MR_PARAMS)
    (folder / "all.json").write_text(json.dumps(ALL_CLASSES_JSON))
    return folder


def pyradiomics_style_script(RadiomicsFeatureExtractor, params_dir, cases) -> list:  # noqa: N803 (the class, as a script imports it)
    """A PyRadiomics user's extraction script; returns everything ``execute`` returned, in order."""
    import SimpleITK as sitk

    results = []
    # one extractor per protocol, applied to every case
    extractor = RadiomicsFeatureExtractor(str(params_dir / "ct.yaml"))
    for name in ("brain1", "breast1"):
        results.append(extractor.execute(*cases[name]))
    extractor = RadiomicsFeatureExtractor(str(params_dir / "mr.yaml"))
    for name in ("brain2", "breast1"):
        results.append(extractor.execute(*cases[name], label=1))
    extractor = RadiomicsFeatureExtractor(str(params_dir / "all.json"))
    results.append(extractor.execute(*cases["brain2"]))
    # defaults and keyword settings, then classes and image types chosen by hand, provenance off
    extractor = RadiomicsFeatureExtractor(binWidth=20, voxelArrayShift=100)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("firstorder")
    extractor.enableFeaturesByName(glcm=["Autocorrelation", "Contrast", "MCC"], shape=["Elongation"])
    extractor.enableImageTypeByName("Exponential")
    extractor.enableImageTypeByName("LoG", customArgs={"sigma": [1.0]})
    extractor.settings["preCrop"] = True
    results.append(extractor.execute(*cases["breast1"]))
    extractor.addProvenance(False)
    results.append(extractor.execute(*cases["lung1"]))
    # a segmentation stored as a vector image: one channel per segment
    image_path, mask_path = cases["brain1"]
    mask = sitk.ReadImage(mask_path)
    empty = sitk.Image(mask.GetSize(), mask.GetPixelID())
    empty.CopyInformation(mask)
    segmentation = sitk.Compose(empty, mask)
    extractor = RadiomicsFeatureExtractor({"featureClass": {"firstorder": ["Mean", "Median"], "glcm": ["Idm"]}})
    results.append(extractor.execute(sitk.ReadImage(image_path), segmentation, label=1, label_channel=1))
    return results


def assert_same_value(expected, got, where: str) -> None:
    import SimpleITK as sitk

    assert type(got) is type(expected), f"{where}: type {type(got).__name__}, PyRadiomics gives {type(expected).__name__}"
    if isinstance(expected, np.ndarray):
        assert (got.dtype, got.shape) == (expected.dtype, expected.shape), f"{where}: {got.dtype}{got.shape} vs {expected.dtype}{expected.shape}"
        assert got.tobytes() == expected.tobytes(), f"{where}: {got!r} vs PyRadiomics' {expected!r}"
    elif isinstance(expected, sitk.Image):
        assert (got.GetPixelID(), got.GetSize(), got.GetOrigin(), got.GetSpacing(), got.GetDirection()) == (
            expected.GetPixelID(), expected.GetSize(), expected.GetOrigin(), expected.GetSpacing(), expected.GetDirection()
        ), f"{where}: map geometry or pixel type differs"
        assert sitk.GetArrayViewFromImage(got).tobytes() == sitk.GetArrayViewFromImage(expected).tobytes(), f"{where}: map values differ"
    elif isinstance(expected, (float, np.floating)) and np.isnan(expected):
        assert np.isnan(got), f"{where}: {got!r} vs PyRadiomics' NaN"
    else:
        assert got == expected, f"{where}: {got!r} vs PyRadiomics' {expected!r}"


def assert_same_result(expected: OrderedDict, got, where: str) -> None:
    assert type(got) is type(expected), f"{where}: {type(got).__name__} instead of {type(expected).__name__}"
    assert list(got) == list(expected), f"{where}: keys or their order differ: {[(a, b) for a, b in zip(got, expected) if a != b][:3]}"
    for key, value in expected.items():
        assert_same_value(value, got[key], f"{where}: {key}")


def test_pyradiomics_script_gives_identical_results_through_the_drop_in(params_dir, cases):
    from radiomics.featureextractor import RadiomicsFeatureExtractor as PyRadiomicsExtractor

    from deepradiomics.compat import RadiomicsFeatureExtractor

    expected = pyradiomics_style_script(PyRadiomicsExtractor, params_dir, cases)
    got = pyradiomics_style_script(RadiomicsFeatureExtractor, params_dir, cases)
    assert len(got) == len(expected) == 8
    for index, (reference, result) in enumerate(zip(expected, got)):
        assert_same_result(reference, result, f"execute #{index}")
    # what the issue reported, as a user meets it
    first = got[0]
    assert isinstance(first["original_firstorder_Mean"].item(), float)
    assert isinstance(first["diagnostics_Configuration_Settings"], dict) and isinstance(first["diagnostics_Mask-original_BoundingBox"], tuple)
    assert not [k for k in got[6] if k.startswith("diagnostics_")]  # addProvenance(False): no diagnostics at all
    classes = [k.split("_")[1] for k in expected[4] if not k.startswith("diagnostics_")]
    assert classes.index("shape") < classes.index("firstorder")  # PyRadiomics' order: shape first
    assert list(expected[0])[-1].startswith("wavelet-")  # and image type before class


def test_missing_params_file_is_an_ioerror_and_a_params_error(tmp_path):
    from deepradiomics.compat import RadiomicsFeatureExtractor
    from deepradiomics.errors import ParamsError

    missing = tmp_path / "nope.yaml"
    with pytest.raises(IOError, match="nope.yaml") as caught:
        RadiomicsFeatureExtractor(str(missing))
    assert isinstance(caught.value, ParamsError) and isinstance(caught.value, FileNotFoundError)
    extractor = RadiomicsFeatureExtractor()
    with pytest.raises(IOError):
        extractor.loadParams(str(missing))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"setting": {"binWidht": 25}}, "binWidth"),  # deepradiomics' check, with a suggestion
        ({"setting": {"binWidth": "wide"}}, "binWidth"),  # PyRadiomics' schema, through deepradiomics' check
        ({"featureClass": None}, "featureClass"),  # accepted by deepradiomics' reader, refused by PyRadiomics' schema
    ],
)
def test_invalid_params_are_catchable_as_pyradiomics_schema_error(params, message):
    from pykwalify.errors import SchemaError

    from deepradiomics.compat import RadiomicsFeatureExtractor
    from deepradiomics.errors import ParamsError

    with pytest.raises(SchemaError, match=message) as caught:
        RadiomicsFeatureExtractor(params)
    assert isinstance(caught.value, ParamsError)
    assert "\n" not in str(caught.value)
    with pytest.raises(SchemaError):
        RadiomicsFeatureExtractor().loadJSONParams(json.dumps(params))
    # PyRadiomics itself raises pykwalify's SchemaError on the same params
    from radiomics.featureextractor import RadiomicsFeatureExtractor as PyRadiomicsExtractor

    with pytest.raises(SchemaError):
        PyRadiomicsExtractor(params)


def test_errors_module_stays_light():
    import subprocess
    import sys

    code = "import sys, deepradiomics.errors; print('pykwalify' in sys.modules, 'radiomics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_params_schema_error_pickles_as_the_same_class():
    import pickle

    from deepradiomics.errors import ParamsSchemaError

    error = pickle.loads(pickle.dumps(ParamsSchemaError("p.yaml: bad value")))
    assert type(error) is ParamsSchemaError and str(error) == "p.yaml: bad value" and error.msg == "p.yaml: bad value"


# -- plugin classes next to PyRadiomics' ------------------------------------------------------------
@dataclass(frozen=True)
class RoiStatsSettings:
    scale: float = 1.0


def _roi_stats_class():
    import SimpleITK as sitk

    from deepradiomics.featureclass import FeatureClass

    class RoiStats(FeatureClass):
        """ROI voxel count and mean of the main image (times ``scale``); a map of the ROI."""

        name = "roistats"
        family = "classical"
        Settings = RoiStatsSettings

        def feature_names(self):
            return ["Voxels", "ScaledMean"]

        def compute(self, case):
            roi = case.mask_array()
            return {"Voxels": float(roi.sum()), "ScaledMean": float(case.array()[roi].mean() * self.settings.scale)}

        def diagnostics(self):
            return {"Scale": self.settings.scale}

        def voxel_maps(self, case):
            inside = sitk.Cast(case.mask_image() == case.label, sitk.sitkFloat64) * self.settings.scale
            return {"Inside": inside}

    return RoiStats


@pytest.fixture
def roistats():
    from deepradiomics.registry import get_registry

    registry = get_registry()
    cls = registry.register(_roi_stats_class())
    yield cls
    registry.unregister(cls.name)


def test_plugin_class_adds_its_columns_after_pyradiomics_keys(roistats, cases):
    from radiomics.featureextractor import RadiomicsFeatureExtractor as PyRadiomicsExtractor

    from deepradiomics.compat import RadiomicsFeatureExtractor

    image, mask = cases["breast1"]
    pyradiomics_part = {"featureClass": {"firstorder": ["Mean", "Maximum"], "shape": ["VoxelVolume"]}}
    expected = PyRadiomicsExtractor(pyradiomics_part).execute(image, mask)
    params = {"featureClass": {"firstorder": ["Mean", "Maximum"], "roistats": {"scale": 2.0}, "shape": ["VoxelVolume"]}}
    result = RadiomicsFeatureExtractor(params).execute(image, mask)
    assert list(result)[: len(expected)] == list(expected)
    for key, value in expected.items():
        assert_same_value(value, result[key], key)
    added = OrderedDict((k, result[k]) for k in list(result)[len(expected):])
    assert list(added) == ["diagnostics_roistats_Scale", "original_roistats_Voxels", "original_roistats_ScaledMean"]
    assert added["diagnostics_roistats_Scale"] == 2.0
    voxels = added["original_roistats_Voxels"]
    assert type(voxels) is np.ndarray and voxels.dtype == np.float64 and voxels.shape == () and voxels.item() == 143.0
    assert added["original_roistats_ScaledMean"].item() == pytest.approx(2 * result["original_firstorder_Mean"].item(), rel=1e-12)

    extractor = RadiomicsFeatureExtractor(params)
    extractor.addProvenance(False)
    quiet = extractor.execute(image, mask)
    assert [k for k in quiet if k.startswith("diagnostics_")] == []
    assert list(quiet)[-2:] == ["original_roistats_Voxels", "original_roistats_ScaledMean"]


def test_plugin_only_params_compute_no_pyradiomics_feature(roistats, cases):
    from deepradiomics.compat import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor({"featureClass": {"roistats": {}}})
    assert extractor.enabledFeatures == {}  # not PyRadiomics' "empty section means every class"
    result = extractor.execute(*cases["brain2"])
    features = [k for k in result if not k.startswith("diagnostics_")]
    assert features == ["original_roistats_Voxels", "original_roistats_ScaledMean"]


def test_plugin_class_reads_the_label_channel_of_a_vector_mask(roistats, cases):
    import SimpleITK as sitk

    from deepradiomics.compat import RadiomicsFeatureExtractor

    image, mask_path = cases["breast1"]
    mask = sitk.ReadImage(mask_path)
    segmentation = sitk.Compose(mask, sitk.Cast(mask * 0, mask.GetPixelID()))  # the ROI in channel 0 only
    result = RadiomicsFeatureExtractor({"featureClass": {"roistats": {}}}).execute(image, segmentation, label=1, label_channel=0)
    assert result["original_roistats_Voxels"].item() == 143.0
    with pytest.raises(ValueError, match="No labels"):  # PyRadiomics' own error for the empty channel
        RadiomicsFeatureExtractor({"featureClass": {"roistats": {}}}).execute(image, segmentation, label=1, label_channel=1)


def test_voxel_based_execute_adds_plugin_maps(roistats, cases):
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor as PyRadiomicsExtractor

    from deepradiomics.compat import RadiomicsFeatureExtractor

    image, mask = cases["breast1"]
    pyradiomics_part = {"featureClass": {"firstorder": ["Mean"]}, "voxelSetting": {"kernelRadius": 1}}
    expected = PyRadiomicsExtractor(pyradiomics_part).execute(image, mask, voxelBased=True)
    params = {"featureClass": {"firstorder": ["Mean"], "roistats": {"scale": 3.0}}, "voxelSetting": {"kernelRadius": 1}}
    result = RadiomicsFeatureExtractor(params).execute(image, mask, voxelBased=True, jobs=2)
    assert_same_result(expected, OrderedDict((k, result[k]) for k in list(result)[: len(expected)]), "voxel")
    assert list(result)[len(expected):] == ["diagnostics_roistats_Scale", "original_roistats_Inside"]
    inside = sitk.GetArrayFromImage(result["original_roistats_Inside"])
    assert inside.sum() == 3.0 * 143 and inside.shape == sitk.GetArrayFromImage(sitk.ReadImage(mask)).shape


def test_a_truncated_file_is_refused_before_pyradiomics_reads_it(tmp_path, lgg_case):
    import gzip

    from deepradiomics.compat import RadiomicsFeatureExtractor
    from deepradiomics.errors import CaseError

    data = gzip.decompress(lgg_case["flair"].read_bytes())
    truncated = tmp_path / "flair.nii.gz"
    truncated.write_bytes(gzip.compress(data)[:-5000])
    with pytest.raises(CaseError, match="flair.nii.gz"):
        RadiomicsFeatureExtractor({"featureClass": {"firstorder": ["Mean"]}}).execute(str(truncated), str(lgg_case["mask"]))
