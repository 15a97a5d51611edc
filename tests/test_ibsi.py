"""IBSI 1 compliance (deepradiomics.ibsi): the digital phantom and CT configurations A-E against the consensus values.

Every mapped value must pass except the documented known deviations, and the list must be exactly the
failures (an unexplained failure and a listed value that passes both fail). The causes are checked by
removing them: IBSI's definitions (``ibsi_value``), IBSI's interpolation (``interpolation="ibsi"``) and
IBSI's fixed bin size edges (PyRadiomics' getBinEdges replaced for one run). The full check of every
correction on every configuration is ``benchmarks/ibsi_compare.py --evidence``; here the runs that can
remove a listed cause are made (the binning runs only where the bins differ: the phantom and C).
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from deepradiomics import ibsi
from deepradiomics.cli import main

CT = ("A", "B", "C", "D", "E")


@pytest.fixture(scope="module")
def ibsi_dir(data_dir):
    path = data_dir / "ibsi"
    if not path.is_dir():
        pytest.skip(f"IBSI data not found at {path}")
    return path


@pytest.fixture(scope="module")
def run(ibsi_dir, quiet_pyradiomics):
    """``run(name, interpolation, binning)``: one compliance table per configuration and mode, computed once."""
    tables = {}

    def compute(name: str, interpolation: str = "pyradiomics", binning: bool = False):
        key = (name, interpolation, binning)
        if key not in tables:
            missing = ibsi.CONFIGURATIONS[name].missing(ibsi_dir)
            if missing:
                pytest.skip(f"IBSI configuration {name}: {missing[0]} not found")
            with pytest.MonkeyPatch.context() as patch:
                if binning:
                    from radiomics import imageoperations

                    patch.setattr(imageoperations, "getBinEdges", ibsi.ibsi_bin_edges)
                tables[key] = ibsi.run_configuration(name, ibsi_dir, interpolation=interpolation)
        return tables[key]

    return compute


def failures(table) -> set[str]:
    return set(table.loc[~table["passed"], "tag"])


def assert_exactly_known(table, name: str, interpolation: str = "pyradiomics") -> None:
    known = set(ibsi.known_deviations(name, interpolation))
    failed = failures(table)
    unexplained = table[table["status"] == "unexplained"]
    assert unexplained.empty, f"{name}: unexplained failures:\n{unexplained[['tag', 'column', 'value', 'reference', 'tolerance']].to_string()}"
    assert not known - failed, f"{name}: listed as known deviations but passing: {sorted(known - failed)}"
    assert failed == known


def assert_causes(name: str, runs: dict) -> None:
    """Each failure of the default run passes once the corrections of its listed causes are applied."""
    explained = ibsi.explain_failures(runs)
    assert set(explained["tag"]) == set(ibsi.KNOWN_DEVIATIONS[name])
    wrong = explained[explained["causes"] != explained["listed"]]
    assert wrong.empty, f"{name}: causes found by removing them differ from the list:\n{wrong.to_string()}"


# -- mechanics (no data) ----------------------------------------------------------------------------
def test_within_tolerance_compares_at_three_significant_digits_or_unrounded():
    assert ibsi.within_tolerance(2.2046, 2.2, 0.0)  # consensus values are 3-digit roundings, trailing zero dropped
    assert ibsi.within_tolerance(0.0295406, 0.0295, 0.0)
    assert not ibsi.within_tolerance(2.2051, 2.2, 0.0)
    assert ibsi.within_tolerance(3065.0, 3065.0, 0.0)  # an exact diagnostic with 4 digits matches unrounded
    assert not ibsi.within_tolerance(3066.0, 3065.0, 0.0)
    assert ibsi.within_tolerance(9.308, 9.31, 0.06) and not ibsi.within_tolerance(9.245, 9.31, 0.06)
    assert ibsi.within_tolerance(0.0416, 0.0411, 0.0005)  # on the bound despite binary rounding
    assert not ibsi.within_tolerance(math.nan, 1.0, 1.0)
    assert ibsi.round_significant(-0.0033417) == -0.00334 and ibsi.round_significant(0.0) == 0.0


def test_ibsi_interpolate_centres_the_grid_keeps_spacing_rounds_and_thresholds_the_mask():
    # the manual's example ("Interpolation grid"): a 4 x 4 grid at 3 mm becomes 6 x 6 at 2 mm, centred
    image = sitk.GetImageFromArray([[[0.0, 4.0, 8.0, 14.0]] * 4])
    image.SetSpacing((3.0, 3.0, 5.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    mask = sitk.GetImageFromArray([[[0, 1, 0, 0]] * 4])
    mask.CopyInformation(image)
    out, roi = ibsi.ibsi_interpolate(image, mask, (2.0, 2.0, 0.0), "sitkLinear")
    assert out.GetSize() == (6, 6, 1) and out.GetSpacing() == (2.0, 2.0, 5.0)
    # origin x_a + (s_a (n_a - 1) - s_b (n_b - 1)) / 2 = 10 + (9 - 10) / 2; z is kept
    assert out.GetOrigin() == pytest.approx((9.5, 19.5, 30.0))
    # new points at original grid positions -1/6, 1/2, 7/6, 11/6, 5/2, 19/6: linear between the columns,
    # the nearest value beyond the edges, rounded to integers (4.67 -> 5, 7.33 -> 7)
    assert list(sitk.GetArrayFromImage(out)[0, 0]) == [0.0, 2.0, 5.0, 7.0, 11.0, 14.0]
    # the mask's linear fraction there: 0, 0.5, 0.83, 0.17, 0, 0 -> kept where >= 0.5 (0.5 included)
    assert list(sitk.GetArrayFromImage(roi)[0, 0]) == [0, 1, 1, 0, 0, 0]
    unrounded, _ = ibsi.ibsi_interpolate(image, mask, (2.0, 2.0, 0.0), round_intensities=False)
    assert sitk.GetArrayFromImage(unrounded)[0, 0] == pytest.approx([0.0, 2.0, 14 / 3, 22 / 3, 11.0, 14.0], abs=1e-5)


def test_ibsi_bin_edges_start_at_the_resegmentation_lower_bound():
    edges = ibsi.ibsi_bin_edges([-939.0, -10.0, 360.0], binWidth=25.0, resegmentRange=[-1000.0, 400.0])
    assert edges[0] == -1000.0 and edges[1] == -975.0 and edges[-1] > 360.0 and edges[-2] <= 360.0
    data_driven = ibsi.ibsi_bin_edges([3.0, 4.0], binWidth=1.0)  # no range: from the ROI minimum
    assert list(data_driven) == [3.0, 4.0, 5.0]


def test_configuration_params_enable_exactly_the_mapped_features():
    mapped = [
        ibsi.MappedValue("cm_contrast_3D_comb", "3D_Combined", "original_glcm_Contrast"),
        ibsi.MappedValue("cm_dissimilarity_3D_comb", "3D_Combined", "original_glcm_DifferenceAverage"),
        ibsi.MappedValue("cm_diff_avg_3D_comb", "3D_Combined", "original_glcm_DifferenceAverage"),
        ibsi.MappedValue("stat_mean", "3D", "original_firstorder_Mean"),
    ]
    params = ibsi.configuration_params("C", mapped, "3D_Combined")
    assert params["featureClass"] == {"glcm": ["Contrast", "DifferenceAverage"]}
    setting = params["setting"]
    assert setting["weightingNorm"] == "no_weighting" and setting["force2D"] is False
    assert setting["resampledPixelSpacing"] == [2.0, 2.0, 2.0] and setting["interpolator"] == "sitkLinear"
    assert "resampledPixelSpacing" not in ibsi.configuration_params("C", mapped, "3D", interpolation="ibsi")["setting"]
    two_d = ibsi.configuration_params("B", mapped, "2D")["setting"]
    assert two_d["force2D"] is True and "weightingNorm" not in two_d and two_d["binCount"] == 32


# -- the digital phantom (fast) ---------------------------------------------------------------------
def test_phantom_fails_exactly_its_known_deviations(run):
    table = run("phantom")
    assert len(table) == 267  # every tag PyRadiomics' benchmark maps
    assert_exactly_known(table, "phantom")
    assert int(table["passed"].sum()) == 264 and bool(table["ibsi_passed"].all())
    kurtosis = table.set_index("tag").loc["stat_kurt"]
    assert kurtosis["ibsi_value"] == pytest.approx(kurtosis["value"] - 3.0)


def test_phantom_causes_are_removed_by_their_corrections(run):
    runs = {
        frozenset(): run("phantom"),
        frozenset({"interpolation"}): run("phantom", "ibsi"),
        frozenset({"binning"}): run("phantom", binning=True),
        frozenset({"interpolation", "binning"}): run("phantom", "ibsi", binning=True),
    }
    assert_causes("phantom", runs)


def test_pyradiomics_alone_gives_identical_values_on_the_phantom(run, ibsi_dir):
    ours = run("phantom")
    alone = ibsi.run_configuration("phantom", ibsi_dir, engine="pyradiomics")
    pd.testing.assert_series_equal(ours["value"], alone["value"])
    assert list(ours["status"]) == list(alone["status"])


# -- the CT phantom, configurations A-E (slow) --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", CT)
def test_ct_configuration_fails_exactly_its_known_deviations(run, name):
    table = run(name)
    assert len(table) == 209
    assert_exactly_known(table, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", CT)
def test_ct_causes_are_removed_by_their_corrections(run, name):
    ibsi_run = run(name, "ibsi")
    assert_exactly_known(ibsi_run, name, "ibsi")  # what is left with IBSI's interpolation is listed too
    runs = {frozenset(): run(name), frozenset({"interpolation"}): ibsi_run}
    if name == "C":  # fixed bin size whose first PyRadiomics edge is not the re-segmentation bound
        runs[frozenset({"binning"})] = run(name, binning=True)
        runs[frozenset({"interpolation", "binning"})] = run(name, "ibsi", binning=True)
    assert_causes(name, runs)


@pytest.mark.slow
def test_configuration_e_outlier_filtering_reproduces_the_reference_voxel_count(run):
    table = run("E", "ibsi").set_index("tag")
    for tag in ("int_mask_vox_count_reseg_roi", "int_mask_min_int_reseg_roi", "int_mask_max_int_reseg_roi"):
        assert table.loc[tag, "passed"], table.loc[tag].to_dict()
    assert table.loc["int_mask_vox_count_reseg_roi", "value"] == 44484  # the reference value itself


# -- the command ----------------------------------------------------------------------------------
def test_cli_ibsi_on_the_phantom_prints_the_summary_and_writes_the_table(ibsi_dir, tmp_path, quiet_pyradiomics):
    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["ibsi", "--data", str(ibsi_dir), "--config", "phantom", "-o", str(report)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["mapped", "passed", "failed_known", "failed_unexplained", "listed_but_passing", "passed_ibsi_definition"]
    assert lines[-1].split() == ["phantom", "267", "264", "3", "0", "0", "267"]
    rows = json.loads(report.read_text())
    assert len(rows) == 267 and {row["status"] for row in rows} == {"pass", "known"}
    kurtosis = next(row for row in rows if row["tag"] == "stat_kurt")
    assert kurtosis["known_deviation"] == "kurtosis" and "excess kurtosis" in kurtosis["cause"]


def test_cli_ibsi_skips_a_configuration_without_its_files_and_fails_when_none_can_run(ibsi_dir, tmp_path, quiet_pyradiomics):
    import shutil

    partial = tmp_path / "ibsi"
    shutil.copytree(ibsi_dir / "digital_phantom", partial / "digital_phantom")
    shutil.copytree(ibsi_dir / "reference_values", partial / "reference_values")
    result = CliRunner().invoke(main, ["ibsi", "--data", str(partial), "--config", "phantom,C"])
    assert result.exit_code == 0, result.output
    assert f"skipped IBSI configuration C: '{partial / 'ct_phantom' / 'image.nii.gz'}' not found" in result.stderr
    assert "phantom" in result.stdout and "\nC " not in result.stdout
    none = CliRunner().invoke(main, ["ibsi", "--data", str(partial), "--config", "A"])
    assert none.exit_code == 1 and none.stderr.count("Error:") == 1 and str(partial) in none.stderr


def test_cli_ibsi_names_a_missing_data_folder_and_refuses_an_unknown_configuration(tmp_path):
    missing = tmp_path / "nowhere"
    result = CliRunner().invoke(main, ["ibsi", "--data", str(missing)])
    assert result.exit_code == 1 and f"'{missing}' not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    unknown = CliRunner().invoke(main, ["ibsi", "--config", "phantom,F"])
    assert unknown.exit_code == 2 and "'F' is not an IBSI configuration" in unknown.stderr
