"""`mkn parity DIR`: every artifact in its real runtime against the PyTorch reference.

Test images come from the project's test set for the export's sf, fitted to the
exported input size by :func:`mobile_kernelnet.budget.budget_input` (edge-energy window;
images smaller than the input are reflect-padded, and the report counts them: both
sides see the same input, so the comparison stays exact). Per format:

* ``max_abs`` / ``mean_abs`` -- kernel error against the reference (over images);
* ``delta_l1`` -- mean over images of ``|L1(k_fmt, k_true) - L1(k_ref, k_true)|``;
* ``stages`` -- per stage, the max-abs error relative to the reference stage's peak,
  and ``error_grows_at``: the first stage whose relative error is at least
  :data:`GROWTH` x the previous stage's (or the input's float32 rounding), i.e.
  where the format first loses accuracy.

A format fails when a measure exceeds its tolerance (:data:`DEFAULT_TOLERANCES`,
overridable) or when it cannot run.
"""
from __future__ import annotations

import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.models import create_model
from mobile_kernelnet.budget import budget_input
from mobile_kernelnet.testset import load_testset

from .formats import FORMATS, Tolerance
from .gpu import PRECISIONS, stage_outputs
from .manifest import Manifest, read_manifest, sha256
from .runtimes import TorchRunner, open_runner

SCHEMA = "mkn-parity/1"
GROWTH = 10.0
FLOAT32_FLOOR = 1e-7


FILE_TOLERANCES = {name: fmt.tolerance for name, fmt in FORMATS.items()}
"""Each file in its desktop runtime (:data:`formats.FORMATS`)."""
FP16_COMPUTE = Tolerance(max_abs=None, delta_l1=0.01)
"""What a format is judged by when it computes in fp16 (as the GPU path does by default):
kernel L1, not max-abs. KernelNet's FFT-1 zeroes taps below a fraction of the peak, so a
tap near that line flips under fp16 rounding and moves the kernel by the tap's value
(0.045 / 0.10 at sf 4 / 3 on one test image each, as in the int8 files) while the mean
kernel L1 moves by 0.003 / 0.012."""


def gpu_row(fmt: str, precision: str) -> str:
    """Parity row name of ``fmt`` run on LiteRT's GPU accelerator at ``precision``."""
    return f"{fmt}@gpu-{precision}"


def _on_gpu(own: Tolerance, precision: str) -> Tolerance:
    if precision == "fp32":
        return own
    return Tolerance(max_abs=FP16_COMPUTE.max_abs, delta_l1=max(own.delta_l1 or 0.0, FP16_COMPUTE.delta_l1))


DEFAULT_TOLERANCES = {**FILE_TOLERANCES,
                      **{gpu_row(f, p): _on_gpu(t, p) for f, t in FILE_TOLERANCES.items()
                         if f.startswith("tflite-") for p in PRECISIONS}}
"""Per parity row: each file in its desktop runtime, and each TFLite file on the GPU path
(its own tolerance at fp32; at fp16, :data:`FP16_COMPUTE` with the file's kernel-L1 bound
if that is looser)."""


def parse_tolerance(spec: str, tolerances: dict[str, Tolerance]) -> dict[str, Tolerance]:
    """Apply ``FORMAT.FIELD=VALUE`` (e.g. ``tflite-fp16.max_abs=3e-3``) to ``tolerances``."""
    try:
        key, value = spec.split("=")
        fmt, field = key.split(".")
        value = float(value)
    except ValueError:
        raise ValueError(f"tolerance {spec!r}: expected FORMAT.FIELD=VALUE, e.g. tflite-fp16.max_abs=3e-3")
    if field not in ("max_abs", "delta_l1"):
        raise ValueError(f"tolerance {spec!r}: field must be max_abs or delta_l1")
    new = dict(tolerances)
    new[fmt] = Tolerance(**{**asdict(tolerances.get(fmt, Tolerance())), field: value})
    return new


def parity_inputs(testset_dir: Path, sf: int, size: int, max_images: int | None) -> list[dict]:
    """Test-set images fitted to ``size``: dicts with ``stem``, ``lr`` (1,1,S,S), ``truth`` (K,K), ``fit``."""
    manifest, entries = load_testset(testset_dir)
    if manifest["sf"] != sf:
        raise ValueError(f"{testset_dir} is the sf {manifest['sf']} test set; the export is sf {sf}")
    items = []
    for e in entries[:max_images]:
        lr, window = budget_input(e.lr(), size)
        padded = " + reflect pad" if (window.height, window.width) != (size, size) else ""
        items.append({"stem": e.stem, "lr": lr[None, None], "truth": e.kernel(), "fit": window.how + padded})
    if not items:
        raise ValueError(f"{testset_dir}: no test images")
    return items


