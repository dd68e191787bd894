"""ONNX (matmul mode) -> TFLite with onnx2tf and TensorFlow; op reports.

:class:`TFLiteChain` is the whole path, in named steps, each run once per export:
``onnx-matmul`` file -> :meth:`~TFLiteChain.saved_model` (onnx2tf) ->
:meth:`~TFLiteChain.fp32` (the plain conversion, which ``int8`` also reads its op list
and CNN edges from) -> :meth:`~TFLiteChain.convert` for each kind, described by one
:class:`Conversion` (:meth:`~TFLiteChain.trial` converts a candidate to check first).

* :func:`run_onnx2tf` translates the ONNX graph to a TensorFlow SavedModel (in
  a subprocess, its own output kept in a log).
* :func:`convert_saved_model` makes each TFLite file from that SavedModel with
  TensorFlow's converter (builtin ops only: a graph needing Flex ops fails here
  instead of on the phone), so every file carries the ``serving_default`` signature
  (onnx2tf's own ``.tflite`` files have none).
* ``int8`` is selective: the convolutions (and their activations) run in int8;
  every other op -- the FFT products, the eq. 11 division, the spectrum powers and
  the normalisations, whose dynamic range int8 cannot hold (a fully integer model
  fails outright in the quantised DIV) -- stays float (TensorFlow's
  QuantizationDebugger ``denylisted_ops``), and so do the CNNs' edges that a check does
  not let go (:mod:`export.int8_edges`). Inputs and outputs stay float32.
* ``int16x8`` is full integer (TensorFlow's 16x8 mode: int16 activations, int8 weights, every
  op; float32 input and output quantised at the edges): what a fixed-point NPU runs whole.
  It converts only models written in the forms of :mod:`mobile_kernelnet.models.quantisable`
  (the exporter asks the model first).
* :func:`analyze_tflite` lists each file's ops and which of them run in int8.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .formats import TFLITE_KINDS
from .manifest import TensorIO

INT8_OP_TYPES = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "DEPTH_TO_SPACE", "TANH", "LOGISTIC",
                 "LEAKY_RELU")
"""Op types quantised in ``int8``; all others are kept float (``DEPTH_TO_SPACE`` only moves
values: it joins a blocked convolution, :mod:`conv_rewrite`, to the CNN run it belongs to)."""
ONNX2TF_FLAGS = ("-dsm", "-osd", "-nuo")
"""``-dsm`` skips the strict accuracy-correction pass that cannot handle a Mul by a
scalar constant; ``-osd`` writes the SavedModel with a ``serving_default`` signature;
``-nuo``: the input is already simplified with onnxsim."""


class ConverterError(RuntimeError):
    """A converter failed; the message names the log holding its own output."""


def run_onnx2tf(onnx_path: Path, out_dir: Path, log_path: Path, timeout_s: float = 1800) -> Path:
    """Translate ``onnx_path`` with onnx2tf; returns the SavedModel folder ``out_dir``.
    The converter's stdout/stderr go to ``log_path``; :class:`ConverterError` on failure."""
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out_dir), *ONNX2TF_FLAGS]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            raise ConverterError(f"onnx2tf did not finish in {timeout_s:.0f} s; its output is in logs/{log_path.name}")
    if rc != 0 or not (out_dir / "saved_model.pb").is_file():
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise ConverterError(f"onnx2tf failed (exit {rc}, saved_model.pb "
                             f"{'written' if (out_dir / 'saved_model.pb').is_file() else 'missing'}); "
                             f"full output in logs/{log_path.name}; last lines:\n{tail}")
    return out_dir


IMAGE_SIZED = 1 / 4
"""An op's map is image-sized when it has at least this share of the input's pixels (KernelNet's
gradient CNN: full and half resolution); smaller maps (kernel-sized: KernelNet's refinement CNN)
cost next to nothing whatever their precision."""


@dataclass(frozen=True)
class CnnEdge:
    """An int8-able op at the edge of a CNN run (:func:`cnn_edges`): its output tensor's
    ``name`` and whether its map is image-sized (:data:`IMAGE_SIZED`)."""

    name: str
    image_sized: bool


