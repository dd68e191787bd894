"""GPU and NPU placement: LiteRT's GPU accelerator on the repo's software Vulkan device and
LiteRT's AOT compiler with the QNN host libraries (both set up by `make toolchain`), run
on the CI exports; the log parsers on real logs (tests/fixtures/accelerators/)."""
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from export import gpu, npu
from export.manifest import read_manifest

FIXTURES = Path(__file__).parent / "fixtures" / "accelerators"


def tflite_artifacts(manifest) -> dict:
    return {f: a for f, a in manifest.artifacts.items() if a.runtime == "litert"}


@pytest.mark.parametrize("export_fixture", ["exported", "exported_s2k"])
def test_every_tflite_file_runs_whole_on_the_gpu_accelerator(export_fixture, request):
    """Both models, every TFLite kind: no op left to the CPU, a finite kernel at fp16,
    and the fp32 GPU path equal to the CPU interpreter."""
    m = read_manifest(request.getfixturevalue(export_fixture))
    for fmt, art in tflite_artifacts(m).items():
        g = art.gpu
        assert g["status"] == "checked", (fmt, g.get("error"))
        assert g["fully_delegated"] and g["ops_gpu"] == g["ops_total"] > 0 and g["refused"] == [], (fmt, g)
        assert "llvmpipe" in g["device"] or "VK_ICD_FILENAMES" in os.environ
        assert g["nonfinite"] == {"fp16": [], "fp32": []}, fmt
        assert g["max_abs_vs_cpu"]["fp16"]["kernel"] < 1e-2, fmt
        if fmt in ("tflite-fp32", "tflite-fp16"):  # the GPU computes int8 files in float; float ones must agree
            assert g["max_abs_vs_cpu"]["fp32"]["kernel"] < 1e-5, fmt


@pytest.mark.parametrize("export_fixture", ["exported", "exported_s2k"])
def test_npu_compiles_one_partition_where_the_htp_computes_float(export_fixture, request):
    """SM8650 (HTP v75): every file in one partition, all ops offloaded, the compiled file
    written and listed with its sha256. SM8350 (v68, fixed point only): the float
    islands make the compile fail, which is recorded with the compiler's words."""
    folder = request.getfixturevalue(export_fixture)
    m = read_manifest(folder)  # verifies the compiled files' sha256 too
    for fmt, art in tflite_artifacts(m).items():
        ok = art.npu["qualcomm:SM8650"]
        if fmt == "tflite-dynamic-int8":  # QNN has no hybrid (int8-weight, float-activation) kernels
            assert ok["status"] == "compiled" and ok["partitions"] > 1, ok
            assert {c["op"] for c in ok["cpu_ops"]} <= {"Conv2d", "FullyConnected", "DepthwiseConv2d"}, ok["cpu_ops"]
            continue
        assert ok["fully_offloaded"] and ok["partitions"] == 1 and ok["cpu_ops"] == [], (fmt, ok)
        assert (folder / ok["file"]).stat().st_size > 0 and ok["qnn_version"].startswith("2.")
        old = art.npu["qualcomm:SM8350"]
        assert old["status"] == "failed" and old["file"] is None and not old["fully_offloaded"]
        assert any("PlainFloat" in e or "could not create op" in e for e in old["errors"]), old["errors"]
        assert (folder / old["log"]).is_file()
    assert npu.NpuTarget("qualcomm", "SM8350").float_capable is False


def test_full_integer_file_is_integer_throughout_and_compiles_whole_on_every_htp(exported_integer):
    """tflite-int16x8: every op computes in int16 (the float input and output are quantised at
    the edges), and the fixed-point-only SM8350 takes the whole graph in one partition, as
    the float-capable SM8650 does. LiteRT's GPU accelerator has no int16 kernels: it refuses
    the file's ops, which the record says (the GPU formats are fp32 / fp16 / int8)."""
    m = read_manifest(exported_integer)
    art = m.artifacts["tflite-int16x8"]
    numeric = art.details["numeric"]
    assert numeric["float"] == {} and numeric["int8"] == {} and numeric["hybrid"] == {"DEQUANTIZE": 4}
    assert numeric["int16"]["CONV_2D"] > 0 and numeric["int16"]["FULLY_CONNECTED"] > 0
    assert art.quantization["mode"] == "int16x8" and art.quantization["calibration"]["n"] == 16
    for soc in ("qualcomm:SM8350", "qualcomm:SM8650"):
        rec = art.npu[soc]
        assert rec["fully_offloaded"] and rec["partitions"] == 1 and rec["cpu_ops"] == [], (soc, rec)
        assert (exported_integer / rec["file"]).stat().st_size > 0
    g = art.gpu
    assert g["status"] == "checked" and not g["fully_delegated"] and g["ops_gpu"] < g["ops_total"] // 4
    assert any("INT16" in r["reason"] for r in g["refused"])


