"""Calibration images for int8 quantisation, drawn from the *training* sources.

LR images are made exactly as training makes them (:func:`data.training_batch`: an
HR patch of ``sf x size`` px, a kernel of every family, the degradation model,
8-bit quantisation), never from the scikit-image test set. When ``sf x size`` is
larger than every packaged natural image the patches are dead leaves only
(:class:`data.HRPatchSampler` would otherwise refuse).

The training sources are high-contrast (dead leaves, daylit photos); photos of dim or
hazy scenes have gradients several times weaker. A full-integer file normalises FFT-1's
system by ``1 / sqrt(gradient energy)``, whose int16 range is fixed by calibration, so
each image is also used dimmed (:data:`CONTRAST_RANGE`) to cover such scenes, beside its
full-contrast self (which keeps the ranges a bright scene needs).
"""
from __future__ import annotations

import numpy as np

from mobile_kernelnet.data import HRPatchSampler, packaged_images, training_batch
from mobile_kernelnet.kernels import KernelPool


CONTRAST_RANGE = (0.1, 1.0)
"""The dimmed copy of calibration image ``i`` is scaled about its mean by a factor on a
geometric grid over this range (in a seeded order), so every ``n >= 2`` spans it."""


def training_source_images(sf: int, size: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``n`` LR images ``(n, 1, size, size)`` float32 in [0, 1] made as training makes them,
    and what their HR patches are."""
    hr_side = sf * size
    natural_fits = any(min(img.shape) >= hr_side for img in packaged_images().values())
    sampler = HRPatchSampler(hr_side, rng, dead_leaves_prob=0.5 if natural_fits else 1.0, bank_size=8)
    pool = KernelPool.generate(sf, max(n, 8), rng)
    lr, _, _ = training_batch(sampler, pool, n)
    return lr.numpy(), ("dead leaves + packaged natural images" if natural_fits else "dead leaves only "
                        f"(HR patch {hr_side} px is larger than every packaged natural image)")


def scale_contrast(lr: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``lr`` ``(N, 1, H, W)`` with image ``i`` scaled about its mean by ``factors[i]`` (<= 1
    stays in [0, 1])."""
    mean = lr.mean(axis=(1, 2, 3), keepdims=True)
    return (mean + np.asarray(factors, np.float32).reshape(-1, 1, 1, 1) * (lr - mean)).astype(np.float32)


def calibration_images(sf: int, size: int, n: int, seed: int = 1234) -> tuple[np.ndarray, dict]:
    """``2 n`` LR images ``(2n, 1, size, size)`` float32 in [0, 1] -- ``n`` made as training
    makes them, then each dimmed over :data:`CONTRAST_RANGE` -- and a description of how they
    were made (for the manifest)."""
    rng = np.random.default_rng(seed)
    lr, images = training_source_images(sf, size, n, rng)
    lr = np.concatenate([lr, scale_contrast(lr, rng.permutation(np.geomspace(*CONTRAST_RANGE, n)))])
    source = {"n": n, "seed": seed, "hr_patch": sf * size, "kernel_families": "all (KernelPool.generate)",
              "contrast": f"each image also dimmed x {CONTRAST_RANGE[0]}..{CONTRAST_RANGE[1]} about its mean "
                          "(geometric grid)",
              "images": images}
    return lr, source
