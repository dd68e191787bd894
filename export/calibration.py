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

Dimming does not cover *sparse* scenes (a few edges or points on a flat ground: night sky,
text on paper, a wire against the sky): their gradient energy sits on few pixels and
their spectra are concentrated, so normalised spectra peak far higher than any busy scene's.
A share :data:`SPARSE_SHARE` of the images is therefore made from :func:`sparse_scene`
(procedural, degraded by the same model).

A full-integer file's FFT-1 scales the gradients to peak 1 and then to unit energy, so its
spectra are bounded: by Parseval a unit-energy image's power spectrum peaks highest when all
its energy sits at one frequency, and its mean square (at peak 1) is highest when every pixel
is near the peak. Busy photos (bricks, gravel, fabric) come closer to both bounds than any
training source, so the full-integer set (``gratings=True``) also holds a share
:data:`GRATING_SHARE` of :func:`grating_scene` images, which reach them: int16's range then
holds every scene, for a few of its 15 bits of resolution.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from skimage.draw import disk, line_aa

from mobile_kernelnet.data import HRPatchSampler, packaged_images, training_batch
from mobile_kernelnet.degrade import degrade_torch, quantize_8bit
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


SPARSE_SHARE = 0.25
"""Share of the ``n`` made images that are sparse scenes (:func:`sparse_scene`)."""


def sparse_scene(size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size)`` float32 HR scene in [0, 1]: a flat ground (level U(0.05, 0.95))
    with 1-6 anti-aliased strokes (2-14 px wide, length up to the side) and 0-12 dots
    (radius 1-6 px), each ``+-U(0.05, 0.6)`` from the ground."""
    ground = rng.uniform(0.05, 0.95)
    img = np.full((size, size), ground, np.float32)
    contrast = lambda: rng.choice((-1.0, 1.0)) * rng.uniform(0.05, 0.6)  # noqa: E731
    for _ in range(rng.integers(1, 7)):
        value, width = contrast(), int(rng.integers(2, 15))
        (y0, x0), angle = rng.uniform(0, size, 2), rng.uniform(0, np.pi)
        length = rng.uniform(0.1, 1.0) * size
        dy, dx = np.sin(angle), np.cos(angle)
        for offset in np.arange(width) - (width - 1) / 2:  # parallel 1-px lines make the width
            oy, ox = y0 - dx * offset, x0 + dy * offset
            rr, cc, val = line_aa(int(oy), int(ox), int(oy + dy * length), int(ox + dx * length))
            keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            img[rr[keep], cc[keep]] = ground + value * np.maximum(val[keep], 0.5)
    for _ in range(rng.integers(0, 13)):
        rr, cc = disk(tuple(rng.uniform(0, size, 2)), rng.uniform(1, 6), shape=img.shape)
        img[rr, cc] = ground + contrast()
    return np.clip(img, 0, 1)


GRATING_SHARE = 0.125
"""Share of the ``n`` made images of a full-integer calibration set that are gratings (:func:`grating_scene`)."""


def grating_scene(size: int, sf: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size)`` float32 HR grating in [0, 1]: a sinusoid or a square wave (even
    draws) of period ``sf x U(3, 24)`` px at a random angle and phase, mean U(0.3, 0.7),
    amplitude U(0.1, 0.3); half of them multiplied by a second one (a checker: four peaks)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)

    def wave() -> np.ndarray:
        angle, period = rng.uniform(0, np.pi), sf * rng.uniform(3, 24)
        phase = 2 * np.pi * ((xx * np.cos(angle) + yy * np.sin(angle)) / period) + rng.uniform(0, 2 * np.pi)
        return np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))

    pattern = wave() * (wave() if rng.random() < 0.5 else 1.0)
    return (rng.uniform(0.3, 0.7) + rng.uniform(0.1, 0.3) * pattern).astype(np.float32)


def lab_degraded(scene: Callable[[int, np.random.Generator], np.ndarray], sf: int, size: int, n: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``n`` LR images ``(n, 1, size, size)`` float32 in [0, 1] of ``scene(sf x size, rng)`` HR
    scenes, blurred by kernels of every family, decimated and 8-bit quantised (the lab
    degradation without noise)."""
    if n == 0:
        return np.zeros((0, 1, size, size), np.float32)
    hr = torch.from_numpy(np.stack([scene(sf * size, rng) for _ in range(n)]))[:, None]
    k = torch.from_numpy(KernelPool.generate(sf, max(n, 8), rng).sample(rng, n))
    return quantize_8bit(degrade_torch(hr, k, sf)).numpy()


def scale_contrast(lr: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``lr`` ``(N, 1, H, W)`` with image ``i`` scaled about its mean by ``factors[i]`` (<= 1
    stays in [0, 1])."""
    mean = lr.mean(axis=(1, 2, 3), keepdims=True)
    return (mean + np.asarray(factors, np.float32).reshape(-1, 1, 1, 1) * (lr - mean)).astype(np.float32)


def calibration_images(sf: int, size: int, n: int, seed: int = 1234,
                       gratings: bool = False) -> tuple[np.ndarray, dict]:
    """``2 n`` LR images ``(2n, 1, size, size)`` float32 in [0, 1] -- ``n`` made (a share
    :data:`SPARSE_SHARE` of sparse scenes, with ``gratings`` (full-integer files) a share
    :data:`GRATING_SHARE` of gratings, the rest as training makes them), then each dimmed
    over :data:`CONTRAST_RANGE` -- and a description of how they were made (for the manifest)."""
    rng = np.random.default_rng(seed)
    n_sparse = int(round(SPARSE_SHARE * n))
    n_gratings = int(round(GRATING_SHARE * n)) if gratings else 0
    lr, images = training_source_images(sf, size, n - n_sparse - n_gratings, rng)
    lr = np.concatenate([lr, lab_degraded(sparse_scene, sf, size, n_sparse, rng),
                         lab_degraded(lambda side, r: grating_scene(side, sf, r), sf, size, n_gratings, rng)])
    lr = np.concatenate([lr, scale_contrast(lr, rng.permutation(np.geomspace(*CONTRAST_RANGE, n)))])
    source = {"n": n, "seed": seed, "hr_patch": sf * size, "kernel_families": "all (KernelPool.generate)",
              "contrast": f"each image also dimmed x {CONTRAST_RANGE[0]}..{CONTRAST_RANGE[1]} about its mean "
                          "(geometric grid)",
              "images": f"{n - n_sparse - n_gratings} of {images}, {n_sparse} sparse scenes (calibration.sparse_scene)"
                        + (f", {n_gratings} gratings (calibration.grating_scene)" if n_gratings else "")}
    return lr, source
