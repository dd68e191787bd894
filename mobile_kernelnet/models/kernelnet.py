"""KernelNet (Yamac, Ataman, Nawaz): LR image -> SR kernel in four stages.

1. :class:`GradientEstimator` — 6 conv layers (kernel sizes 9, 1, 3, 5, 1, 3; ReLU;
   Tanh out) map the LR gradients ``(B, 2, H, W)`` (horizontal, vertical forward
   differences) to estimated *sharp* LR gradients, i.e. the gradients of the
   phase-0-decimated HR image.
2. :class:`FFT1` — eq. 11, the closed-form least-squares LR kernel
   ``k_LR = F^-1[(conj(G_h) Y_h + conj(G_v) Y_v) / (|G_h|^2 + |G_v|^2 + lambda H W)]``
   with a learned ``lambda > 0`` (per pixel, so it does not depend on the image size);
   both gradient pairs are zeroed within ``border`` px of the image edge (where the
   circular model is wrong). The result is cropped to ``L x L`` around its centre,
   taps below ``threshold`` x peak are zeroed (this also clips negatives; with
   oracle gradients 0.1 is best of 0, 0.05, 0.1, 0.2, but trained models reached a
   lower validation L1 at 0.05 at every sf, see NOTES.md) and it is normalised to sum 1.
   ``threshold_mode="soft"`` instead subtracts ``threshold x peak`` and clips at 0: the
   same support, but continuous in ``k``, so a tap near the threshold cannot flip under
   fp16 or int8 rounding (the hard step does; NOTES.md, sf 3's GPU fp16 row), and FFT-1
   has no comparison op (16x8 quantisation refuses GREATER). Weights are trained with
   one mode and run with it. ``fft1_solver="normal-equations"`` replaces the per-frequency
   division by the least squares restricted to the ``L x L`` support, solved with constant
   products (:class:`FFT1`); with the soft threshold the whole graph can be quantised fully
   integer (:attr:`KernelNet.full_integer_blocker`, the ``tflite-int16x8`` export).
3. :class:`FFT2` — Algorithm 1, self-convolution by powering the spectrum:
   ``k_HR = F^-1(F(k_LR)^c)`` on a ``(2K+1)^2`` grid, clipped at 0, cropped to
   ``K x K``, normalised. The LR grid is read as the HR grid, so ``c`` copies widen
   the kernel by ``sqrt(c)``: the default ``c = sf^2`` is exact for Gaussians (4, 9,
   16 at sf 2, 3, 4). The paper's ``2^sf`` equals it at sf 2 and 4; at sf 3 it gives
   8 (width x2.83 instead of x3) — set ``self_convolutions=8`` to get the paper's.
4. Refinement of the coarse kernel (scaled to peak 1), then clip and normalise; two
   architectures (``refine_arch``):

   * ``"paper"`` — :class:`Refinement`, the paper's 3 conv layers (3x3, 3x3, 1x1,
     sigmoid after each). Its receptive field is 5x5 px, so it can only reshape the
     coarse kernel locally.
   * ``"wide"`` — :class:`WideRefinement`, ``n`` 5x5 convs, one 3x3 and one 1x1 (ReLU
     between, sigmoid out) with ``n`` chosen so the receptive field is exactly ``K``.
     Self-convolution turns a motion streak or a flat disk into a smooth blob (NOTES.md,
     error budget), and undoing that needs the whole kernel in view. Fitted alone on
     the same frozen sf 2 FFT-2 outputs it reached a clearly lower validation L1 than
     the paper's (NOTES.md, "refinement capacity").
   * ``"wide-residual"`` — :class:`ResidualWideRefinement`, the same net predicting a
     correction to the coarse kernel (starts as the identity). Fitted the same way it
     beat ``"wide"`` on validation, and trained end to end at sf 2 it took the test L1
     from 0.302 to 0.286 (README).

   The ``mobile`` config uses ``"wide"``; the ``paper`` config uses ``"paper"``. A
   shipped file records the architecture it was trained with (the sf 2 weights:
   ``"wide-residual"``), and loading builds that one (:func:`registry.load_pretrained`).

Input size: the network is fully convolutional and FFT-1 solves one least-squares
problem over the whole image, so any ``H, W >= 3 K`` works as is (no crop or tiling)
with either spectral backend; the ``matmul`` backend builds its DFT matrices for
each size it sees, and an exported graph is fixed to the size it was exported at.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import kernel_size
from ..spectral import Complex, Spectral, abs2, cdiv_real, circular_from_centered, cmul_conj, cpow
from . import quantisable
from .registry import load_pretrained, register_model, weights_path

EPS = 1e-12


@dataclass(frozen=True)
class KernelNetConfig:
    """Architecture and fixed-stage settings. ``None`` fields take per-sf defaults
    (:meth:`for_sf`)."""

    grad_channels: int = 128        # width of the gradient estimator (paper: 128)
    refine_channels: int = 64       # width of the refinement CNN (paper: 64)
    klr_size: int | None = None     # L, side of the LR kernel crop (9 / 7 / 7 at sf 2 / 3 / 4)
    threshold: float = 0.05         # FFT-1 taps below this x peak are zeroed (the shipped weights' value)
    threshold_mode: str = "hard"    # a key of THRESHOLD_MODES: "hard" zeroes, "soft" shrinks (FFT1)
    fft1_solver: str = "eq11"       # a key of FFT1_SOLVERS: the paper's division or the normal equations
    self_convolutions: int | None = None  # c, spectrum power in FFT-2 (sf^2)
    lambda_init: float = 1e-4       # FFT-1 regulariser per pixel (learned, log-parametrised)
    ne_lambda_init: float = 0.02    # the same for the normal-equations solver, on its scaled system (FFT1)
    border: int = 6                 # px zeroed at the image edge before FFT-1
    refine_arch: str = "wide"       # a key of REFINEMENTS (see above)
    grad_arch: str = "dense"        # a key of GRADIENT_ARCHS (GradientEstimator)
    refine: bool = True             # False: FFT-1/FFT-2 output only (the ablation)
    spectral_backend: str = "torch"

    # options a fine-tune may change over shipped weights: they add no weights, and the
    # parameters of the module they configure (value: its state-dict prefix) start afresh
    # at this config's init (see ``train.Trainer._load_start``)
    RESTAGING: ClassVar[dict[str, str]] = {"threshold_mode": "fft1.", "fft1_solver": "fft1.",
                                           "grad_arch": "gradient.", "grad_channels": "gradient."}

    def for_sf(self, sf: int) -> "KernelNetConfig":
        """Fill the per-sf defaults."""
        return replace(self,
                       klr_size=self.klr_size or {2: 9, 3: 7, 4: 7}[sf],
                       self_convolutions=self.self_convolutions or sf * sf)

    @property
    def lambda_init_field(self) -> str:
        """The field holding the starting lambda of this config's FFT-1 solver."""
        return "ne_lambda_init" if self.fft1_solver == "normal-equations" else "lambda_init"


