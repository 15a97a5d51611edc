"""The ``cnn`` feature class (Avants et al. 2020): settings, names, networks, patches, bad input, real data."""

from __future__ import annotations

import hashlib
import pickle
import re

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from deepradiomics_plugins.cnn import CNNFeatures
from deepradiomics_plugins.cnn.patches import extract_patches, grid_volume, make_roi_grid, patch_centres, scale_patches

from deepradiomics.case import Case
from deepradiomics.errors import CaseError, ParamsError
from deepradiomics.extractor import Extractor
from deepradiomics.models import load_bundle
from deepradiomics.naming import FeatureName
from deepradiomics.nets.vgg3d import VGG3D, init_seeded_
from deepradiomics.registry import get_registry
from deepradiomics.testing import check_feature_class, synthetic_case
from tests.conftest import REPO, require_data

#: small settings for mechanics: two layers, two small patch sizes
SMALL = {"layers": ["conv1_2", "conv3_1"], "patch_sizes": [6, 8]}
#: sha256 of the VGG-19-3D weights drawn for seed 0 (Glorot uniform): the same on every machine
SEED0_SHA256 = "dc003247fcb803c8c10d57cad8204c24198a924003c7f1257e286cffea901ab1"
SMALLEST_LGG = "TCGA_DU_8165_19970205"  # the LGG case with the smallest ROI (1,870 voxels)


def array_case(array: np.ndarray, roi: np.ndarray, spacing=(1.0, 1.0, 1.0), case_id: str = "arrays", **more) -> Case:
    """A case from (z, y, x) arrays; ``spacing`` in SimpleITK's (x, y, z) order; ``more`` adds modalities."""
    images = {}
    for name, values in {"Image": array, **more}.items():
        image = sitk.GetImageFromArray(np.asarray(values, dtype=np.float32))
        image.SetSpacing(spacing)
        images[name] = image
    mask = sitk.GetImageFromArray(roi.astype(np.uint8))
    mask.SetSpacing(spacing)
    return Case(images, mask, case_id=case_id)


