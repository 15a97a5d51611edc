"""VQSegNet's ``block`` option: the paper's blocks (``paper``) next to the shipped CPU architecture (``preact``).

Kobayashi et al., Sci Rep 2021, "Implementation details": residual blocks of two [convolution + group
normalization + LeakyReLU] sequences with a residual connection, downsampling blocks of [convolution
stride 2 + group normalization + LeakyReLU], decoder upsampling by interpolation coupled with a
convolution. The shipped bundle ``vq-lgg-cpu`` has no ``block`` key and must compute exactly what it
computed before the option existed: that is checked against the old network written out with
``torch.nn.functional``, on real slices.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from deepradiomics.errors import ModelError  # noqa: E402
from deepradiomics.models import build_network, load_bundle, save_bundle, sha256_file  # noqa: E402
from deepradiomics.nets.inflate import inflate  # noqa: E402
from deepradiomics.nets.vqseg import BLOCKS, DownBlock, PostActBlock, PreActBlock, UpBlock, VQSegNet  # noqa: E402
from deepradiomics.training.data import SliceSet, load_manifest_slices  # noqa: E402
from deepradiomics.training.loop import architecture, fit, load_config  # noqa: E402
from tests.conftest import require_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["Image_t1", "Image", "Image_t1ce"]
#: model.pt of the shipped CPU bundle (config.yaml records the same; load_bundle checks it)
VQ_LGG_CPU_SHA256 = "71f09bd43d9373d2f1e439235897bfe720d99159673427b27d4c005cbad4b772"
TINY = {
    "type": "vqseg",
    "in_channels": 3,
    "num_classes": 2,
    "filters": [8, 8, 16, 16],
    "decoder_filters": [16, 16, 8, 8],
    "input_size": 32,
    "num_embeddings": 16,
    "embedding_dim": 8,
}
NO_AUGMENT = {"flip": False, "max_rotation": 0.0, "intensity_shift": 0.0, "intensity_scale": [1.0, 1.0]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(block: str | None, seed: int = 0) -> VQSegNet:
    torch.manual_seed(seed)
    return VQSegNet.from_config(TINY if block is None else {**TINY, "block": block})


@pytest.fixture(scope="module")
def one_case_slices() -> SliceSet:
    """The 20 slices of one real LGG case at 32 x 32 (6 hold tumour): one training batch."""
    manifest = require_data("lgg", "cases.csv")
    return load_manifest_slices(manifest, COLUMNS, "Mask", 32, {"nonzero": 1}, max_cases=1, progress=False)


# ------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("block", BLOCKS)
def test_both_blocks_build_from_config_with_the_right_shapes(block):
    net = _tiny(block).eval()
    assert net.block == block
    x = torch.randn(3, 3, 32, 32)
    out = net(x)
    assert out["logits"].shape == (3, 2, 32, 32) and out["indices"].shape == (3, 8, 8)
    assert net.encode(x).shape == (3, 8, 8, 8) and net.segment(x).shape == (3, 32, 32)
    kinds = {type(m) for m in net.modules()}
    if block == "paper":
        assert {PostActBlock, DownBlock, UpBlock} <= kinds and PreActBlock not in kinds
        assert not any(isinstance(m, nn.Upsample) for m in net.decoder.stages)  # every upsampling has its conv
    else:
        assert PreActBlock in kinds and not {PostActBlock, DownBlock, UpBlock} & kinds


def test_missing_block_is_preact_and_unknown_block_is_an_error():
    assert _tiny(None).block == "preact"
    default, explicit = _tiny(None).state_dict(), _tiny("preact").state_dict()
    assert default.keys() == explicit.keys() and all(torch.equal(v, explicit[k]) for k, v in default.items())
    with pytest.raises(ModelError, match="block 'papr' is not one of preact, paper"):
        build_network({**TINY, "block": "papr"})


def test_paper_blocks_compute_what_the_paper_describes():
    """Each paper block against its definition written out with torch.nn.functional (8 groups, slope 0.2)."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 12)
    block = PostActBlock(8, 16).eval()
    h = F.leaky_relu(F.group_norm(block.conv1(x), 8, block.norm1.weight, block.norm1.bias), 0.2)
    h = F.group_norm(block.conv2(h), 8, block.norm2.weight, block.norm2.bias) + block.proj(x)  # skip, then ...
    torch.testing.assert_close(block(x), F.leaky_relu(h, 0.2), rtol=0, atol=0)  # ... the LeakyReLU
    same = PostActBlock(8, 8)
    assert isinstance(same.proj, nn.Identity)
    down = DownBlock(8)
    assert (down.conv.kernel_size, down.conv.stride, down.conv.padding) == ((3, 3), (2, 2), (1, 1))  # paper: 3, 2, 1
    expected = F.leaky_relu(
        F.group_norm(F.conv2d(x, down.conv.weight, down.conv.bias, stride=2, padding=1), 8, down.norm.weight, down.norm.bias), 0.2
    )
    torch.testing.assert_close(down(x), expected, rtol=0, atol=0)
    up = UpBlock(8)
    expected = F.conv2d(
        F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), up.conv.weight, up.conv.bias, padding=1
    )
    torch.testing.assert_close(up(x), expected, rtol=0, atol=0)
    assert up(x).shape == (2, 8, 24, 24)


