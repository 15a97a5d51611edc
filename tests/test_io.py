"""One table reader/writer for every command: formats, exact float64, output checks, study on any format."""

from __future__ import annotations

import json

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


# --------------------------------------------------------------------------- wide tables, awkward values
def _awkward_wide(n: int = 12, features: int = 3000, seed: int = 1) -> pd.DataFrame:
    """A batch-like table: text inputs and diagnostics (commas, quotes, line breaks, versions, tuples as text,
    text that looks like a number), an int and a float diagnostics column among them, then float64 features
    with every kind of double (random bit patterns: all exponents, subnormals), NaN, +-inf, -0.0, a failed
    row (all NaN) and an all-NaN column."""
    rng = np.random.default_rng(seed)
    index = pd.Index([f"{i:03d}" for i in range(n)], name="ID")
    text = pd.DataFrame(
        {
            "Image": [f"lgg/case {i}/flair.nii.gz" for i in range(n)],
            "grade": np.where(np.arange(n) % 2, "G3", "G2"),
            "code": [f"{i:03d}" for i in range(n)],  # text that reads as a number in CSV (CSV has no types)
            "diagnostics_Versions_Python": "3.11.7",
            "diagnostics_Case_RoiVolume": rng.uniform(100, 9000, n),  # float64 between text columns
            "diagnostics_Mask-original_VoxelNum": rng.integers(100, 9000, n),
            "diagnostics_Mask-original_BoundingBox": [str(tuple(rng.integers(0, 256, 6).tolist())) for _ in range(n)],
            "diagnostics_Configuration_Settings": "{'label': 1, \"binWidth\": 25.0}",
            "diagnostics_Note": ["line one\nline two", "tab\there", "", "naïve, quoted \"x\""] * (n // 4),
            "diagnostics_Error": [""] * (n - 1) + ["CaseError: mask is empty, row kept"],
        },
        index=index,
    )
    values = rng.integers(0, 2**64 - 1, size=(n, features), dtype=np.uint64).view(np.float64).copy()
    values[~np.isfinite(values)] = 1.0  # NaN/inf placed on purpose below
    typical = features // 8  # realistic magnitudes, and counts (integral floats, "12.0")
    values[:, 10:typical] = rng.lognormal(0, 3, size=(n, typical - 10)) * rng.choice([-1, 1], size=(n, typical - 10))
    values[:, typical : 2 * typical] = rng.integers(0, 40, size=(n, typical))
    values[rng.random(values.shape) < 0.01] = np.nan
    values[rng.random(values.shape) < 0.005] = np.inf
    values[rng.random(values.shape) < 0.005] = -np.inf
    values[0, :8] = [0.1 + 0.2, 5e-324, -2.5e-320, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1 / 3, 1e16]
    values[:, 7] = 0.0
    values[n - 1] = np.nan  # the failed case
    values[:, 9] = np.nan
    names = [f"original_fisher_Mu{j:05d}" for j in range(features)]
    return pd.concat([text, pd.DataFrame(values, index=index, columns=names)], axis=1)


def _same_floats(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, any NaN matching any NaN (JSON and CSV carry no NaN payload)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nan = np.isnan(a)
    return a.shape == b.shape and np.array_equal(nan, np.isnan(b)) and np.array_equal(a.view(np.uint64)[~nan], b.view(np.uint64)[~nan])


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet"])
def test_wide_table_round_trips_exactly(tmp_path, suffix):
    table = _awkward_wide()
    path = tmp_path / f"t{suffix}"
    write_table(table, path)
    back = read_table(path)
    assert list(back.index) == list(table.index) and back.index.name == "ID"
    assert list(back.columns) == list(table.columns)
    floats = [c for c in table.columns if table[c].dtype == np.float64]
    assert _same_floats(table[floats].to_numpy(), back[floats].to_numpy())
    assert (back["diagnostics_Mask-original_VoxelNum"] == table["diagnostics_Mask-original_VoxelNum"]).all()
    text = [c for c in table.columns if c not in floats and c != "diagnostics_Mask-original_VoxelNum"]
    if suffix == ".csv":
        text.remove("code")  # "001" reads back as the number 1: CSV holds no types (documented)
    for column in text:
        assert back[column].fillna("").astype(str).tolist() == table[column].tolist(), column
    if suffix != ".csv":
        assert back["code"].tolist() == table["code"].tolist()


@pytest.mark.parametrize("index", [True, False])
def test_csv_is_what_pandas_writes_byte_for_byte(tmp_path, index):
    # the block writer changes the speed, not the file: tables written before read the same
    table = _awkward_wide(features=300)
    path = tmp_path / "t.csv"
    write_table(table, path, index=index)
    assert path.read_bytes() == table.to_csv(index=index).encode("utf-8")


def test_csv_of_a_table_built_column_by_column_is_the_same(tmp_path):
    # batch assembles its table column by column (one pandas block per column): the same bytes come out
    table = _awkward_wide(features=300)
    fragmented = pd.concat([table[[c]] for c in table.columns], axis=1)
    write_table(table, tmp_path / "a.csv")
    write_table(fragmented, tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_csv_reader_reads_what_pandas_reads(tmp_path):
    from deepradiomics.io import _exact_csv_options

    table = _awkward_wide(features=300)
    path = tmp_path / "t.csv"
    write_table(table, path)
    extra = pd.DataFrame(  # columns pandas reads as int, text or float, each its own way
        {
            "ints": ["1", "2", "3"],
            "ints_gap": ["1", "", "3"],
            "version": ["3.11.7", "2.4.6", "1.8.0"],
            "range": ["1-2", "3", "4"],
            "spaced": [" 1.5", "2.5", "3.5"],
            "tokens": ["inf", "-Infinity", "NaN"],
            "sci": ["1e5", ".5", "5."],
            "empty": ["", "", ""],
            "word_nan": ["nan", "Nan", "1.0"],
        },
        index=pd.Index(["001", "002", "010"], name="ID"),
    )
    other = tmp_path / "extra.csv"
    extra.to_csv(other)
    for csv_path in (path, other):
        want = pd.read_csv(csv_path, index_col=0, dtype={"ID": str}, **_exact_csv_options())
        want.index = want.index.astype(str)
        pd.testing.assert_frame_equal(read_table(csv_path), want, check_exact=True)


def test_json_is_pandas_table_layout_read_exactly_by_the_documented_call(tmp_path):
    table = _awkward_wide(features=1000)
    path = tmp_path / "t.json"
    write_table(table, path)

    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)  # strict JSON: no NaN/Infinity
    assert data["schema"]["primaryKey"] == ["ID"] and data["data"][0]["ID"] == "000"
    assert [f["name"] for f in data["schema"]["fields"]] == ["ID", *table.columns]
    assert data["data"][0]["original_fisher_Mu00001"] == "5e-324" and data["data"][0]["original_fisher_Mu00005"] == -0.0
    documented = pd.read_json(path, orient="table", precise_float=True)  # the call the module docstring gives
    assert documented.index.name == "ID" and list(documented.index) == list(table.index)
    assert list(documented.columns) == list(table.columns)
    floats = [c for c in table.columns if table[c].dtype == np.float64]
    assert _same_floats(table[floats].to_numpy(), documented[floats].to_numpy())
    assert documented["code"].tolist() == table["code"].tolist()
    pd.testing.assert_frame_equal(read_table(path), documented, check_exact=True)


def test_json_without_index_is_pyradiomics_layout_unchanged(tmp_path):
    table = _awkward_wide(features=200)
    path = tmp_path / "t.json"
    write_table(table, path, index=False)
    rows = [{str(k): _old_json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
    assert path.read_text(encoding="utf-8") == json.dumps(rows, indent=2, allow_nan=False) + "\n"  # the earlier writer's text
    back = read_table(path)  # read back with its first column as the index, as a CSV is
    assert back.index.name == "Image" and list(back.columns) == list(table.columns[1:])
    floats = [c for c in table.columns if table[c].dtype == np.float64]
    assert _same_floats(table[floats].to_numpy(), back[floats].to_numpy())


def _old_json_value(value):
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def test_json_layouts_of_earlier_versions_are_still_read(tmp_path):
    values = [0.1 + 0.2, np.inf, -np.inf, np.nan, -0.0, 2.5e-320]
    table = pd.DataFrame({"grade": ["G2", "G3", "G2", "G3", "G2", "G3"], "original_firstorder_Mean": values}, index=pd.Index([f"00{i}" for i in range(6)], name="ID"))
    # {"index", "columns", "rows"}: the layout this module wrote before pandas' "table" layout
    rows = {i: [g, None if np.isnan(v) else ("Infinity" if v == np.inf else "-Infinity" if v == -np.inf else v)] for i, g, v in zip(table.index, table["grade"], values)}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"index": "ID", "columns": list(table.columns), "rows": rows}, indent=1, allow_nan=False), encoding="utf-8")
    # pandas' orient="index" layout (earlier still); pandas writes inf as null there
    older = tmp_path / "older.json"
    table.assign(original_firstorder_Mean=values[:5] + [1.5]).to_json(older, orient="index", double_precision=15)
    for path, want in ((old, values), (older, None)):
        back = read_table(path)
        assert list(back.index) == list(table.index) and back.index.name == "ID" and back["grade"].tolist() == table["grade"].tolist()
        got = back["original_firstorder_Mean"].to_numpy(dtype=np.float64)
        if path is old:
            assert _same_floats(got, np.array(want))
        else:  # pandas wrote inf as null, -0.0 as 0 and at most 15 significant digits: values that need no more survive
            assert got[4] == 0.0 and np.isnan(got[1:4]).all() and got[5] == 1.5


def test_parquet_is_what_pandas_reads_back_from_its_own_file(tmp_path):
    import pyarrow.parquet as pq

    table = _awkward_wide(features=300)
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    write_table(table, ours)
    table.to_parquet(theirs)
    pd.testing.assert_frame_equal(pd.read_parquet(ours), pd.read_parquet(theirs), check_exact=True)
    mine, pandas_own = pq.read_schema(ours).pandas_metadata, pq.read_schema(theirs).pandas_metadata
    assert mine["columns"] == pandas_own["columns"] and mine["index_columns"] == pandas_own["index_columns"]


def test_json_refuses_names_a_row_object_cannot_hold(tmp_path):
    table = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"], index=pd.Index(["x"], name="ID"))
    with pytest.raises(ParamsError, match="'a' used twice"):
        write_table(table, tmp_path / "t.json")
