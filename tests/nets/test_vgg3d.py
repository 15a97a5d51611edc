"""VGG-19-3D (deepradiomics.nets.vgg3d) and the 2D -> 3D mapping (deepradiomics.nets.inflate)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepradiomics.errors import ModelError
from deepradiomics.models import build_network, load_bundle
from deepradiomics.nets.inflate import (
    collect_activations,
    inflate,
    map_vgg2d_state_dict,
)
from deepradiomics.nets.vgg3d import VGG3D, vgg_layer_names
from tests.conftest import require_data

NARROW = (4, 8, 8, 16, 16)
#: torchvision.models.vgg19().features: the index of every convolution (written out, not derived)
TORCHVISION_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
ORIENTATION_AXES = {"axial": 0, "coronal": 1, "sagittal": 2}


def test_paper_parameter_count_and_layers():
    net = VGG3D()
    assert net.parameter_count() == 60_058_688  # the paper's figure for VGG-19-3D, one input channel
    assert net.layer_names == vgg_layer_names() == [f"conv{b}_{i}" for b, n in zip(range(1, 6), (2, 2, 4, 4, 4)) for i in range(1, n + 1)]
    assert [net.layer_channels(n) for n in ("conv1_1", "conv2_2", "conv3_4", "conv4_2", "conv5_4")] == [64, 128, 256, 512, 512]
    assert not any(isinstance(m, nn.Linear) for m in net.modules())


def test_torchvision_state_dict_layout():
    net2d = VGG3D(in_channels=3, spatial_dims=2)
    expected = [f"features.{i}.{kind}" for i in TORCHVISION_CONV_INDICES for kind in ("weight", "bias")]
    assert list(net2d.state_dict()) == expected
    assert tuple(net2d.state_dict()["features.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(net2d.state_dict()["features.34.weight"].shape) == (512, 512, 3, 3)


def test_ceil_pooling_keeps_12_voxel_patches_valid_and_floor_does_not():
    ceil = VGG3D(filters=NARROW)
    out = ceil.activations(torch.zeros(2, 1, 12, 12, 12), ["conv5_4", "conv2_2"])
    assert list(out) == ["conv5_4", "conv2_2"]
    assert tuple(out["conv5_4"].shape) == (2, 16, 1, 1, 1) and tuple(out["conv2_2"].shape) == (2, 8, 6, 6, 6)
    assert [ceil.layer_size("conv5_4", s) for s in (12, 16, 20, 32)] == [1, 1, 2, 2]
    floor = VGG3D(filters=NARROW, pool_rounding="floor")
    assert floor.check_input_size(12, ["conv3_1", "conv5_4"]) == ["conv5_4"]
    assert floor.check_input_size(16, ["conv5_4"]) == []
    with pytest.raises(RuntimeError):
        floor.activations(torch.zeros(1, 1, 12, 12, 12), ["conv5_4"])
    # sides that are multiples of 16: ceil and floor give the same numbers
    floor.load_state_dict(ceil.state_dict())
    x = torch.randn(1, 1, 16, 16, 16)
    assert torch.equal(ceil.activations(x, ["conv5_4"])["conv5_4"], floor.activations(x, ["conv5_4"])["conv5_4"])


def test_activations_match_sequential_forward_and_stop_early():
    net, _ = VGG3D.seeded(3, filters=NARROW)
    x = torch.randn(1, 1, 8, 8, 8)
    out = net.activations(x, ["conv1_2", "conv3_1"])
    manual = x
    for module in net.features[: net.layer_index["conv3_1"] + 1]:
        manual = module(manual)
    assert torch.equal(out["conv3_1"], manual)
    assert torch.equal(out["conv1_2"], F.relu(net.features[2](F.relu(net.features[0](x)))))
    calls = []
    net.features[net.layer_index["conv3_1"] + 1].register_forward_hook(lambda *a: calls.append(1))
    net.activations(x, ["conv3_1"])
    assert calls == []  # nothing after the deepest requested layer ran
    with pytest.raises(KeyError, match="conv9_9"):
        net.activations(x, ["conv9_9"])


def test_from_config_through_the_architecture_registry():
    net = build_network({"type": "vgg3d", "filters": list(NARROW), "pool_rounding": "floor"})
    assert isinstance(net, VGG3D) and net.filters == NARROW and net.pool_rounding == "floor"
    assert VGG3D.from_config(net.config()).config() == net.config()
    assert VGG3D.from_config({"type": "vgg3d"}).parameter_count() == 60_058_688


def test_seeded_weights_are_machine_independent():
    net, digest = VGG3D.seeded(0, "glorot-uniform", filters=NARROW)
    # golden values: a different machine, NumPy or torch version must give the same bytes
    assert digest == "2873b8bd4994d45c242f92fb93ff0be13d10d38b016754a9a76d17974f9fe55c"
    assert VGG3D.seeded(0, "he-uniform", filters=NARROW)[1] == "95c18aeb6390dc94a7b14b3f339841593efed07927b9244c8d9746cb8cf39ee2"
    # the first two weights, from the first two raw outputs of PCG64(0) (NumPy's stable stream), by hand
    raw = (11749869230777074271, 4976686463289251617)
    bound = math.sqrt(6 / (1 * 27 + 4 * 27))
    by_hand = [np.float32(((r >> 11) * 2.0**-53 * 2 - 1) * bound) for r in raw]
    assert net.features[0].weight.flatten()[:2].tolist() == [float(v) for v in by_hand]
    assert all(not c.bias.detach().any() for c in net.modules() if isinstance(c, nn.Conv3d))
    # uniform within the Glorot bound, with the variance of U(-b, b)
    w = net.features[7].weight.detach()  # conv2_2: 8 -> 8
    b = math.sqrt(6 / (2 * 8 * 27))
    assert float(w.abs().max()) <= b and abs(float(w.std()) - b / math.sqrt(3)) < 0.05 * b
    assert VGG3D.seeded(0, filters=NARROW)[1] == digest and VGG3D.seeded(1, filters=NARROW)[1] != digest
    # PyTorch's global generator is untouched (the modules are made on the meta device)
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    VGG3D.seeded(0, filters=NARROW)
    assert torch.equal(torch.rand(1), expected)


# ---------------------------------------------------------------------- 2D VGG -> 3D
def random_vgg2d_state(filters, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random 2D VGG-19 state dict in torchvision's layout (keys features.0.weight, ...), float64."""
    generator = torch.Generator().manual_seed(seed)
    state, previous = {}, 3
    indices = iter(TORCHVISION_CONV_INDICES)
    for n_convs, width in zip((2, 2, 4, 4, 4), filters):
        for _ in range(n_convs):
            i = next(indices)
            state[f"features.{i}.weight"] = torch.randn(width, previous, 3, 3, generator=generator, dtype=torch.float64) * math.sqrt(2 / (9 * previous))
            state[f"features.{i}.bias"] = torch.randn(width, generator=generator, dtype=torch.float64) * 0.1
            previous = width
    return state


