"""PyRadiomics is an extra of ``pip install`` (``deepradiomics[pyradiomics]``); without it deepradiomics says so in one line.

``make install`` builds PyRadiomics 3.0.1 itself, so the base requirements name no PyRadiomics distribution (two
distributions would write the same ``radiomics`` package); a user's ``pip install '.[pyradiomics]'`` takes the fork
that measured identical to 3.0.1 (setup.py). Each test runs a fresh interpreter in which PyRadiomics and its pykwalify
cannot be imported (``sys.modules[name] = None``: ``import`` raises ModuleNotFoundError and ``find_spec`` finds
nothing), as after a plain ``pip install .``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from deepradiomics.errors import (
    PYRADIOMICS_REQUIREMENT,
    DeepRadiomicsError,
    PyRadiomicsNotInstalledError,
    pyradiomics_missing,
)

WITHOUT_PYRADIOMICS = "import sys\nsys.modules.update(radiomics=None, pykwalify=None)\n"


def run_without_pyradiomics(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_PYRADIOMICS + code], capture_output=True, text=True, timeout=120)


def cli(*argv: str) -> str:
    """The code of ``deepradiomics ARGV`` (``{image}``/``{mask}``: the shipped LGG example case's files)."""
    return (
        "from deepradiomics.cli import main\n"
        "from deepradiomics.data import example_case\n"
        "case = example_case('lgg')\n"
        f"argv = [a.format(image=case['Image'], mask=case['Mask']) for a in {list(argv)!r}]\n"
        "main(argv, prog_name='deepradiomics')\n"
    )


def test_extract_without_pyradiomics_is_one_line_naming_the_install(tmp_path):
    result = run_without_pyradiomics(cli("extract", "deep", "{image}", "{mask}", "-o", str(tmp_path / "features.csv")))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: PyRadiomics is not installed (no module named 'radiomics')"), lines[0]
    assert f"pip install '{PYRADIOMICS_REQUIREMENT}'" in lines[0] and "make install" in lines[0]


@pytest.mark.parametrize("argv", [["--version"], ["plugins"], ["params", "show", "deep"]])
def test_commands_that_need_no_pyradiomics_still_run(argv):
    result = run_without_pyradiomics(cli(*argv))
    assert result.returncode == 0, result.stderr
    assert "PyRadiomics" not in result.stderr


@pytest.mark.parametrize(
    "statement",
    [
        "import deepradiomics\ndeepradiomics.Extractor",
        "import deepradiomics.compat",
        "import deepradiomics.voxelengine",
        "import deepradiomics\ndeepradiomics.load_params('deep')",
    ],
)
def test_the_api_raises_one_error_type_at_first_use(statement):
    result = run_without_pyradiomics(
        "from deepradiomics.errors import PyRadiomicsNotInstalledError\n"
        f"try:\n    {statement.replace(chr(10), chr(10) + '    ')}\n"
        "except PyRadiomicsNotInstalledError as exc:\n"
        "    assert isinstance(exc, ModuleNotFoundError) and exc.name == 'radiomics', exc\n"
        "    print('refused')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"


def test_the_error_is_a_deepradiomics_and_an_import_error_and_pickles():
    error = PyRadiomicsNotInstalledError("pykwalify")
    assert isinstance(error, DeepRadiomicsError) and isinstance(error, ModuleNotFoundError)
    assert error.name == "pykwalify" and "no module named 'pykwalify'" in str(error)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PyRadiomicsNotInstalledError and str(copy) == str(error) and copy.name == "pykwalify"


def test_only_pyradiomics_modules_are_reworded():
    other = ModuleNotFoundError("No module named 'scipy'", name="scipy")
    assert pyradiomics_missing(other) is other
    found = pyradiomics_missing(ModuleNotFoundError("No module named 'radiomics.cMatrices'", name="radiomics.cMatrices"))
    assert isinstance(found, PyRadiomicsNotInstalledError)  # radiomics is importable here: the submodule's package
