"""PyTorch -> ONNX with every stage as a graph output, then onnxsim and ``onnx.checker``.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``) is the only one that
lowers ``torch.fft`` (to ``DFT``); the ``matmul`` spectral backend needs no ``DFT``.
Opsets: 20 for ``onnx-dft`` (the opset in which the exporter emits ``DFT``; its
downgrade to 17 fails on ``Pad``), 18 for ``onnx-matmul`` (the exporter's native one).
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from .conv_rewrite import depth_to_space_dcr

OPSET = {"dft": 20, "matmul": 18, "matmul-int8": 18}
#: onnxoptimizer passes onnxsim must not run: fusing ``MatMul + Add`` into ``Gemm`` takes a
#: bias that is itself a MatMul's output (``x @ hi + x @ lo`` of ``matmul-int8``) and leaves
#: the graph out of topological order.
SKIPPED_OPTIMIZERS = ["fuse_matmul_add_bias_into_gemm"]


class StageOutputs(nn.Module):
    """Wrap an estimator with ``stages(lr) -> dict``: ``forward`` returns the stage
    tensors as a tuple in :attr:`names` order (pipeline order, ``kernel`` last)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stages = self.model.stages(lr)
        return tuple(stages[n] for n in self.names)


def op_counts(model) -> dict[str, int]:
    """``{op_type: count}`` of an ``onnx.ModelProto``'s main graph."""
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def export_onnx(module: StageOutputs, example: torch.Tensor, path: Path, mode: str) -> dict:
    """Export ``module`` on ``example`` ``(1, 1, S, S)`` to one self-contained ``.onnx``
    file at ``path``, simplified with onnxsim and checked. ``mode``: ``"dft"`` (the
    model must use the ``torch`` spectral backend), ``"matmul"`` or ``"matmul-int8"`` (the
    spectral backends of those names). Returns the
    manifest fields: opset, node counts before/after onnxsim, op counts, how many blocked
    convolutions' depth-to-space were turned to DCR (:func:`conv_rewrite.depth_to_space_dcr`), I/O."""
    import onnx
    from onnxsim import simplify

    raw = path.with_name(path.stem + ".raw.onnx")
    log = io.StringIO()
    with contextlib.redirect_stdout(log), torch.no_grad():
        torch.onnx.export(module, (example,), raw, dynamo=True, opset_version=OPSET[mode],
                          input_names=["lr"], output_names=module.names, external_data=False)
    try:
        exported = onnx.load(raw)
    finally:
        raw.unlink(missing_ok=True)
    simplified, ok = simplify(exported, skipped_optimizers=SKIPPED_OPTIMIZERS)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model against the original")
    blocked = depth_to_space_dcr(simplified)
    onnx.checker.check_model(simplified, full_check=True)
    ops = op_counts(simplified)
    if mode != "dft" and "DFT" in ops:
        raise RuntimeError("the matmul-mode graph contains DFT ops: the model did not switch spectral backend")
    onnx.save(simplified, path)
    with torch.no_grad():
        shapes = [list(t.shape) for t in module(example)]
    return {"opset": OPSET[mode], "spectral_mode": mode,
            "nodes_before_onnxsim": len(exported.graph.node), "nodes_after_onnxsim": len(simplified.graph.node),
            "ops": ops, "blocked_convs": blocked,
            "inputs": [{"name": "lr", "shape": list(example.shape), "layout": "NCHW"}],
            "outputs": [{"name": n, "shape": s, "layout": "NCHW"} for n, s in zip(module.names, shapes)]}
