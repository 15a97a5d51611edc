"""Batch augmentation on (B, C, S, S) slices or patches, driven by a seeded torch.Generator.

Horizontal flip (p = 0.5), rotation by U(-max_rotation, +max_rotation) degrees (bilinear for images,
nearest for labels), and per-channel intensity scale U(0.9, 1.1) and shift U(-0.1, +0.1) applied to the
brain voxels only (x != 0) so that background stays exactly 0 as at inference time.

Labels are either label maps (B, S, S), transformed with the images, or one label per patch (B,), the
class of the patch's centre pixel: a flip or a rotation about the centre of an odd-sized patch keeps the
centre pixel where it is, so those labels are returned unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    flip: bool = True,
    max_rotation: float = 10.0,
    intensity_shift: float = 0.1,
    intensity_scale: tuple[float, float] = (0.9, 1.1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return augmented copies of images ``x`` and labels ``y`` (random numbers from ``generator``, on CPU).

    ``y`` is (B, S, S) (label maps, transformed with the images) or (B,) (centre-pixel labels, unchanged).
    """
    b, c = x.shape[:2]
    maps = y.dim() == 3
    dev = x.device

    def uniform(*shape, low=0.0, high=1.0):
        return (torch.rand(*shape, generator=generator) * (high - low) + low).to(dev)

    if flip:
        flips = uniform(b) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        if maps:
            y = torch.where(flips[:, None, None], y.flip(-1), y)
    if max_rotation > 0:
        theta_deg = uniform(b, low=-max_rotation, high=max_rotation)
        theta = theta_deg * math.pi / 180
        cos, sin = torch.cos(theta), torch.sin(theta)
        zeros = torch.zeros_like(cos)
        affine = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if maps:
            y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0].to(y.dtype)
    if intensity_shift > 0 or intensity_scale != (1.0, 1.0):
        scale = uniform(b, c, 1, 1, low=intensity_scale[0], high=intensity_scale[1])
        shift = uniform(b, c, 1, 1, low=-intensity_shift, high=intensity_shift)
        x = torch.where(x != 0, x * scale + shift, x)
    return x, y
