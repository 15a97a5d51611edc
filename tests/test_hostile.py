"""Hostile inputs through the command line: every one ends in one line naming the file/key/value and the fix.

Each test writes its bad file (truncated, corrupted, out of range, ...) from a real LGG case, runs the real
command through click's CliRunner (in process, so a test class can be registered) and asserts the exit
status (1 for a refused input, 2 for click's usage errors), the message, and that no traceback is shown.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from click.testing import CliRunner

from deepradiomics import batch, io
from deepradiomics.cli import main
from deepradiomics.featureclass import FeatureClass
from deepradiomics.naming import ERROR_COLUMN
from deepradiomics.registry import get_registry

FIRSTORDER = {"setting": {"binWidth": 25.0}, "featureClass": {"firstorder": ["Mean", "Maximum"]}}


# ------------------------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class ModalitySettings:
    modality: str = "t1"
    features: str = "Mean"  # comma-separated selection


class ModalityMean(FeatureClass):
    """Mean of a named modality in the ROI: a class that reads a modality other than the main image."""

    name = "modmean"
    family = "classical"
    Settings = ModalitySettings

    def feature_names(self) -> list[str]:
        return [f for f in self.settings.features.split(",") if f == "Mean"]

    def compute(self, case) -> dict[str, float]:
        values = np.asarray(case.array(self.settings.modality), dtype=np.float64)[case.mask_array()]
        return {"Mean": float(values.mean())}


@pytest.fixture(autouse=True)
def registered():
    registry = get_registry()
    registry.register(ModalityMean, source="tests")
    yield
    registry.unregister(ModalityMean.name)


def run(*args: str, expect: int = 1):
    """Invoke the CLI; check the exit status and that stderr holds no traceback; return the result."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if expect == 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.stderr  # one line
    return result


def error_line(result) -> str:
    return next(line for line in result.stderr.splitlines() if line.startswith("Error:"))


