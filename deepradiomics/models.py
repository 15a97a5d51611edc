"""Model bundles: a folder with ``model.pt`` (state dict), ``config.yaml`` and ``card.md``.

``config.yaml`` (format 2) records:

- ``architecture``: ``type`` (a key of :data:`ARCHITECTURES`, e.g. ``vqseg``) and the keyword arguments of
  that network's ``from_config``;
- ``modalities``: the input channels in order, each ``{name: <case modality>, column: <manifest column>}``;
- ``preprocessing``: the machine-readable block of :class:`~deepradiomics.nets.preprocess.Preprocessing`
  (orientation, normalisation, input size, channel names), read back and applied by feature classes;
- ``model_sha256``: the sha256 of ``model.pt``.

Loading checks that sha256 before torch reads a byte of the weights, and reads them with
``torch.load(..., weights_only=True)``: a bundle never executes code. Nothing is downloaded at run time;
shipped bundles live inside the package (``deepradiomics/data/models/``). Bundles written by earlier
versions (format 1: ``type: VQSegNet`` and a prose ``preprocessing`` block) are migrated when read.

Examples
--------
>>> bundle = load_bundle("vq-lgg-cpu")  # doctest: +SKIP
>>> bundle.architecture, bundle.modalities, bundle.preprocessing.input_size  # doctest: +SKIP
('vqseg', ['t1', 'Image', 't1ce'], 128)
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import sha256_file
from .errors import ModelError, did_you_mean
from .featureclass import lazy

MODELS_DIR = Path(__file__).resolve().parent / "data" / "models"
BUNDLE_FILES = ("model.pt", "config.yaml", "card.md")
FORMAT_VERSION = 2

#: ``architecture.type`` -> ``"module:Class"``; the class builds itself with ``from_config(architecture)``.
#: Imported only when a bundle of that type is loaded.
ARCHITECTURES: dict[str, str] = {
    "vqseg": "deepradiomics.nets.vqseg:VQSegNet",
    "dlrcnn": "deepradiomics.nets.dlrcnn:DLRCNN",
    "vgg3d": "deepradiomics.nets.vgg3d:VGG3D",
}
#: architecture names written by format-1 bundles
_TYPE_ALIASES = {"VQSegNet": "vqseg"}


def shipped_models() -> list[str]:
    """Names of the bundles shipped inside the package."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.yaml").is_file())


def resolve_bundle(name_or_path: str | Path, base_dir: str | Path | None = None, default: str | None = None) -> Path:
    """Folder of a bundle: a shipped bundle's name, ``"default"`` (= ``default``), or a bundle folder.

    A relative folder is resolved against ``base_dir`` (the folder of the params file that names it),
    else against the working directory; the error says which.
    """
    text = str(name_or_path)
    if text == "default":
        if default is None:
            raise ModelError("model 'default': this feature class has no default bundle; give a bundle name or folder")
        text = default
    if "/" not in text and "\\" not in text and (MODELS_DIR / text).is_dir():
        return MODELS_DIR / text
    path = Path(text).expanduser()
    anchor = Path(base_dir) if base_dir is not None and not path.is_absolute() else None
    candidate = anchor / path if anchor is not None else path
    if candidate.is_dir():
        return candidate
    shipped = ", ".join(shipped_models()) or "none"
    where = f" (resolved against {anchor.resolve()})" if anchor is not None else (
        f" (resolved against the working directory {Path.cwd()})" if not path.is_absolute() else ""
    )
    raise ModelError(
        f"model '{name_or_path}'{where} is neither a shipped bundle (shipped: {shipped}"
        f"{'; default = ' + default if default else ''}){did_you_mean(text, shipped_models())} nor a bundle folder: "
        f"give a shipped name or the path of a folder holding {', '.join(BUNDLE_FILES)} "
        "(written by `deepradiomics train CONFIG -o FOLDER`; relative paths in a params file are relative to that file)"
    )


