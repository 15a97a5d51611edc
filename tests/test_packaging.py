"""What a built wheel contains: the code, the shipped bundles, example cases and params files, the licences."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
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
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_pyradiomics_is_the_extra_not_a_base_requirement(wheel):
    """``make install`` builds PyRadiomics 3.0.1; a base requirement on another distribution of ``radiomics`` would
    install a second one on top. pip users take the extra (the fork the error message names)."""
    from deepradiomics.errors import PYRADIOMICS_REQUIREMENT

    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert base and not [r for r in base if "radiomics" in r.lower()], base
    assert [r.split(";")[0].strip() for r in requires if "extra == \"pyradiomics\"" in r] == [PYRADIOMICS_REQUIREMENT], requires
    assert "Provides-Extra: pyradiomics" in metadata


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
