"""Non-learned baselines."""
from __future__ import annotations

import torch
from torch import nn

from ..kernels import gaussian_kernel, kernel_size
from .registry import register_model

FIXED_GAUSSIAN_SIGMA = {2: 1.6, 3: 1.6, 4: 3.0}
"""KernelNet Table 2's fixed kernel: isotropic Gaussian, sigma in HR pixels."""


class FixedGaussian(nn.Module):
    """Returns the same isotropic Gaussian whatever the image: ``(B,1,H,W)`` -> ``(B,1,K,K)``."""

    def __init__(self, sf: int, sigma: float):
        super().__init__()
        self.sf = sf
        self.kernel_size = kernel_size(sf)
        k = gaussian_kernel(self.kernel_size, sigma ** 2, sigma ** 2)
        self.register_buffer("kernel", torch.from_numpy(k)[None, None])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.kernel.expand(lr.shape[0], 1, -1, -1)


@register_model("fixed-gaussian")
def fixed_gaussian(sf: int, config: str, pretrained: bool) -> nn.Module:
    """KernelNet's fixed-kernel baseline (sigma 1.6 at sf 2 and 3, 3.0 at sf 4)."""
    return FixedGaussian(sf, FIXED_GAUSSIAN_SIGMA[sf])
