"""Run an exported artifact in its real runtime with one NCHW-in, NCHW-out contract.

Every runner is called with the LR image ``(1, 1, S, S)`` float32 in [0, 1] (NCHW,
as PyTorch takes it) and returns ``{stage: array}`` in NCHW, whatever layout the
file stores (the manifest's per-tensor ``layout``: ONNX keeps NCHW, TFLite mostly
NHWC). Layout conversion happens only in :func:`to_file_layout` /
:func:`from_file_layout`.
"""
from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np

from .manifest import Manifest, TensorIO

if TYPE_CHECKING:
    import torch

LITERT_RESOLVERS = ("xnnpack", "builtin")
"""LiteRT op resolvers: ``xnnpack`` (the default, XNNPACK delegate applied) and
``builtin`` (builtin kernels without the default delegates)."""


AXES = {"NCHW": (0, 1, 2, 3), "NHWC": (0, 2, 3, 1)}
"""Axis order of each file layout, read from NCHW."""


def _axes(layout: str) -> tuple[int, ...]:
    if layout not in AXES:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(AXES)}")
    return AXES[layout]


def to_file_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """NCHW ``x`` in the file's ``layout`` (``"NCHW"`` or ``"NHWC"``)."""
    return np.ascontiguousarray(x.transpose(_axes(layout)))


def from_file_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """A tensor stored in ``layout`` back in NCHW."""
    return np.ascontiguousarray(x.transpose(np.argsort(_axes(layout))))


class Runner:
    """Base: ``runner(lr) -> {stage: NCHW array}`` for a file with these ``inputs`` / ``outputs``."""

    def __init__(self, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...] = ()):
        self.input, self.outputs = inputs[0], outputs
        self.input_nchw = list(self.input.nchw)

    def check_input(self, lr: np.ndarray) -> np.ndarray:
        lr = np.asarray(lr, dtype=np.float32)
        if list(lr.shape) != self.input_nchw:
            raise ValueError(f"input shape {list(lr.shape)} does not match the exported {self.input_nchw} (NCHW)")
        return lr

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchRunner(Runner):
    """The PyTorch reference (``torch`` spectral backend unless told otherwise)."""

    def __init__(self, model: torch.nn.Module, input_size: int, threads: int | None = None):
        super().__init__((TensorIO("lr", (1, 1, input_size, input_size), "NCHW"),))
        self.model, self.threads = model.eval(), threads

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        import torch
        lr = self.check_input(lr)
        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return {k: v.numpy() for k, v in self.model.stages(torch.from_numpy(lr)).items()}


class OnnxRunner(Runner):
    """ONNX Runtime, CPU execution provider."""

    def __init__(self, path: Path, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...],
                 threads: int | None = None):
        import onnxruntime as ort

        super().__init__(inputs, outputs)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        lr = self.check_input(lr)
        outs = self.session.run([o.name for o in self.outputs],
                                {self.input.name: to_file_layout(lr, self.input.layout)})
        return {o.name: from_file_layout(v, o.layout) for o, v in zip(self.outputs, outs)}


class LiteRunner(Runner):
    """The LiteRT interpreter (ai-edge-litert) through the ``serving_default`` signature."""

    def __init__(self, path: Path, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...],
                 threads: int | None = None, resolver: str = "xnnpack"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        super().__init__(inputs, outputs)
        if resolver not in LITERT_RESOLVERS:
            raise ValueError(f"unknown LiteRT resolver {resolver!r}; one of {LITERT_RESOLVERS}")
        kind = (OpResolverType.AUTO if resolver == "xnnpack"
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                       experimental_op_resolver_type=kind)
        self.signature = self.interpreter.get_signature_runner()

    def __call__(self, lr: np.ndarray) -> dict[str, np.ndarray]:
        lr = self.check_input(lr)
        outs = self.signature(**{self.input.key: to_file_layout(lr, self.input.layout)})
        return {o.name: from_file_layout(outs[o.key], o.layout) for o in self.outputs}


def open_runner(folder: str | Path, manifest: Manifest, fmt: str, threads: int | None = None,
                resolver: str = "xnnpack") -> Runner:
    """A runner for format ``fmt`` of the export directory ``folder``."""
    art = manifest.artifact(fmt, folder)
    path = Path(folder) / art.file
    if art.runtime == "onnxruntime":
        return OnnxRunner(path, art.inputs, art.outputs, threads)
    return LiteRunner(path, art.inputs, art.outputs, threads, resolver)
