"""Reading images from disk and writing results atomically.

Every file the project writes goes through :func:`atomic_output`: it is written
under a temporary name beside the target and renamed only when complete, so an
interrupted or failed write never leaves a file that looks finished.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import imageio.v3 as iio
import numpy as np

from PIL import Image

from .color import ValueRangeError, to_float, to_gray


class InputError(ValueError):
    """One input (an image) cannot be used; commands report it and go on with the others."""


class ImageReadError(InputError):
    """The file is missing, unreadable, or not an image we can use."""


EXIF_ORIENTATION = 0x0112
_ORIENT = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}
"""EXIF orientation tag value -> the transform from stored pixels to the image as displayed."""


@dataclass(frozen=True)
class LoadedImage:
    """An image as read from disk: ``pixels`` ``(H, W)`` or ``(H, W, 3)`` float32 in [0, 1]
    in the displayed orientation, and the ``bits`` per sample of the file (8, 16 or 32)."""

    pixels: np.ndarray
    bits: int


def load_image(path: str | Path) -> LoadedImage:
    """Read PNG / JPEG / TIFF (and what else Pillow or tifffile read) as it is displayed:
    EXIF orientation applied; 8- and 16-bit scaled to [0, 1], float kept only inside
    [0, 1]; gray, gray + alpha, RGB, RGBA and palette images (alpha dropped); CMYK and
    other modes refused by name. Raises :class:`ImageReadError`."""
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    mode, orientation = _pillow_facts(path)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        raise ImageReadError(f"{path}: {mode} images are not supported; convert it to RGB or gray first")
    try:
        with warnings.catch_warnings():  # imageio's plugin probing warns about deprecated plugins
            warnings.simplefilter("ignore", DeprecationWarning)
            img = iio.imread(path)
    except Exception as exc:  # imageio raises many types for undecodable input
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ImageReadError(f"{path}: not a readable image ({reason})") from exc
    if img.ndim == 3 and img.shape[-1] in (1, 2):  # gray, gray + alpha
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[-1] in (3, 4):  # RGB, RGBA
        img = img[..., :3]
    elif img.ndim != 2:
        raise ImageReadError(f"{path}: {img.ndim}-D array of shape {img.shape} "
                             f"(a multi-page file or a volume?); expected one 2-D image")
    try:
        pixels = to_float(img, str(path))
    except ValueRangeError as exc:
        raise ImageReadError(str(exc)) from None
    pixels = np.ascontiguousarray(_ORIENT.get(orientation, lambda a: a)(pixels))
    return LoadedImage(pixels, 8 * img.dtype.itemsize)


def _pillow_facts(path: Path) -> tuple[str | None, int]:
    """``(Pillow mode, EXIF orientation)`` of a file, ``(None, 1)`` when Pillow cannot open it."""
    try:
        with Image.open(path) as im:
            return im.mode, int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # not a Pillow format (e.g. some TIFFs): no EXIF to apply
        return None, 1


def read_image(path: str | Path) -> np.ndarray:
    """:func:`load_image` as ``(H, W)`` float32 BT.601 luma in [0, 1]."""
    return to_gray(load_image(path).pixels)


def read_image_color(path: str | Path) -> np.ndarray:
    """:func:`load_image`'s pixels: ``(H, W)`` or ``(H, W, 3)`` float32 in [0, 1]."""
    return load_image(path).pixels


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


IMAGE_SUFFIXES = {".png": (8, 16), ".tif": (8, 16), ".tiff": (8, 16), ".jpg": (8,), ".jpeg": (8,)}
"""Output image suffixes and the bit depths each stores."""


def to_pixels(img: np.ndarray, bits: int) -> np.ndarray:
    """Float in [0, 1] -> uint8 / uint16 (``bits`` 8 / 16), clipped and rounded."""
    dtype = {8: np.uint8, 16: np.uint16}[bits]
    return np.round(np.clip(img, 0.0, 1.0) * np.iinfo(dtype).max).astype(dtype)


def check_image_output(path: str | Path) -> Path:
    """Refuse (ValueError) an output image path whose suffix is not in :data:`IMAGE_SUFFIXES`
    or that is an existing directory; returns it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give an image file name")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{path}: unsupported output suffix {path.suffix!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)}")
    return path


def write_image(path: str | Path, img: np.ndarray, bits: int = 8) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` atomically, in the format of the path's suffix: PNG
    or TIFF at 8 or 16 bits, JPEG (quality 95) at 8 bits (16 falls back to 8 there).
    ``img``: float in [0, 1] (clipped, rounded to ``bits``), or uint8 / uint16 pixels,
    written at their own depth."""
    path = check_image_output(path)
    suffix = path.suffix.lower()
    if img.dtype in (np.uint8, np.uint16):
        data = img if 8 * img.itemsize in IMAGE_SUFFIXES[suffix] else (img >> 8).astype(np.uint8)
    else:
        data = to_pixels(img, bits if bits in IMAGE_SUFFIXES[suffix] else 8)
    with atomic_output(path) as tmp:
        if suffix in (".jpg", ".jpeg"):
            Image.fromarray(data).save(tmp, format="JPEG", quality=95)
        else:
            iio.imwrite(tmp, data, extension=suffix)


def write_png(path: str | Path, img: np.ndarray, bits: int = 8) -> None:
    """Write ``(H, W)`` or ``(H, W, 3)`` float in [0, 1] as an 8- or 16-bit PNG (clipped,
    rounded), atomically, whatever the path's suffix (temporary names, test sets)."""
    data = to_pixels(img, bits)
    with atomic_output(path) as tmp:
        iio.imwrite(tmp, data, extension=".png")


def write_json(report: dict, path: str | Path) -> None:
    """Write a JSON report atomically (parent folders made; no half-written JSON on failure)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(report, indent=1))


def write_npy(path: str | Path, arr: np.ndarray) -> None:
    """``np.save`` atomically."""
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)
