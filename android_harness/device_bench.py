"""`mkn android bench`: each exported ``.tflite`` on a phone with TensorFlow Lite's
``benchmark_model``, per delegate and thread count, into ``mkn bench`` records.

Flow: check the binary against the device ABI, make a working folder under
``/data/local/tmp``, push the binary and the models, run every (format, delegate,
threads) job (pinned with ``taskset`` when ``cores`` asks), parse each output
(:mod:`android_harness.parse`) and hand every finished record to ``on_record`` so
the caller can save them atomically. A failing job is recorded as ``error`` with the
tool's own words; a lost device or a hung run stops the remaining jobs, which stay
``not run``. The working folder is removed unless ``keep``.
"""
from __future__ import annotations

import contextlib
import shlex
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from bench.records import BenchRecord
from export.manifest import Manifest, placement, read_manifest

from .adb import Adb
from .errors import AdbError, AdbTimeout, DeviceNotReady, HarnessError
from .parse import BenchmarkOutputError, parse_benchmark_model
from .stats import summarize

DELEGATE_FLAGS = {
    "cpu": "--use_xnnpack=false",
    "xnnpack": "--use_xnnpack=true",
    "gpu": "--use_gpu=true",
    "nnapi": "--use_nnapi=true",
}
DELEGATE_NAMES = {"xnnpack": "TfLiteXNNPackDelegate", "gpu": "TfLiteGpuDelegateV2", "nnapi": "TfLiteNnapiDelegate"}
ELF_MACHINES = {"arm64-v8a": 183, "armeabi-v7a": 40, "armeabi": 40, "x86_64": 62, "x86": 3}
REMOTE_ROOT = "/data/local/tmp"


def check_binary(path: Path, abi: str) -> str:
    """Refuse a ``benchmark_model`` that cannot run on a device of ``abi``: missing, not
    an ELF executable nor a ``#!`` script, or an ELF for another machine. Returns its kind."""
    if not path.is_file():
        raise HarnessError(f"benchmark binary {path} does not exist")
    head = path.read_bytes()[:20]
    if head.startswith(b"#!"):
        return "script"
    if not head.startswith(b"\x7fELF"):
        raise HarnessError(f"{path} is not an executable (no ELF header): get benchmark_model for "
                           f"{abi} (see the README, 'On a phone')")
    endian = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], endian)
    want = ELF_MACHINES.get(abi)
    if want is not None and machine != want:
        have = next((a for a, m in ELF_MACHINES.items() if m == machine), f"ELF machine {machine}")
        raise HarnessError(f"{path} is built for {have}, but the device ABI is {abi}")
    return "elf"


def core_mask(cpu_max_khz: list[int], cores: str) -> str | None:
    """``taskset`` hex mask for ``cores``: ``all`` (no pinning), ``big`` (the cores with
    the highest max frequency) or a comma list of core numbers."""
    if cores == "all":
        return None
    if cores == "big":
        if not cpu_max_khz or max(cpu_max_khz) == 0:
            raise HarnessError("cannot find the big cores: the device reports no cpufreq limits")
        chosen = [i for i, f in enumerate(cpu_max_khz) if f == max(cpu_max_khz)]
    else:
        try:
            chosen = [int(c) for c in cores.split(",")]
        except ValueError:
            raise HarnessError(f"--cores must be all, big or core numbers like 4,5,6,7; got {cores!r}")
    return format(sum(1 << i for i in chosen), "x")


def litert_formats(manifest: Manifest, delegates: list[str]) -> list[str]:
    """The export's TFLite formats; :class:`HarnessError` for an unknown delegate or none."""
    unknown = [d for d in delegates if d not in DELEGATE_FLAGS]
    if unknown:
        raise HarnessError(f"unknown delegate(s) {unknown}; choose from {', '.join(DELEGATE_FLAGS)}")
    tflites = [f for f, a in manifest.artifacts.items() if a.runtime == "litert"]
    if not tflites:
        raise HarnessError("the export directory has no .tflite files")
    return tflites


def plan_jobs(manifest: Manifest, delegates: list[str], threads: list[int]) -> list[BenchRecord]:
    """One pending record per (TFLite format, delegate, threads)."""
    return [BenchRecord(manifest.model, manifest.config, manifest.sf, f, f"android-{d}", t, manifest.input_size)
            .update(delegate=d, size_mb=manifest.artifacts[f].size_bytes / 1e6, **placement(manifest.artifacts[f]))
            for f in litert_formats(manifest, delegates) for d in delegates for t in threads]


