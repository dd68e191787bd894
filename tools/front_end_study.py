"""Latency of candidate KernelNet gradient front ends, before training any:
results/front_end_study_sf2.json.

Each candidate is a ``(B, 2, H, W) -> (B, 2, H, W)`` module put in place of the mobile sf 2
KernelNet's gradient CNN (untrained: the arithmetic, not the weights, sets the latency).
The whole model goes through the toolkit's own path -- ONNX (matmul DFT, onnxsim) and
TensorFlow's fp32 and selective int8 TFLite conversions, as ``mkn export`` makes them
(:class:`export.tflite_formats.TFLiteChain`) -- and every file is timed by :func:`bench.benchmark.bench_group` (LiteRT with XNNPACK,
one worker process per file, all candidates' files interleaved in one group), at 2
threads and each input size asked. The spectral stages are ~0.5 GFLOP of the 1.49 at 256 px.

Usage: ``python tools/front_end_study.py [--sizes 256,128] [--candidates A,B] [--runs 50] [--json PATH]``.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

from bench.benchmark import Target, bench_group
from bench.roofline import floor_ms, model_flops, sgemm_peak_gflops
from export.calibration import calibration_images
from export.manifest import Artifact, Manifest, sha256, tool_versions
from export.onnx_formats import StageOutputs, export_onnx
from export.tflite_formats import Conversion, TFLiteChain, tflite_io
from mobile_kernelnet.imio import write_json
from mobile_kernelnet.kernels import kernel_size
from mobile_kernelnet.models import create_model
from mobile_kernelnet.models.kernelnet import GradientEstimator

SF, CHANNELS, THREADS = 2, 24, 2
KINDS = ("fp32", "int8")
CALIBRATION_IMAGES = 8


CANDIDATES = {
    "separable-24 (shipped)": lambda: GradientEstimator(CHANNELS, "separable"),
    "separable-16": lambda: GradientEstimator(16, "separable"),
    "half-res-body-24": lambda: GradientEstimator(CHANNELS, "half-res"),
    "factored-24": lambda: GradientEstimator(CHANNELS, "factored"),
    "half-res-factored-24": lambda: GradientEstimator(CHANNELS, "half-res-factored"),
    "half-res-factored-32": lambda: GradientEstimator(32, "half-res-factored"),
    "half-res-detail-32": lambda: GradientEstimator(32, "half-res-detail"),
    "none (the other stages' cost)": lambda: nn.Tanh(),
    "dense-24": lambda: GradientEstimator(CHANNELS, "dense"),
    "dense-16": lambda: GradientEstimator(16, "dense"),
    "dense-12": lambda: GradientEstimator(12, "dense"),
}


def candidate_model(make) -> nn.Module:
    """The mobile sf 2 KernelNet (untrained) with the candidate's gradient CNN."""
    torch.manual_seed(0)
    model = create_model("kernelnet", SF, "mobile", pretrained=False)
    model.gradient = make()
    return model.eval()


def export_candidate(model: nn.Module, size: int, folder: Path) -> Manifest:
    """ONNX (matmul) and the :data:`KINDS` TFLite files of ``model`` at ``size`` in ``folder``,
    with the manifest the bench reads (weights: untrained, so no weights digest)."""
    folder.mkdir(parents=True)
    example = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    onnx_file = folder / "model_matmul.onnx"
    module = StageOutputs(model.set_spectral_backend("matmul"), model.stage_names).eval()
    info = export_onnx(module, example, onnx_file, "matmul")
    onnx = Artifact.from_json("onnx-matmul", {**info, "file": onnx_file.name, "sha256": sha256(onnx_file),
                                              "size_bytes": onnx_file.stat().st_size, "runtime": "onnxruntime"},
                              "study")
    chain, artifacts = TFLiteChain(onnx_file, folder / ".onnx2tf", folder / "logs"), {}
    (folder / "logs").mkdir()
    for kind in KINDS:
        out = folder / f"model_{kind}.tflite"
        conversion = (chain.selective_int8(calibration_images(SF, size, CALIBRATION_IMAGES)[0].transpose(0, 2, 3, 1))
                      if kind == "int8" else Conversion(kind))
        chain.convert(conversion, out)
        inputs, outputs = tflite_io(out, onnx.inputs, onnx.outputs)
        artifacts[f"tflite-{kind}"] = Artifact(f"tflite-{kind}", out.name, sha256(out), out.stat().st_size,
                                               "litert", "matmul", inputs, outputs)
    return Manifest("kernelnet", "mobile", SF, size, kernel_size(SF), tuple(model.stage_names), "untrained",
                    tool_versions(), artifacts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,128", help="LR input sides, comma-separated")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--candidates", default=",".join(CANDIDATES),
                    help="names of CANDIDATES, comma-separated (default: all)")
    ap.add_argument("--json", type=Path, default=Path("results/front_end_study_sf2.json"))
    args = ap.parse_args()
    unknown = [name for name in args.candidates.split(",") if name not in CANDIDATES]
    if unknown:
        ap.error(f"--candidates: unknown {unknown}; choose from {list(CANDIDATES)}")
    chosen = {name: CANDIDATES[name] for name in args.candidates.split(",")}
    peak = sgemm_peak_gflops(THREADS)
    report = {"sf": SF, "threads": THREADS, "runtime": "litert-xnnpack", "sgemm_gflops_start": peak, "rows": []}
    with tempfile.TemporaryDirectory(prefix="mkn-front-end-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            targets, flops, manifest = [], {}, None
            for name, make in chosen.items():
                model = candidate_model(make)
                folder = Path(tmp) / f"{size}" / name.split()[0]
                manifest = export_candidate(model, size, folder)  # same file names and I/O in every folder
                flops[name] = model_flops(model, size)
                targets += [(name, Target(f"tflite-{kind}", "litert-xnnpack", folder)) for kind in KINDS]
            # one group: every candidate's files interleaved, so drift hits them alike
            records = bench_group([t for _, t in targets], manifest, THREADS, args.runs, args.warmup, {}, 1, peak)
            for (name, _), rec in zip(targets, records):
                report["rows"].append({"candidate": name, "input_size": size, "format": rec.format,
                                       "gflop": flops[name] / 1e9, "floor_ms": floor_ms(flops[name], peak),
                                       "latency_ms_median": rec.latency_ms_median,
                                       "latency_ms_p90": rec.latency_ms_p90, "status": rec.status, "error": rec.error})
                print(f"{size:>4} {name:<24} {rec.format:<20} {flops[name] / 1e9:6.3f} GFLOP "
                      f"{rec.latency_ms_median or float('nan'):7.2f} ms")
    report["sgemm_gflops_end"] = sgemm_peak_gflops(THREADS)
    write_json(report, args.json)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
