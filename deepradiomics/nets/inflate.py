"""2D -> 3D: map trained 2D convolution weights onto 3D networks (Avants et al., WBIR 2020, section 2.2).

The transfer of a 2D VGG-19 to a "pseudo-3D" one, for one *orientation* (the 3D axis that the 2D network
did not have). What is the paper's and what is this project's choice:

- the **first convolution**'s input channels (RGB for VGG, the modalities of a multi-channel network)
  become the third spatial axis (the paper's: "channel information occupies the orthogonal dimension",
  a single-channel 3D network): its 2D kernel ``(O, C, k, k)`` turns into a single-channel 3D kernel
  ``(O, 1, ...)`` whose extent along the orientation axis is ``C``; channel ``c`` weighs the voxel
  ``c - C // 2`` steps along that axis (C must be odd, so that the kernel is centred). The channels lie
  along the axis in the weights' own channel order, the order the 2D network was trained with
  (torchvision's VGG-19: R, G, B; Keras' and caffe's: B, G, R; a VQ bundle: its modalities in
  ``config.yaml`` order); that a grey-level volume then feeds all three colour roles, each from a
  neighbouring slice, is what the paper's mapping implies;
- every **deeper kernel** ``(O, I, k, k)`` is replicated ``k`` times along the orientation axis and divided
  by ``k`` -- the project's choice (the paper keeps "all filter sizes, filter counts and biases the same"
  but does not say how a 2D kernel gets its third extent): the inflation of I3D (Carreira & Zisserman,
  "Quo Vadis, Action Recognition?", CVPR 2017, section 2.4, bootstrapping 3D filters from 2D filters), so
  that on an input that is constant along that axis the 3D convolution returns exactly the 2D one;
- biases are kept (the paper's);
- one network is built **per orientation** and their outputs are concatenated by the caller (the paper's:
  three variants, "concatenated or averaged"; it concatenates).

Hence a 3D network built from a 2D one, fed a volume constant along the orientation axis, reproduces the
2D network's activations of the image (repeated into every input channel), slice by slice, away from the
borders along that axis (there the 3D convolutions see zero padding where the 2D ones saw more image).

Orientations name the axis of a (z, y, x) volume -- PyTorch's (D, H, W) -- that the 2D network did not
have: ``axial`` = z (2D rows/columns = y/x), ``coronal`` = y (z/x), ``sagittal`` = x (z/y).

Two entry points:

- :func:`map_vgg2d_state_dict`: a 2D VGG-19 state dict in one of the :data:`VGG2D_LAYOUTS` (torchvision's
  ``features.<i>``, Keras' ``block<b>_conv<i>``, caffe's ``conv<b>_<i>``; :func:`vgg2d_layout` tells which)
  -> the state dict of a single-channel :class:`~deepradiomics.nets.vgg3d.VGG3D`, every key and shape checked;
- :func:`inflate`: a deep copy of *any* 2D module with its ``Conv2d`` replaced by ``Conv3d`` (weights
  mapped as above) and its 2D pooling / normalisation / upsampling layers by their 3D versions. Layers
  that work in any dimension (GroupNorm, LayerNorm over channels, activations, Identity, Sequential) are
  kept. Only modules are swapped: a ``forward`` that calls a 2D-only function (``F.max_pool2d``,
  ``F.interpolate(mode="bilinear")``) must be rewritten by hand.

:func:`collect_activations` runs any module and returns the outputs of named submodules, stopping after
the last one needed.

Examples
--------
>>> conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
>>> net3d = inflate(conv, "axial")
>>> net3d[0].weight.shape, net3d[2].weight.shape
(torch.Size([4, 1, 3, 3, 3]), torch.Size([2, 4, 3, 3, 3]))
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

#: orientation -> axis of the (D, H, W) = (z, y, x) spatial dimensions that the 2D network lacked
ORIENTATIONS: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}


def _axis(orientation: str) -> int:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation {orientation!r} must be one of {', '.join(ORIENTATIONS)}")
    return ORIENTATIONS[orientation]


def _insert(values: Sequence[Any], axis: int, value: Any) -> tuple:
    """``values`` (in-plane, rows then columns) with ``value`` inserted at spatial position ``axis``."""
    values = list(values)
    values.insert(axis, value)
    return tuple(values)


def replicate_kernel(weight: torch.Tensor, orientation: str) -> torch.Tensor:
    """2D kernel ``(O, I, a, b)`` -> 3D kernel replicated ``a`` times along the orientation axis, divided by ``a``.

    The inflation of I3D (Carreira & Zisserman 2017, section 2.4), the project's choice for the kernels that
    the paper's mapping leaves unspecified: the division makes the 3D response to an input constant along
    that axis equal to the 2D response.
    """
    axis = _axis(orientation)
    extent = int(weight.shape[2])
    shape = _insert(weight.shape[2:], axis, extent)
    return (weight.unsqueeze(2 + axis) / extent).expand(*weight.shape[:2], *shape).contiguous()


def channels_to_axis_kernel(weight: torch.Tensor, orientation: str) -> torch.Tensor:
    """First-layer 2D kernel ``(O, C, a, b)`` -> single-channel 3D kernel with the C channels along the orientation axis.

    Channel ``c`` becomes the kernel's slice ``c`` along that axis (it weighs the voxel ``c - C // 2`` steps
    along it, as PyTorch's convolution cross-correlates): the weights' own channel order, unchanged.
    """
    axis = _axis(orientation)
    return weight.unsqueeze(1).movedim(2, 2 + axis).contiguous()


def _same(values: Any, what: str, where: str) -> int:
    values = (values, values) if isinstance(values, int) else tuple(values)
    if len(set(values)) != 1:
        raise ModelError(f"{where}: {what} {values} differs between rows and columns; inflate needs square 2D layers")
    return int(values[0])


def inflate_conv(conv: nn.Conv2d, orientation: str, channels_to_axis: bool = False, where: str = "Conv2d") -> nn.Conv3d:
    """The Conv3d that the paper's mapping gives for one Conv2d (see the module docstring)."""
    axis = _axis(orientation)
    if isinstance(conv.padding, str):
        raise ModelError(f"{where}: padding={conv.padding!r} is not supported; give explicit padding")
    kernel = _same(conv.kernel_size, "kernel_size", where)
    stride = _same(conv.stride, "stride", where)
    padding = _same(conv.padding, "padding", where)
    dilation = _same(conv.dilation, "dilation", where)
    # created in the source's dtype and device: copying float64 weights into a float32 layer would round them
    factory = {"device": conv.weight.device, "dtype": conv.weight.dtype}
    if channels_to_axis:
        channels = conv.in_channels
        if conv.groups != 1 or channels % 2 == 0:
            raise ModelError(
                f"{where}: its {channels} input channels cannot become a centred spatial axis (needs an odd channel count and groups=1)"
            )
        new = nn.Conv3d(
            1,
            conv.out_channels,
            kernel_size=_insert((kernel, kernel), axis, channels),
            stride=stride,
            padding=_insert((padding, padding), axis, channels // 2),
            dilation=_insert((dilation, dilation), axis, 1),
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            **factory,
        )
        weight = channels_to_axis_kernel(conv.weight.detach(), orientation)
    else:
        new = nn.Conv3d(
            conv.in_channels,
            conv.out_channels,
            kernel_size=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            **factory,
        )
        weight = replicate_kernel(conv.weight.detach(), orientation)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    return new


def _cube(value: Any, axis: int) -> Any:
    """A 2D pooling/upsampling argument (int or pair) extended to 3D (the in-plane rows value along the new axis)."""
    if value is None or isinstance(value, (int, float)):
        return value
    value = tuple(value)
    return _insert(value, axis, value[0])


def _inflate_layer(module: nn.Module, orientation: str, where: str) -> nn.Module | None:
    """The 3D replacement of a parameter-free or normalisation 2D layer, None when it works in any dimension."""
    axis = _axis(orientation)
    if isinstance(module, nn.MaxPool2d):
        return nn.MaxPool3d(
            _cube(module.kernel_size, axis),
            _cube(module.stride, axis),
            _cube(module.padding, axis),
            _cube(module.dilation, axis),
            ceil_mode=module.ceil_mode,
            return_indices=module.return_indices,
        )
    if isinstance(module, nn.AvgPool2d):
        return nn.AvgPool3d(
            _cube(module.kernel_size, axis),
            _cube(module.stride, axis),
            _cube(module.padding, axis),
            ceil_mode=module.ceil_mode,
            count_include_pad=module.count_include_pad,
            divisor_override=module.divisor_override,
        )
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(_cube(module.output_size, axis))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(_cube(module.output_size, axis), module.return_indices)
    if isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)):
        tensors = list(module.parameters()) + list(module.buffers())
        factory = {"device": tensors[0].device, "dtype": tensors[0].dtype} if tensors else {}
        new = (nn.BatchNorm3d if isinstance(module, nn.BatchNorm2d) else nn.InstanceNorm3d)(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats, **factory
        )
        new.load_state_dict(module.state_dict())
        return new.train(module.training)
    if isinstance(module, nn.Dropout2d):
        return nn.Dropout3d(module.p, module.inplace)
    if isinstance(module, nn.Upsample):
        mode = {"bilinear": "trilinear", "bicubic": None}.get(module.mode, module.mode)
        if mode is None:
            raise ModelError(f"{where}: Upsample(mode='bicubic') has no 3D version")
        return nn.Upsample(
            size=_cube(module.size, axis), scale_factor=_cube(module.scale_factor, axis), mode=mode, align_corners=module.align_corners
        )
    if type(module).__name__.endswith(("2d", "2D")):
        raise ModelError(f"{where}: {type(module).__name__} has no 3D mapping in deepradiomics.nets.inflate")
    return None


