"""``DIR/manifest.json`` of an export directory: what each artifact is and how to feed it.

Schema :data:`SCHEMA` (one JSON object)::

    {"schema": "mkn-export/1", "model": "kernelnet", "config": "mobile", "sf": 2,
     "input_size": 256, "kernel_size": 15, "stages": ["grads", "k_lr", "k_coarse", "kernel"],
     "tools": {"torch": "2.13.0", ...},
     "artifacts": {FORMAT: {"file": "kernelnet_mobile_sf2_256.onnx", "sha256": "...",
                            "size_bytes": 123, "runtime": "onnxruntime", "spectral_mode": "dft",
                            "inputs": [IO], "outputs": [IO], "quantization": {...}, ...}},
     "failed": {FORMAT: {"error": "...", "log": "logs/FORMAT.log"}},
     "unsupported": {FORMAT: "why this model cannot have it"}}

``IO`` = ``{"name", "shape", "layout"[, "tensor"]}``: ``shape`` as the file stores it,
``layout`` ``"NCHW"`` (PyTorch, ONNX) or ``"NHWC"`` (TFLite), ``tensor`` the TFLite
signature's name for it. Every output is one model stage (``kernel`` is the product;
the others are intermediate stages for parity).

In code the manifest is typed: :class:`Manifest` holding one :class:`Artifact` per
format, each with :class:`TensorIO` inputs and outputs. :func:`read_manifest` validates
the JSON into them (a ValueError naming the file and the field otherwise), and
:meth:`Manifest.to_json` writes the same schema back.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from mobile_kernelnet.imio import atomic_output

SCHEMA = "mkn-export/1"
MANIFEST = "manifest.json"
TOOLS = ("torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "tf-keras",
         "ai-edge-litert", "numpy")
LAYOUTS = ("NCHW", "NHWC")
RUNTIMES = ("onnxruntime", "litert")


class ManifestError(ValueError):
    """A manifest (or one record of it) that does not follow :data:`SCHEMA`."""


def _need(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]``, checked to be of ``kind`` (:class:`ManifestError` naming ``where``)."""
    if not isinstance(data, dict) or key not in data:
        raise ManifestError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ManifestError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


@dataclass(frozen=True)
class TensorIO:
    """One input or output of a model file: ``shape`` as the file stores it in ``layout``
    (``"NCHW"`` / ``"NHWC"``); ``tensor`` is the TFLite signature's name (``None`` for ONNX)."""

    name: str
    shape: tuple[int, ...]
    layout: str
    tensor: str | None = None

    @property
    def nchw(self) -> tuple[int, ...]:
        """The shape in NCHW (``(N, C, H, W)``)."""
        if self.layout == "NCHW":
            return self.shape
        n, h, w, c = self.shape
        return (n, c, h, w)

    @property
    def key(self) -> str:
        """The name the runtime knows it by (the signature tensor, else the graph name)."""
        return self.tensor or self.name

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "layout": self.layout,
                **({"tensor": self.tensor} if self.tensor else {})}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "TensorIO":
        shape = _need(data, "shape", list, where)
        if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ManifestError(f"{where}.shape: expected 4 positive ints, got {shape!r}")
        layout = _need(data, "layout", str, where)
        if layout not in LAYOUTS:
            raise ManifestError(f"{where}.layout: {layout!r}, expected one of {LAYOUTS}")
        tensor = data.get("tensor")
        if tensor is not None and not isinstance(tensor, str):
            raise ManifestError(f"{where}.tensor: expected a string, got {tensor!r}")
        return cls(_need(data, "name", str, where), tuple(shape), layout, tensor)