def cnn_edges(fp32_path: Path) -> list[CnnEdge]:
    """The int8-able ops at the edges of each CNN run in a float TFLite model: the op whose
    data input comes from outside the run (a graph input or a float op), and the op whose
    output leaves it (a graph output or read by a float op), with the convolution feeding it
    when that op is an activation. The LR gradients going in and the sharp gradients / kernel
    coming out are small signals that int8 steps of 1/128 can swamp (sf 4 parity fails with
    them all int8), so ``int8`` keeps them float unless a check allows otherwise
    (:mod:`export.int8_edges`)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(fp32_path))
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only listing of op inputs/outputs LiteRT offers
    graph_out = {d["index"] for d in interp.get_output_details()}
    input_pixels = _pixels(interp.get_input_details()[0]["shape"])
    producer = {t: op["index"] for op in ops for t in op["outputs"]}
    consumers: dict[int, list[int]] = {}
    for op in ops:
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(op["index"])
    in_cnn = {op["index"] for op in ops if op["op_name"] in INT8_OP_TYPES}
    edges = set()
    for op in ops:
        if op["index"] not in in_cnn:
            continue
        src, out = int(op["inputs"][0]), int(op["outputs"][0])
        if producer.get(src) not in in_cnn:
            edges.add(op["index"])
        if out in graph_out or any(c not in in_cnn for c in consumers.get(out, [])):
            edges.add(op["index"])
            if op["op_name"] in ("TANH", "LOGISTIC", "LEAKY_RELU") and producer.get(src) in in_cnn:
                edges.add(producer[src])
    outputs = [tensors[int(ops[i]["outputs"][0])] for i in sorted(edges)]
    return [CnnEdge(t["name"], _pixels(t["shape"]) >= IMAGE_SIZED * input_pixels) for t in outputs]


def _pixels(nhwc_shape) -> int:
    """``H * W`` of an NHWC shape."""
    return int(np.prod(nhwc_shape[1:-1]))


CALIBRATED_KINDS = ("int8", "int16x8")
"""Conversions that quantise activations (a representative dataset sets their ranges)."""


@dataclass(frozen=True)
class Conversion:
    """One TFLite conversion: ``kind`` (:data:`TFLITE_KINDS`); ``int8`` also needs
    ``calibration`` ``(N, S, S, 1)`` float32 (NHWC) and keeps the ops of
    ``float_op_types`` and the ops named in ``float_nodes`` float."""

    kind: str
    calibration: np.ndarray | None = None
    float_op_types: tuple[str, ...] = ()
    float_nodes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in TFLITE_KINDS:
            raise ValueError(f"unknown TFLite kind {self.kind!r}; one of {TFLITE_KINDS}")
        if self.kind in CALIBRATED_KINDS and (self.calibration is None or not len(self.calibration)):
            raise ValueError(f"{self.kind} needs calibration images")


def convert_saved_model(saved_model: Path, conversion: Conversion) -> bytes:
    """A TFLite flatbuffer of ``conversion`` from ``saved_model``."""
    import tensorflow as tf

    kind = conversion.kind
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind == "fp32":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    if kind == "dynamic-int8":
        return converter.convert()

    def representative():
        for x in conversion.calibration:
            yield [x[None]]

    converter.representative_dataset = representative
    if kind == "int16x8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        return converter.convert()
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(conversion.float_op_types),
                                                          denylisted_nodes=list(conversion.float_nodes))
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative,
                                                        debug_options=options)
    return debugger.get_nondebug_quantized_model()


def convert_isolated(saved_model: Path, conversion: Conversion, out: Path, log_path: Path,
                     timeout_s: float = 1800) -> None:
    """:func:`convert_saved_model` in a child process, writing ``out``: TensorFlow's
    converter can abort the whole process (seen: a segfault after "scale out of
    expressed type range" in S2K's int8 calibration), which must cost one format, not
    the export. Its output goes to ``log_path``; :class:`ConverterError` on failure."""
    kind = conversion.kind
    job = {"saved_model": str(saved_model), "kind": kind, "out": str(out),
           "float_op_types": list(conversion.float_op_types), "float_nodes": list(conversion.float_nodes),
           "calibration": None}
    if conversion.calibration is not None:
        job["calibration"] = str(out.with_suffix(".calibration.npy"))
        np.save(job["calibration"], conversion.calibration)
    cmd = [sys.executable, "-m", "export.tflite_formats", json.dumps(job)]
    try:
        with open(log_path, "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                raise ConverterError(f"TFLite {kind} conversion did not finish in {timeout_s:.0f} s; "
                                     f"see logs/{log_path.name}")
    finally:
        if job["calibration"]:
            Path(job["calibration"]).unlink(missing_ok=True)
    if rc != 0 or not out.is_file():
        out.unlink(missing_ok=True)
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-8:])
        raise ConverterError(f"TensorFlow's TFLite {kind} converter failed (exit {rc}); full output in "
                             f"logs/{log_path.name}; last lines:\n{tail}")


def _convert_job(job: dict) -> None:
    """Child side of :func:`convert_isolated`."""
    calibration = np.load(job["calibration"]) if job["calibration"] else None
    conversion = Conversion(job["kind"], calibration, tuple(job["float_op_types"]), tuple(job["float_nodes"]))
    Path(job["out"]).write_bytes(convert_saved_model(Path(job["saved_model"]), conversion))


class TFLiteChain:
    """The TFLite path of one export: ``onnx_file`` (its ``onnx-matmul`` or ``onnx-matmul-int8``)
    -> SavedModel -> fp32 -> each kind. Intermediate files live in ``scratch``; converter logs in ``logs``, their
    names starting with ``log_prefix``."""

    def __init__(self, onnx_file: Path, scratch: Path, logs: Path, log_prefix: str = ""):
        self.onnx_file, self.scratch, self.logs, self.log_prefix = onnx_file, scratch, logs, log_prefix
        self._saved_model: Path | None = None
        self._fp32: Path | None = None
        self._trials: list[tuple[Conversion, Path]] = []

    def saved_model(self) -> Path:
        """Step 1: onnx2tf's SavedModel (onnx2tf rewrites the file it is given, so it gets a copy)."""
        if self._saved_model is None:
            self.scratch.mkdir(parents=True, exist_ok=True)
            copy = Path(shutil.copy(self.onnx_file, self.scratch / "model.onnx"))
            self._saved_model = run_onnx2tf(copy, self.scratch / "saved_model", self.logs / f"{self.log_prefix}onnx2tf.log")
        return self._saved_model

    def fp32(self) -> Path:
        """Step 2: the fp32 TFLite file."""
        if self._fp32 is None:
            path = self.scratch / "fp32.tflite"
            convert_isolated(self.saved_model(), Conversion("fp32"), path, self.logs / f"{self.log_prefix}convert-fp32.log")
            self._fp32 = path
        return self._fp32

    def selective_int8(self, calibration: np.ndarray) -> Conversion:
        """The ``int8`` conversion of this chain calibrated on ``calibration`` ``(N, S, S, 1)``
        float32 (NHWC): int8 inside the CNNs (:data:`INT8_OP_TYPES`); every other op type of
        the fp32 file float, and so are the CNNs' edge ops (:func:`cnn_edges`; which of them
        may go int8 is :mod:`export.int8_edges`'s check)."""
        fp32 = self.fp32()
        return Conversion("int8", calibration,
                          tuple(sorted(op for op in analyze_tflite(fp32)["ops"] if op not in INT8_OP_TYPES)),
                          tuple(e.name for e in cnn_edges(fp32)))

    def convert(self, conversion: Conversion, out: Path) -> None:
        """Step 3: write the TFLite file of ``conversion`` to ``out`` (fp32: a copy of step 2;
        a conversion already made by :meth:`trial`: a copy of that file)."""
        made = self.fp32() if conversion.kind == "fp32" else self._trial_file(conversion)
        if made is not None:
            shutil.copyfile(made, out)
        else:
            convert_isolated(self.saved_model(), conversion, out, self.logs / f"{self.log_prefix}convert-{conversion.kind}.log")

    def trial(self, conversion: Conversion, name: str) -> Path:
        """The TFLite file of ``conversion`` in the scratch folder as ``name``.tflite (its log
        ``convert-name.log``), for a check before choosing; :meth:`convert` reuses it."""
        path = self._trial_file(conversion)
        if path is None:
            path = self.scratch / f"{name}.tflite"
            convert_isolated(self.saved_model(), conversion, path, self.logs / f"{self.log_prefix}convert-{name}.log")
            self._trials.append((conversion, path))
        return path

    def _trial_file(self, conversion: Conversion) -> Path | None:
        return next((path for made, path in self._trials if made is conversion), None)


_OP = re.compile(r"^\s*Op#(\d+) (\w+)\((.*?)\) -> \[(.*?)\]")
_TENSOR = re.compile(r"^\s*T#(\d+)\(.*\) shape.*type:(\w+)")
_TREF = re.compile(r"T#(-?\d+)")


def analyzer_text(path: Path) -> str:
    """What ``tf.lite.experimental.Analyzer`` prints for ``path``."""
    import tensorflow as tf

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path))
    return buf.getvalue()


