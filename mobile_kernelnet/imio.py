"""Reading images from disk and writing results atomically.

Every file the project writes goes through :func:`atomic_output`: it is written
under a temporary name beside the target and renamed only when complete, so an
interrupted or failed write never leaves a file that looks finished.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import imageio.v3 as iio
import numpy as np

from .color import to_float, to_gray


class ImageReadError(ValueError):
    """The file is missing, unreadable, or not an image we can use."""


def read_image(path: str | Path) -> np.ndarray:
    """PNG / JPEG / TIFF, 8 or 16 bit (or float TIFF), gray, RGB or RGBA ->
    ``(H, W)`` float32 luma in [0, 1]. Raises :class:`ImageReadError`."""
    return to_gray(read_image_color(path))


def read_image_color(path: str | Path) -> np.ndarray:
    """Like :func:`read_image` but keeps colour: ``(H, W)`` or ``(H, W, 3)`` float32 in
    [0, 1] (alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # imageio's plugin probing warns about deprecated plugins
            warnings.simplefilter("ignore", DeprecationWarning)
            img = iio.imread(path)
    except Exception as exc:  # imageio raises many types for undecodable input
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from exc
    if img.ndim == 3 and img.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"{path}: unsupported image shape {img.shape} (multi-page or volume?)")
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim != 2 and img.ndim != 3:
        raise ImageReadError(f"{path}: unsupported image shape {img.shape}")
    if img.ndim == 3:
        img = img[..., :3]
    return to_float(img)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` on success, delete it on error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_png(path: str | Path, img: np.ndarray, bits: int = 8) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` float in [0, 1] as an 8- or 16-bit PNG (clipped,
    rounded), atomically."""
    dtype = {8: np.uint8, 16: np.uint16}[bits]
    scale = np.iinfo(dtype).max
    data = np.round(np.clip(img, 0.0, 1.0) * scale).astype(dtype)
    with atomic_output(path) as tmp:
        iio.imwrite(tmp, data, extension=".png")


def write_npy(path: str | Path, arr: np.ndarray) -> None:
    """``np.save`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
