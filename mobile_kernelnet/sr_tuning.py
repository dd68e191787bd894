"""Choose the SR solver's regularisation on *training* images (`mkn tune-sr`).

The tuning set mirrors the test set (:mod:`testset`) on the natural images the
training sources use (:func:`data.packaged_images`, never the scikit-image gallery):
the centred HR crop (at most 504 px, a multiple of 12), one random kernel per family
and image, the noise-free degradation, 8-bit quantisation. Each ``(mu, sigma_end)``
pair of the grid super-resolves every LR image with the true kernel and with each
estimator's kernel; PSNR as in ``mkn eval --sr``.

Rule (written before the first `make tune-sr` ran; an ad-hoc sweep with the true and
KernelNet's kernels had shown the trade-off): the chosen pair has the highest mean PSNR
over all kernel sources (true and estimated, equal weight) and all scale factors.
The true kernel alone would pick the weakest regularisation, which amplifies an
estimated kernel's errors; the estimators alone would ignore the upper bound.

Output schema ``mkn-tune-sr/1``::

    {"schema": "mkn-tune-sr/1", "rule": "...", "sources": [...], "sf": [...],
     "grid": [{"mu", "sigma_end", "psnr": {"<sf>": {"bicubic", "<source>": dB, ...}}, "score"}],
     "chosen": {"mu", "sigma_end"}}
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm import tqdm

from .data import packaged_images
from .degrade import degrade_np, quantize_8bit
from .estimation import estimate
from .kernels import FAMILIES, random_kernel
from .metrics import psnr
from .models.registry import parse_model_spec
from .sr import SRConfig, super_resolve_luma, upscale_bicubic
from .testset import crop_hr

SCHEMA = "mkn-tune-sr/1"
RULE = "max mean PSNR over kernel sources (true + each estimator) and scale factors"
MUS = (3e-7, 1e-6, 3e-6)
SIGMA_ENDS = (0.005, 0.01, 0.02)


def tuning_cases(sf: int, seed: int = 0) -> list[dict]:
    """One case per packaged image and kernel family: ``hr`` (H, W), ``lr`` (H/sf, W/sf)
    float32 in [0, 1] (8-bit values) and the true ``kernel`` (K, K)."""
    cases = []
    for i, (name, img) in enumerate(packaged_images().items()):
        hr = crop_hr(img)
        for j, family in enumerate(FAMILIES):
            k = random_kernel(family, sf, np.random.default_rng([seed, sf, i, j]))
            lr = quantize_8bit(torch.from_numpy(degrade_np(hr, k, sf))).numpy()
            cases.append({"name": f"{name}_{family}", "hr": hr, "lr": lr, "kernel": k})
    return cases


def sweep(sfs: list[int], estimators: list[str], mus=MUS, sigma_ends=SIGMA_ENDS,
          base: SRConfig = SRConfig(), progress: bool = True, limit: int | None = None) -> dict:
    """PSNR of every grid point, scale factor and kernel source (on the first ``limit``
    cases per sf if given); the rule's choice."""
    sources = ["true", *estimators]
    grid = [{"mu": mu, "sigma_end": se, "psnr": {}} for mu, se in itertools.product(mus, sigma_ends)]
    for sf in sfs:
        cases = tuning_cases(sf)[:limit]
        kernels = {"true": [c["kernel"] for c in cases]}
        for spec in estimators:
            name, config = parse_model_spec(spec)
            kernels[spec] = [estimate(c["lr"], sf=sf, model=name, config=config) for c in cases]
        bicubic = float(np.mean([psnr(upscale_bicubic(c["lr"], sf), c["hr"], sf) for c in cases]))
        for point in tqdm(grid, desc=f"tune-sr sf{sf}", disable=not progress, leave=False):
            cfg = replace(base, mu=point["mu"], sigma_end=point["sigma_end"])
            point["psnr"][str(sf)] = {"bicubic": bicubic, **{
                src: float(np.mean([psnr(super_resolve_luma(c["lr"], k, sf, cfg), c["hr"], sf)
                                    for c, k in zip(cases, kernels[src])])) for src in sources}}
    for point in grid:
        point["score"] = float(np.mean([point["psnr"][str(sf)][src] for sf in sfs for src in sources]))
    best = max(grid, key=lambda p: p["score"])
    return {"schema": SCHEMA, "rule": RULE, "sources": sources, "sf": sfs, "n_images": len(cases),
            "base_config": {k: v for k, v in asdict(base).items() if k not in ("mu", "sigma_end")},
            "grid": grid, "chosen": {"mu": best["mu"], "sigma_end": best["sigma_end"]}}


def format_sweep(report: dict) -> str:
    """One row per grid point: PSNR per sf and source, the score; the choice marked."""
    cols = [(sf, src) for sf in report["sf"] for src in report["sources"]]
    head = f"{'mu':>7} {'sigma_end':>9}" + "".join(f" {f'sf{sf} {src}':>16}" for sf, src in cols) + f" {'score':>7}"
    bic = "  ".join(f"sf{sf} {report['grid'][0]['psnr'][str(sf)]['bicubic']:.2f}" for sf in report["sf"])
    lines = [f"SR PSNR (dB) on {report['n_images']} training images per sf; bicubic: {bic}", head, "-" * len(head)]
    for p in report["grid"]:
        mark = " <- chosen" if {"mu": p["mu"], "sigma_end": p["sigma_end"]} == report["chosen"] else ""
        lines.append(f"{p['mu']:>7.0e} {p['sigma_end']:>9}" + "".join(
            f" {p['psnr'][str(sf)][src]:>16.2f}" for sf, src in cols) + f" {p['score']:>7.2f}{mark}")
    return "\n".join(lines)
