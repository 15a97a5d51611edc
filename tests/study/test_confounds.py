"""Confounds: covariates from the batch table's diagnostics, per-family correlation counts, caveats, report."""

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study.confounds import TABLE_COLUMNS, case_covariates, confound_notes, confound_table

from ..conftest import require_data
from ._synthetic import noise_table


def _diagnostics(index, voxels, spacing, size, roi=None, slices=None):
    table = pd.DataFrame(
        {
            "diagnostics_Mask-original_VoxelNum": voxels,
            "diagnostics_Image-original_Spacing": spacing,
            "diagnostics_Image-original_Size": size,
        },
        index=pd.Index(index, name="ID"),
    )
    if roi is not None:
        table["diagnostics_Case_RoiVolume"] = roi
    if slices is not None:
        table["diagnostics_Case_Slices"] = slices
    return table


def test_case_covariates_prefer_the_extractor_columns_and_fall_back_per_case():
    table = _diagnostics(
        ["a", "b", "c"],
        voxels=[100, 200, 300],
        spacing=["(0.5, 0.5, 3.0)", "(0.5, 0.5, 3.0)", "(1.0, 1.0, 1.0)"],
        size=["(256, 256, 20)", "(256, 256, 30)", "(256, 256, 88)"],
        roi=[99.0, np.nan, 300.0],  # b lacks it: PyRadiomics' voxel count x voxel volume fills in
        slices=[21, 31, np.nan],
    )
    cov = case_covariates(table)
    assert list(cov.columns) == ["roi_volume", "n_slices"] and list(cov.index) == ["a", "b", "c"]
    np.testing.assert_allclose(cov["roi_volume"], [99.0, 200 * 0.75, 300.0])
    np.testing.assert_allclose(cov["n_slices"], [21, 31, 88])
    assert cov.attrs["notes"] == []


def test_case_covariates_from_pyradiomics_diagnostics_only():
    table = _diagnostics(
        ["a", "b"], voxels=[10, 20], spacing=[(2.0, 2.0, 2.0), "(2.0, 2.0, 2.0)"], size=["(64, 64, 12)", (64, 64, 40)]
    )
    cov = case_covariates(table)
    np.testing.assert_allclose(cov["roi_volume"], [80.0, 160.0])
    np.testing.assert_allclose(cov["n_slices"], [12, 40])


def test_a_missing_covariate_is_left_out_with_a_note(caplog):
    table = pd.DataFrame({"diagnostics_Image-original_Size": ["(64, 64, 12)", "(64, 64, 40)"]}, index=["a", "b"])
    with caplog.at_level(logging.INFO, logger="deepradiomics.study"):
        cov = case_covariates(table)
    assert list(cov.columns) == ["n_slices"]
    assert len(cov.attrs["notes"]) == 1 and cov.attrs["notes"][0].startswith("ROI volume not available")
    assert "diagnostics_Case_RoiVolume" in caplog.text
    assert case_covariates(pd.DataFrame(index=["a"])).columns.tolist() == []  # nothing at all: still no error


def test_confound_table_counts_strong_spearman_correlations():
    X, _ = noise_table(n=50, p=8, seed=1)
    rng = np.random.default_rng(2)
    cov = pd.DataFrame({"n_slices": rng.integers(20, 89, 50).astype(float), "roi_volume": rng.gamma(2, 1e4, 50)}, index=X.index)
    cols = list(X.columns)
    X[cols[0]] = 64 * cov["n_slices"] + rng.normal(0, 200, 50)  # a slice-count proxy
    X[cols[1]] = -(cov["n_slices"] ** 2)  # monotone decreasing: rho = -1
    X[cols[2]] = 7.0  # constant: no correlation defined
    X.loc[X.index[:5], cols[3]] = np.nan  # gaps: pairwise complete cases
    families = {"first": cols[:4], "rest": cols[4:]}
    table = confound_table(X, cov, families, threshold=0.5)
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 4
    row = table.set_index(["family", "covariate"]).loc[("first", "n_slices")]
    assert (row["n_features"], row["n_constant"], row["n_strong"]) == (4, 1, 2)
    assert row["fraction"] == pytest.approx(2 / 3)
    assert row["top_feature"] == cols[1] and row["top_rho"] == pytest.approx(-1.0)
    assert row["n_cases"] == 50 and row["threshold"] == 0.5
    # every correlation agrees with scipy's Spearman on the cases where both values exist
    for covariate in cov.columns:
        for col in (cols[0], cols[3], cols[5]):
            ok = X[col].notna()
            rho = stats.spearmanr(X.loc[ok, col], cov.loc[ok, covariate]).statistic
            strong = confound_table(X[[col]], cov[[covariate]], {"one": [col]}, threshold=0.01).iloc[0]
            assert strong["top_rho"] == pytest.approx(rho, abs=1e-12)


def test_confound_table_edge_cases():
    X, _ = noise_table(n=10, p=3, seed=3)
    flat = pd.DataFrame({"n_slices": np.full(10, 20.0)}, index=X.index)  # every volume has 20 slices
    row = confound_table(X, flat, {"all": list(X.columns)}).iloc[0]
    assert row["n_strong"] == 0 and np.isnan(row["top_rho"]) and row["top_feature"] == ""
    partial = pd.DataFrame({"n_slices": np.r_[np.arange(5.0), [np.nan] * 5]}, index=X.index)
    assert confound_table(X, partial, {"all": list(X.columns)}).iloc[0]["n_cases"] == 5
    with pytest.raises(ParamsError, match="threshold must be in"):
        confound_table(X, flat, {"all": list(X.columns)}, threshold=1.5)