@pytest.fixture
def params(tmp_path):
    def write(data: dict, name: str = "params.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def write_like(reference, array: np.ndarray, path) -> str:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return str(path)


# ------------------------------------------------------------------------------------------------ damaged files
def _truncated(source, target, keep: float = 0.5):
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def _flipped(source, target):
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle of the compressed data: the checksum must catch it
    target.write_bytes(bytes(data))
    return target


def _short_payload(source, target):
    # a complete, valid gzip stream of a NIfTI file that lost its second half before it was compressed
    raw = gzip.decompress(source.read_bytes())
    target.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return target


def _trailer_cut(source, target):
    data = source.read_bytes()
    target.write_bytes(data[:-4])  # the gzip length field is gone: only the trailer check notices
    return target


@pytest.mark.parametrize(
    "role, damage",
    [
        ("image", _truncated),
        ("mask", _truncated),
        ("image", _flipped),
        ("mask", _short_payload),
        ("image", _trailer_cut),
        ("modality", _truncated),
    ],
)
def test_damaged_nifti_gz_is_refused_naming_the_file(role, damage, tmp_path, params, lgg_case):
    source = lgg_case["mask" if role == "mask" else "t1" if role == "modality" else "flair"]
    bad = damage(source, tmp_path / f"bad_{role}.nii.gz")
    image = bad if role == "image" else lgg_case["flair"]
    mask = bad if role == "mask" else lgg_case["mask"]
    t1 = bad if role == "modality" else lgg_case["t1"]
    data = {"setting": {"binWidth": 25.0}, "featureClass": {"firstorder": ["Mean"], "modmean": {"modality": "t1"}}}
    result = run("extract", params(data), image, mask, "-m", f"t1={t1}")
    line = error_line(result)
    assert f"bad_{role}.nii.gz" in line and "is damaged" in line and "copy or export it again" in line, line


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_damaged_nrrd_and_metaimage_streams_are_refused(suffix, tmp_path, params, lgg_case):
    reference = sitk.ReadImage(str(lgg_case["flair"]))
    good = tmp_path / f"good{suffix}"
    sitk.WriteImage(reference, str(good), useCompression=True)
    # NRRD: ITK misses a cut CRC trailer; MetaImage: ITK ignores a flipped byte (no Adler-32 check)
    bad = (_trailer_cut if suffix == ".nrrd" else _flipped)(good, tmp_path / f"bad{suffix}")
    line = error_line(run("extract", params(FIRSTORDER), bad, lgg_case["mask"]))
    assert f"bad{suffix}" in line and "is damaged" in line
    run("extract", params(FIRSTORDER), good, lgg_case["mask"], expect=0)


def test_truncated_plain_nifti_is_refused(tmp_path, params, lgg_case):
    raw = tmp_path / "raw.nii"
    raw.write_bytes(gzip.decompress(lgg_case["flair"].read_bytes()))
    _truncated(raw, tmp_path / "short.nii", keep=0.9)
    line = error_line(run("extract", params(FIRSTORDER), tmp_path / "short.nii", lgg_case["mask"]))
    assert "short.nii" in line and "header declares" in line


def test_a_damaged_case_is_one_error_row_in_a_batch(tmp_path, params, lgg_case):
    bad = _truncated(lgg_case["flair"], tmp_path / "cut.nii.gz")
    manifest = tmp_path / "m.csv"
    pd.DataFrame(
        {"ID": ["good", "cut"], "Image": [str(lgg_case["flair"]), str(bad)], "Mask": [str(lgg_case["mask"])] * 2}
    ).to_csv(manifest, index=False)
    out = tmp_path / "t.csv"
    result = run("batch", params(FIRSTORDER), manifest, "-o", out, "--no-progress", expect=0)
    assert "1 of 2 cases extracted" in result.stderr
    table = io.read_table(out)
    assert table.loc["good", "original_firstorder_Mean"] > 0
    assert "cut.nii.gz" in table.loc["cut", ERROR_COLUMN] and "is damaged" in table.loc["cut", ERROR_COLUMN]


# ------------------------------------------------------------------------------------------------ params
@pytest.mark.parametrize(
    "data, expected",
    [
        ({"imageType": {"LoG": {}}, "featureClass": {"firstorder": ["Mean"]}}, ["imageType.LoG", "sigma"]),
        ({"featureClass": {"shape2D": []}}, ["featureClass.shape2D", "force2D"]),
        ({"setting": {"binWidth": float("nan")}, "featureClass": {"firstorder": []}}, ["setting.binWidth", "nan", "finite"]),
        ({"setting": {"binWidth": float("inf")}, "featureClass": {"firstorder": []}}, ["setting.binWidth", "inf", "finite"]),
        ({"setting": {"binWidth": 1e308}, "featureClass": {"firstorder": []}}, ["setting.binWidth", "1e+308", "overflows"]),
        ({"setting": {"binWidth": "25"}, "featureClass": {"firstorder": []}}, ["setting.binWidth", "'25'", "not a number", "without quotes"]),
        ({"imageType": {"LoG": {"sigma": [1.0, float("nan")]}}, "featureClass": {"firstorder": []}}, ["imageType.LoG.sigma", "nan"]),
        ({"featureClass": {"modmean": {"features": ""}}}, ["featureClass.modmean", "produces no feature"]),
    ],
    ids=["log-no-sigma", "shape2d-no-force2d", "binwidth-nan", "binwidth-inf", "binwidth-1e308", "binwidth-text", "sigma-nan", "no-feature"],
)
def test_params_that_would_give_no_or_broken_features_are_refused(data, expected, params, lgg_case):
    line = error_line(run("extract", params(data, "bad.yaml"), lgg_case["flair"], lgg_case["mask"]))
    assert "bad.yaml" in line, line
    for text in expected:
        assert text in line, (text, line)


@pytest.mark.parametrize("value, expected", [(".nan", "nan"), ("1e308", "1e+308"), (".inf", "inf")])
def test_setting_overrides_are_checked_like_the_file(value, expected, params, lgg_case):
    line = error_line(run("extract", params(FIRSTORDER), lgg_case["flair"], lgg_case["mask"], "-s", f"binWidth={value}"))
    assert "setting.binWidth" in line and expected in line and "-s overrides" in line


def test_empty_params_file_is_refused(tmp_path, lgg_case):
    (tmp_path / "empty.yaml").write_text("")
    line = error_line(run("extract", tmp_path / "empty.yaml", lgg_case["flair"], lgg_case["mask"]))
    assert "empty.yaml' is empty" in line and "featureClass" in line


def test_every_image_type_and_class_yields_features(params, lgg_case):
    data = {
        "imageType": {"Original": {}, "LoG": {"sigma": [2.0]}, "Wavelet": {}, "Square": {}},
        "setting": {"binWidth": 25.0},
        "featureClass": {"firstorder": ["Mean"], "shape": ["VoxelVolume"]},
    }
    result = run("extract", params(data), lgg_case["flair"], lgg_case["mask"], expect=0)
    header = result.stdout.splitlines()[0].split(",")
    assert "original_shape_VoxelVolume" in header and "log-sigma-2-0-mm-3D_firstorder_Mean" in header
    assert sum(c.startswith("wavelet-") for c in header) == 8 and "square_firstorder_Mean" in header


def test_a_class_that_pyradiomics_skips_at_run_time_is_an_error(tmp_path, params, lgg_case):
    # shape2D with force2Ddimension 2 on a one-slice ROI: PyRadiomics 3.0.1 skips it with a mere warning
    mask = sitk.ReadImage(str(lgg_case["mask"]))
    array = sitk.GetArrayFromImage(mask)
    flat = np.zeros_like(array)
    flat[10] = array[10]
    thin = write_like(mask, flat, tmp_path / "one_slice.nii.gz")
    data = {"setting": {"binWidth": 25.0, "force2D": True, "force2Ddimension": 2}, "featureClass": {"shape2D": ["Perimeter"], "firstorder": ["Mean"]}}
    line = error_line(run("extract", params(data, "flat.yaml"), lgg_case["flair"], thin))
    assert "flat.yaml: featureClass.shape2D gave no feature on case" in line and "PyRadiomics warned: Size in specified 2D dimension" in line


def test_incomplete_classical_rows_are_named():
    from deepradiomics import Extractor

    extractor = Extractor({"imageType": {"Original": {}, "Square": {}}, "featureClass": {"shape": ["VoxelVolume"], "firstorder": ["Mean"]}})
    complete = {"original_shape_VoxelVolume": 1.0, "original_firstorder_Mean": 1.0, "square_firstorder_Mean": 2.0}
    assert extractor.columns_problem(complete) is None
    assert extractor.columns_problem({**complete, "square_firstorder_Maximum": 1.0}) == "featureClass.firstorder on square has unexpected square_firstorder_Maximum"
    assert extractor.columns_problem({k: v for k, v in complete.items() if k != "square_firstorder_Mean"}) == "imageType.Square with featureClass.firstorder gave no feature"
    assert extractor.columns_problem({**complete, "original_glcm_Contrast": 1.0}) == "unexpected column 'original_glcm_Contrast' (class not in the params)"
    assert "no enabled image type" in extractor.columns_problem({**complete, "wavelet-LLH_firstorder_Mean": 1.0})


# ------------------------------------------------------------------------------------------------ values
def test_image_values_whose_squares_overflow_are_refused(tmp_path, params, lgg_case):
    reference = sitk.ReadImage(str(lgg_case["flair"]))
    huge = write_like(reference, sitk.GetArrayFromImage(reference).astype(np.float64) * 1e298, tmp_path / "huge.nii.gz")
    line = error_line(run("extract", params(FIRSTORDER), huge, lgg_case["mask"]))
    assert "huge.nii.gz" in line and "overflow float64" in line and "rescale" in line


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".nii"])
def test_nan_voxels_are_refused(suffix, tmp_path, params, lgg_case):
    reference = sitk.ReadImage(str(lgg_case["flair"]))
    array = sitk.GetArrayFromImage(reference).astype(np.float32)
    array[0, 0, :7] = np.nan
    array[1, 1, 0] = np.inf
    path = write_like(reference, array, tmp_path / f"nan{suffix}")  # ITK's NIfTI reader would turn them into 0
    line = error_line(run("extract", params(FIRSTORDER), path, lgg_case["mask"]))
    assert f"nan{suffix}" in line and "8 NaN or infinite voxels" in line


