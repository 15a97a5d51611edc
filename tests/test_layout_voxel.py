"""PyRadiomics-style tables and voxel-based maps through the CLI (extract and batch), on real data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from click.testing import CliRunner

from deepradiomics.cli import main
from deepradiomics.data import example_case

PARAMS = "setting: {binWidth: 25.0}\nfeatureClass:\n  firstorder: [Mean, Entropy]\n  glcm: [Contrast]\n  shape: [VoxelVolume]\n"


@pytest.fixture
def manifest(tmp_path, data_dir):
    folder = data_dir / "pyradiomics"
    rows = [{"ID": c, "Image": str(folder / f"{c}_image.nrrd"), "Mask": str(folder / f"{c}_label.nrrd"), "site": "x"} for c in ("brain1", "breast1")]
    path = tmp_path / "cases.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_pyradiomics_layout_equals_pyradiomics_own_cli(tmp_path, manifest):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    ours = tmp_path / "ours.csv"
    result = CliRunner().invoke(main, ["batch", str(params), str(manifest), "--layout", "pyradiomics", "-o", str(ours), "--no-progress"])
    assert result.exit_code == 0, result.output
    theirs = tmp_path / "theirs.csv"
    cli = Path(sys.executable).parent / "pyradiomics"
    subprocess.run([str(cli), str(manifest), "-p", str(params), "-o", str(theirs), "-f", "csv"], check=True, capture_output=True)
    a, b = pd.read_csv(ours), pd.read_csv(theirs)
    assert list(a.columns) == list(b.columns)  # the same columns in the same order, no index, no extras
    features = [c for c in a.columns if c.startswith("original_")]
    assert features[0] == "original_shape_VoxelVolume"  # PyRadiomics' order: shape first
    pd.testing.assert_frame_equal(a[["ID", "Image", "Mask", "site", *features]], b[["ID", "Image", "Mask", "site", *features]])


def test_pyradiomics_layout_keeps_a_failed_case_as_its_paths_and_exits_0(tmp_path, lgg_case):
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    empty = sitk.Image(sitk.ReadImage(str(lgg_case["mask"])))
    empty = sitk.Multiply(empty, 0)
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    runner = CliRunner()
    result = runner.invoke(main, ["extract", str(params), str(lgg_case["flair"]), str(tmp_path / "empty.nii.gz"), "--layout", "pyradiomics"])
    assert result.exit_code == 0 and "empty" in result.stderr
    assert result.stdout.splitlines() == ["Image,Mask", f"{lgg_case['flair']},{tmp_path / 'empty.nii.gz'}"]
    default = runner.invoke(main, ["extract", str(params), str(lgg_case["flair"]), str(tmp_path / "empty.nii.gz")])
    assert default.exit_code == 1  # deepradiomics' own layout keeps refusing


def test_extract_voxel_mode_writes_pyradiomics_maps_on_the_image_grid(tmp_path):
    from deepradiomics.compat import RadiomicsFeatureExtractor

    case = example_case("brain1")
    params = tmp_path / "params.yaml"
    params.write_text("setting: {binWidth: 25.0}\nvoxelSetting: {kernelRadius: 1}\nfeatureClass:\n  firstorder: [Mean]\n  glcm: [Contrast]\n")
    out = tmp_path / "maps"
    result = CliRunner().invoke(main, ["extract", str(params), str(case["Image"]), str(case["Mask"]), "--mode", "voxel", "-o", str(out), "-j", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "maps.csv", index_col=0)
    assert Path(table.loc["brain1", "original_glcm_Contrast"]).is_file()
    written = sitk.ReadImage(table.loc["brain1", "original_firstorder_Mean"])
    image = sitk.ReadImage(str(case["Image"]))
    assert written.GetSize() == image.GetSize() and written.GetOrigin() == image.GetOrigin()
    # PyRadiomics' Mean map, from the same settings with Mean alone: its values do not depend on the other classes,
    # and PyRadiomics' GLCM over brain1's whole ROI (only checked for its file above) is most of this test's time
    mean_only = tmp_path / "mean.yaml"
    mean_only.write_text("setting: {binWidth: 25.0}\nvoxelSetting: {kernelRadius: 1}\nfeatureClass:\n  firstorder: [Mean]\n")
    reference = RadiomicsFeatureExtractor(str(mean_only)).execute(str(case["Image"]), str(case["Mask"]), voxelBased=True)["original_firstorder_Mean"]
    expected = sitk.GetArrayFromImage(reference)
    start = image.TransformPhysicalPointToIndex(reference.GetOrigin())
    got = sitk.GetArrayFromImage(written)
    inside = got[start[2] : start[2] + expected.shape[0], start[1] : start[1] + expected.shape[1], start[0] : start[0] + expected.shape[2]]
    np.testing.assert_array_equal(inside, expected)  # PyRadiomics' values, voxel for voxel
    assert np.isnan(got).sum() == got.size - expected.size  # outside PyRadiomics' box: NaN


def test_batch_voxel_mode_resumes_and_recomputes_a_case_whose_maps_are_gone(tmp_path, monkeypatch):
    from deepradiomics import batch

    case = example_case("lgg")
    rows = [{"ID": "a", "Image": str(case["Image"]), "Mask": str(case["Mask"]), "Image_t1": str(case["t1"]), "Image_t1ce": str(case["t1ce"])}]
    rows.append({**rows[0], "ID": "b"})
    manifest = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    params = tmp_path / "p.yaml"
    params.write_text("setting: {binWidth: 25.0}\nvoxelSetting: {kernelRadius: 1, voxelBatch: 2000}\nfeatureClass:\n  firstorder: [Mean]\n  vqhist: {model: default}\n")
    args = ["batch", str(params), str(manifest), "--mode", "voxel", "--maps-dir", str(tmp_path / "maps"), "--out-dir", str(tmp_path / "cache"), "--no-progress", "-o", str(tmp_path / "t.csv")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "t.csv", index_col=0)
    index_map = sitk.ReadImage(table.loc["a", "original_vqhist_CodewordIndex"])
    assert index_map.GetSize() == sitk.ReadImage(str(case["Image"])).GetSize()
    assert sitk.GetArrayFromImage(index_map).max() < 512
    computed = []
    real = batch.BatchTask.__call__
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, b: computed.append(row["ID"]) or real(t, row, b))
    assert CliRunner().invoke(main, args).exit_code == 0 and computed == []
    Path(table.loc["b", "original_firstorder_Mean"]).unlink()
    assert CliRunner().invoke(main, args).exit_code == 0 and computed == ["b"]
    shutil.rmtree(tmp_path / "maps")
