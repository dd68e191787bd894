"""The denoising front stage: what an estimator's LR window goes through before the model.

Camera photos carry sensor noise and JPEG; the estimators' kernels come from the
image's fine structure (KernelNet's sharp gradients, S2K's high-frequency spectrum), which
noise swamps. So the window chosen by :mod:`budget` is denoised first, with a strength
set by the image itself:

* **noise level** (:func:`estimate_noise`): Immerkær's estimator ("Fast noise variance
  estimation", CVIU 1996: mean absolute response to a Laplacian-difference mask, x
  sqrt(pi / 2) / 6) per 16 x 16 block and the 5th percentile over blocks (the flattest
  parts, where texture adds least), on the 2 x 2-binned image (block sums / 2, which keep
  a white noise's std) because JPEG removes most noise at the finest scale;
* **denoiser** (:class:`FrontStage`): non-local means (Buades et al., CVPR 2005;
  scikit-image's ``denoise_nl_means``, fast mode) with filtering strength
  ``h = h_per_sigma x σ̂``, ``sigma = σ̂``, 5 x 5 patches searched within 6 px. On a clean
  image σ̂ is ~1/255 and the filter barely moves a pixel.

Each model records the front stage its shipped weights are run with (the registry's
``front``; an export's manifest carries it for the exported file): ``h_per_sigma`` was
chosen per model on validation cases (the packaged images, never the test gallery;
NOTES.md has the numbers). For an app it is one more pre-processing step after
:func:`budget.apply_window`, before :func:`budget.pad_to_budget`. numpy / scipy /
scikit-image only: it runs in the torch-free path of exported files.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import convolve2d

LAPLACE_NOISE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
NOISE_BLOCK = 16
NOISE_PERCENTILE = 5


def estimate_noise(lr: np.ndarray) -> float:
    """Noise std of an ``(h, w)`` image in [0, 1] units, robust to texture and JPEG
    (the module docstring's estimator)."""
    x = np.asarray(lr, np.float64)
    h, w = (s // 2 * 2 for s in x.shape)
    x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) / 2
    r = np.abs(convolve2d(x, LAPLACE_NOISE, mode="valid")) * math.sqrt(math.pi / 2) / 6
    b = NOISE_BLOCK
    rh, rw = r.shape[0] // b * b, r.shape[1] // b * b
    if not rh or not rw:
        return float(np.median(r))
    blocks = r[:rh, :rw].reshape(rh // b, b, rw // b, b).mean(axis=(1, 3))
    return float(np.percentile(blocks, NOISE_PERCENTILE))


@dataclass(frozen=True)
class FrontStage:
    """Non-local-means denoising of the window at ``h = h_per_sigma x σ̂``."""

    h_per_sigma: float
    patch_size: int = 5
    patch_distance: int = 6

    def __post_init__(self) -> None:
        if self.h_per_sigma <= 0 or self.patch_size < 1 or self.patch_distance < 1:
            raise ValueError(f"front stage needs h_per_sigma > 0 and positive patch sizes, got {self}")

    def __call__(self, window: np.ndarray) -> tuple[np.ndarray, float]:
        """``(h, w)`` float32 in [0, 1] -> (the denoised ``(h, w)`` float32, σ̂)."""
        from skimage.restoration import denoise_nl_means

        sigma = estimate_noise(window)
        if sigma == 0:  # a noiseless (e.g. synthetic, piecewise-flat) window: nothing to remove
            return np.ascontiguousarray(window, dtype=np.float32), sigma
        out = denoise_nl_means(window, h=self.h_per_sigma * sigma, sigma=sigma, patch_size=self.patch_size,
                               patch_distance=self.patch_distance, fast_mode=True)
        return np.ascontiguousarray(out, dtype=np.float32), sigma

    def as_dict(self) -> dict:
        """The manifest's ``front`` record: ``{"denoiser": "nl-means", ...fields}``."""
        return {"denoiser": "nl-means", **asdict(self)}

    @classmethod
    def from_dict(cls, record: dict | None) -> "FrontStage | None":
        """Inverse of :meth:`as_dict`; ``None`` (no front stage) stays ``None``."""
        if record is None:
            return None
        fields = {k: v for k, v in record.items() if k != "denoiser"}
        if record.get("denoiser") != "nl-means":
            raise ValueError(f"unknown front-stage denoiser {record.get('denoiser')!r}")
        return cls(**fields)
