"""Example cases shipped in the package: paths, licences, and extraction with nothing beside the repository."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from deepradiomics import Extractor
from deepradiomics.cli import main
from deepradiomics.data import example_case, example_names
from deepradiomics.errors import ParamsError


def test_example_cases_are_real_shipped_files_with_their_licences():
    assert example_names() == ["lgg", "brain1"]
    lgg = example_case("lgg")
    assert set(lgg) == {"Image", "Mask", "t1", "t1ce"} and all(p.is_file() for p in lgg.values())
    assert "CC BY-NC-SA 4.0" in (lgg["Image"].parent / "ATTRIBUTION.md").read_text()
    brain1 = example_case("brain1")
    assert "Redistribution and use" in (brain1["Image"].parent / "LICENSE.txt").read_text()
    total = sum(p.stat().st_size for case in (lgg, brain1) for p in case.values())
    assert total < 4 * 2**20  # small enough for the repository
    with pytest.raises(ParamsError, match="Did you mean 'brain1'"):
        example_case("brain")


def test_the_shipped_lgg_case_equals_the_shared_one(data_dir):
    shared = data_dir / "lgg" / "TCGA_HT_7860_19960513"
    for role, path in example_case("lgg").items():
        assert path.read_bytes() == (shared / path.name).read_bytes(), role


def test_extract_and_batch_on_the_shipped_cases(tmp_path):
    brain1 = example_case("brain1")
    row = Extractor({"featureClass": {"firstorder": ["Mean"]}}).execute(brain1["Image"], brain1["Mask"])
    assert row["original_firstorder_Mean"] > 0
    runner = CliRunner()
    shell = runner.invoke(main, ["example", "lgg", "--shell"])
    assert shell.exit_code == 0 and "-m t1=" in shell.stdout and "-m t1ce=" in shell.stdout
    manifest = tmp_path / "examples.csv"
    params = tmp_path / "p.yaml"
    params.write_text("featureClass: {firstorder: [Mean], shape: [VoxelVolume]}\n")
    listed = runner.invoke(main, ["example", "--manifest", str(manifest)])
    assert listed.exit_code == 0 and manifest.is_file()
    result = runner.invoke(main, ["batch", str(params), str(manifest), "-o", str(tmp_path / "t.csv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert list(table.index) == ["lgg", "brain1"] and table["original_shape_VoxelVolume"].notna().all()