def parse_analyzer(text: str) -> dict:
    """Op counts and per-op numeric type from :func:`analyzer_text`.

    An op is ``int8`` (or ``int16``) if its output is, ``hybrid`` if only an input (a
    weight) is integer, else ``float``. (The analyzer's GPU verdict is not used: it passes graphs the real
    GPU accelerator refuses; :mod:`export.gpu` measures placement.)"""
    ops, types = [], {}
    for line in text.splitlines():
        if m := _OP.match(line):
            ins = [int(t) for t in _TREF.findall(m.group(3))]
            outs = [int(t) for t in _TREF.findall(m.group(4))]
            ops.append((m.group(2), ins, outs))
        elif m := _TENSOR.match(line):
            types[int(m.group(1))] = m.group(2)
    counts, numeric = Counter(), {"int8": Counter(), "int16": Counter(), "hybrid": Counter(), "float": Counter()}
    int_types = ("INT8", "UINT8", "INT16")
    for name, ins, outs in ops:
        counts[name] += 1
        out_types = {types.get(t) for t in outs}
        if "INT16" in out_types:
            numeric["int16"][name] += 1
        elif out_types & {"INT8", "UINT8"}:
            numeric["int8"][name] += 1
        elif any(types.get(t) in int_types for t in ins):
            numeric["hybrid"][name] += 1
        else:
            numeric["float"][name] += 1
    return {"ops": dict(sorted(counts.items())),
            "numeric": {k: dict(sorted(v.items())) for k, v in numeric.items()}}


