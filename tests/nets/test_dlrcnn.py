"""DLRCNN: shapes, geometry, fully convolutional equivalence with the 33x33 patch network, segmentation, bundles."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from deepradiomics.models import load_bundle, save_bundle  # noqa: E402
from deepradiomics.nets.dlrcnn import DLRCNN, LAYER_NAMES, PAD, PATCH_SIZE  # noqa: E402

TINY = dict(in_channels=2, num_classes=3, filters=(4, 4, 6, 6, 8, 8), fc_units=12)


def _net(seed: int = 0, **kwargs) -> DLRCNN:
    torch.manual_seed(seed)
    net = DLRCNN(**{**TINY, **kwargs}).eval()
    with torch.no_grad():  # non-trivial normalisation and biases, so that zero padding is not special by accident
        net.input_mean.copy_(torch.tensor([0.3, -0.2]))
        net.input_std.copy_(torch.tensor([1.5, 0.7]))
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.bias.normal_(0, 0.1)
    return net


def _patch(x: torch.Tensor, row: int, col: int, size: int = PATCH_SIZE) -> torch.Tensor:
    """The size x size window of x (1, C, H, W) centred on (row, col), zero outside the slice."""
    margin = size + 64  # wide enough for the windows of positions beyond the slice's edge
    padded = F.pad(x, (margin, margin, margin, margin))
    top, left = row - size // 2 + margin, col - size // 2 + margin
    assert top >= 0 and left >= 0
    return padded[:, :, top : top + size, left : left + size]


def test_patch_shapes_and_parameter_count():
    net = _net()
    assert net(torch.randn(5, 2, 33, 33)).shape == (5, 3, 1, 1)
    paper_cpu = DLRCNN(in_channels=2, num_classes=2, filters=(32, 32, 32, 64, 64, 128), fc_units=512)
    convs = 2 * 32 * 9 + 32 + 2 * (32 * 32 * 9 + 32) + 32 * 64 * 9 + 64 + 64 * 64 * 9 + 64 + 64 * 128 * 9 + 128
    fcs = 128 * 9 * 512 + 512 + 512 * 512 + 512 + 512 * 2 + 2
    assert sum(p.numel() for p in paper_cpu.parameters()) == convs + fcs
    with pytest.raises(ValueError, match="6 convolutional layers"):
        DLRCNN(filters=(8, 8, 8))


def test_geometry_table():
    net = _net()
    expected = {
        "conv1": (1, -15, 3), "conv3": (1, -13, 7), "pool1": (2, -12, 9), "conv6": (2, -6, 21),
        "pool2": (4, -4, 25), "fc1": (4, 0, 33), "logits": (4, 0, 33),
    }
    for layer, (stride, offset, field) in expected.items():
        assert net.layer_geometry(layer) == {"stride": stride, "offset": offset, "receptive_field": field, "pad": PAD}
    assert net.feature_layers() == list(LAYER_NAMES)
    with pytest.raises(ValueError, match="unknown layer"):
        net.layer_geometry("conv7")


def test_whole_slice_output_equals_the_patch_network_at_every_position():
    net = _net()
    torch.manual_seed(1)
    x = torch.randn(1, 2, 29, 23)
    dense = net.features(x, "logits")
    assert dense.shape == (1, 3, 8, 6)  # ceil(29 / 4), ceil(23 / 4)
    positions = [(i, j) for i in range(dense.shape[2]) for j in range(dense.shape[3])]
    patches = torch.cat([_patch(x, 4 * i, 4 * j) for i, j in positions])  # every 33x33 patch, one batch
    scores = net(patches)[:, :, 0, 0]
    for (i, j), score in zip(positions, scores):
        torch.testing.assert_close(dense[0, :, i, j], score, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["conv1", "conv3", "pool1", "conv6", "pool2", "fc2"])
def test_every_layer_position_maps_to_the_documented_window(layer):
    net = _net()
    torch.manual_seed(2)
    x = torch.randn(1, 2, 26, 30)
    geometry = net.layer_geometry(layer)
    maps = net.features(x, layer)
    field = geometry["receptive_field"]
    for i in (0, 1, maps.shape[2] // 2, maps.shape[2] - 1):
        for j in (0, maps.shape[3] - 1):
            centre = (geometry["offset"] + geometry["stride"] * i, geometry["offset"] + geometry["stride"] * j)
            window = _patch(x, *centre, size=field)
            alone = net._run(window, layer)
            assert alone.shape[-2:] == (1, 1)
            torch.testing.assert_close(maps[0, :, i, j], alone[0, :, 0, 0], rtol=1e-4, atol=1e-5)


def test_cropped_segmentation_is_exact_and_upsampling_keeps_grid_values():
    net = _net()
    torch.manual_seed(3)
    x = torch.zeros(2, 2, 70, 66)
    x[0, :, 30:41, 20:35] = torch.randn(2, 11, 15)
    x[1, :, 5:9, 50:60] = torch.randn(2, 4, 10)
    full = net.features(x, "logits")  # every window computed
    cropped = net.coarse_logits(x)  # only windows meeting the non-zero part
    torch.testing.assert_close(cropped, full, rtol=1e-4, atol=1e-5)
    logits = net.segment(x, logits=True)
    assert logits.shape == (2, 3, 70, 66)
    torch.testing.assert_close(logits[:, :, ::4, ::4], full, rtol=1e-4, atol=1e-4)  # pixel (4i, 4j) = output (i, j)
    assert torch.equal(net.segment(x), logits.argmax(1))
    empty = torch.zeros(1, 2, 40, 40)
    torch.testing.assert_close(net.coarse_logits(empty), net.features(empty, "logits"), rtol=1e-4, atol=1e-5)


def test_input_normalisation_and_freeze():
    net = DLRCNN(**TINY)
    patches = torch.stack([torch.full((33, 33), 2.0), torch.full((33, 33), -1.0)])[None].repeat(4, 1, 1, 1)
    patches[:2] += 1.0
    net.fit_input_normalization(patches)
    torch.testing.assert_close(net.input_mean, torch.tensor([2.5, -0.5]))
    torch.testing.assert_close(net.input_std, torch.tensor([0.5, 0.5]), rtol=0.05, atol=0)
    frozen = net.freeze("encoder")
    assert {n for n in frozen if n.startswith("conv")} == {f"conv{i}.{k}" for i in range(1, 7) for k in ("weight", "bias")}
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith("fc") or n.startswith("logits"))
    with pytest.raises(ValueError, match="encoder"):
        net.freeze("decoder")


def test_dlrcnn_bundle_round_trip(tmp_path):
    net = _net()
    arch = {"type": "dlrcnn", **TINY, "filters": list(TINY["filters"]), "dropout": 0.1, "init": "he"}
    config = {
        "name": "tiny-dlr",
        "format_version": 2,
        "architecture": arch,
        "modalities": [{"name": "Image", "column": "Image"}, {"name": "t1ce", "column": "Image_t1ce"}],
        "preprocessing": {"orientation": "axial", "normalization": "zscore-foreground", "input_size": None, "channels": ["Image", "t1ce"]},
    }
    save_bundle(net, config, tmp_path / "b", "# tiny\n{sha256}\n")
    bundle = load_bundle(tmp_path / "b")
    assert bundle.architecture == "dlrcnn" and bundle.input_size is None
    x = torch.randn(1, 2, 40, 36)
    torch.testing.assert_close(bundle.model.segment(x, logits=True), net.segment(x, logits=True))
    torch.testing.assert_close(bundle.model.input_std, net.input_std)


def test_class_prior_correction_shifts_only_the_segmentation():
    net = _net(num_classes=2)
    torch.manual_seed(4)
    x = torch.randn(1, 2, 36, 40)
    raw = net.features(x, "logits")
    net.set_class_priors(torch.tensor([0.6, 0.4]), torch.tensor([0.97, 0.03]))
    shift = torch.tensor([0.97 / 0.6, 0.03 / 0.4]).log()
    torch.testing.assert_close(net.log_prior_shift, shift)
    torch.testing.assert_close(net.features(x, "logits"), raw)  # descriptors and logits untouched
    torch.testing.assert_close(net.coarse_logits(x), raw + shift.view(1, -1, 1, 1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.background_logits(), net(torch.zeros(1, 2, 33, 33))[0, :, 0, 0] + shift)
    # the decision is the Bayes rule for the data's priors: tumour where p_train(tumour) > 1 / (1 + exp(shift_1 - shift_0))
    p_train = raw.softmax(1)[0, 1]
    corrected = (raw + shift.view(1, -1, 1, 1)).argmax(1)[0]
    threshold = 1 / (1 + torch.exp(shift[1] - shift[0]))
    assert torch.equal(corrected == 1, p_train > threshold)
    with pytest.raises(ValueError, match="2 entries"):
        net.set_class_priors(torch.ones(3), torch.ones(3))
