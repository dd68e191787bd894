"""Pixel formats and colour spaces. Images are float32 in [0, 1] everywhere else."""
from __future__ import annotations

import numpy as np

BT601_LUMA = np.array([0.299, 0.587, 0.114])
YCBCR_FULL = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
"""Full-range BT.601 RGB -> YCbCr (Cb, Cr centred on 0)."""


class ValueRangeError(ValueError):
    """An array whose pixel type or values cannot be read as an image in [0, 1]."""


RANGE_TOLERANCE = 1e-6
"""Float pixels may stray this far outside [0, 1] (round-off) and are clipped."""


def to_float(img: np.ndarray, source: str = "image") -> np.ndarray:
    """Pixels -> float32 in [0, 1], by pixel type: uint8 / 255, uint16 / 65535, float kept
    as is (and clipped to round-off). Raises :class:`ValueRangeError` for bool or other
    integer types, non-numeric arrays and floats outside [0, 1] (e.g. 0..255 floats), since
    any guess there would silently give a wrong kernel."""
    img = np.asarray(img)
    if img.dtype in (np.uint8, np.uint16):
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    if img.dtype == bool or not np.issubdtype(img.dtype, np.floating):
        raise ValueRangeError(f"{source}: pixel type {img.dtype} is not an image type; pass uint8, uint16 "
                              f"or float in [0, 1]")
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN / inf pixels: judge the range by the others
        finite = img[np.isfinite(img)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        hint = " (it looks like 0..255: divide by 255)" if hi <= 255 and hi > 1.5 and lo >= 0 else ""
        raise ValueRangeError(f"{source}: float pixels span [{lo:.4g}, {hi:.4g}], outside [0, 1]{hint}; "
                              f"scale them to [0, 1] first")
    img = img.astype(np.float32, copy=False)
    return np.clip(img, 0.0, 1.0) if lo < 0 or hi > 1 else img


def to_gray(img: np.ndarray, source: str = "image") -> np.ndarray:
    """``(H,W)``, ``(H,W,3)`` or ``(H,W,4)`` (pixel types as :func:`to_float`) -> ``(H, W)``
    float32 BT.601 luma in [0, 1] (alpha dropped)."""
    img = to_float(img, source)
    if img.ndim == 3:
        img = (img[..., :3] @ BT601_LUMA).astype(np.float32)
    return img


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB -> full-range YCbCr (float64)."""
    return np.asarray(img, np.float64) @ YCBCR_FULL.T


def ycbcr_to_rgb(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    return np.asarray(img, np.float64) @ np.linalg.inv(YCBCR_FULL).T