def lgg(case_id: str = SMALLEST_LGG) -> Case:
    folder = require_data("lgg", case_id)
    return Case({"Image": folder / "flair.nii.gz", "t1ce": folder / "t1ce.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)


@pytest.fixture(scope="module")
def small_cnn() -> CNNFeatures:
    """One random VGG-19-3D (seed 0) shared by the mechanics tests: building it takes about a second."""
    return CNNFeatures(SMALL)


# ---------------------------------------------------------------------- contract and names
def test_conformance_checks(small_cnn):
    report = check_feature_class(CNNFeatures, settings=SMALL, case=synthetic_case())
    assert not report.failed, str(report)


def test_default_names_grammar_and_subfamilies():
    cnn = CNNFeatures()
    names = cnn.feature_names()
    assert len(names) == (128 + 512 + 512) * 2 * 2 == 4608
    assert names[:2] == ["Conv22P16Mean000", "Conv22P16Mean001"] and names[-1] == "Conv54P32Max511"
    assert "Conv42P32Mean017" in names and str(FeatureName("original", "cnn", "Conv42P32Mean017")) == "original_cnn_Conv42P32Mean017"
    grammar = re.compile(r"(Conv\d\d|Stem|Block\d|Head)(Axi|Cor|Sag)?P\d+(Mean|Max)\d{3,}(-[A-Za-z0-9.\-]+)?")
    assert all(grammar.fullmatch(n) for n in names)
    families = {family: [n for n in names if re.fullmatch(regex, n)] for family, regex in CNNFeatures.subfamilies.items()}
    assert {k: len(v) for k, v in families.items()} == {"shallow": 512, "mid": 2048, "deep": 2048}
    assert families["shallow"][0].startswith("Conv22") and families["deep"][0].startswith("Conv54")
    assert not hasattr(cnn, "_network")  # names come from the settings, no network was built

    encoder = CNNFeatures({"network": "encoder-3d", "weights": "vq-lgg-cpu", "modalities": ["Image", "t1ce"]})
    names = encoder.feature_names()
    assert len(names) == 2 * 3 * (32 + 64 + 64) * 2 * 2
    assert names[0] == "Block1AxiP16Mean000" and names[-1] == "HeadSagP32Max063-t1ce"
    assert all(grammar.fullmatch(n) for n in names)
    for name in names:
        matched = [f for f, regex in CNNFeatures.subfamilies.items() if re.fullmatch(regex, name)]
        expected = {"Block1": "shallow", "Block3": "mid", "Head": "deep"}[re.match(r"Block\d|Head", name).group()]
        assert matched == [expected], name


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"layers": ["conv42"]}, r"layers: 'conv42' is not a layer of vgg19-3d\. Did you mean 'conv4_2'\?"),
        ({"layers": ["conv6_1"]}, r"layers: 'conv6_1' is not a layer"),
        ({"layers": ["conv2_2", "conv2_2"]}, r"lists a layer twice"),
        ({"network": "encoder-3d", "weights": "vq-lgg-cpu", "layers": ["block7"]}, r"layers: 'block7' is not a layer of the encoder"),
        ({"network": "encoder-3d", "weights": "vq-lgg-cpu", "layers": ["conv2_2"]}, r"layers: 'conv2_2' is not a layer of encoder-3d"),
        ({"patch_sizes": [2]}, r"patch_sizes: 2 is too small"),
        ({"patch_sizes": [12], "pool_rounding": "floor"}, r"patch_sizes: 12 cannot reach conv5_4 with pool_rounding: floor \(12 -> 6 -> 3 -> 1 -> 0"),
        ({"patch_sizes": [16, 16]}, r"lists a size twice"),
        ({"patch_sizes": [16.5]}, r"patch_sizes"),
        ({"network": "vgg19_3d"}, r"network: 'vgg19_3d' is unknown\. Did you mean 'vgg19-3d'\?"),
        ({"weights": "no/such/vgg19.pth"}, r"weights: 'no/such/vgg19.pth' is neither 'random' nor an existing file"),
        ({"weights": "vq-lgg-cpu"}, r"weights: 'vq-lgg-cpu' is a model bundle; .*network: encoder-3d"),
        ({"network": "encoder-3d"}, r"weights: network encoder-3d maps a trained 2D encoder"),
        ({"network": "encoder-3d", "weights": "vq-lgg-cpx"}, r"weights: .*Did you mean 'vq-lgg-cpu'\?"),
        ({"pooling": ["avg"]}, r"pooling: \['avg'\] must list 'mean' and/or 'max'"),
        ({"orientations": ["axail"]}, r"orientations: .*Did you mean 'axial'\?"),
        ({"modalities": ["t1_ce"]}, r"modalities: 't1_ce' cannot appear in a feature name"),
        ({"spacing": 0}, r"spacing: 0 must be a positive"),
        ({"seed": -1}, r"seed: -1"),
        ({"initializer": "glorot_uniform"}, r"initializer: 'glorot_uniform' is unknown\. Did you mean 'glorot-uniform'\?"),
        ({"weights_sha256": "abc"}, r"weights_sha256"),
        ({"stride": 0}, r"stride: 0"),
        ({"batch_size": 0}, r"batch_size: 0"),
    ],
)
def test_bad_settings_are_params_errors_naming_the_key(settings, message):
    with pytest.raises(ParamsError, match=message) as info:
        CNNFeatures(settings, where="params/cnn.yaml: featureClass.cnn")
    assert str(info.value).startswith("params/cnn.yaml: featureClass.cnn")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- features
def test_random_network_is_reproducible_from_its_seed(small_cnn):
    case = synthetic_case()
    first = small_cnn.compute(case).features
    again = CNNFeatures(SMALL).compute(case).features
    assert again == first  # a fresh network from the same seed: the same features
    other = CNNFeatures({**SMALL, "seed": 1})
    assert other.compute(case).features != first and other.diagnostics()["WeightsSha256"] != small_cnn.diagnostics()["WeightsSha256"]
    values = np.array(list(first.values()))
    assert np.isfinite(values).all() and (values >= 0).all()  # ReLU activations
    for name, value in first.items():
        if "Max" in name:
            assert value >= first[name.replace("Max", "Mean")] - 1e-9


