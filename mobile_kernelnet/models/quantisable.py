"""Elementwise forms a fully integer (16x8) TFLite graph can hold.

TensorFlow's 16x8 quantiser (int16 activations, int8 weights: the full-integer format for
NPUs) has no DIV, SQRT, NEG or SQUARE kernel, and its int16 SUM mis-scales; it has RSQRT
(which onnx2tf emits for ``x ** -0.5``), MUL and MEAN. Qualcomm's compiler refuses an int16
ABS and TILE, and onnx2tf writes ONNX's InstanceNormalization with SQUARED_DIFFERENCE, which
LiteRT runs in float32 only. The models write their divisions, square roots, absolute values and
reductions with what is left, which is the same arithmetic in float.
"""
from __future__ import annotations

import torch
from torch import nn


def reciprocal(d: torch.Tensor) -> torch.Tensor:
    """``1 / d`` for ``d > 0``, as ``(d^-1/2)^2``."""
    r = d ** -0.5
    return r * r


def sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v > 0``, as ``v * v^-1/2``."""
    return v * v ** -0.5


def spatial_sum(x: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., 1, 1)`` sums, as ``H W`` times the mean."""
    return x.mean(dim=(-2, -1), keepdim=True) * (x.shape[-2] * x.shape[-1])


def abs(x: torch.Tensor) -> torch.Tensor:  # noqa: A001 (the name says what it computes)
    """``|x|``, as ``2 relu(x) - x``."""
    return 2 * torch.relu(x) - x


class InstanceNorm2d(nn.Module):
    """``nn.InstanceNorm2d(channels, affine=True)`` (same parameters, same ``eps``) written as
    means, products and :func:`reciprocal`'s RSQRT: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=(-2, -1), keepdim=True)
        inv_std = ((centred * centred).mean(dim=(-2, -1), keepdim=True) + self.eps) ** -0.5
        return centred * inv_std * self.weight[:, None, None] + self.bias[:, None, None]
