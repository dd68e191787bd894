"""S2K (spectrum to kernel): the LR image's amplitude spectrum -> U-Net -> spatial kernel.

* **Spectrum** (:class:`AmplitudeSpectrum`): the LR luma is cut into ``S x S`` crops on
  a grid with stride ``S / 2`` (Welch's method: every crop that fits, centred as a
  block, at most ``max_crops`` per axis), each crop is mean-removed and Hann-windowed,
  and the amplitude spectra ``|F(crop)|`` are averaged. An image smaller than ``S``
  on a side is reflect-padded (repeatedly, if need be) to ``S`` first. The result is centred (fftshift), log-
  compressed ``log(1 + a)`` and standardised per image. Computed through
  :mod:`spectral` (``fft2``), so it exports with either backend.
* **Generator** (:class:`UNetGenerator`): a stride-2 input conv, ``levels`` stride-2
  down convs and mirrored transposed-conv up layers with skip connections (the paper:
  256 x 256 input, seven levels), and a transposed-conv output layer giving the
  *interpolated kernel*: a ``S x S`` map that is the kernel magnified. It is
  area-resampled to ``K x K``, passed through a sharp softplus (beta 10: ~0 for
  negative inputs; its gradient underflows to 0 below about -10, which training
  guards against, see :mod:`train`) and normalised to sum 1.
* **Discriminator** (:class:`PatchDiscriminator`): fully convolutional, on the
  spectrum concatenated with the kernel upsampled to ``S x S``; LSGAN targets.

Losses (paper eq. 11): ``λ1 L1 + λ2 (D(s; G(s)) - 1)² + λ3 TV``, weights 100, 1, 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import kernel_size
from ..spectral import Spectral, centered_crop_from_circular, matmul_last, matmul_rows
from . import quantisable
from .kernelnet import normalize_sum
from .registry import load_pretrained, register_model, weights_path


@dataclass(frozen=True)
class S2KConfig:
    """Spectrum size ``S``, U-Net depth and widths."""

    spectrum_size: int = 256
    levels: int = 7                 # stride-2 down layers after the input layer
    base_channels: int = 64
    max_channels: int = 512
    disc_channels: int = 64
    max_crops: int = 7              # Welch crops per axis at most
    level_input: bool = False       # the log spectrum's mean and std as two more U-Net input planes
    spectral_backend: str = "torch"

    # options a fine-tune may switch on over shipped weights without them: they only add
    # input channels, which start at zero weight (see ``train.Trainer._load_start``)
    WIDENING: ClassVar[tuple[str, ...]] = ("level_input",)


CONFIGS = {  # the first is the default
    "mobile": S2KConfig(spectrum_size=64, levels=4, base_channels=16, max_channels=64, disc_channels=16),
    "paper": S2KConfig(spectrum_size=256, levels=7, base_channels=64, max_channels=512),
}


class AmplitudeSpectrum(nn.Module):
    """``(B, 1, H, W)`` LR luma -> ``(B, 1, S, S)`` standardised centred log-amplitude spectrum."""

    def __init__(self, size: int, max_crops: int, spectral: Spectral):
        super().__init__()
        self.size, self.max_crops, self.spectral = size, max_crops, spectral
        self.register_buffer("window", torch.outer(torch.hann_window(size, periodic=False),
                                                   torch.hann_window(size, periodic=False)), persistent=False)

    def crops(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, N, S, S)`` Welch crops (stride S/2, centred grid)."""
        s = self.size
        while x.shape[-2] < s or x.shape[-1] < s:  # reflect can add at most size - 1 per pass
            ph, pw = (min(max(s - n, 0), n - 1) for n in x.shape[-2:])
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
        step = s // 2
        starts = []
        for n in x.shape[-2:]:
            count = min((n - s) // step + 1, self.max_crops)
            off = (n - (s + (count - 1) * step)) // 2
            starts.append([off + i * step for i in range(count)])
        return torch.cat([x[:, :, y:y + s, c:c + s] for y in starts[0] for c in starts[1]], dim=1)

    def log_amplitude(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, 1, S, S)`` centred ``log(1 + mean amplitude)``, not standardised."""
        c = self.crops(x)
        c = (c - c.mean(dim=(-2, -1), keepdim=True)) * self.window
        re, im = self.spectral.fft2(c)
        amp = torch.sqrt(re * re + im * im + 1e-12).mean(dim=1, keepdim=True)  # not v * v^-1/2: fp16 GPUs flush 1e-12
        return torch.log1p(centered_crop_from_circular(amp, self.size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The standardised spectrum ``(B, 1, S, S)`` and the log spectrum's mean and
        (unbiased) standard deviation ``(B, 1, 1, 1)`` it was standardised with."""
        spec = self.log_amplitude(x)
        mean = spec.mean(dim=(-2, -1), keepdim=True)
        centred = spec - mean
        n = spec.shape[-2] * spec.shape[-1]
        std = quantisable.sqrt((centred * centred).mean(dim=(-2, -1), keepdim=True) * (n / (n - 1)))  # unbiased
        return centred * quantisable.reciprocal(std + 1e-6), mean, std


def area_matrix(n: int, k: int) -> torch.Tensor:
    """``(k, n)`` float32 matrix ``A`` with ``A @ x`` = ``adaptive_avg_pool1d(x, k)`` (window
    ``i`` averages ``[floor(i n / k), ceil((i + 1) n / k))``, as PyTorch's)."""
    a = torch.zeros(k, n, dtype=torch.float64)
    for i in range(k):
        lo, hi = (i * n) // k, -((-(i + 1) * n) // k)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a.float()


class AreaResample(nn.Module):
    """``(B, C, n, n)`` -> ``(B, C, k, k)`` by area averaging (``adaptive_avg_pool2d``), as two
    constant 2-D MatMuls: exported graphs get no gathers (GPU delegates refuse those)."""

    def __init__(self, n: int, k: int):
        super().__init__()
        self.register_buffer("matrix", area_matrix(n, k), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return matmul_last(matmul_rows(self.matrix, x), self.matrix.T)


def sharp_softplus(x: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    """``log(1 + exp(beta x)) / beta`` written as ``relu(x) + log1p(exp(-beta |x|)) / beta``:
    the same function (to 1e-9 of ``F.softplus``), but no intermediate overflows. The
    exported graph of ``F.softplus`` computes ``exp(beta x)`` before selecting, which is
    ``inf`` for large ``x`` and made TensorFlow's int8 calibration abort ("scale out of
    expressed type range")."""
    return torch.relu(x) + torch.log1p(torch.exp(-beta * x.abs())) * (1.0 / beta)


def _width(cfg: S2KConfig, level: int) -> int:
    return min(cfg.base_channels * 2 ** level, cfg.max_channels)


class UNetGenerator(nn.Module):
    """``(B, 1, S, S)`` spectrum (and, with ``cfg.level_input``, two ``(B, 1, 1, 1)`` levels) ->
    ``(B, 1, S, S)`` interpolated-kernel map (unnormalised). The levels enter as constant input
    planes 2 and 3 of the first convolution (:meth:`first`)."""

    def __init__(self, cfg: S2KConfig):
        super().__init__()
        self.inp = nn.Conv2d(3 if cfg.level_input else 1, _width(cfg, 0), 4, stride=2, padding=1)
        if cfg.level_input:
            self.register_buffer("ones", torch.ones(1, 1, cfg.spectrum_size, cfg.spectrum_size), persistent=False)
        self.down = nn.ModuleList(nn.Conv2d(_width(cfg, i), _width(cfg, i + 1), 4, stride=2, padding=1)
                                  for i in range(cfg.levels))
        self.up = nn.ModuleList(nn.ConvTranspose2d(_width(cfg, i + 1) * (1 if i == cfg.levels - 1 else 2),
                                                   _width(cfg, i), 4, stride=2, padding=1)
                                for i in range(cfg.levels))
        # no norm on the innermost level: it can be 1 x 1 (paper config), as in pix2pix
        self.norms = nn.ModuleList(quantisable.InstanceNorm2d(_width(cfg, i + 1)) if i < cfg.levels - 1
                                   else nn.Identity() for i in range(cfg.levels))
        self.out = nn.ConvTranspose2d(_width(cfg, 0) * 2, 1, 4, stride=2, padding=1)

    def first(self, s: torch.Tensor, levels: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """The first convolution of the spectrum ``s`` and the constant planes of ``levels``,
        ``(B, W0, S/2, S/2)``. A constant plane's convolution is its value times the
        convolution of ones, a constant of the graph: the same sum as convolving the
        concatenated planes, with no concat or broadcast of planes in the exported graph."""
        weight = self.inp.weight
        h = F.conv2d(s, weight[:, :1], self.inp.bias, stride=2, padding=1)
        for j, level in enumerate(levels, start=1):
            h = h + level * F.conv2d(self.ones, weight[:, j:j + 1], stride=2, padding=1)
        return h

    def forward(self, s: torch.Tensor, levels: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        h = F.leaky_relu(self.first(s, levels), 0.2)
        skips = [h]
        for down, norm in zip(self.down, self.norms):
            h = F.leaky_relu(norm(down(h)), 0.2)
            skips.append(h)
        h = skips.pop()
        for up in reversed(self.up):
            h = torch.cat([F.relu(up(h)), skips.pop()], dim=1)
        return self.out(h)


class PatchDiscriminator(nn.Module):
    """``(B, 2, S, S)`` (spectrum; kernel map) -> ``(B, 1, S/8, S/8)`` patch scores (LSGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(2, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.InstanceNorm2d(2 * c, affine=True), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.InstanceNorm2d(4 * c, affine=True), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * c, 1, 3, 1, 1))

    def forward(self, spectrum: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        k = F.interpolate(kernel / (kernel.amax(dim=(-2, -1), keepdim=True) + 1e-12),
                          size=spectrum.shape[-2:], mode="bilinear", align_corners=False)
        return self.net(torch.cat([spectrum, k], dim=1))


class S2K(nn.Module):
    """``(B, 1, H, W)`` LR luma in [0, 1] -> ``(B, 1, K, K)`` kernel (sum 1)."""

    def __init__(self, sf: int, cfg: S2KConfig):
        super().__init__()
        self.sf, self.config = sf, cfg
        self.kernel_size = kernel_size(sf)
        self.spectrum = AmplitudeSpectrum(cfg.spectrum_size, cfg.max_crops, Spectral(cfg.spectral_backend))
        self.generator = UNetGenerator(cfg)
        self.resample = AreaResample(cfg.spectrum_size, self.kernel_size)

    stage_names = ("spectrum", "kernel_map", "kernel")
    int8_float_reason = ("the amplitude spectrum (DFT products, square root, log, per-image standardisation) and the "
                         "kernel head (sharp softplus, sum-1 normalisation) span a dynamic range int8 cannot hold")
    full_integer_blocker = ("its amplitude spectrum takes square roots of powers near 0 (an RSQRT range int16 "
                            "cannot hold: the 16x8 file's spectrum is wrong) and its log-spectrum and sharp softplus "
                            "need LOG / EXP, which Qualcomm's compiler refuses in int16")

    def set_spectral_backend(self, backend: str) -> "S2K":
        """Switch the spectrum stage to ``backend`` (``"torch"`` or ``"matmul"``)."""
        self.spectrum.spectral = Spectral(backend)
        return self

    def stages(self, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """``spectrum`` (B,1,S,S), ``kernel_map`` (B,1,S,S), ``kernel`` (B,1,K,K)."""
        spec, mean, std = self.spectrum(lr)
        kmap = self.generator(spec, (mean, std) if self.config.level_input else ())
        k = self.resample(kmap)
        return {"spectrum": spec, "kernel_map": kmap, "kernel": normalize_sum(sharp_softplus(k))}

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.stages(lr)["kernel"]


def total_variation(k: torch.Tensor) -> torch.Tensor:
    """Mean anisotropic TV of ``(B, 1, K, K)`` kernels."""
    return ((k[..., 1:, :] - k[..., :-1, :]).abs().sum(dim=(-2, -1)) +
            (k[..., :, 1:] - k[..., :, :-1]).abs().sum(dim=(-2, -1))).mean()


def _build(name: str, sf: int, config: str, pretrained: bool) -> S2K:
    if pretrained:
        return load_pretrained(lambda cfg: S2K(sf, cfg), CONFIGS[config], weights_path(name, config, sf))
    return S2K(sf, CONFIGS[config])


@register_model("s2k", configs=tuple(CONFIGS))
def s2k(sf: int, config: str, pretrained: bool) -> nn.Module:
    """S2K ``config`` at ``sf``; shipped weights when ``pretrained``."""
    return _build("s2k", sf, config, pretrained)


@register_model("s2k-noadv", configs=tuple(CONFIGS))
def s2k_noadv(sf: int, config: str, pretrained: bool) -> nn.Module:
    """Ablation: S2K trained without the discriminator (``--adv-weight 0``)."""
    return _build("s2k-noadv", sf, config, pretrained)
