"""Elementwise forms a fully integer (16x8) TFLite graph can hold.

TensorFlow's 16x8 quantiser (int16 activations, int8 weights: the full-integer format for
NPUs) has no DIV, SQRT, NEG or SQUARE kernel, and its int16 SUM mis-scales; it has RSQRT
(which onnx2tf emits for ``x ** -0.5``), MUL and MEAN. The models write their divisions,
square roots and reductions with these, which is the same arithmetic in float.
"""
from __future__ import annotations

import torch


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