@pytest.mark.parametrize(
    "values, expected",
    [
        (lambda m: m.astype(np.uint64) * 2**40, "label value 1099511627776"),  # beyond int32: PyRadiomics would alias it
        (lambda m: m.astype(np.int64) * (2**32 + 1), "label value 4294967297"),  # uint32 cast would make it 1
        (lambda m: m.astype(np.float32) * 0.5, "non-whole values (e.g. 0.5)"),
        (lambda m: m.astype(np.int16) - 1, "label value -1"),
    ],
    ids=["uint64", "aliasing", "fractional", "negative"],
)
def test_masks_outside_the_label_range_are_refused(values, expected, tmp_path, params, lgg_case):
    reference = sitk.ReadImage(str(lgg_case["mask"]))
    path = write_like(reference, values(sitk.GetArrayFromImage(reference)), tmp_path / "odd_mask.nrrd")
    line = error_line(run("extract", params(FIRSTORDER), lgg_case["flair"], path))
    assert "odd_mask.nrrd" in line and expected in line and ("relabel" in line or "round" in line), line


@pytest.mark.parametrize("label, expected", [("0", "out of range"), ("1.5", "not a whole number"), (str(2**40), "out of range"), ("one", "not an integer")])
def test_bad_label_values_are_refused(label, expected, params, lgg_case):
    line = error_line(run("extract", params(FIRSTORDER), lgg_case["flair"], lgg_case["mask"], "--label", label))
    assert "--label" in line and expected in line


def test_blank_image_argument_is_not_read_as_a_dicom_folder(params, lgg_case):
    line = error_line(run("extract", params(FIRSTORDER), "", lgg_case["mask"]))
    assert "path is empty" in line and "DICOM" not in line


def test_repeated_modality_is_a_usage_error(params, lgg_case):
    result = run("extract", params(FIRSTORDER), lgg_case["flair"], lgg_case["mask"], "-m", f"t1={lgg_case['t1']}", "-m", f"t1={lgg_case['t1ce']}", expect=2)
    assert "modality 't1' is given twice" in result.stderr


# ------------------------------------------------------------------------------------------------ manifests
@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "is empty"),
        (b"ID,Image,Mask\x00\x01\x02\xff", "is a binary file"),
        (b"ID,Image,Mask\na,x.nii.gz,m.nii.gz\n ,y.nii.gz,m.nii.gz\n", "row 3 has a blank ID"),
        (b"ID,Image,Mask,diagnostics_Error\na,x,m,\n", "'diagnostics_Error' is named like an output column"),
        (b"ID,Image,Mask,original_firstorder_Mean\na,x,m,1\n", "'original_firstorder_Mean' is named like an output column"),
        (b"ID,image,Mask\na,x,m\n", "has no 'Image' column. Did you mean 'image'"),
        (b"ID,Image,Mask\na,x,m\na,y,m\n", "repeated: a"),
        (b"\xff\xfe\x00I\x00D", "is a binary file"),
    ],
    ids=["zero-bytes", "binary", "blank-id", "error-column", "feature-column", "misspelt", "duplicate", "utf16"],
)
def test_bad_manifests_are_refused_before_any_work(content, expected, tmp_path, params):
    manifest = tmp_path / "bad.csv"
    manifest.write_bytes(content)
    line = error_line(run("batch", params(FIRSTORDER), manifest, "--no-progress"))
    assert "bad.csv" in line and expected in line, line


def test_bad_cells_become_error_rows_naming_the_cell(tmp_path, params, lgg_case):
    manifest = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "ID": ["blankimage", "fraclabel", "good"],
            "Image": ["", str(lgg_case["flair"]), str(lgg_case["flair"])],
            "Mask": [str(lgg_case["mask"])] * 3,
            "Label": ["", "1.5", "1"],
        }
    ).to_csv(manifest, index=False)
    out = tmp_path / "t.json"
    run("batch", params(FIRSTORDER), manifest, "-o", out, "--no-progress", expect=0)
    table = io.read_table(out)
    assert "'Image' cell is blank" in table.loc["blankimage", ERROR_COLUMN]
    assert "'1.5' is not a whole number" in table.loc["fraclabel", ERROR_COLUMN]
    assert table.loc["good", ERROR_COLUMN] == "" and table.loc["good", "original_firstorder_Mean"] > 0