def reference_vgg2d(state, image: torch.Tensor, last: str) -> dict[str, torch.Tensor]:
    """torchvision's VGG-19 features written out with torch.nn.functional: activations up to ``last``."""
    out, x, indices = {}, image, iter(TORCHVISION_CONV_INDICES)
    for block, n_convs in enumerate((2, 2, 4, 4, 4), 1):
        for i in range(1, n_convs + 1):
            k = next(indices)
            x = F.relu(F.conv2d(x, state[f"features.{k}.weight"], state[f"features.{k}.bias"], padding=1))
            out[f"conv{block}_{i}"] = x
            if f"conv{block}_{i}" == last:
                return out
        x = F.max_pool2d(x, 2)
    return out


def constant_along(image: torch.Tensor, axis: int, length: int) -> torch.Tensor:
    """(1, 1, H, W) image -> (1, 1, D, H, W)-like volume repeating it ``length`` times along spatial ``axis``."""
    sizes = list(image.shape[2:])
    sizes.insert(axis, length)
    return image.unsqueeze(2 + axis).expand(1, 1, *sizes).contiguous()


@pytest.mark.parametrize(
    "filters, layers, length, side, dtype, tolerance",
    [
        # the real VGG-19 widths in float32, shallow to mid layers: conv3_4 sees 6 padded slices from each
        # border at 1/4 resolution; float32 sums 3x more terms in another order than the 2D reference
        (VGG3D().filters, ["conv1_1", "conv2_2", "conv3_4"], 56, 8, torch.float32, 1e-5),
        # every depth in float64: conv5_4 needs a long axis to have a clean centre
        (NARROW, ["conv1_2", "conv4_2", "conv5_4"], 288, 16, torch.float64, 1e-12),
    ],
)
def test_mapped_vgg_reproduces_2d_activations_on_constant_volumes(filters, layers, length, side, dtype, tolerance):
    state = {k: v.to(dtype) for k, v in random_vgg2d_state(filters).items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # torchvision's dense layers are ignored
    image = torch.randn(1, 1, side, side, generator=torch.Generator().manual_seed(1), dtype=dtype) * 60
    reference = reference_vgg2d(state, image.expand(1, 3, side, side), layers[-1])  # grey image -> RGB
    for orientation, axis in ORIENTATION_AXES.items():
        with torch.device("meta"):
            net = VGG3D(filters=filters)
        net = net.to_empty(device="cpu").to(dtype)
        net.load_state_dict(map_vgg2d_state_dict(state, orientation, net))
        assert net.features[0].weight.shape[1] == 1 and net.features[0].weight.shape[2 + axis] == 3
        with torch.inference_mode():
            maps = net.activations(constant_along(image, axis, length), layers)
        for name in layers:
            along = maps[name].shape[2 + axis]
            centre = maps[name].select(2 + axis, along // 2)
            scale = float(reference[name].abs().max())
            assert scale > 0
            assert float((centre - reference[name]).abs().max()) <= tolerance * scale, (orientation, name)
        # at the border along the orientation axis the 3D network sees zero padding: not the 2D result
        edge = maps[layers[-1]].select(2 + axis, 0)
        assert float((edge - reference[layers[-1]]).abs().max()) > 100 * tolerance * float(reference[layers[-1]].abs().max())


def test_map_vgg2d_refuses_wrong_layouts_and_shapes():
    net = VGG3D()
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VGG3D(in_channels=3, spatial_dims=2).state_dict().items()}
    state = {k: torch.zeros(shape) for k, shape in shapes.items()}
    assert set(map_vgg2d_state_dict(state, "axial", net)) == set(net.state_dict())
    with pytest.raises(ModelError, match="missing features.34.weight"):
        map_vgg2d_state_dict({k: v for k, v in state.items() if k != "features.34.weight"}, "axial", net, where="w.pth")
    with pytest.raises(ModelError, match="unexpected features.1.weight"):
        map_vgg2d_state_dict({**state, "features.1.weight": torch.zeros(3)}, "axial", net)
    with pytest.raises(ModelError, match=r"features.0.weight has shape \(64, 1, 3, 3\), expected \(64, 3, 3, 3\)"):
        map_vgg2d_state_dict({**state, "features.0.weight": torch.zeros(64, 1, 3, 3)}, "axial", net)
    with pytest.raises(ModelError, match="not a floating-point tensor"):
        map_vgg2d_state_dict({**state, "features.0.bias": torch.zeros(64, dtype=torch.long)}, "axial", net)
    resnet_like = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}
    with pytest.raises(ModelError, match="torchvision's layout"):
        map_vgg2d_state_dict(resnet_like, "axial", net)
    with pytest.raises(ModelError, match="state dict"):
        map_vgg2d_state_dict([1, 2], "axial", net)
    with pytest.raises(ValueError, match="orientation"):
        map_vgg2d_state_dict(state, "oblique", net)


