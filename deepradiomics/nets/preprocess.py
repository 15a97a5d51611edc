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

Network-input transforms (the robustness hook): :meth:`Preprocessing.slices` takes ``input_transforms``,
objects with ``apply_input(x, *, mean, sd, foreground)`` (the input-domain perturbations of
:mod:`deepradiomics.perturb`), and applies them through :func:`perturb_input` to the slices once they are
formed (normalised and resized: exactly what the network consumes). Each channel's ``mean`` and ``sd`` are
those of the values its normalisation standardised: 0 and 1 by construction for ``zscore-foreground`` and
``zscore`` (so a shift at level s adds exactly s), the volume's foreground (voxels > 0) mean and standard
deviation for ``none``; ``foreground`` marks the input pixels that come from voxels > 0 of the channel's
volume (nearest-neighbour resized like a mask).

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

    def slices(self, arrays: Sequence[np.ndarray], normalize: bool = True, input_transforms: Sequence = ()):
        """Float32 tensor (N, C, S, S) of the slices of C co-registered (z, y, x) volumes (``channels`` order).

        ``input_transforms`` (e.g. the case's ``Case.input_transforms``) are applied to the finished slices,
        the network's input, with each channel's normalisation statistics (see the module docstring).
        """
        import torch

        shapes = {tuple(np.shape(a)) for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"modalities differ in shape: {sorted(shapes)}")
        if len(arrays) != len(self.channels):
            raise ValueError(f"{len(arrays)} volumes given for {len(self.channels)} channels {list(self.channels)}")
        vols = [self.normalize(a) if normalize else np.asarray(a, dtype=np.float32) for a in arrays]
        stacked = torch.from_numpy(np.ascontiguousarray(np.stack([np.moveaxis(v, self.axis, 0) for v in vols], axis=1)))
        out = stacked if self.input_size is None else resize_slices(stacked, int(self.input_size))
        if input_transforms:
            mean, sd = self.input_statistics(arrays, normalize)
            out = perturb_input(out, input_transforms, mean=mean, sd=sd, foreground=self.input_foreground(arrays))
        return out.contiguous()

    def input_statistics(self, arrays: Sequence[np.ndarray], normalize: bool = True):
        """Per-channel ``(mean, sd)`` (float32 tensors (1, C, 1, 1)) of the values each channel's normalisation
        standardised: 0 and 1 for the z-scorings (by construction, used exactly), the volume's foreground
        (voxels > 0; every voxel when none is) mean and standard deviation for ``none`` (sd 0 -> 1)."""
        import torch

        if normalize and self.normalization in ("zscore-foreground", "zscore"):
            return torch.zeros((1, len(arrays), 1, 1)), torch.ones((1, len(arrays), 1, 1))
        means, sds = [], []
        for array in arrays:
            values = np.asarray(array, dtype=np.float32)
            values = values[values > 0] if (values > 0).any() else values.ravel()
            sd = float(values.std()) if values.size else 0.0
            means.append(float(values.mean()) if values.size else 0.0)
            sds.append(sd if sd > 0 else 1.0)
        return torch.tensor(means, dtype=torch.float32).view(1, -1, 1, 1), torch.tensor(sds, dtype=torch.float32).view(1, -1, 1, 1)

    def input_foreground(self, arrays: Sequence[np.ndarray]):
        """Boolean (N, C, S, S): the input pixels that come from voxels > 0 of each channel's volume
        (the volume's foreground on the slice grid, nearest-neighbour resized like a mask)."""
        import torch

        return torch.stack([self.labels(np.asarray(a) > 0) > 0 for a in arrays], dim=1)

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


def perturb_input(x, transforms: Sequence, *, mean=None, sd=None, foreground=None, reduce_dims: Sequence[int] | None = None):
    """The network input ``x`` after each of ``transforms`` in order (``x`` itself when there is none).

    The one place where a class's network input is perturbed (robustness studies): every class that
    declares ``network_input`` calls it where it forms that input.

    Parameters
    ----------
    x
        The values the network consumes (a torch tensor).
    transforms
        Objects with ``apply_input(x, *, mean, sd, foreground)``: the input-domain perturbations of
        :mod:`deepradiomics.perturb` (``Case.input_transforms``).
    mean, sd
        The unperturbed input's foreground mean and standard deviation, broadcastable to ``x`` (one value
        per independently normalised unit: a channel volume, a patch). When None they are computed from
        ``x`` over ``foreground`` along ``reduce_dims`` (population sd; a unit without foreground uses all
        its values; sd 0 becomes 1).
    foreground
        Boolean tensor of ``x``'s shape: the values that come from the image's foreground (voxels > 0);
        None: every value.
    reduce_dims
        The dimensions that one unit's statistics run over (with ``mean``/``sd`` None); None: all.
    """
    if not transforms:
        return x
    if mean is None or sd is None:
        mean, sd = unit_statistics(x, foreground, reduce_dims)
    if foreground is None:
        import torch

        foreground = torch.ones_like(x, dtype=torch.bool)
    for transform in transforms:
        x = transform.apply_input(x, mean=mean, sd=sd, foreground=foreground)
    return x


def unit_statistics(x, foreground=None, reduce_dims: Sequence[int] | None = None):
    """``(mean, sd)`` of ``x`` over ``foreground`` along ``reduce_dims`` (kept as size-1 dimensions), in ``x``'s dtype.

    Population standard deviation, computed in float64; a unit without any foreground value uses all its
    values; a standard deviation of 0 becomes 1 (as the image-domain perturbations do).
    """
    import torch

    dims = tuple(range(x.dim())) if reduce_dims is None else tuple(reduce_dims)
    values = x.double()
    weights = torch.ones_like(values) if foreground is None else foreground.to(torch.float64).expand_as(values)
    counts = weights.sum(dims, keepdim=True)
    weights = torch.where(counts > 0, weights, torch.ones_like(weights))
    counts = weights.sum(dims, keepdim=True)
    mean = (values * weights).sum(dims, keepdim=True) / counts
    sd = (((values - mean) ** 2) * weights).sum(dims, keepdim=True).div(counts).sqrt()
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return mean.to(x.dtype), sd.to(x.dtype)


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