def test_bogus_and_unreachable_schedulers_are_refused_before_any_work(tmp_path, params, lgg_case, monkeypatch):
    pytest.importorskip("distributed")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["a"], "Image": [str(lgg_case["flair"])], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
    line = error_line(run("batch", params(FIRSTORDER), manifest, "--scheduler", "bogus", "--out-dir", tmp_path / "cache"))
    assert "--scheduler 'bogus'" in line and "tcp://HOST:8786" in line
    assert not (tmp_path / "cache").exists()  # refused before anything was written
    monkeypatch.setattr(batch.pool, "DASK_CONNECT_TIMEOUT", 1)
    line = error_line(run("batch", params(FIRSTORDER), manifest, "--scheduler", "tcp://127.0.0.1:9", "--no-progress"))
    assert "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in line and "start it" in line


# ------------------------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("command", ["extract", "batch", "fit", "robustness"])
@pytest.mark.parametrize("where", ["under-a-file", "proc", "extension"])
def test_bad_outputs_are_refused_before_any_work(command, where, tmp_path, params, lgg_case):
    (tmp_path / "afile").write_text("x")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["a"], "Image": [str(lgg_case["flair"])], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
    folder_output = command in ("fit", "robustness")
    if where == "extension" and folder_output:
        pytest.skip("a folder output has no extension")
    target = {"under-a-file": tmp_path / "afile" / ("out" if folder_output else "out.csv"), "proc": "/proc/out" + ("" if folder_output else ".csv"), "extension": tmp_path / "out.xlsx"}[where]
    p = params(FIRSTORDER)
    argv = {
        "extract": ["extract", p, lgg_case["flair"], lgg_case["mask"], "-o", target],
        "batch": ["batch", p, manifest, "-o", target, "--no-progress"],
        "fit": ["fit", p, manifest, "-o", target],
        "robustness": ["robustness", p, manifest, "-o", target, "--levels", "0.9"],
    }[command]
    line = error_line(run(*argv))
    expected = {"under-a-file": "is a file", "proc": "not writable", "extension": "unknown extension '.xlsx'"}[where]
    assert expected in line and str(target) in line or "afile" in line, line
    assert "cases extracted" not in line


def test_batch_under_a_file_out_dir_is_refused(tmp_path, params, lgg_case):
    (tmp_path / "afile").write_text("x")
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["a"], "Image": [str(lgg_case["flair"])], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
    line = error_line(run("batch", params(FIRSTORDER), manifest, "--out-dir", tmp_path / "afile" / "cache"))
    assert "--out-dir" in line and "is a file" in line


def test_image_outputs_are_checked_before_any_work(tmp_path):
    from deepradiomics.errors import ParamsError

    (tmp_path / "afile").write_text("x")
    io.check_image_output(tmp_path / "new" / "seg.nii.gz")
    with pytest.raises(ParamsError, match=r"seg.xyz': unknown image extension; use one of .nii.gz"):
        io.check_image_output(tmp_path / "seg.xyz")
    with pytest.raises(ParamsError, match="is a file"):
        io.check_image_output(tmp_path / "afile" / "seg.nrrd")
    with pytest.raises(ParamsError, match="not writable"):
        io.check_image_output("/proc/seg.nii.gz")


def test_study_refuses_a_bad_report_folder_before_any_work(tmp_path, monkeypatch):
    import deepradiomics.study as study

    (tmp_path / "afile").write_text("x")
    (tmp_path / "f.csv").write_text("ID,grade,original_firstorder_Mean\na,G2,1\nb,G3,2\n")
    monkeypatch.setattr(study, "run_study", lambda *a, **k: pytest.fail("the study ran before its output was checked"))
    line = error_line(run("study", tmp_path / "f.csv", "--target", "grade", "-o", tmp_path / "afile" / "report"))
    assert "is a file" in line


@pytest.mark.parametrize("suffix", [".json", ".csv", ".parquet"])
def test_tables_round_trip_hostile_floats_exactly(suffix, tmp_path):
    values = [0.1 + 0.2, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1 / 3, math.nan, math.inf, -math.inf, 123456789.12345679]
    table = pd.DataFrame({"original_firstorder_Mean": values, "diagnostics_Error": [""] * len(values)}, index=pd.Index([f"{i:03d}" for i in range(len(values))], name="ID"))
    path = tmp_path / f"t{suffix}"
    io.write_table(table, path)
    back = io.read_table(path)
    assert list(back.index) == list(table.index)  # "000" stays text
    got = back["original_firstorder_Mean"].to_numpy(dtype=np.float64)
    want = np.array(values)
    assert np.array_equal(got, want, equal_nan=True) and np.array_equal(np.signbit(got), np.signbit(want))
    if suffix == ".json":
        rows = {row["ID"]: row for row in json.loads(path.read_text())["data"]}  # pandas' orient="table" layout
        assert rows["007"]["original_firstorder_Mean"] == "INF" and rows["007"]["diagnostics_Error"] == ""


# ------------------------------------------------------------------------------------------------ models
def test_relative_model_path_names_what_it_was_resolved_against(tmp_path, params, lgg_case):
    pytest.importorskip("torch")
    line = error_line(run("extract", params({"featureClass": {"vqhist": {"model": "models/mine"}}}), lgg_case["flair"], lgg_case["mask"]))
    assert "'models/mine'" in line and f"resolved against {tmp_path.resolve()}" in line and "relative to that file" in line


