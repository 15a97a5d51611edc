"""Fitted classes end to end: fit, artifacts (arrays + sha256), fitted params files, CLI, refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from deepradiomics import Extractor
from deepradiomics.batch import case_from_row, read_manifest
from deepradiomics.cli import main
from deepradiomics.errors import ModelError, NotFittedError, ParamsError
from deepradiomics.registry import get_registry
from deepradiomics.testing import check_feature_class
from tests.fitted_class import FITTED_CLASS_CHECKS, IntensityCodebook

PARAMS = {"setting": {"binWidth": 25.0}, "featureClass": {"firstorder": ["Mean"], "codebook": {"clusters": 3}}}


@pytest.fixture(autouse=True)
def registered():
    registry = get_registry()
    registry.register(IntensityCodebook, source="tests")
    yield
    registry.unregister(IntensityCodebook.name)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, lgg_manifest):
    """Four real LGG cases with absolute paths (FLAIR as Image)."""
    frame, base = read_manifest(lgg_manifest)
    rows = frame.head(4)[["ID", "Image", "Mask", "grade"]].copy()
    for column in ("Image", "Mask"):
        rows[column] = [str(base / p) for p in rows[column]]
    path = tmp_path_factory.mktemp("fitted") / "cases.csv"
    rows.to_csv(path, index=False)
    return path


def test_conformance_checks_are_reported_by_name(lgg_case):
    from deepradiomics.case import Case

    case = Case({"Image": lgg_case["flair"]}, lgg_case["mask"], case_id="lgg")
    report = check_feature_class(IntensityCodebook, settings={"clusters": 3}, case=case)
    names = [r.name for r in report.results]
    assert names == FITTED_CLASS_CHECKS
    assert all(r.passed for r in report.results), str(report)
    assert "tampered artifact is refused" in report["save_load_round_trip"].detail


def test_compute_before_fit_names_the_fit_command(manifest):
    extractor = Extractor(PARAMS)
    with pytest.raises(NotFittedError, match="deepradiomics fit PARAMS MANIFEST -o DIR"):
        extractor.execute_batch(manifest)  # the whole batch fails at once, not every case
    frame, base = read_manifest(manifest)
    with pytest.raises(NotFittedError):
        extractor.compute(case_from_row(frame.iloc[0].to_dict(), base))


def test_fit_save_and_use_the_fitted_params_everywhere(manifest, tmp_path):
    frame, base = read_manifest(manifest)
    cases = [case_from_row(r, base) for r in frame.to_dict(orient="records")]
    extractor = Extractor(PARAMS).fit(cases)
    direct = extractor.execute_batch(manifest)
    params_path = extractor.save_fitted(tmp_path / "fitted")
    artifact = tmp_path / "fitted" / "codebook"
    assert sorted(p.name for p in artifact.iterdir()) == ["config.yaml", "state.npz"]
    config = yaml.safe_load((artifact / "config.yaml").read_text())
    assert config["class"] == "codebook" and config["fitted_on"] == list(frame["ID"]) and config["settings"]["clusters"] == 3
    with np.load(artifact / "state.npz", allow_pickle=False) as data:
        assert list(data.files) == ["centres"]
    fitted = yaml.safe_load(params_path.read_text())
    assert fitted["featureClass"]["codebook"] == {"clusters": 3, "fitted": "codebook"}  # relative to params.yaml
    again = Extractor.from_yaml(params_path).execute_batch(manifest)
    features = [c for c in direct.columns if c.startswith("original_")]
    pd.testing.assert_frame_equal(again[features], direct[features])
    digest = config["state_sha256"]
    assert (again["diagnostics_codebook_FittedSha256"] == digest).all()
    assert again["diagnostics_Configuration_ParamsHash"].iloc[0] == Extractor.from_yaml(params_path).params_hash
    # the artifact's sha256 is part of the params hash: a refit with other data gives another hash
    refit = Extractor(PARAMS).fit(cases[:2])
    refit.save_fitted(tmp_path / "refit")
    assert Extractor.from_yaml(tmp_path / "refit" / "params.yaml").params_hash != Extractor.from_yaml(params_path).params_hash
    # the fitted params travel with their artifacts
    shutil.copytree(tmp_path / "fitted", tmp_path / "moved")
    assert Extractor.from_yaml(tmp_path / "moved" / "params.yaml").execute_batch(manifest)[features].equals(direct[features])


def test_tampered_or_foreign_artifacts_and_changed_settings_are_refused(manifest, tmp_path):
    frame, base = read_manifest(manifest)
    cases = [case_from_row(r, base) for r in frame.to_dict(orient="records")]
    params_path = Extractor(PARAMS).fit(cases).save_fitted(tmp_path / "fitted")
    state = tmp_path / "fitted" / "codebook" / "state.npz"
    data = bytearray(state.read_bytes())
    data[-30] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="state.npz has sha256 .* do not edit it"):
        Extractor.from_yaml(params_path).compute(cases[0])
    Extractor(PARAMS).fit(cases).save_fitted(tmp_path / "good")
    edited = yaml.safe_load((tmp_path / "good" / "params.yaml").read_text())
    edited["featureClass"]["codebook"]["clusters"] = 5
    (tmp_path / "good" / "edited.yaml").write_text(yaml.safe_dump(edited))
    with pytest.raises(ParamsError, match="clusters differ from those the artifact"):
        Extractor.from_yaml(tmp_path / "good" / "edited.yaml").compute(cases[0])
    config = tmp_path / "good" / "codebook" / "config.yaml"
    config.write_text(config.read_text().replace("class: codebook", "class: other"))
    with pytest.raises(ModelError, match="holds the fitted state of class 'other'"):
        Extractor.from_yaml(tmp_path / "good" / "params.yaml").compute(cases[0])


def test_fit_command_then_extract_and_batch(manifest, tmp_path, lgg_case):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    runner = CliRunner()
    result = runner.invoke(main, ["fit", str(params), str(manifest), "-o", str(tmp_path / "out"), "--jobs", "2", "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert result.exit_code == 0, result.output
    fitted = tmp_path / "out" / "params.yaml"
    assert result.stdout.strip() == str(fitted)
    assert len(list((tmp_path / "cache" / "descriptors" / "codebook").glob("*/*.npz"))) == 4  # in the entry of its settings
    row = runner.invoke(main, ["extract", str(fitted), str(lgg_case["flair"]), str(lgg_case["mask"])])
    assert row.exit_code == 0, row.output
    header = row.stdout.splitlines()[0].split(",")
    assert header[-4:] == ["original_firstorder_Mean", "original_codebook_Bin0", "original_codebook_Bin1", "original_codebook_Bin2"]
    batch = runner.invoke(main, ["batch", str(fitted), str(manifest), "-o", str(tmp_path / "t.parquet"), "--no-progress"])
    assert batch.exit_code == 0, batch.output
    unfitted = runner.invoke(main, ["extract", str(params), str(lgg_case["flair"]), str(lgg_case["mask"])])
    assert unfitted.exit_code == 1 and "deepradiomics fit" in unfitted.output and "Traceback" not in unfitted.output
    nothing = tmp_path / "plain.yaml"
    nothing.write_text("featureClass: {firstorder: [Mean]}\n")
    none = runner.invoke(main, ["fit", str(nothing), str(manifest), "-o", str(tmp_path / "none")])
    assert none.exit_code == 1 and "names no class that needs fitting" in none.output
