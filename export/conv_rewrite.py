"""Exact rewrites of convolutions whose shape CPU kernels run slowly, applied before ONNX export.

A wide convolution with very few input channels -- KernelNet's 9x9 entry, 2 -> 24 channels
-- is one GEMM with K = 162 per output pixel; XNNPACK runs it at the same speed in fp32 and
int8 and no faster on two threads than on one (NOTES.md, twenty-eighth session). The same
map, computed on 2x2 blocks of the input, is a GEMM four times as wide with 4x the input
channels, which the int8 kernels do run fast:

    conv(x)  ==  depth_to_space(conv5x5(space_to_depth(x)))

for a stride-1, odd ``k x k`` convolution with zero padding ``k // 2`` on an input of even
height and width: the middle convolution maps the ``4 C`` block channels to the four output
phases of each of the ``O`` outputs, ``k' = 2 * ceil((k // 2) / 2) + 1`` taps. Only graph ops
every target takes are used: space-to-depth is a one-hot 2x2 stride-2 convolution (PyTorch's
``pixel_unshuffle`` exports as rank-6 reshapes LiteRT's GPU refuses), depth-to-space is
``pixel_shuffle`` = ONNX ``DepthToSpace``, whose ``CRD`` mode onnx2tf also lowers to rank-6
reshapes -- :func:`depth_to_space_dcr` turns it into ``DCR`` (one ``DEPTH_TO_SPACE``) by
permuting the producing convolution's output channels.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MIN_KERNEL = 7
"""Smallest kernel side rewritten."""
MAX_IN_CHANNELS = 4
"""Most input channels of a rewritten convolution (wider inputs already make a good GEMM)."""
BLOCK = 2


def rewritable(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain stride-1, odd, zero-'same'-padded ``nn.Conv2d`` with at
    least :data:`MIN_KERNEL` taps per side and at most :data:`MAX_IN_CHANNELS` inputs."""
    if type(conv) is not nn.Conv2d:
        return False
    kh, kw = conv.kernel_size
    return (kh == kw and kh % 2 == 1 and kh >= MIN_KERNEL and conv.in_channels <= MAX_IN_CHANNELS
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding == (kh // 2, kh // 2) and conv.padding_mode == "zeros")


class BlockedConv(nn.Module):
    """The same map as a :func:`rewritable` ``conv``, ``(B, C, H, W) -> (B, O, H, W)`` with
    ``H, W`` even, computed on 2x2 blocks (module docstring). Holds copies of the weights."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not rewritable(conv):
            raise ValueError(f"not a rewritable convolution: {conv}")
        o, c, k, _ = conv.weight.shape
        half, r = k // 2, BLOCK
        reach = -(-half // r)  # blocks reached on each side
        taps = 2 * reach + 1
        self.split = nn.Conv2d(c, c * r * r, r, stride=r, bias=False)  # space-to-depth, one-hot
        split = torch.zeros(c * r * r, c, r, r)
        for ci, by, bx in itertools.product(range(c), range(r), range(r)):
            split[ci * r * r + by * r + bx, ci, by, bx] = 1.0
        self.split.weight = nn.Parameter(split, requires_grad=False)
        weight = torch.zeros(o * r * r, c * r * r, taps, taps)
        w = conv.weight.detach()
        offsets = range(-reach, reach + 1)
        # output phase (ay, ax) of block P reads input phase (by, bx) of block P + q at tap r q + b - a
        for ay, ax, by, bx, qy, qx in itertools.product(range(r), range(r), range(r), range(r), offsets, offsets):
            ty, tx = r * qy + by - ay, r * qx + bx - ax
            if abs(ty) <= half and abs(tx) <= half:
                weight[ay * r + ax::r * r, by * r + bx::r * r, qy + reach, qx + reach] = w[:, :, ty + half, tx + half]
        self.phases = nn.Conv2d(c * r * r, o * r * r, taps, padding=reach, bias=conv.bias is not None)
        self.phases.weight = nn.Parameter(weight, requires_grad=False)
        if conv.bias is not None:
            self.phases.bias = nn.Parameter(conv.bias.detach().repeat_interleave(r * r), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % BLOCK or x.shape[-2] % BLOCK:
            raise ValueError(f"BlockedConv needs an even height and width, got {tuple(x.shape[-2:])}")
        return F.pixel_shuffle(self.phases(self.split(x)), BLOCK)


def block_wide_convs(model: nn.Module, input_size: int) -> list[str]:
    """Replace, in place, every :func:`rewritable` convolution of ``model`` by its
    :class:`BlockedConv` and return the replaced modules' names -- none when ``input_size``
    (the side of the inputs the model will see) is not a multiple of the block. The maps at
    those convolutions must have the input's size (true of KernelNet's gradient entry)."""
    if input_size % BLOCK:
        return []
    names = [name for name, m in model.named_modules() if rewritable(m)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, BlockedConv(getattr(parent, child)))
    return names


def depth_to_space_dcr(model) -> int:
    """In an ``onnx.ModelProto``, turn every ``DepthToSpace`` of mode ``CRD`` fed only by a
    ``Conv`` with constant weights into mode ``DCR``, the Conv's output channels permuted
    from (channel, row, column) to (row, column, channel) order: the same outputs, and
    onnx2tf maps ``DCR`` to one ``DEPTH_TO_SPACE``. Returns how many were turned."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    turned = 0
    for node in model.graph.node:
        mode = next((a for a in node.attribute if a.name == "mode"), None)
        if node.op_type != "DepthToSpace" or mode is None or mode.s != b"CRD":
            continue
        conv = producer.get(node.input[0])
        if (conv is None or conv.op_type != "Conv" or readers[node.input[0]] != 1
                or any(name not in inits for name in conv.input[1:])):
            continue
        r = next(a.i for a in node.attribute if a.name == "blocksize")
        weight = numpy_helper.to_array(inits[conv.input[1]])
        channels = weight.shape[0] // (r * r)
        order = np.array([c * r * r + phase for phase in range(r * r) for c in range(channels)])
        for name in conv.input[1:]:
            inits[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[name])[order], name))
        mode.s = b"DCR"
        turned += 1
    return turned
