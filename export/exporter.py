"""`mkn export`: one estimator -> every requested format of :data:`formats.FORMATS`.

Each format has one function ``build(job) -> dict`` (:data:`BUILDERS`) that writes its file into the
job's work folder and returns its manifest fields (made into an :class:`~export.manifest.Artifact`). The whole directory is built
under a hidden temporary name and renamed into place at the end, so an
interrupted export never leaves a directory that looks complete. A format whose
converter fails is recorded under ``failed`` in the manifest with its log (the
converter's own output); the others are still written, and the export reports
failure. Each TFLite format is converted from the ONNX file it ``needs`` (``onnx-matmul``;
``onnx-matmul-int8`` for the two files with int8 DFT matrices, dynamic-int8 and full-integer),
which is therefore always written with it,
through one :class:`~export.tflite_formats.TFLiteChain` per source.

Every TFLite file is also run through LiteRT's GPU accelerator (:mod:`export.gpu`:
placement and numerics, the manifest's ``gpu`` record) and, for each requested NPU
target, compiled ahead of time (:mod:`export.npu`: the compiled file in ``npu/``,
its placement in the ``npu`` record; a failed compile is recorded with its log, not
fatal).
"""
from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from mobile_kernelnet.estimation import MIN_SIDE_IN_KERNELS
from mobile_kernelnet.kernels import kernel_size
from mobile_kernelnet.models import create_model
from mobile_kernelnet.models.registry import StagedEstimator, model_entry, weights_path

from .calibration import calibration_images
from .conv_rewrite import block_wide_convs
from .gpu import gpu_check
from .int8_edges import choose_int8
from .formats import FORMATS, ExportFormat, feeds_full_integer
from .manifest import Artifact, Manifest, TensorIO, sha256, tool_versions, write_manifest
from .npu import NpuTarget, compile_for
from .onnx_formats import StageOutputs, export_onnx
from .tflite_formats import Conversion, TFLiteChain, analyze_tflite, tflite_io

MAX_INPUT_SIZE = 1024
"""Largest exported input side: the matmul DFT stores ``n x n`` constant matrices."""
CHECK_IMAGES = 4
"""Training-source LR images each TFLite file's GPU path is compared on (seed 99)."""


class ExportError(ValueError):
    """The export cannot start (bad request) or a format failed (see the manifest)."""


