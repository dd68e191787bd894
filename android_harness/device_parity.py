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

import tempfile
from pathlib import Path

import numpy as np

from export.manifest import Artifact, read_manifest
from export.formats import Tolerance
from export.parity import DEFAULT_TOLERANCES, check_format, parity_report, reference_outputs
from export.runtimes import Runner, from_file_layout, to_file_layout

from .adb import Adb
from .device_bench import DELEGATE_FLAGS, check_binary, litert_formats, remote_workdir
from .errors import HarnessError


class DeviceRunner(Runner):
    """One exported ``.tflite`` run on the device through the user's runner binary."""

    def __init__(self, adb: Adb, artifact: Artifact, remote_runner: str, remote_model: str, work: str,
                 delegate: str, threads: int, timeout_s: float):
        super().__init__(artifact.inputs, artifact.outputs)
        self.adb, self.runner, self.model, self.work = adb, remote_runner, remote_model, work
        self.flag, self.threads, self.timeout_s = DELEGATE_FLAGS[delegate], threads, timeout_s

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        lr = self.check_input(lr)
        out_dir = f"{self.work}/out"
        with tempfile.TemporaryDirectory() as tmp:
            local_in = Path(tmp) / "in.raw"
            to_file_layout(lr, self.input.layout).astype("<f4").tofile(local_in)
            self.adb.push(local_in, f"{self.work}/in.raw")
            self.adb.shell(["rm", "-rf", out_dir])
            self.adb.shell(["mkdir", "-p", out_dir])
            proc = self.adb.shell([self.runner, f"--graph={self.model}", f"--input={self.work}/in.raw",
                                   f"--output_dir={out_dir}", f"--num_threads={self.threads}", self.flag],
                                  timeout_s=self.timeout_s, check=False)
            if proc.returncode != 0:
                raise HarnessError(f"runner exited {proc.returncode}: "
                                   + " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:]))
            result = {}
            for o in self.outputs:
                local = Path(tmp) / f"{o.key}.raw"
                self.adb.pull(f"{out_dir}/{o.key}.raw", local)
                data = np.fromfile(local, dtype="<f4")
                if data.size != int(np.prod(o.shape)):
                    raise HarnessError(f"runner wrote {data.size} values for {o.name}, expected shape {list(o.shape)}")
                result[o.name] = from_file_layout(data.reshape(o.shape), o.layout)
            return result


def run_device_parity(adb: Adb, export_dir: str | Path, runner_binary: str | Path, testset_root: str | Path,
                      delegates: list[str], threads: int = 1, max_images: int | None = None,
                      tolerances: dict[str, Tolerance] = DEFAULT_TOLERANCES, timeout_s: float = 600,
                      keep: bool = False) -> dict:
    """Parity report (``mkn parity`` schema, one row per format and delegate) from the device."""
    export_dir, runner_binary = Path(export_dir), Path(runner_binary)
    manifest = read_manifest(export_dir)
    tflites = litert_formats(manifest, delegates)
    facts = adb.facts()
    check_binary(runner_binary, facts["abi"])
    items, refs = reference_outputs(manifest, testset_root, max_images)
    rows = []
    with remote_workdir(adb, "mkn-parity", runner_binary, "runner", keep) as (work, remote_runner):
        for fmt in tflites:
            art = manifest.artifacts[fmt]
            adb.push(export_dir / art.file, f"{work}/{art.file}")
            for delegate in delegates:
                def run(lrs, art=art, delegate=delegate):
                    runner = DeviceRunner(adb, art, remote_runner, f"{work}/{art.file}", work, delegate,
                                          threads, timeout_s)
                    return [runner(lr) for lr in lrs]
                row = check_format(export_dir, manifest, fmt, items, refs, tolerances.get(fmt, Tolerance()), run)
                row.update(format=f"{fmt}@{delegate}", delegate=delegate)
                rows.append(row)
    return {**parity_report(export_dir, manifest, testset_root, items, refs, rows), "device": facts}
