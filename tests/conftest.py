"""Shared fixtures: the real data in ../shared/data and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def require_data(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared data folder sits beside the repository)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def lgg_manifest() -> Path:
    return require_data("lgg", "cases.csv")


@pytest.fixture(scope="session")
def lgg_case() -> dict:
    """One real LGG case (20 slices): paths of flair (main image), t1, t1ce and the mask."""
    folder = require_data("lgg", "TCGA_CS_4942_19970222")
    return {name: folder / f"{name}.nii.gz" for name in ("flair", "t1", "t1ce", "mask")}


@pytest.fixture(scope="session")
def brain1() -> dict:
    folder = require_data("pyradiomics")
    return {"image": folder / "brain1_image.nrrd", "mask": folder / "brain1_label.nrrd"}


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: tiny networks run faster on one thread than on two shared cores
    (thread synchronisation costs more than their arithmetic). Restored after the module."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quiet_pyradiomics(request):
    """PyRadiomics at ERROR (or the module's ``PYRADIOMICS_LOG_LEVEL``) for the module: it warns on stderr for
    normal situations (symmetrical GLCM, fixed bin count). Restored after the module."""
    import logging

    import radiomics

    level = radiomics.handler.level
    radiomics.setVerbosity(getattr(request.module, "PYRADIOMICS_LOG_LEVEL", logging.ERROR))
    yield
    radiomics.setVerbosity(level)
