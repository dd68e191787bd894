"""The degradation model y = (x ⊛ k)↓sf + n, in numpy and batched in torch.

Conventions (both implementations agree to float32 round-off):

* ``⊛`` is true convolution (the kernel is flipped), centred on tap ``K // 2``.
* Boundary: whole-sample symmetric reflection (numpy ``"reflect"``, torch
  ``"reflect"``: ``d c b | a b c d | c b a``), so the blurred image has the input's size.
* Decimation phase 0: ``y[i, j] = (x ⊛ k)[sf * i, sf * j]``, the top-left HR pixel of
  each sf x sf block. Any sharp LR target (e.g. KernelNet's gradient targets) must
  use the same phase: :func:`decimate`.
* ``n`` is white Gaussian noise with standard deviation ``noise_sigma`` in the
  image's own units (images are float in [0, 1]).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .kernels import convolve


def _check_sizes(h: int, w: int, ksize: int, sf: int) -> None:
    if ksize % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {ksize}")
    if min(h, w) <= ksize // 2:
        raise ValueError(f"image {h}x{w} is too small for a {ksize}x{ksize} kernel "
                         f"(needs more than {ksize // 2} px per side)")
    if sf < 1:
        raise ValueError(f"scale factor must be >= 1, got {sf}")


def decimate(x, sf: int):
    """Phase-0 decimation ``x[..., ::sf, ::sf]`` (numpy array or torch tensor)."""
    return x[..., ::sf, ::sf]


def blur_np(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``(H, W)`` image ⊛ ``(K, K)`` kernel with reflect boundary -> ``(H, W)`` float32."""
    _check_sizes(*x.shape, k.shape[0], 1)
    r = k.shape[0] // 2
    padded = np.pad(np.asarray(x, dtype=np.float64), r, mode="reflect")
    return convolve(padded, np.asarray(k, dtype=np.float64), mode="valid").astype(np.float32)


def degrade_np(x: np.ndarray, k: np.ndarray, sf: int, noise_sigma: float = 0.0,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """y = (x ⊛ k)↓sf + n for one image. ``x``: ``(H, W)`` float in [0, 1]; ``k``:
    ``(K, K)``. Returns ``(ceil(H / sf), ceil(W / sf))`` float32 (not clipped)."""
    _check_sizes(*x.shape, k.shape[0], sf)
    y = decimate(blur_np(x, k), sf)
    if noise_sigma > 0:
        if rng is None:
            raise ValueError("noise_sigma > 0 needs an rng")
        y = y + rng.normal(0.0, noise_sigma, size=y.shape).astype(np.float32)
    return y


def blur_torch(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-sample blur. ``x``: ``(B, 1, H, W)``; ``k``: ``(B, K, K)`` or ``(B, 1, K, K)``,
    one kernel per image. Returns ``(B, 1, H, W)``, reflect boundary."""
    b, c, h, w = x.shape
    if c != 1:
        raise ValueError(f"expected single-channel images (B,1,H,W), got {tuple(x.shape)}")
    k = k.reshape(b, 1, k.shape[-2], k.shape[-1]).to(x.dtype)
    _check_sizes(h, w, k.shape[-1], 1)
    r = k.shape[-1] // 2
    padded = F.pad(x.reshape(1, b, h, w), (r, r, r, r), mode="reflect")
    # conv2d is a correlation: flip the kernel to convolve.
    return F.conv2d(padded, torch.flip(k, dims=(-2, -1)), groups=b).reshape(b, 1, h, w)


def degrade_torch(x: torch.Tensor, k: torch.Tensor, sf: int,
                  noise_sigma: float | torch.Tensor = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Batched y = (x ⊛ k)↓sf + n. ``x``: ``(B, 1, H, W)`` float in [0, 1]; ``k``:
    ``(B, K, K)``; ``noise_sigma``: a float or a ``(B,)`` tensor (one level per image).
    Returns ``(B, 1, ceil(H / sf), ceil(W / sf))``."""
    y = decimate(blur_torch(x, k), sf)
    sigma = torch.as_tensor(noise_sigma, dtype=y.dtype, device=y.device)
    if torch.any(sigma > 0):
        noise = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        y = y + noise * sigma.reshape(-1, 1, 1, 1) if sigma.ndim else y + noise * sigma
    return y


def quantize_8bit(y: torch.Tensor) -> torch.Tensor:
    """Clip to [0, 1] and round to 8 bits, as storing the LR image as a PNG does."""
    return torch.round(y.clamp(0, 1) * 255) / 255