def architecture_class(type_name: str, where: str = "config.yaml"):
    """The network class registered for ``architecture.type`` (ModelError naming the known types)."""
    if type_name not in ARCHITECTURES:
        raise ModelError(
            f"{where}: architecture.type '{type_name}' is unknown.{did_you_mean(str(type_name), ARCHITECTURES)} "
            f"Known types: {', '.join(ARCHITECTURES)}"
        )
    module_name, _, class_name = ARCHITECTURES[type_name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"{where}: architecture '{type_name}' cannot be built ({exc}): reinstall deepradiomics") from exc


def build_network(architecture: Mapping[str, Any], where: str = "config.yaml"):
    """Build the (untrained) network described by an ``architecture`` mapping."""
    cls = architecture_class(str(architecture.get("type", "")), where)
    missing = [key for key in getattr(cls, "REQUIRED_KEYS", ()) if key not in architecture]
    if missing:
        raise ModelError(f"{where}: architecture lacks the key '{missing[0]}': re-train the bundle")
    try:
        return cls.from_config(dict(architecture))
    except KeyError as exc:
        raise ModelError(f"{where}: architecture lacks the key {exc}: re-train the bundle") from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: architecture is invalid ({exc}): re-train the bundle") from exc


def migrate_config(config: dict[str, Any]) -> dict[str, Any]:
    """A format-2 copy of a bundle config (format 1: ``type: VQSegNet`` and a prose preprocessing block).

    Format 1 was written only for the VQ network, whose preprocessing was fixed: axial slices, z-score
    per modality over voxels > 0, bilinear resize to ``architecture.input_size``.
    """
    config = copy.deepcopy(config)
    if int(config.get("format_version", 1)) >= FORMAT_VERSION:
        return config
    arch = config.setdefault("architecture", {})
    arch["type"] = _TYPE_ALIASES.get(arch.get("type", "VQSegNet"), arch.get("type", "vqseg"))
    config["preprocessing"] = {
        "orientation": "axial",
        "normalization": "zscore-foreground",
        "input_size": arch.get("input_size"),
        "channels": [m.get("name") for m in config.get("modalities", []) if isinstance(m, Mapping)],
    }
    config["format_version"] = FORMAT_VERSION
    return config


@dataclass
class Bundle:
    """A loaded model bundle: the network in eval mode plus its configuration."""

    name: str
    path: Path
    config: dict[str, Any]
    sha256: str
    model: Any = field(repr=False)

    @property
    def architecture(self) -> str:
        """``architecture.type``, e.g. ``"vqseg"``."""
        return str(self.config["architecture"]["type"])

    @property
    def modalities(self) -> list[str]:
        """Case modality names in the network's channel order."""
        return [m["name"] for m in self.config["modalities"]]

    @property
    def preprocessing(self):
        """The :class:`~deepradiomics.nets.preprocess.Preprocessing` the network was trained with."""
        from .nets.preprocess import Preprocessing

        return Preprocessing.from_config(self.config["preprocessing"], where=str(self.path / "config.yaml"))

    @property
    def input_size(self) -> int | None:
        """The in-plane size S the network takes (S x S slices), or None for any size."""
        return self.preprocessing.input_size

    @property
    def num_embeddings(self) -> int:
        """K of a codebook network (``architecture.num_embeddings``)."""
        try:
            return int(self.config["architecture"]["num_embeddings"])
        except KeyError:
            raise ModelError(f"bundle '{self.name}' ({self.architecture}) has no codebook (architecture.num_embeddings)") from None


