"""The one table of export formats that export, parity, bench and the CLI read.

Each :class:`ExportFormat` says what its file is (suffix, the runtime that runs it, how
its FFT stages are written), what it needs built first, what its quantisation is, how
close parity must find it to PyTorch, and which desktop runtimes the bench times it in.
The builders live in :mod:`export.exporter`, keyed by these names. Importing this module
is cheap (no TensorFlow, no torch): the CLI's choices come from it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """Upper bounds for one parity row; ``None`` = not judged."""

    max_abs: float | None = None
    delta_l1: float | None = None


@dataclass(frozen=True)
class ExportFormat:
    """One export format."""

    name: str
    suffix: str                         # the file is ``<model>_<config>_sf<N>_<size><suffix>``
    runtime: str                        # "onnxruntime" or "litert"
    spectral_mode: str                  # "dft" (ONNX DFT ops), "matmul" (constant-matrix products) or
                                        # "matmul-int8" (each constant split into two int8-exact factors)
    quantization: str                   # what the manifest says of the numbers in the file
    tolerance: Tolerance                # parity against the PyTorch reference
    bench_runtimes: tuple[str, ...]     # `mkn bench` targets of the file
    needs: tuple[str, ...] = ()         # formats built first (the TFLite files convert onnx-matmul)
    tflite_kind: str | None = None      # the TensorFlow converter mode of a TFLite format
    full_integer: bool = False          # every op integer: only a model with no full_integer_blocker exports it


_LITERT = ("litert-xnnpack", "litert-builtin")
_ONNX = ("onnxruntime-cpu",)
FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx-dft", "_dft.onnx", "onnxruntime", "dft", "none", Tolerance(max_abs=1e-5), _ONNX),
    ExportFormat("onnx-matmul", "_matmul.onnx", "onnxruntime", "matmul", "none", Tolerance(max_abs=1e-5), _ONNX),
    ExportFormat("onnx-matmul-int8", "_matmul-int8.onnx", "onnxruntime", "matmul-int8",
                 "none (the source of tflite-dynamic-int8 and tflite-int16x8)", Tolerance(max_abs=1e-5), _ONNX),
    ExportFormat("tflite-fp32", "_fp32.tflite", "litert", "matmul", "none", Tolerance(max_abs=1e-4), _LITERT,
                 ("onnx-matmul",), "fp32"),
    ExportFormat("tflite-fp16", "_fp16.tflite", "litert", "matmul",
                 "float16 weights, dequantised to float32 on CPU (GPU delegates may compute in fp16)",
                 Tolerance(max_abs=2.5e-3, delta_l1=0.01), _LITERT, ("onnx-matmul",), "fp16"),
    ExportFormat("tflite-dynamic-int8", "_dynamic-int8.tflite", "litert", "matmul-int8",
                 "dynamic range: int8 weights of FULLY_CONNECTED/CONV_2D (each DFT matrix as two int8 "
                 "factors), float activations",
                 Tolerance(delta_l1=0.03), _LITERT, ("onnx-matmul-int8",), "dynamic-int8"),
    ExportFormat("tflite-int8", "_int8.tflite", "litert", "matmul",
                 "selective: int8 weights and activations inside the CNN stages (their edge layers too on "
                 "image-sized maps when the exporter's check allows, export.int8_edges); every spectral op float",
                 Tolerance(delta_l1=0.03), _LITERT, ("onnx-matmul",), "int8"),
    ExportFormat("tflite-int16x8", "_int16x8.tflite", "litert", "matmul-int8",
                 "full integer for NPUs: int16 activations and int8 weights in every op, no float op; "
                 "float32 input and output, quantised at the edges", Tolerance(delta_l1=0.03), _LITERT,
                 ("onnx-matmul-int8",), "int16x8", full_integer=True),
)}
TFLITE_KINDS = tuple(f.tflite_kind for f in FORMATS.values() if f.tflite_kind)


INTEGER_KINDS = ("dynamic-int8", "int8", "int16x8")
"""TFLite kinds whose convolutions / products run on integer kernels."""


def computes_in_integer(name: str) -> bool:
    """Whether format ``name`` (or ``"pytorch"``) runs integer kernels, so a float
    compute floor does not bound its latency."""
    return name in FORMATS and FORMATS[name].tflite_kind in INTEGER_KINDS


def feeds_full_integer(name: str) -> bool:
    """Whether a full-integer format is converted from format ``name`` (its graph may then
    hold only ops TensorFlow's 16x8 quantiser takes)."""
    return any(f.full_integer and name in f.needs for f in FORMATS.values())
