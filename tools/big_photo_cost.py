"""Wall time and peak memory of `mkn estimate` (and `mkn sr`) on a 24 MP photo:
results/big_photo_cost.json.

The photo: PyWavelets' packaged ``ascent`` (512 x 512, never the test gallery) resized to
6000 x 4000 (bicubic) with Gaussian noise of sigma 2/255, written as an 8-bit gray PNG.
Each command runs ``--repeats`` times as its own process (cold start, imports included,
as a user meets it); wall time from the parent, peak resident memory from the child's
``rusage`` (``ru_maxrss``). Linux carries a process's peak across ``fork`` and ``exec``, so
the photo is made in a child process too and the parent stays small (~100 MB: a floor
under every reading). Records the medians and every run.

Usage: ``python tools/big_photo_cost.py --export DIR [--repeats 3] [--sr] [--json PATH]``;
``DIR`` is an sf 2 KernelNet export (its ONNX DFT and TFLite fp32 files are timed).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pywt
from PIL import Image

from export.manifest import read_manifest
from mobile_kernelnet.imio import write_json, write_png

SHAPE = (4000, 6000)
FILE_FORMATS = ("onnx-dft", "tflite-fp32")


def make_photo(path: Path) -> None:
    """The 6000 x 4000 gray test photo (module docstring)."""
    ascent = Image.fromarray(pywt.data.ascent().astype(np.float32))
    big = np.asarray(ascent.resize(SHAPE[::-1], Image.BICUBIC), np.float32) / 255
    noise = np.random.default_rng(0).normal(0, 2 / 255, SHAPE).astype(np.float32)
    write_png(path, np.clip(big + noise, 0, 1))


def run_once(argv: list[str]) -> dict:
    """Run ``argv`` as a child process: ``{"seconds", "peak_mb"}``; raises on a non-zero exit.
    The child's stderr (progress bars) goes to a file, not a pipe nobody reads until the
    end: a long `mkn sr` would fill a pipe's buffer and block."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed: {err.read().decode(errors='replace')[-2000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def measure(name: str, argv: list[str], repeats: int) -> dict:
    """Median wall time and peak memory of ``repeats`` runs of ``argv``."""
    runs = [run_once(argv) for _ in range(repeats)]
    row = {"command": name, "runs": runs,
           "seconds_median": statistics.median(r["seconds"] for r in runs),
           "peak_mb_median": statistics.median(r["peak_mb"] for r in runs)}
    print(f"{name:40s} {row['seconds_median']:7.2f} s {row['peak_mb_median']:8.0f} MB", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="an sf 2 KernelNet export folder")
    ap.add_argument("--make-photo", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sr", action="store_true", help="also time `mkn sr` once (minutes)")
    ap.add_argument("--json", type=Path, default=Path("results/big_photo_cost.json"))
    args = ap.parse_args()
    if args.make_photo:
        return make_photo(args.make_photo)
    if args.export is None:
        ap.error("--export is required")
    manifest = read_manifest(args.export)
    mkn = [sys.executable, "-m", "mobile_kernelnet.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo_6000x4000.png"
        subprocess.run([sys.executable, __file__, "--make-photo", str(photo)], check=True)
        jobs = {"estimate (PyTorch kernelnet)": ["estimate", str(photo), "--sf", "2", "--out", f"{tmp}/torch"]}
        for fmt in FILE_FORMATS:
            jobs[f"estimate ({fmt}, {manifest.input_size} px)"] = [
                "estimate", str(photo), "--sf", "2", "--format", fmt, "--out", f"{tmp}/{fmt}",
                "--model-file", str(args.export / manifest.artifacts[fmt].file)]
        rows = [measure(name, mkn + argv, args.repeats) for name, argv in jobs.items()]
        if args.sr:
            rows.append(measure("sr (PyTorch kernelnet)", mkn + ["sr", str(photo), "--sf", "2", "--out",
                                                                  f"{tmp}/sr.png"], 1))
    write_json({"photo": {"shape": list(SHAPE), "source": "pywt ascent, bicubic, noise 2/255"},
                "export": str(args.export), "parent_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "cpus": os.cpu_count(), "rows": rows}, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
