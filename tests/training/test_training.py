"""Training: losses, augmentation, samplers, one loop for the VQ and DLR networks on real LGG slices,
determinism, resume, best-epoch selection, background codewords, fine-tuning, configs, CLI, model cards."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from deepradiomics.errors import ParamsError  # noqa: E402
from deepradiomics.models import load_bundle  # noqa: E402
from deepradiomics.nets.dlrcnn import DLRCNN  # noqa: E402
from deepradiomics.nets.preprocess import Preprocessing  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402
from deepradiomics.training import loop  # noqa: E402
from deepradiomics.training.augment import augment_batch  # noqa: E402
from deepradiomics.training.background import background_codewords  # noqa: E402
from deepradiomics.training.data import load_manifest_slices, map_labels, split_cases  # noqa: E402
from deepradiomics.training.loop import amp_settings, architecture, fit, load_config, preprocessing_for, train_from_config  # noqa: E402
from deepradiomics.training.losses import focal_loss, hard_dice, soft_dice_loss  # noqa: E402
from deepradiomics.training.samplers import PatchSampler  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MANIFEST = DATA / "lgg" / "cases.csv"
COLUMNS = ["Image_t1", "Image", "Image_t1ce"]
TINY = dict(
    in_channels=3,
    num_classes=2,
    filters=(8, 8, 16, 16),
    decoder_filters=(16, 16, 8, 8),
    input_size=32,
    num_embeddings=16,
    embedding_dim=8,
)


def _need_lgg() -> Path:
    if not MANIFEST.exists():
        pytest.skip(f"real data not found at {MANIFEST} (../shared/data beside the repository)")
    return MANIFEST


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as training runs here: 1 thread per process


@pytest.fixture(scope="module")
def lgg_slices():
    return load_manifest_slices(_need_lgg(), COLUMNS, "Mask", 32, {"nonzero": 1}, max_cases=3, progress=False)


@pytest.fixture(scope="module")
def lgg_native():
    """Two real cases at the native 256 x 256, FLAIR + T1-Gd, through the Preprocessing a DLR bundle records."""
    spec = Preprocessing(channels=("Image", "t1ce"), input_size=None)
    return load_manifest_slices(
        _need_lgg(), ["Image", "Image_t1ce"], "Mask", None, {"nonzero": 1}, max_cases=2, progress=False, preprocessing=spec
    )


def _absolute_paths(text: str) -> list[str]:
    """Absolute POSIX paths in ``text`` (a token starting with '/' followed by at least two path components)."""
    return re.findall(r"(?<![\w.~-])/(?:[\w.-]+/)+[\w.-]*", text)


def test_soft_dice_and_focal_losses_against_hand_values():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    perfect = torch.where(target[:, None] == torch.arange(2)[None, :, None, None], 20.0, -20.0)
    assert float(soft_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(focal_loss(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.zeros(1, 2, 4, 4)  # p = 0.5 everywhere
    # Dice of class 1: (2 * 0.5 * 8 + 1) / (0.5 * 16 + 8 + 1) = 9 / 17
    assert float(soft_dice_loss(uniform, target)) == pytest.approx(1 - 9 / 17, rel=1e-6)
    # focal: (1 - 0.5)^2 * log 2
    assert float(focal_loss(uniform, target)) == pytest.approx(0.25 * np.log(2), rel=1e-6)
    assert hard_dice(target, target, 2) == [1.0]
    assert hard_dice(torch.zeros_like(target), target, 2) == [0.0]


def test_label_mapping_and_case_split():
    mask = np.array([0, 1, 2, 3, 4])
    assert map_labels(mask, {"nonzero": 1}).tolist() == [0, 1, 1, 1, 1]
    assert map_labels(mask, {1: 1, 2: 2, 3: 3}).tolist() == [0, 1, 2, 3, 0]
    train, val = split_cases(63, 0.15, seed=0)
    assert len(val) == 9 and not set(train) & set(val) and sorted(train + val) == list(range(63))
    assert split_cases(63, 0.15, seed=0) == (train, val)


def test_augmentation_is_seeded_and_keeps_labels_and_background():
    x = torch.zeros(4, 2, 32, 32)
    x[:, :, 8:24, 8:24] = torch.randn(4, 2, 16, 16) + 3
    y = (x[:, 0] > 3).long()
    a = augment_batch(x, y, torch.Generator().manual_seed(1))
    b = augment_batch(x, y, torch.Generator().manual_seed(1))
    c = augment_batch(x, y, torch.Generator().manual_seed(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert set(a[1].unique().tolist()) <= {0, 1}
    assert float(a[0][:, :, :4, :4].abs().max()) == 0.0  # background corner stays exactly 0
    flip_only = augment_batch(
        x, y, torch.Generator().manual_seed(0), max_rotation=0.0, intensity_shift=0.0, intensity_scale=(1.0, 1.0)
    )
    for i in range(4):
        assert torch.equal(flip_only[0][i], x[i]) or torch.equal(flip_only[0][i], x[i].flip(-1))


def test_manifest_slices_are_preloaded_by_case(lgg_slices):
    assert lgg_slices.images.shape[1:] == (3, 32, 32) and lgg_slices.labels.shape[1:] == (32, 32)
    assert len(lgg_slices.case_ids) == 3 and lgg_slices.case_index.unique().tolist() == [0, 1, 2]
    assert int(lgg_slices.labels.max()) == 1 and int(lgg_slices.labels.sum()) > 0
    part = lgg_slices.subset([1])
    assert set(part.case_index.tolist()) == {1}


def test_tiny_network_loss_falls_on_real_slices(lgg_slices):
    tumour = lgg_slices.subset([0, 1, 2])
    torch.manual_seed(0)
    net = VQSegNet(**TINY)
    result = fit(net, tumour, None, {"epochs": 6, "batch_size": 8, "lr": 2e-3, "seed": 0}, progress=False)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] - 0.1 and losses[-1] == pytest.approx(min(losses), abs=0.02), losses


def test_training_is_deterministic_and_resumes_exactly(lgg_slices, tmp_path):
    cfg = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "seed": 3}

    def run(out_dir, epochs):
        torch.manual_seed(3)
        net = VQSegNet(**TINY)
        fit(net, lgg_slices.subset([0, 1]), None, {**cfg, "epochs": epochs}, out_dir=out_dir, progress=False)
        return net.state_dict()

    straight = run(tmp_path / "a", 2)
    assert all(torch.equal(v, run(tmp_path / "b", 2)[k]) for k, v in straight.items())
    run(tmp_path / "c", 1)  # interrupted after one epoch ...
    resumed = run(tmp_path / "c", 2)  # ... and resumed from checkpoint.pt
    assert all(torch.equal(v, resumed[k]) for k, v in straight.items())


def test_train_command_writes_a_loadable_bundle(tmp_path):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    _need_lgg()
    config = yaml.safe_load((REPO / "params" / "train_cpu.yaml").read_text())
    config["data"]["manifest"] = str(MANIFEST)
    config["data"]["max_cases"] = 4
    config["data"]["val_fraction"] = 0.25
    config["model"].update(input_size=32, filters=[8, 8, 8, 8], decoder_filters=[8, 8, 8, 8], num_embeddings=16, embedding_dim=8)
    config["train"].update(epochs=1, batch_size=32)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["train", str(path), "-o", str(tmp_path / "bundle"), "--quiet"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.num_embeddings == 16 and bundle.modalities == ["t1", "Image", "t1ce"]
    assert bundle.config["format_version"] == 2 and bundle.preprocessing.to_config() == bundle.config["preprocessing"]
    assert bundle.config["preprocessing"] == {"orientation": "axial", "normalization": "zscore-foreground", "input_size": 32, "channels": ["t1", "Image", "t1ce"]}
    card = (tmp_path / "bundle" / "card.md").read_text()
    assert bundle.sha256 in card and "Validation Dice" in card and "CC BY-NC-SA 4.0" in card
    metrics = bundle.config["metrics"]
    assert len(metrics["validation_cases"]) == 1 and metrics["training_cases"] == 3
    assert metrics["best_epoch"] == metrics["last_epoch"] == 1 and metrics["validation_dice_best"] == metrics["validation_dice_last"]
    assert f"best {metrics['validation_dice_best']:.4f} at epoch 1" in card and "3 patients" in card
    pairs = bundle.config["background_codewords"]  # these cases have few all-zero 32 x 32-pixel blocks: may be empty
    assert isinstance(pairs, list) and all(0 <= c < 16 and n > 0 for c, n in pairs)
    config_text = (tmp_path / "bundle" / "config.yaml").read_text()
    assert _absolute_paths(card) == [] and _absolute_paths(config_text) == [], (_absolute_paths(card), _absolute_paths(config_text))
    assert "../../shared/data/lgg/cases.csv" not in card or "relative to its folder" in card
    help_text = CliRunner().invoke(main, ["train", "--help"]).output
    assert "BUNDLE_DIR" in help_text or "-o" in help_text


def test_config_errors_name_the_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("data: {manifest: x.csv, modalities: [{column: Image, name: Image}]}\ntrain: {epoch: 3}\n")
    with pytest.raises(ParamsError, match="unknown key 'epoch'.*Did you mean 'epochs'"):
        load_config(cfg)
    cfg.write_text("data: {manifest: x.csv}\n")
    with pytest.raises(ParamsError, match="modalities"):
        load_config(cfg)
    default = load_config(REPO / "params" / "train_cpu.yaml")
    assert Path(default["data"]["manifest"]) == (REPO.parent / "shared" / "data" / "lgg" / "cases.csv").resolve()


# ---------------------------------------------------------------------------------------------- samplers


def test_patch_sampler_centres_40_percent_of_patches_on_tumour(lgg_native):
    data = lgg_native
    natural = float((data.labels > 0).float().mean())
    sampler = PatchSampler(data, batch_size=250, size=33, tumour_fraction=0.4, per_epoch=1000, augment={"flip": False, "max_rotation": 0.0, "intensity_shift": 0.0, "intensity_scale": [1.0, 1.0]})
    labels = torch.cat([y for _, y in sampler.batches(torch.Generator().manual_seed(0))])
    assert natural < 0.05 and labels.shape == (1000,)
    assert float(labels.float().mean()) == pytest.approx(0.4, abs=0.01)  # vs ~3% of pixels in the data
    centres = sampler.centres(400, torch.Generator().manual_seed(1))
    x, y = sampler.patches(centres)
    n, rows, cols = centres // (256 * 256), (centres // 256) % 256, centres % 256
    assert torch.equal(x[:, :, 16, 16], data.images[n, :, rows, cols])  # the label is the centre pixel's
    assert torch.equal(y, data.labels[n, rows, cols].long()) and int(y.sum()) == 160
    background = centres[y == 0]
    assert bool(sampler.near_brain.view(-1)[background].all())
    sampled, natural = sampler.class_priors(2)
    assert sampled.tolist() == pytest.approx([0.6, 0.4]) and float(natural.sum()) == pytest.approx(1.0)
    tumour_pixels = int((data.labels > 0).sum())
    assert float(natural[1]) == pytest.approx(tumour_pixels / (tumour_pixels + int(sampler.near_brain.sum())))
    corner, _ = sampler.patches(torch.tensor([0]))  # centred on pixel (0, 0) of slice 0: outside reads 0
    assert float(corner[0, :, :16].abs().max()) == 0.0 and float(corner[0, :, :, :16].abs().max()) == 0.0


def test_patch_sampler_is_seeded():
    data = loop.SliceSet(torch.randn(3, 1, 40, 40), (torch.rand(3, 40, 40) > 0.9).to(torch.uint8), torch.zeros(3, dtype=torch.long), ["a"])
    a = [y for _, y in PatchSampler(data, 16, per_epoch=64).batches(torch.Generator().manual_seed(5))]
    b = [y for _, y in PatchSampler(data, 16, per_epoch=64).batches(torch.Generator().manual_seed(5))]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    with pytest.raises(ValueError, match="odd"):
        PatchSampler(data, 16, size=32)


def test_dlr_network_learns_through_the_same_loop(lgg_native):
    torch.manual_seed(0)
    net = DLRCNN(in_channels=2, num_classes=2, filters=(8, 8, 8, 16, 16, 16), fc_units=32)
    cfg = {"epochs": 3, "batch_size": 64, "lr": 0.02, "seed": 0, "patches": {"per_epoch": 768}, "augment": {"max_rotation": 0.0}}
    result = fit(net, lgg_native, None, cfg, progress=False)
    assert result["sampler"] == "patches" and result["loss"] == "cross_entropy" and result["optimizer"] == "sgd"
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0], losses
    assert float(net.input_std.min()) > 0.1 and not torch.equal(net.input_std, torch.ones(2))  # fitted on patches
    assert float(net.log_prior_shift[1]) < -1.0 < 0 < float(net.log_prior_shift[0])  # tumour is rarer than sampled
    with pytest.raises(ParamsError, match="sampler 'pixels'"):
        fit(net, lgg_native, None, {**cfg, "sampler": "pixels"}, progress=False)


# ------------------------------------------------------------------------------------ best-epoch selection


def test_best_validation_epoch_is_kept_and_survives_resume(lgg_slices, tmp_path, monkeypatch):
    scripted = {1: 0.2, 2: 0.6, 3: 0.4}
    calls = []

    def fake_evaluate(net, data, device, chunk=32):
        calls.append(len(calls) + 1)
        epoch = 1 + (len(calls) - 1) % 3
        return {"dice_mean": scripted[epoch], "dice_per_case": {"x": scripted[epoch]}}

    monkeypatch.setattr(loop, "evaluate", fake_evaluate)
    cfg = {"epochs": 3, "batch_size": 16, "lr": 1e-3, "seed": 4}
    train, val = lgg_slices.subset([0, 1]), lgg_slices.subset([2])

    def run(epochs, out_dir=None, keep="best", validation=val):
        torch.manual_seed(4)
        net = VQSegNet(**TINY)
        result = fit(net, train, validation, {**cfg, "epochs": epochs, "keep": keep}, out_dir=out_dir, progress=False)
        return net.state_dict(), result

    state, result = run(3, tmp_path / "a")
    assert (result["best_epoch"], result["best_dice"], result["last_epoch"], result["last_dice"], result["kept"]) == (2, 0.6, 3, 0.4, "best")
    after_two, _ = run(2, validation=None)  # no validation: the same training, stopped at epoch 2
    assert all(torch.equal(v, after_two[k]) for k, v in state.items())
    last_state, last = run(3, keep="last", validation=None)
    assert last["kept"] == "last" and not all(torch.equal(v, last_state[k]) for k, v in state.items())
    calls.clear()
    run(2, tmp_path / "b")  # interrupted after epoch 2 (best so far: epoch 2) ...
    resumed, again = run(3, tmp_path / "b")  # ... resumed for epoch 3: best.pt restores epoch 2
    assert again["best_epoch"] == 2 and all(torch.equal(v, resumed[k]) for k, v in state.items())


# ------------------------------------------------------------------------------------ background codewords


def test_background_codewords_count_the_all_zero_input_blocks(lgg_slices):
    torch.manual_seed(0)
    net = VQSegNet(**TINY)
    net.train()
    net(lgg_slices.images[:48])  # k-means initialisation of the codebook on real latents
    net.eval()
    # the central 16 x 16 of real slices inside an all-zero frame: real content and empty 4 x 4 blocks
    images = F.pad(lgg_slices.images[:, :, 8:24, 8:24], (8, 8, 8, 8))
    pairs = background_codewords(net, images, batch_size=7)
    indices = net.codeword_indices(images)
    blocks = images.abs().amax(1).unfold(1, 4, 4).unfold(2, 4, 4).amax((-1, -2)) == 0  # (N, 8, 8) all-zero 4x4 blocks
    expected = torch.bincount(indices[blocks], minlength=16)
    assert int(blocks.sum()) > 0 and sum(n for _, n in pairs) == int(blocks.sum())
    assert {c: n for c, n in pairs} == {c: int(expected[c]) for c in torch.nonzero(expected).flatten().tolist()}
    assert [n for _, n in pairs] == sorted((n for _, n in pairs), reverse=True)
    assert background_codewords(net, images[:, :, 12:20, 12:20].clone().fill_(1.0).repeat(1, 1, 4, 4)) == []  # no empty block


# ------------------------------------------------------------------------------------------- fine-tuning


def _tiny_vq_bundle(folder: Path, slices) -> Path:
    from deepradiomics.models import save_bundle

    torch.manual_seed(0)
    arch = {"type": "vqseg", **TINY, "filters": list(TINY["filters"]), "decoder_filters": list(TINY["decoder_filters"])}
    net = VQSegNet.from_config(arch)
    fit(net, slices, None, {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 0}, progress=False)
    config = {
        "name": "tiny-vq",
        "format_version": 2,
        "architecture": arch,
        "modalities": [{"name": n, "column": c} for n, c in zip(("t1", "Image", "t1ce"), COLUMNS)],
        "preprocessing": {"orientation": "axial", "normalization": "zscore-foreground", "input_size": 32, "channels": ["t1", "Image", "t1ce"]},
        "label_map": {"nonzero": 1},
    }
    return save_bundle(net, config, folder, "# tiny\n{sha256}\n")


def _finetune_config(tmp_path: Path, model: dict) -> Path:
    config = {
        "name": "tiny-finetuned",
        "data": {
            "manifest": str(_need_lgg()),
            "modalities": [{"column": c, "name": n} for n, c in zip(("t1", "Image", "t1ce"), COLUMNS)],
            "max_cases": 2,
            "val_fraction": 0.5,
        },
        "model": model,
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-2, "num_threads": 1},
    }
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fine_tuning_with_a_frozen_encoder_changes_only_the_decoder(lgg_slices, tmp_path):
    from deepradiomics.models import load_bundle

    init = _tiny_vq_bundle(tmp_path / "init", lgg_slices.subset([1, 2]))
    before = load_bundle(init)
    metrics = train_from_config(_finetune_config(tmp_path, {"type": "vqseg"}), tmp_path / "tuned", progress=False, init=init, freeze="encoder")
    after = load_bundle(tmp_path / "tuned")
    old, new = before.model.state_dict(), after.model.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.")))
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    x = lgg_slices.images[:8]
    assert torch.equal(before.model.codeword_indices(x), after.model.codeword_indices(x))  # histograms unchanged
    init_info = after.config["training"]["init"]
    assert init_info["sha256"] == before.sha256 and init_info["freeze"] == "encoder"
    card = (tmp_path / "tuned" / "card.md").read_text()
    assert before.sha256 in card and "frozen: encoder" in card and _absolute_paths(card) == []
    assert after.config["architecture"] == before.config["architecture"] and metrics["training_cases"] == 1


def test_fine_tuning_refuses_a_different_architecture(lgg_slices, tmp_path):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    init = _tiny_vq_bundle(tmp_path / "init", lgg_slices.subset([2]))
    result = CliRunner().invoke(main, ["train", str(_finetune_config(tmp_path, {"type": "dlrcnn"})), "-o", str(tmp_path / "x"), "--init", str(init), "-q"])
    assert result.exit_code != 0 and "'dlrcnn'" in result.output and "'vqseg'" in result.output, result.output
    with pytest.raises(ParamsError, match="model.embedding_dim is 4 but the --init bundle 'tiny-vq' has 8"):
        train_from_config(_finetune_config(tmp_path, {"type": "vqseg", "embedding_dim": 4}), tmp_path / "y", progress=False, init=init)
    with pytest.raises(ParamsError, match="--freeze needs --init"):
        train_from_config(_finetune_config(tmp_path, {"type": "vqseg"}), tmp_path / "z", progress=False, freeze="encoder")


def test_dlr_freeze_keeps_convolutions(lgg_native):
    torch.manual_seed(1)
    net = DLRCNN(in_channels=2, num_classes=2, filters=(4, 4, 4, 8, 8, 8), fc_units=16)
    net.freeze("encoder")
    conv6 = net.conv6.weight.detach().clone()
    fc1 = net.fc1.weight.detach().clone()
    fit(net, lgg_native, None, {"epochs": 1, "batch_size": 32, "lr": 0.05, "patches": {"per_epoch": 128}}, progress=False, data_init=False)
    assert torch.equal(net.conv6.weight, conv6) and not torch.equal(net.fc1.weight, fc1)
    assert torch.equal(net.input_std, torch.ones(2))  # data_init=False keeps the (bundle's) normalisation


# ------------------------------------------------------------------------------------ configs, AMP, init


def test_paper_config_follows_the_paper_where_it_gives_values():
    config = load_config(REPO / "params" / "train_paper.yaml")
    arch = architecture(config)
    train = config["train"]
    assert (train["batch_size"], train["lr"], train["epochs"], train["device"], train["amp"]) == (72, 1e-4, 600, "cuda", True)
    assert (arch["type"], arch["init"], arch["input_size"], arch["num_embeddings"], arch["embedding_dim"]) == ("vqseg", "he", 256, 512, 64)
    assert arch["filters"] == [32, 64, 128, 128, 128, 128] and arch["decoder_filters"] == [128, 128, 128, 128, 64, 32]
    assert (train["optimizer"]["name"] or VQSegNet.training_defaults["optimizer"]) == "adam"
    assert preprocessing_for(config, arch).input_size == 256


def test_dlr_config_builds_the_dlr_network():
    config = load_config(REPO / "params" / "train_dlr.yaml")
    arch = architecture(config)
    assert arch["type"] == "dlrcnn" and arch["filters"][-1] == 128 and arch["in_channels"] == 2
    assert preprocessing_for(config, arch).input_size == 128  # the DLR network has no input size of its own
    assert preprocessing_for({**config, "data": {**config["data"], "input_size": None}}, arch).input_size is None
    assert config["train"]["patches"] == {"size": 33, "tumour_fraction": 0.4, "per_epoch": config["train"]["patches"]["per_epoch"]}
    with pytest.raises(ParamsError, match="unknown key 'model.filter'.*Did you mean 'filters'"):
        architecture({**config, "model": {"type": "dlrcnn", "filter": [1]}})
    with pytest.raises(ParamsError, match="architecture.type 'dlrccn' is unknown"):
        architecture({**config, "model": {"type": "dlrccn"}})


def test_mixed_precision_is_cuda_only_and_cpu_runs_in_float32(lgg_slices):
    enabled, _ = amp_settings("cpu", True)
    assert enabled is False
    assert amp_settings("cuda", True)[0] is torch.cuda.is_available()
    assert amp_settings("cuda", False)[0] is False
    torch.manual_seed(0)
    net = VQSegNet(**TINY)
    result = fit(net, lgg_slices.subset([0]), None, {"epochs": 1, "batch_size": 16, "amp": True}, progress=False)
    assert all(p.dtype == torch.float32 for p in net.parameters()) and np.isfinite(result["history"][0]["loss"])
    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="CUDA is not available"):
            fit(net, lgg_slices.subset([0]), None, {"epochs": 1, "device": "cuda"}, progress=False)


def test_he_initialisation_is_an_option_and_default_is_unchanged():
    torch.manual_seed(0)
    default = VQSegNet(**TINY).state_dict()
    torch.manual_seed(0)
    explicit = VQSegNet(**TINY, init="default").state_dict()
    assert all(torch.equal(v, explicit[k]) for k, v in default.items())
    torch.manual_seed(0)
    he = VQSegNet.from_config({**TINY, "init": "he", "filters": [64, 64, 64, 64]})
    conv = he.encoder.stages[-1].conv1  # 64 -> 64, fan_in 576
    expected_std = (2 / (1 + 0.2**2) / (64 * 9)) ** 0.5
    assert float(conv.weight.detach().std()) == pytest.approx(expected_std, rel=0.05) and float(conv.bias.detach().abs().max()) == 0.0
    with pytest.raises(ValueError, match="init"):
        VQSegNet(**TINY, init="xavier")


def test_vq_network_offers_the_descriptor_and_segment_api(lgg_slices):
    torch.manual_seed(0)
    net = VQSegNet(**TINY).eval()
    x = lgg_slices.images[:4]
    assert net.feature_layers() == ["stem", "stage1", "stage2", "stage3", "stage4", "latent", "quantized"]
    torch.testing.assert_close(net.features(x, "latent"), net.encode(x))
    assert torch.equal(net.features(x, "quantized"), net.quantizer.embed(net.codeword_indices(x)))
    assert net.features(x, "stage1").shape == (4, 8, 32, 32) and net.features(x, "stage4").shape == (4, 16, 8, 8)
    assert net.layer_geometry("latent") == {"stride": 4, "offset": 0, "receptive_field": net.layer_geometry("stage4")["receptive_field"], "pad": 0}
    assert net.layer_geometry("stem")["receptive_field"] == 3 and net.layer_geometry("stage1")["receptive_field"] == 7
    labels = net.segment(x)
    assert labels.shape == (4, 32, 32) and torch.equal(labels, net.decode(net.quantizer.embed(net.codeword_indices(x))).argmax(1))
