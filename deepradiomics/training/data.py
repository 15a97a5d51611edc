"""Slices of a manifest preloaded into memory, split into training and validation sets by case.

Slices are read once and preprocessed by the bundle's :class:`~deepradiomics.nets.preprocess.Preprocessing`
(the same implementation that feature extraction and ``segment`` use). The whole LGG set (63 patients,
2,296 slices) is about 1.2 GB of float32 for two channels at the native 256 x 256, 0.45 GB for three
channels at 128 x 128; labels are kept as uint8.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..case import read_image
from ..errors import CaseError, ParamsError
from ..nets.preprocess import Preprocessing


@dataclass
class SliceSet:
    """Preprocessed slices: images (N, C, H, W) float32, labels (N, H, W) integer, case index (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    case_index: torch.Tensor
    case_ids: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, cases: Sequence[int]) -> SliceSet:
        """The slices of the cases with these indices (into ``case_ids``)."""
        keep = torch.isin(self.case_index, torch.as_tensor(list(cases), dtype=torch.long))
        return SliceSet(self.images[keep], self.labels[keep], self.case_index[keep], self.case_ids)

    @property
    def cases(self) -> list[int]:
        """Indices (into ``case_ids``) of the cases present."""
        return self.case_index.unique().tolist()


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


def class_values(label_map: Mapping) -> dict[int, int]:
    """The inverse of a label map: class index -> the mask value written for it (``nonzero`` -> 1).

    When several mask values map to one class, the first listed value stands for it.
    """
    inverse: dict[int, int] = {}
    for key, cls in label_map.items():
        inverse.setdefault(int(cls), 1 if str(key) == "nonzero" else int(key))
    return inverse


def _label_dtype(label_map: Mapping) -> torch.dtype:
    return torch.uint8 if max(int(v) for v in label_map.values()) < 256 else torch.int64


def load_case_slices(
    paths: Sequence[Path],
    mask_path: Path | None,
    size: int | None,
    label_map: Mapping,
    preprocessing: Preprocessing | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one case's modality files and mask; return (Z, C, H, W) images and (Z, H, W) labels.

    ``preprocessing`` says how (default: axial slices, z-score over voxels > 0, resized to ``size``;
    ``size=None`` keeps the native size).
    """
    import SimpleITK as sitk

    spec = preprocessing or Preprocessing(channels=tuple(str(p) for p in paths), input_size=size)
    arrays = []
    for p in paths:
        if not Path(p).exists():
            raise CaseError(f"image file '{p}' does not exist: check the manifest (paths are relative to its folder)")
        arrays.append(sitk.GetArrayFromImage(read_image(p, "training image")))  # verified: complete, finite, 3D
    try:
        images = spec.slices(arrays)
    except ValueError as exc:
        raise CaseError(f"case with image '{paths[0]}': {exc}: resample the modalities onto one grid") from exc
    if mask_path is None:
        return images, torch.zeros(images.shape[0], *images.shape[-2:], dtype=_label_dtype(label_map))
    mask = sitk.GetArrayFromImage(read_image(mask_path, "training mask"))
    if mask.shape != arrays[0].shape:
        raise CaseError(
            f"mask '{mask_path}' has shape {mask.shape}, images {arrays[0].shape}: resample the mask onto the image grid"
        )
    return images, spec.labels(map_labels(mask, label_map)).to(_label_dtype(label_map))


def load_manifest_slices(
    manifest: str | Path,
    columns: Sequence[str],
    mask_column: str,
    size: int | None,
    label_map: Mapping,
    id_column: str = "ID",
    max_cases: int | None = None,
    progress: bool = True,
    preprocessing: Preprocessing | None = None,
    cases: Sequence[str] | None = None,
) -> SliceSet:
    """Preload every case of a manifest CSV (paths relative to the manifest's folder).

    Parameters
    ----------
    columns, mask_column, id_column
        Manifest columns of the modalities (channel order), the mask and the case ID.
    size
        Side the slices are resized to (``None``: native size); ignored when ``preprocessing`` is given.
    label_map
        Mask value -> class (see :func:`map_labels`).
    max_cases
        Use only the first cases of the manifest.
    preprocessing
        How slices are made (default: axial, z-score over voxels > 0, resized to ``size``).
    cases
        Use only the cases with these IDs (in manifest order).
    """
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
    if cases is not None:
        if id_column not in table.columns:
            raise ParamsError(f"manifest '{manifest}' has no ID column '{id_column}' to select cases by")
        wanted = {str(c) for c in cases}
        absent = sorted(wanted - set(table[id_column].astype(str)))
        if absent:
            raise ParamsError(f"manifest '{manifest}' has no case(s) {absent[:5]}: give a manifest that lists them")
        table = table[table[id_column].astype(str).isin(wanted)]
    spec = preprocessing or Preprocessing(channels=tuple(columns), input_size=size)
    root = manifest.parent
    images, labels, index, ids = [], [], [], []
    for i, row in enumerate(
        tqdm(table.itertuples(index=False), total=len(table), desc="loading slices", disable=not progress, leave=False)
    ):
        row = row._asdict()
        x, y = load_case_slices([root / row[c] for c in columns], root / row[mask_column], None, label_map, spec)
        if images and x.shape[-2:] != images[0].shape[-2:]:
            raise ParamsError(
                f"manifest '{manifest}': case '{row.get(id_column, i)}' has {tuple(x.shape[-2:])} slices, the first case "
                f"{tuple(images[0].shape[-2:])}: set data.input_size to resize every slice to one size"
            )
        images.append(x)
        labels.append(y)
        index.append(torch.full((x.shape[0],), i, dtype=torch.long))
        ids.append(str(row.get(id_column, i)))
    if not images:
        raise ParamsError(f"manifest '{manifest}' lists no case to train on")
    return SliceSet(torch.cat(images), torch.cat(labels), torch.cat(index), ids)


def split_cases(n_cases: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Random case-level (patient-level) split: (train case indices, validation case indices)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_cases)
    n_val = max(1, int(round(n_cases * val_fraction))) if val_fraction > 0 else 0
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())
