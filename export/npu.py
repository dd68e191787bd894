"""Ahead-of-time NPU compilation of ``.tflite`` files with LiteRT's compiler plugins.

``ai_edge_litert/tools/apply_plugin_main`` partitions a model, hands each partition
to the vendor's compiler and writes a ``.tflite`` holding the compiled context
binaries (what an app ships for that SoC) plus the ops left to the CPU. Its log
names every op the vendor's validator refused, with the validator's reason.

Vendors: ``qualcomm`` (QNN's HTP compiler, host libraries from ``make toolchain``:
``tools/setup_qnn.sh`` -> ``.toolchain/qnn/lib``). The wheel also carries MediaTek's
plugin, but its NeuroPilot host libraries only come from a download at install time
(no registry package bundles them), so it is not offered.

The HTP generation decides what a SoC's NPU can compute: v68 (SM8350) is fixed-point
only, float (fp16) kernels exist from v69 on, so float files are expected to compile
only there (:data:`QUALCOMM_SOCS`).
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .gpu import TOOLCHAIN

QUALCOMM_SOCS = {"SM8350": ("v68", False), "SM8450": ("v69", True), "SM8550": ("v73", True),
                 "SM8650": ("v75", True), "SM8750": ("v79", True)}
"""Qualcomm SoC -> (HTP architecture, computes in float)."""
VENDORS = {"qualcomm": QUALCOMM_SOCS}
TIMEOUT_S = 300.0
MAX_ERRORS = 12
"""Distinct ERROR lines of a failed compile kept in its record (the log has them all)."""


class NpuUnavailable(RuntimeError):
    """The compiler or its vendor libraries are missing; the message says what to do."""


@dataclass(frozen=True)
class NpuTarget:
    """One SoC of one vendor, e.g. ``qualcomm:SM8650``."""

    vendor: str
    soc: str

    def __str__(self) -> str:
        return f"{self.vendor}:{self.soc}"

    @property
    def float_capable(self) -> bool:
        return VENDORS[self.vendor][self.soc][1]


def parse_targets(spec: str) -> list[NpuTarget]:
    """``"qualcomm:SM8350,SM8650"`` (vendors separated by ``;`` or spaces) -> targets."""
    targets = []
    for part in re.split(r"[;\s]+", spec.strip()):
        vendor, sep, socs = part.partition(":")
        if vendor not in VENDORS or not sep:
            raise ValueError(f"NPU target {part!r}: expected VENDOR:SOC[,SOC...] with VENDOR one of "
                             f"{', '.join(VENDORS)}, e.g. qualcomm:SM8650")
        for soc in filter(None, socs.split(",")):
            if soc not in VENDORS[vendor]:
                raise ValueError(f"unknown {vendor} SoC {soc!r}; known: {', '.join(VENDORS[vendor])}")
            targets.append(NpuTarget(vendor, soc))
    if not targets:
        raise ValueError(f"NPU targets {spec!r}: none given")
    return targets


@dataclass
class NpuCompile:
    """Result of compiling one file for one target."""

    target: str
    status: str                     # "compiled" or "failed"
    qnn_version: str | None = None
    ops_total: int | None = None
    ops_offloaded: int | None = None
    partitions: int | None = None
    cpu_ops: list[dict] = field(default_factory=list)   # {"index", "op", "reason"}
    errors: list[str] = field(default_factory=list)      # the compiler's ERROR lines (a failed compile)
    file: str | None = None
    log: str | None = None

    @property
    def fully_offloaded(self) -> bool:
        return self.status == "compiled" and self.partitions == 1 and self.ops_offloaded == self.ops_total

    def to_json(self) -> dict:
        return {**asdict(self), "fully_offloaded": self.fully_offloaded}


def _litert_dir() -> Path:
    import ai_edge_litert

    return Path(ai_edge_litert.__file__).parent


def qnn_lib_dir() -> Path:
    """The QNN host libraries (:data:`gpu.TOOLCHAIN` ``/qnn/lib``)."""
    lib = TOOLCHAIN / "qnn" / "lib"
    if not (lib / "libQnnHtp.so").is_file():
        raise NpuUnavailable(f"no QNN host libraries in {lib}; `make toolchain` takes them from the "
                             "onnxruntime-qnn wheel")
    return lib


_PARTITIONED = re.compile(r"Partitioned subgraph<0>, selected (\d+) ops, from a total of (\d+) ops\. "
                          r"resulted in (\d+) partitions")
_REFUSED = re.compile(r"LiteRT Op #(\d+) '(\w+)' \(code=\d+\) is not supported")
_TENSOR = re.compile(r"dtype=QNN_DATATYPE_(\w+) dims=\[([\d,]*)\]")
_QNN_ERROR = re.compile(r"QNN error=(\d+)")
_ERROR = re.compile(r"\[ ERROR \]\s+(.+)$")
_QNN_VERSION = re.compile(r"Qnn library version ([\d.]+) is used")


def parse_plugin_log(text: str) -> dict:
    """Partition counts, refused ops and the compiler's ERROR lines from an
    ``apply_plugin_main`` log. A refused op's reason is the QNN validator's verdict
    before it: the error code and the tensors it was asked for
    (``QNN error 3110: FLOAT_32[64,64,1,1] INT_64[15,6,15,6,2] -> FLOAT_32[...]``)."""
    out: dict = {"cpu_ops": [], "errors": []}
    tensors: list[str] = []
    outputs_at, reason = None, ""
    for line in text.splitlines():
        if m := _QNN_VERSION.search(line):
            out["qnn_version"] = m.group(1)
        elif m := _PARTITIONED.search(line):
            out.update(ops_offloaded=int(m.group(1)), ops_total=int(m.group(2)), partitions=int(m.group(3)))
        elif "QNN op validation failed" in line:
            tensors, outputs_at, reason = [], None, ""
        elif line.strip() == "Outputs:":
            outputs_at = len(tensors)
        elif m := _TENSOR.search(line):
            tensors.append(f"{m.group(1)}[{m.group(2)}]")
        elif m := _QNN_ERROR.search(line):
            cut = len(tensors) if outputs_at is None else outputs_at
            reason = f"QNN error {m.group(1)}: {' '.join(tensors[:cut])} -> {' '.join(tensors[cut:])}"
        elif m := _REFUSED.search(line):
            out["cpu_ops"].append({"index": int(m.group(1)), "op": m.group(2), "reason": reason})
            reason = ""
        if m := _ERROR.search(line):
            out["errors"].append(m.group(1).strip())
    return out


def compile_for(path: str | Path, target: NpuTarget, out_file: Path, log_file: Path,
                timeout_s: float = TIMEOUT_S) -> NpuCompile:
    """Compile ``path`` for ``target`` into ``out_file`` (log in ``log_file``); a failed
    compile is a result (``status="failed"``), not an exception. Raises
    :class:`NpuUnavailable` when the compiler cannot start."""
    litert = _litert_dir()
    binary = litert / "tools" / "apply_plugin_main"
    if not binary.is_file():
        raise NpuUnavailable(f"LiteRT's AOT compiler is not in this ai-edge-litert install ({binary})")
    lib = qnn_lib_dir()
    partial = out_file.with_name(out_file.name + ".partial")  # renamed to out_file once the compile is good
    cmd = [str(binary), "--cmd=apply", f"--model={Path(path).resolve()}", f"--o={partial.resolve()}",
           "--soc_manufacturer=Qualcomm", f"--soc_model={target.soc}",
           f"--libs={litert / 'vendors' / 'qualcomm' / 'compiler'}", "--err=-", "--qualcomm_log_level=verbose"]
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, (str(lib), os.environ.get("LD_LIBRARY_PATH"))))}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        text, rc = f"{exc.stdout or ''}{exc.stderr or ''}\n(timed out after {timeout_s:.0f} s)", None
    log_file.write_text("$ " + " ".join(cmd) + "\n" + text)
    info = parse_plugin_log(text)
    ok = rc == 0 and partial.is_file() and "partitions" in info
    if ok:
        partial.rename(out_file)
        info["errors"] = []
    else:
        info["errors"] = list(dict.fromkeys(info["errors"]))[:MAX_ERRORS]
        partial.unlink(missing_ok=True)
        if rc != 0 and not info["errors"]:
            info["errors"] = [f"apply_plugin_main exit {rc}: " + "".join(text.splitlines(keepends=True)[-5:])]
    return NpuCompile(str(target), "compiled" if ok else "failed", file=out_file.name if ok else None,
                      log=log_file.name, **info)
