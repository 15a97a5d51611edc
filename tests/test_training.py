"""Training: losses, augmentation, a tiny network learning on real LGG slices, determinism, resume, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from deepradiomics.errors import ParamsError  # noqa: E402
from deepradiomics.models import load_bundle  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402
from deepradiomics.training.augment import augment_batch  # noqa: E402
from deepradiomics.training.data import load_manifest_slices, map_labels, split_cases  # noqa: E402
from deepradiomics.training.loop import fit, load_config  # noqa: E402
from deepradiomics.training.losses import focal_loss, hard_dice, soft_dice_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
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


@pytest.fixture(scope="module")
def lgg_slices():
    return load_manifest_slices(_need_lgg(), COLUMNS, "Mask", 32, {"nonzero": 1}, max_cases=3, progress=False)


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
        fit(net, lgg_slices, None, {**cfg, "epochs": epochs}, out_dir=out_dir, progress=False)
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
    card = (tmp_path / "bundle" / "card.md").read_text()
    assert bundle.sha256 in card and "Validation Dice" in card and "CC BY-NC-SA 4.0" in card
    assert len(bundle.config["metrics"]["validation_cases"]) == 1
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
