"""Non-blind super-resolution with a given kernel: closed-form data step inside
half-quadratic splitting (HQS).

Data step (Zhao et al., TIP 2016; the step USRNet unrolls): the exact minimiser of

    ||y - (x ⊛ k)↓sf||² + α ||x - z||²

under circular boundaries is, with ``F`` the 2-D DFT, ``F_k = F(k)`` (kernel centred
on the origin), ``⇓`` the mean over the sf x sf blocks of a spectrum and ``⇑`` its
sf x sf tiling,

    F_R = conj(F_k) F(y↑sf) + α F(z)
    x   = F⁻¹[(F_R - conj(F_k) ⇑((F_k F_R)⇓ / ((|F_k|²)⇓ + α))) / α],

where ``y↑sf`` puts ``y[i, j]`` at HR pixel ``(sf i, sf j)`` (the phase-0 grid of
:mod:`degrade`) and zeros elsewhere. All transforms go through :mod:`spectral`, so
either backend can run it.

HQS alternates that step with a denoiser ``z = D(x, σ_i)`` (scikit-image's wavelet
or total-variation denoiser) for ``iterations`` steps, σ_i falling geometrically
from ``sigma_start`` to ``sigma_end`` and ``α_i = mu / σ_i²``.

Noise-aware schedule (:func:`noise_schedule`, on when ``noise_floor`` is set): the
image's noise level σ̂ (:func:`estimate_noise`, or given) sets both ends of it, as in
DPIR (Zhang et al., TPAMI 2021), where the data weight is ``λ σ_n² / σ_i²`` and the
schedule ends at the noise level: ``mu`` becomes ``mu (1 + (σ̂ / noise_floor)²)``
(``noise_floor`` = the noise a clean 8-bit image is treated as having) and ``sigma_end``
becomes ``max(sigma_end, noise_end x σ̂)``. On a clean image σ̂ ≪ ``noise_floor`` and the
solver is the noise-blind one. The LR image is
reflect-padded by ``ceil(K / sf) + 2`` px first (the image is not circular) and the
result cropped back. Colour images are super-resolved on luma (BT.601 YCbCr);
their chroma is upscaled bicubically on the same phase-0 grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d
from skimage.restoration import denoise_tv_chambolle, denoise_wavelet

from .color import rgb_to_ycbcr, to_gray, ycbcr_to_rgb
from .spectral import Complex, Spectral, abs2, cdiv_real, circular_from_centered, cmul, conj


class SRInputError(ValueError):
    """A kernel or image the solver cannot use."""


@dataclass(frozen=True)
class SRConfig:
    """HQS schedule. ``sigma_*`` are the denoiser strengths (image units, [0, 1]).

    Defaults were chosen on *training* images (the packaged natural images, all three
    kernel families, sf 2 and 4): TV beat wavelet denoising by ~2 dB (NOTES.md),
    ``mu`` / ``sigma_end`` are `mkn tune-sr`'s choice (:mod:`sr_tuning`: best mean PSNR
    over the true, KernelNet's and S2K's kernels; ``results/sr_tuning.json``) and
    :data:`NOISE_AWARE` is `mkn tune-sr --camera`'s choice (the same rule over the clean
    split and the three camera levels; ``results/sr_tuning_camera.json``). It is not the
    default: on clean training images it costs 0.2 dB at sf 2 and 0.7 dB at sf 4 (the noise
    estimate reads texture as noise on small clean images), so camera input asks for it
    (`mkn sr --noise-aware`, `mkn eval --sr --noise-aware`)."""

    iterations: int = 8
    sigma_start: float = 0.05
    sigma_end: float = 0.02
    mu: float = 1e-6
    denoiser: str = "tv"
    noise_floor: float | None = None  # σ0 of the noise-aware schedule; None = noise-blind
    noise_end: float = 1.0            # the schedule ends at >= noise_end x σ̂


LAPLACE_NOISE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
NOISE_BLOCK = 16
NOISE_PERCENTILE = 5


NOISE_AWARE = {"noise_floor": 0.0025, "noise_end": 1.0}
"""The noise-aware schedule's parameters chosen by `make tune-sr-camera`."""


def sr_config(noise_aware: bool = False) -> SRConfig:
    """The shipped schedule: noise-blind, or with :data:`NOISE_AWARE` (camera photos)."""
    return SRConfig(**NOISE_AWARE) if noise_aware else SRConfig()


def estimate_noise(lr: np.ndarray) -> float:
    """Noise std of an ``(h, w)`` image in [0, 1] units, robust to texture and JPEG.

    Immerkær's estimator ("Fast noise variance estimation", CVIU 1996: the mean absolute
    response to a Laplacian-difference mask, x sqrt(pi / 2) / 6) per 16x16 block, and the
    5th percentile over blocks (the flattest parts of the image, where texture adds
    least). It runs on the 2x2-binned image (block sums / 2, which keep a white noise's
    std) because JPEG removes most noise at the finest scale: on the camera tuning cases
    the full-resolution estimate stayed near 0.003 at every level, the binned one tracks
    the true level (module docstring of :mod:`camera`)."""
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


