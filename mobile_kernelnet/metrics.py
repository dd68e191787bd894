"""Kernel and image quality metrics.

Kernel metrics take an estimate ``k_est`` and the ground truth ``k_gt``, each a
square odd-sized array. Both are first clipped at 0, normalised to sum 1 and
centre-padded to the larger of the two sizes (:func:`align_kernels`).

* :func:`kernel_l1` — KernelNet Table 2: ``sum |k_est - k_gt|`` (0 = perfect, 2 = disjoint).
* :func:`kernel_l1_shifted` — the same, minimised over integer shifts of ``k_est``
  within ±3 px (separates shape errors from centring errors).
* :func:`d_v` — S2K eq. 13: ``mean |k_est - k_gt|`` over the ``h x w`` taps.
* :func:`d_s` — S2K eq. 13: ``sum k_est * log(k_est / k_gt)`` (relative shape,
  a KL divergence); taps where ``k_est`` is 0 add nothing, and ``k_gt`` is floored
  at :data:`D_S_EPS` so a tap outside the true support costs a large but finite amount.

Image metrics follow the SR literature: on luma (ITU-R BT.601 Y as MATLAB's
``rgb2ycbcr``, for RGB input), with ``sf`` pixels cropped from every border.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from .kernels import center_crop_or_pad, normalize_kernel

D_S_EPS = 1e-8
MAX_SHIFT = 3


def align_kernels(k_est: np.ndarray, k_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip, normalise and centre-pad both kernels to a common odd size (float64)."""
    size = max(k_est.shape[0], k_gt.shape[0])
    a = center_crop_or_pad(normalize_kernel(k_est), size).astype(np.float64)
    b = center_crop_or_pad(normalize_kernel(k_gt), size).astype(np.float64)
    return a, b


def kernel_l1(k_est: np.ndarray, k_gt: np.ndarray) -> float:
    """``sum |k_est - k_gt|`` after :func:`align_kernels`."""
    a, b = align_kernels(k_est, k_gt)
    return float(np.abs(a - b).sum())


def kernel_l1_shifted(k_est: np.ndarray, k_gt: np.ndarray, max_shift: int = MAX_SHIFT) -> float:
    """Minimum over integer shifts ``|dy|, |dx| <= max_shift`` of the L1 error (no mass lost:
    both kernels are zero-padded by ``max_shift`` before shifting)."""
    a, b = (np.pad(k, max_shift) for k in align_kernels(k_est, k_gt))
    return float(min(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).sum()
                     for dy in range(-max_shift, max_shift + 1)
                     for dx in range(-max_shift, max_shift + 1)))


def d_v(k_est: np.ndarray, k_gt: np.ndarray) -> float:
    """S2K's value distance: mean absolute difference per tap."""
    a, b = align_kernels(k_est, k_gt)
    return float(np.abs(a - b).mean())


def d_s(k_est: np.ndarray, k_gt: np.ndarray) -> float:
    """S2K's shape distance ``sum k_est log(k_est / max(k_gt, D_S_EPS))`` over taps with k_est > 0."""
    a, b = align_kernels(k_est, k_gt)
    m = a > 0
    return float(np.sum(a[m] * np.log(a[m] / np.maximum(b[m], D_S_EPS))))


KERNEL_METRICS = {"l1": kernel_l1, "l1_shifted": kernel_l1_shifted, "d_v": d_v, "d_s": d_s}


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB in [0, 1] -> ``(H, W)`` BT.601 luma in [16/255, 235/255] (MATLAB rgb2ycbcr)."""
    img = np.asarray(img, dtype=np.float64)
    return (16.0 + img @ np.array([65.481, 128.553, 24.966])) / 255.0


def _prepare(a: np.ndarray, b: np.ndarray, sf: int) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if sf > 0:
        a, b = a[sf:-sf, sf:-sf], b[sf:-sf, sf:-sf]
    return a, b


def psnr(img: np.ndarray, ref: np.ndarray, sf: int = 0) -> float:
    """PSNR in dB of ``img`` against ``ref``: ``(H, W)`` or ``(H, W, 3)`` in [0, 1]; RGB is
    compared on Y; ``sf`` border pixels are cropped. ``inf`` for identical images."""
    a, b = _prepare(img, ref, sf)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(img: np.ndarray, ref: np.ndarray, sf: int = 0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) on the same footing as :func:`psnr`."""
    a, b = _prepare(img, ref, sf)
    return float(structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def paired_mean_difference_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95, resamples: int = 5000,
                              seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` interval of ``mean(a - b)`` for paired per-case
    scores ``a``, ``b`` ``(N,)`` (cases resampled with replacement, seeded)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"expected two equal-length 1-D score arrays, got shapes {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)
