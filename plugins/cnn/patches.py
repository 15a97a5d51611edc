"""ROI geometry of the ``cnn`` class: isotropic resampling, the regular grid of patch centres, patches.

All functions work on (z, y, x) numpy arrays, SimpleITK's array order.

- :func:`resample_to_roi_grid` puts the ROI's bounding box, widened by a margin, on an isotropic grid of
  the requested spacing (linear interpolation for the image, nearest neighbour for the mask; voxels
  beyond the image take the image's minimum, its background). When the image already has that spacing
  on every axis the voxels are copied, not interpolated, so the features see the stored values exactly.
- :func:`patch_centres` places a regular grid with step ``stride`` through the ROI voxel nearest to the
  ROI's centroid and keeps the grid points that are ROI voxels: every non-empty ROI has at least one
  patch, and the grid does not depend on the image's extent beyond the ROI.
- :func:`extract_patches` cuts the cubes of side p around the centres: voxels
  ``c - p // 2 ... c - p // 2 + p - 1`` along each axis (for even p the centre voxel is the upper of the
  two central ones).
- :func:`scale_patches` maps each patch linearly onto a range, by default [-127.5, 127.5] (its minimum to
  -127.5, its maximum to 127.5; the paper's "each patch is scaled to [-127.5, 127.5]", section 2.3, read as
  a linear map of the patch's own range); a constant patch becomes the range's midpoint (all zeros).
  Which range a network gets is its input convention's business (:mod:`.conventions`).

Examples
--------
>>> import numpy as np
>>> roi = np.zeros((5, 9, 9), bool); roi[1:4, 2:7, 2:7] = True
>>> patch_centres(roi, 2).tolist()
[[2, 2, 2], [2, 2, 4], [2, 2, 6], [2, 4, 2], [2, 4, 4], [2, 4, 6], [2, 6, 2], [2, 6, 4], [2, 6, 6]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: relative tolerance under which an image spacing counts as equal to the requested one (no resampling)
SPACING_TOLERANCE = 1e-6


@dataclass
class ROIGrid:
    """The ROI's neighbourhood on the isotropic grid.

    Attributes
    ----------
    roi
        Boolean (z, y, x) ROI on the grid, ``margin`` voxels of context on every side of its bounding box.
    spacing
        Voxel side in mm.
    margin
        Voxels of context around the ROI's bounding box.
    resampled
        False when the image already had the spacing and voxels are copied, True when interpolated.
    reference
        The SimpleITK grid (origin, spacing, direction, size) onto which modalities are resampled
        (``None`` when ``resampled`` is False).
    start
        Index (z, y, x) in the original image of the grid's first voxel (copy path only).
    """

    roi: np.ndarray
    spacing: float
    margin: int
    resampled: bool
    reference: object = None
    start: tuple[int, int, int] = (0, 0, 0)

    @property
    def roi_extent(self) -> tuple[int, int, int]:
        """Bounding-box side of the ROI in grid voxels (z, y, x)."""
        index = np.argwhere(self.roi)
        return tuple(int(v) for v in index.max(0) - index.min(0) + 1)


def _bbox(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    index = np.argwhere(array)
    return index.min(0), index.max(0)


def make_roi_grid(mask_image, roi: np.ndarray, spacing: float, margin: int) -> ROIGrid:
    """The isotropic grid of side ``spacing`` covering the ROI's bounding box plus ``margin`` voxels.

    Parameters
    ----------
    mask_image
        The case's mask as a SimpleITK image (geometry only).
    roi
        Boolean (z, y, x) ROI array on the mask's grid (non-empty).
    spacing
        Voxel side of the grid, mm.
    margin
        Voxels of context kept around the ROI's bounding box.
    """
    import SimpleITK as sitk

    lo, hi = _bbox(roi)
    image_spacing = np.array(mask_image.GetSpacing()[::-1], dtype=np.float64)  # (z, y, x)
    if np.allclose(image_spacing, spacing, rtol=SPACING_TOLERANCE, atol=0):
        start = lo - margin
        stop = hi + margin + 1
        return ROIGrid(_crop(roi, start, stop, False), float(spacing), margin, False, None, tuple(int(v) for v in start))
    # grid in the image's own frame (same direction) tiling the ROI box's physical footprint (its voxels'
    # extent, half a voxel beyond the outer centres), plus the margin: every grid point that the nearest
    # neighbour maps to a ROI voxel lies inside the footprint, so the margin stays free for the patches
    footprint_mm = (hi - lo + 1) * image_spacing
    size_zyx = np.ceil(footprint_mm / spacing - 1e-9).astype(int) + 2 * margin
    start_mm_zyx = (lo - 0.5) * image_spacing + spacing / 2 - margin * spacing
    direction = np.array(mask_image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.array(mask_image.GetOrigin(), dtype=np.float64) + direction @ start_mm_zyx[::-1]
    reference = sitk.Image([int(v) for v in size_zyx[::-1]], sitk.sitkUInt8)
    reference.SetSpacing((float(spacing),) * 3)
    reference.SetOrigin(tuple(origin))
    reference.SetDirection(mask_image.GetDirection())
    roi_image = sitk.GetImageFromArray(roi.astype(np.uint8))
    roi_image.CopyInformation(mask_image)
    resampled = sitk.Resample(roi_image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return ROIGrid(sitk.GetArrayFromImage(resampled).astype(bool), float(spacing), margin, True, reference)


def roi_grid_voxels(mask_image, roi: np.ndarray, spacing: float, margin: int) -> int:
    """How many voxels :func:`make_roi_grid` would allocate for these arguments (computed without allocating them)."""
    if not roi.any():
        return 0
    lo, hi = _bbox(roi)
    image_spacing = np.array(mask_image.GetSpacing()[::-1], dtype=np.float64)
    if np.allclose(image_spacing, spacing, rtol=SPACING_TOLERANCE, atol=0):
        size = hi - lo + 1 + 2 * margin
    else:
        size = np.ceil((hi - lo + 1) * image_spacing / spacing - 1e-9) + 2 * margin
    return int(np.prod([int(v) for v in size], dtype=object))


def _crop(array: np.ndarray, start: np.ndarray, stop: np.ndarray, fill) -> np.ndarray:
    """``array[start:stop]`` along every axis, with ``fill`` where the box leaves the array."""
    shape = np.array(array.shape)
    inner_start = np.maximum(start, 0)
    inner_stop = np.minimum(stop, shape)
    inner = array[tuple(slice(a, b) for a, b in zip(inner_start, inner_stop))]
    pad = [(int(a - s), int(t - b)) for s, a, b, t in zip(start, inner_start, inner_stop, stop)]
    return np.pad(inner, pad, mode="constant", constant_values=fill)


def grid_volume(image, grid: ROIGrid) -> np.ndarray:
    """float32 (z, y, x) intensities of ``image`` on ``grid``; voxels beyond the image take its minimum."""
    import SimpleITK as sitk

    array = sitk.GetArrayViewFromImage(image)
    background = float(array.min())
    if not grid.resampled:
        start = np.array(grid.start)
        return _crop(np.asarray(array, dtype=np.float32), start, start + np.array(grid.roi.shape), background)
    resampled = sitk.Resample(image, grid.reference, sitk.Transform(), sitk.sitkLinear, background, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def patch_centres(roi: np.ndarray, stride: int) -> np.ndarray:
    """(n, 3) int indices of the grid points (step ``stride``, through the ROI voxel nearest the centroid) inside ``roi``.

    Ties for the nearest voxel go to the first in C order, so the grid is deterministic.
    """
    index = np.argwhere(roi)
    centroid = index.mean(0)
    anchor = index[np.argmin(((index - centroid) ** 2).sum(1))]
    lo, hi = index.min(0), index.max(0)
    axes = [np.arange(a - ((a - low) // stride) * stride, high + 1, stride) for a, low, high in zip(anchor, lo, hi)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return points[roi[points[:, 0], points[:, 1], points[:, 2]]]


def extract_patches(volume: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """float32 (n, size, size, size) cubes of ``volume`` around ``centres`` (see the module docstring).

    The caller guarantees that every cube lies inside ``volume`` (a margin of at least ``size // 2 + 1``).
    """
    starts = centres - size // 2
    if (starts < 0).any() or (starts + size > np.array(volume.shape)).any():
        raise ValueError(f"a patch of side {size} leaves the volume {volume.shape}: the margin is too small")
    windows = np.lib.stride_tricks.sliding_window_view(volume, (size, size, size))
    return np.ascontiguousarray(windows[starts[:, 0], starts[:, 1], starts[:, 2]], dtype=np.float32)


def scale_patches(patches, low: float = -127.5, high: float = 127.5):
    """Each patch of a (n, ...) torch tensor mapped linearly onto [low, high] by its own minimum and maximum.

    The default range is the paper's [-127.5, 127.5] (Avants et al. 2020, section 2.3); the other per-patch
    input conventions of :mod:`.conventions` pass their own. A constant patch becomes the range's midpoint
    (0 for the paper's range).
    """
    flat = patches.flatten(1)
    minimum = flat.amin(1)
    span = flat.amax(1) - minimum
    factor = (high - low) / span.clamp_min(1e-30)
    factor = factor.where(span > 0, factor.new_zeros(()))
    shape = (-1,) + (1,) * (patches.dim() - 1)
    # for the default range this is bit for bit (patches - min) * (255 / span) - 127.5: x + (-127.5) == x - 127.5
    scaled = (patches - minimum.view(shape)) * factor.view(shape) + low
    # a constant patch: 0 * anything + low would be low; the paper's scaling is undefined there, use the midpoint
    return scaled.where(span.view(shape) > 0, scaled.new_full((), (low + high) / 2))
