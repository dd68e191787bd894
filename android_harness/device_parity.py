"""`mkn android parity`: each ``.tflite`` run on the phone on test images, compared with
the desktop PyTorch reference at the export issue's tolerances (:mod:`export.parity`).

The device side is a small runner the user supplies (the README shows the contract;
``tests/fake_android/runner_standin.py`` is a host implementation with LiteRT)::

    RUNNER --graph=MODEL.tflite --input=IN.raw --output_dir=DIR --num_threads=N [delegate flag]

It reads ``IN.raw`` (float32, little-endian, the model input's shape and layout), runs
the model once and writes every signature output as ``DIR/<name>.raw`` (float32). The
delegate flags are ``benchmark_model``'s (``--use_xnnpack=``, ``--use_gpu=true``,
``--use_nnapi=true``).
"""
from __future__ import annotations

import shlex
import tempfile
import uuid
from pathlib import Path

import numpy as np

from export.manifest import read_manifest
from export.parity import DEFAULT_TOLERANCES, SCHEMA, Tolerance, check_format, reference_outputs
from export.runtimes import Runner, from_file_layout, to_file_layout
from mobile_kernelnet.metrics import kernel_l1

from .adb import Adb, AdbError
from .device_bench import DELEGATE_FLAGS, REMOTE_ROOT, HarnessError, check_binary


class DeviceRunner(Runner):
    """One exported ``.tflite`` run on the device through the user's runner binary."""

    def __init__(self, adb: Adb, artifact: dict, remote_runner: str, remote_model: str, work: str,
                 delegate: str, threads: int, timeout_s: float):
        super().__init__(artifact)
        self.adb, self.runner, self.model, self.work = adb, remote_runner, remote_model, work
        self.flag, self.threads, self.timeout_s = DELEGATE_FLAGS[delegate], threads, timeout_s

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        lr = self.check_input(lr)
        out_dir = f"{self.work}/out"
        with tempfile.TemporaryDirectory() as tmp:
            local_in = Path(tmp) / "in.raw"
            to_file_layout(lr, self.input["layout"]).astype("<f4").tofile(local_in)
            self.adb.push(local_in, f"{self.work}/in.raw")
            self.adb.shell(f"rm -rf {out_dir} && mkdir -p {out_dir}")
            proc = self.adb.shell(" ".join([shlex.quote(self.runner), f"--graph={self.model}",
                                            f"--input={self.work}/in.raw", f"--output_dir={out_dir}",
                                            f"--num_threads={self.threads}", self.flag]),
                                  timeout_s=self.timeout_s, check=False)
            if proc.returncode != 0:
                raise HarnessError(f"runner exited {proc.returncode}: "
                                   + " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:]))
            result = {}
            for o in self.artifact["outputs"]:
                local = Path(tmp) / f"{o['tensor']}.raw"
                self.adb.pull(f"{out_dir}/{o['tensor']}.raw", local)
                data = np.fromfile(local, dtype="<f4")
                if data.size != int(np.prod(o["shape"])):
                    raise HarnessError(f"runner wrote {data.size} values for {o['name']}, expected shape {o['shape']}")
                result[o["name"]] = from_file_layout(data.reshape(o["shape"]), o["layout"])
            return result


def run_device_parity(adb: Adb, export_dir: str | Path, runner_binary: str | Path, testset_root: str | Path,
                      delegates: list[str], threads: int = 1, max_images: int | None = None,
                      tolerances: dict[str, Tolerance] = DEFAULT_TOLERANCES, timeout_s: float = 600,
                      keep: bool = False) -> dict:
    """Parity report (``mkn parity`` schema, one row per format and delegate) from the device."""
    export_dir, runner_binary = Path(export_dir), Path(runner_binary)
    manifest = read_manifest(export_dir)
    tflites = [f for f, a in manifest["artifacts"].items() if a["runtime"] == "litert"]
    unknown = [d for d in delegates if d not in DELEGATE_FLAGS]
    if unknown or not tflites:
        raise HarnessError(f"unknown delegate(s) {unknown}" if unknown else "the export has no .tflite files")
    facts = adb.facts()
    check_binary(runner_binary, facts["abi"])
    items, refs = reference_outputs(manifest, testset_root, max_images)
    work = f"{REMOTE_ROOT}/mkn-parity-{uuid.uuid4().hex[:8]}"
    rows = []
    try:
        adb.shell(f"mkdir -p {work}")
        adb.push(runner_binary, f"{work}/runner")
        adb.shell(f"chmod 755 {work}/runner")
        for fmt in tflites:
            art = manifest["artifacts"][fmt]
            adb.push(export_dir / art["file"], f"{work}/{art['file']}")
            for delegate in delegates:
                def make(art=art, delegate=delegate):
                    return DeviceRunner(adb, art, f"{work}/runner", f"{work}/{art['file']}", work, delegate,
                                        threads, timeout_s)
                row = check_format(export_dir, manifest, fmt, items, refs, tolerances.get(fmt, Tolerance()), make)
                row.update(format=f"{fmt}@{delegate}", delegate=delegate)
                rows.append(row)
    finally:
        if not keep:
            try:
                adb.shell(f"rm -rf {work}", timeout_s=30)
            except AdbError:
                pass
    return {"schema": SCHEMA, "export": str(export_dir), "device": facts, "model": manifest["model"],
            "config": manifest["config"], "sf": manifest["sf"], "input_size": manifest["input_size"],
            "images": {"n": len(items), "testset": str(testset_root),
                       "fit": {k: sum(it["fit"] == k for it in items) for k in sorted({it["fit"] for it in items})}},
            "reference_l1": float(np.mean([kernel_l1(r["kernel"][0, 0], it["truth"]) for r, it in zip(refs, items)])),
            "formats": rows, "passed": all(r["status"] == "pass" for r in rows)}