def test_full_integer_file_follows_pytorch_on_dim_and_bright_scenes(exported_integer):
    """The int16 ranges are fixed at calibration: the file must give PyTorch's kernel for a
    training-source scene as it is and dimmed to a fifth of its contrast (FFT-1's int16
    normaliser once clipped on dim gallery scenes and the kernel came out wrong)."""
    from export.calibration import scale_contrast, training_source_images
    from export.runtimes import TorchRunner, open_runner
    from mobile_kernelnet.models import create_model

    m = read_manifest(exported_integer)
    lite = open_runner(exported_integer, m, "tflite-int16x8", threads=2)
    torch_ref = TorchRunner(create_model("kernelnet", 4, "mobile"), m.input_size)
    raw, _ = training_source_images(4, m.input_size, 4, np.random.default_rng(7))
    for contrast in (1.0, 0.2):
        lr = scale_contrast(raw, [contrast] * len(raw))
        gaps = [np.abs(lite(x[None])["kernel"] - torch_ref(x[None])["kernel"]).sum() for x in lr]
        assert np.mean(gaps) < 0.1, (contrast, gaps)  # measured 0.013 / 0.024; 0.96 dimmed before


def test_integer_readiness_is_the_models_to_say():
    from dataclasses import replace
    from mobile_kernelnet.models import create_model
    from mobile_kernelnet.models.kernelnet import CONFIGS, KernelNet
    shipped = create_model("kernelnet", 2, "mobile").full_integer_blocker
    assert "eq. 11" in shipped and "hard threshold" in shipped
    ready = KernelNet(2, replace(CONFIGS["mobile"], fft1_solver="normal-equations", threshold_mode="soft"))
    assert ready.full_integer_blocker is None
    assert "square roots" in create_model("s2k", 2, "mobile").full_integer_blocker


def test_s2k_graph_has_no_gathers(exported_s2k, tmp_path):
    """The kernel-map resampling is two constant MatMuls, not gathers (GPU and NPU refuse those)."""
    m = read_manifest(exported_s2k)
    ops = {n.op_type for n in onnx.load(exported_s2k / m.artifacts["onnx-matmul"].file).graph.node}
    assert not ops & {"Gather", "GatherND", "GatherElements", "Where", "Expand"}, ops


def test_gpu_log_parser_reads_the_refused_ops():
    text = (FIXTURES / "gpu_s2k_gathers.log").read_text()
    p = gpu.parse_delegate_log(text, ops_total=240, fully_accelerated=False)
    assert (p.ops_gpu, p.ops_total, p.fully_delegated) == (147, 240, False)
    assert p.device == "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"
    assert [r.op for r in p.refused] == ["BROADCAST_TO", "GATHER", "GATHER_ND", "RESHAPE", "SELECT"]
    assert p.refused[1].reason == "Only support 1D indices"
    with pytest.raises(gpu.GpuUnavailable, match="printed no op report"):
        gpu.parse_delegate_log("nothing here", ops_total=10, fully_accelerated=False)


def test_npu_log_parser_reads_partitions_refusals_and_errors():
    p = npu.parse_plugin_log((FIXTURES / "qnn_s2k_gathers_SM8650.log").read_text())
    assert (p["ops_offloaded"], p["ops_total"], p["partitions"], p["qnn_version"]) == (193, 240, 34, "2.40.0")
    assert [c["op"] for c in p["cpu_ops"]] == ["GatherNd", "Reshape", "BroadcastTo"]
    assert p["cpu_ops"][0]["reason"] == "QNN error 3110: FLOAT_32[64,64,1,1] INT_64[15,6,15,6,2] -> FLOAT_32[15,6,15,6,1,1]"
    failed = npu.parse_plugin_log((FIXTURES / "qnn_kernelnet_float_SM8350.log").read_text())
    assert failed["partitions"] == 1 and failed["cpu_ops"] == []
    assert any("PlainFloat" in e for e in failed["errors"])


def test_npu_targets_are_checked_before_any_work():
    assert [str(t) for t in npu.parse_targets("qualcomm:SM8350,SM8750")] == ["qualcomm:SM8350", "qualcomm:SM8750"]
    with pytest.raises(ValueError, match="unknown qualcomm SoC 'SM9999'"):
        npu.parse_targets("qualcomm:SM9999")
    with pytest.raises(ValueError, match="VENDOR:SOC"):
        npu.parse_targets("mediatek:MT6989")


def test_missing_toolchain_is_a_clear_error_not_a_crash(exported, monkeypatch, tmp_path):
    """No Vulkan driver: the GPU record says so and how to fix it; no QNN libraries:
    the compiler refuses to start with the same kind of message."""
    monkeypatch.setattr(gpu, "TOOLCHAIN", tmp_path)
    monkeypatch.setattr(npu, "TOOLCHAIN", tmp_path)
    monkeypatch.delenv("VK_ICD_FILENAMES", raising=False)
    m = read_manifest(exported)
    art = m.artifacts["tflite-fp32"]
    record = gpu.gpu_check(exported / art.file, art.inputs, art.outputs, [np.zeros((1, 1, 64, 64), np.float32)])
    assert record["status"] == "unavailable" and "make toolchain" in record["error"]
    with pytest.raises(npu.NpuUnavailable, match="make toolchain"):
        npu.compile_for(exported / art.file, npu.NpuTarget("qualcomm", "SM8650"), tmp_path / "x.tflite",
                        tmp_path / "x.log")