def test_paper_config_builds_the_paper_network_at_the_paper_sizes():
    """train_paper.yaml -> the paper's layer sequence and feature-map sizes (on the meta device: no compute)."""
    arch = architecture(load_config(REPO / "params" / "train_paper.yaml"))
    assert (arch["block"], arch["init"], arch["input_size"]) == ("paper", "he", 256)
    with torch.device("meta"):
        net = build_network(arch)
    encoder = [type(m) for m in net.encoder.stages]
    # "Each residual block is followed by a downsampling block ..., except for the bottom of the network"
    assert encoder == [PostActBlock, DownBlock] * 5 + [PostActBlock]
    assert [type(m) for m in net.decoder.stages] == [PostActBlock] + [UpBlock, PostActBlock] * 5
    sizes: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
        for m in net.encoder.stages
        if isinstance(m, PostActBlock)
    ]
    z_e = net.encode(torch.empty(1, 3, 256, 256, device="meta"))
    assert z_e.shape == (1, 64, 8, 8)  # paper: z_e has a size of 64 x 8 x 8
    assert sizes == [(32, 256, 256), (64, 128, 128), (128, 64, 64), (128, 32, 32), (128, 16, 16), (128, 8, 8)]
    for hook in hooks:
        hook.remove()
    sizes.clear()
    for m in net.decoder.stages:
        if isinstance(m, PostActBlock):
            m.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    logits = net.decode(net.quantizer.embed(net.quantizer.quantize(z_e)))
    assert logits.shape == (1, 2, 256, 256)
    assert sizes == [(128, 8, 8), (128, 16, 16), (128, 32, 32), (128, 64, 64), (64, 128, 128), (32, 256, 256)]


def _paper_parameter_count(c_in: int, filters: list[int], d: int, decoder_filters: list[int], classes: int) -> int:
    """Parameters of the paper network counted by hand from its layer list (the EMA codebook is a buffer, not one)."""

    def conv(a: int, b: int, size: int = 3) -> int:
        return a * b * size * size + b

    def residual(a: int, b: int) -> int:  # conv-GN, conv-GN, 1x1 projection if the channels change
        return conv(a, b) + 2 * b + conv(b, b) + 2 * b + (conv(a, b, 1) if a != b else 0)

    def path(first: int, stages: list[int], resample: int) -> int:  # stem conv + GN, stages, resampling convs
        total, prev = conv(first, stages[0]) + 2 * stages[0], stages[0]
        for i, f in enumerate(stages):
            if i > 0:
                total += conv(prev, prev) + resample * prev
            total += residual(prev, f)
            prev = f
        return total

    encoder = path(c_in, filters, 2) + conv(filters[-1], d, 1)  # DownBlock: conv + GN
    decoder = path(d, decoder_filters, 0) + conv(decoder_filters[-1], classes, 1)  # UpBlock: conv only
    return encoder + decoder


def test_paper_parameter_count_matches_the_layer_list():
    arch = architecture(load_config(REPO / "params" / "train_paper.yaml"))
    with torch.device("meta"):
        lgg = build_network(arch)  # 3 LGG modalities, 2 classes
        brats = build_network({**arch, "in_channels": 4, "num_classes": 4})  # the paper's 4 sequences, ET/ED/NET + background
    assert sum(p.numel() for p in lgg.parameters()) == _paper_parameter_count(3, arch["filters"], 64, arch["decoder_filters"], 2)
    assert sum(p.numel() for p in brats.parameters()) == _paper_parameter_count(
        4, arch["filters"], 64, arch["decoder_filters"], 4
    )


