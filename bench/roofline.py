"""How far a latency is from this CPU's limit: model FLOPs over a measured sgemm peak.

``floor_ms = flops / peak``, where ``flops`` counts the model's matmuls and
convolutions (``torch.utils.flop_counter`` on the ``matmul`` spectral backend, so the
DFTs count as the products an exported graph really computes) and ``peak`` is the
median GFLOP/s of a large float32 matrix product at the same thread count. A
latency's ``ratio_to_floor`` = measured / floor (1 = at the limit).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from mobile_kernelnet.models.registry import StagedEstimator

from .latency import time_callable


def model_flops(model: torch.nn.Module, size: int) -> int:
    """Floating-point operations (multiply and add counted apart) of one forward pass of
    ``model`` on a ``(1, 1, size, size)`` input, with the ``matmul`` spectral backend."""
    staged = isinstance(model, StagedEstimator)
    if staged:
        model.set_spectral_backend("matmul")
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            model(torch.rand(1, 1, size, size))
        return int(counter.get_total_flops())
    finally:
        if staged:
            model.set_spectral_backend("torch")


def floor_ms(flops: int, peak_gflops: float) -> float:
    """The fastest a model of ``flops`` can run at ``peak_gflops`` (ms)."""
    return flops / (peak_gflops * 1e9) * 1e3


def _median_s(call, runs: int) -> float:
    """Median seconds of ``runs`` timed calls of ``call()`` after one untimed call."""
    return time_callable(call, runs, warmup=0)["latency_ms_median"] / 1e3


def sgemm_peak_gflops(threads: int, n: int = 2048, runs: int = 7) -> float:
    """Median GFLOP/s of an ``n x n`` float32 ``torch.mm`` on ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        return 2 * n ** 3 / _median_s(lambda: torch.mm(a, b), runs) / 1e9
    finally:
        torch.set_num_threads(before)


def copy_bandwidth_gbs(megabytes: int = 64, runs: int = 9) -> float:
    """Median GB/s (read + write) of copying a ``megabytes`` float32 buffer, 8x this host's
    L3: what small-op graphs (depthwise and 2-channel convolutions, DFT matmuls of one
    image) are bound by, and what other tenants take without the sgemm peak noticing."""
    src = np.ones(megabytes * 2 ** 18, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / _median_s(lambda: np.copyto(dst, src), runs) / 1e9