def _stage_errors(out: dict, ref: dict, stages: list[str]) -> dict[str, float]:
    return {s: float(np.abs(out[s] - ref[s]).max() / max(float(np.abs(ref[s]).max()), 1e-12)) for s in stages}


def error_grows_at(rel: dict[str, float]) -> str | None:
    """First stage whose relative error is >= GROWTH x the previous one's (floor: float32
    rounding); ``None`` if no stage grows that much."""
    prev = FLOAT32_FLOOR
    for stage, err in rel.items():
        if err >= GROWTH * max(prev, FLOAT32_FLOOR):
            return stage
        prev = err
    return None


BatchRun = Callable[[list[np.ndarray]], list[dict[str, np.ndarray]]]
"""Runs one format on every ``(1, 1, S, S)`` input; returns each input's ``{stage: NCHW array}``."""


def desktop_run(folder: Path, manifest: Manifest, fmt: str) -> BatchRun:
    """:data:`BatchRun` of ``fmt`` in its desktop runtime (2 threads)."""
    def run(lrs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        runner = open_runner(folder, manifest, fmt, threads=2)
        return [runner(lr) for lr in lrs]
    return run


def is_kernel(k: np.ndarray) -> bool:
    """Whether ``k`` (any shape) can be scored as a kernel: finite, with positive mass."""
    return bool(np.all(np.isfinite(k)) and np.clip(k, 0, None).sum() > 0)


def check_format(folder: Path, manifest: Manifest, fmt: str, items: list[dict], refs: list[dict],
                 tol: Tolerance, run: BatchRun | None = None) -> dict:
    """Run ``fmt`` on every item and judge it against ``tol``; never raises for a runtime error.
    ``run`` runs the format (default: :func:`desktop_run`)."""
    art = manifest.artifact(fmt, folder)
    row = {"format": fmt, "runtime": art.runtime, "size_mb": art.size_bytes / 1e6, "tolerance": asdict(tol)}
    stages = manifest.stages
    try:
        t0 = time.perf_counter()
        outs = (run or desktop_run(folder, manifest, fmt))([it["lr"] for it in items])
        row["seconds"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 -- a format that cannot run is a parity failure, reported
        row.update(status="error", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
        return row
    broken = [i for i, o in enumerate(outs) if not is_kernel(o["kernel"])]
    finite = all(np.all(np.isfinite(o["kernel"])) for o in outs)
    kerr = [np.abs(o["kernel"] - r["kernel"]) for o, r in zip(outs, refs)]
    dl1 = [] if broken else [abs(kernel_l1(o["kernel"][0, 0], it["truth"]) - kernel_l1(r["kernel"][0, 0], it["truth"]))
                             for o, r, it in zip(outs, refs, items)]
    per_image = [_stage_errors(o, r, stages) for o, r in zip(outs, refs)]
    rel = {s: max(e[s] for e in per_image) for s in stages}
    row.update(max_abs=float(max(e.max() for e in kerr)) if finite else math.inf,
               mean_abs=float(np.mean([e.mean() for e in kerr])) if finite else math.inf,
               delta_l1=float(np.mean(dl1)) if dl1 else math.inf,
               stage_rel_error=rel, error_grows_at=error_grows_at(rel))
    failures = [f"{m} {row[m]:.3g} > {getattr(tol, m):.3g}" for m in ("max_abs", "delta_l1")
                if getattr(tol, m) is not None and not row[m] <= getattr(tol, m)]
    if broken:
        failures.insert(0, f"no usable kernel (non-finite, or no positive tap) on {len(broken)} of {len(outs)} "
                           f"images, e.g. {items[broken[0]]['stem']}")
    row["status"] = "fail" if failures else "pass"
    if failures:
        row["error"] = "; ".join(failures) + (f"; error first grows at stage {row['error_grows_at']!r}"
                                              if row["error_grows_at"] else "")
    return row


def reference_outputs(manifest: Manifest, testset_root: str | Path, max_images: int | None) -> tuple[list, list]:
    """The test items of an export and the PyTorch reference's stage outputs on each."""
    items = parity_inputs(Path(testset_root) / f"sf{manifest.sf}", manifest.sf, manifest.input_size, max_images)
    reference = TorchRunner(create_model(manifest.model, manifest.sf, manifest.config), manifest.input_size)
    return items, [reference(it["lr"]) for it in items]


def gpu_rows(folder: Path, manifest: Manifest, fmt: str, items: list[dict], refs: list[dict],
             tolerances: dict[str, Tolerance]) -> list[dict]:
    """One parity row per GPU precision for the TFLite format ``fmt`` (every precision
    computed in one accelerator run), with the placement the accelerator reported
    (``gpu_ops``, ``ops_total``, ``refused``)."""
    art = manifest.artifact(fmt, folder)
    runs: dict = {}

    def on_gpu(precision: str) -> BatchRun:
        def run(lrs):
            if not runs:
                runs.update(stage_outputs(folder / art.file, art.inputs, art.outputs, lrs))
            return runs[precision][0]
        return run
    rows = []
    for precision in PRECISIONS:
        name = gpu_row(fmt, precision)
        row = check_format(folder, manifest, fmt, items, refs, tolerances.get(name, Tolerance()), on_gpu(precision))
        if precision in runs:
            where = runs[precision][1]
            row.update(gpu_ops=where.ops_gpu, ops_total=where.ops_total,
                       refused=[f"{r.op}: {r.reason}" for r in where.refused])
        rows.append({**row, "format": name, "runtime": "litert-gpu"})
    return rows


def run_parity(folder: str | Path, testset_root: str | Path, formats: list[str] | None = None,
               tolerances: dict[str, Tolerance] = DEFAULT_TOLERANCES, max_images: int | None = None,
               gpu: bool = True) -> dict:
    """Parity report of an export directory (schema :data:`SCHEMA`); with ``gpu``, every
    TFLite format is also run on LiteRT's GPU accelerator (:func:`gpu_rows`)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    from mobile_kernelnet.models.registry import weights_path

    wpath = weights_path(manifest.model, manifest.config, manifest.sf)
    if sha256(wpath) != manifest.weights_sha256:
        raise ValueError(f"{wpath} differs from the weights {folder} was exported from; re-export")
    formats = formats or list(manifest.artifacts)
    for f in formats:
        manifest.artifact(f, folder)
    items, refs = reference_outputs(manifest, testset_root, max_images)
    rows = [check_format(folder, manifest, f, items, refs, tolerances.get(f, Tolerance())) for f in formats]
    if gpu:
        rows += [r for f in formats if manifest.artifacts[f].runtime == "litert"
                 for r in gpu_rows(folder, manifest, f, items, refs, tolerances)]
    rows += [{"format": f, "status": "error", "error": f"export failed: {v['error']}"}
             for f, v in manifest.failed.items()]
    return parity_report(folder, manifest, testset_root, items, refs, rows)


def parity_report(folder: Path, manifest: Manifest, testset_root: str | Path, items: list[dict],
                  refs: list[dict], rows: list[dict]) -> dict:
    """The report (schema :data:`SCHEMA`) around the per-format ``rows``."""
    return {"schema": SCHEMA, "export": str(folder), "model": manifest.model, "config": manifest.config,
            "sf": manifest.sf, "input_size": manifest.input_size,
            "images": {"n": len(items), "testset": str(testset_root),
                       "fit": {k: sum(it["fit"] == k for it in items) for k in sorted({it["fit"] for it in items})}},
            "reference_l1": float(np.mean([kernel_l1(r["kernel"][0, 0], it["truth"]) for r, it in zip(refs, items)])),
            "formats": rows, "passed": all(r["status"] == "pass" for r in rows)}


def format_parity_table(report: dict) -> str:
    """The report as a terminal table."""
    head = (f"parity: {report['model']} {report['config']} sf{report['sf']} input {report['input_size']}px, "
            f"{report['images']['n']} test images {report['images']['fit']}, reference L1 {report['reference_l1']:.4f}")
    lines = [head, f"{'format':<30} {'status':<6} {'size MB':>8} {'max-abs':>10} {'mean-abs':>10} {'dL1':>8}  note"]
    for r in report["formats"]:
        where = f"GPU {r['gpu_ops']}/{r['ops_total']} ops " if "gpu_ops" in r else ""
        if "max_abs" in r:
            lines.append(f"{r['format']:<30} {r['status']:<6} {r['size_mb']:>8.3f} {r['max_abs']:>10.2e} "
                         f"{r['mean_abs']:>10.2e} {r['delta_l1']:>8.4f}  {where}{r.get('error', '')}")
        else:
            lines.append(f"{r['format']:<30} {r['status']:<6} {'':>8} {'':>10} {'':>10} {'':>8}  "
                         f"{where}{r['error'].splitlines()[0]}")
    return "\n".join(lines)
