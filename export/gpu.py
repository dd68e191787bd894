"""LiteRT's GPU accelerator on a ``.tflite`` file: which ops it takes, and what it computes.

The accelerator shipped in ai-edge-litert (``libLiteRtWebGpuAccelerator.so``: Dawn
over Vulkan) runs on whatever Vulkan device the process finds. Without a GPU that is
Mesa's lavapipe, unpacked into the repo by ``make toolchain``
(``tools/setup_vulkan.sh`` -> ``.toolchain/vulkan``); a user's own Vulkan driver
(``VK_ICD_FILENAMES`` already set) is used as it is. Timings on lavapipe say nothing
about a phone; placement and numerics do: the delegate refuses the same ops, and
computes in fp16 unless ``enforce_f32`` is set, as on a phone.

Each file runs in a child process (:mod:`export.gpu_worker`), every precision in the same
one: the delegate reports the ops it refuses only on stderr, and LiteRT 2.3 crashes when
its GPU environment is torn down.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .gpu_worker import MARK
from .manifest import TensorIO

REPO = Path(__file__).resolve().parents[1]
TOOLCHAIN = Path(os.environ.get("MKN_TOOLCHAIN", REPO / ".toolchain"))
PRECISIONS = {"fp16": False, "fp32": True}
"""GPU compute precision -> ``GpuOptions.enforce_f32``."""
DEFAULT_PRECISION = "fp16"
"""The accelerator's default; the placement a manifest records is the one it reports at it."""
TIMEOUT_S = 600.0
"""A first compile of a model's shaders on lavapipe takes 30-40 s on 2 cores."""


class GpuUnavailable(RuntimeError):
    """No Vulkan device, or the accelerator could not start; the message says what to do."""


@dataclass(frozen=True)
class RefusedOp:
    """An op the delegate left on the CPU, and the delegate's reason."""

    op: str
    reason: str


@dataclass
class GpuPlacement:
    """Where a file's ops run under LiteRT's GPU accelerator (``GPU | CPU``)."""

    device: str
    ops_total: int
    ops_gpu: int
    refused: list[RefusedOp] = field(default_factory=list)

    @property
    def fully_delegated(self) -> bool:
        return self.ops_gpu == self.ops_total

    def to_json(self) -> dict:
        return {**asdict(self), "fully_delegated": self.fully_delegated}


def vulkan_env() -> dict[str, str]:
    """Environment for a GPU run: the user's Vulkan driver if ``VK_ICD_FILENAMES`` is set,
    else the repo's software Vulkan (:data:`TOOLCHAIN` ``/vulkan``)."""
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    if env.get("VK_ICD_FILENAMES"):
        return env
    icd = TOOLCHAIN / "vulkan" / "lvp_icd.json"
    if not icd.is_file():
        raise GpuUnavailable(f"no Vulkan driver: VK_ICD_FILENAMES is not set and {icd} does not exist; "
                             "`make toolchain` unpacks Mesa's software Vulkan (lavapipe) into .toolchain/")
    lib = json.loads(icd.read_text())["ICD"]["library_path"]
    env["VK_ICD_FILENAMES"] = str(icd)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(Path(lib).parent), env.get("LD_LIBRARY_PATH")) if p)
    return env


_ADAPTER = re.compile(r"Selected adapter: (.*?), arch=.*?backend=(\w+)")
_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_REFUSED = re.compile(r"^\s*(?:OP: )?([A-Z][A-Z0-9_]+): (.+)$")


def parse_delegate_log(text: str, ops_total: int, fully_accelerated: bool) -> GpuPlacement:
    """:class:`GpuPlacement` from the accelerator's stderr (its op report) and the op count."""
    m = _ADAPTER.search(text)
    device = f"{m.group(1).strip()} ({m.group(2)})" if m else "unknown"
    split = _SPLIT.search(text)
    refused = []
    if split:
        block = text[text.find("Following operations are not supported"):split.start()]
        refused = [RefusedOp(r.group(1), r.group(2).strip()) for line in block.splitlines()[1:]
                   if (r := _REFUSED.match(line))]
        ops_gpu = int(split.group(1))
    elif fully_accelerated:
        ops_gpu = ops_total
    else:
        raise GpuUnavailable("the GPU accelerator ran nothing and printed no op report:\n" + text[-2000:])
    return GpuPlacement(device, ops_total, ops_gpu, refused)


@dataclass
class GpuRun:
    """One file on the GPU path at one precision: its placement and its outputs
    (``{tensor: array}`` per input), and the accelerator's log of that precision."""

    precision: str
    placement: GpuPlacement
    outputs: list[dict[str, np.ndarray]]
    log: str