def analyze_tflite(path: Path) -> dict:
    """:func:`parse_analyzer` of ``path``."""
    return parse_analyzer(analyzer_text(path))


def tflite_io(path: Path, onnx_inputs: tuple[TensorIO, ...],
              onnx_outputs: tuple[TensorIO, ...]) -> tuple[tuple[TensorIO, ...], tuple[TensorIO, ...]]:
    """The inputs and outputs of a TFLite file converted from an ONNX file with these.
    Its signature names outputs ``output_0, output_1, ...`` in the ONNX output order; each
    keeps the ONNX name, with the signature ``tensor`` name, the stored shape and its layout."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    found = {"inputs": runner.get_input_details(), "outputs": runner.get_output_details()}
    result = []
    for side, onnx_io in (("inputs", onnx_inputs), ("outputs", onnx_outputs)):
        tensors = [t.name for t in onnx_io] if side == "inputs" else [f"output_{i}" for i in range(len(onnx_io))]
        if sorted(tensors) != sorted(found[side]):
            raise ConverterError(f"{path.name}: signature {side} {sorted(found[side])}, expected {tensors}")
        shapes = [tuple(int(d) for d in found[side][tensor]["shape"]) for tensor in tensors]
        result.append(tuple(TensorIO(t.name, shape, layout_of(list(shape), list(t.shape)), tensor)
                            for t, tensor, shape in zip(onnx_io, tensors, shapes)))
    return result[0], result[1]


def layout_of(shape: list[int], nchw: list[int]) -> str:
    """``"NHWC"`` or ``"NCHW"``: which layout ``shape`` is of the tensor whose NCHW shape is ``nchw``."""
    n, c, h, w = nchw
    as_nhwc, as_nchw = shape == [n, h, w, c], shape == list(nchw)
    if as_nhwc == as_nchw:
        raise ConverterError(f"cannot tell the layout of shape {shape} (NCHW {nchw})")
    return "NHWC" if as_nhwc else "NCHW"


if __name__ == "__main__":
    _convert_job(json.loads(sys.argv[1]))
