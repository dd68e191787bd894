"""Where the shipped estimators lose on camera input: kernel L1 and *radius bias* per family.

The radius of a kernel is the square root of its second central moment (px); the bias is
estimate minus truth, so a negative bias is a kernel estimated too narrow (noise read as
sharpness). Cases are the validation images of :mod:`ship_check` (packaged photos and
procedural textures, never the test gallery) at ``--seeds`` seeds, through each setting of
:data:`SETTINGS`: the camera split's high level, its noise alone, its JPEG alone and half its
noise. Also scored: each estimate widened by an isotropic Gaussian of std ``s`` px
(:data:`WIDENINGS`), the upper bound of a noise-blind width correction.

    python tools/camera_bias_study.py --sf 4 --json results/camera_bias_sf4.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from mobile_kernelnet.budget import apply_window, budget_for, select_window
from mobile_kernelnet.camera import LEVELS, CameraParams, camera_np
from mobile_kernelnet.data import HRPatchSampler
from mobile_kernelnet.degrade import degrade_np, quantize_8bit
from mobile_kernelnet.kernels import FAMILIES, random_kernel
from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.models import create_model
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.ship_check import NATURAL_TEXTURES
from mobile_kernelnet.sr_tuning import tuning_images
from mobile_kernelnet.testset import crop_hr

HIGH = LEVELS["high"]
SETTINGS: dict[str, CameraParams | None] = {
    "clean": None,
    "high": HIGH,
    "high noise, no JPEG": CameraParams(HIGH.a, HIGH.b, None),
    "high JPEG, no noise": CameraParams(0.0, 0.0, HIGH.jpeg_quality),
    "half the high noise, no JPEG": CameraParams(HIGH.a / 2, HIGH.b / np.sqrt(2), None),
}
WIDENINGS = (0.0, 0.5, 1.0)


def radius(k: np.ndarray) -> float:
    """``(K, K)`` kernel -> sqrt of its second central moment in px (negative taps clipped)."""
    k = np.clip(k, 0, None)
    k = k / max(float(k.sum()), 1e-12)
    y, x = np.mgrid[:k.shape[0], :k.shape[1]]
    cy, cx = (k * y).sum(), (k * x).sum()
    return float(np.sqrt((k * ((y - cy) ** 2 + (x - cx) ** 2)).sum()))


def widen(k: np.ndarray, s: float) -> np.ndarray:
    """``k`` convolved with an isotropic Gaussian of std ``s`` px, clipped and summing to 1."""
    w = np.clip(gaussian_filter(k.astype(np.float64), s, mode="constant") if s else k, 0, None)
    return w / w.sum()


@torch.no_grad()
def study(sf: int, seeds: int, models: list[str]) -> dict:
    """Per (model, setting, family): mean radius bias, L1, and L1 after each of :data:`WIDENINGS`."""
    nets = {n: create_model(n, sf=sf, config="mobile").eval() for n in models}
    rows: dict[tuple, list] = {}
    for seed in range(seeds):
        for i, (_, img) in enumerate(tuning_images(sf, seed, NATURAL_TEXTURES)):
            hr = crop_hr(img)
            for j, family in enumerate(FAMILIES):
                k = random_kernel(family, sf, np.random.default_rng([seed, sf, i, j]))
                clean = degrade_np(hr, k, sf)
                for name, params in SETTINGS.items():
                    lr = (quantize_8bit(torch.from_numpy(clean)).numpy() if params is None
                          else camera_np(clean, params, np.random.default_rng([seed, sf, i, j, 7])))
                    for model, net in nets.items():
                        window = select_window(lr, budget_for(sf, None, model))
                        est = net(torch.from_numpy(apply_window(lr, window))[None, None])[0, 0].numpy()
                        rows.setdefault((model, name, family), []).append(
                            [radius(est) - radius(k)] + [kernel_l1(widen(est, s), k) for s in WIDENINGS])
    out = {"sf": sf, "seeds": seeds, "widenings_px": list(WIDENINGS), "results": []}
    for (model, name, family), vals in rows.items():
        v = np.asarray(vals)
        out["results"].append({"model": model, "setting": name, "family": family, "cases": len(v), "radius_bias_px": float(v[:, 0].mean()),
                               "l1": float(v[:, 1].mean()), "l1_widened": [float(x) for x in v[:, 1:].mean(0)]})
    return out


SOURCES = {"dead leaves": (1.0, 0.0), "textures": (0.0, 1.0), "photos": (0.0, 0.0)}
"""Training source -> ``(dead_leaves_prob, texture_prob)`` of a sampler that draws only it."""


@torch.no_grad()
def source_study(sf: int, patches: int, models: list[str], patch_lr: int = 96) -> list[dict]:
    """Per (model, training source, split clean / high, family): mean radius bias, L1 and L1
    after each of :data:`WIDENINGS` on ``patches`` HR patches of ``sf * patch_lr`` px per
    source (a training-size LR patch): whether the narrowing costs L1 on training data too."""
    nets = {n: create_model(n, sf=sf, config="mobile").eval() for n in models}
    out = []
    for source, (dead, tex) in SOURCES.items():
        rng = np.random.default_rng([sf, 5, len(source)])
        sampler = HRPatchSampler(sf * patch_lr, rng, dead_leaves_prob=dead, texture_prob=tex, bank_size=8)
        rows: dict[tuple, list] = {}
        for i in range(patches):
            hr, family = sampler(), FAMILIES[i % len(FAMILIES)]
            k = random_kernel(family, sf, rng)
            clean = degrade_np(hr, k, sf)
            for split in ("clean", "high"):
                lr = (quantize_8bit(torch.from_numpy(clean)).numpy() if split == "clean"
                      else camera_np(clean, HIGH, rng))
                for model, net in nets.items():
                    est = net(torch.from_numpy(lr)[None, None])[0, 0].numpy()
                    rows.setdefault((model, split, family), []).append(
                        [radius(est) - radius(k)] + [kernel_l1(widen(est, s), k) for s in WIDENINGS])
        for (model, split, family), vals in rows.items():
            v = np.asarray(vals)
            out.append({"model": model, "source": source, "setting": split, "family": family, "cases": len(v),
                        "radius_bias_px": float(v[:, 0].mean()), "l1": float(v[:, 1].mean()),
                        "l1_widened": [float(x) for x in v[:, 1:].mean(0)]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sf", type=int, choices=(2, 3, 4), required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--patches", type=int, default=45, help="patches per training source (0: skip that part)")
    p.add_argument("--models", nargs="+", default=["kernelnet", "s2k"])
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    report = study(a.sf, a.seeds, a.models)
    report["training_sources"] = source_study(a.sf, a.patches, a.models) if a.patches else []
    write_json(report, a.json)
    for r in report["results"]:
        print(f"{r['model']:10s} {r['setting']:30s} {r['family']:9s} L1 {r['l1']:.3f}  radius bias {r['radius_bias_px']:+.2f} px  "
              f"widened {' / '.join(f'{x:.3f}' for x in r['l1_widened'])}")
    for r in report["training_sources"]:
        print(f"{r['model']:10s} {r['source']:12s} {r['setting']:6s} {r['family']:9s} L1 {r['l1']:.3f}  "
              f"radius bias {r['radius_bias_px']:+.2f} px  widened {' / '.join(f'{x:.3f}' for x in r['l1_widened'])}")


if __name__ == "__main__":
    main()
