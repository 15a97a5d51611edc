"""``cnn`` input conventions: each kind of weights gets the input it was trained on (plugins/cnn/conventions.py).

Seeded random 2D VGG-19 weights are written in each key layout (torchvision's, Keras', caffe's); the first
convolution of the 3D network is hooked while a real LGG case is encoded, and its input must lie in the
convention's range. Run as a script to print the first-layer input statistics per convention::

    .venv/bin/python -m tests.plugins.test_cnn_conventions [CASE_ID ...]
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from deepradiomics_plugins.cnn import CNNFeatures
from deepradiomics_plugins.cnn.conventions import InputConvention, resolve_convention
from deepradiomics_plugins.cnn.patches import extract_patches, grid_volume, patch_centres, scale_patches

from deepradiomics.case import Case
from deepradiomics.errors import ParamsError
from deepradiomics.nets.inflate import map_vgg2d_state_dict, torchvision_vgg_keys, vgg2d_layout
from deepradiomics.nets.preprocess import zscore_foreground
from deepradiomics.nets.vgg3d import VGG3D, init_seeded_
from tests.conftest import require_data

CASE = "TCGA_DU_8165_19970205"  # the LGG case with the smallest ROI: few patches, fast
#: sha256 of the VGG-19-3D weights drawn for seed 0 (as in tests/plugins/test_cnn.py)
SEED0_SHA256 = "dc003247fcb803c8c10d57cad8204c24198a924003c7f1257e286cffea901ab1"
#: what each convention maps a patch's minimum and maximum to (written out from the definitions, not imported):
#: torchvision: (0 - 0.449) / 0.226 and (1 - 0.449) / 0.226; caffe: 0 - 114.799333 and 255 - 114.799333
RANGES = {
    "paper": (-127.5, 127.5),
    "torchvision": (-0.449 / 0.226, 0.551 / 0.226),
    "caffe": (-(103.939 + 116.779 + 123.68) / 3, 255 - (103.939 + 116.779 + 123.68) / 3),
}
KERAS_NAMES = [f"block{b}_conv{i}" for b, n in enumerate((2, 2, 4, 4, 4), 1) for i in range(1, n + 1)]
CAFFE_NAMES = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 4, 4, 4), 1) for i in range(1, n + 1)]


# ---------------------------------------------------------------------- weights in each layout
def torchvision_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random 2D VGG-19 state dict in torchvision's layout (features.0.weight ... features.34.bias)."""
    with torch.device("meta"):
        net2d = VGG3D(in_channels=3, spatial_dims=2)
    net2d = net2d.to_empty(device="cpu")
    init_seeded_(net2d, seed, "he-uniform")
    state = {k: v.clone() for k, v in net2d.state_dict().items()}
    for k in state:
        if k.endswith(".bias"):  # non-zero biases, so that a lost or misplaced bias shows
            state[k] = torch.linspace(-0.1, 0.1, state[k].numel())
    return state


def keras_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under Keras' layer names, kernels in Keras' own (3, 3, I, O) order, with Keras' dense layers."""
    out = {}
    for (prefix, _), name in zip(torchvision_vgg_keys((2, 2, 4, 4, 4)), KERAS_NAMES):
        out[f"{name}.weight"] = state[f"{prefix}.weight"].permute(2, 3, 1, 0).contiguous()  # (O, I, h, w) -> (h, w, I, O)
        out[f"{name}.bias"] = state[f"{prefix}.bias"]
    out["fc1.weight"] = torch.zeros(4, 2)  # dense layers: ignored
    return out


def caffe_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under the caffe model's layer names (conv1_1 ... conv5_4), (O, I, 3, 3)."""
    out = {}
    for (prefix, _), name in zip(torchvision_vgg_keys((2, 2, 4, 4, 4)), CAFFE_NAMES):
        out[f"{name}.weight"] = state[f"{prefix}.weight"]
        out[f"{name}.bias"] = state[f"{prefix}.bias"]
    out["fc8.bias"] = torch.zeros(3)
    return out


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory) -> dict[str, str]:
    """One seeded 2D VGG-19 saved in each layout: {"torchvision": path, "keras": path, "caffe": path}."""
    folder = tmp_path_factory.mktemp("vgg2d")
    state = torchvision_state()
    files = {}
    for layout, content in (("torchvision", state), ("keras", keras_state(state)), ("caffe", caffe_state(state))):
        files[layout] = str(folder / f"vgg19_{layout}.pth")
        torch.save(content, files[layout])
    return files


