import pytest

from deepradiomics.errors import did_you_mean
from deepradiomics.naming import (
    FeatureName,
    diagnostics_name,
    feature_class_of,
    feature_columns,
    format_name,
    is_diagnostic,
    is_feature,
)


def test_parse_and_format_round_trip():
    for name in ["original_glcm_Contrast", "log-sigma-1-0-mm-3D_firstorder_Mean", "wavelet-LLH_glszm_ZoneEntropy", "original_vqhist_Codeword017"]:
        assert str(FeatureName.parse(name)) == name
    assert format_name("original", "vqhist", "Codeword000") == "original_vqhist_Codeword000"
    assert feature_class_of("log-sigma-1-0-mm-3D_firstorder_Mean") == "firstorder"


def test_diagnostics_and_passthrough_columns_are_not_features():
    assert is_diagnostic(diagnostics_name("Versions", "deepradiomics"))
    assert not is_feature("diagnostics_Versions_PyRadiomics")
    assert not is_feature("grade")
    assert feature_columns(["Image", "diagnostics_Error", "original_shape_Sphericity", "age"]) == ["original_shape_Sphericity"]


@pytest.mark.parametrize("bad", ["", "a_b", "with space"])
def test_tokens_with_underscore_or_empty_are_rejected(bad):
    with pytest.raises(ValueError, match="token|feature"):
        FeatureName("original", bad, "X")


def test_did_you_mean():
    assert "glcm" in did_you_mean("glmc", ["glcm", "glrlm", "shape"])
    assert "binWidth" in did_you_mean("binwidth", ["binWidth", "binCount"])
    assert did_you_mean("zzzz", ["glcm"]) == ""
