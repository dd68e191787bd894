"""`mkn bench DIR`: latency, size, memory and kernel L1 of every artifact of an export.

For each input size (an export is fixed to one size: other sizes are exported once
into ``DIR@SIZE`` beside it and reused while the weights are unchanged) and each
thread count, every target -- the PyTorch reference (``torch-eager``), each ONNX file
in ONNX Runtime (``onnxruntime-cpu``), each TFLite file in LiteRT with XNNPACK
(``litert-xnnpack``) and with the builtin kernels only (``litert-builtin``) -- is
created and run once (``first_inference_ms``), then all targets are run
**interleaved** (one call of each in turn, ``warmup`` then ``runs`` rounds, with a short
idle pause before each call, :data:`PAUSE_S`) so that the machine's noise hits every
target alike; medians and p90 of those runs are kept.

Record fields (schema :data:`SCHEMA`): ``model, config, sf, format, runtime, threads,
input_size, status, latency_ms_median, latency_ms_p90, first_inference_ms, init_ms,
runs, size_mb, peak_memory_mb, kernel_l1, flops, floor_ms, ratio_to_floor``.
``peak_memory_mb`` is the process RSS growth while the target is created and run
once (in-process, so an approximation of its own footprint); ``kernel_l1`` is the
mean L1 against the true kernels of the test set (images fitted to the input size as
in parity); ``floor_ms`` / ``ratio_to_floor`` see :mod:`bench.roofline`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil
from tqdm import tqdm

from export.manifest import read_manifest
from export.parity import parity_inputs
from export.runtimes import Runner, TorchRunner, open_runner
from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.models import create_model
from mobile_kernelnet.models.registry import weights_path

from .roofline import model_flops, sgemm_peak_gflops

SCHEMA = "mkn-bench/1"
RUNTIMES = {"torch": ("torch-eager",), "onnxruntime": ("onnxruntime-cpu",),
            "litert": ("litert-xnnpack", "litert-builtin")}
PAUSE_S = 0.03
"""Idle time before each timed call: ONNX Runtime, OpenMP and XNNPACK worker threads
spin for a while after a run, and without a pause they steal the cores from the next
target of the round (seen here: the TFLite call right after ONNX Runtime's ran ~1.7x
slower at 2 threads than the same file later in the round)."""
KEY = ("model", "config", "sf", "format", "runtime", "threads", "input_size")
"""Fields that identify a record across benchmark runs (the regression gate matches on them)."""


@dataclass(frozen=True)
class Target:
    """One thing to time: a format of an export folder in one runtime."""

    format: str
    runtime: str
    folder: Path

    def runner(self, manifest: dict, threads: int) -> Runner:
        if self.runtime == "torch-eager":
            model = create_model(manifest["model"], manifest["sf"], manifest["config"])
            return TorchRunner(model, manifest["input_size"], threads)
        resolver = "builtin" if self.runtime == "litert-builtin" else "xnnpack"
        return open_runner(self.folder, manifest, self.format, threads, resolver)


def export_for_size(folder: Path, manifest: dict, size: int, progress: Callable[[str], None]) -> Path:
    """The export of ``folder``'s model at input ``size``: ``folder`` itself, or ``folder@size``
    (exported now unless a matching one is there)."""
    if size == manifest["input_size"]:
        return folder
    from export.exporter import export

    dest = folder.with_name(f"{folder.name}@{size}")
    try:
        other = read_manifest(dest)
        same = all(other[k] == manifest[k] for k in ("model", "config", "sf", "weights_sha256"))
        if same and set(manifest["artifacts"]) <= set(other["artifacts"]):
            return dest
    except (OSError, ValueError):
        pass
    progress(f"exporting {manifest['model']} sf{manifest['sf']} at {size} px into {dest}")
    export(manifest["model"], manifest["config"], manifest["sf"], size, list(manifest["artifacts"]), dest,
           overwrite=True, progress=lambda _: None)
    return dest


def targets_of(folder: Path, manifest: dict) -> list[Target]:
    """The PyTorch reference plus every artifact in each runtime it can run in."""
    out = [Target("pytorch", "torch-eager", folder)]
    for fmt, art in manifest["artifacts"].items():
        out += [Target(fmt, rt, folder) for rt in RUNTIMES[art["runtime"]]]
    return out


def kernel_l1_on_testset(runner: Runner, items: list[dict]) -> float:
    """Mean kernel L1 of ``runner`` over parity-style test items."""
    return float(np.mean([kernel_l1(runner(it["lr"])["kernel"][0, 0], it["truth"]) for it in items]))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2 ** 20


def bench_group(targets: list[Target], manifest: dict, threads: int, runs: int, warmup: int,
                l1: dict[tuple[str, str], float], flops: int, bar: tqdm | None = None) -> list[dict]:
    """Time every target at one thread count, interleaved; one record per target."""
    size = manifest["input_size"]
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    floor_ms = flops / (sgemm_peak_gflops(threads) * 1e9) * 1e3
    base = {k: manifest[k] for k in ("model", "config", "sf")}
    records, live = {}, {}
    for t in targets:
        rec = {**base, "format": t.format, "runtime": t.runtime, "threads": threads, "input_size": size,
               "size_mb": (manifest["artifacts"][t.format]["size_bytes"] if t.format != "pytorch" else
                           weights_path(base["model"], base["config"], base["sf"]).stat().st_size) / 1e6,
               "kernel_l1": l1.get((t.format, t.runtime)), "flops": flops, "floor_ms": floor_ms}
        try:
            rss0, t0 = _rss_mb(), time.perf_counter()
            runner = t.runner(manifest, threads)
            t1 = time.perf_counter()
            runner(x)
            t2 = time.perf_counter()
            rec.update(init_ms=(t1 - t0) * 1e3, first_inference_ms=(t2 - t1) * 1e3,
                       peak_memory_mb=max(_rss_mb() - rss0, 0.0))
            live[t] = runner
        except Exception as exc:  # noqa: BLE001 -- a target that cannot run is recorded, not fatal
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}")
        records[t] = rec
    times = {t: [] for t in live}
    for i in range(warmup + runs):
        for t, runner in live.items():
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            runner(x)
            if i >= warmup:
                times[t].append((time.perf_counter() - t0) * 1e3)
        if bar is not None:
            bar.update(1)
    for t, ts in times.items():
        med = float(np.median(ts))
        records[t].update(status="ok", runs=runs, latency_ms_median=med,
                          latency_ms_p90=float(np.percentile(ts, 90)), ratio_to_floor=med / floor_ms)
    return list(records.values())


def run_bench(folder: str | Path, sizes: list[int] | None, threads: list[int], runs: int, warmup: int,
              testset_root: str | Path, max_images: int | None = None,
              on_group: Callable[[list[dict]], None] = lambda recs: None,
              progress: bool = True) -> list[dict]:
    """Benchmark an export directory; ``on_group`` gets every finished group of records
    (one size and thread count) so the caller can save them as they come."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    sizes = sizes or [manifest["input_size"]]
    say = tqdm.write if progress else (lambda _: None)
    records = []
    bar = tqdm(total=len(sizes) * len(threads) * (runs + warmup), desc="bench", unit="round", disable=not progress)
    for size in sizes:
        sub = export_for_size(folder, manifest, size, say)
        sub_manifest = read_manifest(sub)
        targets = targets_of(sub, sub_manifest)
        items = parity_inputs(Path(testset_root) / f"sf{manifest['sf']}", manifest["sf"], size, max_images)
        l1 = {}
        for t in targets:
            try:
                l1[(t.format, t.runtime)] = kernel_l1_on_testset(t.runner(sub_manifest, max(threads)), items)
            except Exception:  # noqa: BLE001 -- the timing pass records the error for this target
                pass
        flops = model_flops(create_model(manifest["model"], manifest["sf"], manifest["config"]), size)
        for n in threads:
            group = bench_group(targets, sub_manifest, n, runs, warmup, l1, flops, bar)
            records += group
            on_group(group)
    bar.close()
    return records