def lgg_case(case_id: str = CASE) -> Case:
    folder = require_data("lgg", case_id)
    return Case({"Image": folder / "flair.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)


def first_layer_inputs(cnn: CNNFeatures, case: Case) -> list[np.ndarray]:
    """Every batch (B, 1, p, p, p) that the first convolution of the first network saw while ``cnn`` encoded ``case``."""
    net = next(iter(cnn._encoder().networks.values()))
    first = net.features[0] if hasattr(net, "features") else net.stem
    seen = []
    handle = first.register_forward_pre_hook(lambda _module, inputs: seen.append(inputs[0].detach().clone()))
    try:
        result = cnn.compute(case)
    finally:
        handle.remove()
    assert np.isfinite(list(result.features.values())).all()
    return [x.float().numpy() for x in seen]


SMALL = {"layers": ["conv1_1"], "patch_sizes": [16], "orientations": ["axial"]}
#: (label, settings without the weights file, weights layout or None, expected convention)
CASES = [
    ("random", {"layers": ["conv1_1"], "patch_sizes": [16]}, None, "paper"),
    ("torchvision-auto", SMALL, "torchvision", "torchvision"),
    ("keras-auto", SMALL, "keras", "caffe"),
    ("caffe-auto", SMALL, "caffe", "caffe"),
    ("torchvision-keys-declared-caffe", {**SMALL, "weights_convention": "caffe"}, "torchvision", "caffe"),
    ("torchvision-keys-declared-paper", {**SMALL, "weights_convention": "paper"}, "torchvision", "paper"),
    ("vq-bundle", {"network": "encoder-3d", "weights": "vq-lgg-cpu", "layers": ["stem"], "patch_sizes": [16], "orientations": ["axial"]}, None, "zscore"),
]


def build(settings: dict, layout: str | None, files: dict[str, str]) -> CNNFeatures:
    return CNNFeatures({**settings, "weights": files[layout]} if layout else settings)


# ---------------------------------------------------------------------- the first layer sees its convention's range
@pytest.mark.parametrize("label, settings, layout, expected", CASES, ids=[c[0] for c in CASES])
def test_first_layer_sees_the_input_its_weights_were_trained_on(label, settings, layout, expected, weights_files):
    case = lgg_case()
    cnn = build(settings, layout, weights_files)
    diagnostics = cnn.diagnostics()
    assert diagnostics["WeightsConvention"] == expected
    x = np.concatenate(first_layer_inputs(cnn, case))  # one patch side: batches of one shape
    assert x.ndim == 5 and x.shape[1] == 1 and len(x) >= 2
    if expected in RANGES:
        low, high = RANGES[expected]
        per_patch = x.reshape(len(x), -1)
        # every patch spans exactly the convention's range: its minimum at low, its maximum at high
        np.testing.assert_allclose(per_patch.min(1), low, rtol=0, atol=1e-4 * (high - low))
        np.testing.assert_allclose(per_patch.max(1), high, rtol=0, atol=1e-4 * (high - low))
        assert low < x.mean() < high
        return
    # zscore: the FLAIR volume z-scored over its voxels > 0 exactly as the bundle was trained
    # (deepradiomics.nets.preprocess.zscore_foreground), patches cut from it; the LGG grid is 1 mm: no resampling
    grid = cnn._grid(case)
    assert not grid.resampled
    flair = sitk.GetArrayFromImage(case.image())
    normalised = sitk.GetImageFromArray(zscore_foreground(flair))
    normalised.CopyInformation(case.image())
    expected_patches = extract_patches(grid_volume(normalised, grid), patch_centres(grid.roi, 16), 16)
    np.testing.assert_allclose(x[:, 0], expected_patches, rtol=1e-6, atol=1e-6)
    assert -5 < x.min() and x.max() < 10 and x.std() > 0.1  # z-scores, not the paper's +-127.5
    assert diagnostics["FirstLayerAxis"] == "t1,Image,t1ce"  # the bundle's modalities, in its channel order


def test_conventions_differ_in_scale_as_their_training_did(weights_files):
    """The paper's scaling is ~56x torchvision's range; caffe's is the paper's shifted by 12.7 grey levels."""
    case = lgg_case()
    spans = {}
    for layout, convention in (("torchvision", "torchvision"), ("torchvision", "caffe"), ("torchvision", "paper")):
        x = np.concatenate(first_layer_inputs(CNNFeatures({**SMALL, "weights": weights_files[layout], "weights_convention": convention}), case))
        spans[convention] = (float(x.max() - x.min()), float(x.mean()))
    assert spans["paper"][0] / spans["torchvision"][0] == pytest.approx(255 * 0.226, rel=1e-4)
    assert spans["caffe"][0] == pytest.approx(spans["paper"][0], rel=1e-5)
    assert spans["caffe"][1] - spans["paper"][1] == pytest.approx(127.5 - (103.939 + 116.779 + 123.68) / 3, rel=1e-3)


# ---------------------------------------------------------------------- the first layer's axis order
@pytest.mark.parametrize("orientation, axis", [("axial", 0), ("coronal", 1), ("sagittal", 2)])
def test_every_layout_maps_to_the_same_network_with_channel_order_along_the_axis(orientation, axis):
    state = torchvision_state()
    with torch.device("meta"):
        shapes = VGG3D()
    mapped = {}
    for layout, content in (("torchvision", state), ("keras", keras_state(state)), ("caffe", caffe_state(state))):
        assert vgg2d_layout(content) == layout
        mapped[layout] = map_vgg2d_state_dict(content, orientation, shapes)
    for layout in ("keras", "caffe"):
        assert mapped[layout].keys() == mapped["torchvision"].keys()
        for key, value in mapped["torchvision"].items():
            assert torch.equal(mapped[layout][key], value), (layout, key)
    first = mapped["torchvision"]["features.0.weight"]  # (64, 1, ...) with 3 along the orientation axis
    assert first.shape[2 + axis] == 3 and first.shape[1] == 1
    for c in range(3):
        # the weights' channel c is the kernel's slice c along the axis: it reads the voxel c - 1 steps along it
        assert torch.equal(first.select(2 + axis, c)[:, 0], state["features.0.weight"][:, c])
    # deeper kernels: replicated 3 times along the axis and divided by 3 (I3D's inflation, the project's choice)
    deeper = mapped["torchvision"]["features.2.weight"]
    for j in range(3):
        assert torch.equal(deeper.select(2 + axis, j), state["features.2.weight"] / 3)
    assert torch.equal(mapped["torchvision"]["features.34.bias"], state["features.34.bias"])


def test_first_layer_reads_channel_0_one_slice_before_the_voxel(weights_files):
    """A single bright slice just before z0 reaches the output at z0 only through the weights' channel 0 (R for torchvision)."""
    cnn = CNNFeatures({**SMALL, "weights": weights_files["torchvision"]})
    assert cnn.diagnostics()["FirstLayerAxis"] == "R,G,B"
    conv = cnn._encoder().networks["Axi"].features[0]
    state = torch.load(weights_files["torchvision"], weights_only=True)
    volume = torch.zeros(1, 1, 5, 7, 7)
    volume[0, 0, 1] = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))  # slice z = 1
    with torch.inference_mode():
        out = conv(volume.contiguous(memory_format=torch.channels_last_3d))[0, :, 2]  # output at z0 = 2
        red = torch.nn.functional.conv2d(volume[:, :, 1], state["features.0.weight"][:, :1], state["features.0.bias"], padding=1)[0]
    torch.testing.assert_close(out, red, rtol=1e-5, atol=1e-5)
    assert CNNFeatures({**SMALL, "weights": weights_files["keras"]}).diagnostics()["FirstLayerAxis"] == "B,G,R"