@pytest.mark.parametrize("block", BLOCKS)
def test_descriptor_api_and_geometry_work_for_both_blocks(block):
    net = _tiny(block).eval()
    x = torch.randn(4, 3, 32, 32)
    x[2] = 0.0
    layers = net.feature_layers()
    assert layers == ["stem", "stage1", "stage2", "stage3", "stage4", "latent", "quantized"]
    for layer in layers:
        geometry = net.layer_geometry(layer)
        response = net.features(x, layer)
        assert response.shape[-1] == 32 // geometry["stride"], (layer, response.shape, geometry)
    # the receptive fields depend on the conv geometry only, which both blocks share
    assert [net.layer_geometry(name)["receptive_field"] for name in layers] == [3, 7, 17, 37, 53, 53, 53]
    torch.testing.assert_close(net.features(x, "latent"), net.encode(x), rtol=0, atol=0)
    assert torch.equal(net.features(x, "quantized"), net.quantizer.embed(net.codeword_indices(x)))
    slow = torch.stack([net.codeword_indices(x[i : i + 1])[0] for i in range(4)])
    assert torch.equal(net.volume_codeword_indices(x, batch_size=3), slow)
    assert torch.equal(net.background_indices(), slow[2])
    assert net.segment(x, logits=True).shape == (4, 2, 32, 32)
    frozen = net.freeze("encoder")
    assert all(not p.requires_grad for n, p in net.named_parameters() if n.startswith("encoder."))
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith("decoder."))
    assert ("encoder.stem_norm.weight" in frozen) is (block == "paper")


@pytest.mark.parametrize("block", BLOCKS)
def test_encoder_of_both_blocks_inflates_to_3d(block):
    """The cnn plugin inflates a bundle's encoder with channels_to_axis='stem': a bare Conv2d in both blocks."""
    encoder = _tiny(block).encoder.eval()
    inflated = inflate(encoder, "axial", channels_to_axis="stem")
    assert not any(isinstance(m, nn.Conv2d) for m in inflated.modules())
    with torch.inference_mode():
        assert inflated(torch.randn(1, 1, 3, 32, 32)).shape == (1, 8, 1, 8, 8)


# ------------------------------------------------------------------------------------ bundles and training


@pytest.mark.parametrize("block", BLOCKS)
def test_bundle_round_trip_records_the_block(block, tmp_path):
    net = _tiny(block).eval()
    config = {
        "name": f"tiny-{block}",
        "architecture": {**TINY, "block": block},
        "modalities": [{"name": n, "column": n} for n in ("t1", "Image", "t1ce")],
    }
    folder = save_bundle(net, config, tmp_path / "b", "# tiny\n{sha256}\n")
    bundle = load_bundle(folder)  # sha256 checked, torch.load(weights_only=True)
    assert bundle.sha256 == sha256_file(folder / "model.pt") == bundle.config["model_sha256"]
    assert bundle.config["architecture"]["block"] == block and bundle.model.block == block
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(bundle.model.segment(x, logits=True), net.segment(x, logits=True))
    assert torch.equal(bundle.model.codeword_indices(x), net.codeword_indices(x))
    other = "preact" if block == "paper" else "paper"
    text = (folder / "config.yaml").read_text().replace(f"block: {block}", f"block: {other}")
    (folder / "config.yaml").write_text(text)
    with pytest.raises(ModelError, match="does not fit the architecture"):
        load_bundle(folder)  # the recorded block is what builds the network


