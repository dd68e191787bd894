"""Score kernel estimators on the project's test set (`mkn eval`).

Output schema ``mkn-eval/1``::

    {"schema": "mkn-eval/1",
     "results": [{"sf": 2, "testset": {"path", "manifest_sha256", "n"},
                  "models": {"<name>[:<config>]": {
                      "families": {"gaussian": {"n", "l1", "l1_shifted", "d_v", "d_s"}, ...},
                      "overall": {...same keys...},
                      "levels": {"low": {"families": ..., "overall": ...}, ...}}},  # camera split only
                  "per_image": [{"model", "stem", "family", "level", "l1", "l1_shifted", "d_v", "d_s"}]}]}

Each metric is the mean over images (see :mod:`metrics` for the definitions). The SR
report (``mkn-eval-sr/1``) groups the same way: per method, per family and overall, and
on the camera split per level too.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .estimation import estimate
from .kernels import FAMILIES
from .metrics import KERNEL_METRICS, psnr, ssim
from .models.registry import parse_model_spec
from .sr import SRConfig, super_resolve_luma, upscale_bicubic
from .testset import load_hr, load_testset, sha256

SCHEMA = "mkn-eval/1"
SCHEMA_SR = "mkn-eval-sr/1"


def _summary(rows: list[dict]) -> dict:
    out = {"n": len(rows)}
    for m in KERNEL_METRICS:
        out[m] = float(np.mean([r[m] for r in rows])) if rows else float("nan")
    return out


def evaluate_kernels(model_specs: list[str], testset_dir: str | Path, progress: bool = True) -> dict:
    """Score every model on one test-set folder; returns one ``results`` item of the schema."""
    manifest, entries = load_testset(testset_dir)
    sf = manifest["sf"]
    per_image = []
    for spec in model_specs:
        name, config = parse_model_spec(spec)
        for e in tqdm(entries, desc=f"{spec} sf{sf}", disable=not progress, leave=False):
            k_est = estimate(e.lr(), sf=sf, model=name, config=config)
            k_gt = e.kernel()
            row = {"model": spec, "stem": e.stem, "family": e.family, "level": e.level}
            row.update({m: fn(k_est, k_gt) for m, fn in KERNEL_METRICS.items()})
            per_image.append(row)
    models = {spec: _grouped([r for r in per_image if r["model"] == spec], _summary) for spec in model_specs}
    return {"sf": sf, "split": manifest["split"],
            "testset": {"path": str(testset_dir), "n": len(entries),
                        "manifest_sha256": sha256(Path(testset_dir) / "manifest.json")},
            "models": models, "per_image": per_image}


def _grouped(rows: list[dict], summary) -> dict:
    """``{"families": {f: summary}, "overall": summary}`` of ``rows``, plus the same per
    camera level under ``"levels"`` when the rows have levels."""
    def by_family(rs: list[dict]) -> dict:
        fams = [f for f in FAMILIES if any(r["family"] == f for r in rs)]
        return {"families": {f: summary([r for r in rs if r["family"] == f]) for f in fams}, "overall": summary(rs)}

    out = by_family(rows)
    levels = list(dict.fromkeys(r["level"] for r in rows if r.get("level")))
    if levels:
        out["levels"] = {lv: by_family([r for r in rows if r["level"] == lv]) for lv in levels}
    return out


def backend_agreement(spec: str, testset_dir: str | Path) -> dict | None:
    """Largest |k_torch - k_matmul| over the test set for a model with a spectral stage
    (``None`` for models without one): both backends must give the same kernel."""
    from .models import create_model
    from .models.registry import StagedEstimator

    manifest, entries = load_testset(testset_dir, verify=False)
    name, config = parse_model_spec(spec)
    model = create_model(name, manifest["sf"], config)
    if not isinstance(model, StagedEstimator):
        return None
    worst = 0.0
    with torch.inference_mode():
        for e in entries:
            x = torch.from_numpy(e.lr())[None, None]
            ref = model.set_spectral_backend("torch")(x)
            out = model.set_spectral_backend("matmul")(x)
            worst = max(worst, float((out - ref).abs().max()))
    model.set_spectral_backend("torch")
    return {"model": spec, "max_abs_diff": worst, "n": len(entries)}


def evaluate_sr(model_specs: list[str], testset_dir: str | Path, figure: str | Path | None = None,
                progress: bool = True, config: SRConfig = SRConfig()) -> dict:
    """SR quality on one test-set folder: PSNR / SSIM (luma, sf-cropped border) against the
    HR original for bicubic, and for :func:`sr.super_resolve_luma` with the fixed-Gaussian
    kernel, each model's estimated kernel and the true kernel (the upper bound).
    Optionally draws the first entry of every family side by side into ``figure``."""
    manifest, entries = load_testset(testset_dir)
    sf = manifest["sf"]
    methods = ["bicubic", *dict.fromkeys(f"sr:{m}" for m in ["fixed-gaussian", *model_specs]), "sr:true-kernel"]
    rows, shown = [], {}
    for e in tqdm(entries, desc=f"SR sf{sf}", disable=not progress, leave=False):
        hr, lr = load_hr(e.image), e.lr()
        outputs = {}
        for method in methods:
            if method == "bicubic":
                out = upscale_bicubic(lr, sf)
            else:
                spec = method[3:]
                if spec == "true-kernel":
                    k = e.kernel()
                else:
                    name, config_name = parse_model_spec(spec)
                    k = estimate(lr, sf=sf, model=name, config=config_name)
                out = super_resolve_luma(lr, k, sf, config)
            rows.append({"method": method, "stem": e.stem, "family": e.family, "level": e.level,
                         "psnr": psnr(out, hr, sf), "ssim": ssim(out, hr, sf)})
            outputs[method] = out
        if e.family not in shown:
            shown[e.family] = (e.stem, hr, outputs)
    def sr_summary(rs: list[dict]) -> dict:
        return {"n": len(rs), "psnr": float(np.mean([r["psnr"] for r in rs])),
                "ssim": float(np.mean([r["ssim"] for r in rs]))}

    summary = {method: _grouped([r for r in rows if r["method"] == method], sr_summary) for method in methods}
    if figure is not None:
        from .figures import sr_comparison
        sr_comparison(list(shown.values()), sf, figure)
    return {"sf": sf, "split": manifest["split"], "testset": {"path": str(testset_dir), "n": len(entries)},
            "sr_config": asdict(config),
            "methods": summary, "per_image": rows, "figure": str(figure) if figure else None}


def _table_groups(m: dict) -> list[tuple[str, dict]]:
    """``(label, {"families", "overall"})`` rows to print: all images, then each level."""
    return [("all", m)] + list(m.get("levels", {}).items())


def format_sr_table(result: dict) -> str:
    """Mean PSNR / SSIM per method and family (and per camera level)."""
    groups = [*FAMILIES, "overall"]
    head = f"{'method':<24} {'level':<7}" + "".join(f" {g:>16}" for g in groups)
    lines = [f"sf {result['sf']} {result['split']} split — SR PSNR dB / SSIM (luma, {result['sf']}-px border "
             f"cropped), {result['testset']['n']} images; higher is better", head, "-" * len(head)]
    for method, m in result["methods"].items():
        for level, g in _table_groups(m):
            cells = {**g["families"], "overall": g["overall"]}
            lines.append(f"{method:<24} {level:<7}" + "".join(
                f" {cells[c]['psnr']:>8.2f} / {cells[c]['ssim']:.3f}" if c in cells else f" {'-':>16}"
                for c in groups))
    return "\n".join(lines)


def format_table(result: dict) -> str:
    """A readable table of one ``results`` item: a row per model, level and family."""
    head = f"{'model':<22} {'level':<7} {'family':<9} {'n':>3} {'L1':>7} {'L1-shift':>8} {'D_v':>9} {'D_s':>8}"
    lines = [f"sf {result['sf']} {result['split']} split — kernel error on {result['testset']['n']} test images "
             f"({result['testset']['path']}); lower is better", head, "-" * len(head)]
    for spec, m in result["models"].items():
        for level, g in _table_groups(m):
            for fam, s in list(g["families"].items()) + [("overall", g["overall"])]:
                lines.append(f"{spec:<22} {level:<7} {fam:<9} {s['n']:>3} {s['l1']:>7.4f} {s['l1_shifted']:>8.4f} "
                             f"{s['d_v']:>9.6f} {s['d_s']:>8.3f}")
    for b in result.get("backend_agreement", []):
        lines.append(f"{b['model']}: torch vs matmul spectral backend, max |dk| = {b['max_abs_diff']:.2e} "
                     f"over {b['n']} images")
    return "\n".join(lines)
