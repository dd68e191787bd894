"""`mkn bench` over the CI export: records, report files, regression gate, Ctrl-C."""
import json
from dataclasses import replace

import pytest
import torch

from bench import benchmark
from bench.benchmark import compare, run_bench
from bench.records import KEY, BenchRecord
from bench.report import markdown, table
from bench.roofline import model_flops
from conftest import EXPORT_SIZE, export_subset
from mobile_kernelnet.cli import main
from mobile_kernelnet.models import create_model

FIELDS = {"model", "sf", "format", "runtime", "threads", "input_size", "latency_ms_median", "latency_ms_p90",
          "size_mb", "kernel_l1", "first_inference_ms", "peak_memory_mb", "floor_ms", "ratio_to_floor"}


@pytest.fixture(scope="module")
def records(exported, testset_root_sf2):
    records, check = run_bench(exported, None, [1], runs=3, warmup=1, testset_root=testset_root_sf2,
                               max_images=2, progress=False)
    assert set(check) == {"sgemm_gflops_start", "sgemm_gflops_end", "copy_gbs_start", "copy_gbs_end", "busy_reasons"}
    assert check["copy_gbs_start"] > 0.5 and check["copy_gbs_end"] > 0.5
    assert all(r.busy == bool(check["busy_reasons"]) for r in records)
    return records


def test_every_format_and_runtime_gets_a_complete_record(records):
    got = {(r.format, r.runtime) for r in records}
    onnx = {(f, "onnxruntime-cpu") for f in ("onnx-dft", "onnx-matmul", "onnx-matmul-int8")}
    tflite = {(f"tflite-{kind}", rt) for kind in ("fp32", "fp16", "dynamic-int8", "int8")
              for rt in ("litert-xnnpack", "litert-builtin")}
    assert got == {("pytorch", "torch-eager")} | onnx | tflite  # int16x8 is not exportable at sf 2
    assert len(records) == len(got)  # one record per target
    for r in records:
        assert r.ok and FIELDS <= set(r.to_json()), r
        assert 0 < r.latency_ms_median <= r.latency_ms_p90 and r.input_size == EXPORT_SIZE
        assert r.extra["cold_latency_ms_median"] > 0
        assert BenchRecord.from_json(json.loads(json.dumps(r.to_json())), "test") == r  # JSON round trip
    l1 = {r.format: r.kernel_l1 for r in records}
    assert abs(l1["tflite-fp32"] - l1["pytorch"]) < 1e-4  # the same kernels, so the same L1


def test_report_table_and_markdown_show_every_record(records):
    text, md = table(records), markdown(records, {"cpu": "test cpu", "cores": 2})
    for r in records:
        assert r.format in text and r.runtime in md
    assert md.startswith("Machine: test cpu, 2 cores") and md.count("\n| ") == len(records) + 1


def test_tflite_records_carry_the_placement_the_export_measured(records, exported):
    from export.manifest import read_manifest
    m = read_manifest(exported)
    for r in records:
        art = m.artifacts.get(r.format)
        if r.format.startswith("tflite-"):
            assert (r.gpu_ops, r.ops_total) == (art.gpu["ops_gpu"], art.gpu["ops_total"])
            assert r.npu_partitions["qualcomm:SM8350"] is None  # fixed-point HTP: the float islands fail
            assert r.npu_partitions["qualcomm:SM8650"] == art.npu["qualcomm:SM8650"]["partitions"]
        else:
            assert r.gpu_ops is None and r.npu_partitions is None
    assert "SM8350 x, SM8650 1" in table(records) and "GPU ops" in markdown(records, {})


