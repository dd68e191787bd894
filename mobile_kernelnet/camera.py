"""The camera degradation: sensor noise, 8-bit storage and JPEG on top of :mod:`degrade`.

    y = JPEG_q(quantise((x ⊛ k)↓sf + n)),   Var[n | s] = a·s + b²,   s = (x ⊛ k)↓sf

``n`` is the heteroscedastic Gaussian approximation of Poisson–Gaussian sensor noise
(Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting for single-image
raw-data", IEEE TIP 2008): ``a`` is the shot-noise gain (variance per unit of signal),
``b`` the signal-independent (read) noise standard deviation, both in the image's [0, 1]
units. It is added in the LR image, where a phone's sensor sees the scene.

Where the ranges come from (:data:`TRAINING_RANGES`):

* Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019) sample raw
  shot noise log-uniformly in [1e-4, 1.2e-2] and read noise from it, covering phone and
  DSLR sensors from base to high ISO. Those are *raw* levels; a phone's ISP then
  denoises before the JPEG, leaving a residual of roughly 1–8 / 255 at mid-grey (the
  σ 0.005–0.03 the camera issue measured on). We therefore take the raw shot range
  scaled by 1/4 ([2.5e-5, 3e-3]: σ 0.0035–0.039 at s = 0.5) and read noise
  log-uniform in [5e-4, 1e-2] (0.13–2.6 / 255).
* JPEG quality: phone cameras store at 85–95; messaging and web uploads recompress at
  about 60–80 (libjpeg's scale). Drawn uniformly in [60, 95], or no JPEG (a PNG or
  HEIF-lossless path) with probability ``1 - jpeg_prob``.
* Clean images stay in the mix: with probability ``clean_prob`` an image gets the old
  degradation (white noise U(0, ``noise_max``), 8-bit PNG) so the estimator does not
  forget the lab case.

:data:`LEVELS` are the three fixed settings of the camera test split (low / medium /
high noise and compression).
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class CameraParams:
    """One image's camera degradation: shot gain ``a``, read-noise std ``b`` (both in
    [0, 1] image units) and JPEG quality (``None`` = stored losslessly)."""

    a: float
    b: float
    jpeg_quality: int | None

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0:
            raise ValueError(f"noise parameters must be >= 0, got a={self.a}, b={self.b}")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, got {self.jpeg_quality}")


LEVELS: dict[str, CameraParams] = {
    "low": CameraParams(a=1e-4, b=2e-3, jpeg_quality=95),
    "medium": CameraParams(a=5e-4, b=4e-3, jpeg_quality=85),
    "high": CameraParams(a=2e-3, b=8e-3, jpeg_quality=70),
}
"""The camera test split's levels; σ at mid-grey (s = 0.5) ≈ 0.0075 / 0.017 / 0.033."""


@dataclass(frozen=True)
class CameraRanges:
    """How training draws :class:`CameraParams` per image (see the module docstring)."""

    clean_prob: float = 0.25
    a: tuple[float, float] = (2.5e-5, 3e-3)   # log-uniform
    b: tuple[float, float] = (5e-4, 1e-2)     # log-uniform
    jpeg_prob: float = 0.8
    jpeg_quality: tuple[int, int] = (60, 95)  # uniform, inclusive

    def draw(self, rng: np.random.Generator) -> CameraParams | None:
        """Parameters for one image, or ``None`` for a clean (lab-degradation) image."""
        if rng.random() < self.clean_prob:
            return None
        a = float(np.exp(rng.uniform(*np.log(self.a))))
        b = float(np.exp(rng.uniform(*np.log(self.b))))
        q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)) if rng.random() < self.jpeg_prob else None
        return CameraParams(a, b, q)


TRAINING_RANGES = CameraRanges()


def noise_std(signal: np.ndarray, a: float, b: float) -> np.ndarray:
    """Per-pixel noise std ``sqrt(a·s + b²)`` of the model, ``s`` clipped to [0, 1]."""
    return np.sqrt(a * np.clip(signal, 0.0, 1.0) + b * b)


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """``(H, W)`` float in [0, 1] -> the bytes of an 8-bit gray JPEG at ``quality``
    (libjpeg via Pillow, default tables)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img), mode="L").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg_roundtrip(img: np.ndarray, quality: int) -> tuple[np.ndarray, int]:
    """:func:`encode_jpeg` then decode. Returns ``(decoded (H, W) float32 in [0, 1],
    encoded size in bytes)``."""
    data = encode_jpeg(img, quality)
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0, len(data)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` float -> uint8: clipped to [0, 1], rounded (8-bit storage)."""
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def sensor_np(lr: np.ndarray, params: CameraParams, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise and 8-bit storage of a clean LR image ``(h, w)`` float (``(x ⊛ k)↓sf``):
    ``(h, w)`` float32 multiples of 1/255 in [0, 1] (before any JPEG)."""
    noisy = lr + rng.standard_normal(lr.shape) * noise_std(lr, params.a, params.b)
    return to_uint8(noisy).astype(np.float32) / 255.0


def camera_np(lr: np.ndarray, params: CameraParams, rng: np.random.Generator) -> np.ndarray:
    """The whole camera degradation of a clean LR image: :func:`sensor_np`, then the JPEG
    round trip if ``params`` has a quality. Returns ``(h, w)`` float32 in [0, 1]."""
    stored = sensor_np(lr, params, rng)
    if params.jpeg_quality is None:
        return stored
    return jpeg_roundtrip(stored, params.jpeg_quality)[0]


def camera_mix(clean: torch.Tensor, lab: torch.Tensor, ranges: CameraRanges, rng: np.random.Generator,
               generator: torch.Generator) -> torch.Tensor:
    """A batch in the training mix: ``lab`` ``(B, 1, h, w)`` (the lab degradation of ``clean``,
    the noise-free LR images) with every image for which ``ranges`` draws camera parameters
    (from ``rng``) replaced by :func:`camera_torch` of its ``clean`` version."""
    draws = [ranges.draw(rng) for _ in range(len(clean))]
    idx = [i for i, p in enumerate(draws) if p is not None]
    out = lab.clone()
    if idx:
        out[idx] = camera_torch(clean[idx], [draws[i] for i in idx], generator)
    return out


def camera_torch(lr: torch.Tensor, params: list[CameraParams], generator: torch.Generator) -> torch.Tensor:
    """Batched :func:`camera_np`: ``lr`` ``(B, 1, h, w)`` clean LR, one :class:`CameraParams`
    per image. Noise is drawn in torch from ``generator``; the JPEG round trip runs per
    image through Pillow. Returns ``(B, 1, h, w)`` float32 in [0, 1]."""
    if len(params) != lr.shape[0]:
        raise ValueError(f"{len(params)} camera settings for a batch of {lr.shape[0]}")
    a = torch.tensor([p.a for p in params], dtype=lr.dtype).reshape(-1, 1, 1, 1)
    b = torch.tensor([p.b for p in params], dtype=lr.dtype).reshape(-1, 1, 1, 1)
    std = torch.sqrt(a * lr.clamp(0, 1) + b * b)
    noisy = lr + torch.randn(lr.shape, generator=generator, dtype=lr.dtype) * std
    stored = torch.round(noisy.clamp(0, 1) * 255) / 255
    out = stored.clone()
    for i, p in enumerate(params):
        if p.jpeg_quality is not None:
            out[i, 0] = torch.from_numpy(jpeg_roundtrip(stored[i, 0].numpy(), p.jpeg_quality)[0])
    return out