def inflate(module: nn.Module, orientation: str = "axial", channels_to_axis: str | None = "first") -> nn.Module:
    """A deep copy of the 2D ``module`` turned 3D for one orientation (see the module docstring).

    Parameters
    ----------
    module
        Any 2D network (left untouched).
    orientation
        ``axial``, ``coronal`` or ``sagittal``: the axis the 2D network did not have.
    channels_to_axis
        Name (``module.named_modules()`` path) of the convolution whose input channels become the
        orientation axis; ``"first"`` (default) = the first Conv2d in module order, ``None`` = none
        (every kernel is replicated and the 3D network takes the same channels as the 2D one).

    Returns
    -------
    nn.Module
        The 3D copy, in the training mode of ``module``.

    Raises
    ------
    ModelError
        A layer has no 3D mapping (ConvTranspose2d, bicubic upsampling, non-square kernels, ...).
    """
    _axis(orientation)
    if isinstance(module, nn.Conv2d):  # a bare convolution: no parent to put the 3D one into
        return inflate_conv(module, orientation, channels_to_axis=channels_to_axis is not None, where=type(module).__name__)
    copied = copy.deepcopy(module)
    named = [(name, m) for name, m in copied.named_modules() if name]
    if channels_to_axis == "first":
        convs = [name for name, m in named if isinstance(m, nn.Conv2d)]
        channels_to_axis = convs[0] if convs else None
    if channels_to_axis is not None and not isinstance(dict(named).get(channels_to_axis), nn.Conv2d):
        raise ModelError(f"channels_to_axis: '{channels_to_axis}' is not a Conv2d of {type(module).__name__}")
    for name, child in named:
        if isinstance(child, nn.ConvTranspose2d):
            raise ModelError(f"{name}: ConvTranspose2d has no 3D mapping in deepradiomics.nets.inflate")
        if isinstance(child, nn.Conv2d):
            new = inflate_conv(child, orientation, channels_to_axis=name == channels_to_axis, where=name)
        else:
            new = _inflate_layer(child, orientation, name)
        if new is None:
            continue
        parent_name, _, attribute = name.rpartition(".")
        parent = copied.get_submodule(parent_name) if parent_name else copied
        new.train(child.training)
        setattr(parent, attribute, new)
    return copied