# ---------------------------------------------------------------------- random weights unchanged
def test_random_weights_keep_the_papers_scaling_bit_for_bit():
    cnn = CNNFeatures({"layers": ["conv1_1"], "patch_sizes": [8]})
    declared = CNNFeatures({"layers": ["conv1_1"], "patch_sizes": [8], "weights_convention": "paper"})
    diagnostics = cnn.diagnostics()
    assert diagnostics["WeightsSha256"] == SEED0_SHA256
    assert (diagnostics["WeightsConvention"], diagnostics["WeightsConventionRule"], diagnostics["FirstLayerAxis"]) == ("paper", "auto: random weights", "")
    assert declared.diagnostics()["WeightsConventionRule"] == "declared"
    case = lgg_case()
    grid = cnn._grid(case)
    patches = torch.from_numpy(extract_patches(grid_volume(case.image(), grid), patch_centres(grid.roi, 8), 8)).unsqueeze(1)
    assert torch.equal(cnn._input_convention.scaler(case.image())(patches), scale_patches(patches))  # the paper's path, unchanged
    declared._network = cnn._encoder()
    assert declared.compute(case).features == cnn.compute(case).features


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "settings, layout, message",
    [
        ({"weights_convention": "imagenet"}, None, r"featureClass.cnn.weights_convention: 'imagenet' is not one of 'auto', 'paper', 'torchvision', 'caffe', 'zscore'"),
        ({"weights_convention": "torchvision"}, None, r"featureClass.cnn.weights_convention: 'torchvision' does not apply to weights: random .*use auto or paper"),
        ({"weights_convention": "zscore"}, None, r"featureClass.cnn.weights_convention: 'zscore' does not apply to weights: random"),
        ({"weights_convention": "zscore"}, "torchvision", r"featureClass.cnn.weights_convention: 'zscore' applies to network encoder-3d .*use auto, torchvision, caffe or paper"),
        (
            {"network": "encoder-3d", "weights": "vq-lgg-cpu", "weights_convention": "caffe"},
            None,
            r"featureClass.cnn.weights_convention: 'caffe' does not apply to bundle 'vq-lgg-cpu', trained on zscore-foreground input .*use auto or zscore",
        ),
        ({"network": "encoder-3d", "weights": "vq-lgg-cpu", "weights_convention": "paper"}, None, r"'paper' does not apply to bundle 'vq-lgg-cpu'"),
    ],
)
def test_bad_or_inapplicable_conventions_fail_when_the_class_is_built(settings, layout, message, weights_files):
    full = {**settings, "weights": weights_files[layout]} if layout else settings
    with pytest.raises(ParamsError, match=message) as info:
        CNNFeatures(full)  # no case: refused when the class is built
    assert "\n" not in str(info.value)