# ---------------------------------------------------------------------- generic inflater
def test_inflate_shipped_vq_encoder_reproduces_2d_encoder_on_real_slice():
    """The bundle's 2D encoder (GroupNorm, LeakyReLU, residual blocks, stride 2) inflated per orientation.

    Circular padding in both copies removes the borders, so GroupNorm's statistics (over the whole map)
    are those of the 2D network and every slice along the orientation axis must equal the 2D output.
    """
    import SimpleITK as sitk

    flair = require_data("lgg", "TCGA_CS_4942_19970222", "flair.nii.gz")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(flair))).astype(np.float64)
    crop = array[10, 96:128, 96:128]
    image = torch.from_numpy((crop - crop.mean()) / crop.std())[None, None]
    encoder = copy.deepcopy(load_bundle("vq-lgg-cpu").model.encoder).double()
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = "circular"
    paths = ["stem", "stages.2", "stages.6", "head"]
    with torch.inference_mode():
        reference = collect_activations(encoder, image.expand(1, 3, 32, 32), paths)  # one modality in all 3 channels
    for orientation, axis in ORIENTATION_AXES.items():
        inflated = inflate(encoder, orientation, channels_to_axis="stem")
        assert not any(isinstance(m, nn.Conv2d) for m in inflated.modules())
        assert inflated.stem.weight.shape[1] == 1 and inflated.stem.weight.shape[2 + axis] == 3
        with torch.inference_mode():
            maps = collect_activations(inflated, constant_along(image, axis, 16), paths)
        for path in paths:
            for j in range(maps[path].shape[2 + axis]):
                error = float((maps[path].select(2 + axis, j) - reference[path]).abs().max())
                assert error <= 1e-12 * float(reference[path].abs().max()), (orientation, path, j)
    assert all(isinstance(m, nn.Conv2d) for m in (encoder.stem, encoder.head[2]))  # the source is left 2D


