"""Preprocessing shared by training and feature extraction: volumes -> normalised, resized axial slices.

Each modality volume is z-scored over its voxels > 0 (the brain); voxels <= 0 (background) are set to 0
so that a slice outside the head is exactly all-zero, which lets inference answer it from a cache. Each
axial slice is then resized to S x S (bilinear, antialiased when shrinking).

Examples
--------
>>> import numpy as np
>>> vol = np.random.default_rng(0).integers(0, 255, (5, 40, 40)).astype("uint8")
>>> x = volume_to_slices([vol, vol], 32)
>>> tuple(x.shape)
(5, 2, 32, 32)
>>> back = slices_to_volume(x[:, 0], vol.shape)
>>> tuple(back.shape)
(5, 40, 40)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def zscore_foreground(volume: np.ndarray) -> np.ndarray:
    """float32 copy of ``volume`` z-scored over voxels > 0; other voxels are 0."""
    volume = np.asarray(volume, dtype=np.float32)
    brain = volume > 0
    out = np.zeros_like(volume)
    if brain.any():
        values = volume[brain]
        std = float(values.std())
        out[brain] = (values - float(values.mean())) / (std if std > 0 else 1.0)
    return out


def resize_slices(slices: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize (Z, C, H, W) to (Z, C, size, size); ``mode="nearest-exact"`` for label maps."""
    if slices.shape[-2:] == (size, size):
        return slices
    if mode == "bilinear":
        antialias = slices.shape[-1] > size or slices.shape[-2] > size
        return F.interpolate(slices, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return F.interpolate(slices, size=(size, size), mode=mode)


def volume_to_slices(arrays: Sequence[np.ndarray], size: int, normalize: bool = True) -> torch.Tensor:
    """Stack C co-registered (z, y, x) volumes into a float32 tensor (Z, C, size, size) of axial slices.

    Parameters
    ----------
    arrays
        One numpy volume per modality, in the order the model was trained on, all of the same shape.
    size
        S, the side of the square network input.
    normalize
        z-score each volume over its voxels > 0 (see the module docstring).
    """
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"modalities differ in shape: {sorted(shapes)}")
    vols = [zscore_foreground(a) if normalize else np.asarray(a, dtype=np.float32) for a in arrays]
    stacked = torch.from_numpy(np.stack(vols, axis=1))  # (Z, C, y, x)
    return resize_slices(stacked, size).contiguous()


def mask_to_slices(mask: np.ndarray, size: int) -> torch.Tensor:
    """Label volume (z, y, x) -> int64 (Z, size, size) by nearest-neighbour resizing."""
    m = torch.from_numpy(np.asarray(mask).astype(np.float32))[:, None]
    return resize_slices(m, size, mode="nearest-exact")[:, 0].round().long()


def mask_to_latent(mask: np.ndarray, size: int, latent_size: int = 8) -> torch.Tensor:
    """Boolean (Z, 8, 8): a latent cell is True if any mask pixel of its (S/8)x(S/8) block is set.

    The mask is first resized to S x S (nearest neighbour), exactly like the images.
    """
    m = mask_to_slices(np.asarray(mask) > 0, size).float()[:, None]
    return F.max_pool2d(m, kernel_size=size // latent_size)[:, 0] > 0


def slices_to_volume(maps: torch.Tensor | np.ndarray, shape: Sequence[int], mode: str = "bilinear") -> np.ndarray:
    """Map slice-level maps (Z, h, w) (a latent map, logits, a difference map...) back to the (z, y, x) grid.

    ``mode="nearest"`` keeps integer maps (codeword indices, labels) integer-valued.
    """
    t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).float()[:, None]
    z, y, x = shape
    if t.shape[0] != z:
        raise ValueError(f"{t.shape[0]} slice maps for a volume of {z} slices")
    if mode == "bilinear":
        out = F.interpolate(t, size=(y, x), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(t, size=(y, x), mode="nearest")
    return out[:, 0].cpu().numpy()
