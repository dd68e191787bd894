"""Which CNN edges the ``int8`` file keeps float, decided per export by a check.

A CNN edge (:func:`~export.tflite_formats.cnn_edges`) kept float costs a dequantise of
its input map and a float op. On kernel-sized maps that is nothing; on image-sized ones
it is much of the file's time (KernelNet's gradient-CNN exit: a 3x3 conv 24 -> 2 on the
full-resolution map). Whether int8 there is accurate enough depends on the weights and
the scale factor, so the exporter measures it instead of fixing it:

1. convert with the image-sized edges int8 (the kernel-sized ones stay float);
2. run it and the fp32 file on :data:`CHECK_IMAGES` training-source LR images (never
   the test set) and take the mean kernel L1 distance between their kernels;
3. keep it if that distance is within the format's ``delta_l1`` tolerance, else convert
   with every edge float.

The bound is the parity criterion's own: :func:`~mobile_kernelnet.metrics.kernel_l1`
normalises each kernel alone, so ``|L1(a, t) - L1(b, t)| <= kernel_l1(a, b)`` for any
true kernel ``t`` -- within it, the int8 file's ΔL1 against the fp32 file (itself within
1e-6 of PyTorch) holds on those images whatever their true kernels.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from mobile_kernelnet.metrics import kernel_l1

from .calibration import calibration_images
from .manifest import TensorIO
from .runtimes import LiteRunner
from .tflite_formats import Conversion, TFLiteChain, cnn_edges, tflite_io

CHECK_IMAGES = 8
"""Made images of the edge check (each also dimmed: twice as many LR images)."""
CHECK_SEED = 99
"""Their seed (calibration uses another)."""


def kernel_distance(chain: TFLiteChain, conversion: Conversion, name: str, lrs: np.ndarray,
                    onnx_io: tuple[tuple[TensorIO, ...], tuple[TensorIO, ...]]) -> list[float]:
    """Per LR image of ``lrs`` ``(N, 1, S, S)`` float32 in [0, 1], :func:`kernel_l1` between
    the kernels (the last output) of ``conversion`` (made by ``chain.trial`` as ``name``)
    and of the chain's fp32 file; ``onnx_io``: the source ONNX file's inputs and outputs."""
    runners = []
    for path in (chain.trial(conversion, name), chain.fp32()):
        inputs, outputs = tflite_io(path, *onnx_io)
        runners.append(LiteRunner(path, inputs, outputs))
    kernel = onnx_io[1][-1].name
    return [kernel_l1(*(run(lr[None])[kernel][0, 0] for run in runners)) for lr in lrs]


def choose_int8(chain: TFLiteChain, calibration: np.ndarray, sf: int,
                onnx_io: tuple[tuple[TensorIO, ...], tuple[TensorIO, ...]], tolerance: float) -> tuple[Conversion, dict]:
    """The ``int8`` conversion of ``chain`` (calibrated on ``calibration`` ``(N, S, S, 1)``
    NHWC) by the check above, and its manifest record: the rule, the check images, the
    image-edges-int8 candidate's float nodes and distances (mean, max), and which was
    chosen. ``tolerance``: the format's ``delta_l1``."""
    size = calibration.shape[1]
    lrs, source = calibration_images(sf, size, CHECK_IMAGES, seed=CHECK_SEED)
    record = {"rule": f"image-sized CNN edges int8 when the mean kernel L1 distance to the fp32 file on the "
                      f"check images is <= {tolerance} (the format's delta_l1 tolerance), else every edge float",
              "check_images": source}
    safe = chain.selective_int8(calibration)
    fast = replace(safe, float_nodes=tuple(e.name for e in cnn_edges(chain.fp32()) if not e.image_sized))
    if fast.float_nodes == safe.float_nodes:
        record.update(chosen="every edge float (no image-sized edges)")
        return safe, record
    distances = kernel_distance(chain, fast, "int8-image-edges", lrs, onnx_io)
    record["image_edges_int8"] = {"float_nodes": list(fast.float_nodes), "distance_mean": float(np.mean(distances)),
                                  "distance_max": float(np.max(distances))}
    if np.mean(distances) <= tolerance:
        record.update(chosen="image-sized edges int8")
        return fast, record
    record.update(chosen="every edge float")
    return safe, record
