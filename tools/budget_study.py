"""Kernel L1 against the LR window budget, on validation cases (never the gallery):
results/budget_study_sf<N>.json.

Cases: the natural set of :mod:`ship_check` -- :func:`sr_tuning.tuning_cases` at ``--sf`` for
seeds ``0 .. ship_check.NATURAL_SEEDS - 1``, the packaged photos plus
:data:`ship_check.NATURAL_TEXTURES` procedural textures per seed, times the three kernel
families -- clean and at each camera level. Each shipped estimator sees a window of each
budget (:mod:`budget`); the record holds per split every case's L1, the means, and per
budget the paired bootstrap 95 % interval of the mean difference to the largest budget
(the whole LR image of the packaged photos, 210 x 252 at sf 2).

Usage: ``python tools/budget_study.py --sf 2 [--json results/budget_study_sf2.json]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mobile_kernelnet.camera import LEVELS
from mobile_kernelnet.estimation import KernelEstimator
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.metrics import kernel_l1, paired_mean_difference_ci
from mobile_kernelnet.ship_check import NATURAL_SEEDS, NATURAL_TEXTURES
from mobile_kernelnet.sr_tuning import tuning_cases, tuning_images

BUDGETS = (96, 128, 160, 192, 256)
MODELS = ("kernelnet", "s2k")
SPLITS = ("clean", *LEVELS)


def study(sf: int) -> dict:
    """``{"models": {model: {split: {budget: record}}}}`` for every model of :data:`MODELS`."""
    cases = {split: [] for split in SPLITS}
    for seed in range(NATURAL_SEEDS):
        images = tuning_images(sf, seed, NATURAL_TEXTURES)
        for split in SPLITS:
            cases[split] += tuning_cases(sf, seed, level=None if split == "clean" else split, images=images)
    out = {"sf": sf, "cases_per_split": len(cases["clean"]), "budgets": list(BUDGETS), "models": {}}
    for model in MODELS:
        estimators = {b: KernelEstimator(sf, model, budget=b) for b in BUDGETS}
        out["models"][model] = {}
        for split, split_cases in cases.items():
            l1 = {b: np.array([kernel_l1(est(c["lr"]).kernel, c["kernel"]) for c in split_cases])
                  for b, est in estimators.items()}
            ref = l1[BUDGETS[-1]]
            out["models"][model][split] = {
                str(b): {"mean_l1": float(v.mean()), "vs_largest": float((v - ref).mean()),
                         "vs_largest_95ci": list(paired_mean_difference_ci(v, ref)), "l1": v.tolist()}
                for b, v in l1.items()}
            print(model, split, " ".join(f"{b}: {v.mean():.3f}" for b, v in l1.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sf", type=int, choices=(2, 3, 4), default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    write_json(study(args.sf), args.json or Path(f"results/budget_study_sf{args.sf}.json"))


if __name__ == "__main__":
    main()