# ---------------------------------------------------------------------- 2D VGG-19 state dicts -> VGG3D
#: key layouts of a 2D VGG-19 state dict that :func:`map_vgg2d_state_dict` reads, with the regular
#: expression of their convolution keys and the prefixes of their dense layers (ignored)
VGG2D_LAYOUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    # torchvision.models.vgg19().state_dict(): features.<index in the Sequential>.weight / .bias
    "torchvision": (r"features\.\d+\.", ("classifier.",)),
    # Keras' VGG19 layer names (keras.applications.VGG19): block<b>_conv<i>
    "keras": (r"block\d+_conv\d+\.", ("fc1.", "fc2.", "predictions.")),
    # the caffe model of Simonyan & Zisserman (VGG_ILSVRC_19_layers) and its conversions: conv<b>_<i>
    "caffe": (r"conv\d+_\d+\.", ("fc6.", "fc7.", "fc8.")),
}


def torchvision_vgg_keys(blocks: Sequence[int]) -> list[tuple[str, int]]:
    """``(key prefix, conv index)`` of the convolutions of torchvision's ``vgg.features`` for ``blocks``."""
    keys, index = [], 0
    for n_convs in blocks:
        for _ in range(n_convs):
            keys.append((f"features.{index}", index))
            index += 2  # Conv, ReLU
        index += 1  # MaxPool
    return keys


