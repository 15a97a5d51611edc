"""Model bundles: a folder with ``model.pt`` (state dict), ``config.yaml`` and ``card.md``.

``config.yaml`` records the architecture, the codebook size (K, D), the input modalities (names and
order), the input size and preprocessing, the label mapping and the sha256 of ``model.pt``. Loading
checks that sha256 before torch reads a byte of the weights, and reads them with
``torch.load(..., weights_only=True)``: a bundle never executes code. Nothing is downloaded at run time;
the default bundle ships inside the package (``deepradiomics/data/models/``).

Examples
--------
>>> bundle = load_bundle("default")  # doctest: +SKIP
>>> bundle.name, bundle.num_embeddings, bundle.modalities  # doctest: +SKIP
('vq-lgg-cpu', 512, ['t1', 'Image', 't1ce'])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

#: name of the bundle that ``"default"`` resolves to
DEFAULT_MODEL = "vq-lgg-cpu"
MODELS_DIR = Path(__file__).resolve().parent / "data" / "models"
BUNDLE_FILES = ("model.pt", "config.yaml", "card.md")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_models() -> list[str]:
    """Names of the bundles shipped inside the package."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.yaml").is_file())


def resolve_bundle(name_or_path: str | Path) -> Path:
    """Folder of a bundle: ``"default"``, a shipped bundle's name, or a path to a bundle folder."""
    text = str(name_or_path)
    if text == "default":
        text = DEFAULT_MODEL
    if "/" not in text and "\\" not in text and (MODELS_DIR / text).is_dir():
        return MODELS_DIR / text
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    shipped = ", ".join(shipped_models()) or "none"
    raise ModelError(
        f"model '{name_or_path}' is neither a shipped bundle (shipped: {shipped}; 'default' = {DEFAULT_MODEL}) "
        f"nor a bundle folder: give the path of a folder holding {', '.join(BUNDLE_FILES)} "
        "(written by `deepradiomics train CONFIG -o FOLDER`)"
    )


@dataclass
class Bundle:
    """A loaded model bundle: the network in eval mode plus its configuration."""

    name: str
    path: Path
    config: dict[str, Any]
    sha256: str
    model: Any = field(repr=False)

    @property
    def num_embeddings(self) -> int:
        return int(self.config["architecture"]["num_embeddings"])

    @property
    def input_size(self) -> int:
        return int(self.config["architecture"]["input_size"])

    @property
    def modalities(self) -> list[str]:
        return [m["name"] for m in self.config["modalities"]]


def read_config(folder: Path) -> dict[str, Any]:
    """Read and validate ``config.yaml`` of a bundle folder (ModelError naming the key on failure)."""
    import yaml

    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise ModelError(
            f"bundle '{folder}' has no config.yaml: re-download or re-train the bundle (`deepradiomics train CONFIG -o {folder}`)"
        )
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise ModelError(f"{config_path} is not valid YAML ({exc}): re-download or re-train the bundle") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} must be a mapping, got {type(config).__name__}: re-download or re-train the bundle")
    for key in ("architecture", "modalities", "model_sha256"):
        if key not in config:
            raise ModelError(f"{config_path} lacks the key '{key}': re-download or re-train the bundle")
    for key in ("in_channels", "num_classes", "input_size", "num_embeddings", "embedding_dim", "filters", "decoder_filters"):
        if key not in config["architecture"]:
            raise ModelError(f"{config_path}: architecture lacks the key '{key}': re-download or re-train the bundle")
    if len(config["modalities"]) != int(config["architecture"]["in_channels"]):
        raise ModelError(
            f"{config_path}: {len(config['modalities'])} modalities listed but architecture.in_channels = "
            f"{config['architecture']['in_channels']}: re-download or re-train the bundle"
        )
    return config


def load_bundle(name_or_path: str | Path = "default", device: str = "cpu") -> Bundle:
    """Load a bundle, check the sha256 of ``model.pt`` against ``config.yaml`` and build the network.

    Raises
    ------
    ModelError
        The bundle is missing, malformed, or ``model.pt`` does not match its recorded sha256.
    """
    import torch

    from .nets.vqseg import VQSegNet

    folder = resolve_bundle(name_or_path)
    config = read_config(folder)
    weights = folder / "model.pt"
    if not weights.is_file():
        raise ModelError(f"bundle '{folder}' has no model.pt: re-download or re-train the bundle")
    actual = sha256_file(weights)
    expected = str(config["model_sha256"])
    if actual != expected:
        raise ModelError(
            f"{weights} has sha256 {actual} but {folder / 'config.yaml'} records {expected}: the weights were "
            "changed or corrupted; re-download/re-train the bundle, do not edit model.pt"
        )
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
        model = VQSegNet.from_config(config["architecture"])
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"{weights} does not fit the architecture in {folder / 'config.yaml'} ({exc}): re-train the bundle"
        ) from exc
    model.to(device).eval()
    return Bundle(name=str(config.get("name", folder.name)), path=folder, config=config, sha256=actual, model=model)


def save_bundle(model, config: dict[str, Any], folder: str | Path, card: str) -> Path:
    """Write ``model.pt`` (state dict only), ``config.yaml`` (with ``model_sha256``) and ``card.md``.

    ``card`` may contain ``{sha256}``, replaced by the weights' hash.
    """
    import torch
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / "model.pt")
    digest = sha256_file(folder / "model.pt")
    config = dict(config)
    config["model_sha256"] = digest
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "card.md").write_text(card.replace("{sha256}", digest))
    return folder
