"""VGG-19 without its dense layers, in 3D (Avants et al., WBIR 2020) or 2D, with named activations.

The network of the paper's "no training" encoder: five blocks of 2, 2, 4, 4, 4 convolutions (3x3x3,
padding 1, ReLU) with 64, 128, 256, 512, 512 filters, each block followed by a 2x2x2 max pooling with
stride 2; one input channel; no dense layers. It has 60,058,688 parameters.

Layers are named as in Keras' and torchvision's VGG-19: ``conv<block>_<index>`` (``conv1_1`` ...
``conv5_4``); the activation of a layer is its output after the ReLU (Keras builds the ReLU into the
convolution). The modules sit in one ``features`` ``nn.Sequential`` indexed exactly as torchvision's
``vgg19().features``: a 2D instance (``spatial_dims=2, in_channels=3``) has torchvision's state-dict keys
``features.0.weight``, ``features.0.bias``, ``features.2.weight``, ... ``features.34.bias``, which is what
:func:`deepradiomics.nets.inflate.map_vgg2d_state_dict` maps to 3D.

Pooling rounds up (``pool_rounding="ceil"``, PyTorch's ``ceil_mode=True``, the same as Keras'
``padding="same"`` for 2-wide pools with stride 2): a side of n voxels becomes ceil(n / 2), so every
patch of at least one voxel keeps at least one voxel down to ``conv5_4``; the paper's 12-voxel patches
give 12 -> 6 -> 3 -> 2 -> 1, where floor rounding (Keras' default ``"valid"``, torchvision's default)
would give 12 -> 6 -> 3 -> 1 -> 0 and no ``conv5_x`` output at all. When every pooled side is even (a
patch that is a multiple of 16 for ``conv5_x``) both roundings give the same numbers.
``pool_rounding="floor"`` builds the classic network; :meth:`VGG3D.check_input_size` says which layers a
size cannot reach.

Random weights come from :func:`init_seeded_`, a seeded initialiser whose weights are bitwise identical
on every machine (see its docstring).

Examples
--------
>>> net = VGG3D(filters=(4, 8, 8, 16, 16))
>>> out = net.activations(torch.zeros(2, 1, 12, 12, 12), ["conv2_2", "conv5_4"])
>>> {name: tuple(a.shape) for name, a in out.items()}
{'conv2_2': (2, 8, 6, 6, 6), 'conv5_4': (2, 16, 1, 1, 1)}
>>> VGG3D().parameter_count()
60058688
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

#: convolutions per block and filters per block of VGG-19
VGG19_BLOCKS: tuple[int, ...] = (2, 2, 4, 4, 4)
VGG19_FILTERS: tuple[int, ...] = (64, 128, 256, 512, 512)
POOL_ROUNDINGS = ("ceil", "floor")
INITIALIZERS = ("glorot-uniform", "he-uniform")


def vgg_layer_names(blocks: Sequence[int] = VGG19_BLOCKS) -> list[str]:
    """Names of the convolutions of a VGG with ``blocks`` convolutions per block (``conv1_1``, ...)."""
    return [f"conv{b + 1}_{i + 1}" for b, n in enumerate(blocks) for i in range(n)]


class VGG3D(nn.Module):
    """VGG (default VGG-19) convolutional part in 3D or 2D, with :meth:`activations` of named layers.

    Parameters
    ----------
    in_channels
        Input channels (the paper's 3D network: 1; torchvision's 2D VGG-19: 3).
    blocks, filters
        Convolutions and filters per block (VGG-19: 2, 2, 4, 4, 4 and 64, 128, 256, 512, 512).
    spatial_dims
        3 (Conv3d, MaxPool3d) or 2 (Conv2d, MaxPool2d).
    pool_rounding
        ``"ceil"`` (default: small patches stay valid, see the module docstring) or ``"floor"``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        blocks: Sequence[int] = VGG19_BLOCKS,
        filters: Sequence[int] = VGG19_FILTERS,
        spatial_dims: int = 3,
        pool_rounding: str = "ceil",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims {spatial_dims} must be 2 or 3")
        if pool_rounding not in POOL_ROUNDINGS:
            raise ValueError(f"pool_rounding {pool_rounding!r} must be one of {POOL_ROUNDINGS}")
        if len(blocks) != len(filters) or not blocks or min(blocks) < 1 or min(filters) < 1:
            raise ValueError(f"blocks {list(blocks)} and filters {list(filters)} must be equally long lists of positive counts")
        self.in_channels = int(in_channels)
        self.blocks = tuple(int(b) for b in blocks)
        self.filters = tuple(int(f) for f in filters)
        self.spatial_dims = int(spatial_dims)
        self.pool_rounding = pool_rounding
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        pool = nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d
        layers: list[nn.Module] = []
        #: layer name -> index in ``features`` of the ReLU that ends it (where its activation is read)
        self.layer_index: dict[str, int] = {}
        #: layer name -> index in ``features`` of its convolution (torchvision's state-dict index)
        self.conv_index: dict[str, int] = {}
        #: layer name -> number of poolings before it
        self.layer_level: dict[str, int] = {}
        previous = self.in_channels
        for b, (n_convs, n_filters) in enumerate(zip(self.blocks, self.filters)):
            for i in range(n_convs):
                name = f"conv{b + 1}_{i + 1}"
                self.conv_index[name] = len(layers)
                layers.append(conv(previous, n_filters, kernel_size=3, padding=1))
                self.layer_index[name] = len(layers)
                layers.append(nn.ReLU(inplace=True))
                self.layer_level[name] = b
                previous = n_filters
            layers.append(pool(kernel_size=2, stride=2, ceil_mode=pool_rounding == "ceil"))
        self.features = nn.Sequential(*layers)

    @classmethod
    def from_config(cls, arch: dict[str, Any]) -> VGG3D:
        """Build from an ``architecture`` mapping (``type: vgg3d`` in a bundle's config.yaml)."""
        keys = ("in_channels", "blocks", "filters", "spatial_dims", "pool_rounding")
        return cls(**{k: arch[k] for k in keys if k in arch})

    @classmethod
    def seeded(cls, seed: int = 0, initializer: str = "glorot-uniform", **kwargs: Any) -> tuple[VGG3D, str]:
        """A network with the seeded random weights of :func:`init_seeded_`, and their sha256.

        The modules are created on PyTorch's meta device, so PyTorch's own initialisation neither runs
        (time) nor draws from the global torch random generator (a side effect on the caller's randomness).
        """
        with torch.device("meta"):
            net = cls(**kwargs)
        net = net.to_empty(device="cpu")
        return net, init_seeded_(net, seed, initializer)

    def config(self) -> dict[str, Any]:
        """The ``architecture`` mapping that :meth:`from_config` reads back."""
        return {
            "type": "vgg3d",
            "in_channels": self.in_channels,
            "blocks": list(self.blocks),
            "filters": list(self.filters),
            "spatial_dims": self.spatial_dims,
            "pool_rounding": self.pool_rounding,
        }

    # ------------------------------------------------------------------ description
    @property
    def layer_names(self) -> list[str]:
        """Convolution names in network order (``conv1_1`` ... ``conv5_4`` for VGG-19)."""
        return list(self.layer_index)

    def layer_channels(self, name: str) -> int:
        """Number of filters (activation channels) of layer ``name``."""
        return self.filters[self.layer_level[name]]

    def parameter_count(self) -> int:
        """Number of parameters (weights and biases)."""
        return sum(p.numel() for p in self.parameters())

    def _pooled(self, size: int, times: int) -> int:
        for _ in range(times):
            size = -(-size // 2) if self.pool_rounding == "ceil" else size // 2
        return size

    def layer_size(self, name: str, input_size: int) -> int:
        """Side of layer ``name``'s activation for a cubic input of side ``input_size`` (0: unreachable)."""
        return self._pooled(int(input_size), self.layer_level[name])

    def check_input_size(self, input_size: int, layers: Iterable[str]) -> list[str]:
        """Layers among ``layers`` that an input of side ``input_size`` cannot reach (their side would be 0)."""
        return [name for name in layers if self.layer_size(name, input_size) < 1]

    def conv_flops(self, input_size: int, up_to: str | None = None) -> int:
        """FLOPs (2 x multiply-adds) of the convolutions for one cubic input, up to and including ``up_to``.

        Counted from the shapes: ``2 * C_in * C_out * 3**d * side**d`` per convolution at its input side.
        """
        flops = 0
        for name in self.layer_names:
            side = self.layer_size(name, input_size)
            conv = self.features[self.conv_index[name]]
            flops += 2 * conv.in_channels * conv.out_channels * 3**self.spatial_dims * side**self.spatial_dims
            if name == up_to:
                break
        return flops

    # ------------------------------------------------------------------ inference
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output of the last pooling (the input of VGG's dense layers, which this network does not have)."""
        return self.features(x)

    def activations(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations (after ReLU) of the named layers in one forward pass that stops at the deepest.

        Parameters
        ----------
        x
            Input batch ``(B, in_channels, *spatial)``.
        layers
            Layer names, e.g. ``["conv2_2", "conv4_2", "conv5_4"]``.

        Returns
        -------
        dict
            ``{name: (B, C, *spatial) tensor}`` in the order of ``layers``.
        """
        layers = list(layers)
        unknown = [name for name in layers if name not in self.layer_index]
        if unknown:
            raise KeyError(f"unknown layer(s) {unknown}; layers are {', '.join(self.layer_names)}")
        wanted = {self.layer_index[name]: name for name in layers}
        last = max(wanted)
        found: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                # the next module is a convolution or a pooling, neither in place: x stays as it is
                found[wanted[index]] = x
            if index == last:
                break
        return {name: found[name] for name in layers}


def _uniform_from_stream(generator: np.random.Generator, count: int, bound: float) -> np.ndarray:
    """``count`` float32 values uniform in [-bound, bound) from the raw 64-bit stream of ``generator``.

    Only the bit generator's raw output and IEEE-754 arithmetic are used (top 53 bits -> [0, 1) exactly,
    then one multiply-subtract-multiply in float64 and one rounding to float32), so the values are the
    same on every platform and NumPy version: NumPy keeps bit-generator streams stable, whereas its
    distribution methods, like torch's CPU sampling kernels, may change between versions.
    """
    values = (generator.bit_generator.random_raw(count) >> np.uint64(11)).astype(np.float64)  # 53 random bits
    values *= 2.0 / 9007199254740992.0  # [0, 2): exact, a power of two
    values -= 1.0  # [-1, 1): exact
    values *= bound  # the only rounding in float64
    return values.astype(np.float32)


def init_seeded_(module: nn.Module, seed: int, initializer: str = "glorot-uniform") -> str:
    """Set every convolution of ``module`` to seeded random weights and zero biases; return their sha256.

    Initialisers (``fan_in = C_in * k**d``, ``fan_out = C_out * k**d`` as Keras counts them):

    - ``glorot-uniform``: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), Keras' default. The paper builds its
      networks with tensorflow in ANTsR but does not name the initialiser of its untrained VGG-19-3D: that
      it is Keras' default is the project's reading, not the paper's statement;
    - ``he-uniform``: b = sqrt(6 / fan_in), which keeps the activation variance through ReLU layers.

    Weights are drawn in module order, each tensor in PyTorch's (C_out, C_in, k...) C order, from one
    ``numpy.random.PCG64(seed)`` stream converted to floats by :func:`_uniform_from_stream`, so the same
    seed gives bitwise the same network on any machine. Every weight and bias of every convolution is
    written, so a module made of convolutions and parameter-free layers may come from the meta device
    (:meth:`VGG3D.seeded`). The returned sha256 covers every parameter's float32 bytes in
    ``state_dict`` order.
    """
    if initializer not in INITIALIZERS:
        raise ValueError(f"initializer {initializer!r} must be one of {INITIALIZERS}")
    generator = np.random.Generator(np.random.PCG64(int(seed)))
    convs = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    with torch.no_grad():
        for conv in convs:
            receptive = math.prod(conv.kernel_size)
            fan_in = conv.in_channels // conv.groups * receptive
            fan_out = conv.out_channels // conv.groups * receptive
            bound = math.sqrt(6.0 / (fan_in + fan_out)) if initializer == "glorot-uniform" else math.sqrt(6.0 / fan_in)
            values = _uniform_from_stream(generator, conv.weight.numel(), bound)
            conv.weight.copy_(torch.from_numpy(values.reshape(tuple(conv.weight.shape))))
            if conv.bias is not None:
                conv.bias.zero_()
    return state_sha256(module)


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers: key names and float32 bytes, in ``state_dict`` order."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value.detach().cpu().float().numpy()).tobytes())
    return digest.hexdigest()
