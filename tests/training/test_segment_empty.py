"""`deepradiomics segment` and a segmentation without tumour: refused (exit 1, nothing written) unless
--allow-empty, with the shipped dlr-lgg-cpu on a real LGG case it finds no tumour in."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from click.testing import CliRunner  # noqa: E402

from deepradiomics.cli import main  # noqa: E402
from tests.conftest import require_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: dlr-lgg-cpu labels no voxel of this patient as tumour (benchmarks/fisher_roi.py --roi segmentation)
EMPTY_CASE = "TCGA_DU_8165_19970205"


@pytest.fixture(scope="module")
def images() -> dict:
    folder = require_data("lgg", EMPTY_CASE)
    return {name: folder / f"{name}.nii.gz" for name in ("flair", "t1ce")}


def test_an_empty_segmentation_is_refused_unless_allowed(images, tmp_path, caplog):
    out = tmp_path / "new" / "folder" / "auto_mask.nii.gz"  # a folder that does not exist yet is created
    args = ["segment", "dlr-lgg-cpu", str(images["flair"]), "-m", f"t1ce={images['t1ce']}", "-o", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and not out.exists()
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert f"the network of bundle 'dlr-lgg-cpu' found no tumour in image '{images['flair']}'" in lines[0] and "--allow-empty" in lines[0]

    with caplog.at_level(logging.WARNING, logger="deepradiomics.segment"):
        allowed = CliRunner().invoke(main, [*args, "--allow-empty"])
    assert allowed.exit_code == 0, allowed.output
    assert "found no tumour" in caplog.text and "--allow-empty" in caplog.text
    written, reference = sitk.ReadImage(str(out)), sitk.ReadImage(str(images["flair"]))
    assert written.GetSize() == reference.GetSize() and written.GetSpacing() == reference.GetSpacing()
    assert not np.any(sitk.GetArrayFromImage(written))


def test_the_output_is_checked_before_the_network_runs(images, tmp_path, monkeypatch):
    import deepradiomics.training.segment as segment

    def never(*args, **kwargs):
        raise AssertionError("the network ran before the output was checked")

    monkeypatch.setattr(segment, "segment_images", never)
    for output, expected in ((images["flair"], "input"), (tmp_path / "mask.txt", "unknown image extension")):
        result = CliRunner().invoke(main, ["segment", "dlr-lgg-cpu", str(images["flair"]), "-m", f"t1ce={images['t1ce']}", "-o", str(output), "--allow-empty"])
        assert result.exit_code == 1 and expected in result.output, result.output
