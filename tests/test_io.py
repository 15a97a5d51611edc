"""One table reader/writer for every command: formats, exact float64, output checks, study on any format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepradiomics.cli import main
from deepradiomics.errors import ParamsError
from deepradiomics.io import check_output, read_table, write_table


def _table(n: int = 24, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.Index([f"{i:03d}" for i in range(n)], name="ID")  # IDs with leading zeros stay text
    table = pd.DataFrame(
        {
            "grade": np.where(np.arange(n) % 2, "G3", "G2"),
            "diagnostics_Versions_deepradiomics": "0.1.0",
            "diagnostics_Error": "",
            "original_firstorder_Mean": rng.normal(size=n) + 1.5 * (np.arange(n) % 2),
            "original_glcm_Contrast": rng.normal(size=n) * 1e-300,  # tiny values survive
            "original_vqhist_Codeword000": rng.integers(0, 50, n).astype(float),
        },
        index=index,
    )
    table.loc["003", "original_glcm_Contrast"] = np.nan
    return table


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_round_trip_is_exact_for_float64(tmp_path, suffix):
    table = _table()
    table.loc["000", "original_firstorder_Mean"] = 0.1 + 0.2  # 0.30000000000000004 needs 17 digits
    path = tmp_path / f"t{suffix}"
    write_table(table, path)
    back = read_table(path)
    assert list(back.index) == list(table.index) and back.index.name == "ID"
    features = [c for c in table.columns if c.startswith("original_")]
    for column in features:
        a, b = table[column].to_numpy(), back[column].to_numpy(dtype=np.float64)
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)]), column


def test_bad_outputs_are_refused_before_any_work(tmp_path):
    with pytest.raises(ParamsError, match="unknown extension '.xlsx'"):
        check_output(tmp_path / "out.xlsx")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParamsError, match="is a file, so the folder"):
        check_output(tmp_path / "file" / "sub" / "out.csv")
    with pytest.raises(ParamsError, match="not writable"):
        check_output("/proc/deepradiomics/out.csv")
    check_output(tmp_path / "new" / "folder" / "out.parquet")  # creatable: fine
    check_output(None)


def test_batch_refuses_a_bad_output_before_extracting(tmp_path, lgg_manifest):
    params = tmp_path / "p.yaml"
    params.write_text("featureClass: {firstorder: [Mean]}\n")
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["batch", str(params), str(lgg_manifest), "-o", str(tmp_path / "file" / "t.csv")])
    assert result.exit_code == 1 and "is a file" in result.output and "cases extracted" not in result.output


def test_study_reads_parquet_and_json_tables(tmp_path):
    table = _table(40)
    for suffix in (".parquet", ".json"):
        path = tmp_path / f"features{suffix}"
        write_table(table, path)
        result = CliRunner().invoke(main, ["study", str(path), "--target", "grade", "--folds", "2", "--repeats", "1", "--model", "logistic", "-q", "-o", str(tmp_path / f"r{suffix}")])
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"r{suffix}" / "metrics.csv").is_file()


def test_verbosity_means_the_same_in_every_command(tmp_path, lgg_case):
    params = tmp_path / "p.yaml"
    params.write_text("featureClass: {firstorder: [Mean]}\n")
    runner = CliRunner()
    args = ["extract", str(params), str(lgg_case["flair"]), str(lgg_case["mask"])]
    quiet = runner.invoke(main, [*args, "-q"])
    verbose = runner.invoke(main, [*args, "-v"])
    assert quiet.exit_code == verbose.exit_code == 0
    assert quiet.stderr == ""
    assert "INFO" in verbose.stderr  # PyRadiomics' and our information lines, through one handler
    for command in ("extract", "batch", "fit", "study", "robustness", "explain", "train"):
        help_text = runner.invoke(main, [command, "--help"]).output
        assert "-q, --quiet" in help_text and "-v, --verbose" in help_text, command
