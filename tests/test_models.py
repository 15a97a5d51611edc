"""Model bundles: round trip, sha256 check, malformed bundles, the shipped default; preprocessing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from deepradiomics.errors import ModelError  # noqa: E402
from deepradiomics.models import DEFAULT_MODEL, MODELS_DIR, load_bundle, resolve_bundle, save_bundle, sha256_file  # noqa: E402
from deepradiomics.nets.preprocess import mask_to_latent, mask_to_slices, slices_to_volume, volume_to_slices  # noqa: E402
from deepradiomics.nets.vqseg import VQSegNet  # noqa: E402

TINY = {
    "type": "VQSegNet",
    "in_channels": 3,
    "num_classes": 2,
    "filters": [8, 8, 8, 8],
    "decoder_filters": [8, 8, 8, 8],
    "input_size": 32,
    "num_embeddings": 16,
    "embedding_dim": 8,
    "quantizer": {"kmeans_init": False},
}


def tiny_bundle(folder, seed=0):
    torch.manual_seed(seed)
    net = VQSegNet.from_config(TINY)
    config = {
        "name": "tiny",
        "architecture": TINY,
        "modalities": [{"name": n, "column": f"Image_{n}"} for n in ("t1", "Image", "t1ce")],
    }
    save_bundle(net, config, folder, "# tiny test model\nsha256 {sha256}\n")
    return net.eval()


def test_bundle_round_trip(tmp_path):
    net = tiny_bundle(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["card.md", "config.yaml", "model.pt"]
    bundle = load_bundle(tmp_path / "b")
    assert bundle.sha256 == sha256_file(tmp_path / "b" / "model.pt")
    assert bundle.sha256 in (tmp_path / "b" / "card.md").read_text()
    assert bundle.modalities == ["t1", "Image", "t1ce"] and bundle.num_embeddings == 16
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(bundle.model.codeword_indices(x), net.codeword_indices(x))
    for key, value in net.state_dict().items():
        assert torch.equal(bundle.model.state_dict()[key], value), key


def test_tampered_weights_are_refused(tmp_path):
    tiny_bundle(tmp_path / "b")
    weights = tmp_path / "b" / "model.pt"
    data = bytearray(weights.read_bytes())
    data[-20] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not edit model.pt") as info:
        load_bundle(tmp_path / "b")
    assert "model.pt" in str(info.value) and "sha256" in str(info.value)


def test_missing_and_malformed_bundles(tmp_path):
    with pytest.raises(ModelError, match="neither a shipped bundle"):
        load_bundle(tmp_path / "nothing-here")
    tiny_bundle(tmp_path / "b")
    (tmp_path / "b" / "model.pt").unlink()
    with pytest.raises(ModelError, match="no model.pt"):
        load_bundle(tmp_path / "b")
    tiny_bundle(tmp_path / "c")
    config = yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())
    del config["architecture"]["num_embeddings"]
    (tmp_path / "c" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match="num_embeddings"):
        load_bundle(tmp_path / "c")
    # weights that do not fit the architecture (sha256 updated, so it is the shape check that fails)
    tiny_bundle(tmp_path / "d")
    config = yaml.safe_load((tmp_path / "d" / "config.yaml").read_text())
    config["architecture"]["embedding_dim"] = 4
    (tmp_path / "d" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match="does not fit"):
        load_bundle(tmp_path / "d")


def test_shipped_default_bundle_loads_and_matches_its_sha256():
    folder = resolve_bundle("default")
    assert folder == MODELS_DIR / DEFAULT_MODEL
    assert resolve_bundle(DEFAULT_MODEL) == folder
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert sha256_file(folder / "model.pt") == config["model_sha256"]
    card = (folder / "card.md").read_text()
    assert config["model_sha256"] in card and "CC BY-NC-SA 4.0" in card
    bundle = load_bundle("default")
    assert bundle.num_embeddings == 512 and bundle.config["architecture"]["embedding_dim"] == 64
    assert bundle.modalities == ["t1", "Image", "t1ce"]
    assert (folder / "model.pt").stat().st_size < 10 * 2**20
    s = bundle.input_size
    idx = bundle.model.codeword_indices(torch.zeros(1, 3, s, s))
    assert idx.shape == (1, 8, 8)


def test_copied_default_bundle_with_edited_weights_is_refused(tmp_path):
    shutil.copytree(resolve_bundle("default"), tmp_path / "copy")
    state = torch.load(tmp_path / "copy" / "model.pt", weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1
    torch.save(state, tmp_path / "copy" / "model.pt")
    with pytest.raises(ModelError, match="sha256"):
        load_bundle(tmp_path / "copy")


def test_volume_to_slices_normalises_foreground_and_keeps_background_zero():
    rng = np.random.default_rng(0)
    vol = np.zeros((4, 20, 20), dtype=np.uint8)
    vol[1:3, 5:15, 5:15] = rng.integers(1, 255, (2, 10, 10))
    x = volume_to_slices([vol, vol.astype(np.float32) * 2], 20)
    assert x.shape == (4, 2, 20, 20) and x.dtype == torch.float32
    assert torch.count_nonzero(x[0]) == 0 and torch.count_nonzero(x[3]) == 0
    fg = x[1:3, 0][torch.from_numpy(vol[1:3] > 0)]
    assert abs(float(fg.mean())) < 1e-5 and float(fg.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(x[:, 0], x[:, 1], atol=1e-5)  # z-scoring removes the scale
    small = volume_to_slices([vol], 8)
    assert small.shape == (4, 1, 8, 8)
    back = slices_to_volume(small[:, 0], vol.shape)
    assert back.shape == vol.shape
    with pytest.raises(ValueError, match="shape"):
        volume_to_slices([vol, vol[:, :10]], 8)


def test_mask_to_latent_marks_cells_touching_the_mask():
    mask = np.zeros((2, 64, 64), dtype=bool)
    mask[0, 0, 0] = True  # one pixel -> cell (0, 0)
    mask[1, 20:30, 40:41] = True  # rows 20-29 -> cells 2, 3; column 40 -> cell 5
    cells = mask_to_latent(mask, 64)
    assert cells.shape == (2, 8, 8)
    assert cells[0].sum() == 1 and cells[0, 0, 0]
    assert {tuple(ix) for ix in torch.nonzero(cells[1]).tolist()} == {(2, 5), (3, 5)}
    labels = mask_to_slices(np.where(mask, 3, 0), 32)
    assert set(torch.unique(labels).tolist()) <= {0, 3}
