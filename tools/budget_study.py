"""Kernel L1 against the LR window budget, on validation cases (never the gallery):
results/budget_study_sf2.json.

Cases: :func:`sr_tuning.tuning_cases` at sf 2 for seeds 0..5 (the packaged images x the
three families, 90 cases, LR 210x252). Each shipped estimator sees a window of each budget
(:mod:`budget`); the record holds every case's L1, the means, and per budget the paired
bootstrap 95 % interval of the mean difference to the whole image (252 px, budget 256).

Usage: ``python tools/budget_study.py [--json results/budget_study_sf2.json]``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mobile_kernelnet.estimation import KernelEstimator
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.metrics import kernel_l1, paired_mean_difference_ci
from mobile_kernelnet.sr_tuning import tuning_cases

BUDGETS = (96, 128, 160, 192, 256)
MODELS = ("kernelnet", "s2k")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("results/budget_study_sf2.json"))
    args = ap.parse_args()
    cases = [c for seed in range(6) for c in tuning_cases(2, seed=seed)]
    out = {"sf": 2, "cases": len(cases), "lr_shape": list(cases[0]["lr"].shape), "models": {}}
    for model in MODELS:
        l1 = {b: np.array([kernel_l1(KernelEstimator(2, model, budget=b)(c["lr"]).kernel, c["kernel"])
                           for c in cases]) for b in BUDGETS}
        out["models"][model] = {str(b): {"mean_l1": float(v.mean()), "vs_whole": float((v - l1[256]).mean()),
                                         "vs_whole_95ci": list(paired_mean_difference_ci(v, l1[256])), "l1": v.tolist()}
                                for b, v in l1.items()}
        print(model, " ".join(f"{b}: {v.mean():.3f}" for b, v in l1.items()))
    write_json(out, args.json)


if __name__ == "__main__":
    main()