def test_features_are_pooled_patch_activations_recomputed_by_hand():
    """A single 16-voxel patch (a stride larger than the ROI) on a real case, recomputed without the class."""
    case = lgg()
    cnn = CNNFeatures({"layers": ["conv2_2", "conv5_4"], "patch_sizes": [16], "stride": 1000})
    result = cnn.compute(case)
    features = result.features
    assert result.diagnostics["PatchesP16"] == 1
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(require_data("lgg", SMALLEST_LGG, "flair.nii.gz")))).astype(np.float64)
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(require_data("lgg", SMALLEST_LGG, "mask.nii.gz")))) == 1
    voxels = np.argwhere(roi)
    centre = voxels[np.argmin(((voxels - voxels.mean(0)) ** 2).sum(1))]  # the ROI voxel nearest the centroid
    lo = centre - 8
    patch = np.full((16, 16, 16), flair.min())  # beyond the volume: its minimum
    src = [slice(max(a, 0), min(a + 16, n)) for a, n in zip(lo, flair.shape)]
    dst = [slice(s.start - a, s.stop - a) for s, a in zip(src, lo)]
    patch[tuple(dst)] = flair[tuple(src)]
    patch = (patch - patch.min()) / (patch.max() - patch.min()) * 255 - 127.5
    net = cnn._network.networks[""]
    with torch.inference_mode():
        maps = net.activations(torch.from_numpy(patch).float()[None, None], ["conv2_2", "conv5_4"])
    for layer, token in (("conv2_2", "Conv22"), ("conv5_4", "Conv54")):
        flat = maps[layer][0].flatten(1).double()
        # the class scales in float32, this test in float64: a deep layer amplifies that rounding in channels
        # whose activation is a near-cancelling sum, so compare on the scale of the layer
        atol = 1e-4 * float(flat.abs().max())
        for pooling, expected in (("Mean", flat.mean(1)), ("Max", flat.amax(1))):
            found = [features[f"{token}P16{pooling}{c:03d}"] for c in range(flat.shape[0])]
            np.testing.assert_allclose(found, expected.numpy(), rtol=1e-4, atol=atol)


def test_features_ignore_affine_intensity_changes(small_cnn):
    base = synthetic_case()
    array = sitk.GetArrayFromImage(base.image()).astype(np.float64)
    roi = base.mask_array()
    first = small_cnn.compute(array_case(array, roi)).features
    scaled = small_cnn.compute(array_case(array * 3.0 + 50.0, roi)).features  # each patch is scaled to [-127.5, 127.5]
    np.testing.assert_allclose(list(scaled.values()), list(first.values()), rtol=1e-4, atol=1e-4)


def test_resampling_to_isotropic_spacing(small_cnn):
    base = synthetic_case()
    array = sitk.GetArrayFromImage(base.image()).astype(np.float64)
    roi = base.mask_array()
    result = small_cnn.compute(array_case(array, roi))
    copied = result.features
    assert result.diagnostics["Resampled"] is False
    # a spacing off by 1e-5 takes the interpolating path on an almost identical grid: almost the same features
    result = small_cnn.compute(array_case(array, roi, spacing=(1.00001,) * 3))
    nearly = result.features
    assert result.diagnostics["Resampled"] is True
    np.testing.assert_allclose(list(nearly.values()), list(copied.values()), rtol=1e-3, atol=1e-3)
    # 2 mm slices on a 1 mm grid: twice as many ROI voxels along z
    result = small_cnn.compute(array_case(array, roi, spacing=(1.0, 1.0, 2.0)))
    thick = result.features
    assert np.isfinite(list(thick.values())).all()
    assert 1.8 < result.diagnostics["RoiVoxels"] / roi.sum() < 2.2


def test_upsampling_keeps_every_patch_inside_the_grid(small_cnn):
    """2 mm voxels on a 0.5 mm grid: nearest-neighbour ROI voxels reach half an old voxel beyond the old centres."""
    array = np.random.default_rng(1).normal(100, 10, (12, 12, 12))
    roi = np.zeros(array.shape, bool)
    roi[4:7, 4:7, 4:7] = True  # 3 x 3 x 3 voxels of 2 mm = 6 mm = 12 voxels of 0.5 mm
    case = array_case(array, roi, spacing=(2.0, 2.0, 2.0))
    fine = CNNFeatures({**SMALL, "spacing": 0.5, "stride": 5})  # centres on the ROI's outer voxels
    fine._network = small_cnn._encoder()  # same network: only the spacing differs
    result = fine.compute(case)
    values = result.features
    assert np.isfinite(list(values.values())).all()
    assert result.diagnostics["RoiVoxels"] == 12**3 and result.diagnostics["PatchesP8"] == 3**3


