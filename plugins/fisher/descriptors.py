"""Local descriptors of a segmentation network inside the ROI of every slice, at several scales.

What Li et al. (2017) describe: "we used 10 images with different scales for each tumor slice, and the
scale ratios ranged from 0.5 to 2"; "the features of the tumor regions were generated from the feature
maps from the last convolutional layer". Here, for each slice that holds ROI pixels and each scale s:

1. a window around the slice's ROI is cut from the preprocessed slice (the bundle's ``preprocessing``:
   normalisation, and for fixed-size networks the resize to S x S); pixels outside the slice are 0,
   the background value of the preprocessed domain and the network's own padding value;
2. the window is resized by s (bilinear, antialiased when shrinking) and goes through the network up to
   the descriptor layer, fully convolutionally;
3. the layer's positions whose centre pixel (``layer_geometry``: ``offset + stride * i``), mapped back to
   the slice, lies in the ROI (``region: roi``) or in the ROI's bounding box (``region: box``) give one
   D-dimensional descriptor each.

Windows (chosen here; the paper does not describe its crops):

- networks without a fixed input size (``preprocessing.input_size: null``, e.g. ``dlrcnn``): the ROI's
  bounding box in the slice, enlarged on every side by the layer's receptive-field radius at that scale
  (``ceil((rf - 1) / 2 / s) + 1`` pixels), so that every descriptor inside the ROI sees exactly what it
  would see on the whole slice, and started on a multiple of the layer's stride, so that at scale 1 the
  descriptors are exactly the whole-slice responses at the ROI positions; the window is resized to
  ``round(s * size)``;
- networks with a fixed input size S (e.g. ``vqseg``): the square of side ``round(S / s)`` pixels of the
  S x S slice centred on the ROI's bounding-box centre, resized to S x S (a zoom by s around the ROI);
  windows of one scale have the same size and run in batches.

``context: masked`` sets the pixels outside the ROI to 0 before the network (the ROI alone, on
background); ``context: image`` (default) keeps the surrounding image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPACINGS = ("geometric", "linear")


def scale_factors(count: int, smallest: float, largest: float, spacing: str = "geometric") -> np.ndarray:
    """``count`` scale ratios from ``smallest`` to ``largest``; ``geometric`` spaces them evenly in log scale.

    Examples
    --------
    >>> scale_factors(3, 0.5, 2.0).tolist()
    [0.5, 1.0, 2.0]
    >>> scale_factors(4, 0.5, 2.0, "linear").tolist()
    [0.5, 1.0, 1.5, 2.0]
    """
    if spacing not in SPACINGS:
        raise ValueError(f"scale spacing {spacing!r} is not one of {', '.join(SPACINGS)}")
    if count == 1:
        return np.array([float(smallest)])
    if spacing == "geometric":
        return np.geomspace(float(smallest), float(largest), int(count))
    return np.linspace(float(smallest), float(largest), int(count))


@dataclass(frozen=True)
class Box:
    """Inclusive bounding box of the ROI of slice ``z``: rows ``y0..y1``, columns ``x0..x1``."""

    z: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def extent(self) -> int:
        """The larger side of the box in pixels."""
        return max(self.y1 - self.y0 + 1, self.x1 - self.x0 + 1)


def roi_boxes(mask: np.ndarray) -> list[Box]:
    """Bounding boxes of the ROI in every slice of a boolean (Z, H, W) mask that has ROI pixels."""
    boxes = []
    for z in np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)):
        rows = np.flatnonzero(mask[z].any(axis=1))
        cols = np.flatnonzero(mask[z].any(axis=0))
        boxes.append(Box(int(z), int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])))
    return boxes


@dataclass(frozen=True)
class RoiSize:
    """The ROI's largest cross-section as the network sees it at one scale (the small-ROI check).

    A slice of H x W image pixels reaches the network resized to S x S (``zoom_y = S / H``, ``zoom_x = S / W``;
    1 for networks without a fixed input size), and its window is then scaled by ``scale`` (up to the
    rounding of the window side, see :func:`windows_for`). An ROI bounding box of ``h x w`` image pixels
    therefore spans ``h * zoom_y * scale`` x ``w * zoom_x * scale`` network-input pixels, and the layer's
    receptive field of ``rf`` network-input pixels covers ``rf / (zoom * scale)`` image pixels per axis.
    The ROI is *small* when, in every slice, both sides of its box are shorter than the receptive field:
    ``max(h * zoom_y, w * zoom_x) * scale < rf``, i.e. no descriptor position has a receptive field that
    the ROI spans in any direction, so every descriptor mostly sees what surrounds the ROI.
    """

    box: Box
    zoom_y: float
    zoom_x: float
    scale: float
    receptive_field: int

    @property
    def height(self) -> int:
        """Rows of the largest cross-section's box, in image pixels."""
        return self.box.y1 - self.box.y0 + 1

    @property
    def width(self) -> int:
        """Columns of the largest cross-section's box, in image pixels."""
        return self.box.x1 - self.box.x0 + 1

    @property
    def network_extent(self) -> float:
        """The box's larger side in network-input pixels at ``scale``."""
        return max(self.height * self.zoom_y, self.width * self.zoom_x) * self.scale

    @property
    def field_on_image(self) -> tuple[float, float]:
        """The receptive field at ``scale`` in image pixels (rows, columns)."""
        return self.receptive_field / (self.zoom_y * self.scale), self.receptive_field / (self.zoom_x * self.scale)

    @property
    def small(self) -> bool:
        """True when the box is shorter than the receptive field along both axes."""
        return self.network_extent < self.receptive_field

    def scale_needed(self) -> float:
        """The smallest scale at which the box reaches the receptive field (rounded up to 0.01)."""
        at_one = self.network_extent / self.scale
        return math.ceil(self.receptive_field / at_one * 100) / 100


