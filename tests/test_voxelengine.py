"""deepradiomics.voxelengine against PyRadiomics' own voxel mode, map for map.

Equality, as the engine promises it: the same keys in the same order, equal diagnostics, and for every
map the same size, spacing, origin, direction and pixel type, NaN exactly where PyRadiomics has NaN, and
elsewhere ``|got - expected| <= max(1e-9 * |expected|, 1e-12)`` (relative 1e-9, absolute 1e-12 near zero;
infinities equal). PyRadiomics' values depend on ``voxelBatch``: each case runs both engines with the same
settings. Real cases: parts of brain1, breast1 (LoG and wavelet images, resampling) and an LGG FLAIR; the
synthetic images test mechanics PyRadiomics' edge cases go through (a flat ROI, isolated voxels, a ROI at
the image border, a single slice).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np
import pytest

from tests.conftest import require_data

pytestmark = pytest.mark.usefixtures("quiet_pyradiomics")
PYRADIOMICS_LOG_LEVEL = logging.CRITICAL  # PyRadiomics logs every failed MCC batch as an error

RTOL, ATOL = 1e-9, 1e-12


# -- the comparison ----------------------------------------------------------------------------------
def mismatch(expected: np.ndarray, got: np.ndarray) -> str | None:
    """None when ``got`` equals ``expected`` to the tolerance above (NaN where NaN), else what differs."""
    if expected.shape != got.shape:
        return f"shape {got.shape} vs {expected.shape}"
    nan = np.isnan(expected)
    if not np.array_equal(nan, np.isnan(got)):
        return f"NaN at {int((nan != np.isnan(got)).sum())} voxel(s) where PyRadiomics has not (or the reverse)"
    infinite = np.isinf(expected)
    if not np.array_equal(expected[infinite], got[infinite]):
        return "infinities differ"
    finite = ~nan & ~infinite
    e, g = expected[finite], got[finite]
    bad = np.abs(g - e) > np.maximum(RTOL * np.abs(e), ATOL)
    if bad.any():
        worst = np.argmax(np.abs(g - e) / np.maximum(np.abs(e), ATOL))
        return f"{int(bad.sum())} voxel(s) differ, e.g. {g[worst]!r} vs {e[worst]!r}"
    return None


def assert_same_maps(expected: OrderedDict, got: OrderedDict) -> None:
    import SimpleITK as sitk

    assert list(got) == list(expected)
    problems = []
    for key, value in expected.items():
        other = got[key]
        if not isinstance(value, sitk.Image):
            assert repr(other) == repr(value), key
            continue
        geometry = lambda image: (image.GetPixelID(), image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection())  # noqa: E731
        assert geometry(other) == geometry(value), key
        problem = mismatch(sitk.GetArrayFromImage(value), sitk.GetArrayFromImage(other))
        if problem:
            problems.append(f"{key}: {problem}")
    assert not problems, "; ".join(problems)


def both_engines(params, image, mask, jobs: int = 1, **kwargs):
    """PyRadiomics' voxel-mode result and the engine's (every class by the engine), compared."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.classical import pyradiomics_input
    from deepradiomics.voxelengine import compute_voxel_features_fast
    from deepradiomics.voxelengine.extractor import ENGINE

    extractor = RadiomicsFeatureExtractor(params)
    # the engine hands PyRadiomics the image as deepradiomics does (an 8-bit image whose bins would overflow
    # is widened: deepradiomics.classical.widen_if_overflowing); PyRadiomics gets that same image here
    reference = pyradiomics_input(image, extractor.settings, extractor.enabledImagetypes)
    expected = extractor.execute(reference, mask, voxelBased=True, **kwargs)
    got, record = compute_voxel_features_fast(extractor, image, mask, jobs=jobs, **kwargs)
    assert record and all(value == ENGINE for value in record.values()), record
    assert_same_maps(expected, got)
    return expected, got


# -- inputs ------------------------------------------------------------------------------------------
def part_of(mask, box_half: tuple, label: int = 1):
    """``mask`` keeping only a box of half-sizes ``box_half`` (z, y, x) around the ROI's median voxel."""
    import SimpleITK as sitk

    labels = sitk.GetArrayFromImage(mask)
    centre = [int(np.median(axis)) for axis in np.nonzero(labels == label)]
    part = np.zeros_like(labels)
    box = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, box_half))
    part[box] = labels[box]
    out = sitk.GetImageFromArray(part)
    out.CopyInformation(mask)
    return out


