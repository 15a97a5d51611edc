"""``fisher``'s ROI: the network's own segmentation (``roi: segmentation``, the paper's fully automatic pipeline)
with the shipped dlr-lgg-cpu on real LGG cases, and the small-ROI check measured on the image grid."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from click.testing import CliRunner  # noqa: E402
from deepradiomics_plugins.fisher import FisherVector, descriptors, roi_diagnostics  # noqa: E402

from deepradiomics import Extractor  # noqa: E402
from deepradiomics.batch import case_from_row, read_manifest  # noqa: E402
from deepradiomics.case import Case  # noqa: E402
from deepradiomics.cli import main  # noqa: E402
from deepradiomics.errors import CaseError  # noqa: E402
from deepradiomics.params import load_params  # noqa: E402
from deepradiomics.training.segment import dice  # noqa: E402
from tests.conftest import REPO, require_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 20 slices; dlr-lgg-cpu segments it well (Dice 0.830 against the manual mask, benchmarks/fisher_roi.py)
SEGMENTED_CASE = "TCGA_CS_4944_20010208"
#: dlr-lgg-cpu labels no voxel of it as tumour (one of 4 such LGG patients)
EMPTY_CASE = "TCGA_DU_8165_19970205"
#: two scales, two components, the shipped dlr-lgg-cpu: the ROI's mechanics at a fraction of the defaults' cost
FAST = {"scales": 2, "min_scale": 0.5, "max_scale": 1.0, "components": 2, "on_small_roi": "warn"}


def files(case_id: str) -> dict:
    folder = require_data("lgg", case_id)
    return {name: folder / f"{name}.nii.gz" for name in ("flair", "t1ce", "mask")}


def lgg(case_id: str, mask=None) -> Case:
    paths = files(case_id)
    return Case({"Image": paths["flair"], "t1ce": paths["t1ce"]}, mask or paths["mask"], case_id=case_id)


def test_segmentation_roi_is_what_the_segment_command_writes(tmp_path):
    """roi: segmentation describes exactly what roi: mask describes with the mask replaced by the file that
    `deepradiomics segment` writes, records it in the diagnostics, and the row carries them."""
    paths = files(SEGMENTED_CASE)
    automatic = FisherVector({**FAST, "roi": "segmentation"})
    described = automatic.describe(lgg(SEGMENTED_CASE))

    written = tmp_path / "auto_mask.nii.gz"
    args = ["segment", "dlr-lgg-cpu", str(paths["flair"]), "-m", f"t1ce={paths['t1ce']}", "-o", str(written), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    on_disk = FisherVector(FAST).describe(lgg(SEGMENTED_CASE, mask=written))
    np.testing.assert_array_equal(described["descriptors"], on_disk["descriptors"])
    np.testing.assert_array_equal(described["scale_counts"], on_disk["scale_counts"])

    manual = FisherVector(FAST).describe(lgg(SEGMENTED_CASE))
    assert manual["scale_counts"].tolist() != described["scale_counts"].tolist()  # the positions come from the segmentation
    assert set(manual) == {"descriptors", "scale_counts"}
    segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(written))) > 0
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(paths["mask"]))) > 0
    voxels = int(segmentation.sum())
    assert int(described["roi_voxels"]) == voxels and float(described["roi_volume"]) == voxels * 1.0  # 1 x 1 x 1 mm voxels
    assert float(described["roi_dice"]) == dice(segmentation, truth) and 0.8 < float(described["roi_dice"]) < 0.86

    automatic.fit_descriptors([described], [SEGMENTED_CASE])
    encoded = automatic.encode(described)
    assert encoded.diagnostics == {
        "Descriptors": len(described["descriptors"]),
        "RoiVoxels": voxels,
        "RoiVolume": float(voxels),
        "RoiDice": float(described["roi_dice"]),
    }
    assert automatic.diagnostics()["Roi"] == "segmentation" and FisherVector(FAST).diagnostics()["Roi"] == "mask"
    # cached descriptors (.npz) keep the provenance with its types
    buffer = io.BytesIO()
    np.savez(buffer, **described)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        assert roi_diagnostics({k: stored[k] for k in stored.files}) == {k: encoded.diagnostics[k] for k in ("RoiVoxels", "RoiVolume", "RoiDice")}

    # the row of an extraction: which ROI, its size and its Dice, beside the manual mask's own volume
    extractor = Extractor.from_dict({"featureClass": {"fisher": {**FAST, "roi": "segmentation"}}})
    extractor.plugin_classes["fisher"].set_fitted_state(automatic.fitted_state())
    row = extractor.compute(lgg(SEGMENTED_CASE))
    assert row["diagnostics_fisher_Roi"] == "segmentation" and row["diagnostics_fisher_RoiVoxels"] == voxels
    assert row["diagnostics_fisher_RoiDice"] == float(described["roi_dice"]) and row["diagnostics_Case_RoiVolume"] == float(truth.sum())
    assert all(row[f"original_fisher_{k}"] == v for k, v in encoded.features.items())


def test_a_segmentation_without_tumour_is_one_case_error_naming_the_case_the_model_and_the_fix():
    with pytest.raises(CaseError) as raised:
        FisherVector({**FAST, "roi": "segmentation"}).describe(lgg(EMPTY_CASE))
    message = str(raised.value)
    assert "\n" not in message
    assert f"case '{EMPTY_CASE}': the network of model 'dlr-lgg-cpu' found no tumour" in message and "use roi: mask" in message


def test_roi_setting_is_checked_by_name():
    from deepradiomics.errors import ParamsError

    with pytest.raises(ParamsError, match="roi"):
        FisherVector({"roi": "segmentaton"})


# ---------------------------------------------------------------------------------------------- small ROIs
def test_small_roi_condition_on_an_anisotropic_grid():
    """A box of h x w image pixels on an H x W slice resized to S x S spans max(h S/H, w S/W) * scale network pixels."""
    roi = np.zeros((2, 128, 256), bool)  # 128 rows, 256 columns -> 64 x 64: rows zoomed by 1/2, columns by 1/4
    roi[0, 10:50, 10:90] = True  # 40 x 80 -> 20 x 20 network pixels
    roi[1, 10:70, 10:30] = True  # 60 x 20 -> 30 x 5: the largest cross-section as the network sees it
    size = descriptors.roi_size(roi, 64, 0.5, 21)
    assert (size.box.z, size.height, size.width) == (1, 60, 20)
    assert size.network_extent == pytest.approx(15.0) and size.small
    assert size.field_on_image == pytest.approx((84.0, 168.0)) and size.scale_needed() == 0.7
    assert not descriptors.roi_size(roi, 64, 0.7, 21).small  # 30 x 0.7 = 21
    assert descriptors.roi_size(roi, None, 0.5, 21).network_extent == pytest.approx(40.0)  # native size: zoom 1
    assert descriptors.roi_size(np.zeros((1, 8, 8), bool), 64, 0.5, 21) is None


def test_small_roi_check_counts_image_pixels_against_the_receptive_field_on_the_image_grid(lgg_manifest):
    """dlr-lgg-cpu at the params' smallest scale 0.5 on 256 x 256 slices: conv6's 21 pixels cover 84 image pixels."""
    params = load_params(REPO / "params" / "fisher.yaml")
    fisher = FisherVector(params.class_settings("fisher"))
    frame, base = read_manifest(lgg_manifest)
    sizes = {}
    for _, row in frame.iterrows():
        case = case_from_row(row, base)
        sizes[case.case_id] = fisher.roi_size(case.mask_array())
    known = {  # largest cross-section (rows x columns of its box), measured by benchmarks/fisher_roi.py
        "TCGA_DU_8165_19970205": (38, 30, True),
        "TCGA_HT_7874_19950902": (81, 56, True),  # 81 < 84 along both axes
        "TCGA_DU_5852_19950709": (85, 28, False),  # 85 >= 84 rows
        "TCGA_DU_7018_19911220": (140, 83, False),
    }
    for case_id, (height, width, small) in known.items():
        size = sizes[case_id]
        assert (size.height, size.width, size.small) == (height, width, small), case_id
        assert size.network_extent == pytest.approx(max(height, width) * 128 / 256 * 0.5)
        assert size.field_on_image == pytest.approx((84.0, 84.0))
    assert sum(size.small for size in sizes.values()) == 37  # of 63, as params/fisher.yaml says


def test_small_roi_error_says_what_the_network_sees():
    case = lgg(EMPTY_CASE)  # its manual mask: a 38 x 30 box at most
    pattern = (
        rf"case '{EMPTY_CASE}': its largest ROI cross-section spans 38 x 30 image pixels \(38 x 30 mm\), 9.5 network pixels at the "
        r"smallest scale 0.5 \(slices resized from 256x256 to 128x128, then scaled by 0.5\), less than the 21-pixel receptive field of "
        r"layer 'conv6' \(84 x 84 image pixels at that scale\).*set min_scale to 1.11"
    )
    with pytest.raises(CaseError, match=pattern):
        FisherVector({**FAST, "on_small_roi": "error"}).describe(case)
