"""Input conventions of the ``cnn`` class: what each kind of weights was trained on, and how a patch is fed to it.

A trained network answers sensibly only to inputs like those it was trained on. The setting
``weights_convention`` declares (or ``auto`` decides, see :func:`resolve_convention`) the convention of
the weights; one :class:`InputConvention` then maps every raw patch to the network input
(:meth:`InputConvention.scaler`), on every path that runs the network (features and voxel maps).

===============  ===========================================  =====================================  ===========
convention       weights                                      network input                          first-layer
                                                                                                     axis order
===============  ===========================================  =====================================  ===========
``paper``        random (and, declared, Keras' VGG-19 fed as  each patch onto [-127.5, 127.5]        none / B, G, R
                 the paper fed it)
``torchvision``  torchvision's VGG-19: RGB in [0, 1],         each patch onto [0, 1], then           R, G, B
                 normalised by the ImageNet mean and std      (v - 0.449) / 0.226: [-1.987, 2.438]
``caffe``        Keras' / caffe's VGG-19: BGR in 0-255,       each patch onto [0, 255], minus        B, G, R
                 ImageNet mean subtracted                     114.799: [-114.799, 140.201]
``zscore``       a ``vqseg`` bundle (e.g. vq-lgg-cpu),        the case's whole modality volume       the bundle's
                 trained on z-scored volumes                  z-scored as the bundle's               modalities
                                                              ``preprocessing.normalization`` says
===============  ===========================================  =====================================  ===========

What is the paper's and what is the project's choice (Avants et al., WBIR 2020):

- ``paper``: "Each patch is scaled to [-127.5, 127.5]" is the paper's (section 2.3, said of the patches on
  which its 3D VGG-19 learns the pseudo-3D VGG-19's activations, so also the input of its mapped Keras
  VGG-19); the paper states no other scaling, and the project gives the same to the random network
  (section 2.1) and reads it as a linear map of the patch's own minimum and maximum. It is close to,
  but not, the caffe preprocessing of Keras' weights (the mid-range 127.5 subtracted instead of the
  ImageNet mean).
- ``torchvision`` and ``caffe`` follow the preprocessing the weights were trained with (torchvision's
  ``transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`` on RGB in [0, 1];
  Keras' ``imagenet_utils.preprocess_input(mode="caffe")``: RGB -> BGR, minus [103.939, 116.779, 123.68],
  no scaling). Two choices are the project's: (1) each patch's own range is mapped onto the weights'
  range ([0, 1] or [0, 255]), as the paper maps each patch, because MR intensities have no fixed scale;
  (2) one mean and one standard deviation, the averages of the three channels', normalise the single
  input channel. The paper's mapping lays the first kernel's colour channels along the orientation axis
  (:mod:`deepradiomics.nets.inflate`), so every voxel plays R, G and B for different output voxels and no
  single-channel input can be normalised per colour; folding the per-colour statistics into the first
  layer would change its biases, which the paper keeps. The residual is at most 0.19 standard deviations
  per colour for torchvision ((0.449 - 0.406) / 0.225, blue) and 11.1 grey levels for caffe
  (114.799 - 103.939, blue).
- ``zscore``: the bundle's own preprocessing (:mod:`deepradiomics.nets.preprocess`), not the paper's:
  ``zscore-foreground`` z-scores the modality volume over its voxels > 0 (population standard deviation)
  and sets voxels <= 0 to 0; ``zscore`` uses every voxel. The statistics come from the whole stored
  volume, as in training, not from the patch, so a patch keeps its brightness relative to the brain.

The first-layer axis order is the weights' own channel order (channel 0 one voxel before the patch
voxel along the orientation axis, channel 2 one after, :func:`deepradiomics.nets.inflate.channels_to_axis_kernel`):
the kernel's colour axis lies along that axis in the order the weights were trained with. The
convention only names that order (R, G, B for torchvision; B, G, R for Keras and caffe); it is in the
diagnostics.

Examples
--------
>>> import torch
>>> convention = InputConvention.torchvision("declared")
>>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
>>> y = convention.scaler()(x)
>>> round(float(y.min()), 3), round(float(y.max()), 3)
(-1.987, 2.438)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: the settings' choices, ``auto`` first
CONVENTIONS = ("auto", "paper", "torchvision", "caffe", "zscore")
#: torchvision's ImageNet normalisation (RGB order), of inputs in [0, 1]
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
#: the ImageNet mean that Keras' caffe-mode preprocess_input subtracts (BGR order), of inputs in 0-255
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
#: the paper's patch range (Avants et al. 2020, section 2.3)
PAPER_RANGE = (-127.5, 127.5)
#: bundle normalisations that the ``zscore`` convention reproduces
ZSCORE_NORMALIZATIONS = ("zscore-foreground", "zscore")


@dataclass(frozen=True)
class InputConvention:
    """What the weights were trained on, and the map from a raw patch to the network input.

    Attributes
    ----------
    name
        ``paper``, ``torchvision``, ``caffe`` or ``zscore``.
    rule
        Why this convention: ``declared`` or the ``auto`` rule that chose it (for the diagnostics).
    patch_range
        ``(low, high)`` that each patch's minimum and maximum are mapped onto (per-patch conventions);
        None for ``zscore``.
    normalization
        ``zscore-foreground`` or ``zscore`` (per-volume convention); None otherwise.
    channel_order
        Names of the first layer's input channels in the weights' order, which is their order along the
        orientation axis; () for random weights (one input channel, no colour axis).
    """

    name: str
    rule: str
    patch_range: tuple[float, float] | None = None
    normalization: str | None = None
    channel_order: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the conventions
    @classmethod
    def paper(cls, rule: str, channel_order: Sequence[str] = ()) -> InputConvention:
        """Each patch onto [-127.5, 127.5] (the paper's)."""
        return cls("paper", rule, PAPER_RANGE, None, tuple(channel_order))

    @classmethod
    def torchvision(cls, rule: str) -> InputConvention:
        """Each patch onto [0, 1], normalised by the channel-averaged ImageNet mean and std of torchvision."""
        mean, std = sum(IMAGENET_RGB_MEAN) / 3, sum(IMAGENET_RGB_STD) / 3
        return cls("torchvision", rule, ((0.0 - mean) / std, (1.0 - mean) / std), None, ("R", "G", "B"))

    @classmethod
    def caffe(cls, rule: str) -> InputConvention:
        """Each patch onto [0, 255], minus the channel-averaged ImageNet mean of Keras' caffe mode."""
        mean = sum(CAFFE_BGR_MEAN) / 3
        return cls("caffe", rule, (0.0 - mean, 255.0 - mean), None, ("B", "G", "R"))

    @classmethod
    def zscore(cls, rule: str, normalization: str, channels: Sequence[str]) -> InputConvention:
        """The case's modality volume z-scored as a bundle's ``preprocessing.normalization`` says."""
        if normalization not in ZSCORE_NORMALIZATIONS:
            raise ValueError(f"normalization {normalization!r} is not one of {', '.join(ZSCORE_NORMALIZATIONS)}")
        return cls("zscore", rule, None, normalization, tuple(channels))

    # ------------------------------------------------------------------ use
    @property
    def per_volume(self) -> bool:
        """True when the network input depends on statistics of the whole modality volume."""
        return self.normalization is not None

    def scaler(self, image=None) -> PatchScaler:
        """The map from raw patches to network input, for patches of ``image`` (a SimpleITK image or array).

        ``image`` is needed by the per-volume convention only (its statistics are read here, once).
        """
        if not self.per_volume:
            return PatchScaler(self)
        if image is None:
            raise ValueError(f"the {self.name} convention needs the patches' image, for its {self.normalization} statistics")
        mean, sd = volume_statistics(image, self.normalization)
        return PatchScaler(self, mean, sd)

    def describe(self) -> str:
        """One line for the diagnostics: the network input this convention gives."""
        if self.patch_range is not None:
            low, high = self.patch_range
            text = f"each patch linearly onto [{low:.6g}, {high:.6g}] by its minimum and maximum"
            return text + {
                "paper": " (the paper's)",
                "torchvision": f" (RGB in [0, 1] normalised by the ImageNet mean {sum(IMAGENET_RGB_MEAN) / 3:.6g} and std "
                f"{sum(IMAGENET_RGB_STD) / 3:.6g}, averaged over R, G, B)",
                "caffe": f" (0-255 minus the ImageNet mean {sum(CAFFE_BGR_MEAN) / 3:.6g}, averaged over B, G, R)",
            }[self.name]
        where = "voxels > 0, others set to 0" if self.normalization == "zscore-foreground" else "all voxels"
        return f"the modality volume z-scored over {where} (the bundle's {self.normalization}), patches cut from it"


@dataclass(frozen=True)
class PatchScaler:
    """Raw patches ``(B, 1, p, p, p)`` (float torch tensor) -> network input, for one convention and volume."""

    convention: InputConvention
    mean: float | None = None
    sd: float | None = None

    def __call__(self, patches):
        """The network input for raw ``patches`` (same shape and dtype)."""
        from .patches import scale_patches

        c = self.convention
        if c.patch_range is not None:
            if c.patch_range == PAPER_RANGE:
                return scale_patches(patches)  # the default arguments: bit for bit the paper's path
            return scale_patches(patches, *c.patch_range)
        z = (patches - self.mean) / self.sd
        if c.normalization == "zscore-foreground":
            # as deepradiomics.nets.preprocess.zscore_foreground: background (<= 0) is 0, not z-scored
            z = z.where(patches > 0, z.new_zeros(()))
        return z


def volume_statistics(image, normalization: str) -> tuple[float, float]:
    """``(mean, sd)`` that ``normalization`` z-scores a modality volume with (sd 0 -> 1).

    Computed exactly as :func:`deepradiomics.nets.preprocess.zscore_foreground` and
    :func:`~deepradiomics.nets.preprocess.zscore` do (float32 values, NumPy's mean and population std),
    over voxels > 0 for ``zscore-foreground`` (no such voxel: mean 0, sd 1, every voxel becomes 0) and
    over every voxel for ``zscore``.
    """
    import numpy as np

    if not isinstance(image, np.ndarray):
        import SimpleITK as sitk

        image = sitk.GetArrayViewFromImage(image)
    volume = np.asarray(image, dtype=np.float32)
    values = volume[volume > 0] if normalization == "zscore-foreground" else volume.ravel()
    if values.size == 0:
        return 0.0, 1.0
    sd = float(values.std())
    return float(values.mean()), sd if sd > 0 else 1.0


def resolve_convention(
    declared: str,
    *,
    source: str,
    where: str,
    layout: str | None = None,
    normalization: str | None = None,
    channels: Sequence[str] = (),
    bundle: str = "",
) -> InputConvention:
    """The convention of the weights: ``declared``, checked against the weights, or decided by ``auto``.

    Parameters
    ----------
    declared
        The setting's value, one of :data:`CONVENTIONS`.
    source
        ``random``, ``file`` (a 2D VGG-19 state dict) or ``bundle`` (a ``vqseg`` bundle for encoder-3d).
    where
        The settings' location for messages (``...featureClass.cnn``).
    layout
        For a file: its key layout (:func:`deepradiomics.nets.inflate.vgg2d_layout`).
    normalization, channels, bundle
        For a bundle: its ``preprocessing.normalization``, ``preprocessing.channels`` and name.

    The ``auto`` rule uses only what is knowable without knowing how the weights were trained: random
    weights -> ``paper``; a bundle -> its ``preprocessing.normalization`` (``zscore``); a file -> its key
    layout: torchvision's (``features.<i>``) -> ``torchvision``, Keras' (``block<b>_conv<i>``) or caffe's
    (``conv<b>_<i>``) -> ``caffe``. Keys cannot reveal a caffe VGG-19 converted to PyTorch and saved under
    torchvision's keys (as neural style-transfer code does): declare ``caffe`` for such a file.

    Raises
    ------
    ParamsError
        One line naming ``<where>.weights_convention`` and the valid choices: the declared convention does
        not apply to these weights, or ``auto`` cannot decide (a bundle trained without z-scoring).
    """
    from deepradiomics.errors import ParamsError

    key = f"{where}.weights_convention"
    if source == "random":
        if declared not in ("auto", "paper"):
            raise ParamsError(
                f"{key}: '{declared}' does not apply to weights: random (untrained weights take the paper's [-127.5, 127.5] "
                "scaling); use auto or paper"
            )
        return InputConvention.paper("declared" if declared == "paper" else "auto: random weights")
    if source == "bundle":
        return _bundle_convention(declared, key, normalization, channels, bundle)
    if declared == "zscore":
        raise ParamsError(
            f"{key}: 'zscore' applies to network encoder-3d (a bundle that records its z-scoring); for a 2D VGG-19 state dict "
            "use auto, torchvision, caffe or paper"
        )
    if declared == "auto":
        if layout == "torchvision":
            return InputConvention.torchvision("auto: torchvision's key layout (features.<i>); a caffe VGG-19 saved so must be declared caffe")
        if layout in ("keras", "caffe"):
            return InputConvention.caffe(f"auto: {layout}'s key layout")
        raise ParamsError(f"{key}: auto cannot tell the convention of a state dict in layout {layout!r}; declare torchvision, caffe or paper")
    if declared == "torchvision":
        return InputConvention.torchvision("declared")
    if declared == "caffe":
        return InputConvention.caffe("declared")
    return InputConvention.paper("declared: Keras/caffe weights fed the paper's scaling", ("B", "G", "R"))


def _bundle_convention(declared: str, key: str, normalization: str | None, channels: Sequence[str], bundle: str) -> InputConvention:
    from deepradiomics.errors import ParamsError

    if normalization not in ZSCORE_NORMALIZATIONS:
        raise ParamsError(
            f"{key}: bundle '{bundle}' was trained on preprocessing.normalization {normalization!r}, which cnn does not reproduce; "
            "network encoder-3d takes bundles trained on zscore-foreground or zscore input (weights_convention auto or zscore)"
        )
    if declared not in ("auto", "zscore"):
        raise ParamsError(
            f"{key}: '{declared}' does not apply to bundle '{bundle}', trained on {normalization} input (its config.yaml "
            "preprocessing.normalization); use auto or zscore"
        )
    rule = "declared" if declared == "zscore" else f"auto: bundle preprocessing.normalization {normalization}"
    return InputConvention.zscore(rule, str(normalization), channels)


def convention_diagnostics(convention: InputConvention) -> Mapping[str, str]:
    """``WeightsConvention``, ``WeightsConventionRule``, ``NetworkInput``, ``FirstLayerAxis`` of the diagnostics."""
    return {
        "WeightsConvention": convention.name,
        "WeightsConventionRule": convention.rule,
        "NetworkInput": convention.describe(),
        "FirstLayerAxis": ",".join(convention.channel_order),
    }
