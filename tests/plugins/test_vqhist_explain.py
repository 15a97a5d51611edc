"""Codeword ablation (vqhist's explain): real LGG and BraTS data, tiny VQ models built on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.study._tiny_model import tiny_bundle

torch = pytest.importorskip("torch")
sitk = pytest.importorskip("SimpleITK")

from deepradiomics_plugins.vqhist.explain import (  # noqa: E402
    ablation_response,
    explain_codewords,
    explain_cohort,
    label_statistics,
    resolve_background,
    vqhist_class,
)

from deepradiomics.case import Case  # noqa: E402
from deepradiomics.errors import CaseError, ParamsError  # noqa: E402
from tests.conftest import DATA  # noqa: E402

LGG_CASE = DATA / "lgg" / "TCGA_CS_4942_19970222"
BRATS = DATA / "brats23"
LGG_MODALITIES = ("t1", "Image", "t1ce")
BRATS_MODALITIES = ("t1", "t1ce", "t2", "Image")
K = 16


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared data folder sits beside the repository)")
    return path


@pytest.fixture(scope="module")
def lgg_images():
    folder = _require(LGG_CASE)
    images = {
        name: sitk.ReadImage(str(folder / f"{file}.nii.gz"))
        for name, file in (("Image", "flair"), ("t1", "t1"), ("t1ce", "t1ce"))
    }
    return images, sitk.ReadImage(str(folder / "mask.nii.gz"))


@pytest.fixture(scope="module")
def lgg_model(tmp_path_factory, lgg_images, one_torch_thread):
    images, _ = lgg_images
    arrays = [sitk.GetArrayFromImage(images[m]) for m in LGG_MODALITIES]
    return tiny_bundle(tmp_path_factory.mktemp("tiny_lgg"), arrays, LGG_MODALITIES, unreachable=K - 1)


def lgg_settings(model: Path) -> dict:
    return {"model": str(model), "modalities": list(LGG_MODALITIES)}


def test_absent_codeword_gives_all_zero_map_and_a_note(lgg_images, lgg_model, tmp_path):
    images, mask = lgg_images
    case = Case(images, mask, case_id="lgg")
    result = explain_codewords(case, lgg_settings(lgg_model), [K - 1])
    row = result.summary.iloc[0]
    assert row["codeword"] == str(K - 1) and row["occurrences"] == 0
    assert "absent" in row["note"]
    assert any("does not occur" in note for note in result.notes)
    assert result.response.shape == sitk.GetArrayFromImage(mask).shape
    assert not result.response.any()
    out = result.write(tmp_path / "out")
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "response.nii.gz")))
    assert not written.any()
    assert "does not occur" in (out / "notes.txt").read_text()


def test_out_of_range_codeword_names_value_and_k(lgg_images, lgg_model):
    images, mask = lgg_images
    case = Case(images, mask)
    with pytest.raises(ParamsError, match=rf"codeword {K}\b.*K={K}"):
        explain_codewords(case, lgg_settings(lgg_model), [3, K])
    with pytest.raises(ParamsError, match="codeword -1"):
        explain_codewords(case, lgg_settings(lgg_model), [-1])
    with pytest.raises(ParamsError, match=rf"codeword {K + 4}\b.*background.*K={K}"):
        explain_codewords(case, lgg_settings(lgg_model), [1], background=K + 4)


def _padded(image, z_pad: int = 4, canvas: int = 512):
    """The volume centred in a zero canvas with zero slices above and below, keeping the voxel type."""
    array = sitk.GetArrayFromImage(image)
    z, y, x = array.shape
    out = np.zeros((z + 2 * z_pad, canvas, canvas), array.dtype)
    oy, ox = (canvas - y) // 2, (canvas - x) // 2
    out[z_pad : z_pad + z, oy : oy + y, ox : ox + x] = array
    return sitk.GetImageFromArray(out)


def test_ablating_all_non_background_codewords_is_concentrated_where_they_occur(lgg_images, lgg_model):
    images, mask = lgg_images
    # A real head in a zero canvas with empty slices: the non-background codewords then occupy only
    # part of the latent grid, and the response can be compared inside and outside their cells.
    case = Case({k: _padded(v) for k, v in images.items()}, _padded(mask))
    vq = vqhist_class(lgg_settings(lgg_model))
    model = vq.bundle.model
    bg = vq.background_codeword()
    assert torch.all(model.background_indices() == bg)  # zero-bias encoder: one background codeword
    others = [c for c in range(K) if c != bg]
    result = explain_codewords(case, lgg_settings(lgg_model), others, per_codeword=False)
    response = result.response
    where = result.indices != bg
    cells = torch.nn.functional.interpolate(where.float()[:, None], size=response.shape[1:], mode="nearest")[:, 0].numpy() > 0
    assert 0.2 < cells.mean() < 0.9  # the test means something only if both parts are large
    assert response.max() > 0
    assert not response[:4].any() and not response[-4:].any()  # empty slices: exactly zero
    assert (response[4:-4].sum(axis=(1, 2)) > 0).all()  # every slice with tissue responds
    inside, outside = response[cells].mean(), response[~cells].mean()
    assert inside > 1.5 * outside, (inside, outside)  # measured 2.4-3.8x over three seeds
    # the case's all-zero input blocks give the same background codeword as the model's empty slice
    slices = vq.preprocess(case)
    assert resolve_background(vq, "case", slices, model.volume_codeword_indices(slices)) == bg
    summary = result.summary.set_index("codeword")
    assert summary.loc["all", "occurrences"] == int(where.sum())
    assert summary.loc["all", "total_response"] == pytest.approx(float(response.sum(dtype=np.float64)))


def test_ablation_response_is_zero_for_untouched_slices_and_matches_direct_decoding(lgg_images, lgg_model):
    from deepradiomics.models import load_bundle
    from deepradiomics.nets.preprocess import volume_to_slices

    images, _ = lgg_images
    model = load_bundle(lgg_model).model
    slices = volume_to_slices([sitk.GetArrayFromImage(images[m]) for m in LGG_MODALITIES], 32)
    indices = model.volume_codeword_indices(slices)
    ablated = indices.clone()
    ablated[3, 2, 5] = (int(indices[3, 2, 5]) + 1) % K  # change one cell of slice 3 only
    response = ablation_response(model, indices, ablated)
    assert not response[torch.arange(len(response)) != 3].any()
    with torch.inference_mode():
        direct = (
            (model.decode(model.quantizer.embed(ablated[3:4])) - model.decode(model.quantizer.embed(indices[3:4])))
            .abs()
            .sum(1)[0]
        )
    torch.testing.assert_close(response[3], direct)
    # the strongest response lies at or next to the changed cell (rows 8-11, columns 20-23 at S=32)
    peak = np.unravel_index(int(response[3].argmax()), response[3].shape)
    assert 4 <= peak[0] <= 15 and 16 <= peak[1] <= 27, peak


def test_response_map_has_the_input_geometry(lgg_images, lgg_model, tmp_path):
    images, mask = lgg_images
    spacing, origin = (0.9, 0.8, 3.0), (12.5, -30.0, 7.0)
    angle = np.deg2rad(20)
    direction = (np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0)

    def moved(image):
        copy = sitk.Image(image)
        copy.SetSpacing(spacing)
        copy.SetOrigin(origin)
        copy.SetDirection(direction)
        return copy

    case = Case({k: moved(v) for k, v in images.items()}, moved(mask))
    result = explain_codewords(case, lgg_settings(lgg_model), [0, 1])
    out = result.write(tmp_path / "geo", n_slices=2)
    written = sitk.ReadImage(str(out / "response.nii.gz"))
    reference = case.image("Image")
    assert written.GetSize() == reference.GetSize() == (256, 256, reference.GetSize()[2])
    np.testing.assert_allclose(written.GetSpacing(), spacing, rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), origin, atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), direction, atol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(written), result.response, rtol=1e-6)
    for name in ("summary.csv", "montage.png", "response_cw000.nii.gz", "response_cw001.nii.gz"):
        assert (out / name).is_file(), name
    assert len(list(out.glob("overlay_top*_slice*.png"))) == 2
    import pandas as pd

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["codeword"].astype(str)) == ["0", "1", "all"]
    assert (summary["occurrences"] > 0).all()
    assert summary["total_response"].iloc[-1] > 0


def test_label_map_with_other_geometry_is_rejected_before_any_work(lgg_images, lgg_model):
    images, mask = lgg_images
    other = sitk.Image(mask)
    other.SetSpacing((2.0, 2.0, 2.0))
    with pytest.raises(CaseError, match="differ in geometry"):
        explain_codewords(Case(images, mask), lgg_settings(lgg_model), [0], labels=other)


# ---------------------------------------------------------------------------------------------- BraTS
@pytest.fixture(scope="module")
def brats(tmp_path_factory, one_torch_thread):
    folder = _require(BRATS)
    files = {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "Image": "flair"}
    images = {name: sitk.ReadImage(str(folder / f"{file}.nii.gz")) for name, file in files.items()}
    seg = sitk.ReadImage(str(folder / "seg.nii.gz"))
    arrays = [sitk.GetArrayFromImage(images[m]) for m in BRATS_MODALITIES]
    model = tiny_bundle(tmp_path_factory.mktemp("tiny_brats"), arrays, BRATS_MODALITIES, seed=1)
    return images, seg, model


def test_brats_per_label_kruskal_and_dunn(brats, tmp_path):
    from scipy import stats

    images, seg, model = brats
    settings = {"model": str(model), "modalities": list(BRATS_MODALITIES)}
    case = Case(images, seg, label=1, case_id="BraTS-GLI-00001-000")
    # the codeword most frequent in the tumour's latent cells (not the background one)
    from deepradiomics.models import load_bundle
    from deepradiomics.nets.preprocess import mask_to_latent, volume_to_slices

    bundle = load_bundle(model)
    slices = volume_to_slices([sitk.GetArrayFromImage(images[m]) for m in BRATS_MODALITIES], 32)
    indices = bundle.model.volume_codeword_indices(slices)
    seg_array = sitk.GetArrayFromImage(seg)
    tumour = mask_to_latent(seg_array > 0, 32)
    counts = torch.bincount(indices[tumour], minlength=K)
    counts[vqhist_class(settings).background_codeword()] = 0
    codeword = int(counts.argmax())

    result = explain_codewords(case, settings, [codeword], labels=BRATS / "seg.nii.gz", label_names={1: "NET", 2: "ED", 3: "ET"})
    per_label = result.per_label.set_index("name")
    assert list(per_label.index) == ["NET", "ED", "ET"]
    for value, name in ((1, "NET"), (2, "ED"), (3, "ET")):
        inside = seg_array == value
        assert per_label.loc[name, "n_voxels"] == int(inside.sum())
        assert per_label.loc[name, "sum"] == pytest.approx(float(result.response[inside].sum(dtype=np.float64)), rel=1e-9)
    assert result.response[seg_array > 0].sum() > 0
    groups = [result.response[seg_array == v].astype(np.float64) for v in (1, 2, 3)]
    h, p = stats.kruskal(*groups)
    assert result.kruskal["statistic"] == pytest.approx(h) and result.kruskal["p_value"] == pytest.approx(p)
    dunn = result.dunn
    assert [tuple(r) for r in dunn[["label_a", "label_b"]].to_numpy()] == [("NET", "ED"), ("NET", "ET"), ("ED", "ET")]
    assert dunn["p_holm"].between(0, 1).all()
    # Holm never lowers a p-value: compare with the unadjusted Dunn test
    import scikit_posthocs as sp

    frame = {"value": np.concatenate(groups), "group": np.repeat(["NET", "ED", "ET"], [g.size for g in groups])}
    import pandas as pd

    raw = sp.posthoc_dunn(pd.DataFrame(frame), val_col="value", group_col="group", p_adjust=None)
    for row in dunn.itertuples():
        assert row.p_holm >= raw.loc[row.label_a, row.label_b] - 1e-15
    out = result.write(tmp_path / "brats", n_slices=1)
    assert {"labels_descriptive.csv", "dunn_descriptive.csv", "summary.csv", "response.nii.gz", "montage.png"} <= {p.name for p in out.iterdir()}
    assert any("descriptive only" in note for note in result.notes)


def test_label_statistics_slice_samples_on_a_hand_made_map():
    response = np.zeros((3, 4, 4))
    labels = np.zeros((3, 4, 4), dtype=int)
    labels[0, :2, :2] = 1  # label 1 in slices 0 and 1, 4 voxels each
    labels[1, :2, :2] = 1
    labels[1, 2:, 2:] = 2  # label 2 in slices 1 and 2
    labels[2, 2:, 2:] = 2
    response[0, :2, :2] = 1.0
    response[1, :2, :2] = 2.0
    response[1, 2:, 2:] = 0.5
    per_label, dunn, kruskal = label_statistics(response, labels, samples="slice")
    assert per_label["n_samples"].tolist() == [2, 2]
    assert per_label["sum"].tolist() == [12.0, 2.0]
    assert per_label["sample_median"].tolist() == [6.0, 1.0]  # slice sums (4, 8) and (2, 0)
    assert kruskal["n_labels"] == 2 and 0 < kruskal["p_value"] <= 1
    assert len(dunn) == 1
    _, dunn_zero, kruskal_zero = label_statistics(np.zeros_like(response), labels)
    assert np.isnan(kruskal_zero["statistic"]) and dunn_zero.empty


# ---------------------------------------------------------------------------------------------- CLI
def test_explain_cli(lgg_model, tmp_path):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    folder = _require(LGG_CASE)
    params = tmp_path / "deep.yaml"
    params.write_text(f"featureClass:\n  vqhist:\n    model: {lgg_model}\n    modalities: [t1, Image, t1ce]\n")
    runner = CliRunner()
    help_result = runner.invoke(main, ["explain", "--help"])
    assert help_result.exit_code == 0 and "--codewords" in help_result.output and "--labels" in help_result.output
    args = [
        "explain",
        str(params),
        str(folder / "flair.nii.gz"),
        str(folder / "mask.nii.gz"),
        "-m",
        f"t1={folder / 't1.nii.gz'}",
        "-m",
        f"t1ce={folder / 't1ce.nii.gz'}",
    ]
    result = runner.invoke(main, [*args, "--codewords", "2,15", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "does not occur" in result.output  # codeword 15 is unreachable in this model
    assert (tmp_path / "out" / "response.nii.gz").is_file() and (tmp_path / "out" / "summary.csv").is_file()
    bad = runner.invoke(main, [*args, "--codewords", "3,99", "-o", str(tmp_path / "bad")])
    assert bad.exit_code != 0 and "codeword 99" in bad.output and f"K={K}" in bad.output
    missing = runner.invoke(main, [str(a) for a in args[:4]] + ["--codewords", "1", "-o", str(tmp_path / "m")])
    assert missing.exit_code != 0 and "no modality 't1'" in missing.output


# ---------------------------------------------------------------------------------------------- cohort
def test_cohort_explain_gives_one_value_per_patient_and_region(lgg_model, lgg_manifest, tmp_path):
    import pandas as pd

    from deepradiomics.batch import case_from_row, read_manifest

    frame, base = read_manifest(lgg_manifest)
    manifest = frame.head(3).assign(**{c: frame.head(3)[c].map(lambda v: str(base / v)) for c in ("Image", "Mask", "Image_t1", "Image_t1ce", "Image_flair")})
    cohort = explain_cohort(manifest, lgg_settings(lgg_model), [0, 1, 2], label_names={1: "tumour"}, include_outside=True)
    per_patient = cohort.per_patient
    assert sorted(per_patient["region"].unique()) == ["outside", "tumour"]
    assert per_patient.groupby("region").size().to_dict() == {"outside": 3, "tumour": 3}  # one value per patient and region
    # the value of one patient is the response of the codewords summed over its mask
    case = case_from_row(manifest.iloc[0].to_dict(), base)
    single = explain_codewords(case, lgg_settings(lgg_model), [0, 1, 2], per_codeword=False)
    expected = float(single.response[np.asarray(case.mask_array())].sum(dtype=np.float64))
    got = per_patient[(per_patient["ID"] == case.case_id) & (per_patient["region"] == "tumour")]["sum"].item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert np.isfinite(cohort.kruskal["statistic"]) and len(cohort.dunn) == 1
    from scipy import stats

    groups = [per_patient.loc[per_patient["region"] == r, "sum"].to_numpy() for r in ("tumour", "outside")]
    assert cohort.kruskal["p_value"] == pytest.approx(stats.kruskal(*groups).pvalue)
    assert any("paired" in note for note in cohort.notes)
    out = cohort.write(tmp_path / "cohort")
    assert set(pd.read_csv(out / "per_patient.csv")["ID"]) == set(manifest["ID"])


def test_cohort_explain_cli(lgg_model, lgg_manifest, tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from deepradiomics.cli import main

    frame = pd.read_csv(lgg_manifest, dtype=str).head(2)
    frame = frame.assign(**{c: frame[c].map(lambda v: str(lgg_manifest.parent / v)) for c in ("Image", "Mask", "Image_t1", "Image_t1ce", "Image_flair")})
    frame.to_csv(tmp_path / "two.csv", index=False)
    params = tmp_path / "deep.yaml"
    params.write_text(f"featureClass:\n  vqhist:\n    model: {lgg_model}\n")
    result = CliRunner().invoke(main, ["explain", str(params), "--manifest", str(tmp_path / "two.csv"), "--codewords", "1,2", "--outside", "--statistic", "mean", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "per_patient.csv").is_file() and "one value per patient" in result.output
    both = CliRunner().invoke(main, ["explain", str(params), "img.nii.gz", "--manifest", str(tmp_path / "two.csv"), "--codewords", "1", "-o", str(tmp_path / "x")])
    assert both.exit_code == 2 and "not both" in both.output
