"""Child process of :func:`export.gpu.run_on_gpu`: one ``.tflite`` file through LiteRT's GPU
accelerator (``CompiledModel`` with ``GPU | CPU``) at each asked precision, run on every
given input.

``python -m export.gpu_worker JOB.json`` reads ``{"model", "inputs" (an .npy of (N, ...)
arrays in the file's input layout), "precisions" ({name: enforce_f32}), "out" (a folder)}``
and writes, per precision, ``out/<name>.npz`` (``<tensor>/<i>`` keys) and
``out/<name>.json`` with ``{"fully_accelerated", "ops_total"}``. Before compiling each
precision it prints :data:`MARK` and the name to stderr, where the delegate writes its
op report, so the parent can cut the log per precision. The process leaves with
``os._exit`` once the files are written: LiteRT 2.3's GPU environment crashes in its
teardown.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

MARK = "=== mkn gpu precision: "


def _ops_total(path: str) -> int:
    from ai_edge_litert.interpreter import Interpreter

    return len(Interpreter(model_path=path)._get_ops_details())


def run_precision(job: dict, name: str, enforce_f32: bool, inputs: np.ndarray) -> None:
    """Compile ``job["model"]`` at one precision, run every input, write its two files."""
    from ai_edge_litert.compiled_model import CompiledModel, GpuOptions, HardwareAccelerator, Options

    print(f"{MARK}{name}", file=sys.stderr, flush=True)
    options = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                      gpu_options=GpuOptions(enforce_f32=enforce_f32))
    model = CompiledModel.from_file(job["model"], options=options)
    signature = model.get_signature_by_index(0)
    ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
    results = {}
    for i, x in enumerate(inputs):
        ins[0].write(np.ascontiguousarray(x[None], dtype=np.float32))
        model.run_by_index(0, ins, outs)
        for tensor, buf in zip(signature["outputs"], outs):
            shape = buf.get_tensor_details()["shape"]
            results[f"{tensor}/{i}"] = buf.read(int(np.prod(shape)), np.float32).reshape(shape)
    base = os.path.join(job["out"], name)
    np.savez(base + ".partial.npz", **results)
    os.replace(base + ".partial.npz", base + ".npz")
    with open(base + ".json", "w") as f:
        json.dump({"fully_accelerated": model.is_fully_accelerated(), "ops_total": _ops_total(job["model"])}, f)
    sys.stderr.flush()


if __name__ == "__main__":
    job = json.loads(open(sys.argv[1]).read())
    inputs = np.load(job["inputs"])
    for name, enforce_f32 in job["precisions"].items():
        run_precision(job, name, enforce_f32, inputs)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
