"""vqhist: the codeword histogram feature class on real cases (LGG, and the 4-channel BraTS case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deepradiomics_plugins.vqhist import VQHistogram  # noqa: E402

from deepradiomics.case import Case  # noqa: E402
from deepradiomics.errors import CaseError, ParamsError  # noqa: E402
from deepradiomics.models import save_bundle  # noqa: E402
from deepradiomics.nets.preprocess import mask_to_slices, volume_to_slices  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402
from deepradiomics.testing import check_feature_class  # noqa: E402
from deepradiomics.training.data import SliceSet, map_labels  # noqa: E402
from deepradiomics.training.loop import fit  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LGG_CASE = DATA / "lgg" / "TCGA_CS_4942_19970222"
BRATS = DATA / "brats23"
SIZE, K = 32, 16


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the repository)")
    return path


def _arch(in_channels: int, num_classes: int) -> dict:
    return {
        "type": "VQSegNet",
        "in_channels": in_channels,
        "num_classes": num_classes,
        "filters": [8, 8, 16, 16],
        "decoder_filters": [16, 16, 8, 8],
        "input_size": SIZE,
        "num_embeddings": K,
        "embedding_dim": 8,
        "quantizer": {"kmeans_init": True, "dead_threshold": 0.0},
    }


def _train_tiny_bundle(folder: Path, arrays, mask, names, label_map, steps_epochs=2, seed=0) -> Path:
    """Train a tiny network for a few steps on one real case's slices and save it as a bundle."""
    arch = _arch(len(arrays), 1 + max(label_map.values()))
    torch.manual_seed(seed)
    net = VQSegNet.from_config(arch)
    x = volume_to_slices(arrays, SIZE)
    y = mask_to_slices(map_labels(np.asarray(mask), label_map), SIZE)
    data = SliceSet(x, y, torch.zeros(len(x), dtype=torch.long), ["case"])
    fit(
        net,
        data,
        None,
        {"epochs": steps_epochs, "batch_size": 16, "lr": 1e-3, "seed": seed, "augment": {"flip": False, "max_rotation": 0.0}},
        progress=False,
    )
    config = {"name": folder.name, "architecture": arch, "modalities": [{"name": n, "column": f"Image_{n}"} for n in names]}
    save_bundle(net, config, folder, "# tiny test model trained in tests/plugins/test_vqhist.py\nsha256 {sha256}\n")
    return folder


def _lgg_case() -> Case:
    folder = _need(LGG_CASE)
    return Case(
        {"Image": folder / "flair.nii.gz", "t1": folder / "t1.nii.gz", "t1ce": folder / "t1ce.nii.gz"},
        folder / "mask.nii.gz",
        case_id=folder.name,
    )


@pytest.fixture(scope="module")
def lgg_bundle(tmp_path_factory) -> Path:
    case = _lgg_case()
    arrays = [case.array(n) for n in ("t1", "Image", "t1ce")]
    return _train_tiny_bundle(
        tmp_path_factory.mktemp("models") / "tiny-lgg", arrays, case.mask_array(), ["t1", "Image", "t1ce"], {"nonzero": 1}
    )


def _settings(bundle, **extra):
    return {"model": str(bundle), "modalities": ["t1", "Image", "t1ce"], **extra}


def test_conformance(lgg_bundle):
    check_feature_class(VQHistogram, settings=_settings(lgg_bundle), case=_lgg_case())


def test_feature_names_come_from_the_model(lgg_bundle):
    names = VQHistogram(_settings(lgg_bundle)).feature_names()
    assert names == [f"Codeword{i:03d}" for i in range(K)]


def test_volume_counts_sum_to_latent_cells_and_are_reproducible(lgg_bundle):
    case = _lgg_case()
    n_slices = case.array("Image").shape[0]
    first = VQHistogram(_settings(lgg_bundle))
    result = first.compute(case)
    counts = result.features
    assert sum(counts.values()) == n_slices * 8 * 8
    assert all(float(v).is_integer() and v >= 0 for v in counts.values())
    assert result.diagnostics["LatentCells"] == n_slices * 64  # per case: returned, not left on the instance
    assert 1.0 <= result.diagnostics["Perplexity"] <= K
    assert "LatentCells" not in first.diagnostics()
    again = VQHistogram(_settings(lgg_bundle)).compute(_lgg_case()).features  # fresh instance, fresh case
    assert again == counts
    freq = VQHistogram(_settings(lgg_bundle, normalize="frequency")).compute(case).features
    assert sum(freq.values()) == pytest.approx(1.0)
    assert freq == pytest.approx({k.replace("Codeword", "Frequency"): v / (n_slices * 64) for k, v in counts.items()})
    both = VQHistogram(_settings(lgg_bundle, normalize="both")).compute(case).features
    assert both == {**counts, **freq}  # the two sub-families side by side


