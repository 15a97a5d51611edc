"""Model bundles: round trip, sha256 check, malformed bundles, the shipped default; preprocessing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from deepradiomics.errors import ModelError  # noqa: E402
from deepradiomics.models import (  # noqa: E402
    ARCHITECTURES,
    MODELS_DIR,
    load_bundle,
    migrate_config,
    read_config,
    resolve_bundle,
    save_bundle,
    sha256_file,
)
from deepradiomics.nets.preprocess import (  # noqa: E402
    Preprocessing,  # noqa: E402
    mask_to_latent,
    mask_to_slices,
    slices_to_volume,
    volume_to_slices,
)
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


DEFAULT_VQ = "vq-lgg-cpu"


def test_shipped_default_bundle_loads_and_matches_its_sha256():
    folder = resolve_bundle("default", default=DEFAULT_VQ)
    assert folder == MODELS_DIR / DEFAULT_VQ
    assert resolve_bundle(DEFAULT_VQ) == folder
    with pytest.raises(ModelError, match="no default bundle"):
        resolve_bundle("default")
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert sha256_file(folder / "model.pt") == config["model_sha256"]
    card = (folder / "card.md").read_text()
    assert config["model_sha256"] in card and "CC BY-NC-SA 4.0" in card
    bundle = load_bundle(DEFAULT_VQ)
    # the migrated config (format 2) kept the weights: the sha256 recorded when it was trained
    assert bundle.sha256 == "71f09bd43d9373d2f1e439235897bfe720d99159673427b27d4c005cbad4b772"
    assert config["format_version"] == 2 and config["architecture"]["type"] == "vqseg"
    assert bundle.preprocessing == Preprocessing(channels=("t1", "Image", "t1ce"), input_size=128)
    assert "/work/" not in card and "/home/" not in card  # no absolute path of the training machine
    assert bundle.num_embeddings == 512 and bundle.config["architecture"]["embedding_dim"] == 64
    assert bundle.modalities == ["t1", "Image", "t1ce"]
    assert (folder / "model.pt").stat().st_size < 10 * 2**20
    s = bundle.input_size
    idx = bundle.model.codeword_indices(torch.zeros(1, 3, s, s))
    assert idx.shape == (1, 8, 8)


def test_copied_default_bundle_with_edited_weights_is_refused(tmp_path):
    shutil.copytree(resolve_bundle(DEFAULT_VQ), tmp_path / "copy")
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


def test_architecture_registry_dispatches_on_type_and_names_unknown_types(tmp_path):
    assert set(ARCHITECTURES) >= {"vqseg", "dlrcnn", "vgg3d"}
    tiny_bundle(tmp_path / "b")
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    assert config["architecture"]["type"] == "vqseg" and config["format_version"] == 2  # format-1 input migrated on save
    config["architecture"]["type"] = "vqsgg"
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match="architecture.type 'vqsgg' is unknown. Did you mean 'vqseg'"):
        load_bundle(tmp_path / "b")


def test_format_1_configs_are_migrated_with_a_machine_readable_preprocessing_block():
    old = {
        "architecture": {"type": "VQSegNet", "input_size": 64, "in_channels": 2},
        "modalities": [{"name": "t1"}, {"name": "Image"}],
        "preprocessing": {"normalization": "z-score per modality over voxels > 0; voxels <= 0 set to 0", "input_size": 64},
        "model_sha256": "x",
    }
    new = migrate_config(old)
    assert new["architecture"]["type"] == "vqseg" and new["format_version"] == 2
    assert Preprocessing.from_config(new["preprocessing"]) == Preprocessing(channels=("t1", "Image"), input_size=64)
    assert old["architecture"]["type"] == "VQSegNet"  # the input is not modified


def test_preprocessing_block_is_read_back_and_applied(tmp_path):
    tiny_bundle(tmp_path / "b")
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    config["preprocessing"]["normalization"] = "none"
    config["preprocessing"]["orientation"] = "coronal"
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    spec = load_bundle(tmp_path / "b").preprocessing
    vol = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)
    x = spec.slices([vol, vol, vol])
    assert x.shape == (6, 3, 32, 32)  # 6 coronal slices (array axis 1), resized to the input size
    raw = Preprocessing(channels=("a",), normalization="none", orientation="coronal").slices([vol])
    assert torch.equal(raw[:, 0], torch.from_numpy(np.moveaxis(vol, 1, 0)))  # values kept, axes moved
    back = Preprocessing(channels=("a",), orientation="coronal").to_volume(raw[:, 0], vol.shape, mode="nearest")
    np.testing.assert_array_equal(back, vol)
    config["preprocessing"]["normalisation"] = "none"
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match="preprocessing.normalisation.*Did you mean 'normalization'"):
        read_config(tmp_path / "b")


def test_half_precision_bundle_loads_into_the_float32_network(tmp_path):
    torch.manual_seed(0)
    net = VQSegNet.from_config(TINY).eval()
    config = {"name": "half", "architecture": TINY, "modalities": [{"name": n} for n in ("t1", "Image", "t1ce")]}
    save_bundle(net, config, tmp_path / "half", "half {sha256}", half=True)
    save_bundle(net, config, tmp_path / "full", "full {sha256}")
    assert (tmp_path / "half" / "model.pt").stat().st_size < 0.7 * (tmp_path / "full" / "model.pt").stat().st_size
    bundle = load_bundle(tmp_path / "half")
    assert next(bundle.model.parameters()).dtype == torch.float32
    for key, value in net.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(bundle.model.state_dict()[key], value.half().float())


def test_relative_bundle_paths_are_resolved_against_the_params_folder(tmp_path):
    tiny_bundle(tmp_path / "params" / "models" / "b")
    assert resolve_bundle("models/b", base_dir=tmp_path / "params") == tmp_path / "params" / "models" / "b"
    with pytest.raises(ModelError, match=r"resolved against .*params\)"):
        resolve_bundle("elsewhere/b", base_dir=tmp_path / "params")


def test_a_pickle_payload_is_refused_without_torch_advice(tmp_path):
    tiny_bundle(tmp_path / "b")
    weights = tmp_path / "b" / "model.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"x": Payload()}, weights)  # a malicious pickle: weights_only refuses it
    config = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    config["model_sha256"] = sha256_file(weights)  # even with a matching sha256
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ModelError, match="not a plain state dict") as info:
        load_bundle(tmp_path / "b")
    message = str(info.value)
    assert "weights_only" not in message and "Unpickler" not in message and "\n" not in message