def test_placement_table_lists_every_tflite_file(exported, capsys):
    from export.manifest import read_manifest
    m = read_manifest(exported)
    assert main(["placement", str(exported)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| model | sf | input | file | GPU ops | SM8350 | SM8650 |" and len(lines) == 2 + 4
    fp32 = m.artifacts["tflite-fp32"].gpu
    assert f"| kernelnet | 2 | {EXPORT_SIZE} | tflite-fp32 | {fp32['ops_gpu']}/{fp32['ops_total']} | x | 1 |" in lines
    assert any("tflite-dynamic-int8" in line and line.endswith("* |") for line in lines)  # hybrid convs on CPU


def test_gate_flags_slower_or_less_accurate_records_only(records):
    assert compare(records, records, 1.10, 0.01) == {"matched": len(records), "regressions": []}
    slow = [replace(r, latency_ms_median=r.latency_ms_median * (1.5 if r.format == "onnx-dft" else 1.0))
            for r in records]
    worse = [replace(r, kernel_l1=r.kernel_l1 + (0.02 if r.runtime == "litert-builtin" else 0.0)) for r in records]
    assert [g.split(":")[0] for g in compare(slow, records, 1.10, 0.01)["regressions"]] == \
        ["onnx-dft/onnxruntime-cpu 1t 64px"]
    assert len(compare(worse, records, 1.10, 0.01)["regressions"]) == 4
    other_size = [replace(r, input_size=999) for r in records]
    assert compare(other_size, records, 1.10, 0.01)["matched"] == 0


@pytest.fixture
def two_formats(exported, tmp_path):
    """The CI export cut to one ONNX and one TFLite file: four bench targets instead of eleven."""
    return export_subset(exported, tmp_path / "two", ["onnx-dft", "tflite-fp32"])


def test_gate_cli_passes_unchanged_and_fails_a_slowed_runtime(two_formats, testset_root_sf2, tmp_path, capsys):
    base = ["bench", str(two_formats), "--runs", "3", "--warmup", "1", "--threads", "1", "--images", "1",
            "--testset", str(testset_root_sf2), "--quiet"]
    assert main(base + ["--json", str(tmp_path / "old.json")]) == 0
    old = json.loads((tmp_path / "old.json").read_text())
    assert old["complete"] and old["schema"] == "mkn-bench/1" and old["machine"]["cores"] >= 1
    assert (tmp_path / "old.md").is_file() and (tmp_path / "old.png").read_bytes()[:4] == b"\x89PNG"
    # unchanged: passes (a generous factor: two runs on a noisy machine are never identical)
    gate = ["--baseline", str(tmp_path / "old.json"), "--max-slowdown", "3"]
    assert main(base + ["--json", str(tmp_path / "same.json")] + gate) == 0
    capsys.readouterr()
    # a baseline in which LiteRT ran 10x faster: every LiteRT record regresses, nothing else (the
    # targets run in worker processes, so the baseline is edited rather than the runtime slowed)
    fast = dict(old, records=[dict(r, latency_ms_median=r["latency_ms_median"] / 10 if "litert" in r["runtime"]
                                   else r["latency_ms_median"]) for r in old["records"]])
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    gate = ["--baseline", str(tmp_path / "fast.json"), "--max-slowdown", "3"]
    assert main(base + ["--json", str(tmp_path / "slow.json")] + gate) == 1
    err = capsys.readouterr().err
    flagged = [line for line in err.splitlines() if line.startswith("REGRESSION")]
    assert len(flagged) == 2 and all("litert" in line for line in flagged)


def test_ctrl_c_keeps_finished_records(two_formats, testset_root_sf2, tmp_path, monkeypatch):
    real_group = benchmark.bench_group
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_group(*args, **kwargs)
    monkeypatch.setattr(benchmark, "bench_group", interrupted)
    out = tmp_path / "partial.json"
    rc = main(["bench", str(two_formats), "--runs", "2", "--warmup", "0", "--threads", "1,2", "--images", "1",
               "--testset", str(testset_root_sf2), "--json", str(out), "--quiet"])
    report = json.loads(out.read_text())
    assert rc == 130 and report["complete"] is False
    assert {r["threads"] for r in report["records"]} == {1} and len(report["records"]) == 4
    assert len({tuple(r[k] for k in KEY) for r in report["records"]}) == 4


def test_model_flops_count_the_convolutions_and_the_dft_products():
    model = create_model("kernelnet", 2, "mobile")
    n = 64
    convs = 2 * n * n * sum(c.in_channels * c.out_channels * c.kernel_size[0] ** 2 // c.groups
                            for c in model.gradient.modules() if isinstance(c, torch.nn.Conv2d))
    flops = model_flops(model, n)
    assert flops > convs  # plus the DFT matrix products and the refinement
    assert model.spectral.backend == "torch"  # restored
    assert model_flops(model, 2 * n) > 3.5 * convs  # conv cost grows with the pixel count


def test_other_sizes_are_exported_beside_and_reused(exported, testset_root_sf2, tmp_path):
    """On the CI export's two ONNX formats (the rule is the same for every format; TFLite
    ones would only make the re-export slow)."""
    small = export_subset(exported, tmp_path / "kn", ["onnx-dft", "onnx-matmul"])
    recs, _ = run_bench(small, [EXPORT_SIZE, 48], [1], runs=1, warmup=0, testset_root=testset_root_sf2,
                        max_images=1, progress=False)
    beside = small.with_name(f"{small.name}@48")
    manifest = json.loads((beside / "manifest.json").read_text())
    assert manifest["input_size"] == 48 and set(manifest["artifacts"]) == {"onnx-dft", "onnx-matmul"}
    assert [r.input_size for r in recs] == [EXPORT_SIZE] * 3 + [48] * 3 and all(r.ok for r in recs)
    stamp = (beside / "manifest.json").stat().st_mtime_ns
    run_bench(small, [48], [1], runs=1, warmup=0, testset_root=testset_root_sf2, max_images=1, progress=False)
    assert (beside / "manifest.json").stat().st_mtime_ns == stamp  # reused, not exported again


def test_each_target_runs_in_its_own_process(exported):
    """A worker's pid differs from the coordinator's and from every other worker's."""
    import os
    from export.manifest import read_manifest
    manifest = read_manifest(exported)
    targets = [t for t in benchmark.targets_of(exported, manifest) if t.runtime in ("torch-eager", "litert-xnnpack")]
    recs = benchmark.bench_group(targets[:3], manifest, 1, runs=2, warmup=0, l1={}, flops=10 ** 6,
                                 peak_gflops=100.0)
    assert all(r.ok and r.peak_memory_mb > 0 for r in recs)
    pids = {r.extra["pid"] for r in recs}
    assert len(pids) == 3 and os.getpid() not in pids


def test_a_turn_times_the_wake_up_call_apart_from_the_steady_state_one():
    """A runtime slow to wake after idling (as a 2-thread pool is on this VM): the turn's
    first call carries the wake-up, the others -- whose median is the reported latency --
    do not, even when one of them is slow."""
    import threading
    import time
    from multiprocessing import Pipe

    class SlowToWake:
        last = 0.0

        def runner(self, manifest, threads):
            return self

        calls = 0

        def __call__(self, x):
            idle = time.perf_counter() - self.last > 0.02
            self.calls += 1
            # the init run is call 1, so each turn's second call is one with calls % TURN_CALLS == 3
            time.sleep(0.03 if idle or self.calls % benchmark.TURN_CALLS == 3 else 0.001)
            self.last = time.perf_counter()

    here, there = Pipe()
    manifest = type("M", (), {"input_size": 8})()
    worker = threading.Thread(target=benchmark._worker, args=(there, SlowToWake(), manifest, 1))
    worker.start()
    assert "init_ms" in here.recv()
    turns = []
    for _ in range(3):
        time.sleep(0.05)
        here.send("run")
        turns.append(here.recv())
    here.send("stop")
    worker.join(timeout=5)
    assert all(cold >= 25 and warm < 15 for cold, warm in turns), turns


def test_busy_machine_is_detected():
    from bench.benchmark import busy_reasons
    ok = [BenchRecord("m", "c", 2, "f", "r", 1, 64, status="ok", ratio_to_floor=3.0)]
    assert busy_reasons({1: 100.0}, {1: 110.0}, ok) == []
    assert "moved 100 -> 70" in busy_reasons({1: 100.0}, {1: 70.0}, ok)[0]
    below = [replace(ok[0], ratio_to_floor=0.8)]
    assert "below its floor" in busy_reasons({1: 100.0}, {1: 100.0}, below)[0]
    assert busy_reasons({1: 100.0}, {1: 100.0}, [replace(below[0], format="tflite-int8")]) == []  # int8 may beat it
    # memory-bound slowdowns the sgemm peak does not see
    assert busy_reasons({1: 100.0}, {1: 100.0}, ok, (20.0, 18.0)) == []
    assert "copy bandwidth moved 20.0 -> 12.0" in busy_reasons({1: 100.0}, {1: 100.0}, ok, (20.0, 12.0))[0]


def test_copy_bandwidth_probe_measures_a_plausible_rate():
    from bench.roofline import copy_bandwidth_gbs
    assert 0.5 < copy_bandwidth_gbs(megabytes=16, runs=3) < 1000