def test_a_malicious_model_file_is_refused_without_torch_advice(tmp_path, params, lgg_case):
    torch = pytest.importorskip("torch")
    from deepradiomics.models import sha256_file
    from tests.test_models import tiny_bundle

    bundle = tmp_path / "evil"
    tiny_bundle(bundle)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (shutil.copy, (str(bundle / "card.md"), str(marker)))

    torch.save({"weights": Payload()}, bundle / "model.pt")
    config = yaml.safe_load((bundle / "config.yaml").read_text())
    config["model_sha256"] = sha256_file(bundle / "model.pt")  # an attacker controls both files
    (bundle / "config.yaml").write_text(yaml.safe_dump(config))
    data = {"featureClass": {"vqhist": {"model": "evil", "modalities": ["t1", "Image", "t1ce"]}}}
    result = run("extract", params(data), lgg_case["flair"], lgg_case["mask"], "-m", f"t1={lgg_case['t1']}", "-m", f"t1ce={lgg_case['t1ce']}")
    line = error_line(result)
    assert "model.pt" in line and "is refused" in line and "weights_only" not in result.output
    assert not marker.exists()  # nothing was executed


# ------------------------------------------------------------------------------------------------ study
@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda f: f.assign(diagnostics_Error="FeatureError: boom"), "every case of"),
        (lambda f: f.assign(original_firstorder_Mean=np.nan, original_glcm_Contrast=np.nan), "no usable feature"),
        (lambda f: f.assign(original_firstorder_Mean=1.0, original_glcm_Contrast=2.0), "2 are constant"),
        (lambda f: f.assign(grade=""), "no case of"),
    ],
    ids=["all-failed", "all-nan", "constant", "no-labels"],
)
def test_study_refuses_tables_without_information(change, expected, tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"grade": ["G2", "G3"] * 10, ERROR_COLUMN: "", "original_firstorder_Mean": rng.normal(size=20), "original_glcm_Contrast": rng.normal(size=20)},
        index=pd.Index([f"c{i}" for i in range(20)], name="ID"),
    )
    path = tmp_path / "features.csv"
    change(frame).to_csv(path)
    line = error_line(run("study", path, "--target", "grade", "-o", tmp_path / "report", "--model", "logistic"))
    assert expected in line and "features.csv" in line, line


def test_study_names_the_columns_with_infinite_values(tmp_path):
    from deepradiomics.study.core import prepare_data

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"grade": ["G2", "G3"] * 10, "original_firstorder_Mean": rng.normal(size=20), "original_glcm_Contrast": rng.normal(size=20)},
        index=pd.Index([f"c{i}" for i in range(20)], name="ID"),
    )
    frame.loc["c3", "original_glcm_Contrast"] = np.inf
    data = prepare_data(frame, None, "grade")
    assert any("1 infinite value" in n and "original_glcm_Contrast" in n for n in data.notes), data.notes
    assert np.isnan(data.features.loc["c3", "original_glcm_Contrast"])


# ------------------------------------------------------------------------------------------------ bugs
def test_an_unexpected_exception_is_one_line_with_the_traceback_at_debug_level():
    import click

    from deepradiomics.cli.common import report_errors, setup_logging

    @click.command()
    @click.option("-v", "--verbose", count=True)
    @report_errors
    def broken(verbose):
        setup_logging(verbose)
        return {}["missing"]

    result = CliRunner().invoke(broken, [])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "unexpected internal error: KeyError: 'missing' (at test_hostile.py:" in result.stderr and "-vv" in result.stderr
    debug = CliRunner().invoke(broken, ["-vv"])
    assert debug.exit_code == 1 and "Traceback" in debug.stderr  # the traceback is there when asked for


