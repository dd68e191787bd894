"""The scikit-image gallery: the project's *test* images, and the guard that keeps
them (and every other image scikit-image bundles) out of training.

A training source is refused when its 32x32 thumbnail correlates above
:data:`MATCH_CORRELATION` with any bundled scikit-image image (so a copy shipped by
another package, e.g. PyWavelets' ``camera``, is caught too), or when it is read
from scikit-image's data folder.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import skimage.data
from skimage.transform import resize

from .color import to_gray

TEST_IMAGES = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass",
               "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "rocket")
"""Gallery images the test set is made from (all bundled; no download)."""

_ALSO_RESERVED = ("cell", "checkerboard", "clock", "colorwheel", "horse", "logo",
                  "microaneurysms", "page", "retina", "text", "binary_blobs",
                  "shepp_logan_phantom")
MATCH_CORRELATION = 0.98


class TestImageInTrainingError(ValueError):
    """A scikit-image gallery image was offered as training data."""


def load_test_image(name: str) -> np.ndarray:
    """A gallery image as ``(H, W)`` float32 luma in [0, 1]."""
    if name not in TEST_IMAGES:
        raise ValueError(f"{name!r} is not a test image; choose from {TEST_IMAGES}")
    return to_gray(getattr(skimage.data, name)())


def _thumbnail(img: np.ndarray) -> np.ndarray:
    """32x32 zero-mean unit-norm thumbnail of any image (binary masks read as 0 / 1)."""
    t = resize(to_gray(img.astype(np.float32) if img.dtype == bool else img), (32, 32), anti_aliasing=True).ravel().astype(np.float64)
    t -= t.mean()
    return t / (np.linalg.norm(t) + 1e-12)


@lru_cache(maxsize=1)
def _reserved_thumbnails() -> dict[str, np.ndarray]:
    return {n: _thumbnail(getattr(skimage.data, n)()) for n in TEST_IMAGES + _ALSO_RESERVED}


def matching_gallery_image(img: np.ndarray) -> str | None:
    """Name of the scikit-image image ``img`` is a copy of (any size), or None."""
    t = _thumbnail(img)
    for name, ref in _reserved_thumbnails().items():
        if float(t @ ref) > MATCH_CORRELATION:
            return name
    return None


def refuse_test_image(img: np.ndarray, source: str) -> None:
    """Raise :class:`TestImageInTrainingError` if ``img`` (from ``source``, a path or a
    name) is a scikit-image gallery image."""
    data_dir = Path(skimage.data.__file__).parent.resolve()
    if Path(source).exists() and data_dir in Path(source).resolve().parents:
        raise TestImageInTrainingError(f"{source}: scikit-image gallery files are the test set")
    name = matching_gallery_image(img)
    if name is not None:
        raise TestImageInTrainingError(
            f"{source}: is the scikit-image gallery image {name!r}, reserved for testing")
