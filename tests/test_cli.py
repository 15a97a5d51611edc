"""The command line through click's CliRunner; --help is instant and imports neither torch nor PyRadiomics."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from deepradiomics.cli import COMMANDS, main

FIRSTORDER = {"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Mean", "Entropy"]}}


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(FIRSTORDER))
    return path


@pytest.mark.parametrize("argv", [["--help"], ["extract", "--help"], ["batch", "--help"]])
def test_help_imports_no_heavy_library(argv):
    # what makes --help fast is what it does not import (a state, not a clock: timings flake on a loaded machine)
    code = (
        "import sys\n"
        "from deepradiomics.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'radiomics', 'pandas', 'sklearn', 'SimpleITK', 'scipy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = result.stdout.strip().splitlines()[-1].split("HEAVY ")[1]
    assert heavy == "[]"
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_extract_real_case_csv_on_stdout_with_modalities_and_override(params_file, lgg_case):
    args = ["extract", str(params_file), str(lgg_case["flair"]), str(lgg_case["mask"]), "-m", f"t1={lgg_case['t1']}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(pd.io.common.StringIO(result.stdout), index_col=0)
    assert table.shape[0] == 1 and table.index[0] == "TCGA_CS_4942_19970222"  # flair.nii.gz names a modality: the folder names the case
    assert {"original_firstorder_Mean", "original_firstorder_Entropy", "diagnostics_Versions_deepradiomics", "diagnostics_Configuration_ParamsHash"} <= set(table.columns)
    overridden = CliRunner().invoke(main, args + ["-s", "binWidth=5", "--id", "case1"])
    other = pd.read_csv(pd.io.common.StringIO(overridden.stdout), index_col=0)
    assert other.index[0] == "case1"
    assert other["original_firstorder_Entropy"].iloc[0] > table["original_firstorder_Entropy"].iloc[0]  # finer bins


@pytest.mark.parametrize("suffix", [".json", ".parquet", ".csv"])
def test_extract_output_formats(params_file, lgg_case, tmp_path, suffix):
    out = tmp_path / f"row{suffix}"
    result = CliRunner().invoke(main, ["extract", str(params_file), str(lgg_case["flair"]), str(lgg_case["mask"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from deepradiomics.io import read_table

    table = read_table(out)
    assert table["original_firstorder_Mean"].dtype == float and len(table) == 1
    if suffix == ".json":
        data = json.loads(out.read_text())
        # pandas' orient="table" layout: the index is the schema's primary key
        assert data["schema"]["primaryKey"] == ["ID"] and [row["ID"] for row in data["data"]] == ["TCGA_CS_4942_19970222"]
        assert "original_firstorder_Mean" in {field["name"] for field in data["schema"]["fields"]}


def test_bad_input_gives_one_clear_line(params_file, lgg_case, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["extract", str(params_file), str(tmp_path / "no.nii.gz"), str(lgg_case["mask"])])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "no.nii.gz" in result.stderr and "does not exist" in result.stderr
    bad_params = tmp_path / "bad.yaml"
    bad_params.write_text("featureClass:\n  glmc: []\n")
    result = runner.invoke(main, ["extract", str(bad_params), str(lgg_case["flair"]), str(lgg_case["mask"])])
    assert result.exit_code == 1 and "bad.yaml" in result.stderr and "Did you mean 'glcm'" in result.stderr
    result = runner.invoke(main, ["extract", str(params_file), str(lgg_case["flair"]), str(lgg_case["mask"]), "-m", "t1"])
    assert result.exit_code == 2 and "NAME=PATH" in result.output
    result = runner.invoke(main, ["extract", str(params_file), str(lgg_case["flair"]), str(lgg_case["mask"]), "-o", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 1 and ".xlsx" in result.stderr


def test_batch_command_records_failures_and_exits_zero(params_file, lgg_manifest, tmp_path):
    manifest = pd.read_csv(lgg_manifest, dtype=str).head(2)
    manifest["Image"] = [str(lgg_manifest.parent / p) for p in manifest["Image"]]
    manifest["Mask"] = [str(lgg_manifest.parent / p) for p in manifest["Mask"]]
    manifest = manifest[["ID", "Image", "Mask", "grade"]]
    manifest.loc[len(manifest)] = ["broken", str(tmp_path / "gone.nii.gz"), manifest["Mask"].iloc[0], "G2"]
    path = tmp_path / "m.csv"
    manifest.to_csv(path, index=False)
    out = tmp_path / "features.csv"
    result = CliRunner().invoke(main, ["batch", str(params_file), str(path), "-o", str(out), "--jobs", "2", "--out-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "2 of 3 cases extracted: 2 computed, 0 read from --out-dir, 1 failed" in result.stderr
    assert "broken" in result.stderr and "gone.nii.gz" in result.stderr
    table = pd.read_csv(out, index_col="ID")
    assert list(table.index) == list(manifest["ID"]) and table.loc["broken", "original_firstorder_Mean"] != table.loc["broken", "original_firstorder_Mean"]
    assert len(list((tmp_path / "cache").glob("*/cases/*.json"))) == 2  # the entry of these params (cache list shows it)
    # a re-run says what it read from the cache and what it computed (the failed case is tried again)
    again = CliRunner().invoke(main, ["batch", str(params_file), str(path), "-o", str(out), "--out-dir", str(tmp_path / "cache")])
    assert "2 of 3 cases extracted: 0 computed, 2 read from --out-dir, 1 failed" in again.stderr
