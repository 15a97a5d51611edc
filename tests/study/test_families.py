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


def test_family_comes_from_the_registry_not_from_pyradiomics():
    from deepradiomics_plugins.template import ModalityMeans

    from deepradiomics.registry import get_registry

    registry = get_registry()
    registry.register(ModalityMeans, source="tests")
    try:
        fams = feature_families(["original_firstorder_Mean", "original_modalitymeans_MeanImage", "original_vqhist_Codeword000"])
    finally:
        registry.unregister("modalitymeans")
    assert fams["classical"] == ["original_firstorder_Mean", "original_modalitymeans_MeanImage"]  # hand-crafted, not PyRadiomics
    assert fams["vqhist"] == ["original_vqhist_Codeword000"]


def test_subfamilies_and_patterns_split_a_class():
    columns = ["original_glcm_Contrast"] + [f"original_vqhist_{p}{i:03d}" for p in ("Codeword", "Frequency") for i in range(3)]
    fams = feature_families(columns)
    assert list(fams) == ["classical", "vqhist", "vqhist-counts", "vqhist-frequency", "all"]
    assert fams["vqhist-frequency"] == [f"original_vqhist_Frequency{i:03d}" for i in range(3)]
    only_counts = feature_families(columns[:4])
    assert "vqhist-counts" not in only_counts  # a sub-family equal to its class is not repeated
    groups = feature_families(columns, parse_groups(["first=vqhist:Codeword00[01]", "texture=glcm"]))
    assert groups["first"] == ["original_vqhist_Codeword000", "original_vqhist_Codeword001"]
    with pytest.raises(ParamsError, match="matches no feature"):
        feature_families(columns, {"none": ["vqhist:Layer.*"]})
    with pytest.raises(ParamsError, match="not a valid regular expression"):
        feature_families(columns, {"bad": ["vqhist:Code(word"]})


def test_histogram_groups_come_from_class_metadata():
    from deepradiomics.study import histogram_groups

    columns = ["original_glcm_Contrast", "original_vqhist_Codeword000", "original_vqhist_Frequency000"]
    assert histogram_groups(columns) == {"vqhist-counts": ["original_vqhist_Codeword000"], "vqhist-frequency": ["original_vqhist_Frequency000"]}
