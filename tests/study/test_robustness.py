"""Robustness sweeps: ICC by hand, perturbation definitions, every family through the batch on real LGG data, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepradiomics.errors import ParamsError
from deepradiomics.perturb import IntensityScale, IntensityShift, parse_levels, perturbation
from deepradiomics.study.robustness import histogram_ratio, run_robustness
from deepradiomics.study.statistics import icc, icc_many
from tests.conftest import DATA
from tests.study._tiny_model import tiny_bundle

LGG = DATA / "lgg"
LGG_MODALITIES = ("t1", "Image", "t1ce")
K = 16

# Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (the shared data folder sits beside the repository)")
    return path


# ---------------------------------------------------------------------------------------------- ICC
def test_icc_equals_shrout_fleiss_textbook_values():
    result = icc(SHROUT_FLEISS)
    # the paper's ANOVA table: BMS 11.24, JMS 32.49, EMS 1.02, WMS 6.26
    assert result["bms"] == pytest.approx(11.24, abs=0.005)
    assert result["jms"] == pytest.approx(32.49, abs=0.005)
    assert result["ems"] == pytest.approx(1.02, abs=0.005)
    assert result["wms"] == pytest.approx(6.26, abs=0.005)
    # ... and its Table 4: ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71
    assert round(result["icc11"], 2) == 0.17
    assert round(result["icc21"], 2) == 0.29
    assert round(result["icc31"], 2) == 0.71


def test_icc_equals_a_hand_computed_anova():
    y = SHROUT_FLEISS
    n, k = y.shape
    grand = sum(sum(row) for row in y) / (n * k)
    ss_rows = sum(k * (sum(row) / k - grand) ** 2 for row in y)
    ss_cols = sum(n * (sum(y[i][j] for i in range(n)) / n - grand) ** 2 for j in range(k))
    ss_total = sum((y[i][j] - grand) ** 2 for i in range(n) for j in range(k))
    bms, jms = ss_rows / (n - 1), ss_cols / (k - 1)
    ems = (ss_total - ss_rows - ss_cols) / ((n - 1) * (k - 1))
    expected_21 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    expected_31 = (bms - ems) / (bms + (k - 1) * ems)
    result = icc(y)
    assert result["icc21"] == pytest.approx(expected_21, rel=1e-12)
    assert result["icc31"] == pytest.approx(expected_31, rel=1e-12)


def test_icc_absolute_agreement_penalises_a_systematic_shift_consistency_does_not():
    targets = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    shifted = np.stack([targets, targets + 3.0, targets + 6.0], axis=1)
    result = icc(shifted)
    assert result["icc31"] == pytest.approx(1.0)
    assert result["icc21"] < 0.7
    identical = icc(np.stack([targets, targets], axis=1))
    assert identical["icc21"] == pytest.approx(1.0) and identical["icc31"] == pytest.approx(1.0)
    constant = icc_many(np.ones((4, 3, 1)))
    assert np.isnan(constant["icc21"][0])
    many = icc_many(np.stack([SHROUT_FLEISS, 2 * SHROUT_FLEISS + 7], axis=2))
    np.testing.assert_allclose(many["icc21"], [icc(SHROUT_FLEISS)["icc21"]] * 2)  # affine-invariant


def test_levels_parsing():
    assert parse_levels("0.5,0.1") == [0.0, 0.1, 0.5]
    with pytest.raises(ParamsError):
        parse_levels("0,a")
    with pytest.raises(ParamsError):
        parse_levels("0")
    with pytest.raises(ParamsError):
        parse_levels("-1,0.5")


# ---------------------------------------------------------------------------------------------- perturbations
def test_perturbations_whole_image_and_foreground():
    sitk = pytest.importorskip("SimpleITK")
    from deepradiomics.nets.preprocess import zscore_foreground

    image = sitk.ReadImage(str(_require(LGG / "TCGA_CS_4942_19970222" / "flair.nii.gz")))
    raw = sitk.GetArrayFromImage(image).astype(np.float64)
    foreground = raw > 0
    mean, sd = raw[foreground].mean(), raw[foreground].std()
    scaled = sitk.GetArrayFromImage(IntensityScale(0.3)(image)).astype(np.float64)
    np.testing.assert_allclose(scaled, 1.3 * raw, rtol=1e-6)  # the paper's: the entire pixel value
    shifted = sitk.GetArrayFromImage(IntensityShift(0.5)(image)).astype(np.float64)
    np.testing.assert_allclose(shifted, raw + 0.5 * sd, rtol=1e-6)  # background too
    fg_scaled = sitk.GetArrayFromImage(IntensityScale(1.0, region="foreground")(image)).astype(np.float64)
    assert np.array_equal(fg_scaled[~foreground], raw[~foreground])
    np.testing.assert_allclose(fg_scaled[foreground], mean + 2.0 * (raw[foreground] - mean), rtol=1e-5)
    fg_shifted = sitk.GetArrayFromImage(IntensityShift(1.0, region="foreground")(image)).astype(np.float64)
    assert np.array_equal(fg_shifted[~foreground], raw[~foreground])
    # a whole-image scale leaves the foreground z-score unchanged; a whole-image shift does not (background > 0)
    np.testing.assert_allclose(zscore_foreground(scaled), zscore_foreground(raw), atol=1e-4)
    assert (zscore_foreground(shifted) != 0).all()
    unperturbed = IntensityScale(0.0)(image)  # float32, so every level takes PyRadiomics' float path
    assert unperturbed.GetPixelID() == sitk.sitkFloat32 and unperturbed.GetOrigin() == image.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(unperturbed), raw)
    assert perturbation("shift", 0.2, "foreground").describe() == "shift(0.2, foreground)"
    with pytest.raises(ParamsError, match="region"):
        perturbation("scale", 0.2, "tumour")
    with pytest.raises(ParamsError, match="not one of"):
        perturbation("rotate", 0.2)


def test_histogram_ratio():
    assert histogram_ratio([3, 1, 0], [3, 1, 0]) == 0
    assert histogram_ratio([2, 1, 1], [3, 1, 0]) == pytest.approx(0.5)
    assert np.isnan(histogram_ratio([1, 0], [0, 0]))


# ---------------------------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def lgg_rows():
    from deepradiomics.batch import case_from_row, read_manifest

    frame, base = read_manifest(_require(LGG / "cases.csv"))
    return frame, base, case_from_row


@pytest.fixture(scope="module")
def model(tmp_path_factory, lgg_rows, one_torch_thread):
    frame, base, case_from_row = lgg_rows
    case = case_from_row(frame.iloc[0].to_dict(), base)
    return tiny_bundle(tmp_path_factory.mktemp("tiny"), [np.asarray(case.array(m)) for m in LGG_MODALITIES], LGG_MODALITIES)


def _manifest(tmp_path: Path, frame: pd.DataFrame, base: Path, ids, name: str = "cases.csv") -> Path:
    rows = frame.set_index("ID").loc[list(ids)].reset_index()
    for column in [c for c in rows.columns if c in ("Image", "Mask") or c.startswith("Image_")]:
        rows[column] = [str(base / p) if p else "" for p in rows[column]]
    path = tmp_path / name
    rows.to_csv(path, index=False)
    return path


def _params(tmp_path: Path, model: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(
        "setting:\n  binWidth: 25.0\n  label: 1\n"
        "featureClass:\n  firstorder: [Mean, Energy, Skewness]\n  shape: [MeshVolume]\n  glcm: [Contrast, Idn]\n"
        f"  vqhist:\n    model: {model}\n"
    )
    return params


def test_level_0_is_the_plain_extraction_in_float(model, lgg_rows, tmp_path):
    from deepradiomics import Extractor

    frame, base, case_from_row = lgg_rows
    case = case_from_row(frame.iloc[3].to_dict(), base)
    extractor = Extractor(_params(tmp_path, model))
    plain = extractor.compute(case)
    level0 = extractor.compute(case.with_transforms(perturbation("scale", 0.0)))
    vq = [k for k in plain if k.startswith("original_vqhist_")]
    assert [plain[k] for k in vq] == [level0[k] for k in vq] and sum(plain[k] for k in vq) > 0
    assert level0["diagnostics_Case_Transforms"] == "scale(0, image)"


def test_run_robustness_end_to_end_with_labels_resume_and_a_failing_case(model, lgg_rows, tmp_path, monkeypatch):
    from deepradiomics import batch

    frame, base, _ = lgg_rows
    g2 = frame[frame["grade"] == "G2"]["ID"].iloc[:2].tolist()
    g3 = frame[frame["grade"] == "G3"]["ID"].iloc[:2].tolist()
    manifest = pd.read_csv(_manifest(tmp_path, frame, base, g2 + g3), dtype=str, keep_default_na=False)
    broken = manifest.iloc[0].copy()
    broken["ID"], broken["Mask"] = "broken", str(tmp_path / "no_mask.nii.gz")
    manifest = pd.concat([manifest, broken.to_frame().T], ignore_index=True)
    path = tmp_path / "with_broken.csv"
    manifest.to_csv(path, index=False)
    cache = tmp_path / "cache"
    # the target is a column of the manifest (it passes through the batch): no separate labels table needed
    result = run_robustness(_params(tmp_path, model), path, levels=[0.0, 1.0], target="grade", positive="G3", out_dir=cache)
    # auto: the classical classes in the image domain, vqhist in its input domain (one batch each)
    assert result.domains == {"firstorder": "image", "shape": "image", "glcm": "image", "vqhist": "input"}
    assert len(result.features) == 2 * 5 * 3  # 2 domains x 5 cases x (level 0 once + scale 1.0 + shift 1.0)
    by_domain = result.features.groupby("domain")
    assert by_domain["original_vqhist_Codeword000"].count().to_dict() == {"image": 0, "input": 12}  # 4 good cases x 3 levels
    assert by_domain["original_glcm_Contrast"].count().to_dict() == {"image": 12, "input": 0}
    assert any("broken" in note for note in result.notes) and [i for i, _ in result.failed][0].startswith("broken|")
    assert any(note.startswith("domain input") and "vqhist" in note for note in result.notes)
    hist = result.histogram_summary.set_index(["histogram", "kind", "level"])
    assert set(result.histogram_summary["domain"]) == {"input"}
    assert hist.loc[("vqhist-counts", "scale", 0.0), "ratio_mean"] == 0
    assert hist.loc[("vqhist-counts", "scale", 1.0), "ratio_mean"] > 0 and hist.loc[("vqhist-counts", "shift", 1.0), "ratio_mean"] > 0
    icc_table = result.icc[result.icc["family"] != "all"].set_index(["feature", "kind"])
    assert set(result.icc["family"]) == {"classical", "vqhist"}  # "all" would only repeat them
    assert set(zip(result.icc["family"], result.icc["domain"])) == {("classical", "image"), ("vqhist", "input")}
    # shape does not read intensities: perfect agreement; Skewness is invariant to x -> a x and x -> x + c
    assert icc_table.loc[("original_shape_MeshVolume", "scale"), "icc21"] == pytest.approx(1.0)
    assert icc_table.loc[("original_firstorder_Skewness", "scale"), "icc21"] == pytest.approx(1.0, abs=1e-6)
    assert icc_table.loc[("original_firstorder_Skewness", "shift"), "icc21"] == pytest.approx(1.0, abs=1e-6)
    assert icc_table.loc[("original_firstorder_Mean", "scale"), "icc21"] < 0.9  # the mean doubles at s = 1
    classification = result.classification
    assert set(classification["family"]) == {"classical", "vqhist", "all"}
    assert classification.groupby("family")["domain"].first().to_dict() == {"all": "image+input", "classical": "image", "vqhist": "input"}
    assert classification["AUC"].between(0, 1).all() and (classification[classification["level"] == 0]["AUC_change"] == 0).all()
    out = result.write(tmp_path / "out")
    for name in ("robustness.csv", "domains.csv", "icc.csv", "icc_summary.csv", "histogram_ratios.csv", "classification.csv", "robustness.png", "features.csv"):
        assert (out / name).is_file(), name
    combined = pd.read_csv(out / "robustness.csv")
    assert {"domain", "vqhist-counts_ratio_mean", "classical_icc21_median", "vqhist_AUC", "classical_AUC", "all_AUC"} <= set(combined.columns)
    assert set(combined["domain"]) == {"image", "input", "image+input"}
    assert combined.set_index("domain")["vqhist-counts_ratio_mean"].loc["image"].isna().all()  # vqhist ran in its input domain only
    domains = pd.read_csv(out / "domains.csv")
    assert domains.set_index("class")["domain"].to_dict() == result.domains and domains["perturbs"].str.len().min() > 20
    # a second run resumes: only the failing case is tried again
    computed = []
    real = batch.BatchTask.__call__
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, b: computed.append(row["ID"]) or real(t, row, b))
    again = run_robustness(_params(tmp_path, model), path, levels=[0.0, 1.0], target="grade", positive="G3", out_dir=cache)
    assert computed and all(i.startswith("broken|") for i in computed)
    pd.testing.assert_frame_equal(again.icc, result.icc)


def _vq_params(tmp_path: Path, model: Path) -> Path:
    params = tmp_path / "vq.yaml"
    params.write_text(f"featureClass:\n  vqhist:\n    model: {model}\n")
    return params


def test_cached_rows_of_different_domains_and_levels_never_mix(model, lgg_rows, tmp_path, monkeypatch):
    from deepradiomics import batch

    frame, base, _ = lgg_rows
    manifest = _manifest(tmp_path, frame, base, frame["ID"].iloc[:2])
    params, cache = _vq_params(tmp_path, model), tmp_path / "cache"
    computed = []
    real = batch.BatchTask.__call__
    monkeypatch.setattr(batch.BatchTask, "__call__", lambda t, row, b: computed.append(row["ID"]) or real(t, row, b))
    first = run_robustness(params, manifest, kinds=["scale"], levels=[0.0, 1.0], domain="input", out_dir=cache)
    assert len(computed) == 4 and all(i.endswith(", input)") for i in computed)
    computed.clear()
    image = run_robustness(params, manifest, kinds=["scale"], levels=[0.0, 1.0], domain="image", out_dir=cache)
    assert len(computed) == 4 and not any("input" in i for i in computed)  # nothing of the input domain reused
    computed.clear()
    bigger = run_robustness(params, manifest, kinds=["scale"], levels=[0.0, 0.5, 1.0], domain="input", out_dir=cache)
    assert sorted(computed) == sorted(i for i in bigger.features.index if "scale(0.5," in i)  # only the new level runs
    again = bigger.features.loc[first.features.index, first.features.columns]
    pd.testing.assert_frame_equal(again, first.features, check_dtype=False)
    inputs, images = first.features.set_index(["Case", "level"]), image.features.set_index(["Case", "level"])
    codewords = [c for c in inputs.columns if c.startswith("original_vqhist_")]
    # level 0 is the same extraction in both domains; at s = 1 the two domains give different rows
    pd.testing.assert_frame_equal(inputs.xs(0.0, level="level")[codewords], images.xs(0.0, level="level")[codewords])
    assert not inputs.xs(1.0, level="level")[codewords].equals(images.xs(1.0, level="level")[codewords])


def test_image_domain_of_a_z_scored_class_is_the_raw_image_robustness(model, lgg_rows, tmp_path):
    """The measured problem, now the documented behaviour of domain 'image': a whole-image scale leaves the
    z-scored input unchanged (difference ratio ~0), a whole-image shift acts as one step whatever s is."""
    frame, base, _ = lgg_rows
    manifest = _manifest(tmp_path, frame, base, frame["ID"].iloc[:2])
    image = run_robustness(_vq_params(tmp_path, model), manifest, levels=[0.0, 0.2, 1.0], domain="image")
    hist = image.histogram_summary.set_index(["histogram", "kind", "level"])["ratio_mean"]
    assert hist.loc[("vqhist-counts", "scale", 0.2)] < 0.02 and hist.loc[("vqhist-counts", "scale", 1.0)] < 0.02
    step_02, step_10 = hist.loc[("vqhist-counts", "shift", 0.2)], hist.loc[("vqhist-counts", "shift", 1.0)]
    assert step_02 > 0.05 and step_10 == pytest.approx(step_02, abs=0.02), (step_02, step_10)
    assert image.domains == {"vqhist": "image"}


def test_robustness_cli(model, lgg_rows, tmp_path):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    frame, base, _ = lgg_rows
    manifest = _manifest(tmp_path, frame, base, frame["ID"].iloc[:3])
    runner = CliRunner()
    help_result = runner.invoke(main, ["robustness", "--help"])
    assert help_result.exit_code == 0 and "--levels" in help_result.output and "--region" in help_result.output
    out = tmp_path / "out"
    args = ["robustness", str(_params(tmp_path, model)), str(manifest), "--levels", "0,1", "--limit", "2", "--region", "foreground"]
    result = runner.invoke(main, [*args, "--no-progress", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "histogram_ratios.csv")
    assert sorted(table["ID"].unique()) == sorted(frame["ID"].iloc[:2])  # --limit 2 of 3
    assert (out / "robustness.png").stat().st_size > 1000
    bad = runner.invoke(main, [*args[:3], "--labels", str(manifest), "-o", str(out)])
    assert bad.exit_code != 0 and "target" in bad.output
    help_text = " ".join(help_result.output.split())
    assert "--domain [auto|input|image]" in help_text and "the paper's definition" in help_text
    refused = runner.invoke(main, [*args[:3], "--domain", "input", "-o", str(out)])
    assert refused.exit_code != 0
    message = [line for line in refused.output.splitlines() if "Error" in line or "error" in line]
    assert len(message) == 1 and "featureClass 'firstorder'" in message[0] and "valid domains: auto" in message[0], refused.output
    unknown = runner.invoke(main, [*args[:3], "--domain", "network", "-o", str(out)])
    assert unknown.exit_code != 0 and "'network' is not one of 'auto', 'input', 'image'" in unknown.output


# ---------------------------------------------------------------------------------------------- domains
def test_refusals_come_before_any_case_runs(model, tmp_path):
    missing = tmp_path / "no_manifest.csv"  # never read: the domain is checked first
    with pytest.raises(ParamsError, match=r"--domain input: featureClass 'firstorder' .* cannot perturb its own network input .*valid domains: auto"):
        run_robustness(_params(tmp_path, model), missing, domain="input")
    with pytest.raises(ParamsError, match="domain 'pixels' is not one of auto, input, image"):
        run_robustness(_params(tmp_path, model), missing, domain="pixels")
    with pytest.raises(ParamsError, match="domain 'pixels' is not one of auto, input, image"):
        run_robustness(_vq_params(tmp_path, model), missing, domain="pixels")


class _Captured(Exception):
    """Raised by a hook once it holds the network input (the test needs nothing after it)."""


def _network_input_of(compute, case, install):
    """What a class feeds its network on ``case``: ``install(record)`` hooks the call that receives it."""
    seen = []

    def record(value):
        seen.append(value.detach().clone())
        raise _Captured

    install(record)
    with pytest.raises(_Captured):
        compute(case)
    return seen[0]


@pytest.fixture(scope="module")
def lgg_case_object(lgg_rows):
    """A real LGG case held in memory (its perturbed copies then read nothing from disk again)."""
    from deepradiomics.case import Case

    frame, base, case_from_row = lgg_rows
    case = case_from_row(frame.iloc[0].to_dict(), base)
    return Case({name: case.image(name) for name in case.modality_names}, case.mask_image(), case.label, case.case_id)


def test_vqhist_input_domain_changes_the_network_input_by_exactly_the_perturbation(lgg_case_object, monkeypatch, one_torch_thread):
    """The shipped vq-lgg-cpu on a real LGG case: the slices reaching the encoder are (1 + s) z and z + s."""
    from deepradiomics.registry import get_registry

    vq = get_registry().get("vqhist")({"modalities": list(LGG_MODALITIES)})
    network = vq.bundle.model

    def install(record):
        monkeypatch.setattr(network, "volume_codeword_indices", lambda slices, **_: record(slices))

    def fed(*transforms, image=()):
        case = lgg_case_object.with_input_transforms(*transforms).with_transforms(*image)
        return _network_input_of(vq.compute, case, install)

    z = fed()
    assert z.shape[1:] == (3, 128, 128) and float(z.abs().max()) > 1
    for s in (0.1, 0.5):
        assert torch_equal(fed(perturbation("scale", s, domain="input")), (1 + s) * z)
        assert torch_equal(fed(perturbation("shift", s, domain="input")), z + s)
    # image domain: the bundle's z-score undoes a whole-image scale (float rounding only) ...
    assert float((fed(image=[perturbation("scale", 0.5)]) - z).abs().max()) < 1e-5
    # ... and a whole-image shift is one step whatever s is (the background joins the z-scored foreground)
    assert float((fed(image=[perturbation("shift", 0.1)]) - fed(image=[perturbation("shift", 0.5)])).abs().max()) < 1e-5


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_cnn_input_domain_perturbs_each_scaled_patch(lgg_case_object, monkeypatch, one_torch_thread):
    """cnn's network input is each patch scaled to [-127.5, 127.5]; the shift unit is that patch's own sd over its voxels > 0."""
    import deepradiomics_plugins.cnn.patches as patches
    from deepradiomics_plugins.cnn import CNNFeatures

    cnn = CNNFeatures({"layers": ["conv1_2"], "patch_sizes": [8], "pooling": ["mean"]})
    raw_patches = []
    real_extract = patches.extract_patches
    monkeypatch.setattr(patches, "extract_patches", lambda *a: raw_patches.append(real_extract(*a)) or raw_patches[-1])
    encoder = cnn._encoder()

    def install(record):
        monkeypatch.setattr(encoder, "pooled", record)

    x0 = _network_input_of(cnn.compute, lgg_case_object, install)
    raw = raw_patches[-1][: len(x0)]
    assert x0.shape[1] == 1 and float(x0.amin()) == pytest.approx(-127.5) and float(x0.amax()) == pytest.approx(127.5)
    scaled = _network_input_of(cnn.compute, lgg_case_object.with_input_transforms(perturbation("scale", 0.5, domain="input")), install)
    assert torch_equal(scaled, 1.5 * x0)
    shifted = _network_input_of(cnn.compute, lgg_case_object.with_input_transforms(perturbation("shift", 0.5, domain="input")), install)
    steps = (shifted - x0).flatten(1).double().numpy()
    values = x0.flatten(1).double().numpy()
    foreground = raw.reshape(len(raw), -1) > 0
    expected = np.array([0.5 * v[f].std() if f.any() else 0.5 * v.std() for v, f in zip(values, foreground)])
    np.testing.assert_allclose(steps, np.repeat(expected[:, None], steps.shape[1], axis=1), rtol=1e-4)
    assert expected.min() > 5  # tens of the patches' [-127.5, 127.5] units, not 0.5 of them


def test_fisher_input_domain_perturbs_the_z_scored_slices(lgg_case_object, monkeypatch, one_torch_thread):
    import deepradiomics_plugins.fisher as fisher_module

    fisher = fisher_module.FisherVector({"on_small_roi": "warn"})  # as params/fisher.yaml: this case's ROI is small for conv6

    def install(record):
        monkeypatch.setattr(fisher_module._descriptors, "extract", lambda model, layer, slices, *a, **k: record(slices))

    z = _network_input_of(fisher.describe, lgg_case_object, install)
    scaled = _network_input_of(fisher.describe, lgg_case_object.with_input_transforms(perturbation("scale", 0.3, domain="input")), install)
    shifted = _network_input_of(fisher.describe, lgg_case_object.with_input_transforms(perturbation("shift", 0.3, domain="input")), install)
    assert torch_equal(scaled, 1.3 * z) and torch_equal(shifted, z + 0.3)


def test_every_first_party_deep_class_declares_network_input():
    from deepradiomics.featureclass import FeatureClass
    from deepradiomics.registry import get_registry

    registry = get_registry()
    assert FeatureClass.network_input is False
    assert {name: registry.get(name).network_input for name in ("vqhist", "fisher", "cnn")} == {"vqhist": True, "fisher": True, "cnn": True}


@pytest.mark.slow
def test_real_sweep_input_domain_gives_a_dose_response(lgg_rows, tmp_path, one_torch_thread):
    """3 LGG cases, the shipped vq-lgg-cpu through params/deep.yaml: the difference ratio is > 0 at s = 0.1 and grows with s
    in the input domain (the paper's Fig. 4a,b shape); measured 0 at s = 0.1 and 0.5 for a scale of the raw image."""
    frame, base, _ = lgg_rows
    manifest = _manifest(tmp_path, frame, base, frame["ID"].iloc[:3])
    params = Path(__file__).resolve().parents[2] / "params" / "deep.yaml"
    result = run_robustness(params, manifest, levels=[0.0, 0.1, 0.5], domain="input")
    assert result.domains == {"vqhist": "input"}
    ratio = result.histogram_summary.set_index(["kind", "level"])["ratio_mean"]
    for kind in ("scale", "shift"):
        assert ratio.loc[(kind, 0.0)] == 0
        assert 0 < ratio.loc[(kind, 0.1)] < ratio.loc[(kind, 0.5)], ratio
    assert (result.histogram_ratios.query("level == 0.1")["ratio"] > 0).all()  # every case, not only on average