def read_config(folder: Path) -> dict[str, Any]:
    """Read, migrate and validate ``config.yaml`` of a bundle folder (ModelError naming the key on failure)."""
    from .yamlio import read_yaml

    config_path = Path(folder) / "config.yaml"
    if not config_path.is_file():
        if Path(folder).is_dir() and not any(Path(folder).iterdir()):
            raise ModelError(
                f"'{folder}' is an empty folder, not a model bundle: give a shipped bundle's name ({', '.join(shipped_models()) or 'none'}) "
                f"or a folder holding {', '.join(BUNDLE_FILES)} (written by `deepradiomics train CONFIG -o FOLDER`)"
            )
        raise ModelError(
            f"bundle '{folder}' has no config.yaml: re-train the bundle (`deepradiomics train CONFIG -o {folder}`)"
        )
    config = read_yaml(config_path, "bundle config", ModelError, ": re-train the bundle")
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} must be a mapping, got {type(config).__name__}: re-train the bundle")
    for key in ("architecture", "modalities", "model_sha256"):
        if key not in config:
            raise ModelError(f"{config_path} lacks the key '{key}': re-train the bundle")
    if not isinstance(config["architecture"], Mapping) or not isinstance(config["modalities"], list):
        raise ModelError(f"{config_path}: 'architecture' must be a mapping and 'modalities' a list: re-train the bundle")
    config = migrate_config(config)
    architecture_class(str(config["architecture"].get("type")), str(config_path))
    names = [m.get("name") if isinstance(m, Mapping) else None for m in config["modalities"]]
    if not all(isinstance(n, str) and n for n in names):
        raise ModelError(f"{config_path}: every entry of 'modalities' needs a 'name': re-train the bundle")
    in_channels = config["architecture"].get("in_channels")
    if in_channels is not None and len(names) != int(in_channels):
        raise ModelError(
            f"{config_path}: {len(names)} modalities listed but architecture.in_channels = {in_channels}: re-train the bundle"
        )
    from .nets.preprocess import Preprocessing

    preprocessing = Preprocessing.from_config(config.get("preprocessing") or {}, where=str(config_path))
    if list(preprocessing.channels) != names:
        raise ModelError(
            f"{config_path}: preprocessing.channels {list(preprocessing.channels)} differ from the modalities {names}: re-train the bundle"
        )
    return config


def load_bundle(
    name_or_path: str | Path, device: str = "cpu", base_dir: str | Path | None = None, default: str | None = None
) -> Bundle:
    """Load a bundle, check the sha256 of ``model.pt`` against ``config.yaml`` and build the network.

    Parameters
    ----------
    name_or_path
        A shipped bundle's name, ``"default"`` (then ``default`` names the bundle) or a bundle folder.
    device
        Where the network goes (``"cpu"``, ``"cuda"``).
    base_dir
        Folder that a relative bundle path is relative to (the params file's folder).

    Raises
    ------
    ModelError
        The bundle is missing, malformed, or ``model.pt`` does not match its recorded sha256.
    """
    import pickle

    import torch

    folder = resolve_bundle(name_or_path, base_dir, default)
    config = read_config(folder)
    weights = folder / "model.pt"
    if not weights.is_file():
        raise ModelError(f"bundle '{folder}' has no model.pt: re-train the bundle")
    actual = sha256_file(weights)
    expected = str(config["model_sha256"])
    if actual != expected:
        raise ModelError(
            f"{weights} has sha256 {actual} but {folder / 'config.yaml'} records {expected}: the weights were "
            "changed or corrupted; re-download/re-train the bundle, do not edit model.pt"
        )
    model = build_network(config["architecture"], str(folder / "config.yaml"))
    try:
        state = torch.load(weights, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        # torch's message suggests disabling weights_only: never relay that advice
        raise ModelError(f"{weights} is not a plain state dict of tensors and is refused: re-train the bundle") from exc
    try:
        model.load_state_dict(state)  # copies into float32 parameters, so half-precision files load too
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(f"{weights} does not fit the architecture in {folder / 'config.yaml'} ({detail}): re-train the bundle") from exc
    model.to(device).eval()
    return Bundle(name=str(config.get("name", folder.name)), path=folder, config=config, sha256=actual, model=model)


def save_bundle(model, config: dict[str, Any], folder: str | Path, card: str, half: bool = False) -> Path:
    """Write ``model.pt`` (state dict only), ``config.yaml`` (format 2, with ``model_sha256``) and ``card.md``.

    ``card`` may contain ``{sha256}``, replaced by the weights' hash. ``half=True`` stores floating-point
    tensors as float16 (half the size); :func:`load_bundle` copies them into the float32 network.
    """
    import torch
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        state[key] = value.half() if half and value.is_floating_point() else value
    torch.save(state, folder / "model.pt")
    digest = sha256_file(folder / "model.pt")
    config = migrate_config(dict(config))  # a config without format_version is read as format 1
    config["format_version"] = FORMAT_VERSION
    config["model_sha256"] = digest
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "card.md").write_text(card.replace("{sha256}", digest))
    return folder


