"""``cnn``: deep volumetric feature encoding (Avants et al., WBIR 2020) pooled over the ROI.

Where cnn differs from the paper
--------------------------------
- **Use of the encoding**: the paper matches landmarks by the activation maps of the patch centred on
  them; cnn pools each tapped layer's activations over each patch (mean, max) and then over patches
  tiling the ROI on an isotropic grid (``spacing``, 1 mm), for radiomics (the project's).
- **Random network**: the paper's untrained VGG-19-3D architecture (60,058,688 parameters); its
  initialiser is not named in the paper: Glorot uniform (Keras' default) from a seeded PCG64 stream, so
  the weights are bitwise reproducible (the project's; ``he-uniform`` optional).
- **Input scaling**: the paper's "each patch is scaled to [-127.5, 127.5]" (section 2.3) for random
  weights; mapped weights get by default the input they were trained on (``weights_convention``:
  torchvision's or caffe's preprocessing, a bundle's z-scoring), the paper's scaling on request
  (``paper``). Mapping each patch's own range onto the weights' range and one channel-averaged mean and
  std for the single input channel are the project's choices (see :mod:`.conventions`).
- **2D -> 3D mapping**: the first layer's colour channels along the orientation axis, biases kept, one
  network per orientation, features concatenated (the paper's); the channels lie along the axis in the
  weights' own order (torchvision R, G, B; Keras/caffe B, G, R: the order they were trained with; the
  paper states no order); deeper kernels replicated 3 times along the axis and divided by 3, the
  inflation of I3D (Carreira & Zisserman 2017) (the project's choice: the paper does not describe it).
- **Weights**: the paper maps Keras' ImageNet VGG-19; none is shipped or downloaded: a state dict you
  have (torchvision's, Keras' or caffe's key layout), or offline the shipped VQ segmentation encoder
  (``encoder-3d``, not in the paper), which sees the 1 mm grid although it was trained on slices resized
  to 128 x 128 (2 mm in-plane for the 256-pixel LGG slices).
- **Pooling rounding**: 2x2x2 max pooling rounds up (``pool_rounding: ceil``), so that 12-voxel patches,
  for which the paper reports ``conv5_4`` features, reach ``conv5_4`` (the project's; ``floor`` optional).
- **Not implemented**: the paper's networks trained to approximate the pseudo-3D VGG-19 (its 3D VGG-19
  and 3D ResNet, sections 2.3-2.4) and its pre-trained brain-age ResNet (section 2.5).

Method
------
The ROI is put on an isotropic grid (``spacing`` mm, 1 by default; linear interpolation for the image,
nearest neighbour for the mask; an image that already has that spacing is copied, not interpolated),
covered by cubic patches of each ``patch_sizes`` side centred on ROI voxels on a regular grid (step
``stride``, by default the patch side, so patches tile the ROI without overlap; the grid runs through
the ROI voxel nearest the ROI's centroid, so every ROI has at least one patch; voxels beyond the image
take the image's minimum), and each patch, mapped to the input that the weights were trained on (its
*input convention*, below), goes through a 3D network. Every tapped layer's activation map is pooled over
the patch, then over the patches:

.. math::
    \\text{Mean}_{l,p,c} = \\frac{1}{N_p} \\sum_{n=1}^{N_p} \\frac{1}{|\\Omega_{l,p}|}
        \\sum_{v \\in \\Omega_{l,p}} a^{(n)}_{l,c}(v) \\qquad
    \\text{Max}_{l,p,c} = \\max_{n \\le N_p} \\max_{v \\in \\Omega_{l,p}} a^{(n)}_{l,c}(v)

where :math:`a^{(n)}_{l,c}` is channel c of layer l's activation (after ReLU for VGG) on patch n of side
p, :math:`\\Omega_{l,p}` its voxels and :math:`N_p` the number of patches of side p.

Networks (``network`` and ``weights``)
--------------------------------------
``vgg19-3d`` + ``random`` (default)
    The paper's untrained VGG-19-3D architecture: blocks of 2, 2, 4, 4, 4 convolutions 3x3x3 + ReLU,
    64 ... 512 filters, 2x2x2 max pooling, one input channel, no dense layers (60,058,688 parameters).
    Weights are drawn by ``initializer`` (``glorot-uniform``: Keras' default, which ANTsRNet's
    ``createVggModel3D`` keeps, the paper naming none; ``he-uniform``: variance-preserving for ReLU) from
    the raw stream of ``numpy.random.PCG64(seed)``, biases 0 (see
    :func:`deepradiomics.nets.vgg3d.init_seeded_`): the same seed gives bitwise the same weights on every
    machine, and the weights' sha256 is in the diagnostics. Input: each patch onto [-127.5, 127.5].
``vgg19-3d`` + a file path
    A 2D VGG-19 state dict that you already have (nothing is downloaded), in torchvision's key layout
    (``features.0.weight`` ... ``features.34.bias``), Keras' (``block1_conv1.weight`` ...
    ``block5_conv4.bias``, kernels (O, I, 3, 3) or Keras' (3, 3, I, O)) or caffe's (``conv1_1.weight`` ...
    ``conv5_4.bias``); dense layers ignored. Its sha256 is recorded (and checked against
    ``weights_sha256`` when given) before it is read with ``torch.load(..., weights_only=True)``, when the
    class is built. It is mapped to 3D by :func:`deepradiomics.nets.inflate.map_vgg2d_state_dict`: the
    first layer's colour axis becomes the third spatial axis (the paper's), in the weights' channel order;
    deeper kernels are replicated along it and divided by 3 (the project's choice, I3D's inflation);
    biases kept; one network per ``orientations`` entry, their features side by side (orientation tokens
    ``Axi``, ``Cor``, ``Sag``).
``encoder-3d`` + a model bundle (e.g. ``vq-lgg-cpu``, shipped)
    The offline "transferred" network (not in the paper): the bundle's 2D encoder (a VQ segmentation
    network's: GroupNorm, LeakyReLU, residual blocks) mapped to 3D the same way by
    :func:`deepradiomics.nets.inflate.inflate`; its 3 input channels (the bundle's modalities, in its
    ``config.yaml`` order) become the third spatial axis exactly like RGB.
    Taps: ``stem``, ``block0`` ... ``block5``, ``head``; default ``block1`` (shallow: 32 channels at
    1/2 resolution), ``block3`` (mid: 64 at 1/8) and ``head`` (deep: the 64-d latent z_e at 1/16, what
    the VQ quantises).

Input conventions (``weights_convention``)
------------------------------------------
What each kind of weights was trained on decides its network input (one
:class:`.conventions.InputConvention` per class instance, applied to every patch; details, and which
parts are the paper's, in :mod:`.conventions`):

``paper``
    each patch linearly onto [-127.5, 127.5] by its own minimum and maximum (the paper's scaling); the
    convention of random weights, and on request of a Keras/caffe file (as the paper fed its Keras VGG-19).
``torchvision``
    each patch onto [0, 1], then (v - 0.449) / 0.226 (torchvision's ImageNet mean and std, averaged over
    R, G, B): [-1.987, 2.438]; first-layer axis order R, G, B.
``caffe``
    each patch onto [0, 255], minus 114.799 (Keras' caffe-mode ImageNet mean, averaged over B, G, R):
    [-114.799, 140.201]; first-layer axis order B, G, R.
``zscore``
    a bundle's: the case's whole modality volume z-scored as its ``preprocessing.normalization`` says
    (vq-lgg-cpu: ``zscore-foreground``, voxels > 0, others 0), patches cut from it.
``auto`` (default)
    random weights -> ``paper``; a bundle -> ``zscore`` (refused if it was not trained on z-scored input);
    a file -> by its keys: torchvision's layout -> ``torchvision``, Keras' or caffe's -> ``caffe``. Keys
    cannot tell a caffe VGG-19 converted to PyTorch and saved under torchvision's keys (as style-transfer
    code ships it): declare ``caffe`` for such a file. ``zscore`` does not apply to a VGG-19 file,
    ``torchvision``/``caffe``/``paper`` not to a bundle, only ``paper`` (or ``auto``) to random weights: any
    other combination is a ParamsError naming ``featureClass.cnn.weights_convention`` and the valid choices.

The diagnostics record ``WeightsConvention``, ``WeightsConventionRule`` (declared, or the ``auto`` rule),
``NetworkInput`` and ``FirstLayerAxis`` (the first layer's channels along the orientation axis, in order).

Pooling inside the network rounds up (2x2x2 max pooling with ``ceil_mode``, Keras' ``padding="same"``):
12-voxel patches, for which the paper reports ``conv5_4`` features, reach ``conv5_4`` (12 -> 6 -> 3 -> 2
-> 1 voxels, where floor rounding gives 0); for sides that are multiples of 16 it is identical to the
classic floor rounding, which ``pool_rounding: floor`` selects (then a patch too small for a layer is
refused). The inflated encoder
downsamples with stride-2 convolutions (padding 1), which round up too, so every patch side >= 3 works.

Feature names
-------------
``<Layer><Orientation>P<side><Pooling><channel>[-<modality>]``, e.g. ``Conv42P32Mean017`` (random VGG,
layer conv4_2, 32-voxel patches, mean, channel 17), ``Conv22SagP16Max101`` (mapped VGG, sagittal
network), ``HeadAxiP16Mean063`` (inflated VQ encoder), ``Conv54P16Max005-t1ce`` (modality ``t1ce``;
the main image ``Image`` carries no suffix). Layer tokens: ``Conv<block><index>``, ``Stem``,
``Block<i>``, ``Head``; channels have at least 3 digits. Order: modality, layer, orientation, patch
side, pooling, channel. :attr:`CNNFeatures.subfamilies` groups the tokens into shallow / mid / deep
layers by their resolution (full and 1/2; 1/4 and 1/8; 1/16).

Patches are computed independently, never twice, in batches (one patch at a time is 4x slower),
under ``torch.inference_mode``, with weights and patches in channels-last memory format (measured
faster on CPU, see benchmarks/README.md). A whole-ROI pass is not used: every patch is zero-padded
at its own border inside each convolution (as a network fed one patch does; the paper encodes each
patch on its own) and scaled by its own range (per-patch conventions), so one pass over the ROI would
not give the same numbers; with the default stride the patches do not overlap, so there is no shared
work to save.

Bad input: settings are checked when the class is built (ParamsError naming the key: unknown layer
with a suggestion, patch side too small or unreachable with floor rounding, weights file missing, of
no known key layout or mixing layouts, a bundle given to the wrong network, a weights convention that
does not apply, ...); a weights file with a wrong shape is refused when the network is built (ParamsError
naming the key, the file and the tensor); a case whose mask
has a single voxel along an axis (a 2D image), or whose ROI is smaller than the smallest patch along
every axis, raises CaseError naming the case.

Settings
--------
network : ``vgg19-3d`` | ``encoder-3d``
weights : ``random`` | path of a 2D VGG-19 state dict | model bundle name or folder (encoder-3d)
weights_sha256 : expected sha256 of the weights file (optional)
weights_convention : ``auto`` (default) | ``paper`` | ``torchvision`` | ``caffe`` | ``zscore`` (see above)
seed, initializer : of the random network (``glorot-uniform`` | ``he-uniform``)
layers : layer names (default: ``conv2_2, conv4_2, conv5_4``; encoder: ``block1, block3, head``)
patch_sizes : patch sides in voxels of the isotropic grid (default 16, 32); at least 3
stride : step of the patch grid in voxels (default: the patch side)
modalities : case modalities encoded one at a time (default ``Image``)
pooling : ``mean`` and/or ``max``
orientations : of the mapped networks (default all three; unused by the random network)
spacing : isotropic voxel side in mm (default 1.0)
pool_rounding : ``ceil`` (default) | ``floor``
batch_size : patches per forward pass (default: sized so the first layer's activations stay near 512 MB)
device : ``cpu`` or a torch device

Examples
--------
>>> from deepradiomics.testing import synthetic_case
>>> cnn = CNNFeatures({"layers": ["conv1_2"], "patch_sizes": [8], "pooling": ["mean"]})
>>> cnn.feature_names()[:2]
['Conv12P8Mean000', 'Conv12P8Mean001']
>>> len(cnn.compute(synthetic_case()))  # doctest: +SKIP
64
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from deepradiomics.errors import CaseError, ParamsError, did_you_mean
from deepradiomics.featureclass import ComputeResult, FeatureClass, lazy

from .conventions import InputConvention, convention_diagnostics, resolve_convention
from .encoders import (
    ENCODER_DEFAULT_LAYERS,
    ORIENTATION_TOKENS,
    VGG19_DEFAULT_LAYERS,
    Layer,
    encoder_layers,
    vgg19_layers,
)

NETWORKS = ("vgg19-3d", "encoder-3d")
POOLINGS = {"mean": "Mean", "max": "Max"}
INITIALIZERS = ("glorot-uniform", "he-uniform")
POOL_ROUNDINGS = ("ceil", "floor")
MIN_PATCH = 3
#: the largest patch side (project's choice): one patch's first-layer activations (64 float32 channels, input
#: and output) stay under 4 GiB; checked with the settings, before any ROI grid or patch is allocated
MAX_PATCH = 200
#: the most voxels of a case's isotropic ROI grid (2**27 float32 voxels: 512 MiB per array); checked per case
#: from the ROI's bounding box before the grid is allocated (a very fine spacing would need terabytes)
MAX_GRID_VOXELS = 2**27
#: budget for the first layer's activations in one batch (64 float32 channels per voxel, input and output)
BATCH_BYTES = 512 * 2**20
_NAME_TOKEN = re.compile(r"^[A-Za-z0-9\-\.]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


ENCODER_LAYER_NAMES = ("stem", *(f"block{i}" for i in range(10)), "head")


@dataclass(frozen=True)
class CNNSettings:
    """Settings of :class:`CNNFeatures` (see the module docstring).

    ``__post_init__`` checks everything that needs no file; :class:`CNNFeatures` checks the weights file or
    bundle (relative paths are relative to the params file) when it is built.
    """

    network: str = "vgg19-3d"
    weights: str = "random"
    weights_sha256: str | None = None
    weights_convention: Literal["auto", "paper", "torchvision", "caffe", "zscore"] = "auto"
    seed: int = 0
    initializer: str = "glorot-uniform"
    layers: tuple[str, ...] | None = None
    patch_sizes: tuple[int, ...] = (16, 32)
    stride: int | None = None
    modalities: tuple[str, ...] = ("Image",)
    pooling: tuple[str, ...] = ("mean", "max")
    orientations: tuple[str, ...] = ("axial", "coronal", "sagittal")
    spacing: float = 1.0
    pool_rounding: str = "ceil"
    batch_size: int | None = None
    device: str = "cpu"
    map_features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("layers", "patch_sizes", "modalities", "pooling", "orientations"):
            value = getattr(self, key)
            if isinstance(value, list):
                object.__setattr__(self, key, tuple(value))
        if self.network not in NETWORKS:
            raise ValueError(f"network: '{self.network}' is unknown.{did_you_mean(str(self.network), NETWORKS)} Use one of {', '.join(NETWORKS)}")
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"weights: {self.weights!r} must be 'random', a file path or a model bundle name")
        if self.network == "encoder-3d" and self.weights == "random":
            raise ValueError("weights: network encoder-3d maps a trained 2D encoder: name a model bundle (e.g. vq-lgg-cpu) or a bundle folder")
        if self.weights_sha256 is not None and not _SHA256.match(str(self.weights_sha256)):
            raise ValueError(f"weights_sha256: {self.weights_sha256!r} is not a 64-digit hexadecimal sha256")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: {self.seed!r} must be an integer >= 0")
        if self.initializer not in INITIALIZERS:
            raise ValueError(
                f"initializer: '{self.initializer}' is unknown.{did_you_mean(str(self.initializer), INITIALIZERS)} Use one of {', '.join(INITIALIZERS)}"
            )
        if self.pool_rounding not in POOL_ROUNDINGS:
            raise ValueError(f"pool_rounding: '{self.pool_rounding}' must be 'ceil' or 'floor'")
        self._check_layers()
        self._check_patches()
        self._check_lists()
        if isinstance(self.spacing, bool) or not isinstance(self.spacing, (int, float)) or not math.isfinite(self.spacing) or self.spacing <= 0:
            raise ValueError(f"spacing: {self.spacing!r} must be a positive number of mm")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size: {self.batch_size!r} must be an integer >= 1 (or left out: sized automatically)")

    # ------------------------------------------------------------------ checks
    def _check_layers(self) -> None:
        if self.layers is None:
            return
        # the encoder's exact layers come from its bundle, checked by CNNFeatures; its names follow one pattern
        known = tuple(vgg19_layers()) if self.network == "vgg19-3d" else ENCODER_LAYER_NAMES
        if not self.layers:
            raise ValueError(f"layers: give at least one layer of {', '.join(known)}")
        for name in self.layers:
            if name not in known:
                raise ValueError(f"layers: '{name}' is not a layer of {self.network}.{did_you_mean(str(name), known)} Layers: {', '.join(known)}")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers: {list(self.layers)} lists a layer twice")

    def _check_patches(self) -> None:
        sizes = self.patch_sizes
        if not sizes or any(isinstance(p, bool) or not isinstance(p, int) for p in sizes):
            raise ValueError(f"patch_sizes: {list(sizes)!r} must be a non-empty list of integers (voxels per side)")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"patch_sizes: {list(sizes)} lists a size twice")
        for size in sizes:
            if size < MIN_PATCH:
                raise ValueError(f"patch_sizes: {size} is too small; a patch needs at least {MIN_PATCH} voxels per side (one 3x3x3 kernel)")
            if size > MAX_PATCH:
                raise ValueError(
                    f"patch_sizes: {size} is more than {MAX_PATCH}, the largest allowed side (one patch's first-layer activations, "
                    f"64 float32 channels in and out, would take {2 * 64 * 4 * size**3 / 2**30:,.0f} GiB; at {MAX_PATCH}: "
                    f"{2 * 64 * 4 * MAX_PATCH**3 / 2**30:.1f} GiB)"
                )
        if self.stride is not None and (isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(f"stride: {self.stride!r} must be an integer >= 1 (voxels), or left out for the patch side")
        if self.pool_rounding == "floor" and self.network == "vgg19-3d":
            table = vgg19_layers()
            for name in self.layers if self.layers is not None else VGG19_DEFAULT_LAYERS:
                level = table[name].level
                for size in sizes:
                    path = [size]
                    for _ in range(level):
                        path.append(path[-1] // 2)
                    if path[-1] < 1:
                        raise ValueError(
                            f"patch_sizes: {size} cannot reach {name} with pool_rounding: floor ({' -> '.join(map(str, path))} voxels); "
                            f"use sides >= {2**level} or pool_rounding: ceil"
                        )

    def _check_lists(self) -> None:
        if not self.modalities:
            raise ValueError("modalities: give at least one modality name (the main image is 'Image')")
        for name in self.modalities:
            if not isinstance(name, str) or not _NAME_TOKEN.match(name):
                raise ValueError(f"modalities: '{name}' cannot appear in a feature name (letters, digits, '-' and '.' only)")
        if len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: {list(self.modalities)} lists a modality twice")
        if not self.pooling or any(p not in POOLINGS for p in self.pooling) or len(set(self.pooling)) != len(self.pooling):
            bad = [p for p in self.pooling if p not in POOLINGS]
            hint = did_you_mean(str(bad[0]), POOLINGS) if bad else ""
            raise ValueError(f"pooling: {list(self.pooling)} must list 'mean' and/or 'max' once each.{hint}")
        if not self.orientations or any(o not in ORIENTATION_TOKENS for o in self.orientations) or len(set(self.orientations)) != len(self.orientations):
            bad = [o for o in self.orientations if o not in ORIENTATION_TOKENS]
            hint = did_you_mean(str(bad[0]), ORIENTATION_TOKENS) if bad else ""
            raise ValueError(f"orientations: {list(self.orientations)} must list axial, coronal and/or sagittal once each.{hint}")

    @property
    def mapped(self) -> bool:
        """True when the network is mapped from 2D weights (one network per orientation)."""
        return self.network == "encoder-3d" or self.weights != "random"


class CNNFeatures(FeatureClass):
    """Deep volumetric features of 3D networks over ROI patches (see the module docstring for the formulas)."""

    name = "cnn"
    family = "deep"
    Settings = CNNSettings
    network_input = True  # encode_patches() applies case.input_transforms to the scaled patches fed to the network
    #: sub-families by layer resolution (regular expressions over the feature token, for ``re.fullmatch``):
    #: shallow = full and 1/2 resolution (VGG blocks 1-2; encoder stem, blocks 0-1), mid = 1/4 and 1/8
    #: (VGG blocks 3-4; blocks 2-3), deep = 1/16 (VGG block 5; blocks 4 and deeper, head)
    subfamilies: ClassVar[dict[str, str]] = {
        "shallow": r"(?:Conv[12]\d|Stem|Block[01])\D.*",
        "mid": r"(?:Conv[34]\d|Block[23])\D.*",
        "deep": r"(?:Conv5\d|Block[4-9]|Head)\D.*",
    }

    def __init__(self, settings: Any = None, *, where: str | None = None, base_dir: str | os.PathLike | None = None) -> None:
        super().__init__(settings, where=where, base_dir=base_dir)
        self._check_sources()
        #: what the weights were trained on and how a raw patch becomes the network input (checked now, before any case)
        self._input_convention = self._resolve_convention()

    # ------------------------------------------------------------------ weights and layers
    def _check_sources(self) -> None:
        """ParamsError now (not at the first case) for a missing weights file, a bundle that cannot serve, a wrong layer."""
        s = self.settings
        if s.network == "encoder-3d":
            table = encoder_layers(self._bundle_config()["architecture"])
            for name in s.layers if s.layers is not None else ENCODER_DEFAULT_LAYERS:
                if name not in table:
                    raise ParamsError(
                        f"{self._where}.layers: '{name}' is not a layer of the encoder of bundle '{s.weights}'."
                        f"{did_you_mean(name, table)} Layers: {', '.join(table)}"
                    )
            return
        if s.weights == "random":
            return
        from deepradiomics.models import shipped_models

        path = self.resolve_path(s.weights)
        if path.is_dir() and not (path / "config.yaml").is_file() and s.weights not in shipped_models():
            raise ParamsError(
                f"{self._where}.weights: '{s.weights}' is a folder without config.yaml, neither a weights file nor a model bundle: "
                "give the path of a 2D VGG-19 state dict file, 'random', or (with network: encoder-3d) a bundle"
            )
        if path.is_dir() or s.weights in shipped_models():
            raise ParamsError(
                f"{self._where}.weights: '{s.weights}' is a model bundle; to map its 2D encoder to 3D set network: encoder-3d "
                "(network vgg19-3d takes 'random' or the path of a 2D VGG-19 state dict file)"
            )
        if not path.is_file():
            base = f"the params file's folder {self._base_dir}" if self._base_dir is not None else f"the working directory {os.getcwd()}"
            raise ParamsError(
                f"{self._where}.weights: '{s.weights}' is neither 'random' nor an existing file (relative paths are resolved against "
                f"{base}): give the path of a 2D VGG-19 state dict in torchvision's layout (nothing is downloaded)"
            )

    def _resolve_convention(self) -> InputConvention:
        """The input convention of the weights (declared or ``auto``; see :mod:`.conventions`), ParamsError if it does not apply."""
        s = self.settings
        if s.network == "encoder-3d":
            from deepradiomics.nets.preprocess import Preprocessing

            block = Preprocessing.from_config(self._bundle_config()["preprocessing"])
            return resolve_convention(
                s.weights_convention, source="bundle", where=self._where, normalization=block.normalization, channels=block.channels, bundle=s.weights
            )
        if s.weights == "random":
            return resolve_convention(s.weights_convention, source="random", where=self._where)
        from .encoders import vgg2d_file_layout

        # the key layout is read now (sha256 first, tensors memory-mapped), so a file of no known layout fails here
        layout, self._weights_sha256 = vgg2d_file_layout(str(self.resolve_path(s.weights)), s.weights_sha256, self._where)
        return resolve_convention(s.weights_convention, source="file", where=self._where, layout=layout)

    def _bundle_config(self) -> dict:
        """config.yaml of the encoder-3d bundle, read without torch (ParamsError naming the setting)."""
        from deepradiomics.errors import ModelError
        from deepradiomics.models import read_config, resolve_bundle

        try:
            config = read_config(resolve_bundle(self.settings.weights, self._base_dir))
        except ModelError as exc:
            raise ParamsError(f"{self._where}.weights: {exc}") from None
        kind = config["architecture"].get("type")
        if kind != "vqseg":
            raise ParamsError(
                f"{self._where}.weights: bundle '{self.settings.weights}' is a '{kind}' network; network encoder-3d inflates the "
                "encoder of a 'vqseg' bundle (e.g. vq-lgg-cpu)"
            )
        return config

    def _layers(self) -> list[Layer]:
        """The tapped layers in settings order (for encoder-3d read from the bundle's config.yaml, once)."""
        def build() -> list[Layer]:
            s = self.settings
            if s.network == "encoder-3d":
                table, default = encoder_layers(self._bundle_config()["architecture"]), ENCODER_DEFAULT_LAYERS
            else:
                table, default = vgg19_layers(), VGG19_DEFAULT_LAYERS
            return [table[name] for name in (s.layers if s.layers is not None else default)]

        return lazy(self, "_tapped_layers", build)

    # ------------------------------------------------------------------ names
    def _orientation_tokens(self) -> list[str]:
        return [ORIENTATION_TOKENS[o] for o in self.settings.orientations] if self.settings.mapped else [""]

    def feature_names(self) -> list[str]:
        """``<Layer><Orientation>P<size><Pooling><channel>[-<modality>]`` for every tap, patch size, pooling and channel."""
        return [spec[0] for spec in self._feature_specs()]

    def _feature_specs(self):
        """``(token, modality, layer name, orientation token, patch side, pooling, channel)`` of every feature, in order."""
        s = self.settings
        for modality in s.modalities:
            suffix = "" if modality == "Image" else f"-{modality}"
            for layer in self._layers():
                width = max(3, len(str(layer.channels - 1)))
                for orientation in self._orientation_tokens():
                    for size in s.patch_sizes:
                        for pooling in s.pooling:
                            prefix = f"{layer.token}{orientation}P{size}{POOLINGS[pooling]}"
                            for c in range(layer.channels):
                                yield f"{prefix}{c:0{width}d}{suffix}", modality, layer.name, orientation, size, pooling, c

    def voxel_maps(self, case) -> dict:
        """Per-voxel maps of the features named by ``map_features`` (default: the first feature).

        The feature pools one channel of one layer over each patch (mean or max), then over the patches. Its
        map paints every patch's voxels with that patch's own pooled value (where patches overlap, their
        mean), so the map shows where in the ROI the channel responds; voxels in no patch are NaN. Maps are
        float32 on the case's grid (nearest neighbour from the isotropic grid when it was resampled).
        """
        import numpy as np

        from .patches import extract_patches, grid_volume, patch_centres

        specs = {spec[0]: spec for spec in self._feature_specs()}
        wanted = list(self.settings.map_features or [next(iter(specs))])
        for token in wanted:
            if token not in specs:
                raise ParamsError(f"{self._where}.map_features: '{token}' is not a feature of these settings.{did_you_mean(token, specs)}")
        grid = self._grid(case)
        centres = {size: patch_centres(grid.roi, self.settings.stride or size) for size in self.settings.patch_sizes}
        pooled: dict = {}
        reference = case.mask_image()
        out = {}
        for token in wanted:
            _, modality, layer, orientation, size, pooling, channel = specs[token]
            if (modality, size) not in pooled:
                image = case.image(modality)
                volume = grid_volume(image, grid)
                patches = extract_patches(volume, centres[size], size)
                pooled[(modality, size)] = self.encode_patches(patches, case.input_transforms, self._input_convention.scaler(image))
            means, maxima = pooled[(modality, size)][(layer, orientation)]
            values = (means if pooling == "mean" else maxima)[:, channel]
            total, count = np.zeros(grid.roi.shape), np.zeros(grid.roi.shape)
            for value, centre in zip(values, centres[size]):
                box = tuple(slice(int(c) - size // 2, int(c) - size // 2 + size) for c in centre)
                total[box] += value
                count[box] += 1
            with np.errstate(invalid="ignore", divide="ignore"):
                painted = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
            out[token] = self._to_case_grid(painted, grid, reference)
        return out

    @staticmethod
    def _to_case_grid(array, grid, reference):
        """An array on the ROI grid as an image on the case's grid (NaN beyond the ROI grid)."""
        import numpy as np
        import SimpleITK as sitk

        if grid.resampled:
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(grid.reference)
            return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, float("nan"), sitk.sitkFloat32)
        full = np.full(sitk.GetArrayViewFromImage(reference).shape, np.nan, dtype=np.float32)
        start = np.array(grid.start)
        lo, hi = np.maximum(start, 0), np.minimum(start + np.array(array.shape), full.shape)
        full[tuple(slice(a, b) for a, b in zip(lo, hi))] = array[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))]
        image = sitk.GetImageFromArray(full)
        image.CopyInformation(reference)
        return image

    # ------------------------------------------------------------------ network (lazy)
    def _encoder(self):
        """The 3D network (built on first use, once per instance, under a lock; not pickled)."""
        return lazy(self, "_network", self._build_encoder)

    def _build_encoder(self):
        from .encoders import build_inflated_encoder, build_mapped_vgg, build_random_vgg

        s = self.settings
        layers = self._layers()
        if s.network == "encoder-3d":
            self._bundle_config()  # the type check, with the setting's name in the message
            encoder = build_inflated_encoder(s.weights, self._base_dir, s.orientations, layers, s.device)
        elif s.weights == "random":
            encoder = build_random_vgg(s.seed, s.initializer, s.pool_rounding, layers, s.device)
        else:
            path = str(self.resolve_path(s.weights))
            encoder = build_mapped_vgg(path, s.weights_sha256, s.orientations, s.pool_rounding, layers, s.device, self._where)
        if s.mapped:
            self._weights_sha256 = encoder.sha256
        return encoder

    def artifacts(self) -> dict[str, str]:
        """``{"Weights": sha256}`` of the weights file or bundle the features depend on (none for random weights)."""
        s = self.settings
        if s.weights == "random":
            return {}
        if s.network == "encoder-3d":
            return {"Weights": str(self._bundle_config()["model_sha256"])}
        from deepradiomics.models import sha256_file

        return {"Weights": lazy(self, "_weights_sha256", lambda: sha256_file(self.resolve_path(s.weights)))}

    def __getstate__(self) -> dict[str, Any]:
        # batch workers receive the class pickled: send the settings, not the networks (rebuilt there)
        state = dict(self.__dict__)
        state.pop("_network", None)
        return state

    # ------------------------------------------------------------------ features
    def _batch_size(self, size: int) -> int:
        if self.settings.batch_size is not None:
            return int(self.settings.batch_size)
        return max(1, BATCH_BYTES // (2 * 64 * 4 * size**3))

    def _grid(self, case):
        from .patches import make_roi_grid, roi_grid_voxels

        mask_image = case.mask_image()
        flat = [n for n in mask_image.GetSize() if n < 2]
        if flat:
            raise CaseError(
                f"case '{case.case_id}': the mask '{case.source('mask')}' has size {mask_image.GetSize()}, a 2D image; "
                "cnn encodes 3D patches: give a 3D volume"
            )
        margin = max(self.settings.patch_sizes) // 2 + 1
        roi = case.mask_array()
        voxels = roi_grid_voxels(mask_image, roi, float(self.settings.spacing), margin)
        if voxels > MAX_GRID_VOXELS:
            raise CaseError(
                f"case '{case.case_id}': featureClass.cnn.spacing {self.settings.spacing} mm gives an isotropic grid of {voxels:,} voxels "
                f"around its ROI (with a margin of {margin} voxels for patches of {max(self.settings.patch_sizes)}); at most "
                f"{MAX_GRID_VOXELS:,} are allowed: use a coarser spacing or smaller patch_sizes"
            )
        grid = make_roi_grid(mask_image, roi, float(self.settings.spacing), margin)
        if not grid.roi.any():
            raise CaseError(
                f"case '{case.case_id}': the ROI vanishes when resampled to {self.settings.spacing} mm: use a smaller featureClass.cnn.spacing"
            )
        extent = grid.roi_extent
        smallest = min(self.settings.patch_sizes)
        if max(extent) < smallest:
            raise CaseError(
                f"case '{case.case_id}': the ROI spans {extent[2]} x {extent[1]} x {extent[0]} voxels (x, y, z) of "
                f"{self.settings.spacing} mm, smaller than the smallest patch ({smallest} voxels): its patches would "
                "describe the surroundings; use smaller featureClass.cnn.patch_sizes or a finer spacing"
            )
        return grid

    def encode_patches(self, patches, input_transforms=(), scaler=None) -> dict[tuple[str, str], tuple]:
        """Per-patch channel means and maxima of every tap for raw patches (n, p, p, p) float32 numpy.

        ``scaler`` maps raw patches to the network input (the weights' input convention,
        :meth:`.conventions.InputConvention.scaler` of the patches' image); None: the convention's scaler
        without an image, which the per-patch conventions need (``zscore`` needs the image).

        ``input_transforms`` (a case's ``input_transforms``) perturb each scaled patch, the network input, with
        that patch's own mean and sd over its voxels > 0 (:func:`deepradiomics.perturb.perturb_input`).

        Returns ``{(layer, orientation token): (means (n, C), maxima (n, C))}`` as float64 numpy arrays.
        Patches are mapped to the network input (random weights: each onto [-127.5, 127.5]), batched, run
        once each under inference mode.
        """
        import numpy as np
        import torch

        from deepradiomics.perturb import perturb_input

        if scaler is None:
            scaler = self._input_convention.scaler()
        encoder = self._encoder()
        size = patches.shape[-1]
        step = self._batch_size(size)
        parts: dict[tuple[str, str], list] = {}
        device = torch.device(self.settings.device)
        with torch.inference_mode():
            for start in range(0, len(patches), step):
                x = torch.from_numpy(patches[start : start + step]).to(device).unsqueeze(1)
                network_input = perturb_input(scaler(x), input_transforms, foreground=x > 0, reduce_dims=range(1, x.dim()))
                for key, (means, maxima) in encoder.pooled(network_input).items():
                    parts.setdefault(key, []).append((means.cpu().numpy(), maxima.cpu().numpy()))
        return {key: (np.concatenate([m for m, _ in v]), np.concatenate([x for _, x in v])) for key, v in parts.items()}

    def compute(self, case) -> ComputeResult:
        """Pooled activations of the case's ROI patches (see the module docstring); diagnostics: ROI voxels, resampling, patches."""
        from .patches import extract_patches, grid_volume, patch_centres

        s = self.settings
        grid = self._grid(case)
        centres = {size: patch_centres(grid.roi, s.stride or size) for size in s.patch_sizes}
        values: dict[str, float] = {}
        for modality in s.modalities:
            image = case.image(modality)
            volume = grid_volume(image, grid)
            scaler = self._input_convention.scaler(image)  # per-volume statistics, if any, read once per modality
            suffix = "" if modality == "Image" else f"-{modality}"
            pooled = {
                size: self.encode_patches(extract_patches(volume, centres[size], size), case.input_transforms, scaler) for size in s.patch_sizes
            }
            for layer in self._layers():
                width = max(3, len(str(layer.channels - 1)))
                for orientation in self._orientation_tokens():
                    for size in s.patch_sizes:
                        means, maxima = pooled[size][(layer.name, orientation)]
                        summary = {"mean": means.mean(0), "max": maxima.max(0)}
                        for pooling in s.pooling:
                            prefix = f"{layer.token}{orientation}P{size}{POOLINGS[pooling]}"
                            for c, value in enumerate(summary[pooling].tolist()):
                                values[f"{prefix}{c:0{width}d}{suffix}"] = float(value)
        diagnostics: dict[str, object] = {"RoiVoxels": int(grid.roi.sum()), "Resampled": grid.resampled}
        for size in s.patch_sizes:
            diagnostics[f"PatchesP{size}"] = len(centres[size])
        return ComputeResult(values, diagnostics)

    def diagnostics(self) -> dict[str, object]:
        """Network, weights and their sha256, initializer, seed, orientations, parameters, layers, pooling, spacing."""
        s = self.settings
        encoder = self._encoder()
        diagnostics: dict[str, object] = {
            "Network": s.network,
            "Weights": encoder.source,
            # random: sha256 of the generated 3D weights (the seed's fingerprint, the same on every machine);
            # mapped: of the weights file or bundle (also reported by artifacts())
            "WeightsSha256": encoder.sha256,
            "Initializer": (
                f"{s.initializer} (numpy PCG64 raw stream, seed {s.seed}; biases 0)"
                if not s.mapped
                else "mapped from 2D: first-layer channels along the orientation axis (paper, section 2.2), deeper k x k kernels "
                "replicated k times along it and divided by k (the project's choice, I3D's inflation)"
            ),
            "Seed": None if s.mapped else s.seed,
            "Orientations": ",".join(s.orientations) if s.mapped else None,
            "Parameters": encoder.parameters,
            "Layers": ",".join(layer.name for layer in self._layers()),
            "PoolRounding": s.pool_rounding,
            "Spacing": float(s.spacing),
            **convention_diagnostics(self._input_convention),
        }
        return diagnostics
