"""What a built wheel contains: the code, the shipped bundles, example cases and params files, the licences."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(out), "-q"],
        check=True,
        capture_output=True,
        cwd=build,
    )
    wheels = list(out.glob("deepradiomics-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as archive:
        return archive.namelist()


def test_wheel_holds_bundles_examples_params_and_licences(wheel_names):
    names = set(wheel_names)
    models = [p.name for p in (ROOT / "deepradiomics" / "data" / "models").iterdir() if (p / "config.yaml").is_file()]
    assert models
    for model in models:
        for file in ("model.pt", "config.yaml", "card.md"):
            assert f"deepradiomics/data/models/{model}/{file}" in names, (model, file)
    from deepradiomics.data import EXAMPLE_FILES

    for case, files in EXAMPLE_FILES.items():
        for file in [*files.values(), "ATTRIBUTION.md"]:
            assert f"deepradiomics/data/examples/{case}/{file}" in names, (case, file)
    shipped = {f"deepradiomics/data/params/{p.name}" for p in (ROOT / "params").glob("*.yaml")}
    assert shipped and shipped <= names
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    assert any(n.startswith(f"{dist_info}/licenses/") and n.endswith("LICENSE-DATA.md") for n in names)
    assert "deepradiomics_plugins/vqhist/__init__.py" in names and "deepradiomics/batch/run.py" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n or n.endswith(".pyc")]