def vgg2d_conv_keys(layout: str, blocks: Sequence[int]) -> list[str]:
    """Key prefixes of the convolutions, in network order, of a VGG with ``blocks`` convolutions per block in ``layout``."""
    if layout == "torchvision":
        return [prefix for prefix, _ in torchvision_vgg_keys(blocks)]
    pattern = {"keras": "block{b}_conv{i}", "caffe": "conv{b}_{i}"}[layout]
    return [pattern.format(b=b, i=i) for b, n in enumerate(blocks, 1) for i in range(1, n + 1)]


def vgg2d_layout(state: Mapping[str, Any], where: str = "weights") -> str:
    """Which of the :data:`VGG2D_LAYOUTS` the keys of a 2D VGG state dict follow.

    Decided from the key names alone: a key matching a layout's convolution pattern (``features.<i>.``,
    ``block<b>_conv<i>.``, ``conv<b>_<i>.``) votes for it. Keys say nothing about what the weights were
    trained on: a caffe VGG-19 converted to PyTorch and saved under torchvision's keys has torchvision's
    layout.

    Raises
    ------
    ModelError
        ``state`` is not a mapping of names, matches no layout, or mixes layouts.
    """
    import re

    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ModelError(f"{where}: expected a state dict (a mapping of names to tensors), got {type(state).__name__}")
    found = [name for name, (pattern, _) in VGG2D_LAYOUTS.items() if any(re.match(pattern, key) for key in state)]
    if not found:
        keys = ", ".join(list(state)[:4]) or "none"
        raise ModelError(
            f"{where}: not a VGG-19 state dict in torchvision's layout (features.0.weight ... features.34.bias), Keras' "
            f"(block1_conv1.weight ... block5_conv4.bias) or caffe's (conv1_1.weight ... conv5_4.bias); its keys start {keys}"
        )
    if len(found) > 1:
        raise ModelError(f"{where}: its keys mix the VGG-19 layouts of {' and '.join(found)}; save the weights of one network")
    return found[0]


def _vgg2d_expected(layout: str, net3d) -> dict[str, tuple[int, ...]]:
    """``{key: 2D shape in PyTorch's (O, I, k, k) order}`` of the convolutions of ``net3d`` in ``layout``."""
    expected: dict[str, tuple[int, ...]] = {}
    for position, (prefix, (_, index)) in enumerate(zip(vgg2d_conv_keys(layout, net3d.blocks), torchvision_vgg_keys(net3d.blocks))):
        conv = net3d.features[index]
        in_2d = 3 if position == 0 else conv.in_channels  # RGB (BGR) in 2D, one channel in 3D
        expected[f"{prefix}.weight"] = (conv.out_channels, in_2d, 3, 3)
        expected[f"{prefix}.bias"] = (conv.out_channels,)
    return expected


def _check_vgg2d_keys(state: Mapping[str, Any], layout: str, expected: Mapping[str, tuple], where: str) -> None:
    dense = VGG2D_LAYOUTS[layout][1]
    features = {k for k in state if not k.startswith(dense)}
    missing = [k for k in expected if k not in state]
    unexpected = sorted(features - set(expected))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            detail.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
        first, last = list(expected)[0], list(expected)[-1]
        raise ModelError(f"{where}: not a VGG-19 state dict in {layout}'s layout ({'; '.join(detail)}); expected the keys {first} ... {last}")


