"""One training loop for every segmentation architecture, from a YAML config to a model bundle.

``train_from_config(config_path, out_dir)`` reads the config, preloads the manifest's slices through the
bundle's :class:`~deepradiomics.nets.preprocess.Preprocessing` (the implementation feature extraction
uses), splits them by patient, trains, and writes a bundle (:func:`deepradiomics.models.save_bundle`).

The architecture (``model.type``, a key of :data:`deepradiomics.models.ARCHITECTURES`) decides, through
its class's ``training_defaults``, what the loop feeds it and how it learns; the ``train`` block may
override each choice:

==========  ======================================  =========================================
            ``vqseg`` (Kobayashi et al. 2021)       ``dlrcnn`` (Li et al. 2017)
==========  ======================================  =========================================
sampler     ``slices``: whole slices + label maps   ``patches``: 33 x 33 patches, centre label
loss        ``dice+focal`` (+ the latent loss)      ``cross_entropy``
optimizer   ``adam``                                ``sgd`` (momentum, Nesterov)
==========  ======================================  =========================================

Every ``val_every`` epochs the network segments the held-out patients' whole slices (``net.segment``)
and the mean per-patient Dice is recorded; the bundle keeps the weights of the epoch with the best
validation Dice (``train.keep: best``; ``last`` keeps the final weights) and reports both. A
``checkpoint.pt`` (and ``best.pt``) in ``out_dir`` is written after every epoch and resumed from on the
next call. Runs are deterministic for a given seed on CPU (random numbers come from explicit generators;
deterministic algorithms are requested). On CUDA, ``train.amp`` runs the forward pass under autocast
(bfloat16 where supported, else float16 with gradient scaling).

Fine-tuning (``init=BUNDLE``) starts from a trained bundle (sha256 checked by
:func:`~deepradiomics.models.load_bundle`), keeps its architecture and preprocessing, and with
``freeze="encoder"`` trains only what the network's ``freeze`` method leaves trainable.

Logs go to ``logging.getLogger("deepradiomics.training")``; the progress bar (tqdm) to stderr.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ModelError, ParamsError, did_you_mean
from ..featureclass import plain_data
from ..nets.preprocess import Preprocessing
from ..nets.vq import perplexity
from .data import SliceSet, load_manifest_slices, split_cases
from .losses import hard_dice, loss_terms, segmentation_loss
from .samplers import make_sampler

log = logging.getLogger("deepradiomics.training")

DEFAULTS: dict[str, Any] = {
    "name": "model",
    "notes": None,  # free text for the model card: what follows the paper, what was chosen
    "license": "Derived from the training data: check the data's license before sharing this model.",
    "data": {
        "manifest": None,
        "modalities": [],  # list of {column, name}
        "mask_column": "Mask",
        "id_column": "ID",
        "label_map": {"nonzero": 1},
        "val_fraction": 0.15,
        "max_cases": None,
        "orientation": "axial",
        "normalization": "zscore-foreground",
        "input_size": None,  # null: the architecture's input_size if it has one, else the native size
    },
    # model: {type: vqseg | dlrcnn | ..., <keyword arguments of that class>}; checked against the class
    "model": {"type": "vqseg"},
    "train": {
        "epochs": 600,
        "batch_size": 16,
        "lr": 1e-4,
        "focal_gamma": 2.0,
        "seed": 0,
        "device": "cpu",
        "num_threads": None,
        "amp": True,
        "channels_last": False,
        "val_every": 1,
        "keep": "best",
        "train_metrics": True,  # also segment the training slices at the end (Dice, codebook usage)
        "sampler": None,  # null: the architecture's choice
        "loss": None,
        "optimizer": {"name": None, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
        "patches": {"size": 33, "tumour_fraction": 0.4, "per_epoch": 20000},
        "augment": {"flip": True, "max_rotation": 10.0, "intensity_shift": 0.1, "intensity_scale": [0.9, 1.1]},
    },
}
#: blocks whose keys are free (no defaults to check against)
_FREE_KEYS = ("label_map", "model")


def _merge(defaults: Mapping, values: Mapping, where: str) -> dict:
    out = copy.deepcopy(dict(defaults))
    for key, value in (values or {}).items():
        if key not in defaults:
            raise ParamsError(f"{where}: unknown key '{key}'.{did_you_mean(str(key), defaults)} Valid keys: {', '.join(defaults)}")
        if isinstance(defaults[key], Mapping) and isinstance(value, Mapping) and key not in _FREE_KEYS:
            out[key] = _merge(defaults[key], value, f"{where}.{key}")
        elif key == "model" and isinstance(value, Mapping):
            out[key] = {"type": defaults[key]["type"], **dict(value)}
        else:
            out[key] = value
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a training config (YAML 1.2, :func:`deepradiomics.yamlio.read_yaml`), fill defaults, resolve the manifest path.

    A relative ``data.manifest`` is relative to the config file's folder; the text as written is kept
    in ``data.manifest_as_written`` (for the model card, which must not show this machine's paths).
    """
    from ..data import shipped_params_file
    from ..yamlio import read_yaml

    path = Path(path)
    if not path.is_file():
        shipped = shipped_params_file(str(path))
        if shipped is None:
            raise ParamsError(f"training config '{path}' does not exist: give a file, or a shipped config (train_cpu, train_dlr, train_paper)")
        path = shipped
    raw = read_yaml(path, "training config") or {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    config = _merge(DEFAULTS, raw, str(path))
    return finalize_config(config, base=path.parent, where=str(path))


def finalize_config(config: dict[str, Any], base: Path | None = None, where: str = "config") -> dict[str, Any]:
    """Check the keys training needs; resolve ``data.manifest`` against ``base``."""
    data = config["data"]
    if data.get("manifest") is not None and base is not None:
        written = str(data["manifest"])
        manifest = Path(written).expanduser()
        data["manifest"] = str((base / manifest).resolve() if not manifest.is_absolute() else manifest)
        data["manifest_as_written"] = written if not manifest.is_absolute() else os.path.relpath(manifest, base.resolve())
    mods = data["modalities"]
    if not mods or not all(isinstance(m, Mapping) and "column" in m and "name" in m for m in mods):
        raise ParamsError(f"{where}: data.modalities must be a non-empty list of {{column: <manifest column>, name: <modality name>}}")
    if not data["label_map"]:
        raise ParamsError(f"{where}: data.label_map is empty; e.g. {{nonzero: 1}} maps mask > 0 to class 1")
    if not isinstance(config.get("model"), Mapping) or not config["model"].get("type"):
        raise ParamsError(f"{where}: model.type is missing: name an architecture, e.g. model: {{type: vqseg}}")
    if config["train"]["keep"] not in ("best", "last"):
        raise ParamsError(f"{where}: train.keep is '{config['train']['keep']}': use best or last")
    return config




def architecture(config: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """The complete ``architecture`` mapping stored in a bundle: ``type``, channels, classes, every argument.

    The model block's keys are checked against the architecture class's constructor (unknown keys are a
    ParamsError with a suggestion); arguments it does not give take the class's defaults, written out so
    that the bundle describes its network without depending on future defaults.
    """
    from ..models import architecture_class

    model = dict(config["model"])
    type_name = str(model.pop("type"))
    try:
        cls = architecture_class(type_name, f"{where}: model")
    except ModelError as exc:
        raise ParamsError(str(exc)) from exc
    params = inspect.signature(cls.__init__).parameters
    accepted = [name for name in params if name not in ("self", "in_channels", "num_classes")]
    for key in model:
        if key not in accepted:
            raise ParamsError(
                f"{where}: unknown key 'model.{key}' for architecture '{type_name}'.{did_you_mean(str(key), accepted)} "
                f"Valid keys: type, {', '.join(accepted)}"
            )
    arch: dict[str, Any] = {
        "type": type_name,
        "in_channels": len(config["data"]["modalities"]),
        "num_classes": 1 + max(int(v) for v in config["data"]["label_map"].values()),
    }
    for name in accepted:
        default = params[name].default
        arch[name] = model[name] if name in model else ({} if default is None else default)
    return plain_data(arch)


def preprocessing_for(config: Mapping[str, Any], arch: Mapping[str, Any], where: str = "config") -> Preprocessing:
    """The :class:`Preprocessing` of a config: data.orientation/normalization, the input size, the channel names.

    The input size is the architecture's ``input_size`` when it has one (the VQ network), else
    ``data.input_size`` (``null``: native size, the DLR network); both given and different is an error.
    """
    data = config["data"]
    size = data.get("input_size")
    if "input_size" in arch:
        if size is not None and int(size) != int(arch["input_size"]):
            raise ParamsError(
                f"{where}: data.input_size {size} differs from model.input_size {arch['input_size']}: remove data.input_size"
            )
        size = arch["input_size"]
    try:
        return Preprocessing(
            channels=tuple(str(m["name"]) for m in data["modalities"]),
            orientation=str(data["orientation"]),
            normalization=str(data["normalization"]),
            input_size=None if size is None else int(size),
        )
    except ValueError as exc:
        raise ParamsError(f"{where}: data: {exc}") from exc


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True, warn_only=True)


def amp_settings(device: str, amp: bool) -> tuple[bool, torch.dtype]:
    """(autocast on?, its dtype): mixed precision only on CUDA, bfloat16 where supported, else float16.

    On CPU the forward pass always runs in float32 (autocast disabled), whatever ``amp`` says.
    """
    enabled = bool(amp) and str(device).startswith("cuda") and torch.cuda.is_available()
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    return enabled, dtype


def make_optimizer(name: str, parameters, lr: float, options: Mapping[str, Any]) -> torch.optim.Optimizer:
    """``adam`` or ``sgd`` (momentum, Nesterov) over ``parameters``; ValueError for other names."""
    weight_decay = float(options.get("weight_decay") or 0.0)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        momentum = float(options.get("momentum") or 0.0)
        return torch.optim.SGD(
            parameters, lr=lr, momentum=momentum, nesterov=bool(options.get("nesterov")) and momentum > 0, weight_decay=weight_decay
        )
    raise ValueError(f"optimizer '{name}' is not adam or sgd")


@torch.no_grad()
def evaluate(net, data: SliceSet, device: str, chunk: int = 32) -> dict[str, Any]:
    """Per-patient Dice (3D, on the preprocessed slices) of ``net.segment``; codebook usage for VQ networks.

    Returns ``dice_mean`` (mean over patients of the mean Dice over foreground classes), ``dice_per_case``
    and, for networks with a codebook, ``codebook_usage`` (codewords used at least once) and ``perplexity``.
    """
    was_training = net.training
    net.eval()
    quantizer = getattr(net, "quantizer", None)
    counts = torch.zeros(quantizer.num_embeddings, dtype=torch.long) if quantizer is not None else None
    preds = []
    for start in range(0, len(data), chunk):
        x = data.images[start : start + chunk].to(device)
        if quantizer is not None:  # one encoder pass gives the codewords and the segmentation
            indices = net.codeword_indices(x)
            preds.append(net.decode(quantizer.embed(indices)).argmax(1).cpu())
            counts += torch.bincount(indices.flatten().cpu(), minlength=counts.numel())
        else:
            preds.append(net.segment(x).cpu())
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    per_case = {}
    for case in data.case_index.unique().tolist():
        rows = data.case_index == case
        per_case[data.case_ids[case]] = float(np.mean(hard_dice(pred[rows], data.labels[rows].long(), net.num_classes)))
    net.train(was_training)
    result: dict[str, Any] = {
        "dice_mean": float(np.mean(list(per_case.values()))) if per_case else float("nan"),
        "dice_per_case": per_case,
    }
    if counts is not None:
        result.update(codebook_usage=int((counts > 0).sum()), perplexity=perplexity(counts))
    return result


def _training_choice(cfg: Mapping[str, Any], net, key: str, fallback: str) -> str:
    value = cfg["optimizer"]["name"] if key == "optimizer" else cfg[key]
    return str(value or getattr(type(net), "training_defaults", {}).get(key, fallback))


def _save_atomic(payload: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def fit(
    net,
    train: SliceSet,
    val: SliceSet | None,
    train_cfg: Mapping[str, Any],
    out_dir: str | Path | None = None,
    progress: bool = True,
    data_init: bool = True,
) -> dict[str, Any]:
    """Train ``net`` on preloaded slices; resume from ``out_dir/checkpoint.pt`` if present.

    Parameters
    ----------
    net
        A network of :data:`deepradiomics.models.ARCHITECTURES` (``forward`` gives logits, or a dict
        with ``logits`` and optionally ``latent_loss``; ``segment`` gives labels).
    train, val
        Training and validation slices (validation: whole slices of held-out patients, or None).
    train_cfg
        The ``train`` block (missing keys take :data:`DEFAULTS`).
    out_dir
        Folder for ``checkpoint.pt`` / ``best.pt`` (None: no checkpoints).
    data_init
        Run the network's data-dependent initialisation before the first epoch (the input
        normalisation of patch networks); off when fine-tuning, which keeps the bundle's.

    Returns
    -------
    dict
        ``history`` (one entry per epoch), ``epochs``, ``train_seconds``, ``best_epoch``, ``best_dice``,
        ``last_epoch``, ``last_dice``, ``best_metrics``/``last_metrics`` (validation, with per-patient
        Dice) and ``kept`` (``best`` or ``last``: whose weights ``net`` holds on return).
    """
    loop = _TrainingLoop(net, train, val, _merge(DEFAULTS["train"], train_cfg, "train"), out_dir, progress)
    if not loop.resume():
        loop.initialise(data_init)
    for epoch in range(loop.start_epoch, loop.epochs):
        loop.run_epoch(epoch)
    return loop.finish()


class _TrainingLoop:
    """The state of one training run (:func:`fit`): set-up, resume, epochs, checkpoints, the kept weights."""

    def __init__(self, net, train: SliceSet, val: SliceSet | None, cfg: dict, out_dir, progress: bool) -> None:
        self.net, self.train, self.val, self.cfg, self.progress = net, train, val, cfg, progress
        self.device = device = str(cfg["device"])
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ParamsError(f"train.device is '{device}' but CUDA is not available: set train.device: cpu")
        if cfg["num_threads"]:
            torch.set_num_threads(int(cfg["num_threads"]))
        _set_seed(int(cfg["seed"]))
        self.generator = torch.Generator().manual_seed(int(cfg["seed"]))
        self.sampler_name = _training_choice(cfg, net, "sampler", "slices")
        self.loss_name = _training_choice(cfg, net, "loss", "dice+focal")
        self.optimizer_name = _training_choice(cfg, net, "optimizer", "adam")
        try:
            loss_terms(self.loss_name)
            self.sampler = make_sampler(self.sampler_name, train, cfg)
        except ValueError as exc:
            raise ParamsError(f"train: {exc}") from exc
        if getattr(self.sampler, "tumour_fraction", None) == 0.0 and cfg["patches"]["tumour_fraction"]:
            log.warning("the training slices hold no tumour pixel: every patch is centred on background")
        self.memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
        net.to(device).train()
        net.to(memory_format=self.memory_format)
        trainable = [p for p in net.parameters() if p.requires_grad]
        if not trainable:
            raise ParamsError("train: every parameter of the network is frozen: nothing to train")
        try:
            self.optimizer = make_optimizer(self.optimizer_name, trainable, float(cfg["lr"]), cfg["optimizer"])
        except ValueError as exc:
            raise ParamsError(f"train.optimizer: {exc}") from exc
        self.use_amp, self.amp_dtype = amp_settings(device, cfg["amp"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        log.info(
            "training %s: sampler %s, loss %s, optimizer %s (lr %g), %d trainable tensors, device %s%s",
            type(net).__name__, self.sampler_name, self.loss_name, self.optimizer_name, float(cfg["lr"]), len(trainable), device,
            f", autocast {self.amp_dtype}" if self.use_amp else "",
        )
        self.history: list[dict[str, Any]] = []
        self.start_epoch, self.elapsed, self.epochs = 0, 0.0, int(cfg["epochs"])
        self.best: dict[str, Any] = {"epoch": None, "dice": -1.0, "state": None, "metrics": None}
        self.last_metrics: dict[str, Any] | None = None
        self.checkpoint = Path(out_dir) / "checkpoint.pt" if out_dir else None
        self.best_file = Path(out_dir) / "best.pt" if out_dir else None
        if self.checkpoint:
            self.checkpoint.parent.mkdir(parents=True, exist_ok=True)

    def resume(self) -> bool:
        """Restore the state of ``checkpoint.pt`` (and ``best.pt``) when there is one; True when resumed."""
        if not (self.checkpoint and self.checkpoint.is_file()):
            return False
        state = torch.load(self.checkpoint, map_location=self.device, weights_only=True)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = json.loads(state["history"])
        self.last_metrics = json.loads(state.get("last_metrics") or "null")
        self.start_epoch, self.elapsed = int(state["epoch"]), float(state["elapsed"])
        if self.best_file.is_file():
            saved = torch.load(self.best_file, map_location="cpu", weights_only=True)
            self.best = {"epoch": int(saved["epoch"]), "dice": float(saved["dice"]), "state": saved["model"], "metrics": json.loads(saved["metrics"])}
        log.info("resuming from %s at epoch %d", self.checkpoint, self.start_epoch)
        return True

    def initialise(self, data_init: bool) -> None:
        """Data-dependent set-up of a fresh run: input normalisation (patch networks), class priors."""
        net, sampler = self.net, self.sampler
        if data_init and hasattr(net, "fit_input_normalization"):
            net.fit_input_normalization(sampler.sample(4096, self.generator).to(self.device))
            log.info("input normalisation from 4096 training samples: mean %s, std %s",
                     [round(float(v), 3) for v in net.input_mean], [round(float(v), 3) for v in net.input_std])
        if hasattr(net, "set_class_priors") and hasattr(sampler, "class_priors"):
            # the priors of the data being trained on, also when fine-tuning on new data
            sampled, natural = sampler.class_priors(int(net.num_classes))
            net.set_class_priors(sampled, natural)
            log.info("class frequencies: sampled %s, natural %s", [round(float(v), 4) for v in sampled], [round(float(v), 4) for v in natural])

    def _step(self, x, y) -> tuple[torch.Tensor, dict]:
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.use_amp):
            out = self.net(x)
        out = out if isinstance(out, Mapping) else {"logits": out}
        terms = segmentation_loss(self.loss_name, out["logits"], y, float(self.cfg["focal_gamma"]))
        if "latent_loss" in out:
            terms["latent"] = out["latent_loss"]
        loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, terms

    def run_epoch(self, epoch: int) -> None:
        """One epoch over the sampler's batches, then validation (every ``val_every``) and the checkpoint."""
        from tqdm import tqdm

        t0 = time.perf_counter()
        bar = tqdm(self.sampler.batches(self.generator), total=len(self.sampler), desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.progress, leave=False)
        quantizer = getattr(self.net, "quantizer", None)
        sums: dict[str, float] = {}
        seen = 0
        for x, y in bar:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            loss, terms = self._step(x, y)
            n = len(y)
            seen += n
            for key, value in (("loss", loss), *terms.items()):
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            postfix = {"loss": f"{float(loss.detach()):.3f}"}
            if quantizer is not None:
                postfix["ppl"] = f"{quantizer.last_perplexity:.0f}"
            bar.set_postfix(postfix)
        bar.close()
        entry: dict[str, Any] = {"epoch": epoch + 1, **{k: v / max(seen, 1) for k, v in sums.items()}}
        if "dice" in entry:
            entry["train_soft_dice"] = 1 - entry.pop("dice")
        if self.val is not None and len(self.val) and ((epoch + 1) % int(self.cfg["val_every"]) == 0 or epoch + 1 == self.epochs):
            self._validate(epoch, entry)
        entry["seconds"] = time.perf_counter() - t0
        self.elapsed += entry["seconds"]
        self.history.append(entry)
        log.info("epoch %s", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}))
        if self.checkpoint:
            self._save_checkpoint(epoch)

    def _validate(self, epoch: int, entry: dict) -> None:
        metrics = evaluate(self.net, self.val, self.device)
        entry.update({f"val_{k}": v for k, v in metrics.items() if k != "dice_per_case"})
        self.last_metrics = {"epoch": epoch + 1, **metrics}
        if metrics["dice_mean"] > self.best["dice"]:
            self.best = {
                "epoch": epoch + 1,
                "dice": float(metrics["dice_mean"]),
                "state": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
                "metrics": self.last_metrics,
            }
            if self.best_file:
                payload = {"model": self.best["state"], "epoch": self.best["epoch"], "dice": self.best["dice"], "metrics": json.dumps(self.last_metrics)}
                _save_atomic(payload, self.best_file)

    def _save_checkpoint(self, epoch: int) -> None:
        _save_atomic(
            {
                "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(self.history),
                "last_metrics": json.dumps(self.last_metrics),
                "epoch": epoch + 1,
                "elapsed": self.elapsed,
            },
            self.checkpoint,
        )

    def finish(self) -> dict[str, Any]:
        """Keep the best (or last) weights in the network and return what :func:`fit` returns."""
        kept = "last"
        if self.cfg["keep"] == "best" and self.best["state"] is not None:
            self.net.load_state_dict(self.best["state"])
            kept = "best"
        self.net.to(memory_format=torch.contiguous_format)
        self.net.eval()
        best, last = self.best, self.last_metrics
        return {
            "history": self.history,
            "epochs": self.epochs,
            "train_seconds": self.elapsed,
            "best_epoch": best["epoch"],
            "best_dice": best["dice"] if best["epoch"] is not None else None,
            "best_metrics": best["metrics"],
            "last_epoch": last["epoch"] if last else None,
            "last_dice": last["dice_mean"] if last else None,
            "last_metrics": last,
            "kept": kept,
            "sampler": self.sampler_name,
            "loss": self.loss_name,
            "optimizer": self.optimizer_name,
        }


def hardware_description(device: str, num_threads: int | None) -> str:
    """One line: OS, CPU, cores, torch version, GPU or CPU threads used."""
    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    else:
        text += f", CPU only, {num_threads or torch.get_num_threads()} torch thread(s)"
    return text


def portable_path(path: str | Path) -> str:
    """``path`` as written when relative; an absolute path relative to the working directory (cards show no machine paths)."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return Path(os.path.relpath(path, Path.cwd())).as_posix()
    except ValueError:  # another drive (Windows): the name is all that can be shown
        return path.name


def _bundle_reference(name_or_path: str | Path) -> str:
    from ..models import shipped_models

    text = str(name_or_path)
    return text if text in shipped_models() or text == "default" else portable_path(text)


def _constructor_defaults(kind: str) -> dict[str, Any]:
    """The keyword defaults of the network class of architecture ``kind`` (what a missing config key means)."""
    from ..models import architecture_class

    try:
        parameters = inspect.signature(architecture_class(kind).__init__).parameters.values()
    except (ModelError, TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _init_architecture(config: Mapping[str, Any], bundle, where: str) -> dict[str, Any]:
    """The architecture of a fine-tuning run: the init bundle's, after checking that the config agrees with it."""
    arch = dict(bundle.config["architecture"])
    wanted = str(config["model"]["type"])
    if wanted != bundle.architecture:
        raise ParamsError(
            f"{where}: model.type is '{wanted}' but the --init bundle '{bundle.name}' is a '{bundle.architecture}' network: "
            f"set model.type: {bundle.architecture} or start from a '{wanted}' bundle"
        )
    defaults = _constructor_defaults(bundle.architecture)
    for key, value in config["model"].items():
        # a key the (older) bundle does not record means the network's default for it, e.g. block: preact
        recorded = arch.get(key, defaults.get(key))
        if key != "type" and plain_data(value) != plain_data(recorded):
            raise ParamsError(
                f"{where}: model.{key} is {value!r} but the --init bundle '{bundle.name}' has {recorded!r}: "
                f"remove model.{key} (fine-tuning keeps the bundle's architecture)"
            )
    channels = len(config["data"]["modalities"])
    if channels != int(arch["in_channels"]):
        raise ParamsError(
            f"{where}: data.modalities lists {channels} channel(s) but the --init bundle '{bundle.name}' takes "
            f"{arch['in_channels']} ({', '.join(bundle.modalities)}): list the same modalities in that order"
        )
    classes = 1 + max(int(v) for v in config["data"]["label_map"].values())
    if classes != int(arch["num_classes"]):
        raise ParamsError(
            f"{where}: data.label_map gives {classes} classes but the --init bundle '{bundle.name}' has "
            f"{arch['num_classes']} (label_map {bundle.config.get('label_map')}): use a label map with as many classes"
        )
    return arch


def _init_preprocessing(config: Mapping[str, Any], bundle, where: str) -> Preprocessing:
    """The init bundle's preprocessing, with the config's channel names; config values that differ are an error."""
    spec = bundle.preprocessing
    data = config["data"]
    for key in ("orientation", "normalization", "input_size"):
        value = data.get(key)
        if value is not None and value != getattr(spec, key):
            raise ParamsError(
                f"{where}: data.{key} is {value!r} but the --init bundle '{bundle.name}' was trained with {getattr(spec, key)!r}: "
                f"remove data.{key} or set it to {getattr(spec, key)!r}"
            )
    return Preprocessing(
        channels=tuple(str(m["name"]) for m in data["modalities"]),
        orientation=spec.orientation,
        normalization=spec.normalization,
        input_size=spec.input_size,
    )


def _training_metrics(net, result: dict, train_set, val_set, validation_cases: list, training_cases: int, train_cfg: Mapping) -> dict[str, Any]:
    """The metrics of a finished training for ``metrics.json`` and the card."""
    device = str(train_cfg["device"])
    kept_metrics = result["best_metrics"] if result["kept"] == "best" else result["last_metrics"]
    metrics: dict[str, Any] = {
        "validation_dice_mean": kept_metrics["dice_mean"] if kept_metrics else None,
        "validation_dice_per_case": kept_metrics["dice_per_case"] if kept_metrics else None,
        "validation_dice_best": result["best_dice"],
        "best_epoch": result["best_epoch"],
        "validation_dice_last": result["last_dice"],
        "last_epoch": result["last_epoch"],
        "kept": result["kept"],
        "validation_cases": validation_cases,
        "training_cases": training_cases,
        "training_slices": len(train_set),
        "validation_slices": len(val_set),
    }
    if kept_metrics and "codebook_usage" in kept_metrics:
        metrics["codebook_usage_validation"] = kept_metrics["codebook_usage"]
        metrics["perplexity_validation"] = kept_metrics["perplexity"]
    if train_cfg["train_metrics"]:
        train_eval = evaluate(net, train_set, device)
        metrics["train_dice_mean"] = train_eval["dice_mean"]
        if "codebook_usage" in train_eval:
            metrics["codebook_usage_train"] = train_eval["codebook_usage"]
            metrics["perplexity_train"] = train_eval["perplexity"]
    metrics.update(
        epochs=result["epochs"],
        train_seconds=round(result["train_seconds"], 1),
        hardware=hardware_description(device, train_cfg["num_threads"]),
    )
    return metrics


def train_from_config(
    config_path: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    command: str | None = None,
    init: str | Path | None = None,
    freeze: str | None = None,
) -> dict[str, Any]:
    """Run a whole training from a config file and write the bundle to ``out_dir``; return its metrics.

    Parameters
    ----------
    config_path
        Training config (see ``params/train_cpu.yaml``, ``params/train_dlr.yaml``).
    out_dir
        Bundle folder (also holds ``checkpoint.pt``/``best.pt`` for resuming, ``history.json``, ``metrics.json``).
    command
        The command line recorded in the card (default: rebuilt from the arguments).
    init
        Fine-tune from this bundle (shipped name or folder): its architecture, weights and preprocessing.
    freeze
        ``"encoder"``: keep the encoder fixed while fine-tuning (needs ``init``; see the network's ``freeze``).
    """
    from ..models import build_network, load_bundle, save_bundle

    where = str(config_path)
    config = load_config(config_path)
    data_cfg, train_cfg = config["data"], config["train"]
    if freeze is not None and init is None:
        raise ParamsError("--freeze needs --init BUNDLE: freezing only makes sense for weights that were already trained")
    if train_cfg["num_threads"]:
        torch.set_num_threads(int(train_cfg["num_threads"]))
    _set_seed(int(train_cfg["seed"]))
    init_bundle = None
    if init is not None:
        init_bundle = load_bundle(init, device="cpu")
        arch = _init_architecture(config, init_bundle, where)
        spec = _init_preprocessing(config, init_bundle, where)
    else:
        arch = architecture(config, where)
        spec = preprocessing_for(config, arch, where)
    t_load = time.perf_counter()
    slices = load_manifest_slices(
        data_cfg["manifest"],
        [m["column"] for m in data_cfg["modalities"]],
        data_cfg["mask_column"],
        spec.input_size,
        data_cfg["label_map"],
        id_column=data_cfg["id_column"],
        max_cases=data_cfg["max_cases"],
        progress=progress,
        preprocessing=spec,
    )
    train_cases, val_cases = split_cases(len(slices.case_ids), float(data_cfg["val_fraction"]), int(train_cfg["seed"]))
    train_set, val_set = slices.subset(train_cases), slices.subset(val_cases)
    case_ids, n_slices = slices.case_ids, len(slices)
    del slices  # the two subsets are copies: keep the memory of one data set, not two
    log.info(
        "loaded %d slices of %d cases in %.0f s: %d training slices (%d cases), %d validation slices (%d cases)",
        n_slices, len(case_ids), time.perf_counter() - t_load, len(train_set), len(train_cases), len(val_set), len(val_cases),
    )
    if init_bundle is not None:
        net = init_bundle.model
    else:
        try:
            net = build_network(arch, where)
        except ModelError as exc:
            raise ParamsError(str(exc)) from exc
    frozen: list[str] = []
    if freeze is not None:
        try:
            frozen = net.freeze(freeze)
        except (ValueError, AttributeError) as exc:
            raise ParamsError(f"--freeze {freeze}: {exc}") from exc
        log.info("frozen: %d tensors (%s ...)", len(frozen), ", ".join(frozen[:3]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = fit(net, train_set, val_set if len(val_set) else None, train_cfg, out_dir=out_dir, progress=progress, data_init=init_bundle is None)
    metrics = _training_metrics(net, result, train_set, val_set, [case_ids[i] for i in val_cases], len(train_cases), train_cfg)
    init_info = None
    if init_bundle is not None:
        init_info = {"bundle": _bundle_reference(init), "name": init_bundle.name, "sha256": init_bundle.sha256, "freeze": freeze}
    (out_dir / "history.json").write_text(json.dumps(result["history"], indent=1))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    bundle_config: dict[str, Any] = {
        "name": config["name"],
        "format_version": 2,
        "architecture": arch,
        "modalities": [{"column": str(m["column"]), "name": str(m["name"])} for m in data_cfg["modalities"]],
        "preprocessing": spec.to_config(),
        "label_map": {str(k): int(v) for k, v in data_cfg["label_map"].items()},
    }
    if getattr(net, "quantizer", None) is not None:
        from .background import background_codewords

        bundle_config["background_codewords"] = background_codewords(net, train_set.images)
    bundle_config["training"] = {
        "config": portable_path(config_path),
        "train": plain_data(dict(train_cfg)),
        "seed": int(train_cfg["seed"]),
        "init": init_info,
    }
    bundle_config["metrics"] = {k: v for k, v in metrics.items() if k != "validation_dice_per_case"}
    if command is None:
        parts = ["deepradiomics train", portable_path(config_path), "-o", portable_path(out_dir)]
        if init is not None:
            parts += ["--init", _bundle_reference(init)]
        if freeze is not None:
            parts += ["--freeze", freeze]
        command = " ".join(parts)
    choices = {key: result[key] for key in ("sampler", "loss", "optimizer")}
    card = make_card(config, arch, spec, metrics, result["history"], command, where, init_info, frozen, bundle_config, choices)
    save_bundle(net, bundle_config, out_dir, card)
    return metrics


_DESCRIPTIONS = {
    "vqseg": (
        "VQ segmentation network (Kobayashi et al., Sci Rep 2021, \"Observing deep radiomics for the classification\n"
        "of glioma grades\"): 2D residual encoder -> vector quantizer (EMA codebook) -> decoder, trained on tumour\n"
        "segmentation. Used by the `vqhist` feature class (codeword histograms)."
    ),
    "dlrcnn": (
        "Patch-classification segmentation CNN of deep learning-based radiomics (Li et al., Sci Rep 2017, after\n"
        "Pereira et al., IEEE TMI 2016): six 3x3 convolutional layers with ReLU, two max-poolings, fully connected\n"
        "layers with dropout; trained on 33x33 patches labelled by their centre pixel, run fully convolutionally on\n"
        "whole slices. Its last convolutional layer (conv6) gives the descriptors of the `fisher` feature class."
    ),
}


def make_card(
    config: Mapping[str, Any],
    arch: Mapping[str, Any],
    spec: Preprocessing,
    metrics: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    command: str,
    config_path: str,
    init_info: Mapping[str, Any] | None = None,
    frozen: list[str] | None = None,
    bundle_config: Mapping[str, Any] | None = None,
    choices: Mapping[str, str] | None = None,
) -> str:
    """A model card that states what was measured and how (no absolute path; ``{sha256}`` is filled on save)."""

    def fmt(v):
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    data, train = config["data"], config["train"]
    type_name = str(arch["type"])
    mods = ", ".join(f"{m['name']} (manifest column {m['column']})" for m in data["modalities"])
    arch_lines = "\n".join(f"- {k}: {v}" for k, v in arch.items() if k != "type")
    val_cases = metrics.get("validation_cases") or []
    grid = f"{spec.input_size}x{spec.input_size} resized slices" if spec.input_size else "native slice grid (= the original image grid)"
    validated = [h for h in history if h.get("val_dice_mean") is not None]
    per_epoch = ", ".join(f"{h['epoch']}: {h['val_dice_mean']:.3f}" for h in validated)
    choices = dict(choices or {})
    sampler = choices.get("sampler") or train.get("sampler") or "architecture default"
    loss = choices.get("loss") or train.get("loss") or "architecture default"
    optimizer = choices.get("optimizer") or train["optimizer"].get("name") or "architecture default"
    lines = [
        f"# Model card: {config['name']}",
        "",
        _DESCRIPTIONS.get(type_name, f"A `{type_name}` segmentation network."),
        "",
        "## Data",
        f"- Manifest: `{data.get('manifest_as_written', data['manifest'])}` (as written in the training config, relative to its folder)",
        f"- Input modalities (channel order): {mods}",
        f"- Label mapping (mask value -> class): {dict(data['label_map'])}",
        f"- Preprocessing: {spec.to_config()}",
        f"- Training: {metrics.get('training_cases')} patients ({metrics.get('training_slices')} slices); validation: "
        f"{len(val_cases)} held-out patients ({metrics.get('validation_slices')} slices; split by patient, seed {train['seed']}):",
        f"  {', '.join(val_cases) or 'none'}",
        "",
        f"## Architecture (`{type_name}`)",
        arch_lines,
        "",
        "## Training",
        "```",
        command,
        "```",
        f"- Config: `{portable_path(config_path)}`; sampler: {sampler}; loss: {loss}; "
        f"optimizer: {optimizer}, lr {train['lr']}; batch {train['batch_size']}; "
        f"epochs {train['epochs']}; augmentation {dict(train['augment'] or {})}",
    ]
    if optimizer == "sgd":
        lines.append(f"- SGD: momentum {train['optimizer'].get('momentum')}, Nesterov {train['optimizer'].get('nesterov')}, weight decay {train['optimizer'].get('weight_decay')}")
    if sampler == "patches":
        lines.append(f"- Patches: {dict(train['patches'])}")
    if init_info:
        lines.append(
            f"- Fine-tuned from bundle `{init_info['bundle']}` (name {init_info['name']}, model.pt sha256 `{init_info['sha256']}`)"
            + (f"; frozen: {init_info['freeze']} ({len(frozen or [])} tensors)" if init_info.get("freeze") else "; nothing frozen")
        )
    lines += [
        "",
        "## Measured",
        f"- Validation Dice (mean over the {len(val_cases)} held-out patients of the per-patient 3D Dice, on the {grid}):",
        f"  best {fmt(metrics.get('validation_dice_best'))} at epoch {fmt(metrics.get('best_epoch'))}; "
        f"last {fmt(metrics.get('validation_dice_last'))} at epoch {fmt(metrics.get('last_epoch'))}; "
        f"the bundle holds the weights of the {metrics.get('kept')} epoch",
    ]
    if per_epoch:
        lines.append(f"- Validation Dice per validated epoch: {per_epoch}")
    if metrics.get("train_dice_mean") is not None:
        lines.append(f"- Training-set Dice (kept weights): {fmt(metrics.get('train_dice_mean'))}")
    if metrics.get("codebook_usage_train") is not None or metrics.get("codebook_usage_validation") is not None:
        lines.append(
            f"- Codebook usage (codewords used at least once): training slices {fmt(metrics.get('codebook_usage_train'))}, "
            f"validation slices {fmt(metrics.get('codebook_usage_validation'))} of {arch.get('num_embeddings')}"
        )
    if bundle_config and bundle_config.get("background_codewords"):
        top = ", ".join(f"{c} ({n} cells)" for c, n in bundle_config["background_codewords"][:3])
        lines.append(f"- Background codewords (all-zero input blocks of the training slices), most frequent first: {top}")
    lines += [
        f"- Training time: {float(metrics.get('train_seconds') or 0):.0f} s ({float(metrics.get('train_seconds') or 0) / 60:.1f} min) for "
        f"{metrics.get('epochs')} epochs, validation included",
        f"- Hardware: {metrics.get('hardware')}",
    ]
    if config.get("notes"):
        lines += ["", "## Notes", str(config["notes"]).strip()]
    lines += [
        "",
        "## Integrity",
        "- sha256 of model.pt: `{sha256}` (also in config.yaml; checked on every load)",
        "",
        "## License",
        str(config.get("license") or DEFAULTS["license"]).strip(),
        "",
    ]
    return "\n".join(lines)