def test_modalities_get_their_own_features(small_cnn):
    base = synthetic_case()
    array = sitk.GetArrayFromImage(base.image()).astype(np.float64)
    case = array_case(array, base.mask_array(), t1=array[::-1].copy())
    two = CNNFeatures({**SMALL, "modalities": ["Image", "t1"]})
    two._network = small_cnn._encoder()  # same settings apart from the modalities: reuse the built network
    values = two.compute(case).features
    assert list(values) == two.feature_names()
    image_only = small_cnn.compute(case).features
    assert {k: v for k, v in values.items() if not k.endswith("-t1")} == image_only
    assert [values[k + "-t1"] for k in image_only] != list(image_only.values())


def test_bad_cases_are_case_errors(small_cnn):
    tiny = np.zeros((24, 24, 24), bool)
    tiny[10:13, 10:12, 10:13] = True  # 3 x 2 x 3 voxels: smaller than the smallest patch (6)
    noise = np.random.default_rng(0).normal(100, 10, tiny.shape)
    with pytest.raises(CaseError, match=r"case 'arrays': the ROI spans 3 x 2 x 3 voxels .* smaller than the smallest patch \(6 voxels\)"):
        small_cnn.compute(array_case(noise, tiny))
    flat = np.zeros((1, 24, 24), bool)
    flat[0, 5:15, 5:15] = True
    with pytest.raises(CaseError, match=r"case 'slice': .* a 2D image"):
        small_cnn.compute(array_case(noise[:1], flat, case_id="slice"))
    with pytest.raises(CaseError, match="no modality 't1'"):
        CNNFeatures({**SMALL, "modalities": ["t1"]}).compute(synthetic_case())


def test_pickle_sends_settings_not_networks(small_cnn):
    small_cnn.compute(synthetic_case())
    data = pickle.dumps(small_cnn)
    assert len(data) < 100_000  # the 240 MB network stays behind; workers rebuild it from the seed
    assert not hasattr(pickle.loads(data), "_network")


# ---------------------------------------------------------------------- mapped and transferred networks
def torchvision_vgg19_file(folder, seed: int = 0):
    """A seeded random 2D VGG-19 saved in torchvision's layout (features.0.weight, ...), and its sha256."""
    with torch.device("meta"):
        net2d = VGG3D(in_channels=3, spatial_dims=2)
    net2d = net2d.to_empty(device="cpu")
    init_seeded_(net2d, seed, "he-uniform")
    state = {k: v.clone() for k, v in net2d.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(10, 4)  # torchvision's dense layers: ignored
    path = folder / "vgg19_2d.pth"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_mapped_2d_weights_file(tmp_path):
    path, digest = torchvision_vgg19_file(tmp_path)
    settings = {
        "weights": "vgg19_2d.pth",
        "weights_sha256": digest,
        "layers": ["conv1_1", "conv2_1"],
        "patch_sizes": [6],
        "orientations": ["axial", "sagittal"],
    }
    with pytest.raises(ParamsError, match="neither 'random' nor an existing file"):
        CNNFeatures(settings)  # relative to the working directory without a params file
    cnn = CNNFeatures(settings, base_dir=tmp_path)  # relative to the params file's folder
    names = cnn.feature_names()
    assert names[0] == "Conv11AxiP6Mean000" and "Conv21SagP6Max127" in names and len(names) == 2 * (64 + 128) * 2
    assert cnn.artifacts() == {"Weights": digest}
    values = cnn.compute(synthetic_case()).features
    assert list(values) == names and np.isfinite(list(values.values())).all()
    assert cnn.diagnostics()["WeightsSha256"] == digest and cnn.diagnostics()["Orientations"] == "axial,sagittal"
    axial = np.array([values[n] for n in names if "Axi" in n])
    sagittal = np.array([values[n] for n in names if "Sag" in n])
    assert not np.allclose(axial, sagittal)  # two differently oriented networks
    with pytest.raises(ParamsError, match=f"has sha256 {digest} but weights_sha256 says"):
        CNNFeatures({**settings, "weights": str(path), "weights_sha256": "0" * 64}).compute(synthetic_case())


def test_weights_files_of_the_wrong_layout_are_refused(tmp_path):
    settings = {"layers": ["conv1_1"], "patch_sizes": [6]}
    resnet = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, resnet)
    with pytest.raises(ParamsError, match=r"featureClass.cnn.weights: .*not a VGG-19 state dict in torchvision's layout"):
        CNNFeatures({**settings, "weights": str(resnet)}).compute(synthetic_case())
    shapes = tmp_path / "vgg16ish.pth"
    state = torch.load(torchvision_vgg19_file(tmp_path)[0], weights_only=True)
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, shapes)
    with pytest.raises(ParamsError, match=r"features.0.weight has shape \(64, 1, 3, 3\), expected \(64, 3, 3, 3\)"):
        CNNFeatures({**settings, "weights": str(shapes)}).compute(synthetic_case())
    code = tmp_path / "pickled_model.pth"
    torch.save({"model": re.compile("x")}, code)  # not plain tensors: weights_only refuses to unpickle it
    with pytest.raises(ParamsError, match="not a plain state dict of tensors"):
        CNNFeatures({**settings, "weights": str(code)}).compute(synthetic_case())
    text = tmp_path / "notes.txt"
    text.write_text("not weights")
    with pytest.raises(ParamsError, match="not a plain state dict of tensors"):
        CNNFeatures({**settings, "weights": str(text)}).compute(synthetic_case())