def roi_size(roi: np.ndarray, input_size: int | None, scale: float, receptive_field: int) -> RoiSize | None:
    """The :class:`RoiSize` of the largest cross-section of a boolean (Z, H, W) ROI on the image grid.

    ``roi`` holds the slices along the network's slicing axis first, on the image's own in-plane grid
    (not the network's). None when the ROI is empty.
    """
    boxes = roi_boxes(np.asarray(roi, dtype=bool))
    if not boxes:
        return None
    size_y, size_x = roi.shape[-2:]
    zoom_y, zoom_x = (1.0, 1.0) if input_size is None else (int(input_size) / size_y, int(input_size) / size_x)
    largest = max(boxes, key=lambda b: max((b.y1 - b.y0 + 1) * zoom_y, (b.x1 - b.x0 + 1) * zoom_x))
    return RoiSize(largest, float(zoom_y), float(zoom_x), float(scale), int(receptive_field))


@dataclass(frozen=True)
class Window:
    """A window of slice ``box.z``: ``height`` x ``width`` pixels from (``top``, ``left``), resized to ``out_h`` x ``out_w``."""

    box: Box
    scale_index: int
    top: int
    left: int
    height: int
    width: int
    out_h: int
    out_w: int


def windows_for(boxes: Sequence[Box], scales: Sequence[float], receptive_field: int, input_size: int | None, stride: int = 1) -> list[Window]:
    """The window of every (ROI slice, scale) pair (see the module docstring).

    Windows of networks without a fixed input size start on a multiple of the layer's ``stride``, so that
    at scale 1 the layer's positions fall on the same pixels as on the whole slice (the same descriptors).
    """
    out = []
    for index, scale in enumerate(scales):
        for box in boxes:
            if input_size is None:
                margin = math.ceil((receptive_field - 1) / 2 / scale) + 1
                top, left = (box.y0 - margin) // stride * stride, (box.x0 - margin) // stride * stride
                height, width = box.y1 + 1 + margin - top, box.x1 + 1 + margin - left
                out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
            else:
                side = max(1, round(input_size / scale))
                centre_y, centre_x = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
                top, left = round(centre_y - (side - 1) / 2), round(centre_x - (side - 1) / 2)
                height = width = side
                out_h = out_w = int(input_size)
            out.append(Window(box, index, int(top), int(left), int(height), int(width), int(out_h), int(out_w)))
    return out