@contextlib.contextmanager
def remote_workdir(adb: Adb, prefix: str, binary: Path, name: str, keep: bool) -> Iterator[tuple[str, str]]:
    """A fresh folder under ``/data/local/tmp`` holding ``binary`` as an executable ``name``;
    yields ``(folder, binary path)`` and removes the folder afterwards unless ``keep``."""
    work = f"{REMOTE_ROOT}/{prefix}-{uuid.uuid4().hex[:8]}"
    try:
        adb.shell(["mkdir", "-p", work])
        adb.push(binary, f"{work}/{name}")
        adb.shell(["chmod", "755", f"{work}/{name}"])
        yield work, f"{work}/{name}"
    finally:
        if not keep:
            try:
                adb.shell(["rm", "-rf", work], timeout_s=30)
            except AdbError:
                pass  # the device is gone; nothing to clean


def _invoke(adb: Adb, argv: list[str], delegate: str, timeout_s: float) -> dict:
    """One ``benchmark_model`` invocation, parsed (:class:`BenchmarkOutputError` on a
    failing or unreadable run; :class:`DeviceNotReady` when the phone went away)."""
    proc = adb.shell(argv, timeout_s=timeout_s, check=False)
    if not (proc.stdout or proc.stderr):
        adb.still_there()
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise BenchmarkOutputError(f"benchmark_model exited {proc.returncode}: "
                                   + " | ".join(out.strip().splitlines()[-3:]))
    parsed = parse_benchmark_model(out)
    coverage = [d for d in parsed["delegates"] if d["delegate"] == DELEGATE_NAMES.get(delegate)]
    parsed["delegate_coverage"] = (coverage[0]["nodes"] / coverage[0]["of"]) if coverage else 0.0
    return parsed


def run_device_bench(adb: Adb, export_dir: str | Path, binary: str | Path, delegates: list[str],
                     threads: list[int], cores: str = "all", runs: int = 50, warmup: int = 5,
                     timeout_s: float = 600, keep: bool = False, facts: dict | None = None,
                     on_record: Callable[[list[BenchRecord]], None] = lambda recs: None, repeats: int = 3,
                     cooldown_s: float = 0.0, sustained_s: float | None = None) -> tuple[dict, list[BenchRecord]]:
    """Benchmark every ``.tflite`` of ``export_dir`` on ``adb``'s device (``facts``: its
    :meth:`Adb.facts`, read here if not given). Each job runs ``repeats`` invocations (or,
    with ``sustained_s``, invocations until that many seconds have passed), ``cooldown_s``
    apart, summarised by :func:`stats.summarize`. Returns ``(device facts, records)``;
    raises :class:`DeviceNotReady` / :class:`AdbTimeout` after recording what finished
    when the device is lost or a run hangs."""
    export_dir, binary = Path(export_dir), Path(binary)
    manifest = read_manifest(export_dir)
    records = plan_jobs(manifest, delegates, threads)
    facts = facts or adb.facts()
    check_binary(binary, facts["abi"])
    mask = core_mask(facts["cpu_max_khz"], cores)
    facts["pinned_cores_mask"] = mask
    first = True
    with remote_workdir(adb, "mkn", binary, "benchmark_model", keep) as (work, remote_bin):
        for fmt in {r.format for r in records}:
            adb.push(export_dir / manifest.artifacts[fmt].file, f"{work}/{manifest.artifacts[fmt].file}")
        for rec in records:
            delegate = rec.extra["delegate"]
            argv = (["taskset", mask] if mask else []) + [
                remote_bin, f"--graph={work}/{manifest.artifacts[rec.format].file}", f"--num_threads={rec.threads}",
                f"--num_runs={runs}", f"--warmup_runs={warmup}", "--report_peak_memory_footprint=true",
                DELEGATE_FLAGS[delegate]]
            rec.update(command=shlex.join(argv))
            invocations, start = [], time.monotonic()
            try:
                while not invocations or (time.monotonic() - start < sustained_s if sustained_s
                                          else len(invocations) < repeats):
                    if cooldown_s and not first:
                        time.sleep(cooldown_s)
                    first = False
                    invocations.append({**_invoke(adb, argv, delegate, timeout_s),
                                        "t_s": time.monotonic() - start})
                rec.update(**summarize(invocations), status="ok")
            except (DeviceNotReady, AdbTimeout) as exc:
                rec.update(status="error", error=str(exc))
                on_record(records)
                raise
            except BenchmarkOutputError as exc:
                rec.update(status="error", error=str(exc))
            on_record(records)
    return facts, records