def noise_schedule(config: SRConfig, noise_sigma: float) -> tuple[float, float]:
    """``(mu, sigma_end)`` for an image of noise std ``noise_sigma`` (module docstring)."""
    if config.noise_floor is None:
        return config.mu, config.sigma_end
    return (config.mu * (1 + (noise_sigma / config.noise_floor) ** 2),
            max(config.sigma_end, config.noise_end * noise_sigma))


DENOISERS = {
    "wavelet": lambda x, s: denoise_wavelet(x, sigma=s, mode="soft", method="BayesShrink", rescale_sigma=True),
    "tv": lambda x, s: denoise_tv_chambolle(x, weight=s),
}


def check_kernel(k: np.ndarray, image_shape: tuple[int, int], sf: int) -> np.ndarray:
    """Validate a kernel for an LR image of ``image_shape``; returns it as float32 summing to 1."""
    k = np.asarray(k)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise SRInputError(f"kernel must be square with an odd side, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise SRInputError("kernel contains NaN or infinite values")
    if k.sum() <= 0 or k.min() < -1e-6 * abs(k).max():
        raise SRInputError("kernel must be non-negative with a positive sum")
    if k.shape[0] > sf * min(image_shape):
        raise SRInputError(f"kernel {k.shape[0]}x{k.shape[0]} is larger than the HR image "
                           f"({sf} x {image_shape[1]}x{image_shape[0]})")
    return (np.clip(k, 0, None) / k.sum()).astype(np.float32)


def _block_mean(t: torch.Tensor, sf: int) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., H/sf, W/sf)`` mean of its sf x sf blocks (apply to re and im alike)."""
    h, w = t.shape[-2:]
    return t.reshape(*t.shape[:-2], sf, h // sf, sf, w // sf).mean(dim=(-4, -2))


def _tile(z: Complex, sf: int) -> Complex:
    return z[0].repeat(sf, sf), z[1].repeat(sf, sf)


class DataStep:
    """The closed-form data step for one LR image ``y`` (h, w), kernel ``k`` and ``sf``;
    the kernel and observation spectra are computed once and reused every call."""

    def __init__(self, y: torch.Tensor, k: torch.Tensor, sf: int, spectral: Spectral):
        h, w = y.shape
        self.sf, self.spectral = sf, spectral
        self.fk = spectral.fft2(circular_from_centered(k, (sf * h, sf * w)))
        y_up = torch.zeros(sf * h, sf * w, dtype=y.dtype)
        y_up[::sf, ::sf] = y
        self.fk_fy = cmul(conj(self.fk), spectral.fft2(y_up))
        self.fk2_blocks = _block_mean(abs2(self.fk), sf)

    def __call__(self, z: torch.Tensor, alpha: float) -> torch.Tensor:
        """The minimiser ``x`` for prior estimate ``z`` (sf h, sf w) and weight ``alpha``."""
        fz = self.spectral.fft2(z)
        fr = (self.fk_fy[0] + alpha * fz[0], self.fk_fy[1] + alpha * fz[1])
        fbr = tuple(_block_mean(t, self.sf) for t in cmul(self.fk, fr))
        inv = cdiv_real(fbr, self.fk2_blocks + alpha)
        corr = cmul(conj(self.fk), _tile(inv, self.sf))
        return self.spectral.ifft2_real(((fr[0] - corr[0]) / alpha, (fr[1] - corr[1]) / alpha))


def upscale_bicubic(img: np.ndarray, sf: int) -> np.ndarray:
    """``(h, w)`` -> ``(sf h, sf w)`` bicubic (PyTorch's, a = -0.75) on the phase-0 grid:
    HR pixel ``(i, j)`` samples LR position ``(i / sf, j / sf)``; reflect at the border."""
    h, w = img.shape
    ys = torch.arange(sf * h, dtype=torch.float32) / sf
    xs = torch.arange(sf * w, dtype=torch.float32) / sf
    gy = 2 * ys / max(h - 1, 1) - 1
    gx = 2 * xs / max(w - 1, 1) - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    out = F.grid_sample(torch.from_numpy(np.ascontiguousarray(img, np.float32))[None, None], grid,
                        mode="bicubic", padding_mode="reflection", align_corners=True)
    return out[0, 0].numpy()


def super_resolve_luma(lr: np.ndarray, kernel: np.ndarray, sf: int, config: SRConfig = SRConfig(),
                       backend: str = "torch", noise_sigma: float | None = None) -> np.ndarray:
    """``(h, w)`` LR luma in [0, 1] + ``(K, K)`` kernel -> ``(sf h, sf w)`` float32 SR luma.
    ``noise_sigma``: the image's noise std for a noise-aware ``config`` (estimated from
    ``lr`` when ``None``)."""
    lr = np.asarray(lr, np.float32)
    if lr.ndim != 2:
        raise SRInputError(f"expected a 2-D luma image, got shape {lr.shape}")
    if not np.all(np.isfinite(lr)):
        raise SRInputError("image contains NaN or infinite pixels")
    k = check_kernel(kernel, lr.shape, sf)
    pad = math.ceil(k.shape[0] / sf) + 2
    if min(lr.shape) <= pad:
        raise SRInputError(f"image {lr.shape[1]}x{lr.shape[0]} is too small for a {k.shape[0]}px kernel at sf {sf}")
    y = np.pad(lr, pad, mode="reflect")
    step = DataStep(torch.from_numpy(y).double(), torch.from_numpy(k).double(), sf, Spectral(backend))
    x = upscale_bicubic(y, sf).astype(np.float64)
    if config.noise_floor is not None and noise_sigma is None:
        noise_sigma = estimate_noise(lr)
    mu, sigma_end = noise_schedule(config, noise_sigma or 0.0)
    sigmas = np.geomspace(max(config.sigma_start, sigma_end), sigma_end, config.iterations)
    denoise = DENOISERS[config.denoiser]
    for i, sigma in enumerate(sigmas):
        x = step(torch.from_numpy(x), mu / sigma ** 2).numpy()
        if i < len(sigmas) - 1:
            x = denoise(np.clip(x, 0, 1), sigma)
    c = sf * pad
    return np.clip(x[c:-c, c:-c], 0, 1).astype(np.float32)


def super_resolve(img: np.ndarray, kernel: np.ndarray, sf: int, config: SRConfig = SRConfig(),
                  backend: str = "torch", noise_sigma: float | None = None) -> np.ndarray:
    """``(h, w)`` luma or ``(h, w, 3)`` RGB in [0, 1] -> the SR image of the same kind,
    ``sf`` times larger. RGB: luma by :func:`super_resolve_luma`, chroma bicubic."""
    if img.ndim == 2:
        return super_resolve_luma(img, kernel, sf, config, backend, noise_sigma)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise SRInputError(f"expected (h, w) or (h, w, 3), got shape {img.shape}")
    ycc = rgb_to_ycbcr(img)
    y = super_resolve_luma(ycc[..., 0], kernel, sf, config, backend, noise_sigma)
    chroma = [upscale_bicubic(ycc[..., c], sf) for c in (1, 2)]
    out = ycbcr_to_rgb(np.stack([y, *chroma], axis=-1))
    return np.clip(out, 0, 1).astype(np.float32)


SR_TILE = 192
"""LR tile side of :func:`super_resolve_tiled` (px)."""


def super_resolve_tiled(img: np.ndarray, kernel: np.ndarray, sf: int, config: SRConfig = SRConfig(),
                        tile: int = SR_TILE, out_dtype=np.float32, progress: bool = False) -> np.ndarray:
    """:func:`super_resolve` in overlapping LR tiles, so memory is bounded by the tile, not
    the photo. ``img``: ``(h, w)`` or ``(h, w, 3)`` in [0, 1]. Each ``tile x tile`` LR tile is
    solved with a margin of ``2 ceil(K / sf) + 8`` LR px on every side (more than the
    kernel's support, so the tile's own boundary does not reach the kept part) and its
    centre written into the ``(sf h, sf w[, 3])`` output of ``out_dtype`` (float32 in [0, 1],
    or uint8 / uint16 scaled to their range). The noise level is estimated once on the
    whole image's luma and shared by every tile. Images no larger than one tile are solved
    whole."""
    from tqdm import tqdm

    k = check_kernel(kernel, img.shape[:2], sf)
    h, w = img.shape[:2]
    noise = estimate_noise(to_gray(img)) if config.noise_floor is not None else None
    out = np.empty((sf * h, sf * w) + img.shape[2:], out_dtype)
    scale = float(np.iinfo(out_dtype).max) if np.issubdtype(out_dtype, np.integer) else 1.0
    margin = 2 * math.ceil(k.shape[0] / sf) + 8
    starts = [(y, x) for y in range(0, h, tile) for x in range(0, w, tile)]
    for y, x in tqdm(starts, desc="SR tiles", disable=not progress or len(starts) == 1, mininterval=1):
        y0, x0 = max(y - margin, 0), max(x - margin, 0)
        y1, x1 = min(y + tile + margin, h), min(x + tile + margin, w)
        sr = super_resolve(img[y0:y1, x0:x1], k, sf, config, noise_sigma=noise)
        ty, tx = min(tile, h - y), min(tile, w - x)
        part = sr[sf * (y - y0):sf * (y - y0 + ty), sf * (x - x0):sf * (x - x0 + tx)]
        out[sf * y:sf * (y + ty), sf * x:sf * (x + tx)] = np.round(part * scale) if scale != 1.0 else part
    return out
