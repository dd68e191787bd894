"""`mkn bench DIR`: latency, size, memory and kernel L1 of every artifact of an export.

For each input size (an export is fixed to one size: other sizes are exported once
into ``DIR@SIZE`` beside it and reused while the weights are unchanged) and each
thread count, every target -- the PyTorch reference (``torch-eager``), each ONNX file
in ONNX Runtime (``onnxruntime-cpu``), each TFLite file in LiteRT with XNNPACK
(``litert-xnnpack``) and with the builtin kernels only (``litert-builtin``) -- gets
**its own worker process** (:func:`_worker`), which creates the runner and runs it once
(``first_inference_ms``). The workers are then driven **interleaved** (one turn of each
in turn, ``warmup`` then ``runs`` rounds, with a short idle pause before each turn,
:data:`PAUSE_S`; the others wait on their pipe meanwhile), so that the machine's noise
hits every target alike while no two targets share a process, an allocator or a
thread pool. A turn is **a block of** :data:`TURN_CALLS` **calls back to back**: the first,
after the target sat idle for a round, wakes its runtime's worker threads (kept as
``extra["cold_latency_ms_median"]``); the median of the others is the turn's steady-state
latency (``latency_ms_median`` / ``latency_ms_p90`` over turns, what TFLite's
``benchmark_model`` and ONNX Runtime's perf test time). On this 2-core VM the cold call of
a ~1 ms graph at 2 threads takes about 1.4 ms longer, and with two calls per turn the
second one of a 2-thread 5 ms graph was itself bimodal when another target's worker
alternated with it (NOTES.md).

Busy machine: the sgemm peak (:func:`roofline.sgemm_peak_gflops`, compute) and the copy
bandwidth (:func:`roofline.copy_bandwidth_gbs`, memory: what these small-op graphs are
bound by) are measured at the start and at the end of the run. When either moved by
more than :data:`BUSY_CHANGE`, or a float record ran faster than its floor
(``ratio_to_floor < 1``, impossible on a quiet machine; integer kernels can beat a float
floor), the records are marked ``busy: true`` with the reason and `mkn bench` warns.

Records are :class:`bench.records.BenchRecord` (schema :data:`SCHEMA`), with ``pid``
(the worker process that ran it) in their ``extra``. ``peak_memory_mb`` is the worker's
RSS growth while the target is created and run once; ``kernel_l1`` is the mean L1
against the true kernels of the test set (images fitted to the input size as in
parity); ``floor_ms`` / ``ratio_to_floor`` see :mod:`bench.roofline` (the floor uses
the faster of the two sgemm measurements).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil
from tqdm import tqdm

from export.formats import FORMATS, computes_in_integer
from export.manifest import Manifest, placement, read_manifest
from export.parity import parity_inputs
from export.runtimes import Runner, TorchRunner, open_runner
from mobile_kernelnet.metrics import kernel_l1
from mobile_kernelnet.models import create_model
from mobile_kernelnet.models.registry import weights_path

from .records import BenchRecord
from .roofline import copy_bandwidth_gbs, floor_ms as roofline_floor_ms, model_flops, sgemm_peak_gflops

SCHEMA = "mkn-bench/1"
TURN_CALLS = 5
"""Calls per turn: one cold, the median of the rest timed (module docstring)."""
PAUSE_S = 0.03
"""Idle time before each timed call: ONNX Runtime, OpenMP and XNNPACK worker threads
spin for a while after a run, and without a pause they steal the cores from the next
target of the round (seen here: the TFLite call right after ONNX Runtime's ran ~1.7x
slower at 2 threads than the same file later in the round)."""
BUSY_CHANGE = 0.20
"""Relative change of the sgemm peak or the copy bandwidth between a run's start and end
that marks it busy."""


@dataclass(frozen=True)
class Target:
    """One thing to time: a format of an export folder in one runtime."""

    format: str
    runtime: str
    folder: Path

    def runner(self, manifest: Manifest, threads: int) -> Runner:
        if self.runtime == "torch-eager":
            return TorchRunner(create_model(manifest.model, manifest.sf, manifest.config), manifest.input_size, threads)
        resolver = "builtin" if self.runtime == "litert-builtin" else "xnnpack"
        return open_runner(self.folder, manifest, self.format, threads, resolver)


def export_for_size(folder: Path, manifest: Manifest, size: int, progress: Callable[[str], None]) -> Path:
    """The export of ``folder``'s model at input ``size``: ``folder`` itself, or ``folder@size``
    (exported now unless a matching one is there)."""
    if size == manifest.input_size:
        return folder
    from export.exporter import export

    dest = folder.with_name(f"{folder.name}@{size}")
    try:
        other = read_manifest(dest)
        if manifest.same_weights(other) and set(manifest.artifacts) <= set(other.artifacts):
            return dest
    except (OSError, ValueError):
        pass
    progress(f"exporting {manifest.model} sf{manifest.sf} at {size} px into {dest}")
    export(manifest.model, manifest.config, manifest.sf, size, list(manifest.artifacts), dest,
           overwrite=True, progress=lambda _: None)
    return dest


def targets_of(folder: Path, manifest: Manifest) -> list[Target]:
    """The PyTorch reference plus every artifact in each runtime it can run in."""
    out = [Target("pytorch", "torch-eager", folder)]
    for fmt in manifest.artifacts:
        out += [Target(fmt, rt, folder) for rt in FORMATS[fmt].bench_runtimes]
    return out


def kernel_l1_on_testset(runner: Runner, items: list[dict]) -> float:
    """Mean kernel L1 of ``runner`` over parity-style test items."""
    return float(np.mean([kernel_l1(runner(it["lr"])["kernel"][0, 0], it["truth"]) for it in items]))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2 ** 20


def _worker(conn, target: Target, manifest: Manifest, threads: int) -> None:
    """Worker process of one target: create the runner, run it once and report
    ``init_ms`` / ``first_inference_ms`` / ``peak_memory_mb`` (or ``error``); then per
    ``"run"`` message, until ``"stop"``, time :data:`TURN_CALLS` calls back to back and reply
    ``(cold, steady)`` ms: the first call's time and the median of the others'."""
    size = manifest.input_size
    x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
    try:
        rss0, t0 = _rss_mb(), time.perf_counter()
        runner = target.runner(manifest, threads)
        t1 = time.perf_counter()
        runner(x)
        t2 = time.perf_counter()
        conn.send({"init_ms": (t1 - t0) * 1e3, "first_inference_ms": (t2 - t1) * 1e3,
                   "peak_memory_mb": max(_rss_mb() - rss0, 0.0), "pid": os.getpid()})
    except Exception as exc:  # noqa: BLE001 -- a target that cannot run is recorded, not fatal
        conn.send({"status": "error", "error": f"{type(exc).__name__}: {exc}"})
        return
    while conn.recv() == "run":
        calls_ms = []
        for _ in range(TURN_CALLS):
            t0 = time.perf_counter()
            runner(x)
            calls_ms.append((time.perf_counter() - t0) * 1e3)
        conn.send((calls_ms[0], float(np.median(calls_ms[1:]))))


def bench_group(targets: list[Target], manifest: Manifest, threads: int, runs: int, warmup: int,
                l1: dict[tuple[str, str], float], flops: int, peak_gflops: float,
                bar: tqdm | None = None) -> list[BenchRecord]:
    """Time every target at one thread count, one worker process each, interleaved; one
    record per target. ``peak_gflops``: the sgemm peak the floor is computed from."""
    floor_ms = roofline_floor_ms(flops, peak_gflops)
    weights_mb = weights_path(manifest.model, manifest.config, manifest.sf).stat().st_size / 1e6
    ctx = mp.get_context("spawn")
    records, live = {}, {}
    try:
        for t in targets:
            art = manifest.artifacts.get(t.format)
            rec = BenchRecord(manifest.model, manifest.config, manifest.sf, t.format, t.runtime, threads,
                              manifest.input_size).update(
                size_mb=art.size_bytes / 1e6 if art else weights_mb, kernel_l1=l1.get((t.format, t.runtime)),
                flops=flops, floor_ms=floor_ms, **placement(art))
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, t, manifest, threads), daemon=True)
            proc.start()
            rec.update(**here.recv())
            if rec.status != "error":
                live[t] = (here, proc)
            records[t] = rec
        times = {t: [] for t in live}
        for i in range(warmup + runs):
            for t, (conn, _) in live.items():
                time.sleep(PAUSE_S)
                conn.send("run")
                cold_warm = conn.recv()
                if i >= warmup:
                    times[t].append(cold_warm)
            if bar is not None:
                bar.update(1)
    finally:
        for conn, proc in live.values():
            if proc.is_alive():
                conn.send("stop")
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    for t, pairs in times.items():
        cold, warm = np.asarray(pairs).T
        med = float(np.median(warm))
        records[t].update(status="ok", runs=runs, latency_ms_median=med,
                          latency_ms_p90=float(np.percentile(warm, 90)), ratio_to_floor=med / floor_ms)
        records[t].extra["cold_latency_ms_median"] = float(np.median(cold))
    return list(records.values())


def busy_reasons(peaks_start: dict[int, float], peaks_end: dict[int, float],
                 records: list[BenchRecord], copy_gbs: tuple[float, float] | None = None) -> list[str]:
    """Why a run's timings cannot be trusted (empty when the machine looked quiet): the
    sgemm peak (per thread count) or the copy bandwidth ``(start, end)`` GB/s moved by more
    than :data:`BUSY_CHANGE` between start and end, or a float record ran faster than its
    floor (the floor is float sgemm's: integer kernels may beat it)."""
    reasons = [f"sgemm peak at {n} thread(s) moved {peaks_start[n]:.0f} -> {peaks_end[n]:.0f} GFLOP/s"
               for n in peaks_start if abs(peaks_end[n] / peaks_start[n] - 1) > BUSY_CHANGE]
    if copy_gbs is not None and abs(copy_gbs[1] / copy_gbs[0] - 1) > BUSY_CHANGE:
        reasons.append(f"copy bandwidth moved {copy_gbs[0]:.1f} -> {copy_gbs[1]:.1f} GB/s")
    reasons += [f"{r.name} ran below its floor (ratio {r.ratio_to_floor:.2f})" for r in records
                if r.ok and r.ratio_to_floor < 1 and not computes_in_integer(r.format)]
    return reasons


def run_bench(folder: str | Path, sizes: list[int] | None, threads: list[int], runs: int, warmup: int,
              testset_root: str | Path, max_images: int | None = None,
              on_group: Callable[[list[BenchRecord]], None] = lambda recs: None,
              progress: bool = True) -> tuple[list[BenchRecord], dict]:
    """Benchmark an export directory; ``on_group`` gets every finished group of records
    (one size and thread count) so the caller can save them as they come. Returns the
    records (each marked ``busy``) and the machine check: ``{"sgemm_gflops_start",
    "sgemm_gflops_end", "copy_gbs_start", "copy_gbs_end", "busy_reasons"}``."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    sizes = sizes or [manifest.input_size]
    say = tqdm.write if progress else (lambda _: None)
    peaks_start, copy_start = {n: sgemm_peak_gflops(n) for n in threads}, copy_bandwidth_gbs()
    records = []
    bar = tqdm(total=len(sizes) * len(threads) * (runs + warmup), desc="bench", unit="round", disable=not progress)
    for size in sizes:
        sub = export_for_size(folder, manifest, size, say)
        sub_manifest = read_manifest(sub)
        targets = targets_of(sub, sub_manifest)
        items = parity_inputs(Path(testset_root) / f"sf{manifest.sf}", manifest.sf, size, max_images)
        l1 = {}
        for t in targets:
            try:
                l1[(t.format, t.runtime)] = kernel_l1_on_testset(t.runner(sub_manifest, max(threads)), items)
            except Exception:  # noqa: BLE001 -- the timing pass records the error for this target
                pass
        flops = model_flops(create_model(manifest.model, manifest.sf, manifest.config), size)
        for n in threads:
            group = bench_group(targets, sub_manifest, n, runs, warmup, l1, flops, peaks_start[n], bar)
            records += group
            on_group(group)
    bar.close()
    peaks_end, copy_end = {n: sgemm_peak_gflops(n) for n in threads}, copy_bandwidth_gbs()
    for r in records:  # the floor from the faster of the two measurements
        if r.ok:
            r.floor_ms = roofline_floor_ms(r.flops, max(peaks_start[r.threads], peaks_end[r.threads]))
            r.ratio_to_floor = r.latency_ms_median / r.floor_ms
    reasons = busy_reasons(peaks_start, peaks_end, records, (copy_start, copy_end))
    for r in records:
        r.busy = bool(reasons)
    return records, {"sgemm_gflops_start": {str(n): v for n, v in peaks_start.items()},
                     "sgemm_gflops_end": {str(n): v for n, v in peaks_end.items()},
                     "copy_gbs_start": copy_start, "copy_gbs_end": copy_end, "busy_reasons": reasons}


def compare(records: list[BenchRecord], baseline: list[BenchRecord], max_slowdown: float,
            max_l1_increase: float) -> dict:
    """Regression gate: match records on :attr:`BenchRecord.key`; a record regresses when its median
    latency exceeds ``max_slowdown`` x the baseline's (with 95 % intervals on both sides, as
    phone records have: when its interval's low end exceeds that x the baseline's high end) or its
    kernel L1 rises by more than ``max_l1_increase``, or when it ran in the baseline and fails now."""
    old = {r.key: r for r in baseline}
    regressions, matched = [], 0
    for r in records:
        b = old.get(r.key)
        if b is None or not b.ok:
            continue
        matched += 1
        if not r.ok:
            regressions.append(f"{r.name}: ran in the baseline, now {r.status}: {r.error}")
            continue
        if r.latency_ms_median_ci95 and b.latency_ms_median_ci95:
            # intervals: the new run's fastest plausible median against the old one's slowest
            ratio = r.latency_ms_median_ci95[0] / b.latency_ms_median_ci95[1]
            what = (f"median 95% interval [{b.latency_ms_median_ci95[0]:.2f}, {b.latency_ms_median_ci95[1]:.2f}]"
                    f" -> [{r.latency_ms_median_ci95[0]:.2f}, {r.latency_ms_median_ci95[1]:.2f}] ms")
        else:
            ratio = r.latency_ms_median / b.latency_ms_median
            what = f"median {b.latency_ms_median:.2f} -> {r.latency_ms_median:.2f} ms"
        if ratio > max_slowdown:
            regressions.append(f"{r.name}: {what} (x{ratio:.2f} > x{max_slowdown:.2f})")
        if r.kernel_l1 is not None and b.kernel_l1 is not None and r.kernel_l1 - b.kernel_l1 > max_l1_increase:
            regressions.append(f"{r.name}: kernel L1 {b.kernel_l1:.4f} -> {r.kernel_l1:.4f} "
                               f"(+{r.kernel_l1 - b.kernel_l1:.4f} > {max_l1_increase})")
    return {"matched": matched, "regressions": regressions}


def bench_document(machine: dict, export_dir: str | Path, complete: bool, records: list[BenchRecord]) -> dict:
    """The ``mkn bench --json`` document (schema :data:`SCHEMA`)."""
    return {"schema": SCHEMA, "machine": machine, "export": str(export_dir), "complete": complete,
            "records": [r.to_json() for r in records]}


def load_baseline(path: str | Path) -> list[BenchRecord]:
    """The records of an earlier ``mkn bench`` / ``mkn android bench`` JSON, read before a
    long run so a bad file fails fast: ValueError naming the file when it is not JSON, has
    no ``records`` list, or a record is not a valid :class:`BenchRecord`."""
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
    return [BenchRecord.from_json(r, f"--baseline {path} record {i}") for i, r in enumerate(records)]