def test_transferred_vq_encoder_on_a_real_case():
    case = lgg()
    cnn = CNNFeatures({"network": "encoder-3d", "weights": "vq-lgg-cpu", "patch_sizes": [8]})
    result = cnn.compute(case)
    values = result.features
    assert list(values) == cnn.feature_names() and len(values) == 3 * (32 + 64 + 64) * 2
    array = np.array(list(values.values()))
    assert np.isfinite(array).all() and array.std() > 0
    for name, value in values.items():
        if "Max" in name:
            assert value >= values[name.replace("Max", "Mean")] - 1e-9
    bundle_sha = load_bundle("vq-lgg-cpu").sha256
    assert cnn.artifacts() == {"Weights": bundle_sha} and cnn.diagnostics()["WeightsSha256"] == bundle_sha
    diagnostics = cnn.diagnostics()
    assert diagnostics["Layers"] == "block1,block3,head" and result.diagnostics["PatchesP8"] == 9
    # each orientation's network is a 3D copy: its stem takes one channel, the bundle's 3 channels along its axis
    stems = [net.stem.weight.shape for net in cnn._network.networks.values()]
    assert stems == [(16, 1, 3, 3, 3)] * 3
    axial, coronal = (np.array([values[n] for n in values if t in n]) for t in ("Axi", "Cor"))
    assert not np.allclose(axial, coronal)


# ---------------------------------------------------------------------- patches
def test_patch_grid_and_patches_on_a_real_mask():
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(require_data("lgg", SMALLEST_LGG, "mask.nii.gz")))) == 1
    for stride in (1, 4, 16):
        centres = patch_centres(roi, stride)
        assert roi[tuple(centres.T)].all() and len(np.unique(centres, axis=0)) == len(centres)
        assert ((centres - centres[0]) % stride == 0).all()
    assert len(patch_centres(roi, 1)) == roi.sum()  # stride 1: every ROI voxel
    volume = np.random.default_rng(0).normal(size=(30, 40, 50)).astype(np.float32)
    centres = np.array([[10, 10, 10], [20, 25, 30]])
    patches = extract_patches(volume, centres, 8)
    np.testing.assert_array_equal(patches[1], volume[16:24, 21:29, 26:34])
    with pytest.raises(ValueError, match="margin"):
        extract_patches(volume, np.array([[2, 20, 20]]), 8)
    scaled = scale_patches(torch.from_numpy(np.stack([patches[0], np.full((8, 8, 8), 7.0, np.float32)])))
    assert float(scaled[0].min()) == -127.5 and abs(float(scaled[0].max()) - 127.5) < 1e-4
    assert not scaled[1].any()  # a constant patch: all zeros


