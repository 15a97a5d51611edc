"""VQSegNet: 2D encoder -> vector quantizer -> decoder segmentation network (Kobayashi et al. 2021).

The encoder is a stem convolution, residual stages separated by stride-2 downsampling, and a 1x1
convolution to the latent dimension D. There are no skip connections between encoder and decoder:
everything the decoder knows about a slice goes through the quantized 8x8 latent grid, which is what makes
the codeword histogram a description of the slice. The decoder mirrors the encoder with x2 bilinear
upsampling and ends in class logits. Two block types (``block``):

``"paper"``
    The blocks of the paper ("Implementation details", encoder and decoder networks): residual blocks of
    two [convolution 3x3 + group normalisation + LeakyReLU] sequences with a residual connection
    (post-activation, :class:`PostActBlock`), downsampling blocks of [convolution 3x3 stride 2 + group
    normalisation + LeakyReLU] (:class:`DownBlock`), and upsampling layers of "an interpolation function
    coupled with a convolutional function" (:class:`UpBlock`). What the paper leaves open is marked
    "chosen" in the classes' comments.
``"preact"`` (default)
    The project's CPU architecture, the one the shipped bundle ``vq-lgg-cpu`` was trained with:
    pre-activation residual blocks (GroupNorm -> LeakyReLU(0.2) -> conv3x3, twice; :class:`PreActBlock`),
    bare stride-2 convolutions for downsampling, bilinear upsampling without a convolution. A bundle whose
    ``architecture`` has no ``block`` key is this network.

Both use GroupNorm with gcd(C, 8) groups and LeakyReLU with slope 0.2 (chosen: the paper gives neither).

API used by feature extraction and by the explain/robustness commands::

    z_e = net.encode(x)                         # (B, D, 8, 8) continuous latents
    idx = net.quantizer.quantize(z_e)           # (B, 8, 8) codeword indices
    z_q = net.quantizer.embed(idx)              # indices -> quantized latents
    logits = net.decode(z_q)                    # (B, num_classes, S, S)
    idx = net.codeword_indices(x)               # inference shortcut (no grad, eval mode)
    idx = net.volume_codeword_indices(slices)   # batched, skips all-background slices
    labels = net.segment(x)                     # (B, S, S) argmax labels (logits=True: (B, K, S, S))
    net.feature_layers()                        # ["stem", "stage1", ..., "latent", "quantized"]
    h = net.features(x, "latent")               # z_e (B, D, 8, 8); any listed layer
    net.layer_geometry("latent")                # stride, offset, receptive field of that layer

The same ``segment`` / ``feature_layers`` / ``features`` / ``layer_geometry`` API is offered by
:class:`~deepradiomics.nets.dlrcnn.DLRCNN`, so any layer of any bundle can be a descriptor source.

Examples
--------
>>> net = VQSegNet(in_channels=3, num_classes=2, filters=(8, 8, 8, 8), decoder_filters=(8, 8, 8, 8),
...                input_size=32, num_embeddings=16, embedding_dim=8)
>>> out = net(torch.zeros(2, 3, 32, 32))
>>> out["logits"].shape, out["indices"].shape
(torch.Size([2, 2, 32, 32]), torch.Size([2, 8, 8]))
>>> paper = VQSegNet.from_config({"in_channels": 3, "num_classes": 2, "filters": [8, 8, 8, 8],
...                               "decoder_filters": [8, 8, 8, 8], "input_size": 32, "num_embeddings": 16,
...                               "embedding_dim": 8, "block": "paper"})
>>> paper.block, paper.encode(torch.zeros(1, 3, 32, 32)).shape
('paper', torch.Size([1, 8, 8, 8]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .vq import VectorQuantizerEMA

LATENT_SIZE = 8
#: the ``block`` values VQSegNet accepts (see the module docstring)
BLOCKS = ("preact", "paper")
#: negative slope of every LeakyReLU (chosen: the paper does not give it)
SLOPE = 0.2


def _groups(channels: int, groups: int = 8) -> int:
    return math.gcd(channels, groups)


class PreActBlock(nn.Module):
    """Pre-activation residual block: (GN -> LeakyReLU -> conv3x3) x 2 + identity or 1x1 projection."""

    def __init__(self, in_ch: int, out_ch: int, groups: int = 8) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch, groups), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        # in-place activation and sum: the same numbers with fewer full-resolution temporaries, which
        # matters on CPU where these memory-bound steps cost a third of the encoder's time
        h = self.conv1(F.leaky_relu(self.norm1(x), 0.2, inplace=True))
        h = self.conv2(F.leaky_relu(self.norm2(h), 0.2, inplace=True))
        return h.add_(self.proj(x))


class PostActBlock(nn.Module):
    """The paper's residual block: conv3x3 -> GN -> LeakyReLU -> conv3x3 -> GN, + skip, -> LeakyReLU.

    Kobayashi et al. 2021, "Encoder network": "two [convolution + group normalization + LeakyReLU]
    sequences are processed with residual connection", convolutions of kernel 3, stride 1, padding 1
    (paper). Where the skip joins is not stated: chosen after the second group normalisation and before
    its LeakyReLU, as in the original (post-activation) residual block of He et al., "Deep residual
    learning for image recognition", CVPR 2016, so that every convolution is followed by GN and LeakyReLU
    and the block's output is activated. When the channel count changes the skip is a 1x1 convolution
    (chosen: the paper is silent; He et al.'s projection shortcut, without a normalisation of its own).
    """

    def __init__(self, in_ch: int, out_ch: int, groups: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(out_ch, groups), out_ch)
        self.proj = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        # in place on GroupNorm outputs (GroupNorm's backward needs its input, not its output): fewer
        # full-resolution temporaries, as in PreActBlock
        h = F.leaky_relu(self.norm1(self.conv1(x)), SLOPE, inplace=True)
        h = self.norm2(self.conv2(h)).add_(self.proj(x))
        return F.leaky_relu(h, SLOPE, inplace=True)


class DownBlock(nn.Module):
    """The paper's downsampling block: conv3x3 stride 2 padding 1 -> GN -> LeakyReLU (Kobayashi et al. 2021).

    The paper gives the sequence and the kernel, stride and padding; it does not give the channel count:
    chosen to keep the channels of the block before it (the next residual block changes them).
    """

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        return F.leaky_relu(self.norm(self.conv(x)), SLOPE, inplace=True)


class UpBlock(nn.Module):
    """The paper's upsampling layer: x2 interpolation, then a convolution (Kobayashi et al. 2021, "Decoder network").

    The paper: "an upsampling layer using an interpolation function coupled with a convolutional function
    to double the size of the feature map". Chosen where it is silent: bilinear interpolation (as the
    preact decoder), interpolation before the convolution (resize-convolution, Odena et al., "Deconvolution
    and checkerboard artifacts", Distill 2016), a 3x3 convolution with padding 1 keeping the channel
    count, and no normalisation or activation of its own (the paper names none for this layer, unlike the
    downsampling block; the residual block after it starts with conv + GN + LeakyReLU).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        return self.conv(self.up(x))


#: the residual block classes (what feature_layers calls a stage)
RESIDUAL_BLOCKS = (PreActBlock, PostActBlock)


def _check_block(block: str) -> str:
    if block not in BLOCKS:
        raise ValueError(f"block '{block}' is not one of {', '.join(BLOCKS)} (architecture.block / model.block)")
    return block


class _Stem(nn.Module):
    """Shared by Encoder and Decoder: ``stem`` conv3x3, followed (``paper``) by ``stem_norm`` and LeakyReLU.

    ``stem`` stays a bare Conv2d in both blocks: :func:`deepradiomics.nets.inflate.inflate` maps the input
    channels of the convolution named ``stem`` onto the 3D axis (the cnn plugin's inflated encoders).
    """

    stem: nn.Conv2d
    stem_norm: nn.GroupNorm | None

    def run_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's output (after its GN + LeakyReLU for ``block="paper"``)."""
        h = self.stem(x)
        return h if self.stem_norm is None else F.leaky_relu(self.stem_norm(h), SLOPE, inplace=True)


def _n_down(input_size: int) -> int:
    n = math.log2(input_size / LATENT_SIZE)
    if input_size % LATENT_SIZE or n != int(n) or n < 0:
        raise ValueError(f"input_size {input_size} must be 8 * 2**n (e.g. 64, 128, 256) to give an 8x8 latent")
    return int(n)


class Encoder(_Stem):
    """Stem conv, residual stages, downsampling between the first log2(S/8) stage pairs, 1x1 to D.

    ``block="preact"``: pre-activation stages, bare stride-2 convolutions, GN -> LeakyReLU -> 1x1 head.
    ``block="paper"``: stem conv + GN + LeakyReLU (chosen: the paper lists residual and downsampling
    blocks only; one convolution reads the modalities, so the first block's skip works on features and the
    encoder stays inflatable), post-activation stages, :class:`DownBlock` downsampling, and a bare 1x1
    convolution to D (chosen: the paper gives z_e as 64 x 8 x 8 after 128-filter blocks but not the layer
    that maps them; the last block's output is already activated and z_e is left unnormalised, as
    VQ-VAE's encoder output).
    """

    def __init__(
        self,
        in_channels: int,
        filters: Sequence[int],
        embedding_dim: int,
        input_size: int,
        groups: int = 8,
        block: str = "preact",
    ) -> None:
        super().__init__()
        paper = _check_block(block) == "paper"
        n_down = _n_down(input_size)
        if n_down > len(filters) - 1:
            raise ValueError(f"{len(filters)} stages cannot reach 8x8 from {input_size}: give >= {n_down + 1} filters")
        # module creation order of the preact network is kept as it was: same initial weights from a seed
        self.stem = nn.Conv2d(in_channels, filters[0], 3, padding=1)
        self.stem_norm = nn.GroupNorm(_groups(filters[0], groups), filters[0]) if paper else None
        residual = PostActBlock if paper else PreActBlock
        layers: list[nn.Module] = []
        prev = filters[0]
        for i, f in enumerate(filters):
            # downsample early: the expensive full-resolution stages stay narrow. At the paper's 256 x 256
            # with 6 stages this is the paper's "each residual block is followed by a downsampling block
            # ..., except for the bottom of the network"
            if 0 < i <= n_down:
                layers.append(DownBlock(prev, groups) if paper else nn.Conv2d(prev, prev, 3, stride=2, padding=1))
            layers.append(residual(prev, f, groups))
            prev = f
        self.stages = nn.Sequential(*layers)
        if paper:
            self.head: nn.Module = nn.Conv2d(prev, embedding_dim, 1)
        else:
            self.head = nn.Sequential(
                nn.GroupNorm(_groups(prev, groups), prev), nn.LeakyReLU(SLOPE), nn.Conv2d(prev, embedding_dim, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        return self.head(self.stages(self.run_stem(x)))


class Decoder(_Stem):
    """Stem conv from D, residual stages with x2 upsampling before the last log2(S/8) stages, 1x1 to logits.

    ``block="preact"``: pre-activation stages after bare bilinear upsampling, GN -> LeakyReLU -> 1x1 head.
    ``block="paper"``: stem conv + GN + LeakyReLU (chosen, as the encoder's), post-activation stages each
    after an :class:`UpBlock` (interpolation + convolution, the paper), a bare 1x1 convolution to the class
    logits (chosen). The paper's decoder text says it yields "reconstructed 2D images with a size of
    4 x 256 x 256"; its network is trained on segmentation, so this one outputs S class logits.
    """

    def __init__(
        self,
        embedding_dim: int,
        filters: Sequence[int],
        num_classes: int,
        input_size: int,
        groups: int = 8,
        block: str = "preact",
    ) -> None:
        super().__init__()
        paper = _check_block(block) == "paper"
        n_down = _n_down(input_size)
        n = len(filters)
        if n_down > n - 1:
            raise ValueError(f"{n} decoder stages cannot reach {input_size} from 8x8: give >= {n_down + 1} filters")
        self.stem = nn.Conv2d(embedding_dim, filters[0], 3, padding=1)
        self.stem_norm = nn.GroupNorm(_groups(filters[0], groups), filters[0]) if paper else None
        residual = PostActBlock if paper else PreActBlock
        layers: list[nn.Module] = []
        prev = filters[0]
        for i, f in enumerate(filters):
            if i >= n - n_down:
                layers.append(UpBlock(prev) if paper else nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            layers.append(residual(prev, f, groups))
            prev = f
        self.stages = nn.Sequential(*layers)
        if paper:
            self.head: nn.Module = nn.Conv2d(prev, num_classes, 1)
        else:
            self.head = nn.Sequential(
                nn.GroupNorm(_groups(prev, groups), prev), nn.LeakyReLU(SLOPE), nn.Conv2d(prev, num_classes, 1)
            )

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x``."""
        return self.head(self.stages(self.run_stem(z_q)))


class VQSegNet(nn.Module):
    """Encoder -> VectorQuantizerEMA -> decoder; see the module docstring for the API.

    Parameters
    ----------
    in_channels
        Number of input modalities C.
    num_classes
        Output classes (background included).
    filters, decoder_filters
        Channels of the encoder / decoder stages (paper: 32-64-128-128-128-128 and 128-128-128-128-64-32).
    input_size
        S, side of the square input slice; the latent grid is always 8x8.
    num_embeddings, embedding_dim
        K and D of the codebook.
    quantizer
        Extra keyword arguments of :class:`VectorQuantizerEMA` (decay, kmeans_init, dead_threshold, ...).
    init
        ``"default"``: PyTorch's default initialisation (what the shipped bundles were trained from);
        ``"he"``: He (Kaiming) normal initialisation of every convolution for LeakyReLU(0.2), zero
        biases, as in the paper. Only the starting point of training depends on it.
    block
        ``"preact"`` (default; the shipped ``vq-lgg-cpu``): pre-activation residual blocks, bare stride-2
        downsampling, upsampling without a convolution. ``"paper"``: the paper's post-activation residual
        blocks, conv + GN + LeakyReLU downsampling and interpolation + convolution upsampling (see the
        module docstring and :class:`PostActBlock`, :class:`DownBlock`, :class:`UpBlock`).
    """

    #: keys a bundle's ``architecture`` must hold (checked by deepradiomics.models before building)
    REQUIRED_KEYS = ("in_channels", "num_classes", "filters", "decoder_filters", "input_size", "num_embeddings", "embedding_dim")

    #: what the training loop uses unless the config says otherwise
    training_defaults: dict[str, Any] = {"sampler": "slices", "loss": "dice+focal", "optimizer": "adam"}

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        filters: Sequence[int] = (32, 64, 128, 128, 128, 128),
        decoder_filters: Sequence[int] = (128, 128, 128, 128, 64, 32),
        input_size: int = 256,
        num_embeddings: int = 512,
        embedding_dim: int = 64,
        quantizer: dict[str, Any] | None = None,
        init: str = "default",
        block: str = "preact",
    ) -> None:
        super().__init__()
        if init not in ("default", "he"):
            raise ValueError(f"init '{init}' is not 'default' or 'he'")
        self.block = _check_block(block)
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.encoder = Encoder(in_channels, filters, embedding_dim, input_size, block=block)
        self.quantizer = VectorQuantizerEMA(num_embeddings, embedding_dim, **(quantizer or {}))
        self.decoder = Decoder(embedding_dim, decoder_filters, num_classes, input_size, block=block)
        self._background_indices: torch.Tensor | None = None
        self._codebook_frozen = False
        if init == "he":
            for module in (*self.encoder.modules(), *self.decoder.modules()):
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                    nn.init.zeros_(module.bias)

    @classmethod
    def from_config(cls, arch: dict[str, Any]) -> VQSegNet:
        """Build from the ``architecture`` mapping of a bundle's config.yaml (no ``block`` key: ``"preact"``)."""
        keys = (
            "in_channels",
            "num_classes",
            "filters",
            "decoder_filters",
            "input_size",
            "num_embeddings",
            "embedding_dim",
            "quantizer",
            "init",
            "block",
        )
        return cls(**{k: arch[k] for k in keys if k in arch})

    # ------------------------------------------------------------------ pieces
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous latents (B, D, 8, 8) of slices ``x`` (B, C, S, S)."""
        return self.encoder(x)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes, S, S) of quantized latents ``z_q`` (B, D, 8, 8)."""
        return self.decoder(z_q)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training/analysis pass: ``{"logits", "latent_loss", "indices"}``."""
        z_e = self.encode(x)
        z_q, latent_loss, indices = self.quantizer(z_e)
        logits = self.decode(z_q.to(z_e.dtype))
        return {"logits": logits, "latent_loss": latent_loss, "indices": indices}

    # ------------------------------------------------------------------ training hooks
    def train(self, mode: bool = True) -> VQSegNet:
        """Training or evaluation mode (as ``torch.nn.Module.train``), returning the network."""
        self._background_indices = None  # weights may change: forget the cached background answer
        super().train(mode)
        if self._codebook_frozen:
            self.quantizer.train(False)  # eval mode: no k-means, no EMA update, no restarts
        return self

    def freeze(self, part: str) -> list[str]:
        """Stop training ``part`` (``"encoder"``: the encoder and the codebook); return the frozen names.

        The codebook is frozen with the encoder: with both fixed, every slice keeps exactly the codeword
        indices it had in the initial bundle, so vqhist features (codeword histograms) stay comparable
        with that bundle's, while the decoder learns to segment the new data. A codebook that kept its EMA
        updates under a frozen encoder would move codewords and reassign latents, silently changing what
        each histogram bin counts.
        """
        if part != "encoder":
            raise ValueError(f"cannot freeze '{part}': VQSegNet can freeze 'encoder' (encoder and codebook)")
        names = []
        for name, parameter in self.named_parameters():
            if name.startswith("encoder."):
                parameter.requires_grad_(False)
                names.append(name)
        self._codebook_frozen = True
        self.quantizer.train(False)
        return names + [f"quantizer.{name}" for name, _ in self.quantizer.named_buffers()]

    # ------------------------------------------------------------------ segmentation and descriptors
    @torch.no_grad()
    def segment(self, x: torch.Tensor, logits: bool = False, batch_size: int = 32) -> torch.Tensor:
        """Labels (B, S, S), or logits (B, K, S, S) with ``logits=True``, of slices ``x`` (B, C, S, S).

        The inference path of the paper: encode, quantize to the nearest codewords, decode.
        """
        outputs = []
        for start in range(0, x.shape[0], batch_size):
            z_e = self.encode(x[start : start + batch_size])
            outputs.append(self.decode(self.quantizer.embed(self.quantizer.quantize(z_e))).float())
        result = torch.cat(outputs) if outputs else torch.zeros(0, self.num_classes, *x.shape[-2:])
        return result if logits else result.argmax(1)

    def feature_layers(self) -> list[str]:
        """Layers :meth:`features` can return: ``stem``, ``stage1`` ... ``stageN`` (encoder residual stages),
        ``latent`` (z_e, (B, D, 8, 8)) and ``quantized`` (z_q, the nearest codewords)."""
        return ["stem", *[f"stage{i + 1}" for i in range(self._n_stages())], "latent", "quantized"]

    def _n_stages(self) -> int:
        return sum(isinstance(m, RESIDUAL_BLOCKS) for m in self.encoder.stages)

    def features(self, x: torch.Tensor, layer: str = "latent") -> torch.Tensor:
        """Responses (B, C_L, h_L, w_L) of encoder ``layer`` on slices ``x`` (B, C, S, S) (see :meth:`feature_layers`)."""
        if layer not in self.feature_layers():
            raise ValueError(f"unknown layer '{layer}'; layers: {', '.join(self.feature_layers())}")
        h = self.encoder.run_stem(x)
        if layer == "stem":
            return h
        stage = 0
        for module in self.encoder.stages:
            h = module(h)
            if isinstance(module, RESIDUAL_BLOCKS):
                stage += 1
                if layer == f"stage{stage}":
                    return h
        z_e = self.encoder.head(h)
        if layer == "latent":
            return z_e
        return self.quantizer.embed(self.quantizer.quantize(z_e))

    def layer_geometry(self, layer: str) -> dict[str, int]:
        """``{"stride", "offset", "receptive_field", "pad"}`` of ``layer`` on the S x S network input.

        Position (i, j) is centred on input pixel (offset + stride * i, offset + stride * j) (3 x 3
        convolutions padded by 1 keep centres aligned, so the offset is 0) and its convolutions see a
        receptive_field-wide window; ``pad`` is 0 (the slice is not padded before the network). Every
        GroupNorm normalises over the whole slice, so beyond this window a response also depends on the
        slice's global statistics.
        """
        names = self.feature_layers()
        if layer not in names:
            raise ValueError(f"unknown layer '{layer}'; layers: {', '.join(names)}")
        field, jump = 3, 1  # the stem: 3x3, stride 1
        table = {"stem": (jump, field)}
        stage = 0
        for module in self.encoder.stages:
            if isinstance(module, RESIDUAL_BLOCKS):  # two 3x3 convolutions (the 1x1 skip adds nothing)
                field += 4 * jump
                stage += 1
                table[f"stage{stage}"] = (jump, field)
            else:  # downsampling (bare conv or DownBlock): one 3x3 convolution of stride 2
                field += 2 * jump
                jump *= 2
        table["latent"] = table["quantized"] = (jump, field)
        stride, receptive_field = table[layer]
        return {"stride": stride, "offset": 0, "receptive_field": receptive_field, "pad": 0}

    # ------------------------------------------------------------------ inference

    @torch.inference_mode()
    def codeword_indices(self, x: torch.Tensor) -> torch.Tensor:
        """Codeword indices (B, 8, 8) of slices ``x`` (B, C, S, S); no gradients, BN-free so batch-independent."""
        return self.quantizer.quantize(self.encode(x))

    @torch.inference_mode()
    def background_indices(self) -> torch.Tensor:
        """Indices (8, 8) of an all-zero (all-background) slice, computed once and cached.

        Every normalisation layer is a per-sample GroupNorm, so a slice's codes do not depend on the
        other slices in its batch and this cached answer is exact.
        """
        if self._background_indices is None or self.training:
            device = next(self.parameters()).device
            x = torch.zeros(1, self.in_channels, self.input_size, self.input_size, device=device)
            self._background_indices = self.codeword_indices(x)[0].clone()
        return self._background_indices

    @torch.inference_mode()
    def volume_codeword_indices(
        self,
        slices: torch.Tensor,
        batch_size: int = 32,
        channels_last: bool = True,
        skip_background: bool = True,
    ) -> torch.Tensor:
        """Codeword indices (Z, 8, 8) of a preprocessed volume ``slices`` (Z, C, S, S).

        Slices are encoded in batches of ``batch_size``, in channels-last memory format (faster conv
        kernels on CPU), and all-zero slices (background only, e.g. above the head) take the cached
        :meth:`background_indices` without running the encoder.
        """
        device = next(self.parameters()).device
        z = slices.shape[0]
        out = torch.empty(z, LATENT_SIZE, LATENT_SIZE, dtype=torch.long, device=device)
        if skip_background:
            nonzero = slices.flatten(1).abs().amax(1) > 0
            out[~nonzero.to(device)] = self.background_indices()
            todo = torch.nonzero(nonzero).flatten()
        else:
            todo = torch.arange(z)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        for start in range(0, len(todo), batch_size):
            rows = todo[start : start + batch_size]
            x = slices[rows].to(device).contiguous(memory_format=memory_format)
            out[rows.to(device)] = self.codeword_indices(x)
        return out