def map_vgg2d_state_dict(state: Mapping[str, Any], orientation: str, net3d, where: str = "weights") -> dict[str, torch.Tensor]:
    """Map a 2D VGG state dict (any of the :data:`VGG2D_LAYOUTS`) onto the single-channel 3D network ``net3d``.

    The first convolution's input channels go along the orientation axis in the weights' own order
    (:func:`channels_to_axis_kernel`: channel 0 at offset -1, channel 2 at +1), deeper kernels are
    replicated and divided by 3 (:func:`replicate_kernel`), biases are copied (see the module docstring
    for which of these is the paper's).

    Parameters
    ----------
    state
        ``{"features.0.weight": (64, 3, 3, 3), "features.0.bias": (64,), "features.2.weight": ...}`` as
        ``torchvision.models.vgg19().state_dict()`` holds them, the same tensors under Keras' layer names
        (``block1_conv1.weight`` ... ``block5_conv4.bias``; kernels in PyTorch's (O, I, 3, 3) order or
        Keras' own (3, 3, I, O), told apart by their shape) or caffe's (``conv1_1.weight`` ...
        ``conv5_4.bias``, (O, I, 3, 3)); the dense layers (``classifier.*``, ``fc1.*`` ``fc2.*``
        ``predictions.*``, ``fc6.*`` ... ``fc8.*``) are ignored, any other key is refused.
    orientation
        ``axial``, ``coronal`` or ``sagittal``.
    net3d
        The target :class:`~deepradiomics.nets.vgg3d.VGG3D` (``in_channels=1``); its blocks and filters
        fix the expected 2D shapes.
    where
        Name of the source for error messages (the file path).

    Returns
    -------
    dict
        A state dict that ``net3d.load_state_dict`` accepts (torchvision's keys, which VGG3D shares).

    Raises
    ------
    ModelError
        A key is missing or unexpected, a value is not a floating-point tensor, or a shape is wrong.
    """
    _axis(orientation)
    layout = vgg2d_layout(state, where)
    expected = _vgg2d_expected(layout, net3d)
    _check_vgg2d_keys(state, layout, expected, where)
    weights: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ModelError(f"{where}: {key} is {type(value).__name__}, not a floating-point tensor")
        if layout == "keras" and len(shape) == 4 and tuple(value.shape) == (shape[2], shape[3], shape[1], shape[0]):
            value = value.permute(3, 2, 0, 1)  # Keras' (k, k, I, O) -> PyTorch's (O, I, k, k): both cross-correlate
        if tuple(value.shape) != shape:
            also = f" or Keras' {(shape[2], shape[3], shape[1], shape[0])}" if layout == "keras" and len(shape) == 4 else ""
            raise ModelError(f"{where}: {key} has shape {tuple(value.shape)}, expected {shape}{also} (VGG-19 in {layout}'s layout)")
        weights[key] = value.detach()
    mapped: dict[str, torch.Tensor] = {}
    for position, (source, (prefix, _index)) in enumerate(zip(vgg2d_conv_keys(layout, net3d.blocks), torchvision_vgg_keys(net3d.blocks))):
        weight = weights[f"{source}.weight"]  # load_state_dict converts to the network's dtype
        mapped[f"{prefix}.weight"] = (
            channels_to_axis_kernel(weight, orientation) if position == 0 else replicate_kernel(weight, orientation)
        )
        mapped[f"{prefix}.bias"] = weights[f"{source}.bias"].clone()
    return mapped


# ---------------------------------------------------------------------- named activations of any module
class _StopForward(Exception):
    """Raised by a hook once every requested activation is recorded, to skip the rest of the network."""


def collect_activations(module: nn.Module, x: torch.Tensor, paths: Iterable[str]) -> dict[str, torch.Tensor]:
    """Outputs of the submodules named by ``paths`` (``named_modules`` names) in one forward pass.

    The pass stops as soon as every requested output is recorded. A recorded output must not be
    modified in place by a later layer (true of the VQ encoder, whose in-place operations act on fresh
    tensors); ``paths`` may list a submodule's parent and child alike.
    """
    paths = list(paths)
    recorded: dict[str, torch.Tensor] = {}

    def hook_for(path: str):
        def hook(_module, _inputs, output):
            recorded[path] = output
            if len(recorded) == len(set(paths)):
                raise _StopForward

        return hook

    handles = [module.get_submodule(path).register_forward_hook(hook_for(path)) for path in dict.fromkeys(paths)]
    try:
        module(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [p for p in paths if p not in recorded]
    if missing:
        raise ModelError(f"{type(module).__name__}: submodule(s) {missing} did not run in the forward pass")
    return {p: recorded[p] for p in paths}