def test_inflate_swaps_layers_and_refuses_unmappable_ones():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(4, 4, 1),
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.AdaptiveAvgPool2d(1),
    )
    inflated = inflate(net, "sagittal")
    kinds = [type(m).__name__ for m in inflated]
    assert kinds == ["Conv3d", "BatchNorm3d", "ReLU", "MaxPool3d", "Conv3d", "Upsample", "AdaptiveAvgPool3d"]
    assert inflated[0].weight.shape == (4, 1, 3, 3, 3) and inflated[4].weight.shape == (4, 4, 1, 1, 1)
    assert inflated[3].ceil_mode and inflated[5].mode == "trilinear"
    assert tuple(inflated(torch.zeros(1, 1, 5, 6, 7)).shape) == (1, 4, 1, 1, 1)
    no_axis = inflate(net, "axial", channels_to_axis=None)
    assert no_axis[0].weight.shape == (4, 3, 3, 3, 3)
    torch.testing.assert_close(no_axis[0].weight.sum(2), net[0].weight)  # replicated 3 times, divided by 3
    with pytest.raises(ModelError, match="ConvTranspose2d"):
        inflate(nn.Sequential(nn.ConvTranspose2d(1, 1, 2)), "axial")
    with pytest.raises(ModelError, match="square"):
        inflate(nn.Sequential(nn.Conv2d(3, 1, (3, 1))), "axial")
    with pytest.raises(ModelError, match="odd channel count"):
        inflate(nn.Sequential(nn.Conv2d(2, 1, 3)), "axial")
    with pytest.raises(ModelError, match="PixelShuffle|no 3D mapping"):
        inflate(nn.Sequential(nn.Conv2d(3, 1, 3), nn.LPPool2d(2, 2)), "axial")
