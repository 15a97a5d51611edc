"""Several configurations of one class in one params file, and studies over several feature tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepradiomics import Extractor
from deepradiomics.errors import ParamsError, StudyDataError
from deepradiomics.params import load_params
from deepradiomics.study.data import join_tables
from deepradiomics.study.families import feature_families, instance_classes

TWO_VQ = {
    "featureClass": {
        "firstorder": ["Mean"],
        "vqhist": {"model": "default", "normalize": "counts"},
        "vqfreq": {"class": "vqhist", "model": "default", "normalize": "frequency", "region": "roi"},
    }
}


def test_a_class_configured_twice_gets_its_own_token_columns_and_diagnostics():
    pytest.importorskip("torch")
    from deepradiomics.data import example_case

    files = example_case("lgg")
    row = Extractor(TWO_VQ).execute(files["Image"], files["Mask"], modalities={"t1": files["t1"], "t1ce": files["t1ce"]})
    counts = [c for c in row.index if c.startswith("original_vqhist_")]
    frequencies = [c for c in row.index if c.startswith("original_vqfreq_")]
    assert len(counts) == len(frequencies) == 512 and frequencies[0] == "original_vqfreq_Frequency000"
    assert row["diagnostics_vqfreq_Class"] == "vqhist" and "diagnostics_vqhist_Class" not in row.index
    assert abs(sum(row[frequencies].astype(float)) - 1.0) < 1e-9  # the ROI histogram, normalised
    assert sum(row[counts].astype(float)) > sum(row[frequencies].astype(float))
    # PyRadiomics' diagnostics come first, then deepradiomics' own
    diagnostics = [c for c in row.index if c.startswith("diagnostics_")]
    assert diagnostics[0].startswith("diagnostics_Versions_PyRadiomics")
    assert diagnostics.index("diagnostics_Versions_deepradiomics") > diagnostics.index("diagnostics_Mask-original_VoxelNum")
    # the study knows vqfreq is a vqhist: its own family, with vqhist's sub-families
    table = row.to_frame().T
    aliases = instance_classes(table)
    assert aliases == {"vqfreq": "vqhist"}
    families = feature_families(list(table.columns), classes=aliases)
    assert {"classical", "vqhist", "vqfreq", "all"} <= set(families)
    from deepradiomics.study.families import histogram_groups

    assert set(histogram_groups(list(table.columns), aliases)) == {"vqhist-counts", "vqfreq-frequency"}


@pytest.mark.parametrize(
    "entry, expected",
    [
        ({"mine": {"class": "nosuch"}}, ["featureClass.mine.class 'nosuch'", "not a registered class"]),
        ({"mine": {"class": "glcm"}}, ["PyRadiomics class", "cannot be configured twice"]),
        ({"glcm": {"class": "vqhist"}}, ["featureClass.glcm", "another name"]),
        ({"my_vq": {"class": "vqhist"}}, ["featureClass.my_vq", "'_'"]),
        ({"vqother": {"class": "vqhist", "normalise": "counts"}}, ["featureClass.vqother", "unknown setting 'normalise'", "normalize"]),
        ({"notaclass": {}}, ["unknown feature class 'featureClass.notaclass'", "class: <class>"]),
    ],
)
def test_bad_configurations_of_a_class_are_refused_with_the_key(entry, expected):
    with pytest.raises(ParamsError) as info:
        load_params({"featureClass": entry})
    for text in expected:
        assert text in str(info.value), (text, str(info.value))


def test_params_round_trip_keeps_the_class_key():
    params = load_params(TWO_VQ)
    assert params.class_of("vqfreq") == "vqhist" and params.class_of("vqhist") == "vqhist"
    assert "class" not in params.class_settings("vqfreq")
    assert load_params(params.to_dict()).hash == params.hash


def _table(ids, column, values, **extra):
    frame = pd.DataFrame({column: values, **extra}, index=pd.Index(ids, name="ID"))
    return frame


def test_several_feature_tables_join_on_the_id_and_missing_or_failed_cases_are_marked():
    a = _table(["p1", "p2", "p3"], "original_firstorder_Mean", [1.0, 2.0, 3.0], diagnostics_Error=["", "", ""], grade=["G2", "G3", "G2"])
    b = _table(["p1", "p2", "p4"], "original_vqhist_Codeword000", [5.0, 6.0, 7.0], diagnostics_Error=["", "boom", ""], grade=["x", "y", "z"])
    joined, name = join_tables([a, b])
    assert set(joined.index) == {"p1", "p2", "p3", "p4"}
    assert joined.loc["p1", "original_vqhist_Codeword000"] == 5.0 and joined.loc["p1", "grade"] == "G2"  # first table's column kept
    assert joined.loc["p1", "diagnostics_Error"] == ""
    assert "boom" in joined.loc["p2", "diagnostics_Error"]
    assert "no row in" in joined.loc["p3", "diagnostics_Error"] and "no row in" in joined.loc["p4", "diagnostics_Error"]
    assert np.isnan(joined.loc["p3", "original_vqhist_Codeword000"])
    with pytest.raises(StudyDataError, match="original_firstorder_Mean' is in both"):
        join_tables([a, a.copy()])
