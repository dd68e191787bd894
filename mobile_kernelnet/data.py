"""HR training images and on-the-fly (LR, kernel) pairs. No downloads.

Sources:

* **dead leaves** (:func:`dead_leaves`): occluding random discs and rectangles whose
  sizes follow the scale-invariant power law ``p(r) ~ r^-3``, with optional
  per-shape texture (a linear ramp plus a sinusoid) — the standard synthetic model
  of natural-image statistics.
* **procedural textures** (:mod:`textures`, off unless ``texture_prob`` > 0): power-law
  noise with a random spectral slope and bricks/tiles/stripes.
* **natural images that installed packages ship** (:func:`packaged_images`):
  scikit-learn's ``china`` and ``flower``, PyWavelets' ``aero`` and ``ascent``, and
  matplotlib's ``grace_hopper``. Every one passes :func:`gallery.refuse_test_image`
  (PyWavelets' ``camera`` is scikit-image's ``camera`` and is therefore excluded).

:class:`HRPatchSampler` draws grayscale patches (random crop, scale, flips, 90°
rotations) from both; :func:`training_batch` degrades them with pool kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from skimage.transform import rescale

from .camera import CameraRanges, camera_mix
from .degrade import degrade_torch, quantize_8bit
from .color import to_gray
from .gallery import refuse_test_image
from .kernels import KernelPool
from .textures import procedural_texture

NATURAL_SCALES = (1.0, 0.8, 0.65, 0.5)


def dead_leaves(size: int, rng: np.random.Generator, r_min: float = 2.0, r_max: float | None = None,
                n_shapes: int = 5000, texture: bool = True) -> np.ndarray:
    """A ``(size, size)`` float32 dead-leaves image in [0, 1].

    Shapes are drawn front to back until the canvas is covered (or ``n_shapes``
    are drawn); radii follow ``p(r) ~ r^-3`` on ``[r_min, r_max]`` (default
    ``r_max = size / 3``). Two thirds are discs, one third axis-aligned rectangles.
    """
    r_max = r_max or size / 3
    img = np.zeros((size, size), np.float32)
    free = np.ones((size, size), bool)
    # inverse CDF of p(r) ~ r^-3 on [r_min, r_max]
    u = rng.random(n_shapes)
    radii = (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5
    for r in radii:
        cy, cx = rng.uniform(-r, size + r, 2)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        if rng.random() < 2 / 3:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            ry = r * rng.uniform(0.3, 1.0)
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= r)
        mask &= free[y0:y1, x0:x1]
        if not mask.any():
            continue
        value = np.full(mask.shape, rng.random(), np.float32)
        if texture and rng.random() < 0.5:
            gy, gx = rng.normal(0, 0.3 / max(r, 1), 2)
            f, phase, amp = rng.uniform(0.05, 0.8), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.15)
            theta = rng.uniform(0, np.pi)
            value += gy * (yy - cy) + gx * (xx - cx)
            value += amp * np.sin(f * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
        img[y0:y1, x0:x1][mask] = value[mask]
        free[y0:y1, x0:x1] &= ~mask
        if not free.any():
            break
    img[free] = rng.random()
    return np.clip(img, 0.0, 1.0)


@lru_cache(maxsize=1)
def packaged_images() -> dict[str, np.ndarray]:
    """Natural training images shipped by installed packages: name -> ``(H, W)`` float32
    luma in [0, 1]. Each is checked against the scikit-image test gallery."""
    import matplotlib.cbook
    import imageio.v3 as iio
    import pywt.data
    from sklearn.datasets import load_sample_image

    raw = {
        "sklearn-china": load_sample_image("china.jpg"),
        "sklearn-flower": load_sample_image("flower.jpg"),
        "pywt-aero": pywt.data.aero().astype(np.float32) / 255.0,
        "pywt-ascent": pywt.data.ascent().astype(np.float32) / 255.0,
        "mpl-grace_hopper": iio.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg")),
    }
    out = {}
    for name, img in raw.items():
        gray = to_gray(img)
        refuse_test_image(gray, name)
        out[name] = gray
    return out


@dataclass
class HRPatchSampler:
    """Random ``(patch, patch)`` HR patches, randomly flipped and rotated by k·90°.

    With probability ``dead_leaves_prob`` a crop of one of ``bank_size`` dead-leaves
    images (``2 * patch`` px, drawn once at start: drawing one per patch would cost
    more than the training step); with probability ``texture_prob`` a crop of one of
    ``bank_size`` procedural textures (drawn the same way); otherwise a crop of a
    packaged natural image at one of the scales in :data:`NATURAL_SCALES` (never smaller than the patch).
    ``natural_sources`` names the natural images large enough for the patch: keep the
    HR patch at most 427 px (sf x LR patch) so all of them take part. A patch larger
    than every natural image is refused unless the synthetic sources take every draw.
    """

    patch: int
    rng: np.random.Generator
    dead_leaves_prob: float = 0.5
    bank_size: int = 48
    texture_prob: float = 0.0

    def __post_init__(self) -> None:
        side = 2 * self.patch
        if min(self.dead_leaves_prob, self.texture_prob) < 0 or self.dead_leaves_prob + self.texture_prob > 1:
            raise ValueError(f"source shares must be >= 0 and sum to at most 1 (dead leaves "
                             f"{self.dead_leaves_prob}, textures {self.texture_prob})")
        self._bank = [dead_leaves(side, self.rng) for _ in range(self.bank_size)]
        self._textures = ([procedural_texture(side, self.rng) for _ in range(self.bank_size)]
                          if self.texture_prob > 0 else [])
        usable = {name: img for name, img in packaged_images().items() if min(img.shape) >= self.patch}
        if not usable and self.dead_leaves_prob + self.texture_prob < 1.0:
            raise ValueError(f"HR patch {self.patch} px is larger than every packaged natural image; "
                             f"use a smaller patch (at most {max(min(i.shape) for i in packaged_images().values())})")
        self.natural_sources = sorted(usable)
        self._natural = [rescale(img, s, anti_aliasing=True).astype(np.float32) if s < 1 else img
                         for img in usable.values() for s in NATURAL_SCALES
                         if s * min(img.shape) >= self.patch]

    def __call__(self) -> np.ndarray:
        """One ``(patch, patch)`` float32 patch in [0, 1]."""
        u = self.rng.random() if self._bank else 1.0
        if u < self.dead_leaves_prob:
            source = self._bank
        elif u < self.dead_leaves_prob + self.texture_prob:
            source = self._textures
        else:
            source = self._natural
        img = source[self.rng.integers(len(source))]
        y = self.rng.integers(0, img.shape[0] - self.patch + 1)
        x = self.rng.integers(0, img.shape[1] - self.patch + 1)
        p = np.rot90(img[y:y + self.patch, x:x + self.patch], self.rng.integers(4))
        if self.rng.random() < 0.5:
            p = p[:, ::-1]
        return np.ascontiguousarray(p, dtype=np.float32)

    def batch(self, n: int) -> torch.Tensor:
        """``(n, 1, patch, patch)`` float32 tensor."""
        return torch.from_numpy(np.stack([self() for _ in range(n)]))[:, None]


def training_batch(sampler: HRPatchSampler, pool: KernelPool, n: int, noise_max: float = 0.0,
                   camera: CameraRanges | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` fresh pairs: ``(lr (n,1,P/sf,P/sf), hr (n,1,P,P), kernels (n,K,K))``, kernels
    from ``pool``. Each LR image gets white noise of sigma U(0, noise_max) and 8-bit
    quantisation (the lab degradation) or, with ``camera``, the camera degradation of
    :mod:`camera` with parameters drawn per image (its ``clean_prob`` share keeps the lab one)."""
    hr = sampler.batch(n)
    k = torch.from_numpy(pool.sample(sampler.rng, n))
    sigma = torch.from_numpy(sampler.rng.uniform(0, noise_max, n).astype(np.float32))
    gen = torch.Generator().manual_seed(int(sampler.rng.integers(2 ** 31)))
    if camera is None:
        return quantize_8bit(degrade_torch(hr, k, pool.sf, sigma, generator=gen)), hr, k
    clean = degrade_torch(hr, k, pool.sf)
    lab = quantize_8bit(clean + torch.randn(clean.shape, generator=gen) * sigma.reshape(-1, 1, 1, 1))
    return camera_mix(clean, lab, camera, sampler.rng, gen), hr, k