def test_roi_counts_only_cells_touching_the_mask(lgg_bundle):
    case = _lgg_case()
    volume = VQHistogram(_settings(lgg_bundle)).compute(case).features
    roi_class = VQHistogram(_settings(lgg_bundle, region="roi"))
    roi = roi_class.compute(case).features
    assert all(roi[k] <= volume[k] for k in volume)
    # the number of counted cells, from the mask directly: resize (nearest) and look at each 4x4 block
    mask = mask_to_slices(case.mask_array(), SIZE).numpy() > 0
    block = SIZE // 8
    expected = sum(
        mask[z, i * block : (i + 1) * block, j * block : (j + 1) * block].any()
        for z in range(mask.shape[0])
        for i in range(8)
        for j in range(8)
    )
    assert 0 < sum(roi.values()) == expected < sum(volume.values())
    # and they are exactly the codewords of those cells
    codes = roi_class.codeword_map(case).numpy()
    cells = mask.reshape(mask.shape[0], 8, block, 8, block).any(axis=(2, 4))
    direct = np.bincount(codes[cells], minlength=K)
    assert [roi[f"Codeword{i:03d}"] for i in range(K)] == direct.tolist()


def test_fast_inference_path_equals_slice_by_slice(lgg_bundle):
    case = _lgg_case()
    vq = VQHistogram(_settings(lgg_bundle, batch_size=7))
    fast = vq.codeword_map(case)
    net = vq.bundle.model
    x = volume_to_slices([case.array(n) for n in ("t1", "Image", "t1ce")], SIZE)
    x = torch.cat([x, torch.zeros(3, 3, SIZE, SIZE)])  # add all-background slices
    naive = torch.stack([net.codeword_indices(x[i : i + 1])[0] for i in range(len(x))])
    assert torch.equal(net.volume_codeword_indices(x, batch_size=7), naive)
    assert torch.equal(fast, naive[: len(fast)])


def test_missing_modality_is_a_clear_case_error(lgg_bundle):
    folder = _need(LGG_CASE)
    case = Case({"Image": folder / "flair.nii.gz", "t1": folder / "t1.nii.gz"}, folder / "mask.nii.gz", case_id="no-t1ce")
    with pytest.raises(CaseError, match="no modality 't1ce'") as info:
        VQHistogram(_settings(lgg_bundle)).compute(case)
    assert "Image_t1ce" in str(info.value)


def test_wrong_number_of_modalities_is_a_params_error(lgg_bundle):
    with pytest.raises(ParamsError, match="the model takes 3"):
        VQHistogram({"model": str(lgg_bundle), "modalities": ["t1", "Image"]}).compute(_lgg_case())
    with pytest.raises(ParamsError, match="region"):
        VQHistogram({"region": "tumour"})


@pytest.mark.slow
def test_brats_four_channel_case_end_to_end(tmp_path):
    folder = _need(BRATS)
    names = ("t1", "t1ce", "t2", "flair")
    case = Case(
        {"Image": folder / "flair.nii.gz", **{n: folder / f"{n}.nii.gz" for n in names}},
        folder / "seg.nii.gz",
        label=1,
        case_id="BraTS-GLI-00001-000",
    )
    arrays = [case.array(n) for n in names]
    import SimpleITK as sitk

    seg = sitk.GetArrayFromImage(case.mask_image())  # labels 1, 2, 3 -> classes 1, 2, 3
    bundle = _train_tiny_bundle(tmp_path / "tiny-brats", arrays, seg, list(names), {1: 1, 2: 2, 3: 3}, steps_epochs=1)
    settings = {"model": str(bundle), "modalities": list(names)}
    volume = VQHistogram(settings).compute(case).features
    assert sum(volume.values()) == 155 * 64
    roi = VQHistogram({**settings, "region": "roi"}).compute(case).features  # label 1 = necrotic core
    assert 0 < sum(roi.values()) < sum(volume.values())
    assert all(roi[k] <= volume[k] for k in volume)
    edema = Case(case.modalities, case.mask, label=2, case_id="edema")
    roi_ed = VQHistogram({**settings, "region": "roi"}).compute(edema).features
    assert sum(roi_ed.values()) > 0 and roi_ed != roi


def test_params_files_name_vqhist_with_the_default_model():
    from deepradiomics.params import load_params

    repo = Path(__file__).resolve().parents[2]
    for name in ("deep.yaml", "combined.yaml"):
        params = load_params(repo / "params" / name)
        settings = params.plugins["vqhist"]
        assert settings["model"] == "default"
        assert VQHistogram(settings).settings.region == "volume"
    assert "glcm" in load_params(repo / "params" / "combined.yaml").pyradiomics


