"""Pixel formats and colour spaces. Images are float32 in [0, 1] everywhere else."""
from __future__ import annotations

import numpy as np

BT601_LUMA = np.array([0.299, 0.587, 0.114])
YCBCR_FULL = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
"""Full-range BT.601 RGB -> YCbCr (Cb, Cr centred on 0)."""


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / bool / float array -> float32 scaled to [0, 1] (floats kept as they are)."""
    img = np.asarray(img)
    if img.dtype == bool:
        return img.astype(np.float32)
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    return img.astype(np.float32)


def to_gray(img: np.ndarray) -> np.ndarray:
    """``(H,W)``, ``(H,W,3)`` or ``(H,W,4)`` of any pixel type -> ``(H, W)`` float32 BT.601
    luma in [0, 1] (alpha dropped)."""
    img = to_float(img)
    if img.ndim == 3:
        img = (img[..., :3] @ BT601_LUMA).astype(np.float32)
    return img


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` RGB -> full-range YCbCr (float64)."""
    return np.asarray(img, np.float64) @ YCBCR_FULL.T


def ycbcr_to_rgb(img: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    return np.asarray(img, np.float64) @ np.linalg.inv(YCBCR_FULL).T
