"""Slices of a manifest preloaded into memory, split into training and validation sets by case.

The whole LGG set (63 patients x 20-88 slices x 3 modalities at 128 x 128) is a few hundred MB of
float32, so slices are read, normalised and resized once (see :mod:`deepradiomics.nets.preprocess`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CaseError, ParamsError
from ..nets.preprocess import mask_to_slices, volume_to_slices


@dataclass
class SliceSet:
    """Preprocessed slices: images (N, C, S, S) float32, labels (N, S, S) int64, case index (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    case_index: torch.Tensor
    case_ids: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, cases: Sequence[int]) -> SliceSet:
        keep = torch.isin(self.case_index, torch.as_tensor(list(cases), dtype=torch.long))
        return SliceSet(self.images[keep], self.labels[keep], self.case_index[keep], self.case_ids)


def map_labels(mask: np.ndarray, label_map: Mapping) -> np.ndarray:
    """Mask values -> class indices. ``{"nonzero": 1}`` maps every value > 0 to class 1;
    otherwise ``{mask value: class}`` and unlisted values become background (0)."""
    out = np.zeros(mask.shape, dtype=np.int64)
    for key, cls in label_map.items():
        if str(key) == "nonzero":
            out[mask > 0] = int(cls)
        else:
            out[mask == int(key)] = int(cls)
    return out


def load_case_slices(
    paths: Sequence[Path], mask_path: Path | None, size: int, label_map: Mapping
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one case's modality files and mask; return (Z, C, S, S) images and (Z, S, S) labels."""
    import SimpleITK as sitk

    arrays = []
    for p in paths:
        if not Path(p).exists():
            raise CaseError(f"image file '{p}' does not exist: check the manifest (paths are relative to its folder)")
        arrays.append(sitk.GetArrayFromImage(sitk.ReadImage(str(p))))
    images = volume_to_slices(arrays, size)
    if mask_path is None:
        return images, torch.zeros(images.shape[0], size, size, dtype=torch.long)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))
    if mask.shape != arrays[0].shape:
        raise CaseError(
            f"mask '{mask_path}' has shape {mask.shape}, images {arrays[0].shape}: resample the mask onto the image grid"
        )
    return images, mask_to_slices(map_labels(mask, label_map), size)


def load_manifest_slices(
    manifest: str | Path,
    columns: Sequence[str],
    mask_column: str,
    size: int,
    label_map: Mapping,
    id_column: str = "ID",
    max_cases: int | None = None,
    progress: bool = True,
) -> SliceSet:
    """Preload every case of a manifest CSV (paths relative to the manifest's folder)."""
    import pandas as pd
    from tqdm import tqdm

    manifest = Path(manifest)
    if not manifest.exists():
        raise ParamsError(
            f"manifest '{manifest}' does not exist: fix data.manifest in the training config (relative paths are relative to the config file)"
        )
    table = pd.read_csv(manifest)
    missing = [c for c in [*columns, mask_column] if c not in table.columns]
    if missing:
        raise ParamsError(
            f"manifest '{manifest}' has no column(s) {missing}; it has {list(table.columns)}: fix data.modalities / data.mask_column"
        )
    if max_cases:
        table = table.iloc[:max_cases]
    root = manifest.parent
    images, labels, index, ids = [], [], [], []
    for i, row in enumerate(
        tqdm(table.itertuples(index=False), total=len(table), desc="loading slices", disable=not progress, file=None)
    ):
        row = row._asdict()
        x, y = load_case_slices([root / row[c] for c in columns], root / row[mask_column], size, label_map)
        images.append(x)
        labels.append(y)
        index.append(torch.full((x.shape[0],), i, dtype=torch.long))
        ids.append(str(row.get(id_column, i)))
    return SliceSet(torch.cat(images), torch.cat(labels), torch.cat(index), ids)


def split_cases(n_cases: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Random case-level (patient-level) split: (train case indices, validation case indices)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_cases)
    n_val = max(1, int(round(n_cases * val_fraction))) if val_fraction > 0 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())