@pytest.mark.parametrize("block", BLOCKS)
def test_one_training_step_reaches_every_parameter_and_training_lowers_the_loss(block, one_case_slices):
    data = one_case_slices
    assert len(data) == 20 and int(data.labels.sum()) > 0
    cfg = {"batch_size": 20, "lr": 1e-3, "seed": 0, "augment": NO_AUGMENT}  # batch = the whole case: 1 step per epoch
    net = _tiny(block).train()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    result = fit(net, data, None, {**cfg, "epochs": 1}, progress=False)
    assert math.isfinite(result["history"][0]["loss"])
    # one Adam step moves a parameter iff its gradient is non-zero somewhere: every one got a gradient
    unchanged = [name for name, p in net.named_parameters() if torch.equal(p.detach(), before[name])]
    assert unchanged == [] and len(before) == (92 if block == "paper" else 84)
    losses = [h["loss"] for h in fit(_tiny(block), data, None, {**cfg, "epochs": 5}, progress=False)["history"]]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_default_bundle_is_bit_identical_to_the_old_architecture(lgg_case):
    """vq-lgg-cpu (no ``block`` key) against the pre-option network written out from its weights, on a real case."""
    bundle = load_bundle("vq-lgg-cpu")
    assert bundle.sha256 == VQ_LGG_CPU_SHA256 and "block" not in bundle.config["architecture"]
    net = bundle.model.eval()
    assert net.block == "preact"
    import SimpleITK as sitk

    arrays = [sitk.GetArrayFromImage(sitk.ReadImage(str(lgg_case[name]))).astype("float32") for name in ("t1", "flair", "t1ce")]
    x = bundle.preprocessing.slices(arrays)[::2].contiguous()  # 10 of the case's 20 slices, tumour and background
    state = {k: v.float() for k, v in net.state_dict().items()}
    with torch.inference_mode():
        z_e = net.encode(x)
        reference_stages, reference = _old_encoder(state, x)
        assert torch.equal(z_e, reference)
        for i, expected in enumerate(reference_stages):
            assert torch.equal(net.features(x, f"stage{i + 1}"), expected), i
        z_q = net.quantizer.embed(net.quantizer.quantize(z_e))
        assert torch.equal(net.decode(z_q), _old_decoder(state, z_q))
        assert torch.equal(net.segment(x, logits=True), _old_decoder(state, z_q))


# ------------------------------------------------------------------------------------ the old network, functionally


def _gn(state: dict, prefix: str, h: torch.Tensor) -> torch.Tensor:
    return F.group_norm(h, math.gcd(h.shape[1], 8), state[f"{prefix}.weight"], state[f"{prefix}.bias"], 1e-5)


def _conv(state: dict, prefix: str, h: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = state[f"{prefix}.weight"]
    return F.conv2d(h, weight, state[f"{prefix}.bias"], stride=stride, padding=weight.shape[-1] // 2)


def _old_block(state: dict, prefix: str, h: torch.Tensor) -> torch.Tensor:
    """The pre-activation block as it was: (GN -> LeakyReLU(0.2) -> conv3x3) x 2 + identity or 1x1 projection."""
    r = _conv(state, f"{prefix}.conv1", F.leaky_relu(_gn(state, f"{prefix}.norm1", h), 0.2))
    r = _conv(state, f"{prefix}.conv2", F.leaky_relu(_gn(state, f"{prefix}.norm2", r), 0.2))
    return r + (_conv(state, f"{prefix}.proj", h) if f"{prefix}.proj.weight" in state else h)


def _stage_indices(state: dict, part: str) -> range:
    return range(1 + max(int(k.split(".")[2]) for k in state if k.startswith(f"{part}.stages.")))


def _old_encoder(state: dict, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    h, stages = _conv(state, "encoder.stem", x), []
    for i in _stage_indices(state, "encoder"):
        prefix = f"encoder.stages.{i}"
        if f"{prefix}.conv1.weight" in state:
            h = _old_block(state, prefix, h)
            stages.append(h)
        else:  # the bare stride-2 downsampling convolution
            h = _conv(state, prefix, h, stride=2)
    return stages, _conv(state, "encoder.head.2", F.leaky_relu(_gn(state, "encoder.head.0", h), 0.2))


def _old_decoder(state: dict, z_q: torch.Tensor) -> torch.Tensor:
    h = _conv(state, "decoder.stem", z_q)
    for i in _stage_indices(state, "decoder"):
        prefix = f"decoder.stages.{i}"
        if f"{prefix}.conv1.weight" in state:
            h = _old_block(state, prefix, h)
        else:  # the parameter-free bilinear upsampling
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
    return _conv(state, "decoder.head.2", F.leaky_relu(_gn(state, "decoder.head.0", h), 0.2))
