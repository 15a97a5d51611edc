"""Preprocessing shared by training and feature extraction: volumes -> normalised, resized slices.

One implementation, described by a machine-readable :class:`Preprocessing` that every bundle stores as
the ``preprocessing`` block of its ``config.yaml`` and every feature class reads back::

    preprocessing:
      orientation: axial              # slices along numpy axis 0 of the (z, y, x) array
      normalization: zscore-foreground
      input_size: 128                 # each slice resized to 128 x 128 (null: native size)
      channels: [t1, Image, t1ce]     # case modality names, in channel order

Normalisations: ``zscore-foreground`` z-scores each modality volume over its voxels > 0 (the brain) and
sets voxels <= 0 (background) to 0, so that a slice outside the head is exactly all-zero, which lets
inference answer it from a cache; ``zscore`` uses every voxel; ``none`` keeps the values. Each slice is
then resized to S x S (bilinear, antialiased when shrinking).

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
>>> spec = Preprocessing(channels=("t1", "Image"), input_size=32)
>>> tuple(spec.slices([vol, vol]).shape)
(5, 2, 32, 32)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: slicing axis of each orientation in the (z, y, x) array of a SimpleITK image
ORIENTATIONS = {"axial": 0, "coronal": 1, "sagittal": 2}
NORMALIZATIONS = ("zscore-foreground", "zscore", "none")


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


def zscore(volume: np.ndarray) -> np.ndarray:
    """float32 copy of ``volume`` z-scored over all its voxels."""
    volume = np.asarray(volume, dtype=np.float32)
    std = float(volume.std())
    return (volume - float(volume.mean())) / (std if std > 0 else 1.0)


_NORMALIZERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "zscore-foreground": zscore_foreground,
    "zscore": zscore,
    "none": lambda volume: np.asarray(volume, dtype=np.float32),
}


@dataclass(frozen=True)
class Preprocessing:
    """How a network expects its input (the ``preprocessing`` block of a bundle's config.yaml).

    Parameters
    ----------
    channels
        Case modality names, in the network's channel order.
    orientation
        ``axial``, ``coronal`` or ``sagittal``: the array axis (0, 1 or 2 of (z, y, x)) that slices are taken along.
    normalization
        ``zscore-foreground``, ``zscore`` or ``none`` (see the module docstring), per modality volume.
    input_size
        Side S that each slice is resized to; ``None`` keeps the native size (fully convolutional networks).
    """

    channels: tuple[str, ...]
    orientation: str = "axial"
    normalization: str = "zscore-foreground"
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation '{self.orientation}' is not one of {', '.join(ORIENTATIONS)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization '{self.normalization}' is not one of {', '.join(NORMALIZATIONS)}")
        if self.input_size is not None and int(self.input_size) < 1:
            raise ValueError(f"input_size {self.input_size} must be a positive integer or null")

    @classmethod
    def from_config(cls, block: Mapping, where: str = "config.yaml") -> Preprocessing:
        """Read a ``preprocessing`` block; ModelError naming the key when it is malformed."""
        from ..errors import ModelError, did_you_mean

        if not isinstance(block, Mapping):
            raise ModelError(f"{where}: 'preprocessing' must be a mapping, got {type(block).__name__}")
        known = ("channels", "orientation", "normalization", "input_size")
        for key in block:
            if key not in known:
                raise ModelError(f"{where}: unknown key 'preprocessing.{key}'.{did_you_mean(str(key), known)} Known: {', '.join(known)}")
        channels = block.get("channels")
        if not isinstance(channels, (list, tuple)) or not channels:
            raise ModelError(f"{where}: preprocessing.channels must list the input modality names in channel order")
        try:
            size = block.get("input_size")
            return cls(
                channels=tuple(str(c) for c in channels),
                orientation=str(block.get("orientation", "axial")),
                normalization=str(block.get("normalization", "zscore-foreground")),
                input_size=None if size is None else int(size),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: preprocessing: {exc}") from exc

    def to_config(self) -> dict:
        """The block as written to config.yaml."""
        return {
            "orientation": self.orientation,
            "normalization": self.normalization,
            "input_size": self.input_size,
            "channels": list(self.channels),
        }

    @property
    def axis(self) -> int:
        """The array axis (z, y, x order) along which slices are taken."""
        return ORIENTATIONS[self.orientation]

    def normalize(self, volume: np.ndarray) -> np.ndarray:
        """One modality volume normalised as the network expects (float32, (z, y, x))."""
        return _NORMALIZERS[self.normalization](volume)

    def slices(self, arrays: Sequence[np.ndarray], normalize: bool = True):
        """Float32 tensor (N, C, S, S) of the slices of C co-registered (z, y, x) volumes (``channels`` order)."""
        import torch

        shapes = {tuple(np.shape(a)) for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"modalities differ in shape: {sorted(shapes)}")
        if len(arrays) != len(self.channels):
            raise ValueError(f"{len(arrays)} volumes given for {len(self.channels)} channels {list(self.channels)}")
        vols = [self.normalize(a) if normalize else np.asarray(a, dtype=np.float32) for a in arrays]
        stacked = torch.from_numpy(np.ascontiguousarray(np.stack([np.moveaxis(v, self.axis, 0) for v in vols], axis=1)))
        if self.input_size is None:
            return stacked.contiguous()
        return resize_slices(stacked, int(self.input_size)).contiguous()

    def labels(self, mask: np.ndarray):
        """Label volume (z, y, x) -> int64 (N, S, S) slices by nearest-neighbour resizing."""
        moved = np.moveaxis(np.asarray(mask), self.axis, 0)
        if self.input_size is None:
            import torch

            return torch.from_numpy(np.ascontiguousarray(moved).astype(np.int64))
        return mask_to_slices(moved, int(self.input_size))

    def to_volume(self, maps, shape: Sequence[int], mode: str = "bilinear") -> np.ndarray:
        """Slice maps (N, h, w) (logits, responses, labels...) back onto the (z, y, x) grid of ``shape``."""
        moved_shape = list(shape)
        moved_shape.insert(0, moved_shape.pop(self.axis))
        volume = slices_to_volume(maps, moved_shape, mode)
        return np.moveaxis(volume, 0, self.axis)


def resize_slices(slices, size: int, mode: str = "bilinear"):
    """Resize (Z, C, H, W) to (Z, C, size, size); ``mode="nearest-exact"`` for label maps."""
    import torch.nn.functional as F

    if slices.shape[-2:] == (size, size):
        return slices
    if mode == "bilinear":
        antialias = slices.shape[-1] > size or slices.shape[-2] > size
        return F.interpolate(slices, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return F.interpolate(slices, size=(size, size), mode=mode)


def volume_to_slices(arrays: Sequence[np.ndarray], size: int, normalize: bool = True):
    """Axial slices (Z, C, size, size) of C co-registered (z, y, x) volumes, z-scored over voxels > 0.

    The preprocessing of format-1 VQ bundles; :meth:`Preprocessing.slices` is the general form.
    """
    spec = Preprocessing(channels=tuple(str(i) for i in range(len(arrays))), input_size=size)
    return spec.slices(arrays, normalize=normalize)


def mask_to_slices(mask: np.ndarray, size: int):
    """Label volume (z, y, x) -> int64 (Z, size, size) by nearest-neighbour resizing."""
    import torch

    m = torch.from_numpy(np.asarray(mask).astype(np.float32))[:, None]
    return resize_slices(m, size, mode="nearest-exact")[:, 0].round().long()


def mask_to_latent(mask: np.ndarray, size: int, latent_size: int = 8):
    """Boolean (Z, 8, 8): a latent cell is True if any mask pixel of its (S/8)x(S/8) block is set.

    The mask is first resized to S x S (nearest neighbour), exactly like the images.
    """
    import torch.nn.functional as F

    m = mask_to_slices(np.asarray(mask) > 0, size).float()[:, None]
    return F.max_pool2d(m, kernel_size=size // latent_size)[:, 0] > 0


def slices_to_volume(maps, shape: Sequence[int], mode: str = "bilinear") -> np.ndarray:
    """Map slice-level maps (Z, h, w) (a latent map, logits, a difference map...) back to the (z, y, x) grid.

    ``mode="nearest"`` keeps integer maps (codeword indices, labels) integer-valued.
    """
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).float()[:, None]
    z, y, x = shape
    if t.shape[0] != z:
        raise ValueError(f"{t.shape[0]} slice maps for a volume of {z} slices")
    if mode == "bilinear":
        out = F.interpolate(t, size=(y, x), mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(t, size=(y, x), mode="nearest")
    return out[:, 0].cpu().numpy()