@dataclass(frozen=True)
class Artifact:
    """One exported file of format ``format``: where it is, what runs it, how to feed it,
    and what the export measured about it (``gpu``: LiteRT's GPU accelerator record;
    ``npu``: one compile record per NPU target; ``details``: the builder's other fields,
    e.g. op counts)."""

    format: str
    file: str
    sha256: str
    size_bytes: int
    runtime: str
    spectral_mode: str
    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]
    quantization: dict | None = None
    gpu: dict | None = None
    npu: dict[str, dict] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    @property
    def input(self) -> TensorIO:
        """The single LR input."""
        return self.inputs[0]

    def to_json(self) -> dict:
        out = {"file": self.file, "sha256": self.sha256, "size_bytes": self.size_bytes, "runtime": self.runtime,
               "spectral_mode": self.spectral_mode, "inputs": [t.to_json() for t in self.inputs],
               "outputs": [t.to_json() for t in self.outputs], **self.details}
        for name in ("quantization", "gpu"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return {**out, **({"npu": self.npu} if self.npu else {})}

    @classmethod
    def from_json(cls, fmt: str, data: Any, where: str) -> "Artifact":
        where = f"{where}.artifacts[{fmt!r}]"
        runtime = _need(data, "runtime", str, where)
        if runtime not in RUNTIMES:
            raise ManifestError(f"{where}.runtime: {runtime!r}, expected one of {RUNTIMES}")
        io = {side: tuple(TensorIO.from_json(t, f"{where}.{side}[{i}]")
                          for i, t in enumerate(_need(data, side, list, where))) for side in ("inputs", "outputs")}
        if len(io["inputs"]) != 1 or not io["outputs"]:
            raise ManifestError(f"{where}: expected one input and at least one output")
        named = {f.name for f in fields(cls)}
        return cls(fmt, _need(data, "file", str, where), _need(data, "sha256", str, where),
                   _need(data, "size_bytes", int, where), runtime, _need(data, "spectral_mode", str, where),
                   io["inputs"], io["outputs"], data.get("quantization"), data.get("gpu"), data.get("npu", {}),
                   {k: v for k, v in data.items() if k not in named})


@dataclass(frozen=True)
class Manifest:
    """An export directory's manifest (see the module docstring for the JSON)."""

    model: str
    config: str
    sf: int
    input_size: int
    kernel_size: int
    stages: tuple[str, ...]
    weights_sha256: str
    tools: dict[str, str]
    artifacts: dict[str, Artifact]
    failed: dict[str, dict] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)  # formats left out of "all": why

    def artifact(self, fmt: str, where: str | Path = "the export") -> Artifact:
        """The artifact of format ``fmt`` (ValueError naming the formats there are)."""
        if fmt not in self.artifacts:
            raise ValueError(f"{where}: no {fmt!r} artifact (it has {', '.join(self.artifacts) or 'none'})")
        return self.artifacts[fmt]

    def same_weights(self, other: "Manifest") -> bool:
        """Whether ``other`` was exported from the same model, config, sf and weights."""
        return (self.model, self.config, self.sf, self.weights_sha256) == (
            other.model, other.config, other.sf, other.weights_sha256)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "model": self.model, "config": self.config, "sf": self.sf,
                "input_size": self.input_size, "kernel_size": self.kernel_size, "stages": list(self.stages),
                "weights_sha256": self.weights_sha256, "tools": self.tools,
                "artifacts": {k: a.to_json() for k, a in self.artifacts.items()}, "failed": self.failed,
                **({"unsupported": self.unsupported} if self.unsupported else {})}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Manifest":
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        if found != SCHEMA:
            raise ManifestError(f"{where}: schema {found!r}, expected {SCHEMA!r}")
        stages = _need(data, "stages", list, where)
        artifacts = {fmt: Artifact.from_json(fmt, a, where)
                     for fmt, a in _need(data, "artifacts", dict, where).items()}
        for fmt, art in artifacts.items():
            if [o.name for o in art.outputs] != stages:
                raise ManifestError(f"{where}.artifacts[{fmt!r}]: outputs {[o.name for o in art.outputs]} "
                                    f"are not the stages {stages}")
        return cls(_need(data, "model", str, where), _need(data, "config", str, where), _need(data, "sf", int, where),
                   _need(data, "input_size", int, where), _need(data, "kernel_size", int, where), tuple(stages),
                   _need(data, "weights_sha256", str, where), _need(data, "tools", dict, where), artifacts,
                   data.get("failed", {}), data.get("unsupported", {}))


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


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    """Write ``folder/manifest.json`` atomically."""
    path = Path(folder) / MANIFEST
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def read_manifest(folder: str | Path, verify: bool = True) -> Manifest:
    """Read and validate an export directory's manifest (:class:`ManifestError`, a
    ValueError, naming the field that is wrong); with ``verify``, check that every
    artifact file exists with the recorded sha256 (ValueError / FileNotFoundError otherwise)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {MANIFEST}; is this a directory written by `mkn export`?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); re-run `mkn export`") from None
    manifest = Manifest.from_json(data, str(path))
    if verify:
        for what, name, digest in listed_files(manifest):
            file = folder / name
            if not file.is_file():
                raise FileNotFoundError(f"{path}: {what} file {file} is missing")
            if sha256(file) != digest:
                raise ValueError(f"{file}: sha256 differs from the manifest (changed after export)")
    return manifest


def listed_files(manifest: Manifest) -> list[tuple[str, str, str]]:
    """``(what, file, sha256)`` for every file a manifest lists: each artifact, and each
    NPU-compiled file of one (``"tflite-int8 qualcomm:SM8650"``)."""
    files = []
    for fmt, art in manifest.artifacts.items():
        files.append((fmt, art.file, art.sha256))
        files += [(f"{fmt} {target}", r["file"], r["sha256"]) for target, r in art.npu.items() if r.get("file")]
    return files


def find_artifact(model_file: str | Path) -> tuple[Manifest, Artifact]:
    """The manifest beside ``model_file`` and its record of that file."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file}: no such model file")
    manifest = read_manifest(model_file.parent, verify=False)
    for art in manifest.artifacts.values():
        if art.file == model_file.name:
            if sha256(model_file) != art.sha256:
                raise ValueError(f"{model_file}: sha256 differs from {model_file.parent / MANIFEST}")
            return manifest, art
    raise ValueError(f"{model_file}: not listed in {model_file.parent / MANIFEST}")


def placement(artifact: Artifact | None) -> dict:
    """What the export measured about where a TFLite file runs: ``gpu_ops`` / ``ops_total``
    under LiteRT's GPU accelerator and ``npu_partitions`` per NPU target (``None`` where
    the compile failed); empty for other formats (and for ``None``)."""
    out = {}
    if artifact is None:
        return out
    if (artifact.gpu or {}).get("status") == "checked":
        out.update(gpu_ops=artifact.gpu["ops_gpu"], ops_total=artifact.gpu["ops_total"])
    if artifact.npu:
        out["npu_partitions"] = {t: r["partitions"] if r["status"] == "compiled" else None
                                 for t, r in artifact.npu.items()}
    return out
