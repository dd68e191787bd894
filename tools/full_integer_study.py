"""The full-integer path on a KernelNet whose graph can be fully integer, before such weights
ship: results/full_integer_study.json.

1. **Solver swap on validation** (never the gallery): :func:`sr_tuning.tuning_cases` at sf 2,
   seeds 0 and 1 (30 cases each), clean and the camera ``high`` level. The shipped sf 2 weights
   run with FFT-1's eq. 11 and with the ``normal-equations`` solver; the record holds the coarse
   (FFT-2) and final kernel L1 of each.
2. **Export, parity and NPU compiles**, per sf in :data:`INTEGER_SFS`: the shipped weights
   (sf 2: separable front end; sf 3: dense) with ``fft1_solver="normal-equations"`` and
   ``threshold_mode="soft"``, saved as the weights files of a temporary weights folder,
   exported to ``tflite-int16x8`` at the sf's budget with 32 calibration images and compiled
   for SM8350 / SM8550 / SM8650 / SM8750, then `mkn parity`'s report on 12 test images of
   ``testsets/sf<N>`` (run ``make testsets`` first).

Usage: ``python tools/full_integer_study.py [--json results/full_integer_study.json]``.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from export.exporter import export
from export.npu import parse_targets
from export.parity import run_parity
from mobile_kernelnet.budget import budget_for
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.models import create_model, registry
from mobile_kernelnet.sr_tuning import tuning_cases

SOCS = "qualcomm:SM8350,SM8550,SM8650,SM8750"
SOLVERS = ("eq11", "normal-equations")
INTEGER_SFS = (2, 3)


def solver_swap() -> dict:
    """Mean coarse / final kernel L1 of the shipped sf 2 KernelNet per FFT-1 solver and split."""
    net = create_model("kernelnet", 2, "mobile", pretrained=True).eval()
    out = {}
    for level in (None, "high"):
        cases = [c for seed in (0, 1) for c in tuning_cases(2, seed, level)]
        for solver in SOLVERS:
            net.fft1.solver = solver
            with torch.no_grad():
                stages = [net.stages(torch.from_numpy(c["lr"])[None, None]) for c in cases]
            l1 = {s: float(np.mean([np.abs(st[s][0, 0].numpy() - c["kernel"]).sum() for st, c in zip(stages, cases)]))
                  for s in ("k_coarse", "kernel")}
            out[f"{level or 'clean'}/{solver}"] = {"cases": len(cases), **l1}
            print(level or "clean", solver, l1)
    return out


def integer_ready_weights(folder: Path) -> None:
    """Write the shipped KernelNet weights of each sf in :data:`INTEGER_SFS`, with the two
    FFT-1 options swapped in, as the weights files of ``folder`` and point the registry at it."""
    folder.mkdir()
    for sf in INTEGER_SFS:
        net = create_model("kernelnet", sf, "mobile", pretrained=True)
        config = replace(net.config, fft1_solver="normal-equations", threshold_mode="soft")
        torch.save({"model": net.state_dict(), "model_config": asdict(config)}, folder / f"kernelnet_mobile_sf{sf}.pt")
    registry.WEIGHTS_DIR = folder


def integer_export(work: Path, testsets: Path, sf: int) -> dict:
    """Placement and parity of the integer-ready KernelNet's ``tflite-int16x8`` file at ``sf``."""
    size = budget_for(sf)
    manifest = export("kernelnet", "mobile", sf, size, ["tflite-int16x8"], work / f"export_sf{sf}",
                      calibration_n=32, npu=parse_targets(SOCS))
    art = manifest.artifacts["tflite-int16x8"]
    parity = run_parity(work / f"export_sf{sf}", testsets, max_images=12)
    return {"input_size": size, "calibration_n": 32, "numeric": art.details["numeric"],
            "npu": {soc: {k: r[k] for k in ("status", "ops_offloaded", "ops_total", "partitions", "cpu_ops")}
                    for soc, r in art.npu.items()},
            "gpu": {k: art.gpu[k] for k in ("ops_gpu", "ops_total", "fully_delegated")},
            "gpu_refused_reasons": sorted({r["reason"].split(".")[0] for r in art.gpu["refused"]}),
            "parity": [{k: row.get(k) for k in ("format", "status", "delta_l1", "max_abs", "stage_rel_error")}
                       for row in parity["formats"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=Path("results/full_integer_study.json"))
    ap.add_argument("--testsets", type=Path, default=Path("testsets"))
    args = ap.parse_args()
    out = {"solver_swap_sf2": solver_swap()}
    with tempfile.TemporaryDirectory() as tmp:
        integer_ready_weights(Path(tmp) / "weights")
        for sf in INTEGER_SFS:
            out[f"int16x8_sf{sf}"] = integer_export(Path(tmp), args.testsets, sf)
    write_json(out, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
