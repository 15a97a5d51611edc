"""``vqhist``: the VQ codeword histogram of Kobayashi et al. (Sci Rep 2021), a deep feature class.

Every axial slice of the case's modalities (preprocessed as the bundle's ``preprocessing`` block says:
for the shipped models, z-scored over voxels > 0 and resized to S x S) goes through the encoder of a
trained VQ segmentation network; each cell of the 8x8 latent grid is replaced by its nearest codeword.
The features count how often each of the K codewords occurs:

.. math:: \\text{Codeword}k = \\sum_{s=1}^{N_z} \\sum_{i,j=1}^{8} [\\, q_s(i,j) = k \\,]

over all slices :math:`s` and the whole latent grid, background included (``region: volume``, the
paper's definition; the counts sum to :math:`8 \\cdot 8 \\cdot N_z`). With ``region: roi`` only latent
cells whose (S/8) x (S/8) block of the resized slice contains at least one mask voxel are counted.
``normalize: frequency`` divides the counts by their sum (features ``FrequencyK``), which removes the
dependence of raw counts on the number of slices; ``both`` gives both sets of columns (two study
sub-families, ``vqhist-counts`` and ``vqhist-frequency``).

Settings
--------
model
    ``"default"`` (= ``vq-lgg-cpu``, shipped in the package), a shipped bundle's name, or a bundle folder
    (relative to the params file).
modalities
    The case's modality names feeding the model's channels, in the model's channel order; default: the
    bundle's own channel names. When the list names the bundle's channels in another order, they are
    mapped by name (and a warning says so); other names are taken positionally (your data's names).
region, normalize
    See above.
device, batch_size, channels_last
    Where the encoder runs; how many slices go through it at once, in which memory format. The defaults
    (one slice at a time, channels-last) were the fastest of batch sizes 1-32 in both memory formats in
    ``benchmarks/vqhist_speed.py`` on a 2-core CPU (batch 32 took 1.05x as long, contiguous 1.02-1.23x);
    on a GPU, where nothing was measured, a larger batch is likely faster. They change speed only, up to
    the floating-point summation order (2 of 9,920 latent cells of the benchmark's case changed codeword).
max_upsampling, on_small_image
    An image whose slices must be enlarged more than ``max_upsampling`` times to reach the model's input
    size is far from what the model was trained on: ``warn`` (default) logs it, ``error`` refuses it.

The class owns its pipeline: :attr:`VQHistogram.bundle`, :meth:`~VQHistogram.preprocess`,
:meth:`~VQHistogram.codeword_map`, :meth:`~VQHistogram.latent_roi`, :meth:`~VQHistogram.count_codewords`,
:meth:`~VQHistogram.background_codeword`; :mod:`deepradiomics_plugins.vqhist.explain` (responsible
regions by codeword ablation) uses only these.

Examples
--------
>>> from deepradiomics.case import Case
>>> case = Case({"Image": "flair.nii.gz", "t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz"}, "mask.nii.gz")  # doctest: +SKIP
>>> features = VQHistogram({"region": "volume"}).compute(case).features  # doctest: +SKIP
>>> sum(features.values()) == 64 * case.array("Image").shape[0]  # doctest: +SKIP
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from deepradiomics.errors import CaseError, FeatureError, ParamsError
from deepradiomics.featureclass import BundleSettings, ComputeResult, FeatureClass
from deepradiomics.models import BundledModel

logger = logging.getLogger("deepradiomics_plugins.vqhist")

#: the bundle that ``model: default`` names
DEFAULT_MODEL = "vq-lgg-cpu"


@dataclass(frozen=True)
class VQHistogramSettings(BundleSettings):
    """Settings of :class:`VQHistogram` (see the module docstring); ``model``, ``modalities`` and ``device``
    come from :class:`~deepradiomics.featureclass.BundleSettings`. Literal settings are checked by the
    generic settings check."""

    region: Literal["volume", "roi"] = "volume"
    normalize: Literal["counts", "frequency", "both"] = "counts"
    batch_size: int = 1
    channels_last: bool = True
    max_upsampling: float = 4.0
    on_small_image: Literal["warn", "error"] = "warn"

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")
        if not float(self.max_upsampling) >= 1:
            raise ValueError(f"max_upsampling: {self.max_upsampling} must be >= 1")


class VQHistogram(BundledModel, FeatureClass):
    """Codeword histogram of a VQ segmentation network (see the module docstring for the formula)."""

    name = "vqhist"
    family = "deep"
    Settings = VQHistogramSettings
    subfamilies = {"counts": r"Codeword\d+", "frequency": r"Frequency\d+"}
    histograms = {"counts": r"Codeword\d+", "frequency": r"Frequency\d+"}
    network_input = True  # preprocess() applies case.input_transforms to the slices fed to the encoder

    default_model = DEFAULT_MODEL
    architectures = ("vqseg",)  # a codebook network: its config.yaml is checked before any case (BundledModel.check)

    # ------------------------------------------------------------------ model (lazy; BundledModel)
    def _accept_bundle(self, bundle) -> None:
        if bundle.architecture != "vqseg":
            raise ParamsError(f"{self._where}.model: '{bundle.name}' is a '{bundle.architecture}' network, not a VQ network (vqseg)")

    @property
    def num_embeddings(self) -> int:
        """K, the size of the bundle's codebook."""
        return int(self._config()["architecture"]["num_embeddings"])

    def feature_names(self) -> list[str]:
        """``CodewordK`` (counts) and/or ``FrequencyK`` (counts / their sum), K zero-padded."""
        k = self.num_embeddings
        width = max(3, len(str(k - 1)))
        prefixes = {"counts": ["Codeword"], "frequency": ["Frequency"], "both": ["Codeword", "Frequency"]}[self.settings.normalize]
        return [f"{prefix}{i:0{width}d}" for prefix in prefixes for i in range(k)]

    # ------------------------------------------------------------------ pipeline
    def preprocess(self, case):
        """Network input (Z, C, S, S) of ``case``: its modalities preprocessed as the bundle was trained, then
        perturbed by the case's input transforms (robustness in the input domain; none: unchanged)."""
        spec = self.bundle.preprocessing
        arrays = [case.array(name) for name in self.modalities]  # CaseError for a missing one
        self._check_size(case, arrays[0].shape, spec)
        return spec.slices(arrays, input_transforms=case.input_transforms)

    def _check_size(self, case, shape, spec) -> None:
        size = spec.input_size
        in_plane = [s for axis, s in enumerate(shape) if axis != spec.axis]
        factor = size / max(1, min(in_plane)) if size else 1.0
        if factor > float(self.settings.max_upsampling):
            message = (
                f"case '{case.case_id}': its {in_plane[1]}x{in_plane[0]} slices are enlarged {factor:.1f}x to the model's "
                f"{size}x{size} input (more than max_upsampling={self.settings.max_upsampling}): the codewords describe "
                "interpolated pixels far from the training data"
            )
            if self.settings.on_small_image == "error":
                raise CaseError(message + ": resample the image or set on_small_image: warn")
            logger.warning(message)

    def codeword_map(self, case, transform: Callable | None = None):
        """Codeword indices (Z, 8, 8) of every slice of ``case`` (torch int64, CPU).

        ``transform`` (optional) is applied to the preprocessed slices (Z, C, S, S) before the encoder.
        """
        slices = self.preprocess(case)
        if transform is not None:
            slices = transform(slices)
        return self.bundle.model.volume_codeword_indices(
            slices, batch_size=int(self.settings.batch_size), channels_last=bool(self.settings.channels_last)
        ).cpu()

    def latent_roi(self, case):
        """Boolean (Z, 8, 8): latent cells whose (S/8) x (S/8) block of the resized slice holds a mask voxel."""
        import numpy as np
        import torch.nn.functional as F

        spec = self.bundle.preprocessing
        labels = spec.labels(np.asarray(case.mask_array()).astype(np.uint8)).float()[:, None]
        block = labels.shape[-1] // 8
        return F.max_pool2d(labels, kernel_size=block)[:, 0] > 0

    def count_codewords(self, indices, roi=None):
        """Counts (K,) float64 tensor of codeword ``indices`` (Z, 8, 8), over ``roi`` (boolean (Z, 8, 8)) when given."""
        import torch

        selected = indices[roi] if roi is not None else indices.flatten()
        k = self.num_embeddings
        counts = torch.bincount(selected.flatten(), minlength=k).double()
        if counts.numel() != k:
            raise FeatureError(f"model '{self.bundle.name}' produced codeword indices >= K={k}: the bundle is inconsistent, re-train it")
        return counts

    def histogram(self, case, transform: Callable | None = None):
        """Codeword counts (K,) of ``case`` in the configured region (what ``compute`` normalises)."""
        indices = self.codeword_map(case, transform)
        roi = self.latent_roi(case) if self.settings.region == "roi" else None
        counts = self.count_codewords(indices, roi)
        if float(counts.sum()) == 0:
            raise FeatureError(
                f"case '{case.case_id}': the region of interest covers no latent cell once its slices are resized to the "
                f"model's input (the ROI is smaller than one {self.bundle.input_size // 8}-pixel block of the resized slice): "
                "use region: volume, or check the mask"
            )
        return counts

    def background_codeword(self) -> int:
        """The background codeword: the most frequent codeword of all-background input cells.

        Read from the bundle's ``background_codewords`` (counted over the training slices when it was
        trained); for bundles without that record, the most frequent code of an all-zero input slice.
        """
        import torch

        recorded = self.bundle.config.get("background_codewords")
        if recorded:
            return int(recorded[0][0])
        return int(torch.bincount(self.bundle.model.background_indices().flatten().cpu()).argmax())

    def compute(self, case) -> ComputeResult:
        """The codeword histogram of the case (see the module docstring); diagnostics: latent cells counted, perplexity."""
        from deepradiomics.nets.vq import perplexity

        counts = self.histogram(case)
        total = float(counts.sum())
        values = {"counts": [counts], "frequency": [counts / total], "both": [counts, counts / total]}[self.settings.normalize]
        flat = [float(v) for block in values for v in block.tolist()]
        return ComputeResult(dict(zip(self.feature_names(), flat)), {"LatentCells": int(total), "Perplexity": perplexity(counts)})

    def voxel_maps(self, case) -> dict:
        """Maps on the case grid: ``CodewordIndex`` (each voxel's latent codeword, a label image) and
        ``CodewordCount`` (how often that codeword occurs in the case's region)."""
        import numpy as np
        import SimpleITK as sitk

        indices = self.codeword_map(case)
        counts = self.count_codewords(indices, self.latent_roi(case) if self.settings.region == "roi" else None).numpy()
        spec = self.bundle.preprocessing
        shape = case.array(self.modalities[0]).shape
        index_map = np.rint(spec.to_volume(indices.numpy().astype(np.float32), shape, mode="nearest")).astype(np.int32)
        maps = {"CodewordIndex": index_map, "CodewordCount": counts[index_map].astype(np.float32)}
        reference = case.image(self.modalities[0])
        out = {}
        for name, array in maps.items():
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(reference)
            out[name] = image
        return out

    def artifacts(self) -> dict[str, str]:
        """The sha256 of the VQ bundle's weights."""
        return {"Model": str(self._config()["model_sha256"])}

    def diagnostics(self) -> dict[str, object]:
        """The bundle's name and the modalities feeding its channels."""
        bundle = self.bundle
        return {"Model": bundle.name, "Modalities": ",".join(self.modalities)}
