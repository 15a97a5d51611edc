"""Cases: named modalities, one mask, one label value.

Images are read lazily with SimpleITK (a NIfTI/NRRD/... file or a DICOM series folder) and checked:
3D, finite voxels, the same geometry as the mask, a non-empty mask at the label value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from .errors import CaseError

#: Name of the modality that the classical (PyRadiomics) classes read.
MAIN_IMAGE = "Image"

#: An image given as a path, a DICOM folder, or an already loaded ``SimpleITK.Image``.
ImageLike = Union[str, os.PathLike, "SimpleITK.Image"]  # noqa: F821

# Geometry tolerance, as PyRadiomics' default ``geometryTolerance`` (relative to spacing).
_GEOMETRY_TOLERANCE = 1e-3


def read_image(source: ImageLike, role: str = "image"):
    """Read ``source`` as a 3D ``SimpleITK.Image`` and raise :class:`CaseError` naming the file.

    ``source`` may be a file path, a DICOM series folder or a ``SimpleITK.Image``.
    """
    import numpy as np
    import SimpleITK as sitk

    if isinstance(source, sitk.Image):
        image, where = source, f"the in-memory {role}"
    else:
        path = Path(source)
        where = f"{role} file '{path}'"
        if not path.exists():
            raise CaseError(f"{where} does not exist: check the path (relative paths in a manifest are relative to the manifest's folder)")
        try:
            if path.is_dir():
                reader = sitk.ImageSeriesReader()
                series = reader.GetGDCMSeriesIDs(str(path))
                if not series:
                    raise CaseError(f"{role} folder '{path}' holds no DICOM series: give an image file or a folder of DICOM slices")
                if len(series) > 1:
                    raise CaseError(f"{role} folder '{path}' holds {len(series)} DICOM series ({', '.join(series)}): put one series per folder")
                reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
                image = reader.Execute()
            else:
                image = sitk.ReadImage(str(path))
        except CaseError:
            raise
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
            raise CaseError(f"cannot read {where}: not an image SimpleITK can read ({first_line})") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CaseError(
            f"{where} has {image.GetNumberOfComponentsPerPixel()} components per voxel (a colour or vector image): "
            "give one scalar image per modality"
        )
    if image.GetDimension() != 3:
        raise CaseError(f"{where} is {image.GetDimension()}D with size {image.GetSize()}; a 3D volume is expected (split 4D series into one file per volume)")
    array = sitk.GetArrayViewFromImage(image)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise CaseError(f"{where} has {bad} NaN or infinite voxels: replace them (e.g. by 0) before extraction")
    return image


def same_geometry(a, b, tolerance: float = _GEOMETRY_TOLERANCE) -> str | None:
    """Return ``None`` if ``a`` and ``b`` share size, spacing, origin and direction, else what differs."""
    import numpy as np

    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    spacing = np.array(a.GetSpacing())
    tol = tolerance * spacing.max()
    if not np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol):
        return f"spacing {a.GetSpacing()} vs {b.GetSpacing()}"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol):
        return f"origin {a.GetOrigin()} vs {b.GetOrigin()}"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance):
        return f"direction {a.GetDirection()} vs {b.GetDirection()}"
    return None


@dataclass
class Case:
    """One subject: named modalities, a mask and the label value of the region of interest.

    Parameters
    ----------
    modalities
        Mapping of modality name to image (path, DICOM folder or ``SimpleITK.Image``). ``"Image"`` is
        the one classical classes read; other names (``t1``, ``flair``, ...) are for deep classes.
    mask
        Label map (path or image) with the same geometry as every modality.
    label
        Value of the region of interest in ``mask``.
    case_id
        Identifier used for batch rows and messages.
    transforms
        Transforms applied, in order, to every modality image after it is read and checked (e.g. the
        intensity perturbations of :mod:`deepradiomics.perturb`): callables ``t(image, case, name) ->
        image`` with a ``describe()`` method whose text goes into the diagnostics and the batch cache key.

    Examples
    --------
    >>> case = Case({"Image": "flair.nii.gz", "t1": "t1.nii.gz"}, "mask.nii.gz")  # doctest: +SKIP
    >>> case.image("t1").GetSize()  # doctest: +SKIP
    (256, 256, 20)
    """

    modalities: Mapping[str, ImageLike]
    mask: ImageLike
    label: int = 1
    case_id: str = "case"
    transforms: tuple = ()
    _images: dict = field(default_factory=dict, init=False, repr=False)
    _mask_image: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise CaseError(f"case '{self.case_id}' has no image: give at least the main image")
        self.modalities = dict(self.modalities)
        try:
            self.label = int(self.label)
        except (TypeError, ValueError):
            raise CaseError(f"case '{self.case_id}': label value {self.label!r} is not an integer") from None

    @property
    def modality_names(self) -> list[str]:
        return list(self.modalities)

    def source(self, name: str) -> str:
        """Human-readable origin of a modality (its path) for messages and diagnostics."""
        value = self.modalities[name] if name != "mask" else self.mask
        return str(value) if isinstance(value, (str, os.PathLike)) else f"<in-memory {name}>"

    def mask_image(self):
        """The mask as ``SimpleITK.Image``, checked to contain the label value."""
        if self._mask_image is None:
            import numpy as np

            mask = read_image(self.mask, "mask")
            array = sitk_array(mask)
            if not np.any(array == self.label):
                present = np.unique(array)
                hint = f"values present: {present[:10].tolist()}" if np.any(present != 0) else "the mask is empty"
                raise CaseError(
                    f"mask '{self.source('mask')}' of case '{self.case_id}' has no voxel with label {self.label} "
                    f"({hint}): pass the right --label or fix the segmentation"
                )
            self._mask_image = mask
        return self._mask_image

    def image(self, name: str = MAIN_IMAGE):
        """Modality ``name`` as ``SimpleITK.Image``, checked against the mask geometry."""
        if name not in self.modalities:
            raise CaseError(
                f"case '{self.case_id}' has no modality '{name}' (it has: {', '.join(self.modalities)}): "
                f"add it with -m {name}=PATH on the command line or an 'Image_{name}' manifest column"
            )
        if name not in self._images:
            image = read_image(self.modalities[name], f"{name} image")
            mismatch = same_geometry(image, self.mask_image())
            if mismatch:
                raise CaseError(
                    f"{name} image '{self.source(name)}' and mask '{self.source('mask')}' of case '{self.case_id}' "
                    f"differ in geometry ({mismatch}): resample the mask onto the image grid"
                )
            for transform in self.transforms:
                image = transform(image, self, name)
            self._images[name] = image
        return self._images[name]

    def with_transforms(self, *transforms) -> Case:
        """A new case on the same files with ``transforms`` appended (nothing read or cached is shared)."""
        return Case(self.modalities, self.mask, self.label, self.case_id, tuple(self.transforms) + tuple(transforms))

    def diagnostics(self) -> dict:
        """``diagnostics_Case_*``: ROI volume (mm^3), number of axial slices, and the transforms applied."""
        import numpy as np

        from .naming import diagnostics_name

        mask = self.mask_image()
        voxels = int(np.count_nonzero(self.mask_array()))
        out = {
            diagnostics_name("Case", "RoiVolume"): float(voxels * np.prod(mask.GetSpacing())),
            diagnostics_name("Case", "Slices"): int(mask.GetSize()[2]),
        }
        if self.transforms:
            out[diagnostics_name("Case", "Transforms")] = "; ".join(t.describe() for t in self.transforms)
        return out

    def array(self, name: str = MAIN_IMAGE):
        """Modality ``name`` as a numpy array in SimpleITK's (z, y, x) order."""
        return sitk_array(self.image(name))

    def mask_array(self):
        """Boolean (z, y, x) array of the region of interest."""
        return sitk_array(self.mask_image()) == self.label

    def check(self, names=None) -> None:
        """Read and check the mask and the named modalities (all by default); raise CaseError."""
        self.mask_image()
        for name in names or self.modalities:
            self.image(name)


def sitk_array(image):
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)