@pytest.fixture(scope="module")
def brain1_part():
    """brain1's image and a 3-slice part of its ROI (a few seconds of PyRadiomics' voxel extraction)."""
    import SimpleITK as sitk

    folder = require_data("pyradiomics")
    image = sitk.ReadImage(str(folder / "brain1_image.nrrd"))
    return image, part_of(sitk.ReadImage(str(folder / "brain1_label.nrrd")), (1, 5, 5))


@pytest.fixture(scope="module")
def brain1_narrow_part(brain1_part):
    """brain1's image and a 3 x 7 x 7 part of its ROI (99 voxels), for settings that make PyRadiomics' voxel
    GLCM slow: at binWidth 7 (89 grey levels, 58 of them in this part) it takes ~3 s here, ~25 s on the
    3 x 11 x 11 part."""
    import SimpleITK as sitk

    image = brain1_part[0]
    return image, part_of(sitk.ReadImage(str(require_data("pyradiomics") / "brain1_label.nrrd")), (1, 3, 3))


def all_features(classes=("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")) -> dict:
    """Every feature of each class by name, deprecated ones included (PyRadiomics then enables them)."""
    from radiomics import getFeatureClasses

    return {name: sorted(getFeatureClasses()[name].getFeatureNames()) for name in classes}


def synthetic(levels: np.ndarray, roi: np.ndarray, spacing=(1.0, 1.0, 1.0)):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(levels.astype(np.float64))
    image.SetSpacing(spacing)
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


# -- real cases -----------------------------------------------------------------------------------------
def test_brain1_every_feature_in_batches(brain1_part):
    """Every feature (deprecated ones included) with batches of 40: MCC fails on some batches only."""
    import SimpleITK as sitk

    image, mask = brain1_part
    params = {"setting": {"binWidth": 25}, "featureClass": all_features(), "voxelSetting": {"kernelRadius": 1, "voxelBatch": 40, "initValue": float("nan")}}
    expected, _ = both_engines(params, image, mask)
    roi = np.isfinite(sitk.GetArrayFromImage(expected["original_firstorder_Mean"]))
    mcc = sitk.GetArrayFromImage(expected["original_glcm_MCC"])[roi]
    assert 0 < np.isnan(mcc).sum() < mcc.size  # both the failing and the computed MCC batches are compared
    assert np.isnan(sitk.GetArrayFromImage(expected["original_glcm_Dissimilarity"])[roi]).all()  # deprecated: initValue


def test_brain1_radius2_unmasked_bin_count(brain1_part):
    image, mask = brain1_part
    params = {"setting": {"binCount": 16, "voxelArrayShift": 300}, "voxelSetting": {"kernelRadius": 2, "maskedKernel": False, "initValue": -7.0}}
    both_engines(params, image, mask)


@pytest.mark.parametrize(
    "setting",
    [
        {"symmetricalGLCM": False},
        {"weightingNorm": "manhattan"},
        {"weightingNorm": "euclidean"},
        {"weightingNorm": "infinity"},
        {"weightingNorm": "no_weighting"},
        {"distances": [1, 2], "gldm_a": 2},
        {"force2D": True, "force2Ddimension": 0},
        {"force2D": True, "force2Ddimension": 2, "symmetricalGLCM": False},
        {"binWidth": 7},  # many grey levels absent from the ROI (numpy lays PyRadiomics' arrays out differently)
    ],
    ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()),
)
def test_brain1_texture_settings(brain1_part, brain1_narrow_part, setting):
    # many grey levels (binWidth 7) or distances 1 and 2: the narrow part (PyRadiomics' GLCM is Ng^2 per angle,
    # distance and voxel); the others: the 3-slice part
    image, mask = brain1_narrow_part if {"binWidth", "distances"} & set(setting) else brain1_part
    params = {
        "setting": {"binWidth": 25, **setting},
        "featureClass": {"glcm": [], "glrlm": [], "gldm": [], "ngtdm": []},
        "voxelSetting": {"kernelRadius": 1, "voxelBatch": 70},
    }
    both_engines(params, image, mask)


