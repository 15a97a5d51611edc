"""Training of the VQ segmentation network from a YAML config, with resumable checkpoints.

``train_from_config(config_path, out_dir)`` reads the config, preloads the slices of the manifest,
splits them by case (held-out patients for validation), trains, and writes a model bundle
(:func:`deepradiomics.models.save_bundle`) to ``out_dir``. A ``checkpoint.pt`` in ``out_dir`` is written
after every epoch and resumed from on the next call. Runs are deterministic for a given seed on CPU
(random numbers come from explicit generators; deterministic algorithms are requested).
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ParamsError
from ..nets.vq import perplexity
from ..nets.vqseg import VQSegNet
from .augment import augment_batch
from .data import SliceSet, load_manifest_slices, split_cases
from .losses import focal_loss, hard_dice, soft_dice_loss

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "name": "vq-model",
    "data": {
        "manifest": None,
        "modalities": [],  # list of {column, name}
        "mask_column": "Mask",
        "id_column": "ID",
        "label_map": {"nonzero": 1},
        "val_fraction": 0.15,
        "max_cases": None,
    },
    "model": {
        "input_size": 256,
        "filters": [32, 64, 128, 128, 128, 128],
        "decoder_filters": [128, 128, 128, 128, 64, 32],
        "num_embeddings": 512,
        "embedding_dim": 64,
        "quantizer": {"commitment_cost": 1.0, "decay": 0.99, "epsilon": 1e-5, "kmeans_init": True, "dead_threshold": 0.0},
    },
    "train": {
        "epochs": 600,
        "batch_size": 16,
        "lr": 1e-4,
        "focal_gamma": 2.0,
        "seed": 0,
        "device": "cpu",
        "num_threads": None,
        "amp": True,
        "val_every": 1,
        "augment": {"flip": True, "max_rotation": 10.0, "intensity_shift": 0.1, "intensity_scale": [0.9, 1.1]},
    },
}


def _merge(defaults: Mapping, values: Mapping, where: str) -> dict:
    out = copy.deepcopy(dict(defaults))
    for key, value in (values or {}).items():
        if key not in defaults:
            from ..errors import did_you_mean

            raise ParamsError(
                f"{where}: unknown key '{key}'.{did_you_mean(str(key), defaults)} Valid keys: {', '.join(defaults)}"
            )
        if isinstance(defaults[key], Mapping) and isinstance(value, Mapping) and key not in ("label_map",):
            out[key] = _merge(defaults[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a training config (YAML, ``yaml.safe_load``), fill defaults, resolve the manifest path.

    A relative ``data.manifest`` is relative to the config file's folder.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"training config '{path}' does not exist: see params/train_cpu.yaml for an example")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    config = _merge(DEFAULTS, raw, str(path))
    return finalize_config(config, base=path.parent, where=str(path))


def finalize_config(config: dict[str, Any], base: Path | None = None, where: str = "config") -> dict[str, Any]:
    """Check the keys training needs; resolve ``data.manifest`` against ``base``."""
    data = config["data"]
    if data.get("manifest") is not None and base is not None:
        manifest = Path(data["manifest"]).expanduser()
        data["manifest"] = str((base / manifest).resolve() if not manifest.is_absolute() else manifest)
    mods = data["modalities"]
    if not mods or not all(isinstance(m, Mapping) and "column" in m and "name" in m for m in mods):
        raise ParamsError(
            f"{where}: data.modalities must be a non-empty list of {{column: <manifest column>, name: <modality name>}}"
        )
    if not data["label_map"]:
        raise ParamsError(f"{where}: data.label_map is empty; e.g. {{nonzero: 1}} maps mask > 0 to class 1")
    return config


def architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``architecture`` mapping stored in a bundle (and read by VQSegNet.from_config)."""
    model = config["model"]
    num_classes = 1 + max(int(v) for v in config["data"]["label_map"].values())
    return {
        "type": "VQSegNet",
        "in_channels": len(config["data"]["modalities"]),
        "num_classes": num_classes,
        "filters": [int(f) for f in model["filters"]],
        "decoder_filters": [int(f) for f in model["decoder_filters"]],
        "input_size": int(model["input_size"]),
        "num_embeddings": int(model["num_embeddings"]),
        "embedding_dim": int(model["embedding_dim"]),
        "quantizer": dict(model["quantizer"]),
    }


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True, warn_only=True)


@torch.no_grad()
def evaluate(net: VQSegNet, data: SliceSet, batch_size: int, device: str) -> dict[str, Any]:
    """Per-case Dice (3D, on the resized slices) of the argmax prediction, codebook usage and perplexity."""
    net.eval()
    counts = torch.zeros(net.quantizer.num_embeddings, dtype=torch.long)
    preds = []
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size].to(device)
        z_e = net.encode(x)
        idx = net.quantizer.quantize(z_e)
        logits = net.decode(net.quantizer.embed(idx))
        preds.append(logits.argmax(1).cpu())
        counts += torch.bincount(idx.flatten().cpu(), minlength=counts.numel())
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    per_case = {}
    for case in data.case_index.unique().tolist():
        rows = data.case_index == case
        per_case[data.case_ids[case]] = float(np.mean(hard_dice(pred[rows], data.labels[rows], net.num_classes)))
    net.train()
    return {
        "dice_mean": float(np.mean(list(per_case.values()))) if per_case else float("nan"),
        "dice_per_case": per_case,
        "codebook_usage": int((counts > 0).sum()),
        "perplexity": perplexity(counts),
    }