def compare(records: list[dict], baseline: list[dict], max_slowdown: float, max_l1_increase: float) -> dict:
    """Regression gate: match records on :data:`KEY`; a record regresses when its median
    latency exceeds ``max_slowdown`` x the baseline's or its kernel L1 rises by more than
    ``max_l1_increase``, or when it ran in the baseline and fails now."""
    old = {tuple(r[k] for k in KEY): r for r in baseline}
    regressions, matched = [], 0
    for r in records:
        b = old.get(tuple(r[k] for k in KEY))
        if b is None or b.get("status") != "ok":
            continue
        matched += 1
        name = f"{r['format']}/{r['runtime']} {r['threads']}t {r['input_size']}px"
        if r.get("status") != "ok":
            regressions.append(f"{name}: ran in the baseline, now {r.get('status')}: {r.get('error')}")
            continue
        ratio = r["latency_ms_median"] / b["latency_ms_median"]
        if ratio > max_slowdown:
            regressions.append(f"{name}: median {b['latency_ms_median']:.2f} -> {r['latency_ms_median']:.2f} ms "
                               f"(x{ratio:.2f} > x{max_slowdown:.2f})")
        if r.get("kernel_l1") is not None and b.get("kernel_l1") is not None \
                and r["kernel_l1"] - b["kernel_l1"] > max_l1_increase:
            regressions.append(f"{name}: kernel L1 {b['kernel_l1']:.4f} -> {r['kernel_l1']:.4f} "
                               f"(+{r['kernel_l1'] - b['kernel_l1']:.4f} > {max_l1_increase})")
    return {"matched": matched, "regressions": regressions}


def load_baseline(path: str | Path) -> list[dict]:
    """The records of an earlier ``mkn bench`` / ``mkn android bench`` JSON, read before a
    long run so a bad file fails fast: ValueError naming the file when it is not JSON, has
    no ``records`` list, or its records lack the gate's keys (:data:`KEY`)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--baseline {path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--baseline {path}: not a JSON file ({exc})") from None
    records = report.get("records") if isinstance(report, dict) else None
    if not isinstance(records, list) or not records:
        raise ValueError(f"--baseline {path}: no benchmark records in it (expected the --json output of "
                         f"`mkn bench` or `mkn android bench`)")
    missing = sorted({k for r in records for k in (*KEY, "status") if k not in r})
    if missing:
        raise ValueError(f"--baseline {path}: records lack {', '.join(missing)}")
    return records
