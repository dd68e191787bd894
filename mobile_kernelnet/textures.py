"""Procedural texture images: the spectral variety dead leaves lack. No downloads.

Dead leaves have one spectral slope (amplitude ~ 1/f) and no periodic structure, so a
spectrum-based estimator trained on them (and five natural photos) can mistake an
image's own spectrum for the blur's. Two extra families, each a ``(size, size)``
float32 image in [0, 1]:

* :func:`power_law_noise`: Gaussian random field with amplitude spectrum
  ``1 / f^alpha``, ``alpha`` U(0.6, 1.6) (natural images sit near 1), anisotropic
  (one axis stretched up to 3x at a random angle).
* :func:`tiling`: man-made regular structure: bricks (offset rows), square tiles or
  stripes, period 5-40 px, random angle, mortar/gap lines, per-tile grey levels and a
  little noise texture; drawn at 4x and area-averaged so edges are antialiased as a
  camera's would be (a jagged HR edge would be blur-free aliasing, not a sharp image).

:func:`procedural_texture` draws one of them (equal odds).
"""
from __future__ import annotations

import numpy as np

SUPERSAMPLE = 4


def _stretch01(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map the 1st..99th percentile to a random sub-range of [0, 1] (contrast 0.3-1)."""
    lo, hi = np.percentile(img, (1, 99))
    contrast = rng.uniform(0.3, 1.0)
    base = rng.uniform(0.0, 1.0 - contrast)
    return np.clip(base + contrast * (img - lo) / max(hi - lo, 1e-8), 0.0, 1.0).astype(np.float32)


def _rotate(x: np.ndarray, y: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(x, y)`` in a frame turned by ``theta``."""
    return np.cos(theta) * x + np.sin(theta) * y, -np.sin(theta) * x + np.cos(theta) * y


def power_law_noise(size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size)`` float32 in [0, 1]: random field with amplitude ~ ``1/f^alpha``."""
    alpha = rng.uniform(0.6, 1.6)
    theta, stretch = rng.uniform(0, np.pi), rng.uniform(1.0, 3.0)
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    u, v = _rotate(fx, fy, theta)
    f = np.hypot(u, v * stretch)
    f[0, 0] = 1.0
    amp = f ** -alpha
    amp[0, 0] = 0.0
    field = np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random((size, size)))).real
    return _stretch01(field, rng)


def tiling(size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size)`` float32 in [0, 1]: bricks, tiles or stripes at a random angle."""
    n = size * SUPERSAMPLE
    yy, xx = (np.mgrid[:n, :n].astype(np.float32) + 0.5) / SUPERSAMPLE
    theta = rng.uniform(0, np.pi)
    u, v = _rotate(xx, yy, theta)
    u, v = u + rng.uniform(0, 100), v + rng.uniform(0, 100)
    kind = rng.choice(("bricks", "tiles", "stripes"))
    h = rng.uniform(5, 40)
    w = h * (rng.uniform(1.5, 3.0) if kind == "bricks" else 1.0)
    gap = rng.uniform(0.5, max(0.6, 0.2 * h))
    row = np.floor(v / h)
    if kind == "bricks":
        u = u + (row % 2) * w / 2
    col = np.floor(u / w) if kind != "stripes" else np.zeros_like(u)
    in_gap = (v - row * h) < gap
    if kind != "stripes":
        in_gap |= (u - col * w) < gap
    levels = rng.uniform(0, 1, 1024).astype(np.float32)
    tile_value = levels[((row * 7919 + col * 104729) % 1024).astype(np.int64)]
    spread = rng.uniform(0.05, 0.4)
    img = np.where(in_gap, rng.uniform(0, 1), rng.uniform(0.2, 0.8) + spread * (tile_value - 0.5))
    img = img.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))
    img = img + rng.uniform(0, 0.08) * (power_law_noise(size, rng) - 0.5)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def procedural_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(size, size)`` float32 image in [0, 1]: :func:`power_law_noise` or :func:`tiling`."""
    return tiling(size, rng) if rng.random() < 0.5 else power_law_noise(size, rng)