def fit(
    net: VQSegNet,
    train: SliceSet,
    val: SliceSet | None,
    train_cfg: Mapping[str, Any],
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``net`` on preloaded slices; resume from ``out_dir/checkpoint.pt`` if present.

    Returns a dict with ``history`` (one entry per epoch), ``epochs`` and ``train_seconds``.
    """
    from tqdm import tqdm

    cfg = _merge(DEFAULTS["train"], train_cfg, "train")
    device = str(cfg["device"])
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"train.device is '{device}' but CUDA is not available: set train.device: cpu")
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    _set_seed(int(cfg["seed"]))
    generator = torch.Generator().manual_seed(int(cfg["seed"]))
    net.to(device).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]))
    use_amp = bool(cfg["amp"]) and device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    aug = dict(cfg["augment"] or {})
    if "intensity_scale" in aug:
        aug["intensity_scale"] = tuple(aug["intensity_scale"])

    history: list[dict[str, Any]] = []
    start_epoch, elapsed = 0, 0.0
    checkpoint = Path(out_dir) / "checkpoint.pt" if out_dir else None
    if checkpoint:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = json.loads(state["history"])
        start_epoch, elapsed = int(state["epoch"]), float(state["elapsed"])
        print(f"resuming from {checkpoint} at epoch {start_epoch}", file=sys.stderr)

    epochs = int(cfg["epochs"])
    batch_size = int(cfg["batch_size"])
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=generator)
        bar = tqdm(
            range(0, len(order), batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
        )
        sums = {"loss": 0.0, "dice": 0.0, "focal": 0.0, "latent": 0.0, "n": 0}
        for start in bar:
            rows = order[start : start + batch_size]
            x, y = train.images[rows], train.labels[rows]
            x, y = augment_batch(x, y, generator, **aug)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                out = net(x)
            dice = soft_dice_loss(out["logits"], y)
            focal = focal_loss(out["logits"], y, float(cfg["focal_gamma"]))
            loss = dice + focal + out["latent_loss"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n = len(rows)
            sums["n"] += n
            for key, value in (("loss", loss), ("dice", dice), ("focal", focal), ("latent", out["latent_loss"])):
                sums[key] += float(value.detach()) * n
            bar.set_postfix(
                loss=f"{float(loss.detach()):.3f}",
                dice=f"{1 - float(dice.detach()):.3f}",
                ppl=f"{net.quantizer.last_perplexity:.0f}",
            )
        bar.close()
        entry = {k: sums[k] / max(sums["n"], 1) for k in ("loss", "dice", "focal", "latent")}
        entry["train_soft_dice"] = 1 - entry.pop("dice")
        entry["epoch"] = epoch + 1
        entry["seconds"] = time.perf_counter() - t0
        if val is not None and len(val) and ((epoch + 1) % int(cfg["val_every"]) == 0 or epoch + 1 == epochs):
            metrics = evaluate(net, val, batch_size * 2, device)
            entry.update({f"val_{k}": v for k, v in metrics.items() if k != "dice_per_case"})
        elapsed += time.perf_counter() - t0
        history.append(entry)
        print(
            "epoch " + json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}),
            file=sys.stderr,
            flush=True,
        )
        if checkpoint:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": json.dumps(history),
                    "epoch": epoch + 1,
                    "elapsed": elapsed,
                },
                tmp,
            )
            tmp.replace(checkpoint)
    net.eval()
    return {"history": history, "epochs": epochs, "train_seconds": elapsed}


def hardware_description(device: str, num_threads: int | None) -> str:
    import os

    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} CPU cores, torch {torch.__version__}"
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    else:
        text += f", CPU only, {num_threads or torch.get_num_threads()} torch thread(s)"
    return text


def train_from_config(
    config_path: str | Path, out_dir: str | Path, progress: bool = True, command: str | None = None
) -> dict[str, Any]:
    """Run a whole training from a config file and write the bundle to ``out_dir``; return the summary."""
    from ..models import save_bundle

    config = load_config(config_path)
    data_cfg, train_cfg = config["data"], config["train"]
    if train_cfg["num_threads"]:
        torch.set_num_threads(int(train_cfg["num_threads"]))
    _set_seed(int(train_cfg["seed"]))
    arch = architecture(config)
    t_load = time.perf_counter()
    slices = load_manifest_slices(
        data_cfg["manifest"],
        [m["column"] for m in data_cfg["modalities"]],
        data_cfg["mask_column"],
        arch["input_size"],
        data_cfg["label_map"],
        id_column=data_cfg["id_column"],
        max_cases=data_cfg["max_cases"],
        progress=progress,
    )
    train_cases, val_cases = split_cases(len(slices.case_ids), float(data_cfg["val_fraction"]), int(train_cfg["seed"]))
    train_set, val_set = slices.subset(train_cases), slices.subset(val_cases)
    print(
        f"loaded {len(slices)} slices of {len(slices.case_ids)} cases in {time.perf_counter() - t_load:.0f} s: "
        f"{len(train_set)} training slices ({len(train_cases)} cases), {len(val_set)} validation slices ({len(val_cases)} cases)",
        file=sys.stderr,
    )
    net = VQSegNet.from_config(arch)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = fit(net, train_set, val_set, train_cfg, out_dir=out_dir, progress=progress)
    final = evaluate(net, val_set, int(train_cfg["batch_size"]) * 2, str(train_cfg["device"])) if len(val_set) else {}
    train_counts_eval = evaluate(net, train_set, int(train_cfg["batch_size"]) * 2, str(train_cfg["device"]))
    metrics = {
        "validation_dice_mean": final.get("dice_mean"),
        "validation_dice_per_case": final.get("dice_per_case"),
        "validation_cases": [slices.case_ids[i] for i in val_cases],
        "train_dice_mean": train_counts_eval["dice_mean"],
        "codebook_usage_train": train_counts_eval["codebook_usage"],
        "perplexity_train": train_counts_eval["perplexity"],
        "codebook_usage_validation": final.get("codebook_usage"),
        "perplexity_validation": final.get("perplexity"),
        "epochs": result["epochs"],
        "train_seconds": round(result["train_seconds"], 1),
        "hardware": hardware_description(str(train_cfg["device"]), train_cfg["num_threads"]),
    }
    (out_dir / "history.json").write_text(json.dumps(result["history"], indent=1))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    bundle_config = {
        "name": config["name"],
        "format_version": 1,
        "architecture": arch,
        "modalities": [dict(m) for m in data_cfg["modalities"]],
        "preprocessing": {
            "slices": "axial (numpy axis 0 of the (z, y, x) array)",
            "normalization": "z-score per modality over voxels > 0; voxels <= 0 set to 0",
            "resize": f"bilinear (antialiased when shrinking) to {arch['input_size']}x{arch['input_size']}",
            "input_size": arch["input_size"],
            "latent_size": 8,
        },
        "label_map": {str(k): int(v) for k, v in data_cfg["label_map"].items()},
        "training": {"config": str(config_path), "train": dict(train_cfg), "seed": int(train_cfg["seed"])},
        "metrics": {k: v for k, v in metrics.items() if k != "validation_dice_per_case"},
    }
    card = make_card(config, metrics, command or f"deepradiomics train {config_path} -o {out_dir}")
    save_bundle(net, bundle_config, out_dir, card)
    return metrics


def make_card(config: Mapping[str, Any], metrics: Mapping[str, Any], command: str) -> str:
    """A model card with the data, the command, the measured metrics and the sha256 placeholder."""

    def fmt(v):
        return "n/a" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    arch = architecture(config)
    mods = ", ".join(f"{m['name']} (manifest column {m['column']})" for m in config["data"]["modalities"])
    return f"""# Model card: {config["name"]}

VQ segmentation network (Kobayashi et al., Sci Rep 2021 "Observing deep radiomics for the classification
of glioma grades"): 2D residual encoder -> vector quantizer (K={arch["num_embeddings"]}, D={arch["embedding_dim"]},
EMA codebook) -> decoder, trained on tumour segmentation. Used by the `vqhist` feature class.

## Data
- Manifest: `{config["data"]["manifest"]}`
- Input modalities (channel order): {mods}
- Label mapping (mask value -> class): {config["data"]["label_map"]}
- Validation: {len(metrics.get("validation_cases") or [])} held-out patients (split by case, seed {config["train"]["seed"]}):
  {", ".join(metrics.get("validation_cases") or [])}

## Architecture
- input {arch["input_size"]}x{arch["input_size"]}, encoder filters {arch["filters"]}, decoder filters {arch["decoder_filters"]},
  latent 8x8, codebook {arch["num_embeddings"]} x {arch["embedding_dim"]}, quantizer {arch["quantizer"]}

## Command
```
{command}
```

## Metrics (measured at the end of training)
- Validation Dice (mean over held-out patients, 3D on the resized slices): {fmt(metrics.get("validation_dice_mean"))}
- Training-set Dice: {fmt(metrics.get("train_dice_mean"))}
- Codebook usage (codewords used at least once) on the training slices: {fmt(metrics.get("codebook_usage_train"))} / {arch["num_embeddings"]};
  perplexity {fmt(metrics.get("perplexity_train"))}
- Codebook usage on the validation slices: {fmt(metrics.get("codebook_usage_validation"))}; perplexity {fmt(metrics.get("perplexity_validation"))}
- Epochs: {metrics.get("epochs")}; training time: {fmt(metrics.get("train_seconds"))} s
- Hardware: {metrics.get("hardware")}

## Integrity
- sha256 of model.pt: `{{sha256}}` (also in config.yaml; checked on every load)

## License
Trained on the LGG segmentation dataset (Buda et al. 2019; TCGA-LGG via TCIA), distributed under
CC BY-NC-SA 4.0: this model is a derived work for non-commercial research only, under the same terms.
"""