def test_extractor_with_deep_params_and_the_shipped_default_model():
    from deepradiomics.extractor import Extractor
    from deepradiomics.models import load_bundle

    folder = _need(LGG_CASE)
    repo = Path(__file__).resolve().parents[2]
    row = Extractor(repo / "params" / "deep.yaml").execute(
        folder / "flair.nii.gz",
        folder / "mask.nii.gz",
        {"t1": folder / "t1.nii.gz", "t1ce": folder / "t1ce.nii.gz"},
        case_id=folder.name,
    )
    features = row[[c for c in row.index if c.startswith("original_vqhist_Codeword")]]
    assert len(features) == 512 and features.index[0] == "original_vqhist_Codeword000"
    assert float(features.astype(float).sum()) == 20 * 64  # 20 axial slices x 8 x 8 latent cells
    assert row["diagnostics_vqhist_ModelSha256"] == load_bundle("vq-lgg-cpu").sha256
    assert row["diagnostics_Configuration_ParamsHash"] != Extractor(repo / "params" / "deep.yaml").params.hash  # covers the model


def test_modalities_default_to_the_bundle_and_a_permutation_is_mapped_by_name(lgg_bundle, caplog):
    case = _lgg_case()
    default = VQHistogram({"model": str(lgg_bundle)})
    assert default.modalities == ("t1", "Image", "t1ce")
    reference = default.compute(case).features
    shuffled = VQHistogram({"model": str(lgg_bundle), "modalities": ["t1ce", "t1", "Image"]})
    with caplog.at_level("WARNING"):
        assert shuffled.compute(case).features == reference  # the model's channels, mapped by name
    assert "mapped by name" in caplog.text
    renamed = Case({"Image": case.modalities["Image"], "T1": case.modalities["t1"], "T1CE": case.modalities["t1ce"]}, case.mask)
    assert VQHistogram({"model": str(lgg_bundle), "modalities": ["T1", "Image", "T1CE"]}).compute(renamed).features == reference  # other names: by position


def test_small_images_warn_or_are_refused(lgg_bundle, caplog):
    import SimpleITK as sitk

    case = _lgg_case()
    small = {n: sitk.Shrink(case.image(n), [16, 16, 1]) for n in ("Image", "t1", "t1ce")}  # 16x16 slices, 2x upsampled to 32
    mask = sitk.Shrink(case.mask_image(), [16, 16, 1])
    tiny = Case(small, mask, case_id="tiny")
    with caplog.at_level("WARNING"):
        VQHistogram(_settings(lgg_bundle, max_upsampling=1.5)).compute(tiny)
    assert "enlarged 2.0x" in caplog.text and "tiny" in caplog.text
    with pytest.raises(CaseError, match="enlarged 2.0x.*on_small_image"):
        VQHistogram(_settings(lgg_bundle, max_upsampling=1.5, on_small_image="error")).compute(tiny)


def test_roi_that_covers_no_latent_cell_is_an_error_not_zeros(lgg_bundle):
    import SimpleITK as sitk

    from deepradiomics.errors import FeatureError

    case = _lgg_case()
    array = np.zeros(sitk.GetArrayViewFromImage(case.mask_image()).shape, np.uint8)
    array[10, 101, 101] = 1  # one voxel, lost when 256 x 256 is resized (nearest) to 32 x 32
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(case.mask_image())
    dot = Case(case.modalities, mask, case_id="dot")
    with pytest.raises(FeatureError, match="dot.*covers no latent cell"):
        VQHistogram(_settings(lgg_bundle, region="roi")).compute(dot)


def test_voxel_maps_put_the_codewords_on_the_image_grid(lgg_bundle):
    case = _lgg_case()
    vq = VQHistogram(_settings(lgg_bundle))
    maps = vq.voxel_maps(case)
    index = maps["CodewordIndex"]
    assert index.GetSize() == case.image().GetSize() and index.GetSpacing() == case.image().GetSpacing()
    import SimpleITK as sitk

    values = sitk.GetArrayFromImage(index)
    codes = vq.codeword_map(case).numpy()
    assert set(np.unique(values)) == set(np.unique(codes))
    assert values[5, 0, 0] == codes[5, 0, 0] and values[5, -1, -1] == codes[5, -1, -1]  # corner cells
    counts = sitk.GetArrayFromImage(maps["CodewordCount"])
    histogram = vq.compute(case).features
    assert counts[5, 0, 0] == histogram[f"Codeword{codes[5, 0, 0]:03d}"]
