"""``fisher`` (DLR, Li et al. 2017): Fisher-vector encoding, ROI descriptors at several scales, fit/extract end to end.

Tiny networks (a DLRCNN with 8 filters in its last conv layer, a VQSegNet with an 8-d latent) built here,
never shipped; real LGG cases for everything that runs the pipeline.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from deepradiomics_plugins.fisher import FisherVector, descriptors, encoding

from deepradiomics import Extractor
from deepradiomics.batch import case_from_row, read_manifest
from deepradiomics.case import Case
from deepradiomics.cli import main
from deepradiomics.errors import CaseError, FeatureError, ModelError, NotFittedError, ParamsError
from deepradiomics.testing import check_feature_class
from tests.conftest import require_data
from tests.fitted_class import FITTED_CLASS_CHECKS

#: small-ROI LGG cases (few slices) with both IDH classes: 4 wild-type (0), 4 mutant (1)
COHORT = [
    "TCGA_CS_6188_20010812",
    "TCGA_DU_7294_19890104",
    "TCGA_HT_7860_19960513",
    "TCGA_CS_5397_20010315",
    "TCGA_FG_5964_20010511",
    "TCGA_CS_4942_19970222",
    "TCGA_CS_6667_20011105",
    "TCGA_HT_8107_19980708",
]
#: largest ROI cross-section 38 pixels: 19 at scale 0.5, below the 21-pixel receptive field of conv6
SMALL_ROI_CASE = "TCGA_DU_8165_19970205"


def tiny_dlr_bundle(folder: Path, channels=("Image", "t1ce"), last: int = 8, seed: int = 0) -> Path:
    """An untrained DLRCNN bundle (He-initialised, seeded) on native-size slices: descriptors of D = ``last``."""
    import torch

    from deepradiomics.models import build_network, save_bundle

    torch.manual_seed(seed)
    arch = {"type": "dlrcnn", "in_channels": len(channels), "num_classes": 2, "filters": [4, 4, 4, 8, 8, last], "fc_units": 16}
    config = {
        "name": f"tiny-dlr-{last}",
        "architecture": arch,
        "modalities": [{"name": c} for c in channels],
        "preprocessing": {"orientation": "axial", "normalization": "zscore-foreground", "input_size": None, "channels": list(channels)},
    }
    return save_bundle(build_network(arch), config, folder, "tiny test model {sha256}")


def tiny_vq_bundle(folder: Path, channels=("Image",), seed: int = 0) -> Path:
    """An untrained VQSegNet bundle (S = 32, D = 8): its continuous latent is the descriptor source."""
    import torch

    from deepradiomics.models import build_network, save_bundle

    torch.manual_seed(seed)
    arch = {
        "type": "vqseg",
        "in_channels": len(channels),
        "num_classes": 2,
        "filters": [4, 4, 4],
        "decoder_filters": [4, 4, 4],
        "input_size": 32,
        "num_embeddings": 16,
        "embedding_dim": 8,
    }
    config = {
        "name": "tiny-vq",
        "architecture": arch,
        "modalities": [{"name": c} for c in channels],
        "preprocessing": {"orientation": "axial", "normalization": "zscore-foreground", "input_size": 32, "channels": list(channels)},
    }
    return save_bundle(build_network(arch), config, folder, "tiny test model {sha256}")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_dlr_bundle(tmp_path_factory.mktemp("bundle") / "tiny-dlr")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, lgg_manifest) -> Path:
    """Manifest of four cases of :data:`COHORT` (absolute paths, FLAIR as Image, T1-Gd as t1ce, the IDH label)."""
    return write_manifest(tmp_path_factory.mktemp("cohort") / "cases.csv", lgg_manifest, COHORT[:4])


def write_manifest(path: Path, lgg_manifest: Path, ids) -> Path:
    frame, base = read_manifest(lgg_manifest)
    rows = frame.set_index("ID").loc[list(ids)].reset_index()[["ID", "Image", "Mask", "Image_t1", "Image_t1ce", "idh_mutant"]]
    for column in ("Image", "Mask", "Image_t1", "Image_t1ce"):
        rows[column] = [str(base / p) for p in rows[column]]
    rows.to_csv(path, index=False)
    return path


def lgg(case_id: str) -> Case:
    folder = require_data("lgg", case_id)
    return Case({"Image": folder / "flair.nii.gz", "t1ce": folder / "t1ce.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)


#: few, small scales and two components: the mechanics at a fraction of the cost of the defaults
FAST = {"scales": 2, "min_scale": 0.5, "max_scale": 1.0, "components": 2}


# ---------------------------------------------------------------------------------------------- encoding
def skimage_reference(X, weights, means, variances):
    """skimage's Fisher vector with a scikit-learn GMM holding exactly these arrays, mapped to our layout."""
    from skimage.feature import fisher_vector as skimage_fisher_vector
    from sklearn.mixture import GaussianMixture

    k, d = means.shape
    gmm = GaussianMixture(n_components=k, covariance_type="diag")
    gmm.weights_, gmm.means_, gmm.covariances_ = weights, means, variances
    gmm.precisions_cholesky_ = 1.0 / np.sqrt(variances)
    raw = skimage_fisher_vector(X, gmm)  # [G_w (K); G_mu (KD); -G_sigma (KD)]
    return raw[k : k + k * d].reshape(k, d), -raw[k + k * d :].reshape(k, d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fisher_vector_matches_skimage_to_1e10(seed):
    """Same GMM (fitted by scikit-learn), random non-negative descriptors like post-ReLU responses."""
    rng = np.random.default_rng(seed)
    k, d = 6, 10
    train = rng.gamma(1.5, 1.0, size=(4000, d)) * (rng.random((4000, d)) > 0.3)
    weights, means, variances = encoding.fit_gmm(train, k, seed=seed)
    X = (rng.gamma(1.5, 1.0, size=(900, d)) * (rng.random((900, d)) > 0.3)).astype(np.float32)
    g_mu, g_sigma = encoding.fisher_gradients(X, weights, means, variances, chunk=256)
    ref_mu, ref_sigma = skimage_reference(X.astype(np.float64), weights, means, variances)
    assert np.abs(g_mu - ref_mu).max() < 1e-10 and np.abs(g_sigma - ref_sigma).max() < 1e-10
    fv = encoding.fisher_vector(X, weights, means, variances)
    reference = encoding.improve(np.concatenate([ref_mu.ravel(), ref_sigma.ravel()]))
    assert fv.shape == (2 * k * d,)
    assert np.abs(fv - reference).max() < 1e-10
    assert np.linalg.norm(fv) == pytest.approx(1.0, abs=1e-12)


def test_fisher_vector_is_a_pooled_statistic():
    """Order of descriptors, duplicating the set and the chunk size change nothing; other data change it."""
    rng = np.random.default_rng(3)
    weights, means, variances = encoding.fit_gmm(rng.normal(size=(2000, 5)), 4, seed=0)
    X = rng.normal(size=(300, 5))
    fv = encoding.fisher_vector(X, weights, means, variances)
    np.testing.assert_allclose(encoding.fisher_vector(X[::-1], weights, means, variances), fv, atol=1e-13)
    np.testing.assert_allclose(encoding.fisher_vector(np.vstack([X, X]), weights, means, variances, chunk=7), fv, atol=1e-13)
    assert np.abs(encoding.fisher_vector(X + 1.0, weights, means, variances) - fv).max() > 0.05
    signs = np.sign(fv)  # signed square root: |FV| is proportional to sqrt|Phi|
    g_mu, g_sigma = encoding.fisher_gradients(X, weights, means, variances)
    phi = np.concatenate([g_mu.ravel(), g_sigma.ravel()])
    np.testing.assert_array_equal(signs, np.sign(phi))
    np.testing.assert_allclose(fv**2 / np.abs(phi), np.full(phi.size, 1 / np.abs(phi).sum()), rtol=1e-9)


def test_gmm_arrays_are_checked():
    with pytest.raises(ValueError, match="variances must be positive"):
        encoding.check_gmm(np.ones(2) / 2, np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="expected"):
        encoding.check_gmm(np.ones(2) / 2, np.zeros((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="cannot fit 8 Gaussian components on 5 descriptors"):
        encoding.fit_gmm(np.zeros((5, 2)), 8)


# ---------------------------------------------------------------------------------------------- descriptors
def test_scales_are_ten_between_half_and_two():
    s = descriptors.scale_factors(10, 0.5, 2.0)
    assert s[0] == pytest.approx(0.5) and s[-1] == pytest.approx(2.0) and len(s) == 10
    np.testing.assert_allclose(s * s[::-1], 1.0)  # geometric: symmetric around 1 in log scale
    np.testing.assert_allclose(np.diff(np.log(s)), np.log(4) / 9)
    np.testing.assert_allclose(np.diff(descriptors.scale_factors(10, 0.5, 2.0, "linear")), 1.5 / 9)


@pytest.mark.parametrize("region", ["roi", "box"])
def test_roi_descriptors_at_scale_one_equal_the_whole_slice_responses(bundle, region):
    """At scale 1 the windows (ROI box + receptive-field margin) give exactly the whole-slice responses at the
    layer positions whose centre pixel (offset + stride * i) is in the ROI: the crop and geometry are exact."""
    import torch

    from deepradiomics.models import load_bundle

    net = load_bundle(bundle).model
    rng = np.random.default_rng(0)
    slices = rng.normal(size=(2, 2, 70, 64)).astype(np.float32)
    mask = np.zeros((2, 70, 64), bool)
    mask[0, 20:41, 10:33] = True
    mask[0, 30, 40] = True  # a second blob: the box spans both
    mask[1, 50:66, 45:60] = True
    found, counts = descriptors.extract(net, "conv6", slices, mask, [1.0], None, region=region)
    geometry = net.layer_geometry("conv6")
    with torch.inference_mode():
        whole = net.features(torch.from_numpy(slices), "conv6").numpy()
    expected = []
    for z in range(2):
        rows = geometry["offset"] + geometry["stride"] * np.arange(whole.shape[2])
        cols = geometry["offset"] + geometry["stride"] * np.arange(whole.shape[3])
        ys, xs = np.nonzero(mask[z])
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                if not (0 <= r < 70 and 0 <= c < 64):
                    continue
                inside = mask[z, r, c] if region == "roi" else (ys.min() <= r <= ys.max() and xs.min() <= c <= xs.max())
                if inside:
                    expected.append(whole[z, :, i, j])
    expected = np.array(expected)
    assert counts.tolist() == [len(expected)] and found.dtype == np.float32
    order = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731 - compare as sets of rows
    np.testing.assert_allclose(order(found), order(expected), rtol=1e-5, atol=1e-5)


def test_descriptor_counts_grow_with_scale_and_context_matters(bundle):
    case = lgg(COHORT[0])
    full = FisherVector({"model": str(bundle), "scales": 4}).describe(case)
    counts = full["scale_counts"]
    assert len(counts) == 4 and np.all(np.diff(counts) > 0)  # more positions inside the ROI as it grows
    # positions inside the ROI ~ ROI pixels * s^2 / stride^2 (stride 2 for conv6)
    ratio = counts[-1] / counts[0]
    assert 10 < ratio < 22  # (2 / 0.5)^2 = 16 up to boundary effects
    masked = FisherVector({"model": str(bundle), "scales": 4, "context": "masked"}).describe(case)
    assert masked["scale_counts"].tolist() == counts.tolist()
    assert np.abs(masked["descriptors"] - full["descriptors"]).max() > 1e-3


# ---------------------------------------------------------------------------------------------- the class
def test_conformance_checks_pass(bundle):
    report = check_feature_class(
        FisherVector, settings={"model": str(bundle), **FAST}, case=lgg(COHORT[0]), fit_cases=[lgg(COHORT[0]), lgg(COHORT[1])]
    )
    assert [r.name for r in report.results] == FITTED_CLASS_CHECKS
    assert all(r.passed for r in report.results), str(report)


def test_names_and_the_paper_count(bundle):
    fisher = FisherVector({"model": str(bundle), "components": 3})
    names = fisher.feature_names()
    assert len(names) == 2 * 3 * 8 and names[:2] == ["Mu00d000", "Mu00d001"] and names[24] == "Sigma00d000" and names[-1] == "Sigma02d007"
    # the paper's 2 x 64 x 128 = 16,384 for a 128-filter last conv layer
    wide = FisherVector({"model": str(tiny_dlr_bundle(bundle.parent / "wide", last=128))})
    assert len(wide.feature_names()) == 16384 and "Mu03d117" in wide.feature_names()


def test_gmm_is_fitted_on_seeded_patients_and_subsampled_descriptors(bundle):
    rng = np.random.default_rng(0)
    described = [{"descriptors": rng.normal(i, 1.0, size=(50 + i, 8)).astype(np.float32)} for i in range(6)]
    ids = [f"p{i}" for i in range(6)]
    settings = {"model": str(bundle), "components": 2, "gmm_patients": 3, "max_descriptors": 20}
    a = FisherVector(settings).fit_descriptors(described, ids)
    b = FisherVector(settings).fit_descriptors(described[::-1], ids[::-1])  # order of the manifest does not matter
    assert sorted(ids[i] for i in a.gmm_cases_) == sorted(ids[::-1][i] for i in b.gmm_cases_) and len(a.gmm_cases_) == 3
    np.testing.assert_array_equal(a.means_, b.means_)
    c = FisherVector({**settings, "seed": 1}).fit_descriptors(described, ids)
    assert not np.array_equal(a.means_, c.means_)
    # the GMM saw 3 cases x 20 descriptors: its means lie within the chosen patients' range (their means are i)
    chosen = sorted(int(ids[i][1:]) for i in a.gmm_cases_)
    assert chosen[0] - 1 < a.means_.mean(axis=1).min() and a.means_.mean(axis=1).max() < chosen[-1] + 1
    with pytest.raises(FeatureError, match="cannot fit 200 Gaussian components on 60 descriptors"):
        FisherVector({**settings, "components": 200}).fit_descriptors(described, ids)
    odd = described[:2] + [{"descriptors": np.zeros((5, 3), np.float32)}]
    with pytest.raises(FeatureError, match="case 'p2' 3"):
        FisherVector(settings).fit_descriptors(odd, ids[:3])


def test_vq_latent_as_descriptor_source(tmp_path):
    vq = tiny_vq_bundle(tmp_path / "vq")
    fisher = FisherVector({"model": str(vq), "modalities": ["Image"], **FAST})
    case = lgg(COHORT[0])
    fisher.fit([case, lgg(COHORT[1])])
    values = fisher.compute(case).features
    assert fisher.layer == "latent" and fisher.dimension == 8 and len(values) == 2 * 2 * 8
    assert np.linalg.norm(list(values.values())) == pytest.approx(1.0)
    stage = FisherVector({"model": str(vq), "layer": "stage1", **FAST})
    assert stage.dimension == 4
    with pytest.raises(ParamsError, match="layer: 'latnet' is not a layer .* Did you mean 'latent'"):
        FisherVector({"model": str(vq), "layer": "latnet"}).feature_names()


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_settings_are_refused_by_name(bundle):
    with pytest.raises(ParamsError, match="min_scale 2.0 and max_scale 0.5"):
        FisherVector({"min_scale": 2.0, "max_scale": 0.5})
    with pytest.raises(ParamsError, match="unknown setting 'componets'.*Did you mean 'components'"):
        FisherVector({"componets": 3})
    with pytest.raises(ParamsError, match="modalities: 1 modalities"):
        FisherVector({"model": str(bundle), "modalities": ["Image"]}).describe(lgg(COHORT[0]))


def test_small_roi_empty_roi_and_dimension_mismatch_name_the_case_and_the_fix(bundle, tmp_path, caplog):
    small = lgg(SMALL_ROI_CASE)
    with pytest.raises(CaseError, match=rf"case '{SMALL_ROI_CASE}'.*38 x 30 image pixels.*19.0 network pixels at the smallest scale 0.5.*21-pixel receptive field.*min_scale to 0.56"):
        FisherVector({"model": str(bundle), **FAST}).describe(small)
    with caplog.at_level(logging.WARNING, logger="deepradiomics_plugins.fisher"):
        assert len(FisherVector({"model": str(bundle), **FAST, "on_small_roi": "warn"}).describe(small)["descriptors"])
    assert "receptive field" in caplog.text
    # a one-pixel ROI holds no position of a stride-2 layer at scale 0.5
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 10, (3, 64, 64)).astype(np.float32))
    mask = np.zeros((3, 64, 64), np.uint8)
    mask[1, 31, 31] = 1
    dot = Case({"Image": image, "t1ce": image}, sitk.GetImageFromArray(mask), case_id="dot")
    with pytest.raises(CaseError, match="case 'dot': no position of layer 'conv6'.*raise max_scale, use region: box"):
        FisherVector({"model": str(bundle), "scales": 1, "on_small_roi": "warn"}).describe(dot)
    # descriptors of another width than the GMM's (a GMM restored onto another network)
    fitted = FisherVector({"model": str(bundle), **FAST}).fit([lgg(COHORT[0]), lgg(COHORT[1])])
    narrow = FisherVector({"model": str(tiny_dlr_bundle(tmp_path / "narrow", last=6)), **FAST})
    narrow.set_fitted_state(fitted.fitted_state())
    with pytest.raises(FeatureError, match=rf"case '{COHORT[0]}': the descriptors have 6 dimensions but the GMM .* was fitted on 8.*refit"):
        narrow.compute(lgg(COHORT[0]))
    # a model retrained at the same path: refused by the network's sha256 recorded with the GMM
    model = tiny_dlr_bundle(tmp_path / "model")
    fitted.settings = FisherVector({"model": str(model), **FAST}).settings
    fitted._bundle_config = None
    fitted.model_sha256_ = fitted._config()["model_sha256"]
    fitted.save_fitted(tmp_path / "fisher")
    shutil.rmtree(model)
    tiny_dlr_bundle(model, seed=1)
    retrained = FisherVector({"model": str(model), **FAST, "encoder": str(tmp_path / "fisher")})
    with pytest.raises(ModelError, match="was fitted on descriptors of the network with sha256 .* refit"):
        retrained.compute(lgg(COHORT[0]))


def test_compute_before_fit_and_tampered_gmm_are_refused(bundle, tmp_path):
    with pytest.raises(NotFittedError, match="deepradiomics fit PARAMS MANIFEST -o DIR"):
        FisherVector({"model": str(bundle), **FAST}).compute(lgg(COHORT[0]))
    fisher = FisherVector({"model": str(bundle), **FAST}).fit([lgg(COHORT[0]), lgg(COHORT[1])])
    fisher.save_fitted(tmp_path / "fisher")
    with np.load(tmp_path / "fisher" / "state.npz", allow_pickle=False) as data:
        assert sorted(data.files) == ["gmm_cases", "means", "model_sha256", "variances", "weights"]  # arrays only
        assert data["means"].shape == (2, 8) and data["weights"].sum() == pytest.approx(1.0)
        assert bytes(data["model_sha256"]).hex() == yaml.safe_load((bundle / "config.yaml").read_text())["model_sha256"]
    state = tmp_path / "fisher" / "state.npz"
    raw = bytearray(state.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    state.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="state.npz has sha256 .* do not edit it"):
        FisherVector({"model": str(bundle), **FAST, "encoder": str(tmp_path / "fisher")}).compute(lgg(COHORT[0]))


# ---------------------------------------------------------------------------------------------- end to end
def test_fit_command_then_extract_and_batch_next_to_classical_and_vqhist(bundle, cohort, tmp_path, monkeypatch):
    classes = {
        "firstorder": ["Mean"],
        "fisher": {"model": str(bundle), **FAST, "gmm_patients": 3},
        "vqhist": {"model": "default", "modalities": ["t1", "Image", "t1ce"]},  # the shipped VQ network
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"setting": {"binWidth": 25.0}, "featureClass": classes}, sort_keys=False))
    runner = CliRunner()
    out = tmp_path / "fitted"
    cache = tmp_path / "cache"
    result = runner.invoke(main, ["fit", str(params), str(cohort), "-o", str(out), "--cache-dir", str(cache), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(list((cache / "descriptors" / "fisher").glob("*/*.npz"))) == 4  # in the entry of its settings
    fitted = yaml.safe_load((out / "params.yaml").read_text())
    assert fitted["featureClass"]["fisher"]["encoder"] == "fisher"
    config = yaml.safe_load((out / "fisher" / "config.yaml").read_text())
    assert config["fitted_on"] == COHORT[:4] and config["settings"]["components"] == 2
    with np.load(out / "fisher" / "state.npz", allow_pickle=False) as data:
        assert len(data["gmm_cases"]) == 3  # gmm_patients of the 4 training cases
    case = lgg(COHORT[1])
    modalities = ["-m", f"t1ce={case.modalities['t1ce']}", "-m", f"t1={case.modalities['Image'].parent / 't1.nii.gz'}"]
    row = runner.invoke(main, ["extract", str(out / "params.yaml"), str(case.modalities["Image"]), str(case.mask), *modalities])
    assert row.exit_code == 0, row.output
    header = row.stdout.splitlines()[0].split(",")
    features = [c for c in header if c.startswith("original_")]
    assert features[:2] == ["original_firstorder_Mean", "original_fisher_Mu00d000"] and features[33] == "original_vqhist_Codeword000"
    assert len(features) == 1 + 32 + 512
    assert "diagnostics_fisher_FittedSha256" in header and "diagnostics_fisher_ModelSha256" in header
    table_path = tmp_path / "features.csv"
    batch = runner.invoke(main, ["batch", str(out / "params.yaml"), str(cohort), "-o", str(table_path), "--no-progress"])
    assert batch.exit_code == 0, batch.output
    table = pd.read_csv(table_path, index_col="ID")
    fisher_cols = [c for c in table.columns if c.startswith("original_fisher_")]
    assert len(fisher_cols) == 32 and table[fisher_cols].notna().all().all()
    np.testing.assert_allclose(np.linalg.norm(table[fisher_cols].to_numpy(), axis=1), 1.0, atol=1e-9)
    # the batch row of a case equals the single extraction, and cases differ from each other
    single = pd.read_csv(io.StringIO(row.stdout))
    # (other processes run torch on other thread counts: float32 sums may differ in the last bits)
    np.testing.assert_allclose(table.loc[COHORT[1], fisher_cols].to_numpy(float), single[fisher_cols].to_numpy(float)[0], atol=1e-6)
    assert table[fisher_cols].std().max() > 0.01
    # the table records which cases the GMM was fitted on (a study of this table warns about leakage)
    assert json.loads(table["diagnostics_fisher_FittedOn"].iloc[0]) == COHORT[:4]
    # batch --cache-dir: the descriptors fit cached are encoded, no case is described again
    described = []
    real_describe = FisherVector.describe
    monkeypatch.setattr(FisherVector, "describe", lambda self, case: described.append(case.case_id) or real_describe(self, case))
    reused_path = tmp_path / "reused.csv"
    reused = runner.invoke(main, ["batch", str(out / "params.yaml"), str(cohort), "-o", str(reused_path), "--cache-dir", str(cache), "--no-progress"])
    assert reused.exit_code == 0, reused.output
    assert described == []
    pd.testing.assert_frame_equal(pd.read_csv(reused_path, index_col="ID")[fisher_cols], table[fisher_cols], rtol=0, atol=1e-6)
    monkeypatch.undo()
    # the extractor fits from a manifest too, with the same cached descriptors and the same GMM
    extractor = Extractor.from_yaml(params).fit(manifest=cohort, cache_dir=cache)
    again = extractor.plugin_classes["fisher"]
    frame, base = read_manifest(cohort)
    assert again.compute(case_from_row(frame.iloc[1].to_dict(), base)).features == pytest.approx(dict(zip([c.split("_")[-1] for c in fisher_cols], table.loc[COHORT[1], fisher_cols])), abs=1e-6)