CONFIGS = {
    "mobile": KernelNetConfig(grad_channels=24, refine_channels=16),
    "paper": KernelNetConfig(grad_channels=128, refine_channels=64, refine_arch="paper"),
}


def image_gradients(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of ``(B, 1, H, W)``: ``(B, 2, H, W)`` = (d/dx, d/dy), zero in
    the last column / row."""
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return torch.cat([gx, gy], dim=1)


def normalize_sum(k: torch.Tensor) -> torch.Tensor:
    """Clip at 0 and scale each ``(..., K, K)`` map to sum 1."""
    k = torch.relu(k)
    return k * quantisable.reciprocal(quantisable.spatial_sum(k) + EPS)


class GradientEstimator(nn.Module):
    """``(B, 2, H, W)`` blurred LR gradients -> ``(B, 2, H, W)`` sharp LR gradients in [-1, 1].

    ``arch`` (:data:`GRADIENT_ARCHS`): ``"dense"`` — the paper's six full convolutions;
    ``"separable"`` — the same kernel sizes and receptive field (17 px), but each
    ``channels -> channels`` convolution larger than 1x1 is depthwise ``k x k`` followed by
    a pointwise ``1 x 1`` (MobileNet's factorisation): at 24 channels 7.4 k instead of
    25 k multiply-adds per LR pixel; ``"half-res"`` — the separable body at half the LR
    resolution (9x9 entry at stride 2, bilinear upsampling back), its 3x3 exit fed the
    upsampled features and the input gradients (full-resolution detail returns through
    that skip): 2.5 k multiply-adds per LR pixel, receptive field 33 px; ``"factored"`` —
    the separable body with every large or narrow convolution factored into the shapes
    phone and desktop CPU kernels run fast (XNNPACK, NEON / AVX): the 9x9 entry is a
    3x3 convolution (2 -> channels) then three depthwise 3x3s, each depthwise ``k x k``
    (k > 3) a stack of depthwise 3x3s, and the 3x3 exit a depthwise 3x3 then a pointwise
    ``channels -> 2`` (no full-resolution convolution with two output channels, whose
    GEMM tiles are mostly padding). Same receptive field (17 px); 4.3 k multiply-adds per
    LR pixel at 24 channels; ``"half-res-factored"`` — the factored body at half the LR
    resolution with nothing wide at full resolution: a 3x3 entry at stride 2 (2 -> channels)
    and a depthwise 3x3, the factored body, a 4x4 transposed convolution at stride 2 back to
    the two full-resolution maps, plus a 3x3 convolution of the input gradients (2 -> 2,
    the full-resolution detail): 1.1 k multiply-adds per LR pixel, receptive field ~30 px;
    ``"half-res-detail"`` — half-res-factored whose full-resolution skip is a small
    nonlinear branch instead of one linear 3x3: a 3x3 convolution (2 -> 8), ReLU, a
    depthwise 3x3 and a pointwise 8 -> 2 (ReLUs with learned biases can shrink small,
    noise-like gradients and keep edges, which a linear skip cannot): 1.3 k multiply-adds
    per LR pixel.
    """

    KERNELS = (9, 1, 3, 5, 1, 3)

    def __init__(self, channels: int, arch: str = "dense"):
        super().__init__()
        if arch not in GRADIENT_ARCHS:
            raise ValueError(f"grad_arch must be one of {GRADIENT_ARCHS}, not {arch!r}")
        self.half_res = arch == "half-res"
        factored = arch in ("factored", *HALF_RES_SKIP)
        widths = [2] + [channels] * (len(self.KERNELS) - 1) + [2]
        layer = _factored if factored else _plain
        convs = [_separable(cin, k, factored) if arch != "dense" and cin == cout == channels and k > 1
                 else layer(cin, cout, k)
                 for cin, cout, k in zip(widths[:-1], widths[1:], self.KERNELS)]
        if self.half_res:
            entry, exit_k = self.KERNELS[0], self.KERNELS[-1]
            convs[0] = nn.Conv2d(2, channels, entry, stride=2, padding=entry // 2)
            convs[-1] = nn.Conv2d(channels + 2, 2, exit_k, padding=exit_k // 2)
        self.skip = None
        if arch in HALF_RES_SKIP:
            convs[0] = nn.Sequential(nn.Conv2d(2, channels, 3, stride=2, padding=1), _depthwise(channels, 3, True))
            convs[-1] = nn.ConvTranspose2d(channels, 2, 4, stride=2, padding=1)
            self.skip = nn.Conv2d(2, 2, 3, padding=1) if arch == "half-res-factored" else _detail_branch()
        self.convs = nn.ModuleList(convs)

    def forward(self, grads: torch.Tensor) -> torch.Tensor:
        h = grads
        for conv in self.convs[:-1]:
            h = torch.relu(conv(h))
        if self.half_res:
            h = F.interpolate(h, size=grads.shape[-2:], mode="bilinear", align_corners=False)
            h = torch.cat([h, grads], dim=1)
        out = self.convs[-1](h)
        if self.skip is not None:
            out = out[..., :grads.shape[-2], :grads.shape[-1]] + self.skip(grads)
        return torch.tanh(out)


HALF_RES_SKIP = ("half-res-factored", "half-res-detail")
"""Gradient archs with the factored body at half resolution and a full-resolution skip."""
GRADIENT_ARCHS = ("dense", "separable", "half-res", "factored", *HALF_RES_SKIP)
DETAIL_CHANNELS = 8
"""Width of half-res-detail's full-resolution branch."""


def _detail_branch() -> nn.Sequential:
    """half-res-detail's full-resolution skip, ``(B, 2, H, W) -> (B, 2, H, W)``: 3x3 (2 ->
    :data:`DETAIL_CHANNELS`), ReLU, depthwise 3x3, pointwise back to 2."""
    return nn.Sequential(nn.Conv2d(2, DETAIL_CHANNELS, 3, padding=1), nn.ReLU(),
                         _depthwise(DETAIL_CHANNELS, 3, False), nn.Conv2d(DETAIL_CHANNELS, 2, 1))


def _plain(cin: int, cout: int, k: int) -> nn.Conv2d:
    """A full ``k x k`` convolution, ``cin -> cout``, same size out."""
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def _depthwise(channels: int, k: int, factored: bool) -> nn.Module:
    """Depthwise ``k x k`` (odd ``k``); ``factored``: a stack of ``(k - 1) / 2`` depthwise
    3x3s, the same receptive field."""
    if not factored or k <= 3:
        return nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)
    return nn.Sequential(*(nn.Conv2d(channels, channels, 3, padding=1, groups=channels) for _ in range(k // 2)))


def _separable(channels: int, k: int, factored: bool = False) -> nn.Sequential:
    """Depthwise ``k x k`` (:func:`_depthwise`) then pointwise ``1 x 1``, ``channels -> channels``."""
    return nn.Sequential(_depthwise(channels, k, factored), nn.Conv2d(channels, channels, 1))


def _factored(cin: int, cout: int, k: int) -> nn.Module:
    """``cin -> cout`` with a ``k x k`` receptive field in fast shapes: few inputs
    (``cin < cout``): a full 3x3 then depthwise 3x3s up to ``k``; few outputs (``cout <
    cin``): depthwise 3x3s up to ``k`` then pointwise ``1 x 1``; otherwise a full convolution."""
    if k == 1 or cin == cout or (cin < cout and k <= 3):
        return _plain(cin, cout, k)
    if cin < cout:
        return nn.Sequential(_plain(cin, cout, 3), _depthwise(cout, k - 2, True))
    return nn.Sequential(_depthwise(cin, k, True), nn.Conv2d(cin, cout, 1))


THRESHOLD_MODES = ("hard", "soft")
FFT1_SOLVERS = ("eq11", "normal-equations")
NE_ITERATIONS = 30
"""Heavy-ball steps of the ``"normal-equations"`` solver."""
NE_MOMENTUM = 0.8
"""Its momentum (30 steps at 0.8 reach eq. 11's coarse-kernel L1 with the shipped sf 2
gradients, clean and camera-high; 10 or 20 steps do not; NOTES.md)."""


class FFT1(nn.Module):
    """``(y_grads, g_grads)`` each ``(B, 2, H, W)`` -> ``k_LR`` ``(B, 1, L, L)``, sum 1.

    ``solver`` (:data:`FFT1_SOLVERS`): ``"eq11"`` divides the spectra per frequency (the
    paper); ``"normal-equations"`` solves the same least squares restricted to the
    ``L x L`` support, ``(A + lambda I) k = b``, with ``A`` the Toeplitz matrix of the
    gradients' autocorrelation ``R`` (lags within ``L - 1``) and ``b`` their cross-correlation
    with the LR gradients (both one inverse DFT of eq. 11's denominator / numerator). It
    scales ``A`` and ``b`` by ``sum |R|`` (a bound on ``A``'s largest eigenvalue, so one step
    size fits every image) and takes :data:`NE_ITERATIONS` heavy-ball gradient steps; each
    ``A k`` is a linear convolution with ``R``, as constant products (:func:`support_convolution_maps`). No
    per-frequency division: only products, sums and one division by a scalar per image, so
    every activation keeps a range an integer NPU can hold. Before the spectra it scales each
    gradient pair to unit energy (:func:`unit_energy`): the scaled system and so ``k`` do not
    change (``b`` only scales, and ``k`` is normalised), but every tensor after it is bounded
    alike for dim and bright, busy and sparse scenes, which int16's fixed scales need. Its
    ``lambda`` acts on the scaled system, not on eq. 11's per-pixel scale, so it starts from its own value
    (``KernelNetConfig.ne_lambda_init``, chosen on validation, NOTES.md): training barely
    moves a log-parametrised lambda, so the start is what a trained model keeps.

    ``threshold_mode`` (:data:`THRESHOLD_MODES`): ``"hard"`` zeroes taps below ``threshold x
    peak``, ``"soft"`` subtracts it and clips at 0 (module docstring)."""

    def __init__(self, spectral: Spectral, klr_size: int, threshold: float, lambda_init: float, border: int,
                 threshold_mode: str = "hard", solver: str = "eq11"):
        super().__init__()
        if threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold_mode must be one of {THRESHOLD_MODES}, not {threshold_mode!r}")
        if solver not in FFT1_SOLVERS:
            raise ValueError(f"FFT-1 solver must be one of {FFT1_SOLVERS}, not {solver!r}")
        self.spectral = spectral
        self.klr_size, self.threshold, self.border, self.threshold_mode = klr_size, threshold, border, threshold_mode
        self.solver = solver
        self.log_lambda = nn.Parameter(torch.tensor(float(lambda_init)).log())

    def forward(self, y_grads: torch.Tensor, g_grads: torch.Tensor) -> torch.Tensor:
        if self.solver == "normal-equations":
            y_grads, g_grads = unit_energy(y_grads), unit_energy(g_grads)
        h, w = y_grads.shape[-2:]
        b = self.border
        # The border mask also scales by 1 / sqrt(HW): numerator and denominator of eq. 11
        # shrink by HW alike (so lambda H W becomes lambda), and the spectra stay inside
        # fp16's range, in which GPU delegates compute.
        scale = 1.0 / math.sqrt(h * w)
        mask = F.pad(torch.full((h - 2 * b, w - 2 * b), scale, dtype=y_grads.dtype, device=y_grads.device),
                     (b, b, b, b))
        Y = self.spectral.rfft2(y_grads * mask)
        G = self.spectral.rfft2(g_grads * mask)
        num = cmul_conj(G, Y)
        num = (num[0][:, :1] + num[0][:, 1:], num[1][:, :1] + num[1][:, 1:])  # the two gradient directions
        power = abs2(G)
        power = power[:, :1] + power[:, 1:]
        if self.solver == "eq11":
            k = self.spectral.irfft2(cdiv_real(num, power + self.log_lambda.exp()), (h, w), self.klr_size)
        else:
            k = self.solve_normal_equations(num, power, (h, w))
        cut = self.threshold * k.amax(dim=(-2, -1), keepdim=True)
        k = torch.relu(k - cut) if self.threshold_mode == "soft" else k * (k > cut).to(k.dtype)
        return normalize_sum(k)

    def solve_normal_equations(self, cross: Complex, power: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, 1, L, L)`` solution of the support-restricted normal equations from the
        half spectra ``cross`` (eq. 11's numerator) and ``power`` (its denominator without
        lambda), each ``(B, 1, H, W // 2 + 1)`` (class docstring)."""
        size_k = self.klr_size
        corr = self.spectral.irfft2(cross, size, size_k).flatten(1)
        auto = self.spectral.irfft2((power, torch.zeros_like(power)), size, 2 * size_k - 1).flatten(1)
        scale = quantisable.reciprocal(quantisable.abs(auto).mean(dim=1, keepdim=True) * auto.shape[1] + EPS)
        corr, auto = corr * scale, auto * scale
        to_spectrum, from_spectrum, auto_to_spectrum = support_convolution_maps(size_k)
        product = self.spectral.matmul_constant
        gains = product(auto, auto_to_spectrum)  # R's spectrum, real (R is even)
        gains = torch.cat([gains, gains], dim=1)  # for (re, im)
        lam = self.log_lambda.exp()
        previous, k = torch.zeros_like(corr), corr  # the first step from k = 0
        for _ in range(NE_ITERATIONS - 1):
            z = k + NE_MOMENTUM * (k - previous)
            previous, k = k, z + (corr - product(product(z, to_spectrum) * gains, from_spectrum) - lam * z)
        return k.reshape(-1, 1, size_k, size_k)


def unit_energy(grads: torch.Tensor) -> torch.Tensor:
    """``grads`` ``(B, C, H, W)`` scaled to mean square 1 per image: divided by the peak
    ``|grads|`` first (so the result and its squares lie in [-1, 1] and [0, 1] whatever the
    scene's contrast and sparsity: fixed int16 ranges), then by the root mean square (which
    bounds the autocorrelation by its zero lag). Both are per-image scalars, so the normal
    equations' solution is unchanged."""
    g = grads * quantisable.reciprocal(quantisable.abs(grads).amax(dim=(1, 2, 3), keepdim=True) + EPS)
    return g * ((g * g).mean(dim=(1, 2, 3), keepdim=True) + EPS) ** -0.5


@functools.lru_cache(maxsize=None)
def support_convolution_maps(size_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant float64 matrices that make ``A k`` of :class:`FFT1`'s normal equations
    two products and an elementwise gain, on a ``G = 3L - 2`` grid (where a linear
    convolution of an ``L x L`` kernel with the ``(2L - 1)^2`` autocorrelation does not wrap),
    with ``P = G (G // 2 + 1)``: ``to_spectrum`` ``(L^2, 2P)`` — a flattened centred kernel to
    the (re, im) half spectrum of its circular placement; ``from_spectrum`` ``(2P, L^2)`` —
    back, cropped to the centred ``L x L`` support; ``auto_to_spectrum`` ``((2L-1)^2, P)`` — a
    centred autocorrelation to its (real) half spectrum. Cached per size, so their products
    (:meth:`~mobile_kernelnet.spectral.Spectral.matmul_constant`) are cached too."""
    grid, span = 3 * size_k - 2, 2 * size_k - 1

    def place(centred: np.ndarray) -> np.ndarray:  # (N, s, s) centred -> (N, G, G), centre at (0, 0)
        r = centred.shape[-1] // 2
        padded = np.zeros(centred.shape[:-2] + (grid, grid))
        padded[..., :centred.shape[-2], :centred.shape[-1]] = centred
        return np.roll(padded, (-r, -r), axis=(-2, -1))

    basis = np.eye(size_k * size_k).reshape(-1, size_k, size_k)
    v = np.fft.rfft2(place(basis))
    to_spectrum = np.concatenate([v.real.reshape(len(basis), -1), v.imag.reshape(len(basis), -1)], axis=1)
    half = v.shape[-2:]
    n = half[0] * half[1]
    unit = np.eye(2 * n).reshape(2 * n, 2, *half)
    back = np.roll(np.fft.irfft2(unit[:, 0] + 1j * unit[:, 1], s=(grid, grid)), (size_k // 2, size_k // 2),
                   axis=(-2, -1))
    from_spectrum = back[:, :size_k, :size_k].reshape(2 * n, -1)
    autos = np.eye(span * span).reshape(-1, span, span)
    auto_to_spectrum = np.fft.rfft2(place(autos)).real.reshape(len(autos), -1)
    return to_spectrum, from_spectrum, auto_to_spectrum


class FFT2(nn.Module):
    """Algorithm 1: ``k_LR`` ``(B, 1, L, L)`` -> ``k_HR`` ``(B, 1, K, K)``, ``c`` self-convolutions."""

    def __init__(self, spectral: Spectral, out_size: int, copies: int):
        super().__init__()
        self.spectral, self.out_size, self.copies = spectral, out_size, copies
        self.grid = 2 * out_size + 1

    def forward(self, k_lr: torch.Tensor) -> torch.Tensor:
        v = self.spectral.rfft2(circular_from_centered(k_lr, self.grid))
        return normalize_sum(self.spectral.irfft2(cpow(v, self.copies), (self.grid, self.grid), self.out_size))


def scale_to_peak_one(k: torch.Tensor) -> torch.Tensor:
    """``(..., K, K)`` kernels scaled so each map's largest tap is 1 (the refinements' input)."""
    return k * quantisable.reciprocal(k.amax(dim=(-2, -1), keepdim=True) + EPS)


class Refinement(nn.Module):
    """``(B, 1, K, K)`` coarse kernel -> refined kernel, sum 1 (3x3, 3x3, 1x1 convs, sigmoids)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, 1, 1)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.conv1(scale_to_peak_one(k)))
        h = torch.sigmoid(self.conv2(h))
        return normalize_sum(torch.sigmoid(self.conv3(h)))


class WideRefinement(nn.Module):
    """``(B, 1, K, K)`` coarse kernel -> refined kernel, sum 1: ``(K - 3) / 4`` 5x5 convs,
    a 3x3 and a 1x1 (ReLU between, sigmoid out), receptive field exactly ``K``."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        if (kernel_size - 3) % 4:
            raise ValueError(f"no stack of 5x5 convs + a 3x3 spans exactly K = {kernel_size}")
        sizes = [5] * ((kernel_size - 3) // 4) + [3, 1]
        widths = [1] + [channels] * (len(sizes) - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, k, padding=k // 2)
                                   for cin, cout, k in zip(widths[:-1], widths[1:], sizes))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv's output for the peak-1 coarse kernel ``x`` (before the output rule)."""
        h = x
        for conv in self.convs[:-1]:
            h = torch.relu(conv(h))
        return self.convs[-1](h)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        return normalize_sum(torch.sigmoid(self.head(scale_to_peak_one(k))))


class ResidualWideRefinement(WideRefinement):
    """:class:`WideRefinement` that predicts a correction: ``relu(x + delta)``, normalised,
    where ``x`` is the coarse kernel scaled to peak 1 and ``delta`` the last conv's output
    (zero-initialised, so an untrained net returns the coarse kernel unchanged)."""

    def __init__(self, channels: int, kernel_size: int):
        super().__init__(channels, kernel_size)
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        x = scale_to_peak_one(k)
        return normalize_sum(x + self.head(x))


REFINEMENTS = {"paper": lambda channels, kernel_size: Refinement(channels), "wide": WideRefinement,
               "wide-residual": ResidualWideRefinement}
"""``refine_arch`` -> builder ``(channels, K) -> module``."""


class KernelNet(nn.Module):
    """``(B, 1, H, W)`` LR luma in [0, 1] -> ``(B, 1, K, K)`` SR kernel (sum 1)."""

    def __init__(self, sf: int, config: KernelNetConfig):
        super().__init__()
        cfg = config.for_sf(sf)
        self.sf, self.config = sf, cfg
        self.kernel_size = kernel_size(sf)
        self.spectral = Spectral(cfg.spectral_backend)
        self.gradient = GradientEstimator(cfg.grad_channels, cfg.grad_arch)
        self.fft1 = FFT1(self.spectral, cfg.klr_size, cfg.threshold, getattr(cfg, cfg.lambda_init_field), cfg.border, cfg.threshold_mode,
                         cfg.fft1_solver)
        self.fft2 = FFT2(self.spectral, self.kernel_size, cfg.self_convolutions)
        if cfg.refine_arch not in REFINEMENTS:
            raise ValueError(f"refine_arch must be one of {sorted(REFINEMENTS)}, not {cfg.refine_arch!r}")
        self.refine = REFINEMENTS[cfg.refine_arch](cfg.refine_channels, self.kernel_size)
        self.use_refinement = cfg.refine
        self.refine.requires_grad_(cfg.refine)  # kept (the weights file has it) but not trained when skipped

    stage_names = ("grads", "k_lr", "k_coarse", "kernel")
    int8_float_reason = ("the FFT products, the eq. 11 division, the spectrum powers and the normalisations span a "
                         "dynamic range int8 cannot hold; a fully integer file divides by a zero in the quantised DIV")

    @property
    def full_integer_blocker(self) -> str | None:
        """Why this model's graph cannot be quantised fully integer (``None``: it can)."""
        reasons = []
        if self.fft1.solver == "eq11":
            reasons.append("FFT-1's eq. 11 divides spectra per frequency, a range no integer type holds (train with "
                           "--fft1-solver normal-equations)")
        if self.fft1.threshold_mode == "hard":
            reasons.append("FFT-1's hard threshold is a comparison the 16x8 quantiser refuses (train with "
                           "--fft1-threshold-mode soft)")
        return "; ".join(reasons) or None

    def set_spectral_backend(self, backend: str) -> "KernelNet":
        """Switch both FFT stages to ``backend`` (``"torch"`` or ``"matmul"``)."""
        self.spectral = Spectral(backend)
        self.fft1.spectral = self.fft2.spectral = self.spectral
        return self

    def stages(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output: ``grads`` (B,2,H,W), ``k_lr`` (B,1,L,L), ``k_coarse``
        (B,1,K,K), ``kernel`` (B,1,K,K)."""
        y_grads = image_gradients(lr)
        grads = self.gradient(y_grads)
        k_lr = self.fft1(y_grads, grads)
        k_coarse = self.fft2(k_lr)
        kernel = self.refine(k_coarse) if self.use_refinement else k_coarse
        return {"grads": grads, "k_lr": k_lr, "k_coarse": k_coarse, "kernel": kernel}

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.stages(lr)["kernel"]


def build_kernelnet(sf: int, config: str, pretrained: bool, refine: bool = True) -> KernelNet:
    """KernelNet ``config`` at ``sf``; shipped weights when ``pretrained``."""
    def make(cfg: KernelNetConfig) -> KernelNet:
        return KernelNet(sf, replace(cfg, refine=refine))

    if pretrained:
        return load_pretrained(make, CONFIGS[config], weights_path("kernelnet", config, sf))
    return make(CONFIGS[config])


@register_model("kernelnet", configs=tuple(CONFIGS))
def kernelnet(sf: int, config: str, pretrained: bool) -> nn.Module:
    """KernelNet, all four stages."""
    return build_kernelnet(sf, config, pretrained)


@register_model("kernelnet-norefine", configs=tuple(CONFIGS), weights_of="kernelnet")
def kernelnet_norefine(sf: int, config: str, pretrained: bool) -> nn.Module:
    """Ablation: the shipped KernelNet weights with the refinement stage skipped."""
    return build_kernelnet(sf, config, pretrained, refine=False)
