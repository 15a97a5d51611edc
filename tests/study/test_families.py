import pytest

from deepradiomics.errors import ParamsError
from deepradiomics.study import feature_families, parse_groups

COLUMNS = [
    "Image",
    "Mask",
    "grade",
    "diagnostics_Versions_PyRadiomics",
    "original_firstorder_Mean",
    "original_shape_Sphericity",
    "wavelet-LLH_glcm_Contrast",
    "original_vqhist_Codeword000",
    "original_vqhist_Codeword001",
    "original_fisher_Fv0000",
]


def test_default_families_follow_the_class_token():
    fams = feature_families(COLUMNS)
    assert list(fams) == ["classical", "vqhist", "fisher", "all"]
    assert fams["classical"] == [
        "original_firstorder_Mean",
        "original_shape_Sphericity",
        "wavelet-LLH_glcm_Contrast",
    ]
    assert fams["vqhist"] == ["original_vqhist_Codeword000", "original_vqhist_Codeword001"]
    assert fams["all"] == COLUMNS[4:]  # pass-through and diagnostics columns never enter a family


def test_single_family_has_no_duplicate_all():
    assert list(feature_families(["original_glcm_Contrast", "original_shape_Volume"])) == ["classical"]


def test_groups_redefine_the_families():
    fams = feature_families(COLUMNS, parse_groups(["texture=glcm", "deep=vqhist,fisher"]))
    assert fams == {
        "texture": ["wavelet-LLH_glcm_Contrast"],
        "deep": ["original_vqhist_Codeword000", "original_vqhist_Codeword001", "original_fisher_Fv0000"],
    }


def test_unknown_class_in_groups_names_it_and_suggests():
    with pytest.raises(ParamsError, match=r"'glmc'.*Did you mean 'glcm'"):
        feature_families(COLUMNS, {"texture": ["glmc"]})


@pytest.mark.parametrize("spec", ["texture", "=glcm", "texture=", "texture=,"])
def test_malformed_group_specs(spec):
    with pytest.raises(ParamsError, match="NAME=class1,class2"):
        parse_groups([spec])


def test_no_feature_columns_is_an_error():
    with pytest.raises(ParamsError, match="no feature columns"):
        feature_families(["ID", "grade", "diagnostics_Error"])