def test_breast1_filters_resampling_label_channel():
    """LoG and wavelet images (PyRadiomics' filters), resampling, a vector mask read through label_channel."""
    import SimpleITK as sitk

    folder = require_data("pyradiomics")
    image = sitk.ReadImage(str(folder / "breast1_image.nrrd"))
    mask = part_of(sitk.ReadImage(str(folder / "breast1_label.nrrd")), (1, 3, 3))
    segmentation = sitk.Compose(sitk.Cast(mask * 0, mask.GetPixelID()), mask)  # the ROI in channel 1
    params = {
        "setting": {"binWidth": 10, "resampledPixelSpacing": [1, 1, 2], "interpolator": "sitkLinear", "label": 1},
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}, "Wavelet": {"start_level": 0, "level": 1}},
        "featureClass": {"firstorder": [], "glcm": [], "glszm": [], "ngtdm": []},
        "voxelSetting": {"kernelRadius": 1, "initValue": float("nan")},
    }
    both_engines(params, image, segmentation, label_channel=1)


def test_lgg_flair_every_class():
    import SimpleITK as sitk

    folder = require_data("lgg", "TCGA_CS_4942_19970222")
    image = sitk.ReadImage(str(folder / "flair.nii.gz"))
    mask = part_of(sitk.ReadImage(str(folder / "mask.nii.gz")), (2, 4, 4), label=1)
    params = {"setting": {"binWidth": 5}, "voxelSetting": {"kernelRadius": 1, "voxelBatch": 100}}
    both_engines(params, image, mask, jobs=2)


def test_brain1_every_class_radius2(tmp_path):
    """Every class, kernelRadius 2, on a 5 x 11 x 11 part of brain1's ROI (465 voxels, up to the ROI's last
    slice) read from files, batches of 100 (five, the last one partial), two jobs. brain1's whole ROI (4137
    voxels) at kernelRadius 1 and 2, every map, is the benchmark's comparison (benchmarks/voxel_speed.py): here
    it took 60-95 s on two shared cores, the part takes ~7 s."""
    import SimpleITK as sitk

    folder = require_data("pyradiomics")
    mask = tmp_path / "brain1_part.nrrd"
    sitk.WriteImage(part_of(sitk.ReadImage(str(folder / "brain1_label.nrrd")), (2, 5, 5)), str(mask))
    params = {"setting": {"binWidth": 25}, "voxelSetting": {"kernelRadius": 2, "voxelBatch": 100, "initValue": float("nan")}}
    both_engines(params, str(folder / "brain1_image.nrrd"), str(mask), jobs=2)


# -- synthetic kernels: PyRadiomics' edge cases ---------------------------------------------------------
def test_flat_roi_single_grey_level():
    """One grey level: MCC's 'flat region' 1, InverseVariance's empty sum, Correlation's 1, zero variances."""
    levels = np.full((6, 7, 8), 40.0)
    roi = np.zeros(levels.shape, dtype=bool)
    roi[1:5, 2:6, 2:7] = True
    image, mask = synthetic(levels, roi)
    both_engines({"setting": {"binWidth": 25}, "voxelSetting": {"kernelRadius": 1}}, image, mask)


def test_isolated_voxels_ties_and_image_border():
    """Scattered voxels (empty angles and neighbourhoods, a failing MCC), tied grey levels, a ROI on the image
    border (kernels clipped), batches of one voxel."""
    rng = np.random.default_rng(7)
    levels = rng.integers(0, 4, size=(7, 9, 9)) * 25.0 + 3
    roi = rng.random(levels.shape) < 0.35
    roi[0, :, :] |= rng.random((9, 9)) < 0.5  # the first slice: the image border
    image, mask = synthetic(levels, roi, spacing=(2.0, 0.8, 0.8))
    both_engines({"setting": {"binWidth": 25}, "voxelSetting": {"kernelRadius": 1, "voxelBatch": 1, "initValue": float("nan")}}, image, mask)
    both_engines({"setting": {"binWidth": 25, "weightingNorm": "euclidean"}, "voxelSetting": {"kernelRadius": 2}}, image, mask)


def test_single_slice_image():
    """A 2-D image (one slice): PyRadiomics' angles leave the third dimension out."""
    rng = np.random.default_rng(3)
    levels = rng.integers(0, 6, size=(1, 12, 12)) * 10.0
    roi = np.zeros(levels.shape, dtype=bool)
    roi[0, 2:10, 3:11] = True
    image, mask = synthetic(levels, roi)
    both_engines({"setting": {"binWidth": 10}, "voxelSetting": {"kernelRadius": 2, "voxelBatch": 17}}, image, mask)


