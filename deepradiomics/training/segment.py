"""Tumour segmentation by a trained bundle, on the input's own grid (what `deepradiomics segment` runs).

The bundle's :class:`~deepradiomics.nets.preprocess.Preprocessing` turns the modality volumes into slices,
the network's ``segment`` gives per-class logits on the slice grid, the logits are resampled onto the
original in-plane grid (bilinear; nothing to do when the network works at the native size), the argmax
picks a class per voxel, and the inverse of the bundle's ``label_map`` turns classes back into mask values
(``{nonzero: 1}`` -> 1; when several values map to one class, the first listed stands for it).

One implementation for every caller: :func:`segment_images` (paths or images; ``deepradiomics segment``)
and :func:`segment_arrays` (arrays) form the slices and call :func:`segment_slices`, which the ``fisher``
class calls on the slices it already formed (``roi: segmentation``). None of them post-processes the
labels (Li et al. 2017 kept the largest connected region per slice and smoothed it with a 3D box filter;
the DLR bundles correct the class priors instead, see their model card). A segmentation without any
tumour voxel is returned as it is; the callers decide (``segment`` refuses to write it unless
``--allow-empty``; ``fisher`` raises a CaseError).

Examples
--------
>>> from deepradiomics.models import load_bundle  # doctest: +SKIP
>>> mask = segment_images(load_bundle("dlr-lgg-cpu"), {"Image": "flair.nii.gz", "t1ce": "t1ce.nii.gz"})  # doctest: +SKIP
>>> SimpleITK.WriteImage(mask, "mask.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import CaseError
from .data import class_values


def segment_arrays(bundle, arrays: Sequence[np.ndarray], chunk: int = 32) -> np.ndarray:
    """Label volume (z, y, x) of co-registered volumes ``arrays`` given in ``bundle.modalities`` order.

    The bundle's preprocessing forms the slices, then :func:`segment_slices` labels them on the volumes' grid.
    Returns mask values (the inverse label map), uint8 when they fit, else int32.
    """
    return segment_slices(bundle, bundle.preprocessing.slices(list(arrays)), np.shape(arrays[0]), chunk)


@torch.no_grad()
def segment_slices(bundle, slices, shape: Sequence[int], chunk: int = 32) -> np.ndarray:
    """Label volume on the (z, y, x) grid ``shape`` of preprocessed slices (N, C, S, S) of ``bundle``.

    What :func:`segment_arrays` (and so ``deepradiomics segment``) does once the slices are formed, shared
    with classes that already hold the network input (``fisher`` with ``roi: segmentation``): the
    network's class scores, resampled onto the original in-plane grid when the network works at another
    size (bilinear), the argmax per voxel, and the inverse of the bundle's ``label_map``.

    Parameters
    ----------
    bundle
        A loaded bundle whose network has ``segment(x, logits=True)`` and ``num_classes``.
    slices
        The network input, as ``bundle.preprocessing.slices`` gives it (torch tensor).
    shape
        The (z, y, x) shape of the volumes the slices were taken from.
    chunk
        Slices per forward pass.

    Returns
    -------
    numpy.ndarray
        Mask values of shape ``shape``, uint8 when they fit, else int32.
    """
    spec = bundle.preprocessing
    shape = tuple(int(n) for n in shape)
    net = bundle.model
    net.eval()
    device = next(net.parameters()).device
    per_class = []
    for start in range(0, len(slices), chunk):
        logits = net.segment(slices[start : start + chunk].to(device), logits=True).float().cpu()
        per_class.append(logits)
    logits = torch.cat(per_class) if per_class else torch.zeros(0, net.num_classes, *slices.shape[-2:])
    moved = list(shape)
    moved.insert(0, moved.pop(spec.axis))
    if tuple(logits.shape[-2:]) != tuple(moved[1:]):
        # class scores back onto the original in-plane grid before the argmax (smoother than resampling labels)
        logits = torch.stack([torch.from_numpy(spec.to_volume(logits[:, k], shape)) for k in range(logits.shape[1])], 1)
        classes = logits.argmax(1).numpy()  # (z, y, x) in the original axis order
    else:
        classes = np.moveaxis(logits.argmax(1).numpy(), 0, spec.axis)
    values = class_values(bundle.config.get("label_map") or {"nonzero": 1})
    top = max([0, *values.values()])
    out = np.zeros(classes.shape, dtype=np.uint8 if top < 256 else np.int32)
    for cls, value in values.items():
        out[classes == cls] = value
    return out


def segment_images(bundle, images: Mapping[str, object]):
    """Segment named modality images (paths or ``SimpleITK.Image``); a label image on the ``Image`` grid.

    ``images`` must name every modality of ``bundle.modalities`` (``Image`` is the main image); all are
    checked to share the main image's geometry, and the result copies it.
    """
    import SimpleITK as sitk

    from ..case import MAIN_IMAGE, read_image, same_geometry

    needed = bundle.modalities
    missing = [name for name in needed if name not in images]
    if missing:
        hint = " ".join(f"-m {n}=PATH" for n in missing if n != MAIN_IMAGE)
        raise CaseError(
            f"bundle '{bundle.name}' takes the modalities {', '.join(needed)} (channel order) and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not given: add {hint or 'IMAGE'}"
        )
    main_name = MAIN_IMAGE if MAIN_IMAGE in images else needed[0]
    reference = read_image(images[main_name], f"{main_name} image")
    arrays = []
    for name in needed:
        image = reference if name == main_name else read_image(images[name], f"{name} image")
        mismatch = same_geometry(image, reference)
        if mismatch:
            raise CaseError(f"{name} image '{images[name]}' and {main_name} image '{images[main_name]}' differ in geometry ({mismatch}): resample it onto the {main_name} grid")
        arrays.append(sitk.GetArrayFromImage(image))
    labels = sitk.GetImageFromArray(segment_arrays(bundle, arrays))
    labels.CopyInformation(reference)
    return labels


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """3D Dice of two boolean volumes (1.0 when both are empty)."""
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    denominator = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denominator == 0 else 2.0 * int((prediction & truth).sum()) / denominator
