"""Choose the SR solver's regularisation on *training* images (`mkn tune-sr`).

The tuning set mirrors the test set (:mod:`testset`) on the natural images the
training sources use (:func:`data.packaged_images`, never the scikit-image gallery):
the centred HR crop (at most 504 px, a multiple of 12), one random kernel per family
and image, the noise-free degradation, 8-bit quantisation — the *clean* split — and,
with ``camera``, the same LR images through :func:`camera.camera_np` at each of
:data:`camera.LEVELS` (noise seeded per case). Every point of the grid super-resolves
every LR image with the true kernel and with each estimator's kernel; PSNR as in
``mkn eval --sr``.

Two grids: :data:`CLEAN_GRID` (``mu`` x ``sigma_end``, the noise-blind solver, on the
clean split) and :data:`CAMERA_GRID` (the noise-aware schedule's ``noise_floor`` x
``noise_end`` on top of the shipped ``mu`` / ``sigma_end``, on the clean split and
every camera level).

Rule (written before the first `make tune-sr` ran; an ad-hoc sweep with the true and
KernelNet's kernels had shown the trade-off): the chosen point has the highest mean PSNR
over all kernel sources (true and estimated, equal weight), scale factors and splits.
The true kernel alone would pick the weakest regularisation, which amplifies an
estimated kernel's errors; the estimators alone would ignore the upper bound.

Output schema ``mkn-tune-sr/2``::

    {"schema": "mkn-tune-sr/2", "rule": "...", "sources": [...], "sf": [...], "splits": [...],
     "grid": [{"params": {...}, "psnr": {"<sf>": {"<split>": {"bicubic", "<source>": dB}}}, "score"}],
     "chosen": {...}}
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, replace

import numpy as np
import torch
from tqdm import tqdm

from .camera import LEVELS, camera_np
from .data import packaged_images
from .degrade import degrade_np, quantize_8bit
from .estimation import estimate
from .kernels import FAMILIES, random_kernel
from .metrics import psnr
from .models.registry import parse_model_spec
from .sr import SRConfig, super_resolve_luma, upscale_bicubic
from .testset import crop_hr
from .textures import procedural_texture

SCHEMA = "mkn-tune-sr/2"
RULE = "max mean PSNR over kernel sources (true + each estimator), scale factors and splits"
CLEAN_GRID = {"mu": (3e-7, 1e-6, 3e-6), "sigma_end": (0.005, 0.01, 0.02)}
CAMERA_GRID = {"noise_floor": (0.00125, 0.0025, 0.005), "noise_end": (1.0,)}
"""noise_end 2 lost to 1 at every level in a first look (5 sf 2 cases per level, true kernel:
high 24.90 vs 25.45 dB at noise_floor 0.0025), so the grid keeps 1 and spends its time on noise_floor."""


TEXTURE_SIDE = 504
"""HR side of a procedural-texture case (the test set's largest crop)."""


def tuning_images(sf: int, seed: int = 0, textures: int = 0) -> list[tuple[str, np.ndarray]]:
    """``(name, HR image)`` of :func:`tuning_cases`: the packaged images and, with
    ``textures``, as many procedural textures (:func:`textures.procedural_texture`,
    ``TEXTURE_SIDE`` px, drawn from ``seed`` and ``sf``)."""
    return list(packaged_images().items()) + [
        (f"texture{t}", procedural_texture(TEXTURE_SIDE, np.random.default_rng([seed, sf, 99, t])))
        for t in range(textures)]


def tuning_cases(sf: int, seed: int = 0, level: str | None = None, textures: int = 0,
                 images: list[tuple[str, np.ndarray]] | None = None) -> list[dict]:
    """One case per packaged image and kernel family (``name``, ``family``): ``hr`` (H, W),
    ``lr`` (H/sf, W/sf) float32 in [0, 1] (8-bit values; with ``level``, the camera degradation of that
    :data:`camera.LEVELS` entry) and the true ``kernel`` (K, K); with ``textures``, as many
    procedural textures join the packaged images (the gallery's grass, gravel and brick have
    no like among those five photos). ``images``: :func:`tuning_images` ``(sf, seed,
    textures)`` made once by a caller that wants several levels."""
    if images is None:
        images = tuning_images(sf, seed, textures)
    cases = []
    for i, (name, img) in enumerate(images):
        hr = crop_hr(img)
        for j, family in enumerate(FAMILIES):
            k = random_kernel(family, sf, np.random.default_rng([seed, sf, i, j]))
            clean = degrade_np(hr, k, sf)
            if level is None:
                lr = quantize_8bit(torch.from_numpy(clean)).numpy()
            else:
                lr = camera_np(clean, LEVELS[level], np.random.default_rng([seed, sf, i, j, 1 + list(LEVELS).index(level)]))
            cases.append({"name": f"{name}_{family}", "family": family, "hr": hr, "lr": lr, "kernel": k})
    return cases


def sweep(sfs: list[int], estimators: list[str], grid: dict[str, tuple] = CLEAN_GRID, camera: bool = False,
          base: SRConfig = SRConfig(), progress: bool = True, limit: int | None = None) -> dict:
    """PSNR of every grid point (``SRConfig`` field -> values, all combinations), scale
    factor, split and kernel source (on the first ``limit`` cases per sf and split if
    given); the rule's choice."""
    sources = ["true", *estimators]
    splits = ["clean", *(LEVELS if camera else ())]
    points = [{"params": dict(zip(grid, values)), "psnr": {}} for values in itertools.product(*grid.values())]
    for sf in sfs:
        for split in splits:
            cases = tuning_cases(sf, level=None if split == "clean" else split)[:limit]
            kernels = {"true": [c["kernel"] for c in cases]}
            for spec in estimators:
                name, config = parse_model_spec(spec)
                kernels[spec] = [estimate(c["lr"], sf=sf, model=name, config=config) for c in cases]
            bicubic = float(np.mean([psnr(upscale_bicubic(c["lr"], sf), c["hr"], sf) for c in cases]))
            for point in tqdm(points, desc=f"tune-sr sf{sf} {split}", disable=not progress, leave=False):
                cfg = replace(base, **point["params"])
                point["psnr"].setdefault(str(sf), {})[split] = {"bicubic": bicubic, **{
                    src: float(np.mean([psnr(super_resolve_luma(c["lr"], k, sf, cfg), c["hr"], sf)
                                        for c, k in zip(cases, kernels[src])])) for src in sources}}
    for point in points:
        point["score"] = float(np.mean([point["psnr"][str(sf)][split][src]
                                        for sf in sfs for split in splits for src in sources]))
    best = max(points, key=lambda p: p["score"])
    return {"schema": SCHEMA, "rule": RULE, "sources": sources, "sf": sfs, "splits": splits,
            "n_images": len(cases), "base_config": {k: v for k, v in asdict(base).items() if k not in grid},
            "grid": points, "chosen": best["params"]}


def format_sweep(report: dict) -> str:
    """One row per grid point: PSNR per sf, split and source, the score; the choice marked."""
    names = list(report["grid"][0]["params"])
    cols = [(sf, sp, src) for sf in report["sf"] for sp in report["splits"] for src in report["sources"]]
    head = "".join(f"{n:>12}" for n in names) + "".join(f" {f'{sf}/{sp}/{src}':>22}" for sf, sp, src in cols) \
        + f" {'score':>7}"
    bic = "  ".join(f"sf{sf} {sp} {report['grid'][0]['psnr'][str(sf)][sp]['bicubic']:.2f}"
                    for sf in report["sf"] for sp in report["splits"])
    lines = [f"SR PSNR (dB) on {report['n_images']} training images per sf and split; bicubic: {bic}",
             head, "-" * len(head)]
    for p in report["grid"]:
        mark = " <- chosen" if p["params"] == report["chosen"] else ""
        lines.append("".join(f"{p['params'][n]:>12.3g}" for n in names) + "".join(
            f" {p['psnr'][str(sf)][sp][src]:>22.2f}" for sf, sp, src in cols) + f" {p['score']:>7.2f}{mark}")
    return "\n".join(lines)
