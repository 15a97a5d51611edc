"""``vqhist``: the VQ codeword histogram of Kobayashi et al. (Sci Rep 2021), a deep feature class.

Every axial slice of the case's modalities (z-scored over voxels > 0, resized to S x S) goes through the
encoder of a trained VQ segmentation network; each cell of the 8x8 latent grid is replaced by its
nearest codeword. The features are the number of times each of the K codewords occurs:

.. math:: \\text{Codeword}k = \\sum_{s=1}^{N_z} \\sum_{i,j=1}^{8} [\\, q_s(i,j) = k \\,]

over all slices :math:`s` and the whole latent grid, background included (``region: volume``; the
counts sum to :math:`8 \\cdot 8 \\cdot N_z`). With ``region: roi`` only latent cells whose
(S/8) x (S/8) block of the resized slice contains at least one mask voxel are counted. With
``normalize: frequency`` the counts are divided by their sum.

Settings
--------
model
    ``"default"`` (the bundle shipped in the package), a shipped bundle's name, or a bundle folder.
modalities
    Names of the case's modalities, in the order the model was trained on (see the bundle's
    ``config.yaml``). For the default model: ``t1``, ``Image`` (the main image, FLAIR in the LGG
    data), ``t1ce``.
region, normalize, device, batch_size
    See above; ``batch_size`` slices go through the encoder at once.

Examples
--------
>>> from deepradiomics.case import Case
>>> case = Case({"Image": "flair.nii.gz", "t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz"}, "mask.nii.gz")  # doctest: +SKIP
>>> features = VQHistogram({"region": "volume"}).compute(case)  # doctest: +SKIP
>>> sum(features.values()) == 64 * case.array("Image").shape[0]  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deepradiomics.errors import FeatureError, ParamsError
from deepradiomics.featureclass import FeatureClass


@dataclass(frozen=True)
class VQHistogramSettings:
    model: str = "default"
    modalities: tuple[str, ...] = ("t1", "Image", "t1ce")
    region: Literal["volume", "roi"] = "volume"
    normalize: Literal["counts", "frequency"] = "counts"
    device: str = "cpu"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("modalities: give the case's modality names in the model's channel order")
        if self.region not in ("volume", "roi"):
            raise ValueError(f"region: {self.region!r} is not 'volume' or 'roi'")
        if self.normalize not in ("counts", "frequency"):
            raise ValueError(f"normalize: {self.normalize!r} is not 'counts' or 'frequency'")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")


class VQHistogram(FeatureClass):
    """Codeword histogram of a VQ segmentation network (see the module docstring for the formula)."""

    name = "vqhist"
    family = "deep"
    Settings = VQHistogramSettings

    # ------------------------------------------------------------------ model (lazy)
    def _config(self) -> dict:
        """The bundle's config.yaml, read without importing torch (feature_names needs only K)."""
        if getattr(self, "config_", None) is None:
            from deepradiomics.models import read_config, resolve_bundle

            self.config_ = read_config(resolve_bundle(self.settings.model))
        return self.config_

    def _bundle(self):
        if getattr(self, "bundle_", None) is None:
            from deepradiomics.models import load_bundle

            bundle = load_bundle(self.settings.model, device=self.settings.device)
            n_in = int(bundle.config["architecture"]["in_channels"])
            if len(self.settings.modalities) != n_in:
                raise ParamsError(
                    f"featureClass.vqhist.modalities: {len(self.settings.modalities)} modalities "
                    f"{list(self.settings.modalities)} given but model '{bundle.name}' ({bundle.path}) takes {n_in}: "
                    f"{bundle.modalities}; list {n_in} of the case's modality names in that order"
                )
            self.bundle_ = bundle
            self.config_ = bundle.config
        return self.bundle_

    def feature_names(self) -> list[str]:
        k = int(self._config()["architecture"]["num_embeddings"])
        width = max(3, len(str(k - 1)))
        return [f"Codeword{i:0{width}d}" for i in range(k)]

    # ------------------------------------------------------------------ features
    def codeword_map(self, case):
        """Codeword indices (Z, 8, 8) of every axial slice of ``case`` (torch int64 tensor, CPU)."""
        from deepradiomics.nets.preprocess import volume_to_slices

        bundle = self._bundle()
        arrays = [case.array(name) for name in self.settings.modalities]  # CaseError for a missing one
        slices = volume_to_slices(arrays, bundle.input_size)
        return bundle.model.volume_codeword_indices(slices, batch_size=int(self.settings.batch_size)).cpu()

    @staticmethod
    def count_codewords(indices, mask, bundle, region: str = "volume"):
        """Counts (K,) float64 tensor of codeword ``indices`` (Z, 8, 8) over ``region`` ("volume" or "roi").

        ``mask`` is the case's boolean (z, y, x) region of interest (read only for ``roi``); ``bundle`` gives
        K, the input size and the name for messages. Shared by ``compute`` and the robustness sweeps.
        """
        import torch

        from deepradiomics.nets.preprocess import mask_to_latent

        if region == "roi":
            selected = indices[mask_to_latent(mask, bundle.input_size, indices.shape[-1])]
        else:
            selected = indices.flatten()
        k = bundle.num_embeddings
        counts = torch.bincount(selected.flatten(), minlength=k).double()
        if counts.numel() != k:
            raise FeatureError(f"model '{bundle.name}' produced codeword indices >= K={k}: the bundle is inconsistent, re-train it")
        return counts

    def compute(self, case) -> dict[str, float]:
        from deepradiomics.nets.vq import perplexity

        bundle = self._bundle()
        mask = case.mask_array() if self.settings.region == "roi" else None
        counts = self.count_codewords(self.codeword_map(case), mask, bundle, self.settings.region)
        total = float(counts.sum())
        self.latent_cells_ = int(total)
        self.perplexity_ = perplexity(counts)
        if self.settings.normalize == "frequency":
            if total == 0:
                raise FeatureError(f"case '{case.case_id}': no latent cell to count in region '{self.settings.region}'")
            counts = counts / total
        return dict(zip(self.feature_names(), (float(c) for c in counts.tolist())))

    def diagnostics(self) -> dict[str, object]:
        bundle = self._bundle()
        return {
            "Model": bundle.name,
            "ModelSha256": bundle.sha256,
            "LatentCells": getattr(self, "latent_cells_", None),
            "Perplexity": getattr(self, "perplexity_", None),
        }