@dataclass
class ExportJob:
    """What the format functions share: the model, the work folder and built results."""

    model: str
    config: str
    sf: int
    input_size: int
    work: Path
    calibration_n: int = 32
    npu: tuple[NpuTarget, ...] = ()
    built: dict[str, Artifact] = field(default_factory=dict)
    _tflite: dict[str, TFLiteChain] = field(default_factory=dict)
    _check_images: list | None = None

    @property
    def stem(self) -> str:
        return f"{self.model}_{self.config}_sf{self.sf}_{self.input_size}"

    def module(self, backend: str, blocked: bool = True) -> StageOutputs:
        """The estimator with ``backend`` spectral ops, wrapped to output every stage; with
        ``blocked`` its wide few-input convolutions are in blocked form where the input side
        allows (:mod:`conv_rewrite`: the same outputs, fast int8 kernels, a ``DEPTH_TO_SPACE`` op)."""
        net = staged_model(self.model, self.config, self.sf)
        if blocked:
            block_wide_convs(net, self.input_size)
        return StageOutputs(net.set_spectral_backend(backend), net.stage_names).eval()

    def example(self) -> torch.Tensor:
        return torch.rand(1, 1, self.input_size, self.input_size, generator=torch.Generator().manual_seed(0))

    def tflite_chains(self) -> list[TFLiteChain]:
        """The TFLite chains the job has made (their scratch folders go before the rename)."""
        return list(self._tflite.values())

    def tflite(self, source: str = "onnx-matmul") -> TFLiteChain:
        """The job's TFLite chain from its ONNX file ``source`` (one per source)."""
        if source not in self._tflite:
            self._tflite[source] = TFLiteChain(self.work / self.built[source].file, self.work / f".onnx2tf-{source}",
                                               self.work / "logs", "" if source == "onnx-matmul" else f"{source}.")
        return self._tflite[source]

    def conversion(self, fmt: ExportFormat) -> tuple[Conversion, dict]:
        """The conversion of the TFLite format ``fmt`` and the manifest's ``quantization``
        record of it: ``int8`` keeps the fp32 file's non-CNN ops float and the CNN edges
        a check does not let go (:mod:`int8_edges`), calibrated on training-source images,
        and records why (from the model's entry)."""
        kind = fmt.tflite_kind
        record = {"mode": kind, "detail": fmt.quantization}
        if kind == "int16x8":
            lr, source = calibration_images(self.sf, self.input_size, self.calibration_n, gratings=True)
            return Conversion(kind, lr.transpose(0, 2, 3, 1)), {**record, "calibration": source}
        if kind != "int8":
            return Conversion(kind), record
        lr, source = calibration_images(self.sf, self.input_size, self.calibration_n)
        onnx = self.built[fmt.needs[0]]
        conversion, edges = choose_int8(self.tflite(fmt.needs[0]), lr.transpose(0, 2, 3, 1), self.sf,
                                        (onnx.inputs, onnx.outputs), fmt.tolerance.delta_l1)
        record.update(float_op_types=list(conversion.float_op_types), float_nodes=list(conversion.float_nodes),
                      edges=edges, calibration=source,
                      why_float=create_model(self.model, self.sf, self.config, pretrained=False).int8_float_reason)
        return conversion, record

    def check_images(self) -> list:
        """:data:`CHECK_IMAGES` LR images ``(1, 1, S, S)`` for the accelerator checks (made once)."""
        if self._check_images is None:
            lr, _ = calibration_images(self.sf, self.input_size, CHECK_IMAGES // 2, seed=99)  # bright + dim
            self._check_images = [x[None] for x in lr]
        return self._check_images

    def accelerator_records(self, file: str, inputs: tuple[TensorIO, ...], outputs: tuple[TensorIO, ...]) -> dict:
        """The ``gpu`` and ``npu`` manifest records of the TFLite file ``file``."""
        path = self.work / file
        npu = {}
        if self.npu:
            (self.work / "npu").mkdir(exist_ok=True)
        for target in self.npu:
            compiled = f"{Path(file).stem}.{target.vendor}-{target.soc}.tflite"
            record = compile_for(path, target, self.work / "npu" / compiled,
                                 self.work / "logs" / "npu" / f"{compiled}.log").to_json()
            if record["file"]:
                record.update(file=f"npu/{compiled}", sha256=sha256(self.work / "npu" / compiled))
            record["log"] = f"logs/npu/{record['log']}"
            npu[str(target)] = record
        return {"gpu": gpu_check(path, inputs, outputs, self.check_images()), **({"npu": npu} if npu else {})}


def build_onnx(fmt: ExportFormat) -> Callable[[ExportJob], dict]:
    backend = "torch" if fmt.spectral_mode == "dft" else fmt.spectral_mode

    def build(job: ExportJob) -> dict:
        file = f"{job.stem}{fmt.suffix}"
        # TensorFlow's 16x8 quantiser has no DEPTH_TO_SPACE: a full integer file's source keeps plain convs
        info = export_onnx(job.module(backend, blocked=not feeds_full_integer(fmt.name)), job.example(),
                           job.work / file, fmt.spectral_mode)
        return {"file": file, "runtime": fmt.runtime, **info}
    build.__doc__ = f"ONNX with the FFT stages as {'DFT ops' if fmt.spectral_mode == 'dft' else 'constant-matrix MatMuls'}" \
                    f"{' split into int8-exact factors' if fmt.spectral_mode == 'matmul-int8' else ''}."
    return build


def build_tflite(fmt: ExportFormat) -> Callable[[ExportJob], dict]:
    def build(job: ExportJob) -> dict:
        file = f"{job.stem}{fmt.suffix}"
        source = fmt.needs[0]
        conversion, quantization = job.conversion(fmt)
        job.tflite(source).convert(conversion, job.work / file)
        onnx = job.built[source]
        inputs, outputs = tflite_io(job.work / file, onnx.inputs, onnx.outputs)
        return {"file": file, "runtime": fmt.runtime, "source": f"{source} (onnx2tf SavedModel)",
                "spectral_mode": fmt.spectral_mode, "inputs": [t.to_json() for t in inputs],
                "outputs": [t.to_json() for t in outputs], **analyze_tflite(job.work / file),
                "quantization": quantization, **job.accelerator_records(file, inputs, outputs)}
    build.__doc__ = f"TFLite {fmt.tflite_kind}: {fmt.quantization}."
    return build


BUILDERS: dict[str, Callable[[ExportJob], dict]] = {
    name: (build_tflite if fmt.tflite_kind else build_onnx)(fmt) for name, fmt in FORMATS.items()}
"""One builder per entry of :data:`formats.FORMATS`."""


def _remove_unlisted(work: Path, built: dict[str, Artifact]) -> None:
    """Delete model files in ``work`` that no built artifact lists (a failed format's leftovers)."""
    keep = {a.file for a in built.values()}
    for p in work.iterdir():
        if p.is_file() and p.name not in keep:
            p.unlink()


def staged_model(model: str, config: str, sf: int) -> StagedEstimator:
    """The shipped estimator, which must have stages to export (:class:`ExportError` otherwise)."""
    net = create_model(model, sf, config)
    if not isinstance(net, StagedEstimator):
        raise ExportError(f"model {model!r} has no stages to export (it is not a StagedEstimator)")
    return net


def plan(formats: list[str], full_integer_blocker: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Formats to build, in table order, with what they need added, and ``{format: why}`` of
    those left out because the model cannot have them (``full_integer_blocker``: the model's
    reason it cannot be fully integer). ``["all"]`` is every format the model can have;
    naming one it cannot is an :class:`ExportError`."""
    everything = formats == ["all"]
    names = list(FORMATS) if everything else formats
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)} or 'all'")
    left_out = {f: full_integer_blocker for f in names if FORMATS[f].full_integer and full_integer_blocker}
    if left_out and not everything:
        raise ExportError(f"{', '.join(left_out)}: this model's graph cannot be fully integer: {full_integer_blocker}")
    wanted = {f for f in names if f not in left_out}
    wanted |= {n for f in wanted for n in FORMATS[f].needs}
    return [f for f in FORMATS if f in wanted], left_out


def check_request(model: str, config: str, sf: int, input_size: int) -> None:
    """Raise :class:`ExportError` for a model, weights file or input size that cannot export."""
    entry = model_entry(model)
    if config not in entry.configs:
        raise ExportError(f"model {model!r} has configs {entry.configs}, not {config!r}")
    if not weights_path(model, config, sf).is_file():
        raise ExportError(f"no shipped weights for {model} {config} sf{sf} at {weights_path(model, config, sf)}; "
                          "train them with `mkn train ... --ship`")
    need = MIN_SIDE_IN_KERNELS * kernel_size(sf)
    if not need <= input_size <= MAX_INPUT_SIZE:
        raise ExportError(f"input size {input_size} px cannot be exported for sf {sf}: it must be between "
                          f"{need} ({MIN_SIDE_IN_KERNELS} kernel widths) and {MAX_INPUT_SIZE}")


def export(model: str, config: str, sf: int, input_size: int, formats: list[str], out: str | Path,
           overwrite: bool = False, calibration_n: int = 32, npu: list[NpuTarget] | None = None,
           progress: Callable[[str], None] = print) -> Manifest:
    """Export ``model``/``config`` at ``sf`` for ``input_size`` x ``input_size`` LR inputs to
    ``formats`` (names of :data:`formats.FORMATS`, or ``["all"]``: :func:`plan`) in folder ``out`` (TFLite files also compiled for each ``npu`` target);
    returns the manifest. Raises :class:`ExportError` before
    writing anything for a bad request, and after writing the directory if any format failed."""
    out = Path(out)
    check_request(model, config, sf, input_size)
    order, left_out = plan(formats, staged_model(model, config, sf).full_integer_blocker)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; pass --overwrite to replace it")
    work = out.with_name(f".{out.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "logs").mkdir(parents=True)
    job = ExportJob(model, config, sf, input_size, work, calibration_n, tuple(npu or ()))
    failed = {}
    try:
        for fmt in order:
            missing = [n for n in FORMATS[fmt].needs if n not in job.built]
            if missing:
                failed[fmt] = {"error": f"not built: it needs {missing}, which failed"}
                continue
            progress(f"{fmt}: exporting")
            try:
                art = BUILDERS[fmt](job)
            except Exception as exc:  # noqa: BLE001 -- recorded per format, re-raised below as ExportError
                log = work / "logs" / f"{fmt}.log"
                log.write_text(traceback.format_exc())
                failed[fmt] = {"error": f"{type(exc).__name__}: {exc}", "log": f"logs/{fmt}.log"}
                progress(f"{fmt}: FAILED ({type(exc).__name__}); see {out / 'logs' / (fmt + '.log')}")
                _remove_unlisted(work, job.built)
                continue
            file = work / art["file"]
            job.built[fmt] = Artifact.from_json(fmt, {**art, "sha256": sha256(file),
                                                      "size_bytes": file.stat().st_size}, "export")
        for chain in job.tflite_chains():
            shutil.rmtree(chain.scratch, ignore_errors=True)
        manifest = Manifest(model, config, sf, input_size, kernel_size(sf), tuple(job.module("torch").names),
                            sha256(weights_path(model, config, sf)), tool_versions(), job.built, failed, left_out)
        write_manifest(work, manifest)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise ExportError(f"{len(failed)} format(s) failed: " +
                          "; ".join(f"{k}: {v['error'].splitlines()[0]}" for k, v in failed.items()) +
                          f" (manifest and logs in {out})")
    return manifest