def test_grid_copy_pads_with_the_image_minimum():
    array = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8) + 5
    roi = np.zeros(array.shape, bool)
    roi[0, 3, 4] = True  # on the first slice: the margin leaves the image
    image = sitk.GetImageFromArray(array)
    grid = make_roi_grid(image, roi, 1.0, 2)
    volume = grid_volume(image, grid)
    assert volume.shape == (5, 5, 5) and not grid.resampled
    np.testing.assert_array_equal(volume[:2], 5.0)  # two slices before z = 0: the image's minimum
    np.testing.assert_array_equal(volume[2:], array[0:3, 1:6, 2:7])


# ---------------------------------------------------------------------- the shipped params file on real data
@pytest.fixture
def registered():
    registry = get_registry()
    added = "cnn" not in registry
    if added:
        registry.register(CNNFeatures)
    yield
    if added:
        registry.unregister("cnn")


def test_default_params_on_a_real_lgg_case(registered):
    folder = require_data("lgg", SMALLEST_LGG)
    extractor = Extractor.from_yaml(REPO / "params" / "cnn.yaml")
    row = extractor.execute(folder / "flair.nii.gz", folder / "mask.nii.gz", case_id=SMALLEST_LGG)
    features = [c for c in row.index if c.startswith("original_cnn_")]
    assert features == [f"original_cnn_{n}" for n in CNNFeatures().feature_names()] and len(features) == 4608
    assert row["diagnostics_cnn_WeightsSha256"] == SEED0_SHA256  # the paper's network for seed 0, on any machine
    assert row["diagnostics_cnn_Parameters"] == 60_058_688
    assert (row["diagnostics_cnn_WeightsConvention"], row["diagnostics_cnn_WeightsConventionRule"]) == ("paper", "auto: random weights")
    assert (row["diagnostics_cnn_PatchesP16"], row["diagnostics_cnn_PatchesP32"]) == (2, 1)
    values = row[features].astype(float)
    assert np.isfinite(values).all() and (values >= 0).all() and values.std() > 0
    maxima = values[[f for f in features if "Max" in f]].to_numpy()
    means = values[[f.replace("Max", "Mean") for f in features if "Max" in f]].to_numpy()
    assert (maxima >= means - 1e-9).all()
    for layer in ("Conv22", "Conv42", "Conv54"):
        block = values[[f for f in features if f"_{layer}P16Mean" in f]]
        assert (block > 0).mean() > 0.3, layer  # the random ReLU network keeps a good share of live channels


def test_voxel_maps_paint_each_patch_with_its_pooled_value(lgg_case):
    import SimpleITK as sitk
    from deepradiomics_plugins.cnn import CNNFeatures

    from deepradiomics.case import Case
    from deepradiomics.errors import ParamsError

    case = Case({"Image": lgg_case["flair"]}, lgg_case["mask"], case_id="lgg")
    settings = {"layers": ["conv1_2"], "patch_sizes": [8], "pooling": ["mean", "max"]}
    cnn = CNNFeatures({**settings, "map_features": ["Conv12P8Mean005", "Conv12P8Max005"]})
    result = cnn.compute(case)
    features = result.features
    maps = cnn.voxel_maps(case)
    mean_map = sitk.GetArrayFromImage(maps["Conv12P8Mean005"])
    assert maps["Conv12P8Mean005"].GetSize() == case.image().GetSize()
    painted = mean_map[np.isfinite(mean_map)]
    roi = case.mask_array()
    # patches are centred on ROI voxels of a regular grid: they cover most of the ROI (its rim can fall in tiles
    # whose centre lies outside the ROI: 89 % covered on this case)
    assert np.isfinite(mean_map[roi]).mean() > 0.8
    # the tiling patches do not overlap: each painted value is one patch's mean, and their average is the feature
    patch_values = np.unique(painted)
    assert len(patch_values) == result.diagnostics["PatchesP8"]
    assert np.mean(patch_values) == pytest.approx(features["Conv12P8Mean005"], rel=1e-5)
    max_map = sitk.GetArrayFromImage(maps["Conv12P8Max005"])
    assert np.nanmax(max_map) == pytest.approx(features["Conv12P8Max005"], rel=1e-6)
    with pytest.raises(ParamsError, match="map_features: 'Conv12P8Mean5'.*Did you mean"):
        CNNFeatures({**settings, "map_features": ["Conv12P8Mean5"]}).voxel_maps(case)
