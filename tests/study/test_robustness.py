"""Robustness sweeps: ICC by hand, perturbation definitions, every family through the batch on real LGG data, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepradiomics.errors import ParamsError
from deepradiomics.perturb import IntensityScale, IntensityShift, parse_levels, perturbation
from deepradiomics.study.robustness import histogram_ratio, run_robustness
from deepradiomics.study.statistics import icc, icc_many
from tests.conftest import DATA
from tests.study._tiny_model import tiny_bundle

LGG = DATA / "lgg"
LGG_MODALITIES = ("t1", "Image", "t1ce")
K = 16

# Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared data folder sits beside the repository)")
    return path


# ---------------------------------------------------------------------------------------------- ICC
def test_icc_equals_shrout_fleiss_textbook_values():
    result = icc(SHROUT_FLEISS)
    # the paper's ANOVA table: BMS 11.24, JMS 32.49, EMS 1.02, WMS 6.26
    assert result["bms"] == pytest.approx(11.24, abs=0.005)
    assert result["jms"] == pytest.approx(32.49, abs=0.005)
    assert result["ems"] == pytest.approx(1.02, abs=0.005)
    assert result["wms"] == pytest.approx(6.26, abs=0.005)
    # ... and its Table 4: ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71
    assert round(result["icc11"], 2) == 0.17
    assert round(result["icc21"], 2) == 0.29
    assert round(result["icc31"], 2) == 0.71


def test_icc_equals_a_hand_computed_anova():
    y = SHROUT_FLEISS
    n, k = y.shape
    grand = sum(sum(row) for row in y) / (n * k)
    ss_rows = sum(k * (sum(row) / k - grand) ** 2 for row in y)
    ss_cols = sum(n * (sum(y[i][j] for i in range(n)) / n - grand) ** 2 for j in range(k))
    ss_total = sum((y[i][j] - grand) ** 2 for i in range(n) for j in range(k))
    bms, jms = ss_rows / (n - 1), ss_cols / (k - 1)
    ems = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    expected_21 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    expected_31 = (bms - ems) / (bms + (k - 1) * ems)
    result = icc(y)
    assert result["icc21"] == pytest.approx(expected_21, rel=1e-12)
    assert result["icc31"] == pytest.approx(expected_31, rel=1e-12)


def test_icc_absolute_agreement_penalises_a_systematic_shift_consistency_does_not():
    targets = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    shifted = np.stack([targets, targets + 3.0, targets + 6.0], axis=1)
    result = icc(shifted)
    assert result["icc31"] == pytest.approx(1.0)
    assert result["icc21"] < 0.7
    identical = icc(np.stack([targets, targets], axis=1))
    assert identical["icc21"] == pytest.approx(1.0) and identical["icc31"] == pytest.approx(1.0)
    constant = icc_many(np.ones((4, 3, 1)))
    assert np.isnan(constant["icc21"][0])
    many = icc_many(np.stack([SHROUT_FLEISS, 2 * SHROUT_FLEISS + 7], axis=2))
    np.testing.assert_allclose(many["icc21"], [icc(SHROUT_FLEISS)["icc21"]] * 2)  # affine-invariant


def test_levels_parsing():
    assert parse_levels("0.5,0.1") == [0.0, 0.1, 0.5]
    with pytest.raises(ParamsError):
        parse_levels("0,a")
    with pytest.raises(ParamsError):
        parse_levels("0")
    with pytest.raises(ParamsError):
        parse_levels("-1,0.5")


# ---------------------------------------------------------------------------------------------- perturbations
def test_perturbations_whole_image_and_foreground():
    sitk = pytest.importorskip("SimpleITK")
    from deepradiomics.nets.preprocess import zscore_foreground

    image = sitk.ReadImage(str(_require(LGG / "TCGA_CS_4942_19970222" / "flair.nii.gz")))
    raw = sitk.GetArrayFromImage(image).astype(np.float64)
    foreground = raw > 0
    mean, sd = raw[foreground].mean(), raw[foreground].std()
    scaled = sitk.GetArrayFromImage(IntensityScale(0.3)(image)).astype(np.float64)
    np.testing.assert_allclose(scaled, 1.3 * raw, rtol=1e-6)  # the paper's: the entire pixel value
    shifted = sitk.GetArrayFromImage(IntensityShift(0.5)(image)).astype(np.float64)
    np.testing.assert_allclose(shifted, raw + 0.5 * sd, rtol=1e-6)  # background too
    fg_scaled = sitk.GetArrayFromImage(IntensityScale(1.0, region="foreground")(image)).astype(np.float64)
    assert np.array_equal(fg_scaled[~foreground], raw[~foreground])
    np.testing.assert_allclose(fg_scaled[foreground], mean + 2.0 * (raw[foreground] - mean), rtol=1e-5)
    fg_shifted = sitk.GetArrayFromImage(IntensityShift(1.0, region="foreground")(image)).astype(np.float64)
    assert np.array_equal(fg_shifted[~foreground], raw[~foreground])
    # a whole-image scale leaves the foreground z-score unchanged; a whole-image shift does not (background > 0)
    np.testing.assert_allclose(zscore_foreground(scaled), zscore_foreground(raw), atol=1e-4)
    assert (zscore_foreground(shifted) != 0).all()
    unperturbed = IntensityScale(0.0)(image)  # float32, so every level takes PyRadiomics' float path
    assert unperturbed.GetPixelID() == sitk.sitkFloat32 and unperturbed.GetOrigin() == image.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(unperturbed), raw)
    assert perturbation("shift", 0.2, "foreground").describe() == "shift(0.2, foreground)"
    with pytest.raises(ParamsError, match="region"):
        perturbation("scale", 0.2, "tumour")
    with pytest.raises(ParamsError, match="not one of"):
        perturbation("rotate", 0.2)


def test_histogram_ratio():
    assert histogram_ratio([3, 1, 0], [3, 1, 0]) == 0
    assert histogram_ratio([2, 1, 1], [3, 1, 0]) == pytest.approx(0.5)
    assert np.isnan(histogram_ratio([1, 0], [0, 0]))


# ---------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def lgg_rows():
    from deepradiomics.batch import case_from_row, read_manifest

    frame, base = read_manifest(_require(LGG / "cases.csv"))
    return frame, base, case_from_row


@pytest.fixture(scope="module")
def model(tmp_path_factory, lgg_rows, one_torch_thread):
    frame, base, case_from_row = lgg_rows
    case = case_from_row(frame.iloc[0].to_dict(), base)
    return tiny_bundle(tmp_path_factory.mktemp("tiny"), [np.asarray(case.array(m)) for m in LGG_MODALITIES], LGG_MODALITIES)


def _manifest(tmp_path: Path, frame: pd.DataFrame, base: Path, ids, name: str = "cases.csv") -> Path:
    rows = frame.set_index("ID").loc[list(ids)].reset_index()
    for column in [c for c in rows.columns if c in ("Image", "Mask") or c.startswith("Image_")]:
        rows[column] = [str(base / p) if p else "" for p in rows[column]]
    path = tmp_path / name
    rows.to_csv(path, index=False)
    return path


def _params(tmp_path: Path, model: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(
        "setting:\n  binWidth: 25.0\n  label: 1\n"
        "featureClass:\n  firstorder: [Mean, Energy, Skewness]\n  shape: [MeshVolume]\n  glcm: [Contrast, Idn]\n"
        f"  vqhist:\n    model: {model}\n"
    )
    return params


def test_level_0_is_the_plain_extraction_in_float(model, lgg_rows, tmp_path):
    from deepradiomics import Extractor

    frame, base, case_from_row = lgg_rows
    case = case_from_row(frame.iloc[3].to_dict(), base)
    extractor = Extractor(_params(tmp_path, model))
    plain = extractor.compute(case)
    level0 = extractor.compute(case.with_transforms(perturbation("scale", 0.0)))
    vq = [k for k in plain if k.startswith("original_vqhist_")]
    assert [plain[k] for k in vq] == [level0[k] for k in vq] and sum(plain[k] for k in vq) > 0
    assert level0["diagnostics_Case_Transforms"] == "scale(0, image)"


def test_run_robustness_end_to_end_with_labels_resume_and_a_failing_case(model, lgg_rows, tmp_path, monkeypatch):
    from deepradiomics import batch

    frame, base, _ = lgg_rows
    g2 = frame[frame["grade"] == "G2"]["ID"].iloc[:2].tolist()
    g3 = frame[frame["grade"] == "G3"]["ID"].iloc[:2].tolist()
    manifest = pd.read_csv(_manifest(tmp_path, frame, base, g2 + g3), dtype=str, keep_default_na=False)
    broken = manifest.iloc[0].copy()
    broken["ID"], broken["Mask"] = "broken", str(tmp_path / "no_mask.nii.gz")
    manifest = pd.concat([manifest, broken.to_frame().T], ignore_index=True)
    path = tmp_path / "with_broken.csv"
    manifest.to_csv(path, index=False)
    cache = tmp_path / "cache"
    # the target is a column of the manifest (it passes through the batch): no separate labels table needed
    result = run_robustness(_params(tmp_path, model), path, levels=[0.0, 1.0], target="grade", positive="G3", out_dir=cache)
    assert len(result.features) == 5 * 3  # 5 cases x (level 0 once + scale 1.0 + shift 1.0)
    assert any("broken" in note for note in result.notes) and [i for i, _ in result.failed][0].startswith("broken|")
    hist = result.histogram_summary.set_index(["histogram", "kind", "level"])
    assert hist.loc[("vqhist-counts", "scale", 0.0), "ratio_mean"] == 0
    # whole-image scale: vqhist's foreground z-score undoes it (only float rounding can move a code);
    # whole-image shift: the background becomes foreground and the codewords change
    scale, shift = hist.loc[("vqhist-counts", "scale", 1.0), "ratio_mean"], hist.loc[("vqhist-counts", "shift", 1.0), "ratio_mean"]
    assert scale < 0.02 and shift > 0.05 and shift > 5 * scale, (scale, shift)
    icc_table = result.icc[result.icc["family"] != "all"].set_index(["feature", "kind"])
    assert set(result.icc["family"]) == {"classical", "vqhist"}  # "all" would only repeat them
    # shape does not read intensities: perfect agreement; Skewness is invariant to x -> a x and x -> x + c
    assert icc_table.loc[("original_shape_MeshVolume", "scale"), "icc21"] == pytest.approx(1.0)
    assert icc_table.loc[("original_firstorder_Skewness", "scale"), "icc21"] == pytest.approx(1.0, abs=1e-6)
    assert icc_table.loc[("original_firstorder_Skewness", "shift"), "icc21"] == pytest.approx(1.0, abs=1e-6)
    assert icc_table.loc[("original_firstorder_Mean", "scale"), "icc21"] < 0.9  # the mean doubles at s = 1
    classification = result.classification
    assert set(classification["family"]) == {"classical", "vqhist", "all"}
    assert classification["AUC"].between(0, 1).all() and (classification[classification["level"] == 0]["AUC_change"] == 0).all()
    out = result.write(tmp_path / "out")
    for name in ("robustness.csv", "icc.csv", "icc_summary.csv", "histogram_ratios.csv", "classification.csv", "robustness.png", "features.csv"):
        assert (out / name).is_file(), name
    combined = pd.read_csv(out / "robustness.csv")
    assert {"vqhist-counts_ratio_mean", "classical_icc21_median", "vqhist_AUC", "classical_AUC"} <= set(combined.columns)
    # a second run resumes: only the failing case is tried again
    computed = []
    real = batch.BatchTask.__call__
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, b: computed.append(row["ID"]) or real(t, row, b))
    again = run_robustness(_params(tmp_path, model), path, levels=[0.0, 1.0], target="grade", positive="G3", out_dir=cache)
    assert computed and all(i.startswith("broken|") for i in computed)
    pd.testing.assert_frame_equal(again.icc, result.icc)


def test_robustness_cli(model, lgg_rows, tmp_path):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    frame, base, _ = lgg_rows
    manifest = _manifest(tmp_path, frame, base, frame["ID"].iloc[:3])
    runner = CliRunner()
    help_result = runner.invoke(main, ["robustness", "--help"])
    assert help_result.exit_code == 0 and "--levels" in help_result.output and "--region" in help_result.output
    out = tmp_path / "out"
    args = ["robustness", str(_params(tmp_path, model)), str(manifest), "--levels", "0,1", "--limit", "2", "--region", "foreground"]
    result = runner.invoke(main, [*args, "--no-progress", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "histogram_ratios.csv")
    assert sorted(table["ID"].unique()) == sorted(frame["ID"].iloc[:2])  # --limit 2 of 3
    assert (out / "robustness.png").stat().st_size > 1000
    bad = runner.invoke(main, [*args[:3], "--labels", str(manifest), "-o", str(out)])
    assert bad.exit_code != 0 and "target" in bad.output
