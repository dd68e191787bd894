"""Calibration images for int8 quantisation, drawn from the *training* sources.

LR images are made exactly as training makes them (:func:`data.training_batch`: an
HR patch of ``sf x size`` px, a kernel of every family, the degradation model,
8-bit quantisation), never from the scikit-image test set. When ``sf x size`` is
larger than every packaged natural image the patches are dead leaves only
(:class:`data.HRPatchSampler` would otherwise refuse).
"""
from __future__ import annotations

import numpy as np

from mobile_kernelnet.data import HRPatchSampler, packaged_images, training_batch
from mobile_kernelnet.kernels import KernelPool


def calibration_images(sf: int, size: int, n: int, seed: int = 1234) -> tuple[np.ndarray, dict]:
    """``n`` LR images ``(n, 1, size, size)`` float32 in [0, 1] and a description of
    how they were made (for the manifest)."""
    rng = np.random.default_rng(seed)
    hr_side = sf * size
    natural_fits = any(min(img.shape) >= hr_side for img in packaged_images().values())
    sampler = HRPatchSampler(hr_side, rng, dead_leaves_prob=0.5 if natural_fits else 1.0, bank_size=8)
    pool = KernelPool.generate(sf, max(n, 8), rng)
    lr, _, _ = training_batch(sampler, pool, n)
    source = {"n": n, "seed": seed, "hr_patch": hr_side, "kernel_families": "all (KernelPool.generate)",
              "images": "dead leaves + packaged natural images" if natural_fits else "dead leaves only "
                        f"(HR patch {hr_side} px is larger than every packaged natural image)"}
    return lr.numpy(), source