def test_auto_refuses_state_dicts_it_cannot_place(tmp_path):
    state = torchvision_state()
    mixed = tmp_path / "mixed.pth"
    torch.save({**state, **caffe_state(state)}, mixed)
    with pytest.raises(ParamsError, match=r"featureClass.cnn.weights: .*mix the VGG-19 layouts of torchvision and caffe") as info:
        CNNFeatures({"weights": str(mixed)})
    assert "\n" not in str(info.value)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    with pytest.raises(ParamsError, match=r"featureClass.cnn.weights: .*not a VGG-19 state dict in torchvision's layout .* Keras' .* caffe's"):
        CNNFeatures({"weights": str(other)})


def test_resolve_rule_for_bundles_and_files():
    bundle = {"source": "bundle", "where": "featureClass.cnn", "channels": ("t1", "Image", "t1ce"), "bundle": "b"}
    convention = resolve_convention("auto", normalization="zscore", **bundle)
    assert (convention.name, convention.normalization, convention.channel_order) == ("zscore", "zscore", ("t1", "Image", "t1ce"))
    with pytest.raises(ParamsError, match=r"featureClass.cnn.weights_convention: bundle 'b' was trained on preprocessing.normalization 'none'"):
        resolve_convention("auto", normalization="none", **bundle)
    assert resolve_convention("auto", source="file", where="w", layout="torchvision").name == "torchvision"
    assert resolve_convention("auto", source="file", where="w", layout="keras").channel_order == ("B", "G", "R")
    assert resolve_convention("torchvision", source="file", where="w", layout="caffe").rule == "declared"
    assert InputConvention.paper("x").patch_range == (-127.5, 127.5)


# ---------------------------------------------------------------------- the figures of the report
def report(case_ids: list[str]) -> None:
    """Print min, max, mean, std of the first layer's input per convention on real LGG cases (patches of 16 and 32)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        state = torchvision_state()
        files = {}
        for layout, content in (("torchvision", state), ("keras", keras_state(state))):
            files[layout] = str(Path(folder) / f"{layout}.pth")
            torch.save(content, files[layout])
        rows = [
            ("paper (random)", {"layers": ["conv1_1"]}, None),
            ("torchvision (auto, torchvision keys)", {"layers": ["conv1_1"], "orientations": ["axial"]}, "torchvision"),
            ("caffe (auto, Keras keys)", {"layers": ["conv1_1"], "orientations": ["axial"]}, "keras"),
            ("zscore (vq-lgg-cpu)", {"network": "encoder-3d", "weights": "vq-lgg-cpu", "layers": ["stem"], "orientations": ["axial"]}, None),
        ]
        print("case | convention | patches | min | max | mean | std")
        for case_id in case_ids:
            case = lgg_case(case_id)
            for label, settings, layout in rows:
                cnn = build({**settings, "patch_sizes": [16, 32]}, layout, files)
                batches = first_layer_inputs(cnn, case)
                n = sum(len(b) for b in batches)
                x = np.concatenate([b.ravel() for b in batches]).astype(np.float64)
                print(f"{case_id} | {label} | {n} | {x.min():.4f} | {x.max():.4f} | {x.mean():.4f} | {x.std():.4f}")


if __name__ == "__main__":
    report(sys.argv[1:] or [CASE])