class BundledModel:
    """Mixin for feature classes whose ``model`` setting names a model bundle (``default``: ``default_model``).

    It gives the bundle's ``config.yaml`` read lazily without torch (``_config()``), the sha256-checked bundle
    (``bundle``, loaded on first use, once, under a lock; a class checks that it can serve in
    ``_accept_bundle``), and the case modalities feeding its channels (``modalities``: the ``modalities``
    setting, else the bundle's channel names; a setting listing the same names in another order is mapped by
    name, with a warning). The loaded network is not pickled: batch workers load it again from the checked
    bundle. The settings derive from :class:`~deepradiomics.featureclass.BundleSettings` (``model``,
    ``modalities``, ``device``).
    """

    default_model: str | None = None
    #: the ``model`` setting is identified by the bundle's sha256 in ``artifacts()`` (see FeatureClass)
    artifact_settings = ("model",)

    #: the architectures (``architecture.type``) the class can use; empty: any
    architectures: tuple[str, ...] = ()

    def _config(self) -> dict:
        """The bundle's config.yaml (no torch import), its architecture checked against :attr:`architectures`."""
        return lazy(self, "_bundle_config", self._read_bundle_config)

    def _read_bundle_config(self) -> dict:
        from .errors import ParamsError

        try:
            config = read_config(resolve_bundle(self.settings.model, self._base_dir, self.default_model))
        except ModelError as exc:
            raise ModelError(f"{self._where}.model: {exc}") from exc
        kind = config["architecture"].get("type")
        if self.architectures and kind not in self.architectures:
            example = f" (e.g. {self.default_model})" if self.default_model else ""
            raise ParamsError(
                f"{self._where}.model: bundle '{self.settings.model}' is a '{kind}' network, but this class needs a "
                f"{' or '.join(repr(a) for a in self.architectures)} bundle{example}: set model to such a bundle"
            )
        return config

    def check(self) -> None:
        """Read and check the bundle's config.yaml now (missing bundle, wrong architecture), without loading the network."""
        self._config()

    @property
    def bundle(self) -> Bundle:
        """The loaded :class:`Bundle` (sha256-checked), accepted by the class and its channels resolved."""
        return lazy(self, "_bundle", self._load_bundle)

    def _load_bundle(self) -> Bundle:
        bundle = load_bundle(self.settings.model, device=self.settings.device, base_dir=self._base_dir, default=self.default_model)
        self._accept_bundle(bundle)
        self._channels = self._channel_names(bundle.modalities)
        self._bundle_config = bundle.config
        return bundle

    def _accept_bundle(self, bundle: Bundle) -> None:
        """ParamsError naming the ``model`` setting when ``bundle`` cannot serve this class (the default accepts any)."""

    @property
    def modalities(self) -> tuple[str, ...]:
        """The case modalities read, in channel order."""
        self.bundle  # noqa: B018 - resolves the channel names
        return self._channels

    def _channel_names(self, trained: list[str]) -> tuple[str, ...]:
        from .errors import ParamsError

        given = self.settings.modalities
        if given is None:
            return tuple(trained)
        if len(given) != len(trained):
            raise ParamsError(
                f"{self._where}.modalities: {len(given)} modalities {list(given)} given but the model takes {len(trained)}: "
                f"{trained}; list {len(trained)} of the case's modality names in that order (or leave the setting out)"
            )
        if list(given) != list(trained) and sorted(given) == sorted(trained):
            # logged under the class's own module (e.g. deepradiomics_plugins.vqhist), as its other messages
            logging.getLogger(type(self).__module__).warning(
                "%s.modalities %s name the model's channels %s in another order: mapped by name", self._where, list(given), trained
            )
            return tuple(trained)
        return tuple(given)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_bundle", None)
        return state
