"""``fisher``: deep learning-based radiomics (DLR, Li et al., Sci Rep 2017) as a fitted feature class.

Per case, the ROI of every slice goes through a segmentation network at several scales; the responses of
one layer (default: the last convolutional layer) at the positions inside the ROI are local descriptors
(:mod:`.descriptors`); all descriptors of the case are encoded as one improved Fisher vector over a
diagonal GMM fitted on a training cohort (:mod:`.encoding`, where the formula is):

.. math::
    \\mathrm{FV} = \\frac{z}{\\lVert z \\rVert_2}, \\quad z = \\operatorname{sign}(\\Phi)\\sqrt{|\\Phi|}, \\quad
    \\Phi = [\\mathcal{G}^{\\mu}_{k,d};\\ \\mathcal{G}^{\\sigma}_{k,d}], \\quad
    \\mathcal{G}^{\\mu}_{k,d} = \\frac{\\sum_i \\gamma_i(k)\\,(x_{i,d} - \\mu_{k,d})/\\sigma_{k,d}}{N\\sqrt{w_k}}, \\quad
    \\mathcal{G}^{\\sigma}_{k,d} = \\frac{\\sum_i \\gamma_i(k)\\,[(x_{i,d} - \\mu_{k,d})^2/\\sigma_{k,d}^2 - 1]}{N\\sqrt{2 w_k}}

2 x K x D features: ``MuKKdDDD`` (first order: gradient w.r.t. the mean of component KK in dimension DDD)
then ``SigmaKKdDDD`` (second order: w.r.t. its standard deviation), e.g. ``original_fisher_Mu03d117``;
16,384 for K = 64 and D = 128 (the paper's count).

The class is fitted (``requires_fit``): ``deepradiomics fit params/fisher.yaml MANIFEST -o DIR`` describes
every case (cached, in parallel), fits the GMM on the descriptors of ``gmm_patients`` training patients
drawn with ``seed``, and writes ``DIR/fisher/`` (weights, means, variances as arrays + sha256) and
``DIR/params.yaml`` (``encoder: fisher``), which ``extract``, ``batch`` and ``study`` then use. A study
given a manifest and this params file refits the GMM inside every training fold.

Settings (P = the paper's value; C = chosen here, the paper does not give it)
------------------------------------------------------------------------------
model : ``default`` (= ``dlr-lgg-cpu``, shipped) | a shipped bundle's name | a bundle folder
    Any bundle whose network offers ``feature_layers()`` / ``features()`` (``dlrcnn``, ``vqseg``).
layer : default: the last convolutional layer (P): ``conv6`` for ``dlrcnn``, ``latent`` (the continuous
    encoder output z_e) for ``vqseg``; any of the network's ``feature_layers()``.
modalities : the case modalities feeding the network's channels, in channel order; default: the bundle's.
scales : 10 (P); min_scale 0.5 and max_scale 2.0 (P); scale_spacing ``geometric`` (C: evenly spaced in
    log scale, so 0.5 and 2 are symmetric around 1; ``linear`` also offered).
roi : ``mask`` (C, the project's default: the case's mask) | ``segmentation`` (P: the paper's fully automatic
    pipeline, "the DLR can provide automatic segmentation results ... The process of DLR, including lesion
    area segmentation, can thus be fully automatic"): the ROI of every case is the bundle's own tumour
    segmentation of it, on the case's grid, computed by the function ``deepradiomics segment`` runs
    (:func:`deepradiomics.training.segment.segment_slices`) from the slices that feed the descriptors; not
    the paper's: no post-processing (Li et al. kept the largest connected region per slice and smoothed it
    with a 3D box filter). The mask is then only the grid check and the reference of the per-case
    diagnostics ``RoiDice`` (3D Dice of segmentation vs mask), beside ``RoiVoxels`` and ``RoiVolume`` (mm^3);
    a case the network finds no tumour in is a CaseError (use ``roi: mask`` for it). ``diagnostics_fisher_Roi``
    records the setting.
region : ``roi`` (C: positions whose centre pixel is in the ROI) | ``box`` (in the ROI's bounding box).
context : ``image`` (C: the window keeps the surrounding image) | ``masked`` (outside the ROI set to 0).
components : 64 (P).
gmm_patients : 30 (P): the GMM is fitted on the descriptors of 30 randomly chosen training patients.
max_descriptors : 2000 (C): descriptors per chosen patient used for the GMM fit, drawn at random (seeded);
    ``null`` uses all. Encoding always uses every descriptor of a case. 30 x 2,000 descriptors fit in
    about 30 s on one core (5,000: about 90 s; ``benchmarks/fisher_speed.py``).
seed : 0 (C): draws the GMM patients, the descriptor subsample and the GMM's initialisation.
on_small_roi : ``error`` (C) | ``warn``: a case whose largest ROI cross-section, as the network sees it at
    the smallest scale, is shorter than the layer's receptive field along both axes (its descriptors mostly
    see outside the ROI). Measured on the image grid: a box of h x w image pixels spans
    ``max(h * S / H, w * S / W) * min_scale`` network pixels (slices of H x W resized to S x S, S = H = W
    without a fixed input size), compared with the receptive field (21 for ``conv6``): for ``dlr-lgg-cpu``
    on the 256 x 256 LGG slices at scale 0.5, boxes under 84 x 84 image pixels
    (:class:`.descriptors.RoiSize`).
encoder : the fitted artifact folder (written by ``deepradiomics fit``; relative to the params file).
device, batch_size : where the network runs; windows of equal size per forward pass.
channels_last : run the network in the channels-last memory format (default; about 20 % faster on CPU
    for the DLR network, measured by ``benchmarks/fisher_speed.py``).

Examples
--------
>>> fisher = FisherVector({"model": "bundle/", "components": 4})  # doctest: +SKIP
>>> fisher.fit(cases)                                              # doctest: +SKIP
>>> features = fisher.compute(case)                                # doctest: +SKIP
>>> list(features)[:2]                                             # doctest: +SKIP
['Mu00d000', 'Mu00d001']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from deepradiomics.errors import CaseError, FeatureError, ModelError, ParamsError, did_you_mean
from deepradiomics.featureclass import BundleSettings, ComputeResult, FeatureClass, lazy
from deepradiomics.models import BundledModel

from . import descriptors as _descriptors
from . import encoding

logger = logging.getLogger("deepradiomics_plugins.fisher")

#: the bundle that ``model: default`` names
DEFAULT_MODEL = "dlr-lgg-cpu"
#: the last convolutional layer of each architecture: the default descriptor layer
DEFAULT_LAYERS = {"dlrcnn": "conv6", "vqseg": "latent"}
#: the largest scale ratio and number of scales (project's choice, checked before any case: a window is
#: enlarged by the scale before the network, so memory grows with its square; the paper uses 0.5-2 and 10)
MAX_SCALE = 8.0
MAX_SCALES = 100


@dataclass(frozen=True)
class FisherSettings(BundleSettings):
    """Settings of :class:`FisherVector` (see the module docstring); ``model``, ``modalities`` and ``device``
    come from :class:`~deepradiomics.featureclass.BundleSettings`. Literal settings are checked by the
    generic settings check."""

    layer: str | None = None
    scales: int = 10
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_spacing: Literal["geometric", "linear"] = "geometric"
    region: Literal["roi", "box"] = "roi"
    context: Literal["image", "masked"] = "image"
    components: int = 64
    gmm_patients: int = 30
    max_descriptors: int | None = 2000
    seed: int = 0
    on_small_roi: Literal["error", "warn"] = "error"
    roi: Literal["mask", "segmentation"] = "mask"
    encoder: str | None = None
    batch_size: int = 16
    channels_last: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.scales) < 1:
            raise ValueError(f"scales: {self.scales} must be >= 1")
        if not 0 < float(self.min_scale) <= float(self.max_scale):
            raise ValueError(f"min_scale {self.min_scale} and max_scale {self.max_scale} must satisfy 0 < min_scale <= max_scale")
        if float(self.max_scale) > MAX_SCALE:
            raise ValueError(
                f"max_scale: {self.max_scale} is more than {MAX_SCALE:g}, the largest allowed (a 240-pixel slice enlarged "
                f"{MAX_SCALE:g}x already feeds {240 * MAX_SCALE:.0f}x{240 * MAX_SCALE:.0f} pixels to the network); the paper uses 2"
            )
        if float(self.min_scale) < 1 / MAX_SCALE:
            raise ValueError(
                f"min_scale: {self.min_scale} is less than 1/{MAX_SCALE:g}, the smallest allowed (a fixed-size network's window "
                f"grows by 1/min_scale: {MAX_SCALE:g}x its input side already); the paper uses 0.5"
            )
        if int(self.scales) > MAX_SCALES:
            raise ValueError(f"scales: {self.scales} is more than {MAX_SCALES}, the largest allowed (the paper uses 10)")
        if int(self.components) < 1:
            raise ValueError(f"components: {self.components} must be >= 1")
        if int(self.gmm_patients) < 1:
            raise ValueError(f"gmm_patients: {self.gmm_patients} must be >= 1")
        if self.max_descriptors is not None and int(self.max_descriptors) < 1:
            raise ValueError(f"max_descriptors: {self.max_descriptors} must be >= 1, or null for all")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: {self.batch_size} must be >= 1")


#: per-case provenance of ``roi: segmentation`` in the descriptors -> its diagnostics key and type
ROI_DIAGNOSTICS = {"roi_voxels": ("RoiVoxels", int), "roi_volume": ("RoiVolume", float), "roi_dice": ("RoiDice", float)}


def roi_diagnostics(descriptors) -> dict[str, object]:
    """``RoiVoxels``, ``RoiVolume`` and ``RoiDice`` of a case described with ``roi: segmentation`` (empty otherwise)."""
    return {name: kind(np.asarray(descriptors[key]).item()) for key, (name, kind) in ROI_DIAGNOSTICS.items() if key in descriptors}


class FisherVector(BundledModel, FeatureClass):
    """Improved Fisher vector of a segmentation network's ROI descriptors (see the module docstring)."""

    name = "fisher"
    family = "deep"
    Settings = FisherSettings
    requires_fit = True
    fitted_setting = "encoder"
    network_input = True  # describe() applies case.input_transforms to the slices fed to the network

    default_model = DEFAULT_MODEL
    architectures = tuple(DEFAULT_LAYERS)  # the networks that offer descriptor layers

    # ------------------------------------------------------------------ model (lazy; BundledModel)
    def check(self) -> None:
        """Before any case: the bundle's architecture, and the descriptor layer against the network's layers
        (read from config.yaml; the network is built without its weights)."""
        from deepradiomics.models import build_network

        architecture = self._config()["architecture"]
        layers = lazy(self, "_layer_names", lambda: list(build_network(architecture, f"{self._where}.model").feature_layers()))
        layer = self.settings.layer or DEFAULT_LAYERS.get(architecture["type"])
        if layer not in layers:
            raise ParamsError(
                f"{self._where}.layer: '{layer}' is not a layer of '{self.settings.model}' ({architecture['type']}).{did_you_mean(str(layer), layers)} "
                f"Layers: {', '.join(layers)}"
            )

    def _accept_bundle(self, bundle) -> None:
        """The network must offer descriptor layers; resolves the layer (setting or architecture default)."""
        network = bundle.model
        if not (hasattr(network, "feature_layers") and hasattr(network, "features") and hasattr(network, "layer_geometry")):
            raise ParamsError(
                f"{self._where}.model: '{bundle.name}' is a '{bundle.architecture}' network, which offers no descriptor layers "
                "(feature_layers/features/layer_geometry): use a dlrcnn or vqseg bundle"
            )
        layers = list(network.feature_layers())
        layer = self.settings.layer or DEFAULT_LAYERS.get(bundle.architecture)
        if layer is None:
            raise ParamsError(f"{self._where}.layer: '{bundle.architecture}' networks have no default descriptor layer: set layer to one of {', '.join(layers)}")
        if layer not in layers:
            raise ParamsError(
                f"{self._where}.layer: '{layer}' is not a layer of '{bundle.name}' ({bundle.architecture}).{did_you_mean(layer, layers)} "
                f"Layers: {', '.join(layers)}"
            )
        if self.settings.channels_last:
            import torch

            network.to(memory_format=torch.channels_last)
        self._layer = layer

    @property
    def layer(self) -> str:
        """The descriptor layer (the setting, or the architecture's last convolutional layer)."""
        self.bundle  # noqa: B018 - resolves the layer
        return self._layer

    @property
    def scales(self) -> np.ndarray:
        """The scale ratios (``scales`` of them from ``min_scale`` to ``max_scale``)."""
        s = self.settings
        return _descriptors.scale_factors(int(s.scales), float(s.min_scale), float(s.max_scale), s.scale_spacing)

    @property
    def dimension(self) -> int:
        """D: the GMM's dimension once fitted, else the descriptor layer's channel count (one small forward pass)."""
        means = getattr(self, "means_", None)
        if means is not None:
            return int(means.shape[1])
        return lazy(self, "_probed_dimension", self._probe_dimension)

    def _probe_dimension(self) -> int:
        import torch

        network = self.bundle.model
        size = self.bundle.preprocessing.input_size or 8
        with torch.inference_mode():
            probe = network.features(torch.zeros(1, len(self.modalities), size, size, device=self.settings.device), self.layer)
        return int(probe.shape[1])

    def feature_names(self) -> list[str]:
        """``Mu<k>d<j>`` then ``Sigma<k>d<j>``: the first- and second-order blocks of the Fisher vector."""
        k, d = int(self.settings.components), self.dimension
        wk, wd = max(2, len(str(k - 1))), max(3, len(str(d - 1)))
        return [f"{block}{i:0{wk}d}d{j:0{wd}d}" for block in ("Mu", "Sigma") for i in range(k) for j in range(d)]

    # ------------------------------------------------------------------ per case
    def describe(self, case) -> dict[str, np.ndarray]:
        """``{"descriptors": float32 (N, D), "scale_counts": int64 (scales,)}`` of the ROI of ``case``; with
        ``roi: segmentation`` also ``roi_voxels``, ``roi_volume`` (mm^3) and ``roi_dice`` (see :meth:`roi`).

        Raises
        ------
        CaseError
            The segmentation finds no tumour (``roi: segmentation``), the ROI is empty on the network's grid,
            smaller than the layer's receptive field at the smallest scale (``on_small_roi: error``), or
            holds no descriptor position at any scale.
        """
        bundle = self.bundle
        spec = bundle.preprocessing
        arrays = [case.array(name) for name in self.modalities]  # CaseError for a missing modality
        slices = spec.slices(arrays, input_transforms=case.input_transforms)  # the network input (robustness hook)
        roi, provenance = self.roi(case, slices, np.shape(arrays[0]))
        mask = spec.labels(roi.astype(np.uint8)).numpy() > 0
        if not mask.any():
            raise CaseError(
                f"case '{case.case_id}': the ROI is empty on the network's {spec.input_size}x{spec.input_size} input grid "
                "(it vanished when the slices were resized): check the mask or use a model without a fixed input size"
            )
        self._check_roi_size(case, roi)
        found, counts = _descriptors.extract(
            bundle.model,
            self.layer,
            slices,
            mask,
            self.scales,
            spec.input_size,
            region=self.settings.region,
            context=self.settings.context,
            batch_size=int(self.settings.batch_size),
            device=self.settings.device,
            channels_last=bool(self.settings.channels_last),
        )
        if len(found) == 0:
            raise CaseError(
                f"case '{case.case_id}': no position of layer '{self.layer}' (stride {bundle.model.layer_geometry(self.layer)['stride']}) "
                f"falls inside the ROI at any scale up to {self.settings.max_scale}: raise max_scale, use region: box, or check the mask"
            )
        return {"descriptors": found, "scale_counts": counts, **provenance}

    def roi(self, case, slices, shape) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ROI of ``case`` on its own (z, y, x) grid ``shape``, and its per-case provenance.

        ``roi: mask``: the case's mask (voxels equal to its label); no provenance. ``roi: segmentation``
        (the fully automatic pipeline of Li et al. 2017): every voxel that the bundle's network labels as
        tumour (any non-zero mask value of its label map) in ``slices``, the network input :meth:`describe`
        formed, by :func:`deepradiomics.training.segment.segment_slices`, the function ``deepradiomics
        segment`` runs (so the ROI is that command's output for the case, without the paper's
        morphological post-processing). The slices carry the case's input transforms, so under an
        input-domain perturbation the ROI follows the perturbed input, as a fully automatic pipeline's
        would. The case's mask then never decides a descriptor position; it
        stays the grid every modality is checked against and the reference of ``roi_dice`` (3D Dice of
        the segmentation against it, :func:`deepradiomics.training.segment.dice`), beside ``roi_voxels``
        and ``roi_volume`` (mm^3, the voxel count times the voxel volume).

        Raises
        ------
        CaseError
            ``roi: segmentation`` and the network labels no voxel of the case as tumour.
        """
        if self.settings.roi == "mask":
            return np.asarray(case.mask_array(), dtype=bool), {}
        from deepradiomics.training.segment import dice, segment_slices

        roi = segment_slices(self.bundle, slices, shape) > 0
        voxels = int(np.count_nonzero(roi))
        if voxels == 0:
            raise CaseError(
                f"case '{case.case_id}': the network of model '{self.bundle.name}' found no tumour in the case ({', '.join(self.modalities)}), "
                f"so roi: segmentation has no ROI: use roi: mask (the case's own mask) for it, or check that its images are the modalities "
                "the model was trained on"
            )
        spacing = np.prod(case.mask_image().GetSpacing())
        return roi, {
            "roi_voxels": np.asarray(voxels, dtype=np.int64),
            "roi_volume": np.asarray(voxels * float(spacing), dtype=np.float64),
            "roi_dice": np.asarray(dice(roi, case.mask_array()), dtype=np.float64),
        }

    def roi_size(self, roi: np.ndarray) -> _descriptors.RoiSize | None:
        """How the network sees the largest cross-section of ``roi`` (boolean, (z, y, x) on the image grid) at the
        smallest scale: the numbers of the small-ROI check (:class:`.descriptors.RoiSize`; None for an empty ROI)."""
        spec = self.bundle.preprocessing
        field = int(self.bundle.model.layer_geometry(self.layer)["receptive_field"])
        return _descriptors.roi_size(np.moveaxis(np.asarray(roi, dtype=bool), spec.axis, 0), spec.input_size, float(min(self.scales)), field)

    def _check_roi_size(self, case, roi: np.ndarray) -> None:
        """The small-ROI check, on the image grid (:class:`.descriptors.RoiSize` derives the condition)."""
        spec = self.bundle.preprocessing
        size = self.roi_size(roi)
        if size is None or (spec.input_size is not None and size.receptive_field >= spec.input_size):
            return  # the layer sees the whole input (e.g. a VQ latent): no ROI is "larger" than that
        if not size.small:
            return
        spacing = [s for axis, s in enumerate(case.mask_image().GetSpacing()[::-1]) if axis != spec.axis]  # (rows, columns) in mm
        field_y, field_x = size.field_on_image
        rows, columns = (n for axis, n in enumerate(roi.shape) if axis != spec.axis)
        grid = "" if spec.input_size is None else f"slices resized from {rows}x{columns} to {spec.input_size}x{spec.input_size}, then "
        message = (
            f"case '{case.case_id}': its largest ROI cross-section spans {size.height} x {size.width} image pixels "
            f"({size.height * spacing[0]:g} x {size.width * spacing[1]:g} mm), {size.network_extent:.1f} network pixels at the smallest scale "
            f"{size.scale:g} ({grid}scaled by {size.scale:g}), less than the {size.receptive_field}-pixel receptive field of layer "
            f"'{self.layer}' ({field_y:.0f} x {field_x:.0f} image pixels at that scale), so its descriptors mostly describe what surrounds the ROI"
        )
        if self.settings.on_small_roi == "error":
            raise CaseError(
                f"{message}: set min_scale to {size.scale_needed()} or more, choose an earlier layer, or set on_small_roi: warn to encode it anyway"
            )
        logger.warning(message)

    # ------------------------------------------------------------------ cohort
    def fit_descriptors(self, descriptors, case_ids=()) -> FisherVector:
        """Fit the GMM on up to ``max_descriptors`` descriptors of each of ``gmm_patients`` cases drawn with ``seed``.

        The draw depends only on the set of case IDs (they are sorted first), not on the manifest's order.
        """
        ids = [str(c) for c in case_ids] if len(case_ids) else [str(i) for i in range(len(descriptors))]
        arrays = [self._descriptor_array(d, f"case '{ids[i]}'") for i, d in enumerate(descriptors)]
        depths = {a.shape[1] for a in arrays}
        if len(depths) > 1:
            first = arrays[0].shape[1]
            odd = next(ids[i] for i, a in enumerate(arrays) if a.shape[1] != first)
            raise FeatureError(
                f"{self._where}: the descriptors of case '{ids[0]}' have {first} dimensions but those of case '{odd}' {arrays[ids.index(odd)].shape[1]}: "
                "describe every case with the same model and layer (clear the --cache-dir if the model was retrained)"
            )
        rng = np.random.default_rng(int(self.settings.seed))
        by_id = sorted(range(len(arrays)), key=lambda i: ids[i])
        count = min(len(arrays), int(self.settings.gmm_patients))
        if count < int(self.settings.gmm_patients):
            logger.info("%s: %d training cases, fewer than gmm_patients=%d: the GMM is fitted on all of them", self._where, count, self.settings.gmm_patients)
        chosen = sorted(by_id[i] for i in rng.choice(len(by_id), size=count, replace=False))
        pooled = np.concatenate([encoding.subsample(arrays[i], self.settings.max_descriptors, rng) for i in sorted(chosen, key=lambda i: ids[i])])
        k = int(self.settings.components)
        if len(pooled) < k:
            raise FeatureError(
                f"{self._where}: cannot fit {k} Gaussian components on {len(pooled)} descriptors of {count} case(s): "
                "lower components, or fit on more (or larger) cases"
            )
        report: dict = {}
        self.weights_, self.means_, self.variances_ = encoding.fit_gmm(pooled, k, seed=int(self.settings.seed), report=report)
        self.fit_report_ = {"Converged": report["converged"], "Iterations": report["iterations"]}
        self.gmm_cases_ = np.asarray(chosen, dtype=np.int64)
        self.model_sha256_ = str(self._config()["model_sha256"])
        return self

    def _descriptor_array(self, descriptors, who: str) -> np.ndarray:
        if not isinstance(descriptors, dict) and not hasattr(descriptors, "keys"):
            raise FeatureError(f"{self._where}: {who}: descriptors must be the mapping that describe() returns")
        array = np.asarray(descriptors.get("descriptors"))
        if array.ndim != 2:
            raise FeatureError(f"{self._where}: {who}: descriptors have shape {array.shape}, expected (N, D): describe the case again")
        return array

    def encode(self, descriptors) -> ComputeResult:
        """The improved Fisher vector of one case's descriptors (features ``{Feature: float}``; diagnostics: their count,
        and with ``roi: segmentation`` the segmentation's ``RoiVoxels``, ``RoiVolume`` (mm^3) and ``RoiDice``)."""
        return self._encode(descriptors, "these descriptors")

    def _encode(self, descriptors, who: str) -> ComputeResult:
        self.check_fitted()
        array = self._descriptor_array(descriptors, who)
        d = int(self.means_.shape[1])
        if array.shape[1] != d:
            raise FeatureError(
                f"{who}: the descriptors have {array.shape[1]} dimensions but the GMM of {self._where} was fitted on {d}: "
                f"the model or layer differs from the one the GMM was fitted with; refit (`deepradiomics fit PARAMS MANIFEST -o DIR`) "
                "or use the model and layer of the fit"
            )
        if len(array) == 0:
            raise FeatureError(f"{who}: no descriptor to encode: the ROI gave no position of the network's layer")
        values = encoding.fisher_vector(array, self.weights_, self.means_, self.variances_)
        return ComputeResult(dict(zip(self.feature_names(), (float(v) for v in values))), {"Descriptors": int(len(array)), **roi_diagnostics(descriptors)})

    def compute(self, case) -> ComputeResult:
        """The improved Fisher vector of the case's descriptors (fitted GMM needed); diagnostics: their count."""
        self.check_fitted()
        return self._encode(self.describe(case), f"case '{case.case_id}'")

    # ------------------------------------------------------------------ fitted state
    def fitted_state(self) -> dict[str, np.ndarray] | None:
        """``weights`` (K,), ``means`` and ``variances`` (K, D), ``gmm_cases`` (indices into the fitted-on cases) and
        ``model_sha256`` (the 32 bytes of the sha256 of the network whose descriptors the GMM was fitted on)."""
        if getattr(self, "means_", None) is None:
            return None
        state = {"weights": self.weights_, "means": self.means_, "variances": self.variances_, "gmm_cases": self.gmm_cases_}
        if getattr(self, "model_sha256_", None):
            state["model_sha256"] = np.frombuffer(bytes.fromhex(self.model_sha256_), dtype=np.uint8)
        return state

    def set_fitted_state(self, arrays) -> None:
        """Restore the GMM (weights, means, variances) and its record, checked (ModelError when invalid)."""
        missing = [k for k in ("weights", "means", "variances") if k not in arrays]
        if missing:
            raise ModelError(f"{self._where}: the fitted state lacks {', '.join(missing)}: re-run `deepradiomics fit`")
        try:
            weights, means, variances = encoding.check_gmm(arrays["weights"], arrays["means"], arrays["variances"])
        except ValueError as exc:
            raise ModelError(f"{self._where}: the fitted GMM is invalid ({exc}): re-run `deepradiomics fit`") from exc
        if len(weights) != int(self.settings.components):
            raise ModelError(f"{self._where}: the fitted GMM has {len(weights)} components, the settings {self.settings.components}: re-run `deepradiomics fit`")
        self.weights_, self.means_, self.variances_ = weights, means, variances
        self.gmm_cases_ = np.asarray(arrays.get("gmm_cases", np.zeros(0)), dtype=np.int64)
        recorded = arrays.get("model_sha256")
        self.model_sha256_ = bytes(np.asarray(recorded, dtype=np.uint8)).hex() if recorded is not None else None

    def load_fitted(self, folder) -> FisherVector:
        """Restore the GMM saved in ``folder`` (sha256-checked), refusing it when it was fitted on another network.

        The network is identified by the sha256 of its weights, recorded with the GMM: a model retrained at
        the same path is refused, and the same model named by another path (``deepradiomics fit`` rewrites
        a relative ``model`` path for the fitted params.yaml) is accepted.
        """
        import dataclasses

        from deepradiomics.artifacts import load_artifact

        arrays, config = load_artifact(folder, self.name)
        current = str(self._config()["model_sha256"])
        recorded = arrays.get("model_sha256")
        if recorded is not None and bytes(np.asarray(recorded, dtype=np.uint8)).hex() != current:
            raise ModelError(
                f"{self._where}: the GMM in '{folder}' was fitted on descriptors of the network with sha256 "
                f"{bytes(np.asarray(recorded, dtype=np.uint8)).hex()[:16]}..., but model '{self.settings.model}' has sha256 {current[:16]}...: "
                "refit (`deepradiomics fit PARAMS MANIFEST -o DIR`) with this model, or use the model of the fit"
            )
        saved_model = (config.get("settings") or {}).get("model")
        if recorded is None or saved_model in (None, self.settings.model):
            return super().load_fitted(folder)
        original = self.settings
        self.settings = dataclasses.replace(original, model=saved_model)  # same weights, spelled differently
        try:
            super().load_fitted(folder)
        finally:
            self.settings = original
        return self

    # ------------------------------------------------------------------ provenance
    def artifacts(self) -> dict[str, str]:
        """The sha256 of the network and of the fitted GMM."""
        return {"Model": str(self._config()["model_sha256"]), **super().artifacts()}

    def diagnostics(self) -> dict[str, object]:
        """Model, ROI source (``Roi``: mask or segmentation), layer, modalities, scales, components, dimension and
        how many cases the GMM was fitted on."""
        bundle = self.bundle
        return {
            "Model": bundle.name,
            "Roi": str(self.settings.roi),
            "Layer": self.layer,
            "Modalities": ",".join(self.modalities),
            "Scales": ",".join(f"{s:.4g}" for s in self.scales),
            "Components": int(self.settings.components),
            "Dimension": self.dimension,
            "GmmCases": int(len(getattr(self, "gmm_cases_", ()))),
        }

