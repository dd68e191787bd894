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
    k = np.clip(k, 0, None) / max(float(np.clip(k, 0, None).sum()), 1e-12)
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
                    lr = torch.from_numpy(apply_window(lr, select_window(lr, budget_for(sf, None))))
                    for model, net in nets.items():
                        est = net(lr[None, None])[0, 0].numpy()
                        rows.setdefault((model, name, family), []).append(
                            [radius(est) - radius(k)] + [kernel_l1(widen(est, s), k) for s in WIDENINGS])
    out = {"sf": sf, "seeds": seeds, "widenings_px": list(WIDENINGS), "results": []}
    for (model, name, family), vals in rows.items():
        v = np.asarray(vals)
        out["results"].append({"model": model, "setting": name, "family": family, "cases": len(v), "radius_bias_px": float(v[:, 0].mean()),
                               "l1": float(v[:, 1].mean()), "l1_widened": [float(x) for x in v[:, 1:].mean(0)]})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sf", type=int, choices=(2, 3, 4), required=True)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--models", nargs="+", default=["kernelnet", "s2k"])
    p.add_argument("--json", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    report = study(a.sf, a.seeds, a.models)
    write_json(report, a.json)
    for r in report["results"]:
        print(f"{r['model']:10s} {r['setting']:30s} {r['family']:9s} L1 {r['l1']:.3f}  radius bias {r['radius_bias_px']:+.2f} px  "
              f"widened {' / '.join(f'{x:.3f}' for x in r['l1_widened'])}")


if __name__ == "__main__":
    main()
