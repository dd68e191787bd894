"""A camera's own kernel pool, end to end (`make pool-example`): results/pool_example.json.

A made-up camera "X" whose lens blurs with one narrow kind of kernel (anisotropic
Gaussians, eigen-variances 2.5-4.0 and 0.4-0.9 px², axis 20-43°; sf 2) takes photos of the
training sources (packaged natural images and dead leaves, never the gallery) at ISO 100
to 3200 (white noise σ = 0.0015 sqrt(ISO / 100), EXIF ISO recorded). Then, as a camera
team would:

1. `estimate-collection` over the photos (a local Ray), once with each shipped estimator;
2. `pool build --filter "iso < 800"` (noisy photos give worse estimates) of each;
3. `train --finetune --pool` for KernelNet and S2K from their shipped weights, on each pool;
4. score shipped and fine-tuned weights on the pool's held-out kernels (training's own
   validation) and on fresh camera-X photos against their **true** kernels.

Usage: ``python tools/pool_example.py [--photos 2000] [--steps 300] [--out runs/pool_example]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from PIL.ExifTags import IFD, Base

from mobile_kernelnet.collection import CollectionRun, estimate_collection
from mobile_kernelnet.data import HRPatchSampler
from mobile_kernelnet.degrade import degrade_np
from mobile_kernelnet.estimation import KernelEstimator
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.kernels import gaussian_kernel, kernel_size
from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.pool_build import build_pool
from mobile_kernelnet.train import TrainConfig, Trainer

SF, LR_SIDE = 2, 160
ISOS = (100, 200, 400, 800, 1600, 3200)
FILTER = "iso < 800"
ARCHS = {"kernelnet": {"grad_arch": "separable", "refine_arch": "wide-residual"}, "s2k": {"level_input": True}}
"""The models, with the options their shipped sf 2 weights were trained with (--finetune checks)."""


def camera_x_kernel(rng: np.random.Generator) -> np.ndarray:
    """One kernel of camera X (module docstring)."""
    return gaussian_kernel(kernel_size(SF), rng.uniform(2.5, 4.0), rng.uniform(0.4, 0.9), rng.uniform(0.35, 0.75))


def take_photos(folder: Path, n: int, seed: int) -> None:
    """``n`` camera-X LR photos as 8-bit PNG with EXIF ISO, true kernels as ``<stem>.npy`` in
    ``folder/truth`` (skipped when ``folder`` holds them already)."""
    if (folder / "truth").is_dir() and len(list((folder / "truth").glob("*.npy"))) == n:
        return
    (folder / "truth").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sampler = HRPatchSampler(SF * LR_SIDE, rng, bank_size=48)
    for i in range(n):
        k, iso = camera_x_kernel(rng), int(rng.choice(ISOS))
        lr = degrade_np(sampler().astype(np.float64), k, SF, 0.0015 * np.sqrt(iso / 100), rng)
        exif = Image.Exif()
        exif[Base.Model] = "Camera X"
        exif.get_ifd(IFD.Exif)[Base.ISOSpeedRatings] = iso
        Image.fromarray(np.round(np.clip(lr, 0, 1) * 255).astype(np.uint8)).save(folder / f"x{i:05d}.png", exif=exif)
        np.save(folder / "truth" / f"x{i:05d}.npy", k)


def true_kernel_l1(estimator, folder: Path) -> float:
    """Mean kernel L1 of ``estimator`` on the photos of ``folder`` against their true kernels."""
    return float(np.mean([kernel_l1(estimator(p).kernel, np.load(folder / "truth" / f"{p.stem}.npy"))
                          for p in sorted(folder.glob("*.png"))]))


def finetune(model: str, pool: Path, out: Path, steps: int, **arch) -> tuple[dict, Trainer]:
    """Fine-tune the shipped ``model`` on ``pool``; returns its log's first and best records."""
    cfg = TrainConfig(model=model, sf=SF, finetune=True, pool=str(pool), steps=steps, pretrain_steps=0, batch=8,
                      lr=1e-4, val_every=50, threads=2, **arch)
    shutil.rmtree(out, ignore_errors=True)
    trainer = Trainer(cfg, out)
    trainer.run()
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    shipped = next(r["validation"] for r in log if r["stage"] == "shipped-baseline")
    best = torch.load(out / "best.pt", weights_only=True)
    trainer.model.load_state_dict(best["model"])
    return {"command": " ".join(["mkn train", model, f"--sf {SF} --finetune --pool", str(pool), f"--steps {steps}",
                                 "--pretrain-steps 0 --batch 8 --lr 0.0001 --threads 2",
                                 *[f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in arch.items()]]),
            "pool_val_l1_shipped": shipped["val_l1"], "pool_val_l1_finetuned": best["val"]["val_l1"],
            "best_step": best["step"]}, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--test-photos", type=int, default=200)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("runs/pool_example"))
    ap.add_argument("--json", type=Path, default=Path("results/pool_example.json"))
    args = ap.parse_args()
    photos, fresh = args.out / "photos", args.out / "fresh"
    take_photos(photos, args.photos, seed=1)
    take_photos(fresh, args.test_photos, seed=2)
    result = {"photos": args.photos, "fresh_photos": args.test_photos, "filter": FILTER, "pools": {}}
    for source in ARCHS:  # a pool from each estimator's kernels, each model fine-tuned on each pool
        shutil.rmtree(args.out / f"kernels_{source}.parquet", ignore_errors=True)  # timed from scratch
        t0 = time.monotonic()
        summary = estimate_collection(photos, args.out / f"kernels_{source}.parquet", CollectionRun(SF, source))
        seconds = time.monotonic() - t0
        pool = args.out / f"pool_{source}.npz"
        entry = {"collection": {**asdict(summary), "seconds": round(seconds, 1)},
                 "pool": asdict(build_pool(args.out / f"kernels_{source}.parquet", pool, FILTER)), "finetuned": {}}
        for model, arch in ARCHS.items():
            record, trainer = finetune(model, pool, args.out / f"finetune_{model}_on_{source}", args.steps, **arch)
            record["fresh_true_l1_shipped"] = true_kernel_l1(KernelEstimator(SF, model), fresh)
            record["fresh_true_l1_finetuned"] = true_kernel_l1(KernelEstimator.from_module(trainer.model, SF, model),
                                                               fresh)
            entry["finetuned"][model] = record
            print(f"{model} on the {source} pool:", json.dumps(record))
        result["pools"][source] = entry
    write_json(result, args.json)


if __name__ == "__main__":
    main()