def test_confound_notes_only_above_the_fraction():
    base = {"n_features": 100, "n_constant": 0, "top_feature": "original_vqhist_Codeword214", "top_rho": 0.85, "n_cases": 63}
    records = [
        {**base, "family": "vqhist", "covariate": "n_slices", "n_strong": 20, "fraction": 0.2, "threshold": 0.5},
        {**base, "family": "classical", "covariate": "n_slices", "n_strong": 3, "fraction": 0.03, "threshold": 0.5},
        {**base, "family": "classical", "covariate": "roi_volume", "n_strong": 30, "fraction": 0.3, "threshold": 0.5},
    ]
    notes = confound_notes(records)
    assert len(notes) == 2
    assert notes[0].startswith(
        "vqhist: 20 of 100 non-constant features (20%) have |Spearman rho| >= 0.5 with the number of slices"
    )
    assert "acquisition" in notes[0] and "size of the region of interest" in notes[1]
    assert confound_notes(pd.DataFrame(records), fraction=0.25) == notes[1:]


def test_report_renders_the_confounds_section_and_its_caveats(tmp_path):
    from deepradiomics.study import run_study

    X, y = noise_table(n=30, p=6, seed=4)
    cov = pd.DataFrame({"n_slices": np.linspace(20, 88, 30)}, index=X.index)
    X.iloc[:, 0] = 64 * cov["n_slices"]
    labels = pd.DataFrame({"ID": X.index, "label": y})
    result = run_study(X, labels=labels, target="label", models=["logistic"], folds=2, repeats=1, responsible=False)
    table = confound_table(X, cov, {"classical": list(X.columns)})
    result.info["confounds"] = table.to_dict("records")
    page = result.write(tmp_path / "report").read_text()
    section = page[page.index("<h2>Confounds") : page.index("<h2>Methods")]
    assert "number of slices" in section and "original_firstorder_Noise000" in section and "17%" in section
    caveats = page[page.index("<h2>Caveats") : page.index("<h2>Performance")]
    assert confound_notes(table)[0] in caveats.replace("&gt;", ">")
    result.info.pop("confounds")
    assert "<h2>Confounds" not in result.write(tmp_path / "without").read_text()


def test_run_study_assesses_confounds_from_the_tables_diagnostics(tmp_path):
    from deepradiomics.study import run_study

    X, y = noise_table(n=30, p=6, seed=5)
    slices = np.linspace(20, 88, 30)
    X.iloc[:, 0] = 64 * slices
    labels = pd.DataFrame({"ID": X.index, "label": y})
    table = X.assign(diagnostics_Case_Slices=slices)
    result = run_study(table, labels=labels, target="label", models=["logistic"], folds=2, repeats=1, responsible=False)
    rows = {(r["family"], r["covariate"]): r for r in result.info["confounds"]}
    assert rows[("classical", "n_slices")]["n_strong"] >= 1 and rows[("classical", "n_slices")]["top_feature"] == X.columns[0]
    assert "<h2>Confounds" in result.write(tmp_path / "report").read_text()
    # without diagnostics there is nothing to assess, and no section
    plain = run_study(X, labels=labels, target="label", models=["logistic"], folds=2, repeats=1, responsible=False)
    assert "confounds" not in plain.info


def test_real_lgg_covariates_and_volume_confound():
    """Four real LGG cases (20 to 73 slices) through deepradiomics' extractor: the covariates match the
    manifest's slice counts and the masks' voxel counts, and PyRadiomics' VoxelVolume is flagged as a
    perfect ROI-volume proxy."""
    import SimpleITK as sitk

    from deepradiomics import Extractor

    lgg = require_data("lgg")
    manifest = pd.read_csv(lgg / "cases.csv").set_index("ID")
    chosen = manifest.sort_values("n_slices").iloc[[0, 20, 40, 60]]
    params = {"setting": {"binWidth": 25.0, "label": 1}, "imageType": {"Original": {}}}
    params["featureClass"] = {"firstorder": [], "shape": ["VoxelVolume", "Sphericity"]}
    extractor = Extractor(params)
    table = pd.DataFrame({case: extractor.execute(lgg / r.Image, lgg / r.Mask, case_id=case) for case, r in chosen.iterrows()}).T
    cov = case_covariates(table)
    np.testing.assert_array_equal(cov["n_slices"], chosen["n_slices"])
    voxels = [np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(lgg / m)))) for m in chosen["Mask"]]
    np.testing.assert_allclose(cov["roi_volume"], voxels)  # 1 x 1 x 1 mm voxels
    np.testing.assert_allclose(cov["roi_volume"], table["original_shape_VoxelVolume"].astype(float))
    # the PyRadiomics fallback gives the same covariates on the same real rows
    fallback = case_covariates(table.drop(columns=["diagnostics_Case_RoiVolume", "diagnostics_Case_Slices"]))
    pd.testing.assert_frame_equal(fallback, cov, check_dtype=False)
    features = table[[c for c in table.columns if c.startswith("original_")]].astype(float)
    families = {"firstorder": [c for c in features if "_firstorder_" in c], "shape": [c for c in features if "_shape_" in c]}
    result = confound_table(features, cov, families).set_index(["family", "covariate"])
    shape = result.loc[("shape", "roi_volume")]
    assert shape["top_feature"] == "original_shape_VoxelVolume" and shape["top_rho"] == pytest.approx(1.0)
    assert shape["n_strong"] >= 1 and result.loc[("firstorder", "roi_volume"), "n_features"] == 18
