"""Extractor, PyRadiomics-compatible extractor and scikit-learn transformer on real data."""

import json

import numpy as np
import pandas as pd
import pytest

from deepradiomics import Extractor
from deepradiomics.compat import RadiomicsFeatureExtractor
from deepradiomics.naming import feature_columns, is_diagnostic

PARAMS = {
    "setting": {"binWidth": 25, "label": 1},
    "imageType": {"Original": {}, "LoG": {"sigma": [1.0]}},
    "featureClass": {"glcm": ["Contrast", "JointEntropy"], "firstorder": [], "shape": ["Sphericity"]},
}


@pytest.fixture(scope="module")
def pyradiomics_result(brain1):
    from radiomics import featureextractor

    return featureextractor.RadiomicsFeatureExtractor(PARAMS).execute(str(brain1["image"]), str(brain1["mask"]))


def test_execute_matches_pyradiomics_exactly(brain1, pyradiomics_result):
    row = Extractor.from_dict(PARAMS).execute(brain1["image"], brain1["mask"], case_id="brain1")
    assert row.name == "brain1"
    expected = {k: float(v) for k, v in pyradiomics_result.items() if not k.startswith("diagnostics_")}
    assert sorted(feature_columns(row.index)) == sorted(expected)  # PyRadiomics' names (ordered by params)
    for name, value in expected.items():
        assert row[name] == value and isinstance(row[name], float)
    assert "log-sigma-1-0-mm-3D_firstorder_Mean" in row.index


def test_row_layout_diagnostics_then_features_in_pyradiomics_order(brain1, pyradiomics_result):
    row = Extractor.from_dict(PARAMS).execute(brain1["image"], brain1["mask"])
    columns = list(row.index)
    first_feature = next(i for i, c in enumerate(columns) if not is_diagnostic(c))
    assert all(is_diagnostic(c) for c in columns[:first_feature])
    assert row["diagnostics_Versions_deepradiomics"]
    assert row["diagnostics_Configuration_ParamsHash"] == Extractor.from_dict(PARAMS).params.hash
    assert row["diagnostics_Case_Slices"] == 25 and row["diagnostics_Case_RoiVolume"] > 0
    # the PyRadiomics block keeps PyRadiomics' own order (shape first, image type before class)
    expected = [k for k in pyradiomics_result if not k.startswith("diagnostics_")]
    assert columns[first_feature:] == expected


def test_label_from_settings_and_argument(brain1):
    with pytest.raises(Exception, match="label 7"):
        Extractor.from_dict(PARAMS).execute(brain1["image"], brain1["mask"], label=7)


def test_compat_extractor_is_a_drop_in(brain1, pyradiomics_result):
    extractor = RadiomicsFeatureExtractor(PARAMS)
    result = extractor.execute(str(brain1["image"]), str(brain1["mask"]))
    for name, value in pyradiomics_result.items():
        if not name.startswith("diagnostics_"):
            assert result[name] == float(value)
    # PyRadiomics' own methods act on the classical part
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(ngtdm=["Busyness"])
    result = extractor.execute(str(brain1["image"]), str(brain1["mask"]))
    assert feature_columns(result) == ["original_ngtdm_Busyness", "log-sigma-1-0-mm-3D_ngtdm_Busyness"]
    assert RadiomicsFeatureExtractor(binWidth=10).settings["binWidth"] == 10


def test_transformer_in_a_pipeline(lgg_manifest):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from deepradiomics.transformer import RadiomicsTransformer

    manifest = pd.read_csv(lgg_manifest, dtype=str).head(6)
    params = {"featureClass": {"firstorder": ["Mean", "Entropy"], "shape": ["VoxelVolume"]}}
    y = np.array([0, 1, 0, 1, 0, 1])
    pipeline = make_pipeline(RadiomicsTransformer(params, base_dir=lgg_manifest.parent), StandardScaler(), LogisticRegression())
    pipeline.fit(manifest[["ID", "Image", "Mask"]], y)
    transformer = pipeline[0]
    assert list(transformer.get_feature_names_out()) == ["original_shape_VoxelVolume", "original_firstorder_Mean", "original_firstorder_Entropy"]  # PyRadiomics order
    features = transformer.transform(manifest[["ID", "Image", "Mask"]])
    assert features.shape == (6, 3) and np.isfinite(features).all()
    assert pipeline.predict_proba(manifest[["ID", "Image", "Mask"]]).shape == (6, 2)


def test_series_is_json_serialisable(brain1):
    row = Extractor.from_dict({"featureClass": {"firstorder": ["Mean"]}}).execute(brain1["image"], brain1["mask"])
    json.dumps(row.to_dict(), default=str)


def test_uint8_images_are_binned_as_pyradiomics_intends(lgg_manifest):
    """PyRadiomics 3.0.1 + numpy 2 wraps `max + 2 * binWidth` in uint8 for an int binWidth; we widen the type."""
    import SimpleITK as sitk
    from radiomics import featureextractor

    folder = lgg_manifest.parent
    image_path = folder / "TCGA_HT_7616_19940813" / "flair.nii.gz"
    mask_path = folder / "TCGA_HT_7616_19940813" / "mask.nii.gz"
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    assert image.GetPixelID() == sitk.sitkUInt8
    params = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Entropy"]}}
    reference = featureextractor.RadiomicsFeatureExtractor(params).execute(sitk.Cast(image, sitk.sitkFloat32), mask)
    row = Extractor.from_dict(params).execute(image_path, mask_path)
    assert row["original_firstorder_Entropy"] == pytest.approx(float(reference["original_firstorder_Entropy"]), rel=1e-12)
