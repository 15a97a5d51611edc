from pathlib import Path

import pytest
import yaml

from deepradiomics.errors import ParamsError
from deepradiomics.params import load_params, parse_override

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path, data, name="params.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_classical_params_load_unchanged():
    params = load_params(REPO / "params" / "classical.yaml")
    assert list(params.pyradiomics) == ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
    assert params.setting["binWidth"] == 25
    assert params.image_types == {"Original": {}}
    assert params.plugins == {}


def test_pyradiomics_example_file_with_filters_loads():
    params = load_params({
        "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 3.0]}, "Wavelet": {}},
        "featureClass": {"shape": None, "firstorder": [], "glcm": ["Contrast", "JointEntropy"]},
        "setting": {"binWidth": 25, "label": 1, "interpolator": "sitkBSpline", "resampledPixelSpacing": None},
        "voxelSetting": {"kernelRadius": 2},
    })
    assert params.pyradiomics["glcm"] == ["Contrast", "JointEntropy"]
    assert params.image_types["LoG"] == {"sigma": [1.0, 3.0]}


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"featureClass": {"glmc": []}}, ["featureClass.glmc", "Did you mean 'glcm'"]),
        ({"setting": {"binwidth": 25}, "featureClass": {"glcm": []}}, ["setting.binwidth", "Did you mean 'binWidth'"]),
        ({"imagetype": {"Original": {}}}, ["imagetype", "Did you mean 'imageType'"]),
        ({"imageType": {"Wavelett": {}}, "featureClass": {"glcm": []}}, ["imageType.Wavelett", "Did you mean 'Wavelet'"]),
        ({"featureClass": {"glcm": ["Contrst"]}}, ["Contrst", "Did you mean 'Contrast'"]),
        ({"setting": {"binWidth": -3}, "featureClass": {"glcm": []}}, ["binWidth"]),
        ({"featureClass": {"glcm": "Contrast"}}, ["featureClass.glcm", "list"]),
    ],
)
def test_errors_name_file_key_and_closest_valid_name(tmp_path, data, expected):
    path = write(tmp_path, data)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(write(tmp_path, "featureClass: [unclosed"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, "- a\n- b\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "featureClass: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_overrides_hash_and_round_trip():
    params = load_params({"featureClass": {"firstorder": []}, "setting": {"binWidth": 25}})
    changed = params.with_settings(dict([parse_override("binWidth=10"), parse_override("resampledPixelSpacing=[1, 1, 1]")]))
    assert changed.setting["binWidth"] == 10 and changed.setting["resampledPixelSpacing"] == [1, 1, 1]
    assert changed.hash != params.hash
    assert load_params(params.to_dict()).hash == params.hash
    with pytest.raises(ParamsError, match="KEY=VALUE"):
        parse_override("binWidth")
    with pytest.raises(ParamsError, match="binwidth"):
        params.with_settings({"binwidth": 3})


def test_no_feature_class_means_pyradiomics_defaults():
    params = load_params({"setting": {"binWidth": 25}})
    assert set(params.pyradiomics) == {"firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}


def test_missing_params_file_is_catchable_as_ioerror_and_as_params_error(tmp_path):
    from deepradiomics.errors import ParamsError

    for error in (IOError, ParamsError):
        with pytest.raises(error, match="does not exist"):
            load_params(tmp_path / "nowhere.yaml")


def test_overrides_route_voxel_settings_to_their_section():
    params = load_params({"featureClass": {"firstorder": ["Mean"]}}).with_settings({"kernelRadius": 2, "binWidth": 10.0})
    assert params.voxel_setting == {"kernelRadius": 2} and params.setting["binWidth"] == 10.0
