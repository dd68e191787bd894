"""``DIR/manifest.json`` of an export directory: what each artifact is and how to feed it.

Schema :data:`SCHEMA` (one JSON object)::

    {"schema": "mkn-export/1", "model": "kernelnet", "config": "mobile", "sf": 2,
     "input_size": 256, "kernel_size": 15, "stages": ["grads", "k_lr", "k_coarse", "kernel"],
     "tools": {"torch": "2.13.0", ...},
     "artifacts": {FORMAT: {"file": "kernelnet_mobile_sf2_256.onnx", "sha256": "...",
                            "size_bytes": 123, "runtime": "onnxruntime", "spectral_mode": "dft",
                            "inputs": [IO], "outputs": [IO], "quantization": {...}, ...}},
     "failed": {FORMAT: {"error": "...", "log": "logs/FORMAT.log"}}}

``IO`` = ``{"name", "shape", "layout"}``: ``shape`` as the file stores it, ``layout``
``"NCHW"`` (PyTorch, ONNX) or ``"NHWC"`` (TFLite). Every output is one model stage
(``kernel`` is the product; the others are intermediate stages for parity).
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from mobile_kernelnet.imio import atomic_output

SCHEMA = "mkn-export/1"
MANIFEST = "manifest.json"
TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "tf-keras",
         "ai-edge-litert", "numpy")


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tool_versions() -> dict[str, str]:
    """Installed version of every tool on the export path (``"not installed"`` if absent)."""
    out = {}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``folder/manifest.json`` atomically."""
    path = Path(folder) / MANIFEST
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def read_manifest(folder: str | Path, verify: bool = True) -> dict:
    """Read an export directory's manifest; with ``verify``, check that every artifact
    file exists with the recorded sha256 (ValueError / FileNotFoundError otherwise)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}; is this a directory written by `mkn export`?")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run `mkn export`") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: schema {found!r}, expected {SCHEMA!r}")
    if verify:
        for what, record in listed_files(manifest):
            file = folder / record["file"]
            if not file.is_file():
                raise FileNotFoundError(f"{path}: {what} file {file} is missing")
            if sha256(file) != record["sha256"]:
                raise ValueError(f"{file}: sha256 differs from the manifest (changed after export)")
    return manifest


def listed_files(manifest: dict) -> list[tuple[str, dict]]:
    """``(what, record)`` for every file a manifest lists with its ``file`` and ``sha256``:
    each artifact, and each NPU-compiled file of one (``"tflite-int8 qualcomm:SM8650"``)."""
    files = []
    for fmt, art in manifest["artifacts"].items():
        files.append((fmt, art))
        files += [(f"{fmt} {target}", r) for target, r in art.get("npu", {}).items() if r.get("file")]
    return files


def find_artifact(model_file: str | Path) -> tuple[dict, str]:
    """The manifest beside ``model_file`` and the format name it records for that file."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no such model file")
    manifest = read_manifest(model_file.parent, verify=False)
    for fmt, art in manifest["artifacts"].items():
        if art["file"] == model_file.name:
            if sha256(model_file) != art["sha256"]:
                raise ValueError(f"{model_file}: sha256 differs from {model_file.parent / MANIFEST}")
            return manifest, fmt
    raise ValueError(f"{model_file}: not listed in {model_file.parent / MANIFEST}")


def placement(artifact: dict) -> dict:
    """What the export measured about where a TFLite file runs: ``gpu_ops`` / ``ops_total``
    under LiteRT's GPU accelerator and ``npu_partitions`` per NPU target (``None`` where
    the compile failed); empty for other formats."""
    out = {}
    if artifact.get("gpu", {}).get("status") == "checked":
        out.update(gpu_ops=artifact["gpu"]["ops_gpu"], ops_total=artifact["gpu"]["ops_total"])
    if "npu" in artifact:
        out["npu_partitions"] = {t: r["partitions"] if r["status"] == "compiled" else None
                                 for t, r in artifact["npu"].items()}
    return out
