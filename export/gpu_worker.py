"""Child process of :func:`export.gpu.run_on_gpu`: one ``.tflite`` file through LiteRT's GPU
accelerator (``CompiledModel`` with ``GPU | CPU``), run on every given input.

``python -m export.gpu_worker JOB.json`` reads ``{"model", "inputs" (an .npy of
(N, ...) arrays in the file's input layout), "enforce_f32", "out" (an .npz path)}``,
writes the outputs as ``out`` (``<tensor>/<i>`` keys) and ``out + ".json"`` with
``{"fully_accelerated", "ops_total"}``. The delegate's op report goes to stderr, which
the parent captures. The process leaves with ``os._exit`` once the files are written:
LiteRT 2.3's GPU environment crashes in its teardown.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def _ops_total(path: str) -> int:
    from ai_edge_litert.interpreter import Interpreter

    return len(Interpreter(model_path=path)._get_ops_details())


def main(job: dict) -> None:
    from ai_edge_litert.compiled_model import CompiledModel, GpuOptions, HardwareAccelerator, Options

    options = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                      gpu_options=GpuOptions(enforce_f32=job["enforce_f32"]))
    model = CompiledModel.from_file(job["model"], options=options)
    signature = model.get_signature_by_index(0)
    inputs = np.load(job["inputs"])
    ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
    results = {}
    for i, x in enumerate(inputs):
        ins[0].write(np.ascontiguousarray(x[None], dtype=np.float32))
        model.run_by_index(0, ins, outs)
        for name, buf in zip(signature["outputs"], outs):
            shape = buf.get_tensor_details()["shape"]
            results[f"{name}/{i}"] = buf.read(int(np.prod(shape)), np.float32).reshape(shape)
    tmp = job["out"] + ".partial.npz"
    np.savez(tmp, **results)
    os.replace(tmp, job["out"])
    with open(job["out"] + ".json", "w") as f:
        json.dump({"fully_accelerated": model.is_fully_accelerated(), "ops_total": _ops_total(job["model"])}, f)


if __name__ == "__main__":
    main(json.loads(open(sys.argv[1]).read()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
