"""Where KernelNet's kernel error comes from, stage by stage (`mkn eval --error-budget`).

For every test image, the kernel L1 of four kernels, each a step further from the
ideal:

* ``fft2_floor`` — the best any LR kernel can do through FFT-2: ``min over k_LR`` of
  ``L1(FFT2(k_LR), k)`` (``k_LR`` ``L x L``, non-negative, sum 1; Adam on a softmax
  parametrisation, :data:`FLOOR_STEPS` steps). No FFT-1, gradient CNN or refinement can
  bring the *coarse* kernel below this; only the refinement can go under it.
* ``oracle_gradients`` — FFT-1 fed the true sharp LR gradients (of the phase-0
  decimated HR original) instead of the CNN's, then FFT-2: what a perfect gradient
  estimator would give with the trained FFT-1 (its λ and threshold).
* ``coarse`` — the trained model's FFT-2 output (the CNN's gradients).
* ``refined`` — the trained model's output.

Schema ``mkn-error-budget/1``: ``{"schema", "results": [{"sf", "model", "testset",
"stages": {stage: {"families": {family: l1}, "overall": l1}}, "per_image": [...]}]}``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .degrade import decimate
from .kernels import FAMILIES
from .metrics import kernel_l1
from .models import create_model
from .models.kernelnet import KernelNet, image_gradients
from .testset import load_hr, load_testset, sha256

SCHEMA = "mkn-error-budget/1"
STAGES = ("fft2_floor", "oracle_gradients", "coarse", "refined")
FLOOR_STEPS = 1500


def fft2_floor(model: KernelNet, kernels: np.ndarray, steps: int = FLOOR_STEPS) -> np.ndarray:
    """``(N, K, K)`` true kernels -> ``(N, K, K)`` the closest FFT-2 outputs found (float64)."""
    fft2 = model.fft2
    size = model.config.klr_size
    target = torch.from_numpy(np.asarray(kernels, np.float64))
    logits = torch.zeros(len(target), 1, size, size, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)

    def closest() -> torch.Tensor:
        return fft2(torch.softmax(logits.flatten(1), dim=1).view_as(logits))[:, 0]

    for _ in range(steps):
        loss = (closest() - target).abs().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return closest().numpy()


@torch.inference_mode()
def _stage_kernels(model: KernelNet, lr: np.ndarray, hr: np.ndarray) -> dict[str, np.ndarray]:
    """``(h, w)`` LR and ``(sf h, sf w)`` HR, float32 in [0, 1] -> ``(K, K)`` kernel of each
    model stage."""
    x = torch.from_numpy(lr)[None, None]
    y_grads = image_gradients(x)
    sharp = image_gradients(decimate(torch.from_numpy(hr), model.sf)[None, None])
    out = model.stages(x)
    oracle = model.fft2(model.fft1(y_grads, sharp))
    return {"oracle_gradients": oracle[0, 0].numpy(), "coarse": out["k_coarse"][0, 0].numpy(),
            "refined": out["kernel"][0, 0].numpy()}


def error_budget(testset_dir: str | Path, config: str = "mobile", floor_steps: int = FLOOR_STEPS) -> dict:
    """KernelNet ``config``'s stage-by-stage kernel L1 on one test-set folder (one
    ``results`` item of :data:`SCHEMA`)."""
    manifest, entries = load_testset(testset_dir)
    sf = manifest["sf"]
    model = create_model("kernelnet", sf, config)
    truths = np.stack([e.kernel() for e in entries])
    floors = fft2_floor(model, truths, floor_steps)
    per_image = []
    for e, floor, k_gt in zip(entries, floors, truths):
        kernels = {"fft2_floor": floor,
                   **_stage_kernels(model, e.lr(), load_hr(e.image))}
        per_image.append({"stem": e.stem, "family": e.family,
                          **{s: kernel_l1(kernels[s], k_gt) for s in STAGES}})
    stages = {s: {"families": {f: float(np.mean([r[s] for r in per_image if r["family"] == f]))
                               for f in FAMILIES if any(r["family"] == f for r in per_image)},
                  "overall": float(np.mean([r[s] for r in per_image]))} for s in STAGES}
    return {"sf": sf, "model": f"kernelnet:{config}",
            "testset": {"path": str(testset_dir), "n": len(entries),
                        "manifest_sha256": sha256(Path(testset_dir) / "manifest.json")},
            "stages": stages, "per_image": per_image}


def format_budget(result: dict) -> str:
    """One result as a Markdown table: stages x (families, overall)."""
    fams = list(next(iter(result["stages"].values()))["families"])
    lines = [f"sf {result['sf']} {result['model']} kernel L1 by stage (n={result['testset']['n']})",
             "| stage | " + " | ".join(fams) + " | overall |", "|---" * (len(fams) + 2) + "|"]
    for stage, v in result["stages"].items():
        lines.append(f"| {stage} | " + " | ".join(f"{v['families'][f]:.3f}" for f in fams)
                     + f" | {v['overall']:.3f} |")
    return "\n".join(lines)