def cut(slice_: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """``slice_[..., top:top+height, left:left+width]`` with zeros where the window leaves the slice."""
    out = np.zeros((*slice_.shape[:-2], height, width), dtype=slice_.dtype)
    size_y, size_x = slice_.shape[-2:]
    y0, y1 = max(top, 0), min(top + height, size_y)
    x0, x1 = max(left, 0), min(left + width, size_x)
    if y0 < y1 and x0 < x1:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = slice_[..., y0:y1, x0:x1]
    return out


def source_pixels(centres: np.ndarray, size_in: int, size_out: int) -> np.ndarray:
    """Nearest input pixel of output pixels ``centres`` for a resize of ``size_in`` to ``size_out`` (align_corners=False)."""
    source = (centres + 0.5) * (size_in / size_out) - 0.5
    return np.clip(np.floor(source + 0.5), 0, size_in - 1).astype(np.int64)


def inside_positions(window: Window, geometry: dict, map_shape: tuple[int, int], mask: np.ndarray, region: str) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the layer positions of ``window`` whose centre maps into the ROI.

    ``mask`` is the boolean (H, W) ROI of the window's slice; ``region`` is ``roi`` (centre pixel in the
    ROI) or ``box`` (centre pixel in the ROI's bounding box).
    """
    stride, offset = int(geometry["stride"]), int(geometry["offset"])
    rows_out = offset + stride * np.arange(map_shape[0])
    cols_out = offset + stride * np.arange(map_shape[1])
    keep_rows = (rows_out >= 0) & (rows_out < window.out_h)
    keep_cols = (cols_out >= 0) & (cols_out < window.out_w)
    rows = window.top + source_pixels(rows_out, window.height, window.out_h)
    cols = window.left + source_pixels(cols_out, window.width, window.out_w)
    size_y, size_x = mask.shape
    keep_rows &= (rows >= 0) & (rows < size_y)
    keep_cols &= (cols >= 0) & (cols < size_x)
    box = window.box
    if region == "box":
        keep_rows &= (rows >= box.y0) & (rows <= box.y1)
        keep_cols &= (cols >= box.x0) & (cols <= box.x1)
        ii, jj = np.meshgrid(np.flatnonzero(keep_rows), np.flatnonzero(keep_cols), indexing="ij")
        return ii.ravel(), jj.ravel()
    ii, jj = np.meshgrid(np.flatnonzero(keep_rows), np.flatnonzero(keep_cols), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    hit = mask[rows[ii], cols[jj]]
    return ii[hit], jj[hit]


def extract(
    model,
    layer: str,
    slices,
    mask: np.ndarray,
    scales: Sequence[float],
    input_size: int | None,
    region: str = "roi",
    context: str = "image",
    batch_size: int = 32,
    device: str = "cpu",
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (N, D) float32 of the ROI of ``slices`` at every scale, and their count per scale.

    Parameters
    ----------
    model
        A network with ``features(x, layer)`` and ``layer_geometry(layer)`` (``dlrcnn``, ``vqseg``), in eval mode.
    layer
        The descriptor layer.
    slices
        Preprocessed slices (Z, C, H, W) (torch tensor or array), as the bundle's preprocessing gives them.
    mask
        Boolean (Z, H, W) ROI on the same grid.
    scales
        Scale ratios.
    input_size
        The network's fixed input side S, or None for networks without one (see the module docstring).
    region, context, batch_size, device
        See the module docstring; ``batch_size`` windows of equal size go through the network at once.
    channels_last
        Give the network its input in the channels-last memory format (for a network converted to it).
    """
    import torch
    import torch.nn.functional as F

    geometry = model.layer_geometry(layer)
    array = slices.numpy() if isinstance(slices, torch.Tensor) else np.asarray(slices, dtype=np.float32)
    windows = windows_for(roi_boxes(mask), scales, int(geometry["receptive_field"]), input_size, int(geometry["stride"]))
    groups: dict[tuple[int, int, int, int], list[Window]] = {}
    for window in windows:  # equal input and output sizes batch together (every window of a scale for fixed-size nets)
        groups.setdefault((window.height, window.width, window.out_h, window.out_w), []).append(window)
    pieces: list[np.ndarray] = []
    counts = np.zeros(len(scales), dtype=np.int64)
    with torch.inference_mode():
        for (height, width, out_h, out_w), members in groups.items():
            for start in range(0, len(members), int(batch_size)):
                batch = members[start : start + int(batch_size)]
                crops = np.stack([cut(array[w.box.z], w.top, w.left, height, width) for w in batch])
                if context == "masked":
                    crops *= np.stack([cut(mask[w.box.z], w.top, w.left, height, width) for w in batch])[:, None]
                x = torch.from_numpy(crops).to(device)
                if (out_h, out_w) != (height, width):
                    shrinking = out_h < height or out_w < width
                    x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False, antialias=shrinking)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                maps = model.features(x, layer).float().cpu().numpy()
                for window, responses in zip(batch, maps):
                    ii, jj = inside_positions(window, geometry, responses.shape[1:], mask[window.box.z], region)
                    if len(ii):
                        pieces.append(np.ascontiguousarray(responses[:, ii, jj].T))
                        counts[window.scale_index] += len(ii)
    depth = maps.shape[1] if windows else 0
    descriptors = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros((0, depth), np.float32)
    return descriptors, counts
