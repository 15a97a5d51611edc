"""Training samplers: what one epoch feeds the network. The architecture's config chooses one.

- :class:`SliceSampler` (``sampler: slices``): every training slice once per epoch, in a random order, as
  whole (B, C, S, S) slices with (B, S, S) label maps (the VQ network).
- :class:`PatchSampler` (``sampler: patches``): ``per_epoch`` square patches (33 x 33 for the DLR network)
  with the class of their centre pixel as the label (Pereira et al. 2016; Li et al. 2017). A fixed share
  of the patches (``tumour_fraction``, about 40% in Li et al.) is centred on a tumour pixel (any class > 0),
  drawn uniformly among all tumour pixels of the training slices; the others are centred on a non-tumour
  pixel drawn uniformly among those whose patch, widened to twice its size, reaches the brain (a pixel of
  any channel != 0). That band includes some all-background patches, so the network also learns to answer
  them, as whole-slice inference asks it to. Pixels outside a slice read as 0 (background), exactly as the
  zero padding of whole-slice inference.

Both draw every random number from the loop's ``torch.Generator``, so an epoch is reproducible and a
resumed run continues the same sequence; both apply :func:`~deepradiomics.training.augment.augment_batch`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from .augment import augment_batch
from .data import SliceSet


def _augment_kwargs(augment: Mapping[str, Any] | None) -> dict[str, Any]:
    kwargs = dict(augment or {})
    if "intensity_scale" in kwargs:
        kwargs["intensity_scale"] = tuple(float(v) for v in kwargs["intensity_scale"])
    return kwargs


class SliceSampler:
    """Whole slices, each once per epoch in a random order.

    Parameters
    ----------
    data
        The training slices.
    batch_size
        Slices per batch.
    augment
        Keyword arguments of :func:`~deepradiomics.training.augment.augment_batch`.
    """

    def __init__(self, data: SliceSet, batch_size: int, augment: Mapping[str, Any] | None = None) -> None:
        self.data = data
        self.batch_size = int(batch_size)
        self.augment = _augment_kwargs(augment)

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images (B, C, S, S), labels (B, S, S) int64) for one epoch."""
        order = torch.randperm(len(self.data), generator=generator)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            x, y = self.data.images[rows], self.data.labels[rows].long()
            yield augment_batch(x, y, generator, **self.augment)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random slices, not augmented (data-dependent initialisation)."""
        rows = torch.randint(len(self.data), (min(n, len(self.data)),), generator=generator)
        return self.data.images[rows]


class PatchSampler:
    """Square patches around sampled centre pixels, labelled with the centre pixel's class.

    Parameters
    ----------
    data
        The training slices (any size; patches beyond a slice's edge read 0).
    batch_size
        Patches per batch.
    size
        Patch side (odd): 33 for the DLR network.
    tumour_fraction
        Share of each batch centred on a tumour pixel (class > 0).
    per_epoch
        Patches per epoch.
    augment
        Keyword arguments of :func:`~deepradiomics.training.augment.augment_batch` (flips and rotations
        about the patch centre keep the centre label).
    """

    def __init__(
        self,
        data: SliceSet,
        batch_size: int,
        size: int = 33,
        tumour_fraction: float = 0.4,
        per_epoch: int = 20000,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        if size % 2 != 1:
            raise ValueError(f"patch size {size} must be odd (the label is the centre pixel)")
        if not 0.0 <= tumour_fraction <= 1.0:
            raise ValueError(f"tumour_fraction {tumour_fraction} must lie in [0, 1]")
        self.data = data
        self.batch_size = int(batch_size)
        self.size = int(size)
        self.per_epoch = int(per_epoch)
        self.augment = _augment_kwargs(augment)
        labels = data.labels
        self.tumour = torch.nonzero(labels.flatten() > 0).flatten()
        self.tumour_fraction = float(tumour_fraction) if len(self.tumour) else 0.0
        self.near_brain = self._near_brain(data.images, labels, self.size)
        self.n_near = int(self.near_brain.sum())
        if self.n_near == 0 and self.tumour_fraction < 1.0:
            raise ValueError("no non-tumour pixel near the brain in the training slices: are the images all zero?")

    @staticmethod
    def _near_brain(images: torch.Tensor, labels: torch.Tensor, size: int, chunk: int = 64) -> torch.Tensor:
        """Bool (N, H, W): non-tumour pixels within ``size`` pixels (a patch width) of a non-zero pixel."""
        out = torch.empty(labels.shape, dtype=torch.bool)
        for start in range(0, len(images), chunk):
            brain = (images[start : start + chunk].abs().amax(1) > 0).to(torch.int32)
            # brain pixels in the (2 size + 1)^2 window around each pixel, from an integral image: O(1) per
            # pixel, where a max-pool of that width costs (2 size + 1)^2 comparisons per pixel
            padded = F.pad(brain, (size + 1, size, size + 1, size))
            integral = padded.cumsum(1).cumsum(2)
            w = 2 * size + 1
            window = integral[:, w:, w:] - integral[:, :-w, w:] - integral[:, w:, :-w] + integral[:, :-w, :-w]
            out[start : start + chunk] = (window > 0) & (labels[start : start + chunk] == 0)
        return out

    def __len__(self) -> int:
        return math.ceil(self.per_epoch / self.batch_size)

    def class_priors(self, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sampled, natural) class frequencies (K,): of the patch centres, and of the candidate centre pixels.

        Tumour centres are drawn uniformly among tumour pixels, so class c > 0 makes up
        ``tumour_fraction * n_c / n_tumour`` of the patches and ``n_c / (n_near + n_tumour)`` of the
        candidate pixels (tumour pixels plus non-tumour pixels near the brain).
        """
        counts = torch.bincount(self.data.labels.view(-1)[self.tumour].long(), minlength=num_classes).double()[:num_classes]
        n_tumour = float(counts.sum())
        sampled = torch.zeros(num_classes, dtype=torch.float64)
        sampled[0] = 1.0 - self.tumour_fraction
        natural = counts / (self.n_near + n_tumour)
        natural[0] = self.n_near / (self.n_near + n_tumour)
        if n_tumour:
            sampled[1:] = self.tumour_fraction * counts[1:] / n_tumour
        return sampled, natural

    def centres(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Flat indices (n,) into (N, H, W) of ``n`` patch centres: round(n * tumour_fraction) on tumour pixels first."""
        n_tumour = int(round(n * self.tumour_fraction))
        picks = [self.tumour[torch.randint(len(self.tumour), (n_tumour,), generator=generator)]] if n_tumour else []
        needed = n - n_tumour
        flat_near = self.near_brain.view(-1)
        total = flat_near.numel()
        share = max(self.n_near / total, 1e-6)
        while needed > 0:
            # rejection sampling: uniform pixels, kept when they are non-tumour pixels near the brain
            draw = torch.randint(total, (int(needed / share * 1.2) + 16,), generator=generator)
            kept = draw[flat_near[draw]][:needed]
            picks.append(kept)
            needed -= len(kept)
        return torch.cat(picks) if picks else torch.zeros(0, dtype=torch.long)

    def patches(self, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches (n, C, size, size) centred on flat pixel indices ``centres`` and their centre labels (n,)."""
        n_slices, height, width = self.data.labels.shape
        slice_index = centres // (height * width)
        row = (centres // width) % height
        col = centres % width
        half = self.size // 2
        offsets = torch.arange(-half, half + 1)
        rows = row[:, None] + offsets  # (n, size)
        cols = col[:, None] + offsets
        inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
        gathered = self.data.images[
            slice_index[:, None, None], :, rows.clamp(0, height - 1)[:, :, None], cols.clamp(0, width - 1)[:, None, :]
        ]  # advanced indices first: (n, size, size, C)
        x = gathered.permute(0, 3, 1, 2) * inside[:, None].to(gathered.dtype)
        return x.contiguous(), self.data.labels.view(-1)[centres].long()

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (patches (B, C, size, size), centre labels (B,) int64) for one epoch."""
        for start in range(0, self.per_epoch, self.batch_size):
            n = min(self.batch_size, self.per_epoch - start)
            centres = self.centres(n, generator)
            centres = centres[torch.randperm(n, generator=generator)]
            x, y = self.patches(centres)
            yield augment_batch(x, y, generator, **self.augment)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` patches drawn as in training, not augmented (input normalisation statistics)."""
        return self.patches(self.centres(n, generator))[0]


def make_sampler(name: str, data: SliceSet, train_cfg: Mapping[str, Any]):
    """The sampler named ``name`` (``slices`` or ``patches``) for ``data``, configured from the ``train`` block."""
    if name == "slices":
        return SliceSampler(data, int(train_cfg["batch_size"]), train_cfg.get("augment"))
    if name == "patches":
        patches = dict(train_cfg.get("patches") or {})
        return PatchSampler(
            data,
            int(train_cfg["batch_size"]),
            size=int(patches.get("size", 33)),
            tumour_fraction=float(patches.get("tumour_fraction", 0.4)),
            per_epoch=int(patches.get("per_epoch", 20000)),
            augment=train_cfg.get("augment"),
        )
    raise ValueError(f"sampler '{name}' is not 'slices' or 'patches'")
