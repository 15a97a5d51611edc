"""DLRCNN: the patch-classification segmentation CNN of deep learning-based radiomics (Li et al., Sci Rep 2017).

Li et al. built their segmentation network on Pereira et al. (IEEE TMI 2016): pixel-wise classification
of 33 x 33 patches (label = the centre pixel), six 3 x 3 convolutional layers each followed by a ReLU,
max pooling, and wide fully connected layers (4,096 units in the paper) each followed by dropout, trained
with SGD. Whole slices go through the same weights at test time and the coarse output is up-sampled
(bicubic in the paper). The last convolutional layer's 128 responses are the descriptors that the
``fisher`` feature class encodes.

Layers (``filters = (f1, ..., f6)``, ``F = fc_units``, K classes), all convolutions unpadded ("valid")::

    name    operation                         size on a 33x33 patch
    input   per-channel normalisation         C x 33 x 33   (x - input_mean) / input_std
    conv1   conv 3x3 (C -> f1) + ReLU         f1 x 31 x 31
    conv2   conv 3x3 + ReLU                   f2 x 29 x 29
    conv3   conv 3x3 + ReLU                   f3 x 27 x 27
    pool1   max-pool 3x3, stride 2            f3 x 13 x 13
    conv4   conv 3x3 + ReLU                   f4 x 11 x 11
    conv5   conv 3x3 + ReLU                   f5 x 9 x 9
    conv6   conv 3x3 + ReLU                   f6 x 7 x 7   (128 filters: the DLR descriptors)
    pool2   max-pool 3x3, stride 2            f6 x 3 x 3
    fc1     fully connected (= conv 3x3) + ReLU + dropout     F x 1 x 1
    fc2     fully connected (= conv 1x1) + ReLU + dropout     F x 1 x 1
    logits  fully connected (= conv 1x1)                      K x 1 x 1

Because every layer is a convolution (the fully connected layers are written as 3 x 3 and 1 x 1
convolutions) and nothing is padded inside the network, the network runs on a whole slice and its output
at a position is exactly its output on the 33 x 33 patch centred there ("fully convolutional").

Geometry of whole-slice inference (:meth:`DLRCNN.features`, :meth:`DLRCNN.segment`). A slice (H, W) is
zero-padded by ``pad = 16`` pixels at the top and left (and 13-16 at the bottom and right, so that the
output grid covers the slice) in the preprocessed intensity domain, i.e. as background. Then position
``(i, j)`` of layer L's map (B, C_L, h_L, w_L) is the response to the input window of
``receptive_field`` x ``receptive_field`` pixels centred at slice pixel
``(offset + stride * i, offset + stride * j)`` (pixels outside the slice count as background):

    layer         stride  offset  receptive field
    conv1, 2, 3   1       -15, -14, -13   3, 5, 7
    pool1         2       -12     9
    conv4, 5, 6   2       -10, -8, -6     13, 17, 21
    pool2         4       -4      25
    fc1, fc2, logits  4   0       33

(``offset = (receptive_field - 1) / 2 - pad``; :meth:`DLRCNN.layer_geometry` computes the table.) So
``logits`` position (i, j) is the class score of slice pixel (4i, 4j), and ``h = ceil(H / 4)``;
:meth:`segment` resamples these scores to every pixel (bicubic, as in the paper) before the argmax.

Class priors. Training patches are centred on tumour about 40% of the time, while a few percent of the
pixels of a slice are tumour, so the network's posteriors are those of the sampled class frequencies
and a plain argmax over whole slices marks far too much tumour. :meth:`segment` therefore adds
``log_prior_shift[k] = log(natural_k / sampled_k)`` to the class scores (the prior correction of Saerens
et al., Neural Comput 2002), with both frequencies measured on the training slices by the patch sampler
and stored in the weights (:meth:`set_class_priors`). :meth:`forward` and :meth:`features` are not
affected. Li et al. handled the same imbalance by post-processing (the largest connected region per
slice, then 3D smoothing), which is not done here.

Examples
--------
>>> net = DLRCNN(in_channels=2, filters=(4, 4, 4, 8, 8, 8), fc_units=16).eval()
>>> net(torch.zeros(3, 2, 33, 33)).shape            # patches -> one score per patch
torch.Size([3, 2, 1, 1])
>>> net.features(torch.zeros(1, 2, 64, 60), "conv6").shape
torch.Size([1, 8, 37, 35])
>>> net.layer_geometry("logits")
{'stride': 4, 'offset': 0, 'receptive_field': 33, 'pad': 16}
>>> net.segment(torch.zeros(1, 2, 64, 60)).shape
torch.Size([1, 64, 60])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: side of the training patches: the receptive field of one output unit
PATCH_SIZE = 33
#: zero padding added before the first row/column of a whole slice, so that output (0, 0) sits on pixel (0, 0)
PAD = PATCH_SIZE // 2
#: output stride of the fully connected layers (two stride-2 poolings)
OUTPUT_STRIDE = 4

#: (name, kind, kernel, stride) in forward order; kinds: conv (+ReLU), pool, fc (+ReLU+dropout), out
_LAYOUT: tuple[tuple[str, str, int, int], ...] = (
    ("conv1", "conv", 3, 1),
    ("conv2", "conv", 3, 1),
    ("conv3", "conv", 3, 1),
    ("pool1", "pool", 3, 2),
    ("conv4", "conv", 3, 1),
    ("conv5", "conv", 3, 1),
    ("conv6", "conv", 3, 1),
    ("pool2", "pool", 3, 2),
    ("fc1", "fc", 3, 1),
    ("fc2", "fc", 1, 1),
    ("logits", "out", 1, 1),
)
LAYER_NAMES = tuple(name for name, *_ in _LAYOUT)


def _geometry() -> dict[str, dict[str, int]]:
    """Stride, centre offset and receptive field of every layer (conv arithmetic, valid operations)."""
    table, jump, field = {}, 1, 1
    for name, _kind, kernel, stride in _LAYOUT:
        field += (kernel - 1) * jump
        jump *= stride
        # every window starts at stride * i in padded coordinates: its centre is (field - 1) / 2 further
        table[name] = {"stride": jump, "offset": (field - 1) // 2 - PAD, "receptive_field": field, "pad": PAD}
    return table


GEOMETRY = _geometry()
assert GEOMETRY["logits"]["receptive_field"] == PATCH_SIZE and GEOMETRY["logits"]["offset"] == 0


class DLRCNN(nn.Module):
    """Pereira-style patch CNN of Li et al. 2017, runnable on 33 x 33 patches and on whole slices.

    Parameters
    ----------
    in_channels
        Number of input modalities C.
    num_classes
        Output classes K (background included).
    filters
        Channels of the six convolutional layers (Pereira et al. 2016: 64-64-64-128-128-128). The last
        one is the descriptor dimension of the ``fisher`` features (128 in Li et al.).
    fc_units
        Width F of the two hidden fully connected layers (Li et al.: 4,096; Pereira et al.: 256).
    dropout
        Dropout probability after each hidden fully connected layer (Pereira et al.: 0.1).
    init
        ``"he"``: He (Kaiming) normal initialisation of every weight for ReLU, zero biases;
        ``"default"``: PyTorch's default initialisation.

    Notes
    -----
    ``input_mean`` and ``input_std`` (buffers, one value per channel, saved with the weights) normalise
    the input inside the network: the per-channel normalisation of Pereira et al. and Li et al., with
    statistics of the training patches (:meth:`fit_input_normalization`), applied identically to patches
    and whole slices.
    """

    #: what the training loop uses unless the config says otherwise
    training_defaults: dict[str, Any] = {"sampler": "patches", "loss": "cross_entropy", "optimizer": "sgd"}

    def __init__(
        self,
        in_channels: int = 2,
        num_classes: int = 2,
        filters: Sequence[int] = (64, 64, 64, 128, 128, 128),
        fc_units: int = 4096,
        dropout: float = 0.1,
        init: str = "he",
    ) -> None:
        super().__init__()
        filters = [int(f) for f in filters]
        if len(filters) != 6:
            raise ValueError(f"filters must list the channels of the 6 convolutional layers, got {len(filters)}: {filters}")
        if init not in ("he", "default"):
            raise ValueError(f"init '{init}' is not 'he' or 'default'")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.filters = filters
        self.fc_units = int(fc_units)
        self.dropout = float(dropout)
        prev = self.in_channels
        convs = iter(filters)
        for name, kind, kernel, _stride in _LAYOUT:
            if kind == "conv":
                out = next(convs)
                setattr(self, name, nn.Conv2d(prev, out, kernel))
                prev = out
            elif kind == "fc":
                setattr(self, name, nn.Conv2d(prev, self.fc_units, kernel))
                prev = self.fc_units
            elif kind == "out":
                setattr(self, name, nn.Conv2d(prev, self.num_classes, kernel))
        self.register_buffer("input_mean", torch.zeros(self.in_channels))
        self.register_buffer("input_std", torch.ones(self.in_channels))
        self.register_buffer("log_prior_shift", torch.zeros(self.num_classes))
        if init == "he":
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)
        self._background_logits: torch.Tensor | None = None

    @classmethod
    def from_config(cls, arch: dict[str, Any]) -> DLRCNN:
        """Build from the ``architecture`` mapping of a bundle's config.yaml."""
        keys = ("in_channels", "num_classes", "filters", "fc_units", "dropout", "init")
        return cls(**{k: arch[k] for k in keys if k in arch})

    # ------------------------------------------------------------------ training hooks
    @torch.no_grad()
    def fit_input_normalization(self, patches: torch.Tensor) -> None:
        """Set ``input_mean``/``input_std`` to the per-channel mean and standard deviation of ``patches`` (B, C, h, w)."""
        if patches.shape[1] != self.in_channels:
            raise ValueError(f"patches have {patches.shape[1]} channels, the network {self.in_channels}")
        values = patches.transpose(0, 1).reshape(self.in_channels, -1).double()
        self.input_mean.copy_(values.mean(1).float())
        self.input_std.copy_(values.std(1).clamp_min(1e-6).float())
        self._background_logits = None

    @torch.no_grad()
    def set_class_priors(self, sampled: torch.Tensor, natural: torch.Tensor) -> None:
        """Correct :meth:`segment` for training-time class frequencies ``sampled`` vs the data's ``natural`` ones (K,)."""
        sampled, natural = torch.as_tensor(sampled, dtype=torch.float64), torch.as_tensor(natural, dtype=torch.float64)
        if sampled.shape != (self.num_classes,) or natural.shape != (self.num_classes,):
            raise ValueError(f"class frequencies must have {self.num_classes} entries, got {tuple(sampled.shape)} and {tuple(natural.shape)}")
        present = (sampled > 0) & (natural > 0)
        shift = torch.zeros(self.num_classes, dtype=torch.float64)
        shift[present] = natural[present].log() - sampled[present].log()
        self.log_prior_shift.copy_(shift.float())
        self._background_logits = None

    def freeze(self, part: str) -> list[str]:
        """Stop training ``part`` (``"encoder"``: conv1-conv6 and the input normalisation); return the frozen names.

        The fully connected layers stay trainable: fine-tuning re-learns the task-specific top of the
        network on top of the frozen convolutional filters (and keeps the conv6 descriptors unchanged).
        """
        if part != "encoder":
            raise ValueError(f"cannot freeze '{part}': DLRCNN can freeze 'encoder' (conv1-conv6)")
        names = []
        for name, parameter in self.named_parameters():
            if name.startswith("conv"):
                parameter.requires_grad_(False)
                names.append(name)
        return names + ["input_mean", "input_std"]

    # ------------------------------------------------------------------ core
    def _run(self, x: torch.Tensor, until: str = "logits") -> torch.Tensor:
        if until not in LAYER_NAMES:
            raise ValueError(f"unknown layer '{until}'; layers: {', '.join(LAYER_NAMES)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels, the network {self.in_channels}")
        h = (x - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)
        for name, kind, kernel, stride in _LAYOUT:
            if kind == "pool":
                h = F.max_pool2d(h, kernel, stride)
            else:
                h = getattr(self, name)(h)
                if kind in ("conv", "fc"):
                    h = F.relu(h)
                if kind == "fc" and self.dropout > 0:
                    h = F.dropout(h, self.dropout, self.training)
            if name == until:
                return h
        raise AssertionError("unreachable")  # pragma: no cover

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, K, (h - 33) // 4 + 1, (w - 33) // 4 + 1) of unpadded input ``x`` (B, C, h, w).

        On 33 x 33 patches: (B, K, 1, 1), one score per patch (training). On a larger input, the scores
        of the 33 x 33 windows starting at rows/columns 0, 4, 8, ...
        """
        return self._run(x)

    @staticmethod
    def _padding(height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding so that output (i, j) is centred on pixel (4i, 4j), i < ceil(H/4)."""

        def tail(n: int) -> int:
            return OUTPUT_STRIDE * (math.ceil(n / OUTPUT_STRIDE) - 1) + PATCH_SIZE - PAD - n

        return PAD, tail(width), PAD, tail(height)

    # ------------------------------------------------------------------ descriptors (fisher)
    @staticmethod
    def feature_layers() -> list[str]:
        """Layers that :meth:`features` can return: ``conv1`` ... ``conv6``, ``pool1``, ``pool2``, ``fc1``, ``fc2``, ``logits``."""
        return list(LAYER_NAMES)

    @staticmethod
    def layer_geometry(layer: str) -> dict[str, int]:
        """``{"stride", "offset", "receptive_field", "pad"}`` of ``layer`` for whole-slice inference.

        Position (i, j) of :meth:`features` ``(x, layer)`` is centred on slice pixel
        (offset + stride * i, offset + stride * j) and sees a receptive_field x receptive_field window.
        """
        if layer not in GEOMETRY:
            raise ValueError(f"unknown layer '{layer}'; layers: {', '.join(LAYER_NAMES)}")
        return dict(GEOMETRY[layer])

    def features(self, x: torch.Tensor, layer: str = "conv6") -> torch.Tensor:
        """Responses (B, C_L, h_L, w_L) of ``layer`` (after its ReLU) on whole slices ``x`` (B, C, H, W).

        ``x`` is zero-padded as described in the module docstring; use :meth:`layer_geometry` to map
        positions to pixels. In eval mode (dropout off) the response at a position equals the response
        of the 33 x 33 patch network centred there.
        """
        left, right, top, bottom = self._padding(x.shape[-2], x.shape[-1])
        return self._run(F.pad(x, (left, right, top, bottom)), layer)

    # ------------------------------------------------------------------ segmentation
    @torch.no_grad()
    def background_logits(self) -> torch.Tensor:
        """Class scores (K,) of an all-background (all-zero) 33 x 33 patch, prior shift included; cached."""
        if self._background_logits is None or self.training:
            device = self.input_mean.device
            patch = torch.zeros(1, self.in_channels, PATCH_SIZE, PATCH_SIZE, device=device)
            self._background_logits = self(patch)[0, :, 0, 0] + self.log_prior_shift
        return self._background_logits

    def train(self, mode: bool = True) -> DLRCNN:
        """Training or evaluation mode (as ``torch.nn.Module.train``), returning the network."""
        self._background_logits = None  # weights may change: forget the cached answer
        return super().train(mode)

    @torch.no_grad()
    def coarse_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, K, ceil(H/4), ceil(W/4)) at pixels (4i, 4j) of whole slices ``x`` (B, C, H, W).

        The scores are the logits plus ``log_prior_shift`` (see the module docstring). Only the windows that overlap the non-zero part of the batch are computed; the others see an
        all-zero patch and take :meth:`background_logits`, which is the same number (exact, not an
        approximation).
        """
        b, _, height, width = x.shape
        n_h, n_w = math.ceil(height / OUTPUT_STRIDE), math.ceil(width / OUTPUT_STRIDE)
        out = self.background_logits().view(1, -1, 1, 1).expand(b, -1, n_h, n_w).clone()
        nonzero = x.abs().amax(dim=(0, 1)) > 0
        if not bool(nonzero.any()):
            return out
        rows = torch.nonzero(nonzero.any(1)).flatten()
        cols = torch.nonzero(nonzero.any(0)).flatten()

        def window(first: int, last: int, n: int) -> tuple[int, int]:
            # output i sees pixels 4i - 16 ... 4i + 16: keep the i whose window meets [first, last]
            lo = max(0, math.ceil((first - PAD) / OUTPUT_STRIDE))
            hi = min(n - 1, (last + PAD) // OUTPUT_STRIDE)
            return lo, hi

        i0, i1 = window(int(rows[0]), int(rows[-1]), n_h)
        j0, j1 = window(int(cols[0]), int(cols[-1]), n_w)
        left, right, top, bottom = self._padding(height, width)
        padded = F.pad(x, (left, right, top, bottom))
        crop = padded[:, :, OUTPUT_STRIDE * i0 : OUTPUT_STRIDE * i1 + PATCH_SIZE, OUTPUT_STRIDE * j0 : OUTPUT_STRIDE * j1 + PATCH_SIZE]
        out[:, :, i0 : i1 + 1, j0 : j1 + 1] = self(crop) + self.log_prior_shift.view(1, -1, 1, 1)
        return out

    @torch.no_grad()
    def segment(self, x: torch.Tensor, logits: bool = False, batch_size: int = 8) -> torch.Tensor:
        """Labels (B, H, W), or logits (B, K, H, W) with ``logits=True``, of whole slices ``x`` (B, C, H, W).

        The coarse class scores at pixels (4i, 4j) (:meth:`coarse_logits`, prior-corrected) are resampled to
        every pixel by bicubic interpolation (as in Li et al.), then the argmax gives the labels.
        """
        height, width = x.shape[-2:]
        outputs = []
        for start in range(0, x.shape[0], batch_size):
            coarse = self.coarse_logits(x[start : start + batch_size])
            outputs.append(_upsample_grid(coarse, height, width, OUTPUT_STRIDE))
        result = torch.cat(outputs) if outputs else torch.zeros(0, self.num_classes, height, width)
        return result if logits else result.argmax(1)


def _upsample_grid(coarse: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Resample values given at pixels (stride * i, stride * j) to every pixel of an H x W grid (bicubic)."""
    n_h, n_w = coarse.shape[-2:]

    def coords(n_out: int, n_in: int) -> torch.Tensor:
        # pixel p lies at p / stride on the coarse grid; align_corners=True maps index 0 -> -1, n_in - 1 -> +1
        position = torch.arange(n_out, dtype=torch.float32, device=coarse.device) / stride
        return position / max(n_in - 1, 1) * 2 - 1 if n_in > 1 else torch.zeros(n_out, device=coarse.device)

    gy, gx = torch.meshgrid(coords(height, n_h), coords(width, n_w), indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(coarse.shape[0], -1, -1, -1)
    return F.grid_sample(coarse.float(), grid, mode="bicubic", padding_mode="border", align_corners=True)
