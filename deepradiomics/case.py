"""Cases: named modalities, one mask, one label value.

Images are read lazily with SimpleITK (a NIfTI/NRRD/... file or a DICOM series folder) and checked:
3D, finite voxels whose squares stay finite, the same geometry as the mask, a mask of whole label values
within PyRadiomics' range that holds the label value.

Files are verified before SimpleITK reads them (:func:`verify_image_file`): ITK reads a
truncated ``.nii.gz`` or a corrupted MetaImage as a valid image with fewer voxels or wrong values, so the
whole compressed stream is decompressed once and its end-of-stream marker and checksum (gzip: CRC32 and
length; zlib: Adler-32) are checked. That covers gzip files (``.nii.gz``, ``.nrrd.gz``, ...), NRRD with
``encoding: gzip`` or ``bzip2`` (attached or detached data), and MetaImage with ``CompressedData = True``.
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

#: largest voxel magnitude accepted: the square of anything larger overflows float64 (energy, variance)
MAX_ABS_VOXEL = 1e150
#: PyRadiomics casts masks to uint32 and takes labels as int: values outside 0..2**31-1 would alias
MAX_MASK_VALUE = 2**31 - 1
_CHUNK = 1 << 20


def read_image(source: ImageLike, role: str = "image"):
    """Read ``source`` as a 3D ``SimpleITK.Image`` and raise :class:`CaseError` naming the file.

    ``source`` may be a file path, a DICOM series folder or a ``SimpleITK.Image``. A compressed file is
    verified first (:func:`verify_image_file`).
    """
    import numpy as np
    import SimpleITK as sitk

    if isinstance(source, sitk.Image):
        image, where = source, f"the in-memory {role}"
    else:
        if isinstance(source, str) and not source.strip():
            # Path("") is the working directory, which would be read as an (empty) DICOM folder
            raise CaseError(f"the {role} path is empty (a blank manifest cell or argument): give the path of the {role} file")
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
                verify_image_file(path, where)
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
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise CaseError(f"{where} has {bad} NaN or infinite voxels: replace them (e.g. by 0) before extraction")
        largest = float(np.abs(array).max()) if array.size else 0.0
        if largest > MAX_ABS_VOXEL:
            raise CaseError(
                f"{where} has voxel values up to {largest:.3g}, beyond {MAX_ABS_VOXEL:.0e}: their squares overflow float64 "
                "(energy, variance); rescale the image to its physical units"
            )
    return image


# ------------------------------------------------------------------------------------------ file integrity
def verify_image_file(path: str | os.PathLike, where: str | None = None) -> None:
    """Raise :class:`CaseError` unless image file ``path`` is complete: one check before SimpleITK reads it.

    ITK reads a truncated ``.nii.gz``, a corrupted MetaImage or a short ``.nii`` as a valid image with fewer
    voxels or wrong values. So every compressed stream of the file is located (the whole file for gzip; the
    data after the header of an NRRD with ``encoding: gzip/bzip2`` or a MetaImage with ``CompressedData =
    True``, or their detached data files), decompressed to its end without keeping the output, and its
    end-of-stream marker and checksum are verified (gzip: CRC32 and length of every member; bzip2: block
    CRCs; zlib: Adler-32). A NIfTI file (plain or gzip) must then hold as many bytes as its header
    declares, and a floating-point NIfTI no NaN or infinite voxel (ITK's NIfTI reader turns them into 0).
    Cost: one extra decompression of the file (measured in README_failures).
    """
    path = Path(path)
    where = where or f"file '{path}'"
    streams = compressed_streams(path)
    for codec, data_path, offset in streams:
        payload = _Payload()
        problem = _stream_problem(codec, data_path, offset, payload)
        if problem:
            what = where if data_path == path else f"{where} (its data file '{data_path}')"
            raise CaseError(
                f"{what} is damaged: its {codec} stream {problem}; the file is truncated or corrupted "
                "(e.g. an interrupted copy or download): copy or export it again"
            )
        if data_path == path and offset == 0:
            _check_nifti(payload, where, f"its {codec} stream")
    if not streams:
        payload = _Payload()
        with open(path, "rb") as handle:
            payload.feed(handle.read(_NIFTI_HEAD))
            if payload.layout and payload.layout.float_dtype is not None:
                while chunk := handle.read(_CHUNK):  # a float NIfTI: its voxels are scanned for NaN
                    payload.feed(chunk)
        payload.length = max(payload.length, path.stat().st_size)
        _check_nifti(payload, where, "it")


def _check_nifti(payload: _Payload, where: str, subject: str) -> None:
    layout = payload.layout
    if not layout:
        return
    if payload.length < layout.expected_bytes:
        raise CaseError(
            f"{where} is damaged: {subject} holds {payload.length} bytes of NIfTI data where its header declares "
            f"{layout.expected_bytes} ({'x'.join(map(str, layout.dims))} voxels of {layout.bitpix} bits); the file is "
            "truncated: copy or export it again"
        )
    if payload.nonfinite:
        raise CaseError(
            f"{where} has {payload.nonfinite} NaN or infinite voxels (SimpleITK would read them as 0): replace them "
            "(e.g. by 0) before extraction"
        )


_NIFTI_HEAD = 544


@dataclass(frozen=True)
class _NiftiLayout:
    dims: tuple
    bitpix: int
    offset: int
    float_dtype: str | None  # numpy dtype of a floating-point NIfTI (None for other types)

    @property
    def expected_bytes(self) -> int:
        voxels = 1
        for dim in self.dims:
            voxels *= max(int(dim), 1)
        return self.offset + voxels * max(self.bitpix, 0) // 8


def _nifti_layout(head: bytes) -> _NiftiLayout | None:
    """Data layout of a single-file NIfTI-1 or NIfTI-2 header (None for anything else)."""
    import struct

    if len(head) < 348:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348 and head[344:348] == b"n+1\x00":
            ndim = struct.unpack(order + "h", head[40:42])[0]
            dims = struct.unpack(order + "8h", head[40:56])[1:1 + max(0, min(ndim, 7))]
            datatype, bitpix = struct.unpack(order + "2h", head[70:74])
            offset = int(struct.unpack(order + "f", head[108:112])[0])
        elif size == 540 and len(head) >= 540 and head[4:8] == b"n+2\x00":
            ndim = struct.unpack(order + "q", head[16:24])[0]
            dims = struct.unpack(order + "8q", head[16:80])[1:1 + max(0, min(ndim, 7))]
            datatype, bitpix = struct.unpack(order + "2h", head[12:16])
            offset = struct.unpack(order + "q", head[168:176])[0]
        else:
            continue
        float_dtype = {16: order + "f4", 64: order + "f8"}.get(datatype)
        return _NiftiLayout(tuple(int(d) for d in dims), int(bitpix), int(offset), float_dtype)
    return None


class _Payload:
    """What the (decompressed) bytes of an image file reveal, fed chunk by chunk: its first bytes, its length,
    its NIfTI layout, and the NaN or infinite voxels of a floating-point NIfTI."""

    def __init__(self) -> None:
        self.head = b""
        self.length = 0
        self.layout: _NiftiLayout | None = None
        self.nonfinite = 0
        self._carry = b""  # bytes of a voxel split between two chunks

    def feed(self, chunk: bytes) -> None:
        import numpy as np

        start = self.length
        self.length += len(chunk)
        if len(self.head) < _NIFTI_HEAD:
            self.head += chunk[: _NIFTI_HEAD - len(self.head)]
            if self.layout is None and len(self.head) >= 348:
                self.layout = _nifti_layout(self.head)
        layout = self.layout
        if layout is None or layout.float_dtype is None or self.length <= layout.offset:
            return
        data = self._carry + chunk[max(0, layout.offset - start):]
        itemsize = np.dtype(layout.float_dtype).itemsize
        usable = len(data) - len(data) % itemsize
        self._carry = data[usable:]
        values = np.frombuffer(data[:usable], dtype=layout.float_dtype)
        self.nonfinite += int(values.size - np.count_nonzero(np.isfinite(values)))


def compressed_streams(path: Path) -> list[tuple[str, Path, int]]:
    """``(codec, file, offset)`` of every compressed stream that SimpleITK would read for image ``path``."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head[:2] == b"\x1f\x8b":
        return [("gzip", path, 0)]
    if head[:4] == b"NRRD":
        return _nrrd_streams(path, head)
    if b"ElementDataFile" in head and b"CompressedData" in head:
        return _metaimage_streams(path, head)
    return []


def _header_fields(lines: list[str], separator: str) -> dict[str, str]:
    fields = {}
    for line in lines:
        if separator in line and not line.startswith("#"):
            key, value = line.split(separator, 1)
            fields[key.strip().lower()] = value.strip()
    return fields


def _nrrd_streams(path: Path, head: bytes) -> list[tuple[str, Path, int]]:
    end = head.find(b"\n\n")
    if end < 0:
        return []  # no complete header in the first 64 KiB: leave it to SimpleITK
    lines = head[:end].decode("latin-1").splitlines()
    fields = _header_fields(lines, ":")
    codec = {"gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}.get(fields.get("encoding", "raw").lower())
    if codec is None:
        return []
    detached = fields.get("data file", fields.get("datafile"))
    if detached is None:
        return [(codec, path, end + 2)]
    names = _nrrd_data_files(detached, head[end + 2:].decode("latin-1"))
    return [(codec, (path.parent / name), 0) for name in names]


def _nrrd_data_files(spec: str, after_header: str) -> list[str]:
    """File names of NRRD's ``data file`` field: one name, ``LIST`` (names follow the header) or a printf pattern."""
    parts = spec.split()
    if parts and parts[0] == "LIST":
        return [line.strip() for line in after_header.splitlines() if line.strip()]
    if len(parts) >= 4 and "%" in parts[0]:
        start, stop, step = (int(p) for p in parts[1:4])
        return [parts[0] % i for i in range(start, stop + (1 if step > 0 else -1), step)] if step else []
    return [spec]


def _metaimage_streams(path: Path, head: bytes) -> list[tuple[str, Path, int]]:
    marker = head.find(b"ElementDataFile")
    line_end = head.find(b"\n", marker)
    if line_end < 0:
        return []
    fields = _header_fields(head[:line_end].decode("latin-1").splitlines(), "=")
    if fields.get("compresseddata", "false").lower() != "true":
        return []
    data_file = fields.get("elementdatafile", "LOCAL")
    if data_file == "LOCAL":
        return [("zlib", path, line_end + 1)]
    if data_file.split()[0] == "LIST" or "%" in data_file:
        return []  # multi-file MetaImage: rare; SimpleITK reads it unverified
    return [("zlib", path.parent / data_file, 0)]


def _stream_problem(codec: str, path: Path, offset: int, payload: _Payload) -> str | None:
    """What is wrong with the compressed stream at ``offset`` of ``path`` (None when it is complete and intact).

    The decompressed bytes go to ``payload`` (gzip and zlib; bzip2 is only checked).
    """
    import zlib

    if not path.is_file():
        return f"has no data file: '{path}' does not exist"
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            if codec == "bzip2":
                return _bzip2_problem(raw)
            return _inflate_problem(raw, codec == "gzip", payload)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        return f"fails its check ({exc})"


def _inflate_problem(raw, gzip: bool, payload: _Payload) -> str | None:
    """Inflate a zlib (Adler-32) or gzip (CRC32 + length, every member) stream to its end into ``payload``."""
    import zlib

    wbits = 31 if gzip else 15  # 16 + 15: gzip header and trailer, checked by zlib itself
    decompressor = zlib.decompressobj(wbits)
    data = raw.read(_CHUNK)
    while True:
        if data:
            out = decompressor.decompress(data, _CHUNK)  # bounded output: memory stays at one chunk
            # at the end of a member the input left over is in unused_data (unconsumed_tail repeats it)
            data = b"" if decompressor.eof else (decompressor.unconsumed_tail or raw.read(_CHUNK))
        else:
            out = decompressor.flush()  # the file has ended: whatever the last input still yields
        payload.feed(out)
        if decompressor.eof:
            rest = decompressor.unused_data + data
            if len(rest) < 2:
                rest += raw.read(_CHUNK)
            if not (gzip and rest[:2] == b"\x1f\x8b"):
                return None  # trailing bytes after the last member are ignored, as zlib's gz reader does
            decompressor, data = zlib.decompressobj(wbits), rest  # a concatenated gzip file: next member
        elif not data and not out:
            return "ends before its end-of-stream marker"


def _bzip2_problem(raw) -> str | None:
    """Decompress a bzip2 stream to its end (block and stream CRCs checked by bz2), output discarded."""
    import bz2

    decompressor = bz2.BZ2Decompressor()
    while not decompressor.eof:
        data = raw.read(_CHUNK)
        if not data:
            return "ends before its end-of-stream marker"
        decompressor.decompress(data, _CHUNK)
        while not decompressor.eof and not decompressor.needs_input:
            decompressor.decompress(b"", _CHUNK)
    return None


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
        Everything done to the case, in order, each with a ``describe()`` method whose text goes into the
        diagnostics and the batch cache key. Two kinds, told apart by the transform's ``network_input``
        attribute: *image transforms* (:attr:`image_transforms`: callables ``t(image, case, name) -> image``,
        e.g. the image-domain perturbations of :mod:`deepradiomics.perturb`) are applied to every modality
        image after it is read and checked; *input transforms* (:attr:`input_transforms`, ``network_input``
        true: the input-domain perturbations) leave the images alone and are applied by each class that
        declares ``FeatureClass.network_input`` to the network input it forms. Both kinds live in this one
        tuple so that the cache key and the diagnostics, which describe ``transforms``, cover both.

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
        """The case's modality names (``Image`` first), as given."""
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
            _check_label_values(array, f"mask '{self.source('mask')}' of case '{self.case_id}'")
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
            image = read_image(self.modalities[name], "image" if name == MAIN_IMAGE else f"{name} image")
            mismatch = same_geometry(image, self.mask_image())
            if mismatch:
                raise CaseError(
                    f"{name} image '{self.source(name)}' and mask '{self.source('mask')}' of case '{self.case_id}' "
                    f"differ in geometry ({mismatch}): resample the mask onto the image grid"
                )
            for transform in self.image_transforms:
                image = transform(image, self, name)
            self._images[name] = image
        return self._images[name]

    @property
    def image_transforms(self) -> tuple:
        """The transforms applied to every modality image when it is read (those without ``network_input``)."""
        return tuple(t for t in self.transforms if not _is_input_transform(t))

    @property
    def input_transforms(self) -> tuple:
        """The transforms that classes declaring ``network_input`` apply to their own network input, in order
        (through :func:`deepradiomics.perturb.perturb_input`); the images are left as they are."""
        return tuple(t for t in self.transforms if _is_input_transform(t))

    def with_transforms(self, *transforms) -> Case:
        """A new case on the same files with ``transforms`` appended (nothing read or cached is shared)."""
        return Case(self.modalities, self.mask, self.label, self.case_id, tuple(self.transforms) + tuple(transforms))

    def with_input_transforms(self, *transforms) -> Case:
        """A new case with network-input ``transforms`` appended (e.g. ``perturbation("scale", 0.5, domain="input")``).

        CaseError for a transform that does not act on a network input (give it to :meth:`with_transforms`).
        """
        for transform in transforms:
            if not _is_input_transform(transform):
                what = transform.describe() if hasattr(transform, "describe") else repr(transform)
                raise CaseError(
                    f"case '{self.case_id}': {what} is an image transform, not a network-input transform: "
                    "give it to with_transforms, or build it with domain='input'"
                )
        return self.with_transforms(*transforms)

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


def _is_input_transform(transform) -> bool:
    """Whether a case transform acts on a class's network input (its ``network_input`` is true) rather than on images.

    Transforms are plain callables of any type, so the attribute is optional (absent: an image transform).
    """
    return bool(getattr(transform, "network_input", False))


def _check_label_values(array, where: str) -> None:
    """CaseError unless a label map holds whole numbers from 0 to 2**31 - 1.

    PyRadiomics casts the mask to uint32 and compares it with an int label: a fractional value (a resampled
    mask) is truncated and a value beyond the range wraps around, so its voxels would silently join or
    leave the region of interest.
    """
    import numpy as np

    if array.size == 0:
        return
    low, high = array.min(), array.max()
    if array.dtype.kind == "f":
        fractional = array != np.round(array)
        if fractional.any():
            raise CaseError(
                f"{where} holds {int(fractional.sum())} voxels with non-whole values (e.g. {float(array[fractional][0]):g}): "
                "a mask is a label map; round or threshold it (or resample it with nearest-neighbour interpolation)"
            )
    if low < 0 or high > MAX_MASK_VALUE:
        bad = high if high > MAX_MASK_VALUE else low
        raise CaseError(
            f"{where} holds label value {int(bad)}, outside 0 to {MAX_MASK_VALUE} (PyRadiomics casts masks to 32 bits, "
            "so such values alias other labels): relabel the mask with values 0 to 2147483647"
        )


def sitk_array(image):
    """The voxels of a SimpleITK image as a numpy array (z, y, x), a copy."""
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)
