"""Estimate blur kernels from LR images: the library call behind `mkn estimate`."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .color import to_float
from .imio import InputError, read_image
from .kernels import kernel_size

MIN_SIDE_IN_KERNELS = 3
"""An LR image must be at least this many kernel widths ``K`` on its shorter side."""


class BadImageError(InputError):
    """The image cannot give a meaningful kernel (too small, constant, non-finite)."""


def check_image(img: np.ndarray, sf: int, source: str = "image") -> None:
    """Raise :class:`BadImageError` unless ``img`` (``(H, W)`` float) is finite, not
    constant and at least ``MIN_SIDE_IN_KERNELS * K`` pixels on each side."""
    if img.ndim != 2:
        raise BadImageError(f"{source}: expected a 2-D luma image, got shape {img.shape}")
    if not np.all(np.isfinite(img)):
        raise BadImageError(f"{source}: contains NaN or infinite pixels")
    need = MIN_SIDE_IN_KERNELS * kernel_size(sf)
    if min(img.shape) < need:
        raise BadImageError(f"{source}: {img.shape[1]}x{img.shape[0]} px is too small; "
                            f"sf {sf} needs at least {need} px per side "
                            f"({MIN_SIDE_IN_KERNELS} kernel widths of {kernel_size(sf)})")
    if float(img.max() - img.min()) < 1.0 / 255:
        raise BadImageError(f"{source}: image is constant; there is no blur to measure")


@lru_cache(maxsize=16)
def _model(name: str, sf: int, config: str | None):
    from .models import create_model
    return create_model(name, sf, config)


def estimate(image: np.ndarray | str | Path, sf: int = 2, model: str = "kernelnet",
             config: str | None = None) -> np.ndarray:
    """Blur kernel of one LR image.

    ``image``: a path, or an ``(H, W)`` luma array: uint8 (0..255), uint16 (0..65535) or
    float in [0, 1] (anything else is refused, see :func:`color.to_float`). Returns the
    ``(K, K)`` float32 kernel (non-negative, sum 1) in HR pixels, centred at ``K // 2``.
    Raises :class:`BadImageError` / :class:`imio.ImageReadError` /
    :class:`color.ValueRangeError` on bad input.
    """
    source = str(image) if isinstance(image, (str, Path)) else "image"
    img = read_image(image) if isinstance(image, (str, Path)) else to_float(image, source)
    check_image(img, sf, source)
    net = _model(model, sf, config)
    with torch.inference_mode():
        k = net(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])
    return k[0, 0].numpy().astype(np.float32)
