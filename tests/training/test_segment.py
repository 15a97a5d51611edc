"""`deepradiomics segment`: a bundle's segmentation of a real LGG case on the case's own grid, both architectures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from click.testing import CliRunner  # noqa: E402

from deepradiomics.cli import main  # noqa: E402
from deepradiomics.models import load_bundle, save_bundle  # noqa: E402
from deepradiomics.nets.dlrcnn import DLRCNN  # noqa: E402
from deepradiomics.nets.preprocess import Preprocessing  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402
from deepradiomics.training.data import SliceSet, map_labels  # noqa: E402
from deepradiomics.training.loop import fit  # noqa: E402
from deepradiomics.training.segment import dice, segment_arrays  # noqa: E402
from tests.conftest import require_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def case() -> dict:
    folder = require_data("lgg", "TCGA_CS_4943_20000902")
    return {name: folder / f"{name}.nii.gz" for name in ("flair", "t1", "t1ce", "mask")}


def _arrays(case, names):
    return [sitk.GetArrayFromImage(sitk.ReadImage(str(case[n]))) for n in names]


def _tiny_bundle(folder: Path, case, kind: str, label_map=None) -> Path:
    """A tiny network of ``kind`` trained for a few seconds on the case's own slices (never shipped)."""
    label_map = label_map or {"nonzero": 1}
    names = ("Image", "t1ce")
    flair, t1ce, mask = _arrays(case, ("flair", "t1ce", "mask"))
    torch.manual_seed(0)
    if kind == "dlrcnn":
        arch = {"type": "dlrcnn", "in_channels": 2, "num_classes": 2, "filters": [4, 4, 4, 8, 8, 8], "fc_units": 16, "dropout": 0.0, "init": "he"}
        train = {"epochs": 2, "batch_size": 64, "lr": 0.02, "patches": {"per_epoch": 512}, "augment": {"max_rotation": 0.0}}
        size = None
    else:
        arch = {
            "type": "vqseg", "in_channels": 2, "num_classes": 2, "filters": [8, 8, 8, 8], "decoder_filters": [8, 8, 8, 8],
            "input_size": 32, "num_embeddings": 16, "embedding_dim": 8,
        }
        train = {"epochs": 2, "batch_size": 8, "lr": 2e-3}
        size = 32
    spec = Preprocessing(channels=names, input_size=size)
    net = (DLRCNN if kind == "dlrcnn" else VQSegNet).from_config(arch)
    data = SliceSet(spec.slices([flair, t1ce]), spec.labels(map_labels(mask, label_map)), torch.zeros(len(flair), dtype=torch.long), ["c"])
    fit(net, data, None, {**train, "seed": 0}, progress=False)
    config = {
        "name": f"tiny-{kind}",
        "format_version": 2,
        "architecture": arch,
        "modalities": [{"name": "Image", "column": "Image"}, {"name": "t1ce", "column": "Image_t1ce"}],
        "preprocessing": spec.to_config(),
        "label_map": label_map,
    }
    return save_bundle(net, config, folder, "# tiny test bundle {sha256}\n")


@pytest.mark.parametrize("kind", ["dlrcnn", "vqseg"])
def test_segment_command_writes_labels_on_the_input_grid(kind, case, tmp_path):
    bundle = _tiny_bundle(tmp_path / "bundle", case, kind)
    out = tmp_path / "auto_mask.nii.gz"
    result = CliRunner().invoke(main, ["segment", str(bundle), str(case["flair"]), "-m", f"t1ce={case['t1ce']}", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    written, reference = sitk.ReadImage(str(out)), sitk.ReadImage(str(case["flair"]))
    assert written.GetSize() == reference.GetSize() and written.GetSpacing() == reference.GetSpacing()
    assert written.GetOrigin() == reference.GetOrigin() and written.GetDirection() == reference.GetDirection()
    labels = sitk.GetArrayFromImage(written)
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) <= {0, 1}
    expected = segment_arrays(load_bundle(bundle), _arrays(case, ("flair", "t1ce")))
    assert np.array_equal(labels, expected)
    truth = _arrays(case, ("mask",))[0] > 0
    assert 0 < labels.sum() < labels.size / 2 and dice(labels > 0, truth) > 0.1  # a few seconds of training on this case


def test_dlr_segmentation_on_the_native_grid_is_the_argmax_of_the_network(case, tmp_path):
    bundle = load_bundle(_tiny_bundle(tmp_path / "b", case, "dlrcnn"))
    arrays = _arrays(case, ("flair", "t1ce"))
    slices = bundle.preprocessing.slices(arrays)
    assert np.array_equal(segment_arrays(bundle, arrays), bundle.model.segment(slices).numpy().astype(np.uint8))


def test_labels_are_written_as_trained_and_bad_input_names_the_fix(case, tmp_path):
    bundle = _tiny_bundle(tmp_path / "b", case, "vqseg", label_map={"2": 1})  # mask value 2 = class 1
    arrays = _arrays(case, ("flair", "t1ce"))
    labels = segment_arrays(load_bundle(bundle), arrays)
    assert set(np.unique(labels).tolist()) <= {0, 2} and (labels == 2).any()
    result = CliRunner().invoke(main, ["segment", str(bundle), str(case["flair"]), "-o", str(tmp_path / "m.nii.gz")])
    assert result.exit_code != 0 and "t1ce" in result.output and "-m t1ce=PATH" in result.output
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "nowhere"), str(case["flair"]), "-o", str(tmp_path / "m.nii.gz")])
    assert result.exit_code != 0 and "neither a shipped bundle" in result.output
    assert "segment" in CliRunner().invoke(main, ["--help"]).output


def test_shipped_vq_bundle_segments_a_held_out_patient():
    """vq-lgg-cpu on one of its 9 validation patients (never trained on), Dice on the original grid."""
    bundle = load_bundle("vq-lgg-cpu")
    patient = "TCGA_HT_7879_19981009"
    assert patient in bundle.config["metrics"]["validation_cases"]
    folder = require_data("lgg", patient)
    arrays = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{n}.nii.gz"))) for n in ("t1", "flair", "t1ce")]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nii.gz"))) > 0
    assert dice(segment_arrays(bundle, arrays) > 0, truth) > 0.6


def test_shipped_dlr_bundle_segments_a_held_out_patient_and_gives_conv6_descriptors():
    """dlr-lgg-cpu on a validation patient (0.82 measured by benchmarks/segment_dice.py), and its fisher API."""
    bundle = load_bundle("dlr-lgg-cpu")
    patient = "TCGA_HT_7879_19981009"
    assert patient in bundle.config["metrics"]["validation_cases"] and bundle.modalities == ["Image", "t1ce"]
    assert (bundle.path / "model.pt").stat().st_size < 5 * 2**20
    folder = require_data("lgg", patient)
    arrays = [sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{n}.nii.gz"))) for n in ("flair", "t1ce")]
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nii.gz"))) > 0
    assert dice(segment_arrays(bundle, arrays) > 0, truth) > 0.7
    slices = bundle.preprocessing.slices(arrays)[10:12]
    descriptors = bundle.model.features(slices, "conv6")
    assert descriptors.shape == (2, 128, 69, 69)  # centres -6, -4, ..., 130 (stride 2, offset -6) on the 128 x 128 input
    assert bundle.model.layer_geometry("conv6") == {"stride": 2, "offset": -6, "receptive_field": 21, "pad": 16}
