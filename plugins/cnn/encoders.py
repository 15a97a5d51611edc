"""The 3D networks of the ``cnn`` class, their layer tables, and one batched pass that pools every tap.

Three ways to get a 3D encoder (``network`` / ``weights`` settings):

- ``vgg19-3d`` + ``random``: :class:`~deepradiomics.nets.vgg3d.VGG3D` with seeded Glorot- or He-uniform
  weights (:func:`~deepradiomics.nets.vgg3d.init_seeded_`), one network;
- ``vgg19-3d`` + a file: a 2D VGG-19 state dict (torchvision's, Keras' or caffe's key layout), mapped to
  3D once per orientation (:func:`~deepradiomics.nets.inflate.map_vgg2d_state_dict`);
- ``encoder-3d`` + a model bundle: the bundle's 2D encoder (VQ segmentation network) inflated once per
  orientation (:func:`~deepradiomics.nets.inflate.inflate`), its 3 input channels becoming the third axis.

Layer tables are built from the settings and the bundle's config.yaml alone (no torch), so feature
names never need a network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: VGG-19: (block, convolutions, filters)
VGG19_LAYOUT = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
VGG19_DEFAULT_LAYERS = ("conv2_2", "conv4_2", "conv5_4")
ENCODER_DEFAULT_LAYERS = ("block1", "block3", "head")
ORIENTATION_TOKENS = {"axial": "Axi", "coronal": "Cor", "sagittal": "Sag"}


@dataclass(frozen=True)
class Layer:
    """One tappable layer: its settings name, feature-name token, channels, module path and resolution level."""

    name: str
    token: str
    channels: int
    path: str
    level: int  # number of 2x downsamplings before it


def vgg19_layers() -> dict[str, Layer]:
    """``conv1_1`` ... ``conv5_4`` of VGG-19 (activation after ReLU; path = the ReLU's index in ``features``)."""
    layers, index = {}, 0
    for block, n_convs, filters in VGG19_LAYOUT:
        for i in range(1, n_convs + 1):
            name = f"conv{block}_{i}"
            layers[name] = Layer(name, f"Conv{block}{i}", filters, f"features.{index + 1}", block - 1)
            index += 2
        index += 1
    return layers


def encoder_layers(architecture: Mapping) -> dict[str, Layer]:
    """Taps of a VQ segmentation network's encoder (``architecture`` of a ``vqseg`` bundle).

    ``stem`` (first convolution), ``block0`` ... ``block<n-1>`` (the residual blocks, one per entry of
    ``filters``; blocks 1 ... log2(S / 8) each follow a stride-2 convolution) and ``head`` (the 1x1
    convolution to the latent dimension D: the continuous latent z_e that the VQ quantises).
    """
    filters = [int(f) for f in architecture["filters"]]
    n_down = int(round(math.log2(int(architecture["input_size"]) / 8)))
    layers = {"stem": Layer("stem", "Stem", filters[0], "stem", 0)}
    stage_index = 0
    for i, f in enumerate(filters):
        if 0 < i <= n_down:
            stage_index += 1  # the stride-2 convolution before this block
        layers[f"block{i}"] = Layer(f"block{i}", f"Block{i}", f, f"stages.{stage_index}", min(i, n_down))
        stage_index += 1
    layers["head"] = Layer("head", "Head", int(architecture["embedding_dim"]), "head", n_down)
    return layers


@dataclass
class PatchEncoder:
    """One 3D network per orientation token ('' for a single network) and the layers to tap.

    :meth:`pooled` runs a batch of network inputs (patches mapped by the input convention) through every
    network once and returns, per (layer, orientation token), each patch's global mean and max of every channel.
    """

    networks: dict[str, object]
    layers: Sequence[Layer]
    kind: str  # "vgg" (VGG3D.activations) or "module" (hooks on named submodules)
    sha256: str
    source: str
    parameters: int = 0
    channels_last: bool = False

    def use_channels_last(self, enabled: bool = True) -> PatchEncoder:
        """Put the networks' weights, and later the patches, in channels-last memory format (or back).

        Measured in benchmarks/cnn_speed.py: with weights and input both channels-last, oneDNN's 3D
        convolutions run faster on CPU; converting the input alone changes nothing.
        """
        import torch

        memory_format = torch.channels_last_3d if enabled else torch.contiguous_format
        for net in self.networks.values():
            net.to(memory_format=memory_format)
        self.channels_last = enabled
        return self

    def pooled(self, x) -> dict[tuple[str, str], tuple]:
        """``{(layer name, orientation token): (means (B, C) float64, maxima (B, C) float64)}`` for patches ``x`` (B, 1, p, p, p)."""
        import torch

        from deepradiomics.nets.inflate import collect_activations

        out = {}
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        names = [layer.name for layer in self.layers]
        for token, net in self.networks.items():
            if self.kind == "vgg":
                maps = net.activations(x, names)
            else:
                found = collect_activations(net, x, [layer.path for layer in self.layers])
                maps = {layer.name: found[layer.path] for layer in self.layers}
            for name, activation in maps.items():
                flat = activation.flatten(2)
                out[(name, token)] = (flat.mean(2).double(), flat.amax(2).double())
        return out


def build_random_vgg(seed: int, initializer: str, pool_rounding: str, layers: Sequence[Layer], device: str) -> PatchEncoder:
    """The paper's untrained VGG-19-3D architecture with seeded random weights (:meth:`VGG3D.seeded`)."""
    from deepradiomics.nets.vgg3d import VGG3D

    net, digest = VGG3D.seeded(seed, initializer, in_channels=1, pool_rounding=pool_rounding)
    net = net.to(device).eval()
    return PatchEncoder({"": net}, list(layers), "vgg", digest, "random", net.parameter_count()).use_channels_last()


def read_vgg2d_state(path: str, expected_sha256: str | None, where: str, mmap: bool = False) -> tuple[dict, str]:
    """``(state dict, sha256)`` of a 2D VGG-19 weights file, read safely.

    The file's sha256 is computed (and compared with ``expected_sha256`` when given) before torch reads it
    with ``weights_only=True``; ``mmap=True`` maps the tensors instead of reading them (enough to look at
    the keys; files in torch's legacy format are read). Errors are ParamsError naming the setting ``where``.
    """
    import pickle

    import torch

    from deepradiomics.errors import ParamsError
    from deepradiomics.models import sha256_file

    digest = sha256_file(path)
    if expected_sha256 and digest != expected_sha256.lower():
        raise ParamsError(
            f"{where}.weights: '{path}' has sha256 {digest} but weights_sha256 says {expected_sha256}: the file changed; "
            "use the right file or update weights_sha256"
        )
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # legacy format: cannot be mapped
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ParamsError(
            f"{where}.weights: '{path}' is not a plain state dict of tensors readable with torch.load(weights_only=True); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    return state, digest


def vgg2d_file_layout(path: str, expected_sha256: str | None, where: str) -> tuple[str, str]:
    """``(key layout, sha256)`` of a 2D VGG-19 weights file (:func:`deepradiomics.nets.inflate.vgg2d_layout`).

    Errors are ParamsError naming the setting ``where``.
    """
    from deepradiomics.errors import ModelError, ParamsError
    from deepradiomics.nets.inflate import vgg2d_layout

    state, digest = read_vgg2d_state(path, expected_sha256, where, mmap=True)
    try:
        return vgg2d_layout(state, where=f"'{path}'"), digest
    except ModelError as exc:
        raise ParamsError(f"{where}.weights: {exc}") from exc


def build_mapped_vgg(
    path: str, expected_sha256: str | None, orientations: Sequence[str], pool_rounding: str, layers: Sequence[Layer], device: str, where: str
) -> PatchEncoder:
    """Three (or fewer) VGG-19-3D networks mapped from a 2D VGG-19 state dict file, one per orientation.

    The file is read by :func:`read_vgg2d_state` (sha256 first, then ``weights_only``); any of the key
    layouts of :func:`deepradiomics.nets.inflate.map_vgg2d_state_dict` is mapped. Errors are ParamsError
    naming the setting ``where``.
    """
    import torch

    from deepradiomics.errors import ModelError, ParamsError
    from deepradiomics.nets.inflate import map_vgg2d_state_dict
    from deepradiomics.nets.vgg3d import VGG3D

    state, digest = read_vgg2d_state(path, expected_sha256, where)
    networks = {}
    for orientation in orientations:
        with torch.device("meta"):  # every parameter is loaded below: skip PyTorch's own initialisation
            net = VGG3D(in_channels=1, pool_rounding=pool_rounding)
        net = net.to_empty(device="cpu")
        try:
            mapped = map_vgg2d_state_dict(state, orientation, net, where=f"'{path}'")
        except ModelError as exc:
            raise ParamsError(f"{where}.weights: {exc}") from exc
        net.load_state_dict(mapped)
        networks[ORIENTATION_TOKENS[orientation]] = net.to(device).eval()
    parameters = sum(n.parameter_count() for n in networks.values())
    return PatchEncoder(networks, list(layers), "vgg", digest, str(path), parameters).use_channels_last()


def build_inflated_encoder(bundle_name: str, base_dir, orientations: Sequence[str], layers: Sequence[Layer], device: str) -> PatchEncoder:
    """A bundle's 2D encoder inflated to 3D once per orientation (its input channels -> the orientation axis).

    ``base_dir`` is the folder a relative bundle folder is relative to (the params file's).
    """
    from deepradiomics.models import load_bundle
    from deepradiomics.nets.inflate import inflate

    bundle = load_bundle(bundle_name, device="cpu", base_dir=base_dir)
    networks = {}
    for orientation in orientations:
        networks[ORIENTATION_TOKENS[orientation]] = inflate(bundle.model.encoder, orientation, channels_to_axis="stem").to(device).eval()
    parameters = sum(sum(p.numel() for p in n.parameters()) for n in networks.values())
    return PatchEncoder(networks, list(layers), "module", bundle.sha256, bundle.name, parameters).use_channels_last()