# ------------------------------------------------------------------------------------------------ outputs over inputs
@pytest.fixture
def cohort(tmp_path, lgg_case):
    """A manifest of one real case (absolute paths) and a params file, in a folder of their own."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    manifest = folder / "cases.csv"
    pd.DataFrame({"ID": ["a"], "Image": [str(lgg_case["flair"])], "Mask": [str(lgg_case["mask"])], "grade": ["G2"]}).to_csv(manifest, index=False)
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump(FIRSTORDER))
    return folder, manifest, params


def _unchanged(paths):
    """The bytes of ``paths`` now, to compare after a refused command."""
    return {str(p): p.read_bytes() for p in paths}


@pytest.mark.parametrize(
    "case",
    ["dotdot", "symlink", "hardlink", "inside-image-folder", "out-dir-over-input", "fit-over-params", "robustness-over-labels", "study-over-table", "voxel-over-image", "maps-over-image", "segment-over-image", "params-copy-over-shipped", "ibsi-inside-data"],
)
def test_an_output_that_is_an_input_is_refused_before_any_work(case, cohort, tmp_path, lgg_case, monkeypatch):
    import os

    folder, manifest, params = cohort
    watched = [manifest, params]
    monkeypatch.chdir(tmp_path)
    if case == "dotdot":
        argv, named = ["batch", params, manifest, "-o", folder / "sub" / ".." / "cases.csv"], "the manifest"
    elif case == "symlink":
        (tmp_path / "link.csv").symlink_to(manifest)
        argv, named = ["batch", params, manifest, "-o", tmp_path / "link.csv"], "the manifest"
    elif case == "hardlink":
        os.link(manifest, tmp_path / "hard.csv")
        argv, named = ["batch", params, manifest, "-o", tmp_path / "hard.csv"], "the same file, a hard link"
    elif case == "inside-image-folder":  # a folder image (a DICOM series): every file in it is read
        series = tmp_path / "series"
        series.mkdir()
        (series / "1.dcm").write_bytes(b"not read: the command stops before")
        argv, named = ["extract", params, series, lgg_case["mask"], "-o", series / "row.csv"], "a folder the command reads"
    elif case == "out-dir-over-input":  # the cache writes cases/ (an earlier version's layout) into --out-dir
        (tmp_path / "cache" / "cases").mkdir(parents=True)
        shutil.copy(lgg_case["flair"], tmp_path / "cache" / "cases" / "flair.nii.gz")
        pd.DataFrame({"ID": ["a"], "Image": [str(tmp_path / "cache" / "cases" / "flair.nii.gz")], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
        argv, named = ["batch", params, manifest, "--out-dir", tmp_path / "cache"], "would write 'cases' over"
    elif case == "fit-over-params":
        params.write_text(yaml.safe_dump({"featureClass": {"fisher": {"model": "default"}}}))
        argv, named = ["fit", params, manifest, "-o", folder], "would write 'params.yaml' over the params file"
    elif case == "robustness-over-labels":
        labels = folder / "features.csv"
        labels.write_text("ID,grade\na,G2\n")
        watched.append(labels)
        argv, named = ["robustness", params, manifest, "--labels", labels, "-o", folder, "--levels", "0.5"], "would write 'features.csv' over --labels"
    elif case == "study-over-table":
        table = folder / "metrics.csv"
        table.write_text("ID,grade,original_firstorder_Mean\na,G2,1\nb,G3,2\n")
        watched.append(table)
        argv, named = ["study", table, "--target", "grade", "-o", folder], "would write 'metrics.csv' over FEATURES table"
    elif case == "voxel-over-image":  # voxel mode writes <feature name>.nrrd into -o
        image = folder / "original_firstorder_Mean.nrrd"
        sitk.WriteImage(sitk.ReadImage(str(lgg_case["flair"])), str(image))
        watched.append(image)
        argv, named = ["extract", params, image, lgg_case["mask"], "--mode", "voxel", "-o", folder], "over IMAGE"
    elif case == "maps-over-image":  # batch voxel mode writes one folder per case into --maps-dir
        maps = tmp_path / "maps"
        case_folder = maps / batch.cache_file_name("a")
        case_folder.mkdir(parents=True)
        shutil.copy(lgg_case["flair"], case_folder / "flair.nii.gz")
        pd.DataFrame({"ID": ["a"], "Image": [str(case_folder / "flair.nii.gz")], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
        argv, named = ["batch", params, manifest, "--mode", "voxel", "--maps-dir", maps], f"would write '{batch.cache_file_name('a')}' over"
    elif case == "segment-over-image":
        image = tmp_path / "flair.nii.gz"
        shutil.copy(lgg_case["flair"], image)
        (tmp_path / "alias.nii.gz").symlink_to(image)
        watched.append(image)
        argv, named = ["segment", "dlr-lgg-cpu", image, "-m", f"t1ce={lgg_case['t1ce']}", "-o", tmp_path / "alias.nii.gz"], "image 'Image'"
    elif case == "params-copy-over-shipped":
        from deepradiomics.data import shipped_params_file

        shipped = shipped_params_file("classical")
        watched.append(shipped)
        argv, named = ["params", "copy", "classical", shipped.parent / "." / shipped.name, "--force"], "the shipped params file 'classical'"
    else:
        data = tmp_path / "ibsi"
        data.mkdir()
        argv, named = ["ibsi", "--data", data, "--config", "phantom", "-o", data / "report.csv"], "the IBSI data folder"
    before = _unchanged(watched)
    line = error_line(run(*argv))
    assert named in line and "overwrite or change its own input" in line, line
    assert _unchanged(watched) == before
    assert not list(tmp_path.glob("cache/*/namespace.json")), "the command opened its cache before refusing"


def test_the_output_guard_compares_resolved_paths(tmp_path):
    from deepradiomics.errors import ParamsError

    (tmp_path / "in.csv").write_text("x")
    (tmp_path / "bundle").mkdir()
    guard = io.check_outputs_not_inputs
    inputs = [("the manifest", tmp_path / "in.csv"), ("the bundle", tmp_path / "bundle")]
    guard([io.Output("-o", tmp_path / "out.csv"), io.Output("--out-dir", tmp_path, ("cases", "report.html"))], inputs)  # no clash
    guard([io.Output("-o", None), io.Output("-o", "-")], inputs)  # stdout
    for output, expected in [
        (io.Output("-o", tmp_path / "x" / ".." / "in.csv"), "is the manifest"),
        (io.Output("-o", tmp_path / "bundle" / "t.csv"), "lies inside the bundle"),
        (io.Output("--out-dir", tmp_path / "bundle", ("cases",)), "is the bundle"),
        (io.Output("--out-dir", tmp_path / "bundle" / "sub", ("cases",)), "lies inside the bundle"),
        (io.Output("--out-dir", tmp_path, ("*.csv",)), "would write 'in.csv' over the manifest"),
        (io.Output("--out-dir", tmp_path, ("*",)), "would write"),
    ]:
        with pytest.raises(ParamsError, match=expected):
            guard([output], inputs)


# ------------------------------------------------------------------------------------------------ empty cohorts
@pytest.mark.parametrize("command", ["batch", "fit", "robustness", "study", "explain"])
def test_a_cohort_command_over_a_manifest_without_cases_is_refused(command, tmp_path, params):
    manifest = tmp_path / "none.csv"
    manifest.write_text("ID,Image,Mask,grade\n")
    p = params(FIRSTORDER)
    fisher = params({"featureClass": {"fisher": {"model": "default"}}}, "fisher.yaml")
    deep = params({"featureClass": {"vqhist": {"model": "default"}}}, "deep.yaml")
    argv = {
        "batch": ["batch", p, manifest, "--no-progress"],
        "fit": ["fit", fisher, manifest, "-o", tmp_path / "fitted", "--no-progress"],
        "robustness": ["robustness", p, manifest, "-o", tmp_path / "rob", "--levels", "0.5", "--no-progress"],
        "study": ["study", "--manifest", manifest, "--params", p, "--target", "grade", "-o", tmp_path / "report"],
        "explain": ["explain", deep, "--manifest", manifest, "--codewords", "1", "-o", tmp_path / "explained"],
    }[command]
    line = error_line(run(*argv))
    assert "none.csv' lists no case" in line and "add one row per case" in line, line


# ------------------------------------------------------------------------------------------------ refusals before the work
@pytest.mark.parametrize(
    "data, expected",
    [
        ({"setting": {"binCount": 10**7}, "featureClass": {"glcm": ["Contrast"]}}, ["setting.binCount", "4096", "binCount <= 4096"]),
        ({"setting": {"binWidth": 25.0, "resampledPixelSpacing": [1, 1]}, "featureClass": {"firstorder": ["Mean"]}}, ["resampledPixelSpacing", "3 spacings"]),
        ({"setting": {"binWidth": 25.0, "resegmentRange": [1, 2, 3]}, "featureClass": {"firstorder": ["Mean"]}}, ["resegmentRange", "1 value"]),
        ({"featureClass": {"vqhist": {"model": "dlr-lgg-cpu"}}}, ["featureClass.vqhist.model", "'dlrcnn' network", "'vqseg'"]),
        ({"featureClass": {"cnn": {"patch_sizes": [3000], "layers": ["conv1_1"]}}}, ["featureClass.cnn", "patch_sizes: 3000", "largest allowed side", "200"]),
    ],
    ids=["bincount", "spacing-2d", "resegment-3", "vqhist-dlr-bundle", "cnn-huge-patch"],
)
def test_settings_no_case_can_satisfy_fail_the_batch_before_the_first_case(data, expected, tmp_path, params, lgg_case, monkeypatch):
    from deepradiomics.extractor import ExtractionTask

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["a", "b"], "Image": [str(lgg_case["flair"])] * 2, "Mask": [str(lgg_case["mask"])] * 2}).to_csv(manifest, index=False)
    monkeypatch.setattr(ExtractionTask, "compute", lambda self, case: pytest.fail("a case ran before the settings were checked"))
    line = error_line(run("batch", params(data, "bad.yaml"), manifest, "--no-progress", "--out-dir", tmp_path / "cache"))
    assert "bad.yaml" in line and "unexpected internal error" not in line, line
    for text in expected:
        assert text in line, (text, line)


def test_a_fisher_layer_the_bundle_lacks_fails_the_fit_before_any_case(tmp_path, params, lgg_case, monkeypatch):
    from deepradiomics.extractor import DescribeTask

    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["a", "b"], "Image": [str(lgg_case["flair"])] * 2, "Mask": [str(lgg_case["mask"])] * 2, "Image_t1ce": [str(lgg_case["t1ce"])] * 2}).to_csv(manifest, index=False)
    monkeypatch.setattr(DescribeTask, "compute", lambda self, case: pytest.fail("a case was described before the layer was checked"))
    data = {"featureClass": {"fisher": {"model": "dlr-lgg-cpu", "layer": "latent"}}}
    line = error_line(run("fit", params(data, "bad.yaml"), manifest, "-o", tmp_path / "fitted", "--no-progress"))
    assert "featureClass.fisher.layer: 'latent' is not a layer of 'dlr-lgg-cpu' (dlrcnn)" in line and "conv6" in line, line


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"weights": "{empty}"}, ["featureClass.cnn.weights", "a folder without config.yaml", "neither a weights file nor a model bundle"]),
        ({"network": "encoder-3d", "weights": "{empty}"}, ["featureClass.cnn.weights", "is an empty folder, not a model bundle"]),
    ],
    ids=["vgg-weights", "encoder-bundle"],
)
def test_an_empty_folder_given_as_weights_is_not_called_a_model_bundle(settings, expected, tmp_path, params, lgg_case):
    (tmp_path / "empty").mkdir()
    data = {"featureClass": {"cnn": {k: (v.format(empty=tmp_path / "empty") if isinstance(v, str) else v) for k, v in settings.items()}}}
    line = error_line(run("extract", params(data, "bad.yaml"), lgg_case["flair"], lgg_case["mask"]))
    for text in expected:
        assert text in line, (text, line)
    assert "is a model bundle" not in line


def test_sizes_are_checked_before_anything_is_allocated(tmp_path, params, lgg_case):
    # a fine cnn grid: refused from the ROI's bounding box, with the limit, instead of a MemoryError for terabytes
    data = {"featureClass": {"cnn": {"patch_sizes": [8], "layers": ["conv1_1"], "spacing": 0.005}}}
    line = error_line(run("extract", params(data, "fine.yaml"), lgg_case["flair"], lgg_case["mask"]))
    assert "featureClass.cnn.spacing 0.005 mm" in line and "at most 134,217,728" in line and "MemoryError" not in line, line
    # a bin width so small that PyRadiomics would allocate its bins for 690 GiB: the key, the range, the smallest width
    line = error_line(run("extract", params(FIRSTORDER, "p.yaml"), lgg_case["flair"], lgg_case["mask"], "-s", "binWidth=1e-9"))
    assert "binWidth 1e-09 gives" in line and "grey levels over the ROI's intensity range" in line and "use setting.binWidth >=" in line, line
    assert "MemoryError" not in line
    # fisher: scales that would enlarge every slice beyond any memory
    data = {"featureClass": {"fisher": {"model": "default", "max_scale": 500.0}}}
    line = error_line(run("extract", params(data, "scales.yaml"), lgg_case["flair"], lgg_case["mask"]))
    assert "featureClass.fisher" in line and "max_scale: 500.0 is more than 8" in line, line


def test_the_suggested_bin_width_is_accepted(tmp_path, params, lgg_case):
    import re

    data = {"setting": {"binWidth": 0.001}, "featureClass": {"glcm": ["Contrast"]}}
    line = error_line(run("extract", params(data, "fine.yaml"), lgg_case["flair"], lgg_case["mask"]))
    suggested = re.search(r"binWidth >= ([0-9.e-]+)", line).group(1)
    run("extract", params({**data, "setting": {"binWidth": float(suggested)}}, "ok.yaml"), lgg_case["flair"], lgg_case["mask"], expect=0)


def test_pyradiomics_schema_errors_name_the_key_without_pykwalify_wrapping():
    from deepradiomics.classical import validate_pyradiomics_params
    from deepradiomics.errors import ParamsError

    with pytest.raises(ParamsError) as caught:
        validate_pyradiomics_params({"setting": {"padDistance": -1, "normalize": 3}}, "p.yaml")
    message = str(caught.value)
    assert "p.yaml: invalid PyRadiomics parameters: setting.padDistance: -1 is less than the minimum 0" in message
    assert "setting.normalize: 3 is not of type bool" in message and "fix the value" in message
    assert "SchemaError" not in message and "Path: '/'" not in message and "<" not in message


def test_a_study_its_folds_cannot_split_is_refused_before_any_case_is_extracted(tmp_path, params, lgg_case, monkeypatch):
    from deepradiomics.extractor import ExtractionTask
    from deepradiomics.study.foldwise import prepare_images

    manifest = tmp_path / "m.csv"
    grades = ["G2", "G2", "G2", "G3", "G3", "G3", "G3"]
    pd.DataFrame({"ID": [f"c{i}" for i in range(7)], "Image": [str(lgg_case["flair"])] * 7, "Mask": [str(lgg_case["mask"])] * 7, "grade": grades}).to_csv(manifest, index=False)
    monkeypatch.setattr(ExtractionTask, "compute", lambda self, case: pytest.fail("a case ran before the folds were checked"))
    p = params(FIRSTORDER)
    with pytest.raises(Exception, match=r"3 negative cases; stratified 5-fold CV needs at least 5 of each class"):
        prepare_images(manifest, p, target="grade", folds=5)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"ID": [f"c{i}" for i in range(7)], "grade": ["G2"] + [""] * 5 + ["G3"]}).to_csv(labels, index=False)
    line = error_line(run("study", "--manifest", manifest, "--params", p, "--labels", labels, "--target", "grade", "-o", tmp_path / "report"))
    assert "1 positive and 1 negative" in line and "labels.csv" in line, line


# ------------------------------------------------------------------------------------------------ plain values
class _NumpyDiagnostics(FeatureClass):
    """A class whose per-case diagnostics are numpy scalars and tuples of them (as numpy and ITK return them)."""

    name = "npdiag"
    family = "classical"

    def feature_names(self) -> list[str]:
        return ["Mean"]

    def compute(self, case):
        from deepradiomics.featureclass import ComputeResult

        values = np.asarray(case.array(), dtype=np.float64)[case.mask_array()]
        box = tuple(np.int64(v) for v in np.argwhere(case.mask_array()).min(0))
        return ComputeResult({"Mean": float(values.mean())}, {"Spread": np.float64(values.std()), "Corner": box, "Flags": np.array([True, False])})


@pytest.mark.parametrize("layout", ["deepradiomics", "pyradiomics"])
def test_text_cells_never_hold_numpy_reprs(layout, tmp_path, params, lgg_case):
    registry = get_registry()
    registry.register(_NumpyDiagnostics, source="tests")
    try:
        manifest = tmp_path / "m.csv"
        pd.DataFrame({"ID": ["a"], "Image": [str(lgg_case["flair"])], "Mask": [str(lgg_case["mask"])]}).to_csv(manifest, index=False)
        p = params({"setting": {"binWidth": 25.0}, "featureClass": {"firstorder": ["Mean"], "npdiag": {}}})
        for attempt in ("computed", "read back from --out-dir"):
            run("batch", p, manifest, "-o", tmp_path / f"t-{layout}.csv", "--layout", layout, "--out-dir", tmp_path / "cache", "--no-progress", expect=0)
            text = (tmp_path / f"t-{layout}.csv").read_text()
            assert "np." not in text and "array(" not in text, (attempt, text[:500])
        if layout == "deepradiomics":
            table = io.read_table(tmp_path / f"t-{layout}.csv")
            assert table.loc["a", "diagnostics_npdiag_Corner"].startswith("(") and table.loc["a", "diagnostics_npdiag_Flags"] == "[True, False]"
            run("extract", p, lgg_case["flair"], lgg_case["mask"], "-o", tmp_path / "one.csv", expect=0)
            assert "np." not in (tmp_path / "one.csv").read_text()
    finally:
        registry.unregister(_NumpyDiagnostics.name)


def test_voxel_mode_rows_hold_plain_pyradiomics_diagnostics(tmp_path, params):
    from deepradiomics.testing import synthetic_case

    case = synthetic_case(size=12)
    image, mask = tmp_path / "image.nrrd", tmp_path / "mask.nrrd"
    sitk.WriteImage(case.image(), str(image))
    sitk.WriteImage(case.mask_image(), str(mask))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"ID": ["s"], "Image": [str(image)], "Mask": [str(mask)]}).to_csv(manifest, index=False)
    p = params({"setting": {"binWidth": 25.0}, "voxelSetting": {"kernelRadius": 1}, "featureClass": {"firstorder": ["Mean"]}})
    run("batch", p, manifest, "--mode", "voxel", "--layout", "pyradiomics", "--maps-dir", tmp_path / "maps", "-o", tmp_path / "t.csv", "--no-progress", expect=0)
    text = (tmp_path / "t.csv").read_text()
    assert "diagnostics_Mask-original_BoundingBox" in text and "np." not in text, text[:800]