def test_jobs_do_not_change_the_maps(brain1_part):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxelengine import compute_voxel_features_fast

    image, mask = brain1_part
    extractor = RadiomicsFeatureExtractor({"setting": {"binWidth": 25}, "voxelSetting": {"kernelRadius": 1, "voxelBatch": 50}})
    one, _ = compute_voxel_features_fast(extractor, image, mask, jobs=1)
    two, _ = compute_voxel_features_fast(extractor, image, mask, jobs=2)
    import SimpleITK as sitk

    assert list(one) == list(two)
    for key, value in one.items():
        if isinstance(value, sitk.Image):
            assert sitk.GetArrayViewFromImage(value).tobytes() == sitk.GetArrayViewFromImage(two[key]).tobytes(), key


# -- what the engine declines ------------------------------------------------------------------------
def test_declined_class_falls_back_to_pyradiomics_with_its_reason(brain1_part, monkeypatch):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxelengine import compute_voxel_features_fast, engine_diagnostic
    from deepradiomics.voxelengine import glcm as engine_glcm

    monkeypatch.setattr(engine_glcm, "DENSE_LIMIT", 1)  # a weighted batch now needs "too large" a dense GLCM
    image, mask = brain1_part
    params = {"setting": {"binWidth": 25, "weightingNorm": "manhattan"}, "featureClass": {"glcm": [], "ngtdm": []}, "voxelSetting": {"kernelRadius": 1}}
    extractor = RadiomicsFeatureExtractor(params)
    expected = extractor.execute(image, mask, voxelBased=True)
    got, record = compute_voxel_features_fast(extractor, image, mask)
    assert record["original_ngtdm"] == "voxelengine"
    assert record["original_glcm"].startswith("pyradiomics (a voxel batch needs PyRadiomics' dense GLCM")
    assert engine_diagnostic(record).startswith("voxelengine; original_glcm: pyradiomics (")
    assert_same_maps(expected, got)


def test_compute_class_reasons(brain1_part):
    from radiomics import imageoperations
    from radiomics.glcm import RadiomicsGLCM

    from deepradiomics.voxelengine import compute_class

    image, mask = brain1_part
    box, _ = imageoperations.checkMask(image, mask, label=1)
    image, mask = imageoperations.cropToTumorMask(image, mask, box, padDistance=1)

    class Changed(RadiomicsGLCM):
        def getContrastFeatureValue(self):  # noqa: N802
            return 0

    cases = [
        (Changed, {"voxelBased": True}, "is not one of PyRadiomics' voxel-mode classes"),
        (RadiomicsGLCM, {"voxelBased": True, "voxelBatch": 0}, "voxelBatch 0"),
        (RadiomicsGLCM, {"voxelBased": True, "distances": [0]}, "distances [0]"),
        (RadiomicsGLCM, {}, "not built for voxel mode"),
    ]
    for kind, settings, reason in cases:
        instance = kind(image, mask, binWidth=25, **settings)
        instance.enableAllFeatures()
        result = compute_class(instance)
        assert not result.supported and result.values is None and reason in result.reason, (settings, result.reason)
    instance = RadiomicsGLCM(image, mask, binWidth=25, voxelBased=True)
    instance.enableFeatureByName("Contrast")
    result = compute_class(instance)
    assert result.supported and list(result.values) == ["Contrast"] and result.values["Contrast"].shape == (instance.labelledVoxelCoordinates.shape[1],)


# -- mechanics -------------------------------------------------------------------------------------------
def test_ordered_sum_adds_in_entry_order():
    """Sequential sums by group, to the bit (the order PyRadiomics' arrays are reduced in)."""
    from deepradiomics.voxelengine.reduce import OrderedSum

    rng = np.random.default_rng(0)
    keys = rng.integers(0, 50, size=3000)
    values = rng.random(3000) * 10.0 ** rng.integers(-8, 8, size=3000)
    plan = OrderedSum(keys)
    expected = {}
    for key, value in zip(keys, values):
        expected[key] = expected.get(key, 0.0) + value  # Python's left-to-right addition
    assert plan.keys.tolist() == sorted(expected)
    assert plan(values).tolist() == [expected[k] for k in sorted(expected)]