def _read_outputs(npz: Path, n: int) -> list[dict[str, np.ndarray]]:
    with np.load(npz) as data:
        outputs = [{} for _ in range(n)]
        for key in data.files:
            name, i = key.rsplit("/", 1)
            outputs[int(i)][name] = data[key]
    return outputs


def run_on_gpu(path: str | Path, inputs: np.ndarray, precisions: tuple[str, ...] = tuple(PRECISIONS),
               timeout_s: float = TIMEOUT_S) -> dict[str, GpuRun]:
    """Run ``path`` on each of ``inputs`` ``(N, ...)`` (the file's input layout, float32)
    through the GPU accelerator at each of ``precisions`` (keys of :data:`PRECISIONS`), all
    in one child process. Raises :class:`GpuUnavailable` when it cannot run, with the
    accelerator's log."""
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise ValueError(f"GPU precisions {list(precisions)}: each one of {', '.join(PRECISIONS)}")
    env = vulkan_env()
    with tempfile.TemporaryDirectory(prefix="mkn-gpu-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "inputs.npy", np.asarray(inputs, dtype=np.float32))
        job = {"model": str(Path(path).resolve()), "inputs": str(tmp / "inputs.npy"),
               "precisions": {p: PRECISIONS[p] for p in precisions}, "out": str(tmp)}
        (tmp / "job.json").write_text(json.dumps(job))
        try:
            proc = subprocess.run([sys.executable, "-m", "export.gpu_worker", str(tmp / "job.json")],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise GpuUnavailable(f"the GPU accelerator did not finish {Path(path).name} in {timeout_s:.0f} s")
        done = [p for p in precisions if (tmp / f"{p}.npz").is_file()]
        if proc.returncode != 0 or done != list(precisions):
            raise GpuUnavailable(f"the GPU accelerator failed on {Path(path).name} (exit {proc.returncode}); "
                                 f"its log ends:\n{proc.stderr[-3000:]}")
        logs = dict(part.split("\n", 1) for part in proc.stderr.split(MARK)[1:])
        runs = {}
        for p in precisions:
            info = json.loads((tmp / f"{p}.json").read_text())
            placement = parse_delegate_log(logs[p], info["ops_total"], info["fully_accelerated"])
            runs[p] = GpuRun(p, placement, _read_outputs(tmp / f"{p}.npz", len(inputs)), logs[p])
    return runs


def stage_outputs(path: str | Path, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...],
                  lrs: list[np.ndarray], precisions: tuple[str, ...] = tuple(PRECISIONS)
                  ) -> dict[str, tuple[list[dict[str, np.ndarray]], GpuPlacement]]:
    """:func:`run_on_gpu` with the runners' contract: ``(1, 1, S, S)`` NCHW inputs in; per
    precision, each input's ``{stage: NCHW array}`` and the placement (names and layouts
    from the file's ``inputs`` / ``outputs``)."""
    from .runtimes import from_file_layout, to_file_layout

    batch = np.concatenate([to_file_layout(np.asarray(lr, np.float32), inputs[0].layout) for lr in lrs])
    return {p: ([{o.name: from_file_layout(out[o.key], o.layout) for o in outputs} for out in run.outputs],
                run.placement) for p, run in run_on_gpu(path, batch, precisions).items()}


def gpu_check(path: str | Path, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...],
              lrs: list[np.ndarray]) -> dict:
    """The manifest's ``gpu`` record of one TFLite file: placement under the GPU
    accelerator and, per precision, each stage's max-abs difference from the CPU
    interpreter (XNNPACK) on ``lrs`` (``null``, and listed under ``nonfinite``, where the
    GPU output is not finite). ``{"status": "unavailable", "error"}`` when no
    Vulkan device or accelerator can run it."""
    from .runtimes import LiteRunner

    cpu = LiteRunner(Path(path), inputs, outputs, threads=2)
    reference = [cpu(lr) for lr in lrs]
    record: dict = {"status": "checked", "inputs": len(lrs), "max_abs_vs_cpu": {}}
    try:
        runs = stage_outputs(path, inputs, outputs, lrs)
    except GpuUnavailable as exc:
        return {"status": "unavailable", "error": str(exc)}
    for precision, (outs, _) in runs.items():
        errors = {stage: float(max(np.abs(o[stage] - r[stage]).max() for o, r in zip(outs, reference)))
                  for stage in reference[0]}
        # JSON has no NaN: a stage whose GPU output is not finite is null, and listed
        record["max_abs_vs_cpu"][precision] = {k: v if np.isfinite(v) else None for k, v in errors.items()}
        record.setdefault("nonfinite", {})[precision] = [k for k, v in errors.items() if not np.isfinite(v)]
    return {**record, **runs[DEFAULT_PRECISION][1].to_json()}
